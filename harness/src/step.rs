//! Long steps of an image build: run with their output appended to a log file (not kept in
//! memory), stopped at a deadline or on Ctrl-C, and failing with one line that says what
//! failed, how, and where the whole log is.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{ProcessGroup, describe};

/// Set once SIGINT, SIGTERM or SIGHUP arrived after [`interrupt_on_signal`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT, SIGTERM or SIGHUP arrived since [`interrupt_on_signal`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Turns SIGINT, SIGTERM and SIGHUP ([`crate::process::STOP_SIGNALS`]) into [`interrupted`]: a step run with [`run_logged`] then stops
/// (its process group killed) and fails, so the caller's guards release what they hold (loop
/// devices, temporary directories) on the way out. A second signal exits at once (130).
///
/// Blocks them in the calling thread, which threads started later inherit, and waits
/// for them on a thread of its own (children get an empty mask: see
/// [`ProcessGroup::spawn`]).
pub fn interrupt_on_signal() -> anyhow::Result<()> {
    let set = crate::process::stop_signal_set();
    set.thread_block()
        .context("failed to block SIGINT/SIGTERM/SIGHUP")?;
    thread::spawn(move || {
        while let Ok(signal) = set.wait() {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\n{signal:?} again: exiting without cleaning up");
                std::process::exit(130);
            }
            eprintln!("\n{signal:?}: stopping; cleaning up (again to exit at once)");
        }
    });
    Ok(())
}

/// How long [`run_logged`] waits between checks of the deadline and [`interrupted`].
const STEP_POLL: Duration = Duration::from_millis(200);

/// Longest last line of a log quoted in an error.
pub const MAX_QUOTED_LINE: usize = 240;

/// Runs a long step (`what`, for messages) with its stdout and stderr appended to `log`
/// instead of memory; its process group is killed at `timeout` or once [`interrupted`].
///
/// Fails with one line: what failed and how, the log's last line, and where the log is.
pub fn run_logged(
    what: &str,
    cmd: &mut Command,
    timeout: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("failed to open the build log {}", log.display()))?;
    writeln!(file, "\n$ {}", describe(cmd))
        .with_context(|| format!("failed to write {}", log.display()))?;
    let err = file
        .try_clone()
        .context("failed to duplicate a log file handle")?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    let mut group = ProcessGroup::spawn(what, cmd)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = group.wait_timeout(STEP_POLL)? {
            break status;
        }
        if interrupted() {
            group.kill()?;
            bail!("{what} was interrupted");
        }
        if Instant::now() >= deadline {
            group.kill()?;
            bail!(
                "{what} did not finish within {timeout:?}: {} (full log: {})",
                last_line(log),
                log.display()
            );
        }
    };
    // A finished leader may leave children behind; they belong to the step.
    group.kill()?;
    if !status.success() {
        bail!(
            "{what} failed ({status}): {} (full log: {})",
            last_line(log),
            log.display()
        );
    }
    Ok(())
}

/// The last non-empty line of a log file, cut to [`MAX_QUOTED_LINE`] characters.
fn last_line(log: &Path) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no output");
    line.chars().take(MAX_QUOTED_LINE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_logged_keeps_the_output_in_the_log_and_quotes_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        run_logged(
            "echo",
            Command::new("sh").args(["-c", "echo one; echo two >&2"]),
            Duration::from_secs(10),
            &log,
        )
        .unwrap();
        let err = run_logged(
            "the failing step",
            Command::new("sh").args(["-c", "echo 'E: what went wrong'; echo; exit 3"]),
            Duration::from_secs(10),
            &log,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("the failing step failed"), "{err}");
        assert!(err.contains("E: what went wrong"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("one\ntwo\n"), "{text}");
        assert!(text.contains("$ sh -c echo one"), "{text}");

        let start = Instant::now();
        let err = run_logged(
            "the slow step",
            Command::new("sh").args(["-c", "echo started; sleep 30"]),
            Duration::from_millis(300),
            &log,
        )
        .unwrap_err()
        .to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            err.contains("did not finish") && err.contains("started"),
            "{err}"
        );
        assert_eq!(last_line(&dir.path().join("missing")), "no output");
        let long = "x".repeat(MAX_QUOTED_LINE * 2);
        fs::write(&log, &long).unwrap();
        assert_eq!(last_line(&log).len(), MAX_QUOTED_LINE);
    }
}
