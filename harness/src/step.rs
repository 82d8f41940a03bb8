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
/// devices, temporary directories) on the way out. A second signal kills the process groups
/// of the steps in progress ([`crate::process::kill_unreaped_groups`]: no step goes on
/// writing into the cache once its build's lock is gone) and exits at once (130).
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
                let steps = crate::process::kill_unreaped_groups();
                eprintln!(
                    "\n{signal:?} again: ended {steps} step(s) in progress; exiting without \
                     cleaning up"
                );
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
    // Waited for on this thread to its end: it may die with this thread (and this process).
    let mut group = ProcessGroup::spawn_tied(what, cmd)?;
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

/// Appended to a build log's name, the log of the build before (the one a failure left, kept
/// for reading when the next build makes the same product).
pub const PREVIOUS_LOG_SUFFIX: &str = ".1";

/// Starts a build's log afresh at `log`, the previous build's moved to `<log>.1`
/// ([`PREVIOUS_LOG_SUFFIX`], replacing an older one): it stays for reading after a failure,
/// even once another build ran.
pub fn start_log(log: &Path) -> anyhow::Result<()> {
    let mut previous = log.as_os_str().to_owned();
    previous.push(PREVIOUS_LOG_SUFFIX);
    match fs::rename(log, &previous) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err)
                .with_context(|| format!("failed to keep the build log {}", log.display()));
        }
    }
    fs::write(log, b"").with_context(|| format!("failed to create the build log {}", log.display()))
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
    use crate::process::is_alive;
    use crate::wait::wait_until;
    use std::path::PathBuf;

    /// Names the directory of a helper run of this test binary (the "harness" a test kills),
    /// and which helper it is.
    const HELPER_DIR: &str = "METABOOT_TEST_STEP_HELPER";

    /// How long a helper, or a process it started, may take to get going or to end (a loaded
    /// machine may be slow to schedule it).
    const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

    /// Runs this test binary's `helper` test alone in a process of its own, in `dir`, with the
    /// stop signals blocked from the start in all its threads (as the harness blocks them
    /// before it starts any), so that they reach its signal thread only.
    fn start_helper(helper: &str, dir: &Path) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", &format!("step::tests::{helper}"), "--nocapture"])
            .env(HELPER_DIR, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Made here: the forked child must not allocate.
        let stop_signals = crate::process::stop_signal_set();
        // SAFETY: runs in the forked child before exec and only calls sigprocmask(2), which is
        // async-signal-safe, with a set copied in.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_BLOCK,
                    Some(&stop_signals),
                    None,
                )?;
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// The PID a helper's shell wrote to `file` (written whole, then renamed), once there.
    fn pid_written(file: &Path) -> u32 {
        assert!(
            wait_until(Instant::now() + HELPER_TIMEOUT, || file.is_file()),
            "the helper's step never started"
        );
        fs::read_to_string(file).unwrap().trim().parse().unwrap()
    }

    /// Whether `pid` ends within [`HELPER_TIMEOUT`]; kills it (this test's leftover) if not.
    fn ends(pid: u32) -> bool {
        let ended = wait_until(Instant::now() + HELPER_TIMEOUT, || !is_alive(pid));
        if !ended {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        ended
    }

    /// A shell line that writes its PID to `file` whole.
    fn write_pid(pid: &str, file: &Path) -> String {
        let file = file.display();
        format!("echo {pid} > '{file}.tmp' && mv '{file}.tmp' '{file}'")
    }

    /// The helper of [`a_step_dies_with_the_harness_killed_by_sigkill`]: a step that runs
    /// until it is killed (the shell replaced by `sleep`, keeping its PID).
    #[test]
    fn helper_running_a_step() {
        let Some(dir) = std::env::var_os(HELPER_DIR).map(PathBuf::from) else {
            return;
        };
        let script = format!("{}; exec sleep 600", write_pid("$$", &dir.join("step")));
        let _ = run_logged(
            "the endless step",
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(600),
            &dir.join("log"),
        );
    }

    /// Each build's log starts empty; the one before stays beside it, a failed build's log
    /// readable after the next build.
    #[test]
    fn a_new_log_keeps_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("debian-rootfs.log");
        let previous = dir
            .path()
            .join(format!("debian-rootfs.log{PREVIOUS_LOG_SUFFIX}"));
        start_log(&log).unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"");
        assert!(!previous.exists());
        fs::write(&log, "E: the first build failed\n").unwrap();
        start_log(&log).unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"");
        assert_eq!(
            fs::read_to_string(&previous).unwrap(),
            "E: the first build failed\n"
        );
        fs::write(&log, "the second build\n").unwrap();
        start_log(&log).unwrap();
        assert_eq!(fs::read_to_string(&previous).unwrap(), "the second build\n");
    }

    /// The helper of [`a_second_stop_signal_ends_the_steps_before_exiting`]: a step's group
    /// (a shell and its `sleep`) that nothing waits for, as while the build's thread removes
    /// a scratch directory, and a thread that never returns.
    #[test]
    fn helper_holding_a_step_group() {
        let Some(dir) = std::env::var_os(HELPER_DIR).map(PathBuf::from) else {
            return;
        };
        interrupt_on_signal().unwrap();
        let script = format!("sleep 600 & {}; wait", write_pid("$!", &dir.join("step")));
        let _group = ProcessGroup::spawn("the step", Command::new("sh").args(["-c", &script]));
        thread::sleep(Duration::from_secs(600));
    }

    /// A second stop signal exits at once, but not before it has ended the steps in progress
    /// with their whole process groups: `std::process::exit` runs no destructor that would.
    #[test]
    fn a_second_stop_signal_ends_the_steps_before_exiting() {
        use nix::sys::signal::{Signal, kill};
        let dir = tempfile::tempdir().unwrap();
        let mut harness = start_helper("helper_holding_a_step_group", dir.path());
        let step = pid_written(&dir.path().join("step"));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(harness.id()).unwrap());
        // Two signals (the same one twice could merge into one pending signal).
        kill(pid, Signal::SIGINT).unwrap();
        kill(pid, Signal::SIGTERM).unwrap();
        let exited = wait_until(Instant::now() + HELPER_TIMEOUT, || {
            harness.try_wait().unwrap().is_some()
        });
        if !exited {
            harness.kill().unwrap();
        }
        let status = harness.wait().unwrap();
        assert!(exited && status.code() == Some(130), "{status}");
        assert!(ends(step), "the step outlived the harness's exit");
    }

    /// A harness killed by SIGKILL (no handler, no destructor runs) takes the step it was
    /// running along: the kernel kills it, so it writes no more into a cache whose lock died.
    #[test]
    fn a_step_dies_with_the_harness_killed_by_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let mut harness = start_helper("helper_running_a_step", dir.path());
        let step = pid_written(&dir.path().join("step"));
        harness.kill().unwrap();
        harness.wait().unwrap();
        assert!(
            ends(step),
            "the step outlived the harness killed by SIGKILL"
        );
    }

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
