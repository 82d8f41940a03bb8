//! `metaboot-harness boot`: one guest in a lab that is up, started in the foreground (Ctrl-C
//! stops it) or described as a libvirt domain XML.

mod stop;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::atomic;
use crate::check::ssh;
use crate::guest::qemu::{BOOT_TIMEOUT, RunningGuest};
use crate::guest::{self, Guest, Nic, libvirt, serial};
use crate::image::Image;
use crate::lab::Lab;
use crate::lab::registry::{InstanceRecord, InstanceSpec};
use stop::{STOP, StopHandler};

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// The lab.
    pub lab_id: String,
    /// Network name (for a guest that is not in the lab file).
    pub network: String,
    /// Instance name.
    pub name: String,
    /// Public key to inject.
    pub key_file: Option<PathBuf>,
    /// User data.
    pub user_data: Option<PathBuf>,
    /// Write the domain XML here instead of starting QEMU.
    pub emit_libvirt_xml: Option<PathBuf>,
}

/// Exit code of a boot stopped (Ctrl-C, SIGTERM) before its guest was provisioned, as a shell
/// reports a command SIGINT ended.
pub const EXIT_STOPPED: i32 = 130;

/// Registers the instance, prepares its disk and tap, then boots it or writes its XML. An
/// instance it registered (a guest not in the lab file) is deleted when it ends, as is its tap,
/// unless they are kept for the domain of the XML it wrote. The stop signals stop the boot
/// while it runs; when it returns they have their earlier handlers again ([`StopHandler`]).
pub fn boot(state_root: &Path, image: &Image, spec: &BootSpec) -> anyhow::Result<i32> {
    // Before anything is made: a Ctrl-C from here on stops the boot after the step in
    // progress, and what it made goes with it. Dropped last, after the guards below.
    let _stop = StopHandler::install()?;
    crate::lab::require_root()?;
    crate::lab::release::require_release_tool()?;
    let lab = Lab::open(state_root, &spec.lab_id)?;
    lab.require_running()?;
    let dir = lab.state().dir.join("guests").join(&spec.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    // A guest of the lab file is already registered (with its own keys) and stays so; others
    // are new, and deleted again when the boot ends.
    let mut instance = InstanceGuard {
        lab: &lab,
        record: None,
    };
    let (record, private_key) = match lab.state().guests.iter().find(|g| g.name == spec.name) {
        Some(record) => (record.clone(), None),
        None => {
            let (public_key, private_key) = match &spec.key_file {
                Some(public) => (public.clone(), None),
                None => {
                    let key = ssh::keygen(&dir, "id_ed25519")?;
                    (key.with_extension("pub"), Some(key))
                }
            };
            let network_id = lab.network(&spec.network)?.id.clone();
            let record = lab.register_instance(&InstanceSpec {
                name: spec.name.clone(),
                network: network_id,
                key_files: vec![public_key],
                user_data: spec.user_data.clone(),
                ..InstanceSpec::default()
            })?;
            instance.record = Some(record.clone());
            (record, private_key)
        }
    };
    if stopped_early() {
        return Ok(EXIT_STOPPED);
    }
    let disk = dir.join("disk.img");
    guest::make_state_disk(&disk)?;
    if stopped_early() {
        return Ok(EXIT_STOPPED);
    }
    let tap = TapGuard {
        lab: &lab,
        tap: Some(lab.add_tap(&record)?),
    };
    if stopped_early() {
        return Ok(EXIT_STOPPED);
    }
    let tap_name = tap.name().to_owned();
    let guest = Guest::new(&spec.name, image, &dir.join("serial.log"))
        .with_disk(&disk)
        .with_nic(Nic {
            netns: lab.state().bridge_ns.clone(),
            tap: tap_name.clone(),
            mac: record.mac.clone(),
        });
    let login = format!(
        "ip netns exec {} ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}root@{}",
        lab.client_namespace(&record.network_id),
        private_key
            .as_ref()
            .map(|k| format!("-i {} ", k.display()))
            .unwrap_or_default(),
        record.ip
    );

    if let Some(path) = &spec.emit_libvirt_xml {
        atomic::write(path, libvirt::domain_xml(&guest).as_bytes(), 0o644)?;
        // The domain the user starts plugs into the tap and is served as the instance.
        tap.keep();
        instance.keep();
        println!(
            "wrote {} (instance {} {} {}, tap {tap_name} in namespace {})",
            path.display(),
            record.uuid,
            record.ip,
            record.mac,
            lab.state().bridge_ns
        );
        println!("once it runs: {login}");
        return Ok(0);
    }

    let mut vm = RunningGuest::start(&guest)?;
    println!(
        "booting {} ({} {}), console log {}",
        spec.name,
        record.ip,
        record.mac,
        guest.serial_log.display()
    );
    // Ctrl-C is heard while the guest boots too (the guest and its tap then go).
    let deadline = vm.started + BOOT_TIMEOUT;
    let marker = match vm
        .serial()
        .wait_for_unless(serial::MARK_PROVISIONED, 0, deadline, &STOP)
    {
        Some(marker) => marker,
        None if STOP.load(Ordering::SeqCst) => {
            println!("stopped before the guest was provisioned");
            vm.kill()?;
            return Ok(EXIT_STOPPED);
        }
        None => vm.wait_for(serial::MARK_PROVISIONED, 0, deadline)?,
    };
    println!(
        "provisioned after {:.2} s: {}",
        marker.at.as_secs_f64(),
        marker.text
    );
    println!("log in with: {login}");
    println!("Ctrl-C stops the guest");
    while !STOP.load(Ordering::SeqCst) {
        if vm
            .serial()
            .wait_closed(Instant::now() + Duration::from_millis(200))
        {
            println!("the guest powered off");
            break;
        }
    }
    vm.kill()?;
    Ok(0)
}

/// Whether a stop signal came before the guest started (then said so).
fn stopped_early() -> bool {
    let stopped = STOP.load(Ordering::SeqCst);
    if stopped {
        println!("stopped before the guest started");
    }
    stopped
}

/// The instance a boot registered (a guest not in the lab file), deleted when the boot ends
/// (from the registry, and its port's DHCP: [`Lab::delete_instance`]), on an error or a stop
/// signal too: a boot again of the same name registers it anew, and on a small network the
/// instances of earlier boots would take every address. Kept for a domain the user starts.
struct InstanceGuard<'a> {
    lab: &'a Lab,
    record: Option<InstanceRecord>,
}

impl InstanceGuard<'_> {
    fn keep(&mut self) {
        self.record = None;
    }
}

impl Drop for InstanceGuard<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take()
            && let Err(err) = self.lab.delete_instance(&record)
        {
            let uuid = &record.uuid;
            let db = self.lab.state().db.display();
            eprintln!(
                "could not finish deleting instance {uuid}: {err:#}; if `metaboot-server --db \
                 {db} instance show {uuid}` still finds it, delete it with `metaboot-server --db \
                 {db} instance delete {uuid}`"
            );
        }
    }
}

/// A guest's tap, removed when the boot ends, on an error too (a boot again of the same guest
/// makes it anew), unless kept for a domain the user starts.
struct TapGuard<'a> {
    lab: &'a Lab,
    tap: Option<String>,
}

impl TapGuard<'_> {
    fn name(&self) -> &str {
        self.tap.as_deref().unwrap_or_default()
    }

    fn keep(mut self) {
        self.tap = None;
    }
}

impl Drop for TapGuard<'_> {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            self.lab.delete_tap(&tap);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::lab::abandoned::tests::lab;

    /// How long a test waits for a fake server to be run.
    const RUN_TIMEOUT: Duration = Duration::from_secs(10);

    /// A boot that returns (here at once: no lab of that id, or not root) leaves the stop
    /// signals as it found them, and STOP clear: the process that called it stops on Ctrl-C
    /// again, and its next boot is not stopped before it starts.
    #[test]
    fn a_boot_that_returned_leaves_the_stop_signals_as_it_found_them() {
        use stop::tests::{DISPOSITIONS, handler_of};
        let _alone = DISPOSITIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = tempfile::tempdir().unwrap();
        let signals = crate::process::stop_signals();
        let before: Vec<_> = signals.iter().map(|s| handler_of(*s)).collect();
        let spec = BootSpec {
            lab_id: "nolab".into(),
            network: "tenant-r".into(),
            name: "g1".into(),
            key_file: None,
            user_data: None,
            emit_libvirt_xml: Some(root.path().join("domain.xml")),
        };
        let image = Image {
            dir: root.path().to_owned(),
            kernel: root.path().join("vmlinuz"),
            initrd: root.path().join("initrd.img"),
            manifest: crate::image::Manifest {
                kind: "tiny".into(),
                key: "test".into(),
                ..crate::image::Manifest::default()
            },
            cached: true,
        };
        assert!(boot(root.path(), &image, &spec).is_err());
        let after: Vec<_> = signals.iter().map(|s| handler_of(*s)).collect();
        assert_eq!(after, before);
        assert!(!STOP.load(Ordering::SeqCst));
    }

    /// The instance a boot registered is deleted from the registry when the boot ends, also
    /// on an error or a stop signal (the guard is dropped); kept for a domain the user starts,
    /// and never there for a guest of the lab file.
    #[test]
    fn a_registered_instance_is_deleted_when_the_boot_ends_unless_kept() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        lab(root, "ab12", None);
        // A registry that writes down what it is asked.
        let asked = root.join("asked");
        let server = root.join("fake-server");
        std::fs::write(
            &server,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", asked.display()),
        )
        .unwrap();
        std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = crate::lab::state::lab_dir(root, "ab12").join("state.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["server_bin"] = server.display().to_string().into();
        atomic::write(&path, &serde_json::to_vec(&json).unwrap(), 0o600).unwrap();
        // ETXTBSY: another test thread's child may hold the new script open for writing a
        // moment; once it ran, it runs.
        assert!(crate::wait::wait_until(
            Instant::now() + RUN_TIMEOUT,
            || std::process::Command::new(&server).status().is_ok()
        ));
        std::fs::remove_file(&asked).unwrap();
        let lab = Lab::open(root, "ab12").unwrap();

        let record = |uuid: &str| InstanceRecord {
            uuid: uuid.into(),
            name: "g1".into(),
            ip: "198.18.10.7".parse().unwrap(),
            mac: "fa:16:3e:00:00:07".into(),
            port_id: "p1".into(),
            network_id: "n1".into(),
        };
        drop(InstanceGuard {
            lab: &lab,
            record: Some(record("u-ended")),
        });
        let mut kept = InstanceGuard {
            lab: &lab,
            record: Some(record("u-kept")),
        };
        kept.keep();
        drop(kept);
        drop(InstanceGuard {
            lab: &lab,
            record: None,
        });
        let text = std::fs::read_to_string(&asked).unwrap();
        assert!(text.contains("instance delete u-ended"), "{text}");
        assert!(!text.contains("u-kept"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
