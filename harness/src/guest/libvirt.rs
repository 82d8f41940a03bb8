//! A libvirt domain XML for the same guest QEMU boots (direct kernel boot or a disk's
//! bootloader, TCG, the lab's tap), for users who run guests with virsh.

use std::fmt::Write as _;
use std::path::Path;

use super::{Boot, Entropy, Guest};

/// The emulator libvirt should run (Debian's path).
pub const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// The domain XML for `guest`.
pub fn domain_xml(guest: &Guest) -> String {
    let mut xml = String::new();
    let e = escape;
    let p = |path: &Path| escape(&path.display().to_string());
    // Writing to a String cannot fail.
    let how = match guest.boot {
        Boot::Kernel { .. } => "direct kernel boot of the tiny image",
        Boot::Disk { .. } => "firmware and bootloader from a cloud image's disk (an overlay)",
    };
    let _ = writeln!(
        xml,
        "<!-- metaboot guest {}: {how} under TCG -->",
        in_comment(&e(&guest.name))
    );
    let _ = writeln!(xml, "<domain type='qemu'>");
    let _ = writeln!(xml, "  <name>{}</name>", e(&guest.name));
    let _ = writeln!(xml, "  <memory unit='MiB'>{}</memory>", guest.memory_mb);
    let _ = writeln!(xml, "  <vcpu>1</vcpu>");
    if let Boot::Disk { .. } = guest.boot {
        // What nova tells its guests (see qemu::NOVA_SMBIOS).
        let _ = writeln!(xml, "  <sysinfo type='smbios'>");
        let _ = writeln!(xml, "    <system>");
        let _ = writeln!(
            xml,
            "      <entry name='manufacturer'>OpenStack Foundation</entry>"
        );
        let _ = writeln!(xml, "      <entry name='product'>OpenStack Nova</entry>");
        let _ = writeln!(xml, "    </system>");
        let _ = writeln!(xml, "  </sysinfo>");
    }
    let _ = writeln!(xml, "  <os>");
    let _ = writeln!(xml, "    <type arch='x86_64' machine='pc'>hvm</type>");
    match &guest.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let _ = writeln!(xml, "    <kernel>{}</kernel>", p(kernel));
            let _ = writeln!(xml, "    <initrd>{}</initrd>", p(initrd));
            let _ = writeln!(xml, "    <cmdline>{}</cmdline>", e(cmdline));
        }
        Boot::Disk { .. } => {
            let _ = writeln!(xml, "    <boot dev='hd'/>");
            let _ = writeln!(xml, "    <smbios mode='sysinfo'/>");
        }
    }
    let _ = writeln!(xml, "  </os>");
    // QEMU's own defaults, which libvirt leaves out unless asked: without ACPI a guest's
    // poweroff halts instead of ending the domain.
    let _ = writeln!(xml, "  <features><acpi/><apic/></features>");
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
    // virtio disks in order: the boot disk (if any), the further disks, the config drive.
    let mut disks: Vec<(&Path, &str, bool)> = Vec::new();
    if let Boot::Disk { overlay } = &guest.boot {
        disks.push((overlay, "qcow2", false));
    }
    for disk in &guest.disks {
        disks.push((disk, "raw", false));
    }
    if let Some(drive) = &guest.config_drive {
        disks.push((drive, "raw", true));
    }
    for ((path, format, readonly), letter) in disks.into_iter().zip('a'..) {
        let _ = writeln!(xml, "    <disk type='file' device='disk'>");
        let _ = writeln!(xml, "      <driver name='qemu' type='{format}'/>");
        let _ = writeln!(xml, "      <source file='{}'/>", p(path));
        let _ = writeln!(xml, "      <target dev='vd{letter}' bus='virtio'/>");
        if readonly {
            let _ = writeln!(xml, "      <readonly/>");
        }
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
    // The same hardware as QEMU's command line (-nodefaults): libvirt would add a USB
    // controller and a memory balloon, which SeaBIOS and the guest's kernel then probe and
    // poll under TCG.
    let _ = writeln!(xml, "    <controller type='usb' model='none'/>");
    let _ = writeln!(xml, "    <memballoon model='none'/>");
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

/// `text` as an XML comment may hold it: no `--` (a guest named after an image file
/// `Debian 12 (x).qcow2` is `debian-12--x`), which XML forbids there.
fn in_comment(text: &str) -> String {
    let mut out = text.to_owned();
    while out.contains("--") {
        out = out.replace("--", "- -");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::Nic;
    use super::*;
    use crate::image::{Image, Manifest};

    fn guest(entropy: Entropy) -> Guest {
        let image = Image {
            dir: "/var/cache/metaboot/tiny-0123".into(),
            kernel: "/var/cache/metaboot/tiny-0123/vmlinuz".into(),
            initrd: "/var/cache/metaboot/tiny-0123/initrd.img".into(),
            manifest: Manifest {
                kind: "tiny".into(),
                key: "0123".into(),
                ..Manifest::default()
            },
            cached: true,
        };
        Guest::new(
            "guest1",
            &image,
            Path::new("/run/metaboot-harness/labs/demo/guests/guest1/serial.log"),
        )
        .with_disk(Path::new(
            "/run/metaboot-harness/labs/demo/guests/guest1/disk.img",
        ))
        .with_nic(Nic {
            netns: "metaboot-demo".into(),
            tap: "tap0123456789a".into(),
            mac: "fa:16:3e:12:34:56".into(),
        })
        .with_entropy(entropy)
    }

    #[test]
    fn the_domain_describes_the_same_guest_as_the_qemu_command_line() {
        let xml = domain_xml(&guest(Entropy::CpuMax));
        for expect in [
            "<domain type='qemu'>",
            "<kernel>/var/cache/metaboot/tiny-0123/vmlinuz</kernel>",
            "<cmdline>console=ttyS0 panic=-1 no_timer_check loglevel=4</cmdline>",
            "<features><acpi/><apic/></features>",
            "<controller type='usb' model='none'/>",
            "<memballoon model='none'/>",
            "<cpu mode='maximum'/>",
            "<mac address='fa:16:3e:12:34:56'/>",
            "<target dev='tap0123456789a' managed='no'/>",
            "<target dev='vda' bus='virtio'/>",
        ] {
            assert!(xml.contains(expect), "{expect} in\n{xml}");
        }
        assert!(domain_xml(&guest(Entropy::VirtioRng)).contains("<rng model='virtio'>"));
    }

    /// virt-xml-validate (Debian's libvirt-clients) checks the XML against libvirt's schema.
    #[test]
    fn the_domain_xml_validates_against_libvirts_schema() {
        if Command::new("virt-xml-validate")
            .arg("--help")
            .output()
            .is_err()
        {
            let why =
                "virt-xml-validate is missing (scripts/install-lab-deps installs libvirt-clients)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipped: {why}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for xml in [
            domain_xml(&guest(Entropy::CpuMax)),
            domain_xml(&guest(Entropy::VirtioRng)),
            domain_xml(&disk_guest()),
            // A user's image named `Debian 12 (x).qcow2`: `--` may not be in a comment.
            domain_xml(&Guest::from_disk(
                "isolated/debian-12--x",
                Path::new("/var/tmp/run/overlay.qcow2"),
                Path::new("/var/tmp/run/serial.log"),
            )),
        ] {
            let path = dir.path().join("guest1.xml");
            std::fs::write(&path, xml).unwrap();
            let out = Command::new("virt-xml-validate")
                .arg(&path)
                .arg("domain")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "virt-xml-validate refused the XML: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let broken = dir.path().join("broken.xml");
        std::fs::write(
            &broken,
            domain_xml(&guest(Entropy::CpuMax)).replace("<vcpu>1</vcpu>", "<vcpu>x</vcpu>"),
        )
        .unwrap();
        let out = Command::new("virt-xml-validate")
            .arg(&broken)
            .arg("domain")
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the validator must refuse a broken domain"
        );
    }

    fn disk_guest() -> Guest {
        Guest::from_disk(
            "debian-metaboot",
            Path::new("/var/tmp/run/overlay.qcow2"),
            Path::new("/var/tmp/run/serial.log"),
        )
        .with_disk(Path::new("/var/tmp/run/state.img"))
        .with_config_drive(Path::new("/var/tmp/run/config-drive.iso"))
    }

    #[test]
    fn a_disk_guest_boots_from_its_overlay_with_novas_smbios() {
        let xml = domain_xml(&disk_guest());
        for expect in [
            "<boot dev='hd'/>",
            "<smbios mode='sysinfo'/>",
            "<entry name='product'>OpenStack Nova</entry>",
            "<driver name='qemu' type='qcow2'/>\n      <source file='/var/tmp/run/overlay.qcow2'/>\n      <target dev='vda'",
            "<source file='/var/tmp/run/state.img'/>\n      <target dev='vdb'",
            "<target dev='vdc' bus='virtio'/>\n      <readonly/>",
        ] {
            assert!(xml.contains(expect), "{expect} in\n{xml}");
        }
        assert!(!xml.contains("<kernel>"), "{xml}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
