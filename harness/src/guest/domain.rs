//! A guest as a transient libvirt domain: `virsh create` of the domain XML the harness writes
//! for it (see [`super::libvirt`]), its console read from the file libvirt's QEMU writes, and
//! `virsh destroy` at the end, also on failure (on drop; again on drop when an earlier one did
//! not end it). A start that got no answer in time (`virsh create`, `virt-install`) may have
//! made the domain all the same: it is destroyed by its name.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use super::Guest;
use super::libvirtd::{URI, VIRSH_TIMEOUT, virsh};
use crate::process::{describe, output_with_timeout};

/// Where libvirt keeps each domain's QEMU log.
pub const QEMU_LOG_DIR: &str = "/var/log/libvirt/qemu";

/// How often the console file is read again when it has nothing new.
pub const CONSOLE_POLL: Duration = Duration::from_millis(50);

/// How often a domain's state is asked while waiting for it to power off (each is a `virsh`).
pub const STATE_POLL: Duration = Duration::from_millis(500);

/// Times `virsh domstate` is asked before an answer that says neither "running" nor "gone"
/// is an error.
pub const STATE_ATTEMPTS: u32 = 3;

/// What `virsh domstate` says of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomainState {
    /// It exists and has not stopped (running, paused, shutting down, …).
    Running,
    /// It shut off or crashed, or no longer exists (a transient domain that stopped).
    Gone,
}

/// Reads `virsh domstate`'s answer (its success, stdout and stderr); an error when it says
/// neither that the domain is there nor that it is gone (libvirtd unreachable, an unknown
/// state).
fn domain_state(success: bool, stdout: &str, stderr: &str) -> anyhow::Result<DomainState> {
    if success {
        return match stdout.trim() {
            "running" | "idle" | "paused" | "in shutdown" | "blocked" | "pmsuspended" => {
                Ok(DomainState::Running)
            }
            "shut off" | "crashed" => Ok(DomainState::Gone),
            other => bail!("unknown domain state {other:?}"),
        };
    }
    if no_such_domain(stderr) {
        return Ok(DomainState::Gone);
    }
    bail!("{}", stderr.trim())
}

/// Whether virsh's error says the domain does not exist (VIR_ERR_NO_DOMAIN).
fn no_such_domain(stderr: &str) -> bool {
    stderr.contains("Domain not found") || stderr.contains("failed to get domain")
}

/// What a `virsh destroy` did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destroyed {
    /// It stopped the domain.
    Stopped,
    /// There was nothing to stop: no such domain, or one that does not run.
    Absent,
    /// It failed otherwise (libvirtd unreachable, busy): the domain may still run.
    Failed(String),
}

/// Reads `virsh destroy`'s answer (its success and stderr).
fn destroy_outcome(success: bool, stderr: &str) -> Destroyed {
    if success {
        Destroyed::Stopped
    } else if no_such_domain(stderr) || stderr.contains("domain is not running") {
        // The second is VIR_ERR_OPERATION_INVALID for a defined domain that is shut off.
        Destroyed::Absent
    } else {
        Destroyed::Failed(stderr.trim().to_owned())
    }
}

/// Destroys domain `name`, which a start that got no answer in time (`virsh create`,
/// `virt-install`) may have left running with nothing in charge of it: best effort, saying so
/// when it cannot.
pub fn destroy_unanswered(name: &str) {
    let mut cmd = virsh(["destroy", name]);
    let outcome = output_with_timeout(&mut cmd, VIRSH_TIMEOUT)
        .map(|out| destroy_outcome(out.status.success(), &String::from_utf8_lossy(&out.stderr)));
    match outcome {
        Ok(Destroyed::Stopped) => {
            eprintln!("destroyed libvirt domain {name}, left by a start that timed out");
        }
        Ok(Destroyed::Absent) => {}
        Ok(Destroyed::Failed(why)) => eprintln!(
            "warning: libvirt domain {name} may still run after its start timed out ({why}): \
             `virsh -c {URI} destroy {name}`"
        ),
        Err(err) => eprintln!(
            "warning: libvirt domain {name} may still run after its start timed out ({err:#}): \
             `virsh -c {URI} destroy {name}`"
        ),
    }
}

/// libvirt's log of the QEMU of domain `name`. libvirt appends to it at each start of a domain
/// of that name: a run's own lines start at the size it had before the run's `virsh create`
/// ([`qemu_log_size`]).
pub fn qemu_log(name: &str) -> PathBuf {
    Path::new(QEMU_LOG_DIR).join(format!("{name}.log"))
}

/// The size of [`qemu_log`] of domain `name` now (0 when there is none yet).
pub fn qemu_log_size(name: &str) -> u64 {
    std::fs::metadata(qemu_log(name)).map_or(0, |m| m.len())
}

/// A running transient domain; destroyed when dropped.
#[derive(Debug)]
pub struct Domain {
    name: String,
    /// Tells the console reader the domain is gone: it returns end of file once it has read
    /// everything.
    gone: Arc<AtomicBool>,
    destroyed: bool,
}

impl Domain {
    /// Creates the domain for `guest`, whose console QEMU writes to `console` (a fresh file;
    /// the harness's own timestamped log stays `guest.serial_log`). Returns the domain and a
    /// reader of its console that ends once the domain is gone.
    pub fn create(guest: &Guest, console: &Path) -> anyhow::Result<(Self, ConsoleFile)> {
        let mut described = guest.clone();
        described.serial_log = console.to_owned();
        let xml_path = console.with_extension("xml");
        crate::atomic::write(
            &xml_path,
            super::libvirt::domain_xml(&described).as_bytes(),
            0o644,
        )?;
        // libvirt's QEMU appends to the console file: start from an empty one.
        File::create(console).with_context(|| format!("failed to create {}", console.display()))?;
        let mut cmd = virsh([std::ffi::OsStr::new("create"), xml_path.as_os_str()]);
        // Not while a signal's teardown runs: a domain made after it would outlive the lab.
        let changes = crate::lab::changes();
        let out = output_with_timeout(&mut cmd, VIRSH_TIMEOUT);
        drop(changes);
        let out = match out {
            Ok(out) => out,
            Err(err) => {
                // No answer: libvirtd may have made the domain all the same.
                destroy_unanswered(&guest.name);
                return Err(err);
            }
        };
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                describe(&cmd),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Self::adopt(&guest.name, console)
    }

    /// Takes charge of domain `name`, which something else (virt-install) made with its
    /// console in `console` (a fresh file): returns it and a reader of its console, as
    /// [`Domain::create`] does.
    pub fn adopt(name: &str, console: &Path) -> anyhow::Result<(Self, ConsoleFile)> {
        // In charge first: a console that fails to open destroys the domain (on drop).
        let domain = Self {
            name: name.to_owned(),
            gone: Arc::new(AtomicBool::new(false)),
            destroyed: false,
        };
        let file = File::open(console)
            .with_context(|| format!("failed to open the console {}", console.display()))?;
        let reader = ConsoleFile {
            file,
            gone: Arc::clone(&domain.gone),
        };
        Ok((domain, reader))
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// libvirt's log of the domain's QEMU (its command line and messages): see [`qemu_log`].
    pub fn qemu_log(&self) -> PathBuf {
        qemu_log(&self.name)
    }

    /// Whether the domain still runs (a transient domain that shut off no longer exists).
    ///
    /// Asks `virsh domstate` up to [`STATE_ATTEMPTS`] times while its answer says neither
    /// (libvirtd restarting, a timeout), then fails: only an answer that says the domain is
    /// gone ends the console reader.
    pub fn running(&self) -> anyhow::Result<bool> {
        let mut attempt = 1;
        loop {
            let mut cmd = virsh(["domstate", &self.name]);
            let state = output_with_timeout(&mut cmd, VIRSH_TIMEOUT).and_then(|out| {
                domain_state(
                    out.status.success(),
                    &String::from_utf8_lossy(&out.stdout),
                    &String::from_utf8_lossy(&out.stderr),
                )
                .with_context(|| format!("{} failed", describe(&cmd)))
            });
            match state {
                Ok(DomainState::Running) => return Ok(true),
                Ok(DomainState::Gone) => {
                    self.gone.store(true, Ordering::SeqCst);
                    return Ok(false);
                }
                Err(err) if attempt >= STATE_ATTEMPTS => {
                    return Err(err.context(format!(
                        "cannot tell whether libvirt domain {} still runs (is libvirtd up? \
                         `virsh domstate {}`)",
                        self.name, self.name
                    )));
                }
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(STATE_POLL);
                }
            }
        }
    }

    /// Destroys the domain (nothing when it is already gone). Only once it is gone is it
    /// marked destroyed: after a failure, a later call (the one on drop) tries again.
    pub fn destroy(&mut self) -> anyhow::Result<()> {
        if self.destroyed {
            return Ok(());
        }
        let mut cmd = virsh(["destroy", &self.name]);
        let out = output_with_timeout(&mut cmd, VIRSH_TIMEOUT)?;
        let outcome = destroy_outcome(out.status.success(), &String::from_utf8_lossy(&out.stderr));
        if let Destroyed::Failed(why) = outcome
            && self.running()?
        {
            bail!("{} failed: {why}", describe(&cmd));
        }
        self.gone.store(true, Ordering::SeqCst);
        self.destroyed = true;
        Ok(())
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            eprintln!("failed to destroy libvirt domain {}: {err:#}", self.name);
        }
    }
}

/// Reads a console file as QEMU writes it (`tail -f`), until the domain is gone.
#[derive(Debug)]
pub struct ConsoleFile {
    file: File,
    gone: Arc<AtomicBool>,
}

impl Read for ConsoleFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // Read the flag first: what QEMU wrote before it went away is still read.
            let gone = self.gone.load(Ordering::SeqCst);
            let n = self.file.read(buf)?;
            if n > 0 || gone {
                return Ok(n);
            }
            std::thread::sleep(CONSOLE_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    #[test]
    fn only_virsh_saying_so_makes_a_domain_gone() {
        assert_eq!(
            domain_state(true, "running\n", "").unwrap(),
            DomainState::Running
        );
        assert_eq!(
            domain_state(true, "in shutdown\n", "").unwrap(),
            DomainState::Running
        );
        assert_eq!(
            domain_state(true, "shut off\n", "").unwrap(),
            DomainState::Gone
        );
        let not_found = "error: failed to get domain 'web1'\n\
            error: Domain not found: no domain with matching name 'web1'\n";
        assert_eq!(
            domain_state(false, "", not_found).unwrap(),
            DomainState::Gone
        );
        // libvirtd away is no answer about the domain.
        let unreachable = "error: failed to connect to the hypervisor\n\
            error: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n";
        let err = domain_state(false, "", unreachable).unwrap_err();
        assert!(err.to_string().contains("failed to connect"), "{err}");
        assert!(domain_state(true, "no state\n", "").is_err());
        const { assert!(STATE_ATTEMPTS >= 1 && STATE_ATTEMPTS <= 5) };
        assert!(STATE_POLL * STATE_ATTEMPTS < VIRSH_TIMEOUT);
    }

    /// Only a `virsh destroy` that stopped the domain, or found none to stop, lets the domain
    /// count as destroyed; any other failure leaves it to be tried again.
    #[test]
    fn a_destroy_counts_only_when_virsh_says_the_domain_is_gone() {
        assert_eq!(destroy_outcome(true, ""), Destroyed::Stopped);
        let not_found = "error: failed to get domain 'web1'\n\
            error: Domain not found: no domain with matching name 'web1'\n";
        assert_eq!(destroy_outcome(false, not_found), Destroyed::Absent);
        let shut_off = "error: Failed to destroy domain 'web1'\n\
            error: Requested operation is not valid: domain is not running\n";
        assert_eq!(destroy_outcome(false, shut_off), Destroyed::Absent);
        let unreachable = "error: failed to connect to the hypervisor\n\
            error: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n";
        assert_eq!(
            destroy_outcome(false, unreachable),
            Destroyed::Failed(unreachable.trim().to_owned())
        );
        let busy = "error: Failed to destroy domain 'web1'\n\
            error: Timed out during operation: cannot acquire state change lock\n";
        assert!(matches!(destroy_outcome(false, busy), Destroyed::Failed(_)));
    }

    #[test]
    fn the_console_is_followed_until_the_domain_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.raw");
        let mut writer = File::create(&path).unwrap();
        let gone = Arc::new(AtomicBool::new(false));
        let reader = ConsoleFile {
            file: File::open(&path).unwrap(),
            gone: Arc::clone(&gone),
        };
        let lines = std::thread::spawn(move || {
            BufReader::new(reader)
                .lines()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        });
        writer.write_all(b"first\n").unwrap();
        std::thread::sleep(CONSOLE_POLL * 4);
        writer.write_all(b"second\n").unwrap();
        gone.store(true, Ordering::SeqCst);
        assert_eq!(lines.join().unwrap(), ["first", "second"]);
    }
}
