//! Scripts: `bootcmd` / `runcmd` turned into shell scripts (docs/protocol.md §5.6), user-data
//! scripts, and the per-boot / per-instance / per-once directories, run in name order (run-parts),
//! output logged line by line, exit codes recorded.

use std::ffi::{OsStr, OsString};
use std::io::{PipeReader, PipeWriter, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use crate::fsutil::{PathError, WriteOptions, kind};
use crate::retry::{Retry, Transient};
use crate::root::Root;
use crate::state::result::ScriptResult;
use crate::userdata::cloud_config::Command;

/// Interpreter of `bootcmd` / `runcmd` and of scripts the kernel cannot run (no `#!` line).
pub const SHELL: &str = "/bin/sh";
/// Output logged per script; the rest is read and dropped.
pub const MAX_LOGGED_OUTPUT: usize = 64 * 1024;
/// How long to wait for a script's output to end after the script exits (a background child
/// may keep the pipe open; then the run goes on, and an output relay reads it from then on).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// The longest line of a script's output held in memory: a longer one is logged in pieces of
/// this size (`head -c 2G /dev/zero` must not pile up in the agent's memory).
pub const MAX_LINE_BYTES: usize = 4096;
/// Bytes read from a script's output at a time.
const OUTPUT_CHUNK: usize = 4096;
/// The hidden subcommand of the output relay: `metaboot __script-output NAME LOGGED`
/// ([`relay_main`]).
pub const RELAY_COMMAND: &str = "__script-output";
/// The program run as the output relay: the running metaboot binary itself.
pub const RELAY_PROGRAM: &str = "/proc/self/exe";
/// How long a script may keep failing to start with "text file busy": a process forked while
/// the script was still open for writing holds it until that process execs or exits.
pub const BUSY_SCRIPT_WAIT: Duration = Duration::from_secs(2);
/// First wait after a "text file busy" start; the retry driver doubles it, capped at 10 times it.
const BUSY_SCRIPT_BACKOFF: Duration = Duration::from_millis(10);
/// The nice value a script starts with when metaboot runs with a negative one: the default,
/// which the user's commands have under cloud-init.
pub const SCRIPT_NICE: i32 = 0;

/// A script that could not be started.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct StartError(#[from] std::io::Error);

impl Transient for StartError {
    fn is_transient(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::ExecutableFileBusy
    }
}

/// Quotes one argv item for `/bin/sh` (cloud-init's `shlex.quote` equivalent).
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// An argv as one `/bin/sh` command line, each item quoted ([`shell_quote`]).
pub fn shell_line(argv: &[impl std::ops::Deref<Target = str>]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    quoted.join(" ")
}

/// The `#!/bin/sh` script of a `bootcmd` / `runcmd` list: text items as they are, argv items
/// quoted and joined, null items skipped.
pub fn commands_to_script(commands: &[Option<Command>]) -> String {
    let mut script = String::from("#!/bin/sh\n");
    for command in commands.iter().flatten() {
        match command {
            Command::Shell(text) => script.push_str(text),
            Command::Argv(argv) => script.push_str(&shell_line(argv)),
        }
        script.push('\n');
    }
    script
}

/// Writes a script at `path` under the root, mode 0700 (atomically, so a half-written script
/// never runs).
pub fn write_script(root: &Root, path: &Path, body: &[u8]) -> Result<(), PathError> {
    root.write_atomic(path, body, &WriteOptions::exact(0o700, None))
}

/// What every script sees.
#[derive(Debug, Clone)]
pub struct ScriptEnv {
    /// `INSTANCE_ID`, as cloud-init sets it.
    pub instance_id: String,
    /// `METABOOT_ROOT` and the working directory: the root the run applies to.
    pub root: PathBuf,
    /// The program that takes over a script's output from a background process still writing
    /// it when the script is over ([`RELAY_PROGRAM`], which knows [`RELAY_COMMAND`]); `None`
    /// leaves that output unread (a background process then dies of `SIGPIPE` at its next
    /// write once metaboot has exited).
    pub relay: Option<PathBuf>,
    /// The words put in front of each script's command (vendor data's scripts:
    /// `vendor_data: {prefix}`, as cloud-init's `runparts` takes its `exe_prefix`); empty
    /// for the others.
    pub prefix: Vec<String>,
}

/// Runs the script at `path` under the root and logs its output; never fails, the outcome is
/// in the result. exec(2) takes a path: scripts live in the agent's own state directories,
/// which only root can change. Every write the run made so far is published first: the
/// script, and whatever it reads, must be in place.
pub fn run_script(root: &Root, path: &Path, name: &str, env: &ScriptEnv) -> ScriptResult {
    root.publish();
    let start = Instant::now();
    let result = |exit_code, error: Option<String>| ScriptResult {
        name: name.to_owned(),
        exit_code,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        error,
    };
    let host_path = root.host_path(path);
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(err) => return result(None, Some(format!("cannot create a pipe: {err}"))),
    };
    // Closing `stop_writer` tells the output thread to stop reading (see `read_output`).
    let (stop_reader, stop_writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(err) => return result(None, Some(format!("cannot create a pipe: {err}"))),
    };
    tracing::info!(script = name, "running {}", host_path.display());
    let spawned = Retry::until(Instant::now() + BUSY_SCRIPT_WAIT)
        .with_backoff(BUSY_SCRIPT_BACKOFF, BUSY_SCRIPT_BACKOFF * 10)
        .run("start script", |_| {
            start_script(&host_path, &writer, env).map_err(StartError)
        });
    // Drop the write end so the reader sees EOF when the script ends.
    drop(writer);
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return result(None, Some(format!("cannot start: {}", err.last()))),
    };
    let (done_tx, done_rx) = mpsc::channel();
    let script = name.to_owned();
    std::thread::spawn(move || {
        let _ = done_tx.send(read_output(reader, &stop_reader, &script));
    });
    let status = match child.wait() {
        Ok(status) => status,
        Err(err) => return result(None, Some(format!("cannot wait: {err}"))),
    };
    if done_rx.recv_timeout(OUTPUT_GRACE).is_err() {
        // A background process still holds the output. cloud-init points scripts' output at
        // a `tee` process that outlives it; here the thread stops reading (before the next
        // read, so no line is lost or read twice) and a relay process takes the pipe over,
        // so that the background process keeps a reader once metaboot has exited instead of
        // dying of SIGPIPE at its next write.
        drop(stop_writer);
        if let Ok((Some(pipe), logged)) = done_rx.recv() {
            relay_output(pipe, name, logged, env);
        }
    }
    match status.code() {
        Some(0) => result(Some(0), None),
        Some(code) => result(Some(code), Some(format!("exited with status {code}"))),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            result(None, Some(format!("killed by signal {signal}")))
        }
    }
}

/// Starts the script at `host_path` as the kernel runs it (an ELF program, or a `#!` line's
/// interpreter), its standard output and error `output`. A file the kernel cannot run
/// (`ENOEXEC`: a script without `#!`) runs as `/bin/sh FILE`, as `execvp` and POSIX shells run
/// it; cloud-init's `runparts` fails it instead ("Exec format error").
fn start_script(
    host_path: &Path,
    output: &PipeWriter,
    env: &ScriptEnv,
) -> std::io::Result<std::process::Child> {
    let process = |argv: &[&OsStr]| -> std::io::Result<Process> {
        let mut process = Process::new(argv[0]);
        process
            .args(&argv[1..])
            .env("INSTANCE_ID", &env.instance_id)
            .env("METABOOT_ROOT", &env.root)
            .current_dir(&env.root)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output.try_clone()?);
        // SAFETY: the hook runs in the child between fork and exec, and makes only two system
        // calls (getpriority, setpriority): no allocation, no lock.
        unsafe {
            process.pre_exec(lift_negative_nice);
        }
        Ok(process)
    };
    // Vendor data's prefix first (`timeout 30 SCRIPT`), as cloud-init's `runparts` runs them.
    let prefix = env.prefix.iter().map(OsStr::new);
    let direct: Vec<&OsStr> = prefix.clone().chain([host_path.as_os_str()]).collect();
    match process(&direct)?.spawn() {
        Err(err) if err.raw_os_error() == Some(libc::ENOEXEC) => {
            let shell: Vec<&OsStr> = prefix
                .chain([OsStr::new(SHELL), host_path.as_os_str()])
                .collect();
            process(&shell)?.spawn()
        }
        started => started,
    }
}

/// In a script's process, before exec: a negative nice value becomes [`SCRIPT_NICE`].
/// metaboot.service runs at nice -10 so that provisioning goes first on a guest with one CPU
/// (agent/systemd/metaboot.service); the user's commands, and daemons they leave running, must
/// not keep that priority. A positive value (an operator's `nice metaboot …`) stays.
fn lift_negative_nice() -> std::io::Result<()> {
    // The system call, not libc's wrapper: it returns 20 - nice (1 to 40), so a nice value of
    // -1 is not confused with an error.
    // SAFETY: getpriority takes two integers and reads nothing of this process's memory.
    let raw = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) };
    if raw > 20 {
        // SAFETY: setpriority takes three integers; raising one's own nice value needs no
        // privilege.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, SCRIPT_NICE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A script's output being logged: the bytes logged so far against the bound, and the line
/// not yet ended (at most [`MAX_LINE_BYTES`] of it).
struct OutputLog<'a> {
    script: &'a str,
    max: usize,
    logged: usize,
    dropped: bool,
    pending: Vec<u8>,
}

impl<'a> OutputLog<'a> {
    fn new(script: &'a str, max: usize, logged: usize) -> Self {
        OutputLog {
            script,
            max,
            logged,
            dropped: false,
            pending: Vec::new(),
        }
    }

    /// Logs one line (its newline taken off), cut to the bytes left under the bound; drops it
    /// past the bound.
    fn line(&mut self, line: &[u8]) {
        let (script, max) = (self.script, self.max);
        if self.logged < max {
            let shown = &line[..line.len().min(max - self.logged)];
            self.logged += shown.len() + 1;
            tracing::info!(script, "| {}", String::from_utf8_lossy(shown));
            if self.logged >= max {
                tracing::warn!(script, "output over {max} bytes; the rest is not logged");
            }
            self.dropped |= shown.len() < line.len();
        } else {
            self.dropped = true;
        }
    }

    /// Takes in output as it is read: each line is logged at its newline, and a line that
    /// reaches [`MAX_LINE_BYTES`] is logged in pieces of that size, so no line piles up in
    /// memory. Past the bound, bytes are dropped unstored.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.logged >= self.max {
                self.dropped = true;
                self.pending.clear();
                return;
            }
            let room = MAX_LINE_BYTES - self.pending.len();
            let end = bytes.iter().take(room).position(|&b| b == b'\n');
            let taken = end.unwrap_or(room.min(bytes.len()));
            self.pending.extend_from_slice(&bytes[..taken]);
            if end.is_some() || self.pending.len() >= MAX_LINE_BYTES {
                let line = std::mem::take(&mut self.pending);
                self.line(&line);
            }
            bytes = &bytes[taken + usize::from(end.is_some())..];
        }
    }

    /// Logs the line left without its newline, if any.
    fn finish(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line);
        }
    }

    /// Logs `reader` to its end (or its first read error).
    fn read_all(&mut self, mut reader: impl Read) {
        let mut chunk = [0u8; OUTPUT_CHUNK];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.feed(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.finish();
    }
}

/// Logs a script's output line by line up to `max` bytes and reads (drops) the rest; returns
/// the bytes logged and whether output was dropped.
pub fn log_output(reader: impl Read, script: &str, max: usize) -> (usize, bool) {
    let mut out = OutputLog::new(script, max, 0);
    out.read_all(reader);
    (out.logged, out.dropped)
}

/// Reads and logs a script's output (as [`log_output`], bound [`MAX_LOGGED_OUTPUT`]) until
/// its end, or until `stop` is readable (its write end closed). Each read waits in `poll` on
/// both, and a stop comes before any more reading: what is left in the pipe stays there, for
/// the relay. Returns the pipe when stopped before the end, and the bytes logged. A line cut
/// by the stop is logged as it is; its rest is a line of the relay's.
fn read_output(pipe: PipeReader, stop: &PipeReader, script: &str) -> (Option<PipeReader>, usize) {
    let mut out = OutputLog::new(script, MAX_LOGGED_OUTPUT, 0);
    let mut chunk = [0u8; OUTPUT_CHUNK];
    let stopped = loop {
        let mut fds = [stop.as_raw_fd(), pipe.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is an array of two pollfd that lives across the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break false;
        }
        if fds[0].revents != 0 {
            break true;
        }
        match (&pipe).read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => out.feed(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    out.finish();
    (stopped.then_some(pipe), out.logged)
}

/// Hands a script's output pipe, which a background process still holds, to an output relay
/// ([`relay_main`]): the metaboot binary again, its standard input the pipe, its standard
/// output the log file, its standard error this process's when that is the journal, a console
/// or a file ([`relay_keeps_stderr`]); not a pipe or another socket, whose reader (`metaboot
/// run 2>&1 | tee`, `ssh guest metaboot run`, a program's socketpair) would wait for the
/// background process's end: there the relay logs to the file alone. It forks and its parent
/// exits at once, so metaboot waits for nothing and the relay outlives it.
fn relay_output(pipe: PipeReader, name: &str, logged: usize, env: &ScriptEnv) {
    let Some(program) = &env.relay else {
        tracing::warn!(
            script = name,
            "a background process still holds the output; it is read while metaboot runs"
        );
        return keep_reading(pipe, name, logged);
    };
    // Kept until the relay has it: read here again if it cannot be started.
    let kept = pipe.try_clone().ok();
    let log = crate::log::file_copy().map_or_else(Stdio::null, Stdio::from);
    let mut relay = Process::new(program);
    relay
        .arg(RELAY_COMMAND)
        .arg(name)
        .arg(logged.to_string())
        .current_dir("/")
        .stdin(pipe)
        .stdout(log);
    if !relay_keeps_stderr() {
        relay.stderr(Stdio::null());
    }
    // SAFETY: as for the scripts (`run_script`): two system calls, no allocation, no lock.
    // The relay serves the user's background processes: it does not keep metaboot's priority.
    unsafe {
        relay.pre_exec(lift_negative_nice);
    }
    match relay.status() {
        Ok(status) if status.success() => tracing::info!(
            script = name,
            "a background process still holds the output; an output relay process logs it from now on"
        ),
        outcome => {
            tracing::warn!(
                script = name,
                "cannot start the output relay for a background process ({}); its output is read while metaboot runs, and it gets SIGPIPE at its next write once metaboot has exited",
                outcome.map_or_else(|err| err.to_string(), |status| status.to_string())
            );
            if let Some(pipe) = kept {
                keep_reading(pipe, name, logged);
            }
        }
    }
}

/// Goes on reading a script's output on a thread of this process until its last writer closes
/// it or metaboot exits: what is left when no output relay takes it over, so a background
/// process is not cut off while metaboot still runs.
fn keep_reading(pipe: PipeReader, name: &str, logged: usize) {
    let script = name.to_owned();
    std::thread::spawn(move || {
        OutputLog::new(&script, MAX_LOGGED_OUTPUT, logged).read_all(pipe);
    });
}

/// Whether the output relay may keep this process's standard error: a terminal or console (a
/// character device), a file, or the journal's stream (a socket whose device and inode
/// `$JOURNAL_STREAM` names, as systemd sets it for `StandardError=journal`). No one waits for
/// those to end; a pipe's or another socket's reader would wait for the background process.
fn relay_keeps_stderr() -> bool {
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    match kind(&stat) {
        SFlag::S_IFCHR | SFlag::S_IFREG => true,
        SFlag::S_IFSOCK => std::env::var("JOURNAL_STREAM")
            .is_ok_and(|stream| stream == format!("{}:{}", stat.st_dev, stat.st_ino)),
        _ => false,
    }
}

/// `metaboot __script-output NAME LOGGED` ([`RELAY_COMMAND`]): logs standard input as
/// [`log_output`] logs script NAME's output (LOGGED bytes of it logged already) until its last
/// writer closes it, to standard error and standard output (the log file). Forks first and the
/// parent exits, so the process that started it does not wait; the child leaves metaboot's
/// session (no terminal hangup reaches it; SIGHUP is ignored too), and `SIGPIPE` stays ignored
/// (`start::prepare`): a console gone away fails writes, and reading goes on. Returns the
/// exit code.
pub fn relay_main(args: &[OsString]) -> u8 {
    let name = args.get(2).and_then(|a| a.to_str());
    let logged = args.get(3).and_then(|a| a.to_str()?.parse::<usize>().ok());
    let (Some(name), Some(logged)) = (name, logged) else {
        eprintln!("error: usage: metaboot {RELAY_COMMAND} NAME LOGGED (metaboot runs it itself)");
        return crate::cli::EXIT_USAGE;
    };
    // SAFETY: the process has one thread here; the child goes on with only safe code.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("error: cannot fork: {}", std::io::Error::last_os_error());
            return 1;
        }
        0 => {}
        _ => return 0,
    }
    // SAFETY: setsid and signal take integers; the child is not a group leader, so setsid
    // succeeds.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // SAFETY: descriptor 1 is open (`start::prepare` opens /dev/null on a closed one) and
    // nothing else owns it in this process.
    let log = unsafe { std::fs::File::from_raw_fd(1) };
    crate::log::install(Some(log), false);
    // SAFETY: descriptor 0, the pipe, is open and nothing else in this process reads it.
    let pipe = unsafe { std::fs::File::from_raw_fd(0) };
    OutputLog::new(name, MAX_LOGGED_OUTPUT, logged).read_all(pipe);
    0
}

/// Runs every executable regular file of `dir` under the root in name order (a missing dir
/// runs nothing), and every symlink there whose target, resolved inside the root, is one: an
/// image's `per-boot/app -> /opt/app/boot.sh` runs, as cloud-init's `runparts` (`isfile` and
/// `access(X_OK)`, which follow links) runs it. A link is never followed out of the root, and
/// one that leads nowhere runnable is skipped with a warning naming it.
pub fn run_dir(root: &Root, dir: &Path, env: &ScriptEnv) -> Vec<ScriptResult> {
    let mut results = Vec::new();
    for (name, stat) in root.entries_or_none(dir) {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        let script = match kind(&stat) {
            SFlag::S_IFREG if stat.st_mode & 0o111 != 0 => path,
            SFlag::S_IFREG => {
                tracing::warn!(script = name, "not executable; skipped");
                continue;
            }
            SFlag::S_IFLNK => match link_target(root, &path) {
                Ok(target) => target,
                Err(why) => {
                    tracing::warn!(
                        script = name,
                        "a symlink whose target, resolved inside {}, {why}; skipped: point it at an executable file under the root",
                        root.path().display()
                    );
                    continue;
                }
            },
            _ => continue,
        };
        results.push(run_script(root, &script, &name, env));
    }
    results
}

/// Whether `dir` under the root has an entry [`run_dir`] may run: an executable regular file
/// or a symlink, not hidden.
pub fn has_scripts(root: &Root, dir: &Path) -> bool {
    root.entries_or_none(dir).into_iter().any(|(name, stat)| {
        !name.to_string_lossy().starts_with('.')
            && match kind(&stat) {
                SFlag::S_IFREG => stat.st_mode & 0o111 != 0,
                kind => kind == SFlag::S_IFLNK,
            }
    })
}

/// The path under the root of the executable regular file the symlink `link` leads to,
/// resolved inside the root (the root's own symlinks only, `..` never above it); or what it
/// leads to instead. On the host root that is the link itself, which the kernel resolves
/// the same way, so that the script's `$0` is the link, as under cloud-init; under another
/// root, the file found: exec(2) would resolve the link on the host.
fn link_target(root: &Root, link: &Path) -> Result<PathBuf, String> {
    // What the run wrote is put in place before the link is resolved to the file the script
    // is; only here, for a link: each publish with writes pending costs a sync.
    root.publish();
    // What it leads to is looked at before it is opened: opening a device (a link to
    // `/dev/watchdog` arms it) or a FIFO has effects of its own.
    match root.stat(link) {
        Ok(Some(stat)) if kind(&stat) == SFlag::S_IFREG => {}
        Ok(Some(_)) => return Err("is not a regular file".to_owned()),
        Ok(None) => return Err("is missing".to_owned()),
        Err(err) => return Err(format!("cannot be read ({err})")),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
    let file = root
        .open_file(link, flags, 0, true, false)
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => "is missing".to_owned(),
            _ => format!("cannot be opened ({err})"),
        })?;
    let stat = nix::sys::stat::fstat(&file).map_err(|err| format!("cannot be read ({err})"))?;
    if kind(&stat) != SFlag::S_IFREG {
        return Err("is not a regular file".to_owned());
    }
    if stat.st_mode & 0o111 == 0 {
        return Err("is not executable".to_owned());
    }
    if root.is_host() {
        return Ok(link.to_owned());
    }
    // The file's own path, as the kernel names the descriptor.
    let found = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let base = std::fs::canonicalize(root.path());
    match (found, base) {
        (Ok(found), Ok(base)) => match found.strip_prefix(&base) {
            Ok(inside) => Ok(Path::new("/").join(inside)),
            Err(_) => Err(format!("was found at {}, not under it", found.display())),
        },
        (Err(err), _) | (_, Err(err)) => Err(format!("cannot be located ({err})")),
    }
}

/// A one-line summary and whether every script succeeded.
pub fn summarize(results: &[ScriptResult]) -> (bool, String) {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.exit_code != Some(0))
        .map(|r| format!("{} {}", r.name, r.error.as_deref().unwrap_or("failed")))
        .collect();
    if failed.is_empty() {
        (true, format!("{} script(s) ran", results.len()))
    } else {
        (
            false,
            format!(
                "{} of {} script(s) failed: {}",
                failed.len(),
                results.len(),
                failed.join("; ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userdata::cloud_config::StrLike;

    fn env(dir: &Path) -> ScriptEnv {
        ScriptEnv {
            instance_id: "i-123".into(),
            root: dir.to_owned(),
            relay: None,
            prefix: Vec::new(),
        }
    }

    #[test]
    fn a_prefix_goes_in_front_of_each_script() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let scripts = Path::new("/scripts");
        write_script(
            &root,
            &scripts.join("10-env"),
            b"#!/bin/sh\necho \"$WORD\" >> out\n",
        )
        .unwrap();
        write_script(
            &root,
            &scripts.join("20-no-shebang"),
            b"echo \"$WORD\" >> out\n",
        )
        .unwrap();
        let env = ScriptEnv {
            prefix: vec!["/usr/bin/env".into(), "WORD=prefixed".into()],
            ..env(dir.path())
        };
        let results = run_dir(&root, scripts, &env);
        assert!(
            results.iter().all(|r| r.exit_code == Some(0)),
            "{results:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "prefixed\nprefixed\n"
        );
    }

    #[test]
    fn quoting_matches_shlex() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("/etc/x.conf"), "/etc/x.conf");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn commands_become_a_shell_script() {
        let cmds = vec![
            Some(Command::Shell("echo hi > /tmp/x".into())),
            None,
            Some(Command::Argv(vec![
                StrLike("ls".into()),
                StrLike("-l".into()),
                StrLike("a dir".into()),
            ])),
        ];
        assert_eq!(
            commands_to_script(&cmds),
            "#!/bin/sh\necho hi > /tmp/x\nls -l 'a dir'\n"
        );
    }

    #[test]
    fn runs_with_env_cwd_and_records_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let scripts = Path::new("/scripts");
        write_script(
            &root,
            &scripts.join("10-ok"),
            b"#!/bin/sh\necho \"$INSTANCE_ID\" > out\necho logged\n",
        )
        .unwrap();
        write_script(
            &root,
            &scripts.join("20-fail"),
            b"echo no shebang >&2\nexit 3\n",
        )
        .unwrap();
        write_script(
            &root,
            &scripts.join("30-bash"),
            b"#!/usr/bin/env perl\nopen(F, '>', 'perl-out'); print F \"perl\";\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("scripts/40-not-exec"),
            "#!/bin/sh\ntouch nope\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("10-ok", dir.path().join("scripts/50-link")).unwrap();
        let results = run_dir(&root, scripts, &env(dir.path()));
        let codes: Vec<(&str, Option<i32>)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.exit_code))
            .collect();
        assert_eq!(
            codes,
            [
                ("10-ok", Some(0)),
                ("20-fail", Some(3)),
                ("30-bash", Some(0)),
                ("50-link", Some(0))
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "i-123\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("perl-out")).unwrap(),
            "perl"
        );
        assert!(!dir.path().join("nope").exists());
        let (ok, summary) = summarize(&results);
        assert!(!ok);
        assert_eq!(
            summary,
            "1 of 4 script(s) failed: 20-fail exited with status 3"
        );
    }

    /// A program (an image's `per-boot/agent` binary, or a link to one) runs as itself, not
    /// as `/bin/sh PROGRAM`; a file the kernel cannot run still runs with `/bin/sh`.
    #[test]
    fn a_program_runs_as_itself_and_a_script_without_shebang_with_sh() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let scripts = Path::new("/scripts");
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        let program = dir.path().join("scripts/10-program");
        std::fs::copy("/bin/true", &program).unwrap();
        std::os::unix::fs::symlink("10-program", dir.path().join("scripts/20-link")).unwrap();
        write_script(
            &root,
            &scripts.join("30-plain"),
            b"echo plain > plain-out\n",
        )
        .unwrap();
        let results = run_dir(&root, scripts, &env(dir.path()));
        let outcomes: Vec<(&str, Option<i32>, Option<&str>)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.exit_code, r.error.as_deref()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("10-program", Some(0), None),
                ("20-link", Some(0), None),
                ("30-plain", Some(0), None)
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("plain-out")).unwrap(),
            "plain\n"
        );
    }

    /// Sets the calling thread's nice value (Linux keeps one per thread; a child takes its
    /// forking thread's).
    fn set_thread_nice(nice: i32) -> bool {
        // SAFETY: setpriority takes three integers.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
    }

    fn script_nice(dir: &Path, root: &Root) -> i32 {
        let script = Path::new("/nice-script");
        write_script(root, script, b"#!/bin/sh\nnice > nice-out\n").unwrap();
        let result = run_script(root, script, "nice", &env(dir));
        assert_eq!(result.exit_code, Some(0), "{result:?}");
        let out = std::fs::read_to_string(dir.join("nice-out")).unwrap();
        out.trim().parse().unwrap()
    }

    #[test]
    fn scripts_run_at_the_default_priority_when_metaboot_runs_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        // As metaboot.service starts the agent (Nice=-10): needs root.
        if !nix::unistd::geteuid().is_root() {
            crate::testutil::missing("root", "is needed to raise a thread's priority");
            return;
        }
        assert!(set_thread_nice(-10));
        let nice = script_nice(dir.path(), &root);
        assert!(set_thread_nice(0));
        assert_eq!(nice, SCRIPT_NICE);
        // Started at a lower priority than the default, the scripts keep it.
        assert!(set_thread_nice(5));
        assert_eq!(script_nice(dir.path(), &root), 5);
    }

    #[test]
    fn output_logging_is_bounded() {
        let text = "line\n".repeat(MAX_LOGGED_OUTPUT / 5 + 100);
        let (logged, dropped) = log_output(text.as_bytes(), "t", MAX_LOGGED_OUTPUT);
        assert!(dropped);
        assert!(
            (MAX_LOGGED_OUTPUT..MAX_LOGGED_OUTPUT + 10).contains(&logged),
            "{logged}"
        );
        assert_eq!(
            log_output(&b"a\nb\n"[..], "t", MAX_LOGGED_OUTPUT),
            (4, false)
        );
    }

    /// A line with no end is logged in pieces of [`MAX_LINE_BYTES`], cut at the bound, and
    /// the rest read and dropped: neither the line nor the log grows with it.
    #[test]
    fn a_line_without_end_is_bounded() {
        let huge = std::io::repeat(b'x').take(16 << 20);
        let (logged, dropped) = log_output(huge, "t", MAX_LOGGED_OUTPUT);
        assert!(dropped);
        assert!(
            (MAX_LOGGED_OUTPUT..=MAX_LOGGED_OUTPUT + 1).contains(&logged),
            "{logged}"
        );
        // Under the bound: pieces of MAX_LINE_BYTES, each counted with a line end.
        let mut long = vec![b'a'; 2 * MAX_LINE_BYTES + 10];
        long.push(b'\n');
        assert_eq!(
            log_output(&long[..], "t", MAX_LOGGED_OUTPUT),
            (2 * MAX_LINE_BYTES + 10 + 3, false)
        );
        let mut out = OutputLog::new("t", usize::MAX, 0);
        out.feed(&vec![b'y'; 10 * MAX_LINE_BYTES + 1]);
        assert!(out.pending.len() < MAX_LINE_BYTES, "{}", out.pending.len());
        // A script writing many MiB without a newline completes.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let path = Path::new("/zeros");
        write_script(&root, path, b"#!/bin/sh\nhead -c 33554432 /dev/zero\n").unwrap();
        let result = run_script(&root, path, "zeros", &env(dir.path()));
        assert_eq!((result.exit_code, result.error), (Some(0), None));
    }

    #[test]
    fn a_background_child_holding_the_pipe_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let path = Path::new("/bg");
        write_script(&root, path, b"#!/bin/sh\nsleep 30 &\necho started\n").unwrap();
        let start = Instant::now();
        let result = run_script(&root, path, "bg", &env(dir.path()));
        assert_eq!(result.exit_code, Some(0));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    /// With no output relay to take it over, a background process's output is still read
    /// while metaboot runs: it is not cut off (SIGPIPE) at its first write after its script.
    #[test]
    fn without_a_relay_the_output_is_read_while_metaboot_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let path = Path::new("/bg");
        write_script(
            &root,
            path,
            b"#!/bin/sh\n(sleep 2; echo late; echo \"exit $?\" > bg.status) &\necho started\n",
        )
        .unwrap();
        let result = run_script(&root, path, "bg", &env(dir.path()));
        assert_eq!(result.exit_code, Some(0));
        let status = dir.path().join("bg.status");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !status.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            std::fs::read_to_string(&status).ok().as_deref(),
            Some("exit 0\n"),
            "the background process was cut off"
        );
    }

    #[test]
    fn a_stop_leaves_the_unread_output_in_the_pipe_for_the_relay() {
        use std::io::Write;
        // Stopped: nothing more is read, even with output waiting.
        let (pipe, mut writer) = std::io::pipe().unwrap();
        let (stop, stop_writer) = std::io::pipe().unwrap();
        writer.write_all(b"one\ntwo\n").unwrap();
        drop(stop_writer);
        let (left, logged) = read_output(pipe, &stop, "t");
        assert_eq!(logged, 0);
        let mut rest = [0u8; 8];
        left.expect("the pipe, handed back")
            .read_exact(&mut rest)
            .unwrap();
        assert_eq!(&rest, b"one\ntwo\n");
        // Not stopped: read to the end, the last line without its newline too.
        let (pipe, mut writer) = std::io::pipe().unwrap();
        let (stop, _stop_writer) = std::io::pipe().unwrap();
        writer.write_all(b"one\ntw").unwrap();
        drop(writer);
        let (left, logged) = read_output(pipe, &stop, "t");
        assert!(left.is_none());
        assert_eq!(logged, 7);
    }

    #[test]
    fn a_script_still_open_for_writing_starts_once_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let path = Path::new("/busy");
        write_script(&root, path, b"#!/bin/sh\necho ran > busy-out\n").unwrap();
        // A writer holds the script (as a process forked mid-write would): exec says ETXTBSY.
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(root.host_path(path))
            .unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(BUSY_SCRIPT_WAIT / 10);
            drop(writer);
        });
        let result = run_script(&root, path, "busy", &env(dir.path()));
        closer.join().unwrap();
        assert_eq!((result.exit_code, result.error), (Some(0), None));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("busy-out")).unwrap(),
            "ran\n"
        );
    }

    #[test]
    fn signals_and_missing_interpreters_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let killed = Path::new("/killed");
        write_script(&root, killed, b"#!/bin/sh\nkill -9 $$\n").unwrap();
        let r = run_script(&root, killed, "killed", &env(dir.path()));
        assert_eq!(
            (r.exit_code, r.error.as_deref()),
            (None, Some("killed by signal 9"))
        );
        let bad = Path::new("/bad");
        write_script(&root, bad, b"#!/nonexistent/interpreter\n").unwrap();
        let r = run_script(&root, bad, "bad", &env(dir.path()));
        assert!(r.error.unwrap().starts_with("cannot start"));
    }
}
