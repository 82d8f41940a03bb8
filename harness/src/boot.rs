//! `metaboot-harness boot`: one guest in a lab that is up, started in the foreground (Ctrl-C
//! stops it) or described as a libvirt domain XML.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};

use crate::atomic;
use crate::check::ssh;
use crate::guest::qemu::{BOOT_TIMEOUT, RunningGuest};
use crate::guest::{self, Guest, Nic, libvirt, serial};
use crate::image::Image;
use crate::lab::Lab;
use crate::lab::registry::InstanceSpec;

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

static STOP: AtomicBool = AtomicBool::new(false);

/// Exit code of a boot stopped (Ctrl-C, SIGTERM) before its guest was provisioned, as a shell
/// reports a command SIGINT ended.
pub const EXIT_STOPPED: i32 = 130;

extern "C" fn request_stop(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

/// Registers the instance, prepares its disk and tap, then boots it or writes its XML.
pub fn boot(state_root: &Path, image: &Image, spec: &BootSpec) -> anyhow::Result<i32> {
    crate::lab::require_root()?;
    let lab = Lab::open(state_root, &spec.lab_id)?;
    lab.require_running()?;
    let dir = lab.state().dir.join("guests").join(&spec.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    // A guest of the lab file is already registered (with its own keys); others are new.
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
            (record, private_key)
        }
    };
    let disk = dir.join("disk.img");
    guest::make_state_disk(&disk)?;
    let tap = TapGuard {
        lab: &lab,
        tap: Some(lab.add_tap(&record)?),
    };
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
        // The domain the user starts plugs into it.
        tap.keep();
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

    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in crate::process::stop_signals() {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.context("failed to install a signal handler")?;
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
