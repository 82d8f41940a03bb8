//! Running a short command (`ip addr …`) with a bound on how long it may take: it runs in
//! `all`'s host pass (`all/host_pass.rs`), which a stop waits for before taking the metadata
//! address off the bridges, so an `ip` stuck behind the kernel's routing lock (rtnl) must not
//! hold a stop up for good. Past the bound the
//! command is killed and the attempt reported failed; a thread of its own reaps it, as a
//! process in uninterruptible sleep dies only once it wakes.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running command is checked for having exited.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// What a command that finished in time said: whether it succeeded, and its standard error.
pub struct Finished {
    pub success: bool,
    pub stderr: String,
}

/// Runs `command` (its standard output discarded, standard error kept) for at most `bound`;
/// `shown` names it in errors.
pub fn run(command: &mut Command, bound: Duration, shown: &str) -> Result<Finished, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {shown}: {err}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Ok(Finished {
                    success: status.success(),
                    stderr,
                });
            }
            Ok(None) if started.elapsed() < bound => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                abandon(child);
                return Err(format!(
                    "{shown} did not finish within {bound:?} (the kernel's routing lock held by \
                     another program?): killed it; see what holds it (`ps -eo pid,stat,cmd | \
                     grep ' D'`)"
                ));
            }
            Err(err) => {
                abandon(child);
                return Err(format!("cannot wait for {shown}: {err}"));
            }
        }
    }
}

/// Kills `child` and reaps it on a thread of its own, whenever it dies.
fn abandon(mut child: Child) {
    let _ = child.kill();
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_bound_is_killed_and_reported() {
        let started = Instant::now();
        let bound = Duration::from_millis(200);
        let err = run(Command::new("sleep").arg("30"), bound, "sleep 30")
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        assert!(
            err.starts_with("sleep 30 did not finish within 200ms"),
            "{err}"
        );

        let done = run(
            Command::new("sh").args(["-c", "echo no >&2; exit 3"]),
            Duration::from_secs(10),
            "sh",
        )
        .unwrap();
        assert!(!done.success);
        assert_eq!(done.stderr.trim(), "no");
        let missing = run(
            &mut Command::new("/nonexistent/ip"),
            Duration::from_secs(1),
            "ip",
        );
        assert!(missing.err().unwrap().starts_with("cannot run ip"));
    }
}
