//! Child processes in their own process groups: killed with their whole group, waited with deadlines.
//!
//! Every process the harness starts (QEMU, dnsmasq, `metaboot-server all`, ssh, helpers) gets its
//! own process group, so killing it also kills whatever it forked, and nothing the harness did not
//! start is ever signalled. Short-lived children are [`ProcessGroup`]s, killed on drop. The lab's
//! daemons outlive the `lab up` command: they are [`Daemon`]s, recorded by PID and start time so a
//! later `lab down` signals only the very process that was started (never a reused PID).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::wait::{POLL_INTERVAL, wait_until};

/// The signals on which the harness stops and cleans up: Ctrl-C, `kill`, and the terminal going
/// away (an ssh session that dropped), whose default action would leave a lab behind.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// [`STOP_SIGNALS`], less SIGHUP when the harness was started ignoring it (`nohup`): a signal
/// that is blocked and waited for is taken even when ignored, so it is left out instead.
pub fn stop_signals() -> Vec<Signal> {
    stop_signals_given(hangup_ignored())
}

fn stop_signals_given(hangup_ignored: bool) -> Vec<Signal> {
    STOP_SIGNALS
        .into_iter()
        .filter(|signal| !(hangup_ignored && *signal == Signal::SIGHUP))
        .collect()
}

/// Whether SIGHUP was ignored when the process started, read once, before a handler or a
/// blocked mask of the harness's own takes its place.
fn hangup_ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| {
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: with a null new action sigaction(2) only writes the current one into `old`,
        // which points at memory of that type.
        let rc = unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), old.as_mut_ptr()) };
        // SAFETY: all zeroes is a valid `sigaction`, and a successful call filled it.
        rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
    })
}

/// [`stop_signals`] as a set, to block and wait for.
pub fn stop_signal_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for signal in stop_signals() {
        set.add(signal);
    }
    set
}

/// How long a killed process group may take to disappear before the harness reports it.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Default deadline for a helper command (ip, iptables, mkfs, …) that should finish at once.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The leaders of the process groups [`ProcessGroup::spawn`] started that this process has not
/// reaped: while one is not reaped (a zombie keeps its PID), its PID, the group's id, names no
/// other process's group. Only its [`ProcessGroup`] reaps a leader, under this lock, taking
/// it out of the set; [`reap`] (for [`Found::is_running`] and [`Daemon::stop`]) leaves alone
/// the PIDs the set holds. So [`kill_unreaped_groups`] never signals a group id that was handed
/// on, and a group's owner always gets its leader's exit status.
static UNREAPED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn unreaped() -> MutexGuard<'static, BTreeSet<u32>> {
    UNREAPED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills (SIGKILL) the process group of every [`ProcessGroup`] whose leader is not reaped yet:
/// the steps in progress, for a user who does not want to wait for them. Their owners see
/// them end as killed. Returns how many groups were signalled.
pub fn kill_unreaped_groups() -> usize {
    let groups = unreaped();
    for pid in groups.iter() {
        let _ = killpg(pid_of(*pid), Signal::SIGKILL);
    }
    groups.len()
}

/// A child process leading its own process group; the group is killed when this is dropped.
#[derive(Debug)]
pub struct ProcessGroup {
    name: String,
    child: Child,
    leader: Leader,
    /// The leader's start time (see [`Daemon::start_ticks`]): once the leader is reaped, its
    /// PID, the group's id, may be another process's.
    start_ticks: Option<u64>,
}

/// Whether a [`ProcessGroup`]'s leader dies with the thread that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tie {
    /// It outlives it (QEMU, servers: owned by whoever holds the group).
    None,
    /// SIGKILL when the starting thread ends (see [`ProcessGroup::spawn_tied`]).
    ToThisThread,
}

/// Whether a [`ProcessGroup`]'s leader was reaped, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    /// Not reaped: its PID is the group's id, and no other process's.
    Unreaped,
    /// Reaped by its [`ProcessGroup`], with its exit status.
    Exited(ExitStatus),
    /// Reaped by someone else (polling it failed, ECHILD): its exit status is lost, and since
    /// then its PID, the group's id, may be another process's; the group is never signalled
    /// again.
    ReapedElsewhere,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        Self::spawn_as(name, cmd, Tie::None)
    }

    /// Spawns `cmd` as the leader of a new process group that the kernel kills (SIGKILL) when
    /// this process dies, even by SIGKILL, so that no step of a build goes on writing into a
    /// cache whose lock died with its build.
    ///
    /// The kernel sends the signal when the *thread* that forked the child ends, not only the
    /// process: call this from the thread that waits for the child to its end (as
    /// [`crate::step::run_logged`] does), never from one that hands the group to another.
    /// Only the leader gets the signal: it must take its own children along (`exec`, or
    /// `unshare --kill-child` whose PID namespace dies with the leader's child).
    pub fn spawn_tied(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        Self::spawn_as(name, cmd, Tie::ToThisThread)
    }

    fn spawn_as(name: &str, cmd: &mut Command, tie: Tie) -> anyhow::Result<Self> {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec and only calls setpgid(2),
        // sigprocmask(2), prctl(2) and getppid(2), which are async-signal-safe; it touches no
        // memory shared with the parent and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                unblock_signals()?;
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))
                    .map_err(io::Error::from)?;
                if tie == Tie::ToThisThread {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent died before the prctl took: no signal will come.
                    if nix::unistd::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                Ok(())
            });
        }
        // Recorded before anyone could kill the group meanwhile: see [`kill_unreaped_groups`].
        let mut groups = unreaped();
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {name} ({})", describe(cmd)))?;
        groups.insert(child.id());
        drop(groups);
        // Not reaped yet: readable even when the leader has already exited.
        let start_ticks = start_ticks(child.id());
        Ok(Self {
            name: name.to_owned(),
            child,
            leader: Leader::Unreaped,
            start_ticks,
        })
    }

    /// The leader's PID (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child, to take its pipes (waiting for it goes through [`Self::try_wait`] and
    /// [`Self::wait_timeout`], which keep the record [`kill_unreaped_groups`] reads).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the leader has exited, without blocking; fails when someone else
    /// reaped the leader (its exit status is lost).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.poll() {
            Leader::Unreaped => Ok(None),
            Leader::Exited(status) => Ok(Some(status)),
            Leader::ReapedElsewhere => bail!(
                "failed to poll {} (pid {}): it was reaped elsewhere, its exit status is lost",
                self.name,
                self.pid()
            ),
        }
    }

    /// Reaps the leader if it has exited, taking it out of [`UNREAPED`] once it is reaped
    /// (here, or by someone else when polling fails).
    fn poll(&mut self) -> Leader {
        if self.leader == Leader::Unreaped {
            let mut groups = unreaped();
            self.leader = match self.child.try_wait() {
                Ok(None) => Leader::Unreaped,
                Ok(Some(status)) => Leader::Exited(status),
                Err(_) => Leader::ReapedElsewhere,
            };
            if self.leader != Leader::Unreaped {
                groups.remove(&self.child.id());
            }
        }
        self.leader
    }

    /// Waits for the leader to exit until `timeout` passes; `None` when it is still running.
    ///
    /// Polls from 1 ms doubling up to [`POLL_INTERVAL`]: the lab runs dozens of `ip` commands
    /// that finish in a few milliseconds, and a flat 50 ms poll would add up to seconds.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_INTERVAL);
        }
    }

    /// Kills the whole process group with SIGKILL and reaps the leader.
    ///
    /// Fails without signalling anything when someone else reaped the leader: the group's id
    /// may name another process's group since then.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let pgid = pid_of(self.child.id());
        if self.poll() == Leader::ReapedElsewhere {
            bail!(
                "{} (pid {pgid}) was reaped elsewhere: its process group is not killed, its id \
                 may be another's now",
                self.name
            );
        }
        // The group may already be gone (ESRCH): that is the state we want.
        if !self.group_id_reused() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        match self.wait_timeout(KILL_TIMEOUT)? {
            Some(_) => Ok(()),
            None => bail!(
                "{} (pid {}) survived SIGKILL for {KILL_TIMEOUT:?}",
                self.name,
                pgid
            ),
        }
    }

    /// Whether the group's id now names another process's group: the leader was reaped and its
    /// PID belongs to a process started later. (The kernel hands out no PID that is still a
    /// group's id, so while members of the group live, the PID names no other process.)
    fn group_id_reused(&self) -> bool {
        group_id_reused(
            self.child.id(),
            matches!(self.leader, Leader::Exited(_)),
            self.start_ticks,
        )
    }
}

/// Whether group id `pid`, whose leader started at `start_ticks` and has been `reaped`, now
/// names a process started later (see [`ProcessGroup::group_id_reused`]).
fn group_id_reused(pid: u32, reaped: bool, start_ticks_then: Option<u64>) -> bool {
    reaped && start_ticks(pid).is_some_and(|now| Some(now) != start_ticks_then)
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            tracing::warn!("{err:#}");
        }
    }
}

/// Runs `cmd` to completion with its output captured, killing its group after `timeout`.
///
/// Fails when the command cannot start or outlives the deadline; the exit status is returned, not
/// judged (see [`check`] for that).
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = describe(cmd);
    let mut group = ProcessGroup::spawn(&what, cmd)?;
    let stdout = group.child_mut().stdout.take().map(read_in_background);
    let stderr = group.child_mut().stderr.take().map(read_in_background);
    let status = group.wait_timeout(timeout)?;
    // Kill the group either way: a finished leader may have left children holding the pipes.
    group.kill()?;
    let stdout = stdout.map(join_reader).unwrap_or_default();
    let stderr = stderr.map(join_reader).unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{what} did not finish within {timeout:?}; its output so far:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Runs `cmd` with [`COMMAND_TIMEOUT`] and fails with its stderr unless it exits 0; returns stdout.
pub fn check(cmd: &mut Command) -> anyhow::Result<String> {
    check_timeout(cmd, COMMAND_TIMEOUT)
}

/// Like [`check`] with an explicit deadline.
pub fn check_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let out = output_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The PIDs of the processes this one can see (`/proc`'s numeric entries); none when `/proc`
/// cannot be read.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Whether process `pid` has ended and waits for its parent to reap it (state `Z` in its
/// stat, which follows the command name: that is in parentheses and may hold any byte).
pub fn is_zombie(pid: u32) -> bool {
    state_of(pid) == Some('Z')
}

/// Whether a process `pid` exists and has not ended (a zombie has).
pub fn is_alive(pid: u32) -> bool {
    state_of(pid).is_some_and(|state| state != 'Z')
}

/// The state letter of process `pid` (`R`, `S`, `Z`, …); `None` when there is no such process.
fn state_of(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(state, _)| state)
}

/// Whether `tool` is an executable on the PATH or in root's sbin directories (which a
/// non-login PATH may lack).
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from));
    dirs.iter().any(|d| d.join(tool).is_file())
}

/// For tests: whether `tool` is installed ([`on_path`]). Its absence fails the test in CI
/// (`CI=true`); elsewhere the test skips, saying why and how `installed_by` gets it.
#[cfg(test)]
pub(crate) fn tool_for_test(tool: &str, installed_by: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    let why = format!("{tool} is missing ({installed_by})");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
    false
}

/// A command line as one string, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error only truncates what we show; the exit status still decides.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn join_reader(handle: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

fn pid_of(pid: u32) -> Pid {
    // PIDs fit in i32 on Linux (pid_max ≤ 2^22).
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// A long-running process of a lab (dnsmasq, `metaboot-server all`), detached into its own session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Daemon {
    /// What it is, for messages ("dnsmasq for net1").
    pub name: String,
    /// Its PID, which is also its process group and session id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22): tells it apart from a
    /// later process that reuses the PID.
    pub start_ticks: u64,
}

impl Daemon {
    /// Starts `cmd` in a new session with stdin from /dev/null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("failed to open {}", log.display()))?;
        let err = file
            .try_clone()
            .context("failed to duplicate a log file handle")?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        // SAFETY: runs in the forked child before exec and only calls sigprocmask(2) and
        // setsid(2), which are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                unblock_signals()?;
                nix::unistd::setsid().map(|_| ()).map_err(io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {name} ({})", describe(cmd)))?;
        let pid = child.id();
        // The daemon must outlive this process: drop the handle without killing it. A zombie left
        // behind is reaped when it is stopped (see `stop`) or when the harness exits.
        drop(child);
        let start_ticks = start_ticks(pid)
            .with_context(|| format!("{name} (pid {pid}) exited at once; see {}", log.display()))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
            start_ticks,
        })
    }

    /// Whether this very process is still alive (same PID and start time, not a zombie).
    pub fn is_running(&self) -> bool {
        is_running(self.pid, self.start_ticks)
    }

    /// Stops the daemon's whole process group: SIGTERM, then SIGKILL after `grace`; then the
    /// processes it started that are still in its session (a child forked but not yet
    /// exec'd, one that did not take the group's SIGTERM at once), the same way, so none
    /// outlives the stop.
    ///
    /// Does nothing to a PID that now belongs to another process, nor to a session of its
    /// number when the daemon had already ended: its number may have been handed on to a
    /// session leader that has exited since (a double-forked daemon's), whose session it
    /// would name. While it runs, and while what it started holds its number as their
    /// session id, the number is not handed on.
    pub fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        if !self.is_running() {
            reap(self.pid);
            return Ok(());
        }
        let pgid = pid_of(self.pid);
        let _ = killpg(pgid, Signal::SIGTERM);
        if !wait_until(Instant::now() + grace, || {
            reap(self.pid);
            !self.is_running()
        }) {
            let _ = killpg(pgid, Signal::SIGKILL);
            if !wait_until(Instant::now() + KILL_TIMEOUT, || {
                reap(self.pid);
                !self.is_running()
            }) {
                bail!("{} (pid {}) survived SIGKILL", self.name, self.pid);
            }
        }
        reap(self.pid);
        self.stop_session(grace)
    }

    /// Ends the processes left in the daemon's session after [`Daemon::stop`] ended it:
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop_session(&self, grace: Duration) -> anyhow::Result<()> {
        for (signal, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, KILL_TIMEOUT)] {
            let members = session_members(self.pid);
            if members.is_empty() {
                return Ok(());
            }
            for pid in members {
                let _ = nix::sys::signal::kill(pid_of(pid), signal);
            }
            if wait_until(Instant::now() + wait, || {
                session_members(self.pid).is_empty()
            }) {
                return Ok(());
            }
        }
        bail!(
            "processes {:?} that {} (pid {}) started survived SIGKILL",
            session_members(self.pid),
            self.name,
            self.pid
        )
    }

    /// Sends `signal` to the daemon (for dnsmasq's SIGHUP) if it is still the same process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if !self.is_running() {
            bail!("{} (pid {}) is not running", self.name, self.pid);
        }
        nix::sys::signal::kill(pid_of(self.pid), signal)
            .with_context(|| format!("failed to signal {}", self.name))
    }
}

/// Whether process `pid` is the one that started at `start_ticks` and has not ended (a zombie
/// has): a PID alone may name a later process once the first was reaped.
pub fn is_running(pid: u32, start_ticks: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            parse_stat(&stat).is_some_and(|(state, ticks)| ticks == start_ticks && state != 'Z')
        }
        Err(_) => false,
    }
}

/// A process the harness did not start but found (in `/proc`) and may have to end: known by
/// its PID and its start time when it was found, so a signal never reaches a later process
/// that took the PID after this one ended (see [`Daemon::start_ticks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its PID when it was found.
    pub pid: u32,
    /// Its command name, for messages.
    pub name: String,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

impl Found {
    /// Process `pid` as it is now (name and start time); `None` when there is none, or it has
    /// ended.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start_ticks) = parse_stat(&stat)?;
        if state == 'Z' {
            return None;
        }
        let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        Some(Self {
            pid,
            name: name.trim().to_owned(),
            start_ticks,
        })
    }

    /// Whether the process found is still running; reaps it when it has ended and is a child
    /// of this process (never another child that took its PID), unless it leads a
    /// [`ProcessGroup`], whose owner reaps it.
    pub fn is_running(&self) -> bool {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            && parse_stat(&stat) == Some(('Z', self.start_ticks))
        {
            reap(self.pid);
        }
        is_running(self.pid, self.start_ticks)
    }

    /// Sends `signal` to the process found if it is still running; whether it was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        is_running(self.pid, self.start_ticks)
            && nix::sys::signal::kill(pid_of(self.pid), signal).is_ok()
    }
}

/// Gives a child an empty signal mask: the harness blocks [`STOP_SIGNALS`] in its own threads
/// (to tear its lab down on them), and a child inherits the mask, so without this a daemon
/// would ignore the SIGTERM that stops it.
fn unblock_signals() -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// Reaps `pid` if it is an exited child of this process; harmless otherwise (ECHILD).
///
/// Leaves alone a [`ProcessGroup`]'s leader (in [`UNREAPED`], checked under its lock, so no
/// group can start with that PID meanwhile): its owner reaps it, for its exit status, and
/// would otherwise signal a group id that may be handed on.
fn reap(pid: u32) {
    let groups = unreaped();
    if !groups.contains(&pid) {
        let _ = nix::sys::wait::waitpid(pid_of(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// The start time of `pid` in clock ticks since boot, if it is alive.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

/// The live processes (not zombies) whose session id is `session`, as `/proc` lists them now.
fn session_members(session: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_session(&stat))
                .is_some_and(|(state, sid)| sid == session && state != 'Z')
        })
        .collect()
}

/// (state, session id) from a `/proc/PID/stat` line: fields 3 and 6.
fn parse_session(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state: ppid, pgrp, session.
    let session = fields.nth(2)?.parse().ok()?;
    Some((state, session))
}

/// (state, starttime) from a `/proc/PID/stat` line; the command name may contain spaces and ')'.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4..; starttime is field 22, i.e. the 19th after the state.
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `nohup` SIGHUP stays ignored: it is no stop signal then.
    #[test]
    fn a_hangup_ignored_at_start_is_no_stop_signal() {
        assert_eq!(stop_signals_given(false), STOP_SIGNALS);
        assert_eq!(stop_signals_given(true), [Signal::SIGINT, Signal::SIGTERM]);
    }

    /// A group whose leader was reaped is not killed when its id is now another process's
    /// (here a live process, standing for one that took the PID); a leader not yet reaped, or
    /// the same process, is the group's own.
    #[test]
    fn a_reaped_leaders_pid_taken_by_another_process_is_not_killed() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let other = ProcessGroup::spawn("sleep", &mut sleep).unwrap();
        let ticks = start_ticks(other.pid());
        assert!(ticks.is_some());
        let earlier = ticks.map(|t| t.wrapping_sub(1));
        assert!(group_id_reused(other.pid(), true, earlier));
        assert!(!group_id_reused(other.pid(), true, ticks));
        assert!(!group_id_reused(other.pid(), false, earlier));
        // Gone altogether: its members, if any, are the group's.
        assert!(!group_id_reused(u32::MAX, true, earlier));
    }

    /// A child that ended and is not reaped yet is a zombie; a running process is not.
    #[test]
    fn a_child_not_yet_reaped_is_a_zombie() {
        assert!(!is_zombie(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_zombie(child.id()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(is_zombie(child.id()));
        child.wait().unwrap();
    }

    #[test]
    fn a_process_is_alive_until_it_ends() {
        assert!(is_alive(std::process::id()));
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let pid = child.id();
        assert!(is_alive(pid));
        child.kill().unwrap();
        // Ended, not reaped yet (once reaped, its PID may go to another process).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_zombie(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_alive(pid));
        child.wait().unwrap();
        // Above Linux's PID_MAX_LIMIT (2^22): never a process.
        assert!(!is_alive(1 << 23));
    }

    /// Waits (10 s at most) until `pid` has ended and waits to be reaped.
    fn until_zombie(pid: u32) -> bool {
        wait_until(Instant::now() + Duration::from_secs(10), || is_zombie(pid))
    }

    /// A teardown that ends the processes it finds (as `lab down` does in a namespace) and
    /// finds a group's leader, here ended by SIGTERM, leaves it to its owner to reap: the
    /// owner sees how it exited.
    #[test]
    fn a_found_group_leader_is_reaped_by_its_owner_only() {
        use std::os::unix::process::ExitStatusExt;

        let mut group = ProcessGroup::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let found = Found::read(group.pid()).unwrap();
        assert!(found.signal(Signal::SIGTERM));
        assert!(until_zombie(group.pid()));
        assert!(!found.is_running());
        let status = group.try_wait().unwrap().expect("the sleep ended");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
        assert!(!unreaped().contains(&group.pid()));
    }

    /// Stopping a daemon whose record names the PID of a group's leader (the daemon's PID
    /// taken, once it ended, by a child of this process) leaves that leader to its owner.
    #[test]
    fn stopping_a_daemon_leaves_a_group_leader_with_its_pid_to_its_owner() {
        let mut group =
            ProcessGroup::spawn("sh", Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert!(until_zombie(group.pid()));
        let daemon = Daemon {
            name: "dnsmasq".to_owned(),
            pid: group.pid(),
            start_ticks: 0,
        };
        daemon.stop(Duration::from_millis(100)).unwrap();
        let status = group.try_wait().unwrap().expect("the shell exited");
        assert_eq!(status.code(), Some(3), "{status}");
    }

    /// A group whose leader someone else reaped (here the test itself, bypassing
    /// [`UNREAPED`]) is never signalled again: its id may be another group's by then (here the
    /// group lives on in the leader's `sleep`, which must survive). Its owner gets an error.
    #[test]
    fn a_group_whose_leader_was_reaped_elsewhere_is_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("member");
        let script = format!("sleep 60 & echo $! > {}", pidfile.display());
        let mut group =
            ProcessGroup::spawn("sh", Command::new("sh").args(["-c", &script])).unwrap();
        assert!(until_zombie(group.pid()));
        let member: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::wait::waitpid(pid_of(group.pid()), None).unwrap();

        let polled = group.try_wait().map_err(|e| format!("{e:#}"));
        let killed = group.kill().map_err(|e| format!("{e:#}"));
        drop(group);
        // A SIGKILL would have ended it well within this.
        let ended = wait_until(Instant::now() + Duration::from_secs(2), || {
            !is_alive(member)
        });
        if !ended {
            let _ = nix::sys::signal::kill(pid_of(member), Signal::SIGKILL);
        }
        assert!(
            !ended,
            "the group was signalled after its leader was reaped elsewhere"
        );
        let polled = polled.unwrap_err();
        assert!(polled.contains("reaped elsewhere"), "{polled}");
        let killed = killed.unwrap_err();
        assert!(killed.contains("not killed"), "{killed}");
    }

    #[test]
    fn parse_stat_handles_names_with_spaces_and_parens() {
        let line =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn output_with_timeout_kills_a_command_that_hangs() {
        let start = Instant::now();
        let err = output_with_timeout(
            Command::new("sh").args(["-c", "echo partial; sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        let msg = format!("{err:#}");
        assert!(msg.contains("did not finish"), "{msg}");
        assert!(msg.contains("partial"), "{msg}");
    }

    #[test]
    fn check_reports_stderr_of_a_failed_command() {
        let err = check(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("boom") && msg.contains('3'), "{msg}");
        assert_eq!(check(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }

    #[test]
    fn dropping_a_process_group_kills_its_children_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let group = ProcessGroup::spawn("sh", Command::new("sh").args(["-c", &script])).unwrap();
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
        }));
        let grandchild: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(group);
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map_or(true, |s| parse_stat(&s).is_some_and(|(st, _)| st == 'Z'))
        }));
    }

    #[test]
    fn children_do_not_inherit_blocked_signals() {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        // On a thread of its own, so the blocked mask does not leak into other tests.
        std::thread::spawn(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
            let out = check(Command::new("grep").args(["^SigBlk", "/proc/self/status"])).unwrap();
            assert!(out.trim().ends_with("0000000000000000"), "{out}");
            let dir = tempfile::tempdir().unwrap();
            let daemon = Daemon::spawn(
                "sleeper",
                Command::new("sleep").arg("60"),
                &dir.path().join("log"),
            )
            .unwrap();
            let start = Instant::now();
            daemon.stop(Duration::from_secs(10)).unwrap();
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "SIGTERM must stop it at once"
            );
        })
        .join()
        .unwrap();
    }

    /// A process the daemon started that does not end with the daemon's SIGTERM (libvirtd's
    /// child forked but not yet exec'd) is ended too: none of the daemon's session is left
    /// once `stop` returns.
    #[test]
    fn what_a_daemon_started_is_stopped_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::spawn(
            "sleeper",
            Command::new("sh").args(["-c", "(trap '' TERM; exec sleep 60) & exec sleep 60"]),
            &dir.path().join("log"),
        )
        .unwrap();
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            session_members(daemon.pid).len() == 2
        }));
        daemon.stop(Duration::from_millis(200)).unwrap();
        assert_eq!(session_members(daemon.pid), Vec::<u32>::new());
    }

    /// A daemon that had ended before its stop: no session of its number is signalled (the
    /// number may be another session's by now), what it left running included.
    #[test]
    fn a_daemon_that_had_ended_signals_no_session_of_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::spawn(
            "parent",
            Command::new("sh").args(["-c", "sleep 60 & sleep 0.3"]),
            &dir.path().join("log"),
        )
        .unwrap();
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            reap(daemon.pid);
            !daemon.is_running()
        }));
        let left = session_members(daemon.pid);
        assert_eq!(left.len(), 1, "{left:?}");
        daemon.stop(Duration::from_millis(100)).unwrap();
        assert_eq!(session_members(daemon.pid), left);
        let _ = nix::sys::signal::kill(pid_of(left[0]), Signal::SIGKILL);
    }

    #[test]
    fn a_daemon_is_stopped_by_pid_and_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let daemon = Daemon::spawn("sleeper", Command::new("sleep").arg("60"), &log).unwrap();
        assert!(daemon.is_running());
        let impostor = Daemon {
            start_ticks: daemon.start_ticks + 1,
            ..daemon.clone()
        };
        assert!(!impostor.is_running());
        impostor.stop(Duration::from_millis(100)).unwrap();
        assert!(
            daemon.is_running(),
            "a record with another start time must not stop the daemon"
        );
        daemon.stop(Duration::from_secs(2)).unwrap();
        assert!(!daemon.is_running());
    }
}
