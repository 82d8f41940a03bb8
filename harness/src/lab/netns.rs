//! Named network namespaces (`ip netns`), commands inside them, and TCP probes from inside them.

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV6, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

use crate::process::check;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Creates a namespace with its loopback up.
pub fn create(name: &str) -> anyhow::Result<()> {
    if exists(name) {
        bail!("network namespace {name} already exists (a lab that was not taken down?)");
    }
    check(Command::new("ip").args(["netns", "add", name]))?;
    ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace (and with it every interface inside it); absent is fine.
pub fn delete(name: &str) -> anyhow::Result<()> {
    if !exists(name) {
        return Ok(());
    }
    check(Command::new("ip").args(["netns", "del", name]))
        .with_context(|| format!("failed to delete network namespace {name}"))?;
    Ok(())
}

/// Runs `ip -n NS ARGS…`.
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
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
    std::fs::metadata(Path::new(NETNS_DIR).join(ns))
        .is_ok_and(|ours| ours.dev() == theirs.dev() && ours.ino() == theirs.ino())
}

/// Kills (SIGKILL) every process whose network namespace is `ns`: processes inside a lab's
/// namespaces were all started by the lab (QEMU, dnsmasq, ssh), so this never touches others.
/// Returns how many were signalled.
pub fn kill_processes_in(ns: &str) -> usize {
    let Ok(target) = std::fs::metadata(Path::new(NETNS_DIR).join(ns)) else {
        return 0;
    };
    let (dev, ino) = (target.dev(), target.ino());
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) else {
            continue;
        };
        if meta.dev() == dev && meta.ino() == ino && pid != std::process::id() as i32 {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
                // Reap it if it is our child; harmless (ECHILD) otherwise.
                let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            }
        }
    }
    killed
}

/// Connects to `addr` from inside the namespace; Ok when something accepted the connection.
///
/// Runs on a short-lived thread that enters the namespace, so the caller's threads stay put.
pub fn tcp_probe(ns: &str, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let path = Path::new(NETNS_DIR).join(ns);
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
