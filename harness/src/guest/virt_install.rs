//! A guest on a libvirt network, started the way a libvirt user starts one: `virt-install
//! --import … --network network=NAME,mac=…,filterref=clean-traffic --noautoconsole`, as a
//! transient domain whose console goes to a file the harness follows.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::libvirtd::URI;
use super::{Boot, Entropy, Guest};
use crate::process::{describe, output_with_timeout};

/// The OS virt-install is told (its osinfo database may not know the guest's release; this
/// generic entry gives virtio devices).
pub const OSINFO: &str = "linux2022";

/// Deadline of one `virt-install` run (it returns once the domain started).
pub const VIRT_INSTALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What nova tells its guests through SMBIOS, which cloud-init's OpenStack datasource looks
/// for before it asks 169.254.169.254 (see qemu::NOVA_SMBIOS).
pub const NOVA_SYSINFO: &str =
    "system.manufacturer=OpenStack Foundation,system.product=OpenStack Nova";

/// The guest's NIC on a libvirt network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNic {
    /// libvirt's name of the network.
    pub network: String,
    /// The MAC the instance is registered with.
    pub mac: String,
    /// An nwfilter to attach (`clean-traffic`), if any.
    pub filter: Option<String>,
}

impl NetworkNic {
    /// virt-install's `--network` value.
    pub fn option(&self) -> String {
        let mut value = format!("network={},mac={},model=virtio", self.network, self.mac);
        if let Some(filter) = &self.filter {
            value.push_str(&format!(",filterref={filter}"));
        }
        value
    }
}

/// The `virt-install` command line for `guest` on `nic`, its console written to `console`.
pub fn command(guest: &Guest, nic: &NetworkNic, console: &Path) -> anyhow::Result<Command> {
    let mut args: Vec<OsString> = Vec::new();
    let mut add = |a: &str| args.push(a.into());
    add("--connect");
    add(URI);
    add("--transient");
    add("--noautoconsole");
    add("--name");
    add(&guest.name);
    add("--virt-type");
    add("qemu");
    add("--machine");
    add("pc");
    add("--memory");
    add(&guest.memory_mb.to_string());
    add("--vcpus");
    add("1");
    add("--osinfo");
    add(OSINFO);
    add("--import");
    match &guest.boot {
        Boot::Disk { overlay } => {
            add("--disk");
            add(&format!(
                "path={},format=qcow2,bus=virtio",
                option_path(overlay)?
            ));
            add("--sysinfo");
            add(NOVA_SYSINFO);
        }
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            if cmdline.contains(',') {
                bail!("a kernel command line for virt-install has no commas: {cmdline}");
            }
            add("--disk");
            add("none");
            add("--boot");
            add(&format!(
                "kernel={},initrd={},kernel_args={cmdline}",
                option_path(kernel)?,
                option_path(initrd)?
            ));
        }
    }
    for disk in &guest.disks {
        add("--disk");
        add(&format!(
            "path={},format=raw,bus=virtio",
            option_path(disk)?
        ));
    }
    add("--network");
    add(&nic.option());
    match guest.entropy {
        Entropy::CpuMax => {
            add("--cpu");
            add("mode=maximum");
        }
        Entropy::VirtioRng => {
            add("--rng");
            add("/dev/urandom");
        }
    }
    add("--graphics");
    add("none");
    add("--serial");
    add(&format!("file,path={}", option_path(console)?));
    // The same lean hardware as the harness's QEMU (see super::libvirt).
    add("--controller");
    add("usb,model=none");
    add("--memballoon");
    add("none");
    let mut cmd = Command::new("virt-install");
    cmd.args(args);
    Ok(cmd)
}

/// A path as a virt-install option value (which splits on commas).
fn option_path(path: &Path) -> anyhow::Result<String> {
    let text = path.display().to_string();
    if text.contains(',') {
        bail!("{text}: virt-install cannot take a path with a comma");
    }
    Ok(text)
}

/// Runs `cmd`, which starts a domain, within `timeout`, holding [`crate::lab::changes`]: not
/// while a signal's teardown runs, as a domain made after it would outlive the lab (as in
/// `Domain::create`, harness/src/guest/domain.rs).
fn start_domain(cmd: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    let _changes = crate::lab::changes();
    output_with_timeout(cmd, timeout)
}

/// Runs `virt-install` for `guest` on `nic`; the domain runs when it returns.
pub fn install(guest: &Guest, nic: &NetworkNic, console: &Path) -> anyhow::Result<()> {
    // libvirt's QEMU appends to the console file: start from an empty one.
    std::fs::File::create(console)
        .with_context(|| format!("failed to create {}", console.display()))?;
    let mut cmd = command(guest, nic, console)?;
    let out = start_domain(&mut cmd, VIRT_INSTALL_TIMEOUT).inspect_err(|_| {
        // No answer: the domain may run all the same, with nothing in charge of it.
        super::domain::destroy_unanswered(&guest.name);
    })?;
    if !out.status.success() {
        bail!(
            "{} failed: {}{}",
            describe(&cmd),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic() -> NetworkNic {
        NetworkNic {
            network: "metaboot-ab12".into(),
            mac: "52:54:00:12:34:56".into(),
            filter: Some("clean-traffic".into()),
        }
    }

    #[test]
    fn a_cloud_image_is_imported_on_the_network_with_clean_traffic() {
        let guest = Guest::from_disk(
            "web",
            Path::new("/var/tmp/run/overlay.qcow2"),
            Path::new("/var/tmp/run/serial.log"),
        );
        let cmd = command(&guest, &nic(), Path::new("/var/tmp/run/console.raw")).unwrap();
        let line = describe(&cmd);
        for expect in [
            "virt-install --connect qemu:///system --transient --noautoconsole --name web",
            "--import --disk path=/var/tmp/run/overlay.qcow2,format=qcow2,bus=virtio",
            "--network network=metaboot-ab12,mac=52:54:00:12:34:56,model=virtio,filterref=clean-traffic",
            "--serial file,path=/var/tmp/run/console.raw",
            "--memory 1024",
        ] {
            assert!(line.contains(expect), "{expect} in\n{line}");
        }
        assert!(line.contains("OpenStack Nova"), "{line}");
        const { assert!(VIRT_INSTALL_TIMEOUT.as_secs() >= 30) };
    }

    /// A domain is not started while a signal's teardown (or a guest start) holds
    /// `lab::changes`, and is once it lets go.
    #[test]
    fn a_domain_starts_only_between_changes() {
        let held = crate::lab::changes();
        let start =
            std::thread::spawn(|| start_domain(&mut Command::new("true"), VIRT_INSTALL_TIMEOUT));
        std::thread::sleep(Duration::from_millis(500));
        assert!(!start.is_finished(), "started while changes() was held");
        drop(held);
        assert!(start.join().unwrap().unwrap().status.success());
    }

    #[test]
    fn paths_with_commas_are_refused() {
        let guest = Guest::from_disk(
            "web",
            Path::new("/tmp/a,b.qcow2"),
            Path::new("/tmp/serial.log"),
        );
        let err = command(&guest, &nic(), Path::new("/tmp/c.raw")).unwrap_err();
        assert!(err.to_string().contains("comma"), "{err}");
        let plain = NetworkNic {
            filter: None,
            ..nic()
        };
        assert_eq!(
            plain.option(),
            "network=metaboot-ab12,mac=52:54:00:12:34:56,model=virtio"
        );
    }
}
