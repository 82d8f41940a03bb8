//! A libvirt domain XML for the same guest QEMU boots (direct kernel boot, TCG, the lab's tap),
//! for users who run guests with virsh.

use std::fmt::Write as _;
use std::path::Path;

use super::{Entropy, Guest};

/// The emulator libvirt should run (Debian's path).
pub const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// The domain XML for `guest`.
pub fn domain_xml(guest: &Guest) -> String {
    let mut xml = String::new();
    let e = escape;
    let p = |path: &Path| escape(&path.display().to_string());
    // Writing to a String cannot fail.
    let _ = writeln!(
        xml,
        "<!-- metaboot guest {}: direct kernel boot of the tiny image under TCG -->",
        e(&guest.name)
    );
    let _ = writeln!(xml, "<domain type='qemu'>");
    let _ = writeln!(xml, "  <name>{}</name>", e(&guest.name));
    let _ = writeln!(xml, "  <memory unit='MiB'>{}</memory>", guest.memory_mb);
    let _ = writeln!(xml, "  <vcpu>1</vcpu>");
    let _ = writeln!(xml, "  <os>");
    let _ = writeln!(xml, "    <type arch='x86_64' machine='pc'>hvm</type>");
    let _ = writeln!(xml, "    <kernel>{}</kernel>", p(&guest.kernel));
    let _ = writeln!(xml, "    <initrd>{}</initrd>", p(&guest.initrd));
    let _ = writeln!(xml, "    <cmdline>{}</cmdline>", e(&guest.cmdline));
    let _ = writeln!(xml, "  </os>");
    match guest.entropy {
        Entropy::CpuMax => {
            let _ = writeln!(xml, "  <cpu mode='maximum'/>");
        }
        Entropy::VirtioRng => {
            let _ = writeln!(xml, "  <cpu mode='custom'><model>qemu64</model></cpu>");
        }
    }
    // QEMU runs with -no-reboot: a reboot (or panic) ends the domain.
    let _ = writeln!(xml, "  <on_reboot>destroy</on_reboot>");
    let _ = writeln!(xml, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(xml, "  <devices>");
    let _ = writeln!(xml, "    <emulator>{EMULATOR}</emulator>");
    if let Some(disk) = &guest.disk {
        let _ = writeln!(xml, "    <disk type='file' device='disk'>");
        let _ = writeln!(xml, "      <driver name='qemu' type='raw'/>");
        let _ = writeln!(xml, "      <source file='{}'/>", p(disk));
        let _ = writeln!(xml, "      <target dev='vda' bus='virtio'/>");
        let _ = writeln!(xml, "    </disk>");
    }
    if let Some(nic) = &guest.nic {
        let _ = writeln!(
            xml,
            "    <!-- the lab's tap on the tenant bridge; it lives in namespace {}: libvirtd must \
             see it there (or move the tap into libvirtd's namespace and bridge it there) -->",
            e(&nic.netns)
        );
        let _ = writeln!(xml, "    <interface type='ethernet'>");
        let _ = writeln!(xml, "      <mac address='{}'/>", e(&nic.mac));
        let _ = writeln!(xml, "      <target dev='{}' managed='no'/>", e(&nic.tap));
        let _ = writeln!(xml, "      <model type='virtio'/>");
        let _ = writeln!(xml, "    </interface>");
    }
    let _ = writeln!(xml, "    <serial type='file'>");
    let _ = writeln!(xml, "      <source path='{}'/>", p(&guest.serial_log));
    let _ = writeln!(xml, "      <target port='0'/>");
    let _ = writeln!(xml, "    </serial>");
    if guest.entropy == Entropy::VirtioRng {
        let _ = writeln!(
            xml,
            "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
        );
    }
    let _ = writeln!(xml, "  </devices>");
    let _ = writeln!(xml, "</domain>");
    xml
}

/// Escapes text for XML content and single-quoted attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
