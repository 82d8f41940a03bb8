//! Named network namespaces (`ip netns`), commands inside them, and TCP probes from inside them.

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV6, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;

use crate::process::{Found, check};
use crate::wait::wait_until;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The file of the named namespace under [`NETNS_DIR`]; `None` for a name that is no plain
/// file name (`Path::join` would replace the directory with an absolute one, and `..` leave
/// it), which names no namespace of `ip netns`.
pub fn path(name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    plain.then(|| Path::new(NETNS_DIR).join(name))
}

/// [`path`], or an error saying the name is none.
fn require_path(name: &str) -> anyhow::Result<PathBuf> {
    path(name).with_context(|| format!("{name:?} is not the name of a network namespace"))
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).is_some_and(|path| path.exists())
}

/// Creates a namespace with its loopback up.
pub fn create(name: &str) -> anyhow::Result<()> {
    add(name)?;
    loopback_up(name)
}

/// Creates a namespace, failing when it exists: `ip netns add` creates its file exclusively, so
/// of two processes adding one name, one fails. Its loopback is still down.
pub fn add(name: &str) -> anyhow::Result<()> {
    require_path(name)?;
    if exists(name) {
        bail!("network namespace {name} already exists (a lab that was not taken down?)");
    }
    check(Command::new("ip").args(["netns", "add", name]))
        .with_context(|| format!("failed to create network namespace {name}"))?;
    Ok(())
}

/// Brings the namespace's loopback up.
pub fn loopback_up(name: &str) -> anyhow::Result<()> {
    ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace (and with it every interface inside it); absent is fine, also when it
/// went while this deleted it (another teardown of the same lab got there first).
pub fn delete(name: &str) -> anyhow::Result<()> {
    require_path(name)?;
    if !exists(name) {
        return Ok(());
    }
    let deleted = check(Command::new("ip").args(["netns", "del", name]));
    settle_delete(name, deleted, || exists(name))
}

/// The outcome of `ip netns del NAME` (`deleted`): a failure is none when the namespace is
/// gone all the same (`still_there` says it is not).
fn settle_delete(
    name: &str,
    deleted: anyhow::Result<String>,
    still_there: impl FnOnce() -> bool,
) -> anyhow::Result<()> {
    match deleted {
        Ok(_) => Ok(()),
        Err(_) if !still_there() => Ok(()),
        Err(err) => Err(err.context(format!("failed to delete network namespace {name}"))),
    }
}

/// Runs `ip -n NS ARGS…` (never with a path for NS, which `ip -n` would enter).
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    require_path(ns)?;
    check(Command::new("ip").args(["-n", ns]).args(args))
}

/// A command that runs `program` inside the namespace (`ip netns exec` execs in place, so the
/// child's PID is the program's own).
pub fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Whether process `pid` lives in network namespace `ns`.
pub fn process_in(pid: u32, ns: &str) -> bool {
    let Ok(theirs) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
        return false;
    };
    path(ns)
        .and_then(|path| std::fs::metadata(path).ok())
        .is_some_and(|ours| ours.dev() == theirs.dev() && ours.ino() == theirs.ino())
}

/// How long processes left in a namespace being removed get to end on SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// Ends every process whose network namespace is `ns`, which is about to go: SIGTERM, then
/// SIGKILL for those still there after [`TERM_GRACE`]. They are the lab's own (QEMU, ssh
/// checks of a run that was killed) or a user's (an `ip netns exec … ssh`), so each is named
/// in a warning. Returns how many were signalled.
pub fn kill_processes_in(ns: &str) -> usize {
    let found = processes_in(ns);
    for Found { pid, name, .. } in &found {
        tracing::warn!("stopping process {pid} ({name}), left in network namespace {ns}");
    }
    end_processes(&found)
}

/// Ends the processes `found`: SIGTERM, then SIGKILL for those still there after
/// [`TERM_GRACE`]. Each is signalled only while it is the very process found (same PID and
/// start time): one that ended meanwhile may have left its PID to an unrelated process.
/// Returns how many were found.
pub fn end_processes(found: &[Found]) -> usize {
    if found.is_empty() {
        return 0;
    }
    for process in found {
        process.signal(Signal::SIGTERM);
    }
    // Looked for every `wait::POLL_INTERVAL`: those that end at once are not waited for.
    wait_until(Instant::now() + TERM_GRACE, || {
        !found.iter().any(Found::is_running)
    });
    for process in found {
        if process.is_running() && process.signal(Signal::SIGKILL) {
            // Reaped if it is our child, once it has ended.
            wait_until(Instant::now() + crate::process::KILL_TIMEOUT, || {
                !process.is_running()
            });
        }
    }
    found.len()
}

/// The processes whose network namespace is `ns`, this one excepted.
fn processes_in(ns: &str) -> Vec<Found> {
    let Some(Ok(target)) = path(ns).map(std::fs::metadata) else {
        return Vec::new();
    };
    let (dev, ino) = (target.dev(), target.ino());
    let mut found = Vec::new();
    for pid in crate::process::pids() {
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if meta.dev() == dev
            && meta.ino() == ino
            && pid != std::process::id()
            && let Some(process) = Found::read(pid)
        {
            found.push(process);
        }
    }
    found
}

/// Connects to `addr` from inside the namespace; Ok when something accepted the connection.
///
/// Runs on a short-lived thread that enters the namespace, so the caller's threads stay put.
pub fn tcp_probe(ns: &str, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let path = require_path(ns)?;
    let file = File::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<()> {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("failed to enter network namespace {ns}"))?;
                TcpStream::connect_timeout(&addr, timeout)
                    .with_context(|| format!("nothing accepts connections on {addr} in {ns}"))?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| bail!("the probe thread for {ns} panicked"))
    })
}

/// The index of `interface` inside the namespace (`ip -o link show`: `INDEX: NAME…`).
pub fn interface_index(ns: &str, interface: &str) -> anyhow::Result<u32> {
    let line = ip(ns, &["-o", "link", "show", "dev", interface])?;
    line.split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .with_context(|| {
            format!("`ip -o link show dev {interface}` in {ns} printed no index: {line}")
        })
}

/// [`tcp_probe`] of an IPv6 address on the link of `interface` (a link-local one such as
/// `fe80::a9fe:a9fe` needs the interface as its scope); other addresses are probed as they are.
pub fn tcp_probe_on_link(
    ns: &str,
    addr: SocketAddr,
    interface: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let addr =
        match addr {
            SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() => SocketAddr::V6(
                SocketAddrV6::new(*v6.ip(), v6.port(), 0, interface_index(ns, interface)?),
            ),
            other => other,
        };
    tcp_probe(ns, addr, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a test waits for a process it started to be ready: long enough for a loaded
    /// machine, far shorter than forever.
    const READY_TIMEOUT: Duration = Duration::from_secs(10);

    /// The grace is many polls of [`crate::wait::POLL_INTERVAL`] (a process that ends on
    /// SIGTERM is not waited for long), and short enough that a teardown with a few stubborn
    /// processes stays quick.
    #[test]
    fn the_grace_before_sigkill_is_many_polls_and_short() {
        assert!(crate::wait::POLL_INTERVAL * 10 <= TERM_GRACE);
        assert!(TERM_GRACE <= Duration::from_secs(5));
    }

    /// A namespace is named by a plain file name under [`NETNS_DIR`]: a path (as a planted lab
    /// state would give) names none, so nothing is looked for, ended or deleted through it.
    #[test]
    fn a_namespace_name_is_never_a_path() {
        assert_eq!(path("qdhcp-1"), Some(PathBuf::from("/run/netns/qdhcp-1")));
        for name in [
            "/proc/1/ns/net",
            "../../proc/1/ns/net",
            "a/b",
            "..",
            ".",
            "",
            "a\0b",
        ] {
            assert_eq!(path(name), None, "{name:?}");
            assert!(!exists(name), "{name:?}");
            assert!(!process_in(1, name), "{name:?}");
            assert!(processes_in(name).is_empty(), "{name:?}");
            assert!(delete(name).is_err(), "{name:?}");
            assert!(add(name).is_err(), "{name:?}");
            assert!(ip(name, &["link"]).is_err(), "{name:?}");
        }
    }

    /// `ip netns del` failing on a namespace that another teardown deleted meanwhile is no
    /// failure; failing on one still there is, naming it.
    #[test]
    fn a_namespace_deleted_meanwhile_is_deleted() {
        let failed = || {
            Err(anyhow::anyhow!(
                "Cannot remove namespace file: No such file"
            ))
        };
        settle_delete("qdhcp-1", failed(), || false).unwrap();
        let err = settle_delete("qdhcp-1", failed(), || true).unwrap_err();
        assert!(format!("{err:#}").contains("failed to delete network namespace qdhcp-1"));
        settle_delete("qdhcp-1", Ok(String::new()), || unreachable!()).unwrap();
    }

    /// Processes that end on SIGTERM are not waited for the whole grace.
    #[test]
    fn processes_that_end_on_sigterm_are_not_given_the_whole_grace() {
        let mut children: Vec<_> = (0..3)
            .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
            .collect();
        let found: Vec<Found> = children
            .iter()
            .map(|child| Found::read(child.id()).unwrap())
            .collect();
        let began = Instant::now();
        assert_eq!(end_processes(&found), 3);
        let took = began.elapsed();
        assert!(took < TERM_GRACE, "waited {took:?}");
        for child in &mut children {
            let _ = child.wait();
        }
    }

    /// Of the processes found, one that ends on SIGTERM goes at once, one that ignores it is
    /// killed after the grace, and one whose PID now names a later process (here: a record
    /// with another start time, standing for a process that ended during the grace and whose
    /// PID was taken) is signalled neither time.
    #[test]
    fn only_the_very_processes_found_are_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let told = dir.path().join("told");
        let spawn = |script: &str| Command::new("sh").args(["-c", script]).spawn().unwrap();
        let mut quitter = Command::new("sleep").arg("60").spawn().unwrap();
        let mut stubborn = spawn("trap '' TERM; exec sleep 60");
        let ready = dir.path().join("ready");
        let mut other = spawn(&format!(
            "trap 'echo term >> {}' TERM; : > {}; while :; do sleep 0.1; done",
            told.display(),
            ready.display()
        ));
        let found = |child: &std::process::Child| {
            // Once `sh` has run its trap (or exec'd), signals find it ready.
            wait_until(Instant::now() + READY_TIMEOUT, || {
                Found::read(child.id()).is_some_and(|process| process.name != "sh")
            });
            Found::read(child.id()).unwrap()
        };
        let quitter_found = Found::read(quitter.id()).unwrap();
        let stubborn_found = found(&stubborn);
        assert!(wait_until(Instant::now() + READY_TIMEOUT, || ready.exists()));
        let mut other_found = Found::read(other.id()).unwrap();
        other_found.start_ticks = other_found.start_ticks.wrapping_sub(1);

        let began = Instant::now();
        let ended = end_processes(&[quitter_found, stubborn_found, other_found]);
        let took = began.elapsed();
        assert_eq!(ended, 3);
        assert!(
            took >= TERM_GRACE,
            "the stubborn one had its grace: {took:?}"
        );
        for (what, child) in [("quitter", &mut quitter), ("stubborn", &mut stubborn)] {
            assert!(
                !crate::process::is_alive(child.id()),
                "the {what} process is still there"
            );
            // Reaped by `end_processes`, its own child's.
            assert!(
                child.try_wait().is_err(),
                "the {what} process was not reaped"
            );
        }
        assert!(
            crate::process::is_alive(other.id()),
            "a process that was not the one found was killed"
        );
        assert!(
            !told.exists(),
            "a process that was not the one found got SIGTERM"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    /// A process left in a lab namespace (a user's `ip netns exec … sleep`) gets SIGTERM first
    /// and is gone well before the grace ends.
    #[test]
    fn processes_left_in_a_namespace_are_asked_to_end_then_counted() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs as root"
            );
            eprintln!("skipped: network namespaces need root");
            return;
        }
        let ns = format!("metaboot-test-{}", std::process::id());
        create(&ns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let told = dir.path().join("told");
        // A shell that says it was asked to end (SIGTERM), and its `sleep`.
        let script = format!(
            "trap 'echo term > {}; kill $!; exit 0' TERM; sleep 60 & wait",
            told.display()
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "sh", "-c", &script])
            .spawn()
            .unwrap();
        let pid = child.id();
        wait_until(Instant::now() + READY_TIMEOUT, || {
            processes_in(&ns).len() >= 2
        });
        let began = Instant::now();
        let killed = kill_processes_in(&ns);
        let took = began.elapsed();
        // Reaped already by the call (its own child): the wait finds nothing left to reap.
        let _ = child.wait();
        delete(&ns).unwrap();
        assert_eq!(killed, 2);
        assert_eq!(std::fs::read_to_string(&told).unwrap(), "term\n");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} still there"
        );
        assert!(took < TERM_GRACE, "SIGTERM ends them at once: {took:?}");
        assert_eq!(kill_processes_in(&ns), 0, "the namespace is gone");
    }
}
