//! The end-to-end scenarios: build the image, bring a lab up, boot guests in parallel, check
//! them from outside, take the lab down, report.

pub mod cloud_image;
pub mod libvirt_host;
pub mod matrix;
pub mod run;
pub mod userdata;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::guest::Via;
use crate::guest::libvirtd::Libvirtd;
use crate::image::Image;
use crate::lab::config::LabConfig;
use crate::lab::{self, Lab, LabOptions};
use crate::progress::Progress;
use crate::report::RunReport;
use matrix::Scenario;
use run::{Runner, ScenarioReport};

/// Default number of guests booting at once (2 cores: TCG uses one each, plus ssh and dnsmasq).
pub const DEFAULT_JOBS: usize = 2;

/// Most guests booting at once.
pub const MAX_JOBS: usize = 16;

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The id of the lab the run brings up (see [`lab::config::random_id`]).
    pub lab_id: String,
    /// The scenarios.
    pub scenarios: Vec<Scenario>,
    /// Guests booting at once, 1..=[`MAX_JOBS`].
    pub jobs: usize,
    /// The image.
    pub image: Image,
    /// The `metaboot-server` binary.
    pub server_bin: PathBuf,
    /// Root of the labs' state directories.
    pub state_root: PathBuf,
    /// Directory for the run's keys, disks and console logs.
    pub run_dir: PathBuf,
    /// Leave the lab up afterwards (for debugging).
    pub keep_lab: bool,
    /// Who starts the guests' QEMU.
    pub via: Via,
}

/// The programs a scenario run needs on the host (scripts/install-lab-deps installs them).
pub const LAB_TOOLS: [&str; 11] = [
    "qemu-system-x86_64",
    "dnsmasq",
    "iptables",
    "ip6tables",
    "ip",
    "ssh",
    "ssh-keygen",
    "mkfs.ext4",
    "apt-get",
    "dpkg",
    // A boot's instance is deleted when it ends; the next port given its address gets a lease
    // only once this released the old one.
    crate::lab::release::RELEASE_TOOL,
];

/// Checks that this machine can run guests: root, QEMU, the tools the lab calls.
pub fn preflight() -> anyhow::Result<()> {
    lab::require_root()?;
    let mut missing = Vec::new();
    for tool in LAB_TOOLS {
        if !crate::process::on_path(tool) {
            missing.push(tool);
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing tools: {} (scripts/install-lab-deps installs them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Refuses a number of parallel guests outside 1..=[`MAX_JOBS`].
pub fn check_jobs(jobs: usize) -> anyhow::Result<()> {
    if !(1..=MAX_JOBS).contains(&jobs) {
        bail!("--jobs must be 1..={MAX_JOBS}, not {jobs}");
    }
    Ok(())
}

/// Runs the scenarios in a fresh lab and takes the lab down again (unless `keep_lab`).
pub fn run(opts: &RunOptions, progress: &dyn Progress) -> anyhow::Result<RunReport> {
    check_jobs(opts.jobs)?;
    let started = Instant::now();
    let config = LabConfig::default_with_id(&opts.lab_id);
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("failed to create {}", opts.run_dir.display()))?;
    progress.stage("lab", &format!("bringing lab {} up", config.id));
    let lab_started = Instant::now();
    let mut lab = Lab::up(
        &config,
        &LabOptions {
            state_root: opts.state_root.clone(),
            server_bin: opts.server_bin.clone(),
        },
    )
    .with_context(|| format!("failed to bring lab {} up", config.id))?;
    if opts.keep_lab {
        // The user's from the start: a run killed before its end leaves it up too.
        lab.keep()
            .with_context(|| format!("failed to record lab {} as kept", config.id))?;
    }
    let lab_up_seconds = lab_started.elapsed().as_secs_f64();
    progress.done(
        "lab",
        true,
        &format!("lab {} up in {lab_up_seconds:.2} s", config.id),
    );
    // Takes the lab down even if a scenario thread panics (a bug): nothing may be left behind.
    let mut guard = DownOnDrop {
        state_root: &opts.state_root,
        id: &config.id,
        armed: true,
    };
    let result = with_libvirtd(opts.via, &lab, &opts.run_dir, || {
        run_in_lab(opts, &lab, progress)
    });
    guard.armed = false;
    if let Err(broken) = lab.require_running() {
        // Explains failed checks that would otherwise look like guest bugs.
        eprintln!("during the run: {broken:#}");
    }
    let server_log = lab::tail(&lab.server_log(), 40);
    down_unless_kept(lab, opts.keep_lab)?;
    let scenarios = result?;
    Ok(RunReport::new(
        &config.id,
        &opts.image,
        opts.jobs,
        lab_up_seconds,
        started.elapsed().as_secs_f64(),
        scenarios,
        server_log,
    ))
}

/// Takes `lab` down at the end of a run, or (`keep`, `--keep-lab`) leaves it up and says how
/// to take it down later.
pub fn down_unless_kept(mut lab: Lab, keep: bool) -> anyhow::Result<()> {
    if keep {
        // The user's now: the next `run` leaves it up.
        lab.keep().with_context(|| {
            format!(
                "lab {} is kept up, but the next `run` may take it down",
                lab.state().config.id
            )
        })?;
        eprintln!(
            "{}\nkept up: metaboot-harness lab down --id {}",
            lab.describe(),
            lab.state().config.id
        );
        Ok(())
    } else {
        lab.down().context("failed to take the lab down")
    }
}

/// Runs `body` with libvirt's daemons running in the lab's namespace when `via` is libvirt
/// (logs and config in `run_dir/libvirt`), and stops them afterwards, also when `body` fails.
pub fn with_libvirtd<T>(
    via: Via,
    lab: &Lab,
    run_dir: &std::path::Path,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if via != Via::Libvirt {
        return body();
    }
    let libvirtd = Libvirtd::start(&lab.state().bridge_ns, &run_dir.join("libvirt"))
        .context("failed to start libvirt's daemons")?;
    let result = body();
    let stopped = libvirtd.stop().context("failed to stop libvirt's daemons");
    let value = result?;
    stopped?;
    Ok(value)
}

/// Takes a lab down when dropped while armed, i.e. while a panic unwinds through `run`.
struct DownOnDrop<'a> {
    state_root: &'a std::path::Path,
    id: &'a str,
    armed: bool,
}

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(err) = lab::down(self.state_root, self.id)
        {
            eprintln!("failed to take lab {} down: {err:#}", self.id);
        }
    }
}

/// Set when a signal's teardown has begun (see [`tear_down_on_signal`]).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits for a signal's teardown to end the process, if one has begun: called before the
/// process would end by itself, so that it does not exit (0, with the lab up) under it.
pub fn yield_to_a_signal() {
    if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
        // The teardown exits the process when it is done (taking no lock here: it waits for
        // the one it needs).
        loop {
            std::thread::park();
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP ([`crate::process::STOP_SIGNALS`]), takes lab `lab_id` down
/// (guests included) and exits with 130; see [`on_stop_signals`] for a second and a third
/// signal.
///
/// Blocks them in the calling thread, which every thread started later inherits, and
/// waits for them on a dedicated thread: so an interrupted run leaves nothing behind. The
/// teardown waits for a build step or a guest start in progress (a build stops after it) and
/// holds [`lab::changes`] until the process exits, so nothing is made that it would miss.
pub fn tear_down_on_signal(state_root: &std::path::Path, lab_id: &str) -> anyhow::Result<()> {
    let state_root = state_root.to_owned();
    let id = lab_id.to_owned();
    on_stop_signals(lab_id, move || {
        if let Err(err) = lab::down(&state_root, &id) {
            eprintln!(
                "failed to take lab {id} down: {err:#}; run `metaboot-harness lab down --id {id}`"
            );
        }
    })
}

/// Where the teardown of [`on_stop_signals`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// Waiting for the step in progress to end (for [`lab::changes`]).
    Waiting,
    /// Running: every process started from now on is the teardown's own.
    Running,
}

/// The stop signals of a process that makes lab `lab_id`:
/// - the first stops a build after the step in progress ([`lab::stop_building`]), waits for
///   that step (for [`lab::changes`], held until the exit), runs `tear_down` and exits with
///   130;
/// - a second, while the teardown still waits, ends the steps in progress at once (their
///   process groups killed: [`crate::process::kill_unreaped_groups`]), whose owners then
///   remove what they made before the teardown runs;
/// - a third exits with 130 at once, leaving what is left to `metaboot-harness lab down`.
///
/// Blocks the signals in the calling thread (threads started later inherit the mask) and
/// waits for them on threads of its own.
pub fn on_stop_signals(
    lab_id: &str,
    tear_down: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    let set = crate::process::stop_signal_set();
    set.thread_block()
        .context("failed to block SIGINT/SIGTERM/SIGHUP")?;
    let id = lab_id.to_owned();
    std::thread::spawn(move || {
        let Ok(signal) = set.wait() else { return };
        STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
        lab::stop_building();
        eprintln!(
            "\n{signal:?}: taking lab {id} down after the step in progress \
             (again to end that step at once)"
        );
        let teardown = std::sync::Arc::new(Mutex::new(Teardown::Waiting));
        let running = std::sync::Arc::clone(&teardown);
        std::thread::spawn(move || {
            // Held until the exit below.
            let _changes = lab::changes();
            *running.lock().unwrap_or_else(|p| p.into_inner()) = Teardown::Running;
            tear_down();
            std::process::exit(130);
        });
        let mut again = 0;
        while let Ok(signal) = set.wait() {
            again += 1;
            // Held while killing: the teardown starts no process meanwhile.
            let teardown = teardown.lock().unwrap_or_else(|p| p.into_inner());
            if again == 1 && *teardown == Teardown::Waiting {
                let steps = crate::process::kill_unreaped_groups();
                eprintln!(
                    "{signal:?} again: ended {steps} step(s) in progress; taking lab {id} down \
                     (again to exit at once)"
                );
            } else if again == 1 {
                eprintln!("{signal:?} again: taking lab {id} down (again to exit at once)");
            } else {
                eprintln!(
                    "{signal:?} again: exiting; run `metaboot-harness lab down --id {id}` to \
                     remove what is left of the lab"
                );
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

fn run_in_lab(
    opts: &RunOptions,
    lab: &Lab,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<ScenarioReport>> {
    let askpass = crate::check::ssh::write_askpass(&opts.run_dir)?;
    let runner = Runner {
        lab,
        image: &opts.image,
        run_dir: opts.run_dir.clone(),
        askpass,
        progress,
        via: opts.via,
    };
    let queue: Mutex<VecDeque<(usize, Scenario)>> =
        Mutex::new(opts.scenarios.iter().copied().enumerate().collect());
    let results: Mutex<Vec<(usize, ScenarioReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.min(opts.scenarios.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((index, scenario)) = next else { break };
                    let report = runner.run(&scenario);
                    let summary = report
                        .error
                        .clone()
                        .or_else(|| {
                            report
                                .checks
                                .iter()
                                .find(|c| !c.passed)
                                .map(|c| format!("{}: {}", c.name, c.detail))
                        })
                        .unwrap_or_else(|| {
                            format!("{} checks in {:.1} s", report.checks.len(), report.seconds)
                        });
                    progress.done(&report.name, report.passed, &summary);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((index, report));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::process::is_alive;
    use crate::wait::wait_until;

    /// A run checks for the lease-releasing tool with the others: without it a boot's deleted
    /// port keeps its lease, and the next guest given its address gets none.
    #[test]
    fn the_lab_tools_include_the_lease_release() {
        assert!(LAB_TOOLS.contains(&crate::lab::release::RELEASE_TOOL));
        assert!(LAB_TOOLS.contains(&"dnsmasq"));
    }

    /// Environment variable that turns the test binary, re-executed, into the process of
    /// `a_second_stop_signal_ends_the_step_in_progress`: the directory it writes into.
    const STOP_CHILD: &str = "METABOOT_TEST_STOP_SIGNALS_CHILD";

    /// Child half: a build of two long steps (`sleep` children writing their PID first) under
    /// [`lab::changes`], as `lab up` runs it, whose error path notes what failed, and a
    /// teardown that notes it ran.
    #[test]
    fn stop_signals_child() {
        let Some(dir) = std::env::var_os(STOP_CHILD).map(PathBuf::from) else {
            return;
        };
        let events = dir.join("events");
        let note = move |line: &str| {
            let mut text = std::fs::read_to_string(&events).unwrap_or_default();
            text.push_str(line);
            text.push('\n');
            std::fs::write(&events, text).unwrap();
        };
        let noted = note.clone();
        on_stop_signals("test", move || noted("teardown")).unwrap();
        let building = lab::changes();
        let built = (|| -> anyhow::Result<()> {
            for step in ["step1", "step2"] {
                lab::unless_stopped()?;
                let script = format!("echo $$ > {}; exec sleep 60", dir.join(step).display());
                crate::process::check_timeout(
                    Command::new("sh").args(["-c", &script]),
                    Duration::from_secs(120),
                )?;
            }
            Ok(())
        })();
        if let Err(err) = built {
            note(&format!("build failed: {err:#}"));
        }
        drop(building);
        yield_to_a_signal();
        note("exited by itself");
    }

    /// How long the child of [`a_second_stop_signal_ends_the_step_in_progress`] may take to
    /// say it took the first signal (a loaded machine may be slow to schedule it).
    const FIRST_SIGNAL_TAKEN_TIMEOUT: Duration = Duration::from_secs(60);

    /// Ctrl-C while a lab is built waits for the step in progress; Ctrl-C again ends that
    /// step at once (its process group killed), the build removes what it made, the teardown
    /// runs, and the process exits with 130, the next step never started.
    #[test]
    fn a_second_stop_signal_ends_the_step_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "scenario::tests::stop_signals_child",
            "--nocapture",
        ])
        .env(STOP_CHILD, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // Made here: building it reads SIGHUP's action once (a `OnceLock`) and allocates,
        // which the forked child must not do.
        let stop_signals = crate::process::stop_signal_set();
        // SAFETY: runs in the forked child before exec and only calls setpgid(2) and
        // sigprocmask(2), which are async-signal-safe, with a set copied in. The stop signals
        // start blocked in every thread of the test binary, as `lab up` blocks them before it
        // starts any.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?;
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_BLOCK,
                    Some(&stop_signals),
                    None,
                )?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        // Its stderr, line by line as it comes, and whole at the end.
        let (lines, said) = mpsc::channel();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in stderr.lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = lines.send(line);
            }
            all
        });
        let step_pid = |step: &str| -> Option<u32> {
            std::fs::read_to_string(dir.path().join(step))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let interrupt = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let soon = || std::time::Instant::now() + Duration::from_secs(10);
        assert!(wait_until(soon(), || step_pid("step1").is_some()));
        let step1 = step_pid("step1").unwrap();

        interrupt();
        // The second only once the first was taken: two delivered before the child's signal
        // thread took the first would merge into one.
        let deadline = std::time::Instant::now() + FIRST_SIGNAL_TAKEN_TIMEOUT;
        let took_first = std::iter::from_fn(|| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            said.recv_timeout(left).ok()
        })
        .any(|line| line.contains("again to end that step at once"));
        // The first waits for the step in progress (a while, so that ending it would show).
        std::thread::sleep(Duration::from_millis(500));
        let waited = child.try_wait().unwrap();
        let step_alive = is_alive(step1);
        if took_first {
            interrupt();
        }
        let exited = took_first && wait_until(soon(), || child.try_wait().unwrap().is_some());
        if !exited {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(step1).unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let status = child.wait().unwrap();
        let stderr = reader.join().unwrap();
        assert!(took_first, "the first signal was not taken: {stderr}");
        assert_eq!(waited, None, "the first signal ended it: {stderr}");
        assert!(step_alive, "the first signal ended the step: {stderr}");
        assert!(exited, "a second signal did not end it: {stderr}");
        assert_eq!(status.code(), Some(130), "{stderr}");
        assert!(!is_alive(step1), "the step outlived the process");
        assert!(step_pid("step2").is_none(), "the next step started");
        let events = std::fs::read_to_string(dir.path().join("events")).unwrap();
        let events: Vec<&str> = events.lines().collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].starts_with("build failed: sh -c"), "{events:?}");
        assert_eq!(events[1], "teardown", "{events:?}");
        assert!(
            stderr.contains("again to end that step at once"),
            "{stderr}"
        );
        assert!(
            stderr.contains("SIGINT again: ended 1 step(s) in progress"),
            "{stderr}"
        );
    }

    #[test]
    fn parallel_guests_are_bounded() {
        assert!(check_jobs(1).is_ok());
        assert!(check_jobs(DEFAULT_JOBS).is_ok());
        assert!(check_jobs(MAX_JOBS).is_ok());
        assert!(check_jobs(0).is_err());
        let err = check_jobs(MAX_JOBS + 1).unwrap_err().to_string();
        assert!(err.contains("--jobs"), "{err}");
    }
}
