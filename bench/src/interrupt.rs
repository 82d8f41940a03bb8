//! Ctrl-C during a bench: stop what runs and clean up, instead of leaving servers, namespaces
//! and labs behind.
//!
//! SIGINT and SIGTERM are blocked in every thread and taken by one waiting thread, which
//! raises a flag and kills the process groups of this process's children (the servers, wrk,
//! QEMU). What was waiting on them then fails at once, the bench sees the flag, and its
//! guards (namespaces, the PostgreSQL server, the lab) are dropped normally. A second signal
//! exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Exit code after an interruption (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handler; call before starting any thread.
pub fn install() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()
        .context("failed to block SIGINT/SIGTERM")?;
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\n{signal:?}: stopping the bench and cleaning up (again to exit at once)");
            kill_children();
            if set.wait().is_ok() {
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    });
    Ok(())
}

/// Whether a stop signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails when a stop signal arrived (for long loops without children, e.g. registry writes).
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Kills every child of this process with its process group when it leads one.
fn kill_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((ppid, pgid)) = parent_and_group(&stat) else {
            continue;
        };
        if ppid != me {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if pgid == pid {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        } else {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// (ppid, pgrp) from a `/proc/PID/stat` line; the command name may contain spaces and ')'.
fn parent_and_group(stat: &str) -> Option<(u32, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parent_and_group() {
        assert_eq!(
            parent_and_group("42 (a b) c)) S 7 42 42 0 -1"),
            Some((7, 42))
        );
        assert_eq!(parent_and_group("nonsense"), None);
        assert!(check().is_ok());
    }
}
