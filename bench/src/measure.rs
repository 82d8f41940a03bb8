//! Measuring: medians of samples, a whole process's wall time, CPU time and peak RSS (wait4),
//! a running process's memory from `/proc/PID/status`, and the machine's load.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// The `q` quantile (0..=1, nearest rank) of `values`; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What one finished process cost.
#[derive(Debug, Clone)]
pub struct ProcessCost {
    /// From spawn to reaped.
    pub wall: Duration,
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident set size, KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// How it ended.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// Runs `cmd` as the leader of its own process group and reaps it with wait4(2), which gives
/// its own CPU time and peak RSS; the group is killed after `timeout`.
pub fn run_measured(cmd: &mut Command, timeout: Duration) -> anyhow::Result<ProcessCost> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls setpgid(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(std::io::Error::from)
        });
    }
    let what = metaboot_harness::process::describe(cmd);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {what}"))?;
    let pid = i32::try_from(child.id()).context("PID out of range")?;
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let (done, watchdog_wait) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if watchdog_wait.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            return true;
        }
        false
    });
    let mut raw_status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are to live locals.
        let rc = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    let wall = started.elapsed();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // The leader is reaped; kill what it may have left behind holding the pipes.
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let stdout = stdout.map(join_reader).unwrap_or_default();
    let stderr = stderr.map(join_reader).unwrap_or_default();
    // wait4 reaped the child: std must not wait for it again, and dropping it does not.
    drop(child);
    if reaped != pid {
        bail!(
            "failed to wait for {what}: {}",
            std::io::Error::last_os_error()
        );
    }
    if timed_out {
        bail!("{what} did not finish within {timeout:?}; stderr: {stderr}");
    }
    Ok(ProcessCost {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        status: ExitStatus::from_raw(raw_status),
        stdout,
        stderr,
    })
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error only truncates what we show.
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join_reader(handle: thread::JoinHandle<String>) -> String {
    handle.join().unwrap_or_default()
}

/// A `/proc/PID/status` field in KiB (`VmHWM`, `VmRSS`), if the process is alive.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&text, field)
}

fn status_field_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The peak RSS of a process since it started (`VmHWM`), KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// CPU time (user + system) used so far by every live process in the process groups
/// `groups`: the bench starts each server as a group leader, so its workers count too. A group
/// without a live process is an error, not 0 s (see [`groups_ticks`]).
pub fn groups_cpu(groups: &[u32]) -> anyhow::Result<Duration> {
    let entries = std::fs::read_dir("/proc").context("failed to list /proc")?;
    let stats = entries.filter_map(Result::ok).filter_map(|entry| {
        let pid = entry.file_name();
        if !pid
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        // A process that exited meanwhile has no stat: it is not live.
        std::fs::read_to_string(entry.path().join("stat")).ok()
    });
    let ticks = groups_ticks(stats, groups)?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The CPU ticks of the processes of `groups` among `stats` (`/proc/PID/stat` lines). Each
/// group must have a live process: a server that exited took its CPU time with it, and
/// counting it as none would make the CPU per request look small.
fn groups_ticks(stats: impl Iterator<Item = String>, groups: &[u32]) -> anyhow::Result<u64> {
    if groups.is_empty() {
        bail!("no process group to measure the CPU time of");
    }
    let mut live = vec![false; groups.len()];
    let mut ticks = 0u64;
    for stat in stats {
        if let Some((group, used)) = group_and_cpu_ticks(&stat)
            && let Some(i) = groups.iter().position(|g| *g == group)
        {
            live[i] = true;
            ticks += used;
        }
    }
    if let Some(i) = live.iter().position(|live| !live) {
        bail!(
            "process group {} has no live process: its server exited, so its CPU time is \
             gone; its log in the bench directory (--keep) says why",
            groups[i]
        );
    }
    Ok(ticks)
}

/// (pgrp, utime + stime) from a `/proc/PID/stat` line.
fn group_and_cpu_ticks(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) … utime(14) stime(15).
    let group = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((group, utime + stime))
}

/// The machine's load as `uptime` prints it (from `/proc/loadavg`), and the core count.
pub fn load_line() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = loadavg.split_whitespace().collect();
    let cores = thread::available_parallelism().map_or(0, usize::from);
    match fields.as_slice() {
        [one, five, fifteen, running, ..] => format!(
            "load average: {one}, {five}, {fifteen} (1/5/15 min; running/total tasks {running}) on {cores} cores"
        ),
        _ => format!("load average: unknown (no /proc/loadavg) on {cores} cores"),
    }
}

/// The 1-minute load average, if readable.
pub fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&values, 1.0), Some(100.0));
        assert_eq!(quantile(&values, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_group_and_cpu_of_proc_stat() {
        let line = "77 (a (b) c) S 1 70 70 0 -1 4194560 0 0 0 0 250 31 0 0 20 0 1 0 5 0 0";
        assert_eq!(group_and_cpu_ticks(line), Some((70, 281)));
        let busy = std::process::id();
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = child.id();
        let mut seen = Duration::ZERO;
        while child.try_wait().unwrap().is_none() {
            // The shell may exit between the two looks: then its group has no process.
            if let Ok(used) = groups_cpu(&[group]) {
                seen = seen.max(used);
            }
            thread::sleep(Duration::from_millis(20));
        }
        assert!(seen > Duration::ZERO, "a busy shell used no CPU?");
        assert_ne!(busy, group);
    }

    /// A group whose server exited counts as an error, not as no CPU time.
    #[test]
    fn a_group_without_a_live_process_is_an_error() {
        let stats = || {
            [
                "77 (nginx) S 1 70 70 0 -1 4194560 0 0 0 0 250 31 0 0 20 0 1 0 5 0 0",
                "78 (nginx) S 77 70 70 0 -1 4194560 0 0 0 0 100 20 0 0 20 0 1 0 5 0 0",
                "91 (haproxy) S 1 90 90 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0",
            ]
            .into_iter()
            .map(str::to_owned)
        };
        assert_eq!(groups_ticks(stats(), &[70]).unwrap(), 401);
        assert_eq!(groups_ticks(stats(), &[70, 90]).unwrap(), 411);
        let err = groups_ticks(stats(), &[70, 80]).unwrap_err().to_string();
        assert!(
            err.contains("process group 80 has no live process"),
            "{err}"
        );
        assert!(groups_ticks(stats(), &[]).is_err());
        assert!(groups_cpu(&[]).is_err());
    }

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let text = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t  1000 kB\n";
        assert_eq!(status_field_kib(text, "VmHWM"), Some(12345));
        assert_eq!(status_field_kib(text, "VmRSS"), Some(1000));
        assert_eq!(status_field_kib(text, "VmSwap"), None);
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn measures_a_process_and_kills_one_that_hangs() {
        let cost = run_measured(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(cost.status.success());
        assert_eq!(cost.stdout, "out\n");
        assert_eq!(cost.stderr, "err\n");
        assert!(cost.max_rss_kib > 0);
        let started = Instant::now();
        let err =
            run_measured(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
    }
}
