//! A real libvirtd for `--via libvirt`: started by the harness inside a lab's bridge namespace
//! (so the QEMU it starts sees the lab's taps), used through `virsh -c qemu:///system`, and
//! stopped by PID afterwards, also on failure.
//!
//! libvirtd's control sockets under /run/libvirt belong to the whole machine, so one libvirtd
//! serves at a time: a lock file keeps a second harness run waiting, and a libvirtd that some
//! one else started outside the lab's namespace is refused (its guests could not reach the
//! taps), as is a host's libvirt that systemd starts on demand (`libvirtd.socket`,
//! `virtqemud.socket`: no process while idle, but its sockets are the host's). A `virtlogd`
//! already running is used as it is, and so is one systemd starts on demand (an active
//! `virtlogd.socket`: a virtlogd of the harness's would unlink and bind its socket, and
//! remove it on exit, cutting the host's libvirt off its log daemon); otherwise one is started
//! beside libvirtd and stopped with it.
//!
//! libvirtd reads a private `qemu.conf`, bind-mounted over /etc/libvirt/qemu.conf in a private
//! mount namespace (nothing on the host changes): its guests run as root without relabelling
//! (no DAC ownership changes, no SELinux or AppArmor labels),
//! like the harness's own QEMU, so a user's image is never chowned. It also keeps libvirt's
//! QEMU capability cache valid on machines whose /dev/kvm only root may open; with the
//! distribution's `libvirt-qemu` user, libvirt probes QEMU again on every call (about 50 s per
//! `virsh create` here). Each guest's QEMU writes its console file itself
//! (`stdio_handler = "file"`): virtlogd would rotate it at its `max_size` under the harness's
//! reader. libvirt makes no cgroups for its guests (a cgroup would count as one
//! task against every other process of the host, and starve a guest on a busy machine). The
//! host's domain and network definitions (/etc/libvirt/qemu), storage pools
//! (/etc/libvirt/storage) and hook scripts (/etc/libvirt/hooks) are masked the same way, each
//! by an empty directory: the lab's namespace gets none of the host's guests set to autostart
//! (which the lab's teardown would kill), no libvirt bridge or dnsmasq, no pool set to
//! autostart (an LVM or iSCSI pool's start would act on the host's disks), and no host hook
//! run for the lab's guests; the pools `virt-install` defines for a disk's directory (set to
//! autostart) stay in the run's directory instead of the host's /etc.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::lab::netns;
use crate::process::{self, Daemon, output_with_timeout};
use crate::wait::wait_until;

/// The connection every `virsh` call uses.
pub const URI: &str = "qemu:///system";

/// How long libvirtd may take to answer after it started (it probes QEMU's capabilities once).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a harness run waits for another one to finish with libvirtd.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long a daemon may take to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Deadline of one `virsh` call.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The lock that makes harness runs take turns with libvirtd.
pub const LOCK_FILE: &str = "/run/metaboot-harness/libvirtd.lock";

/// The system's qemu.conf, which the harness's libvirtd sees replaced by [`QEMU_CONF`].
pub const SYSTEM_QEMU_CONF: &str = "/etc/libvirt/qemu.conf";

/// libvirt's directory of the host's QEMU domains and networks, with those to start with the
/// daemon (`autostart`, `networks/autostart`): masked by an empty directory.
pub const QEMU_CONFIG_DIR: &str = "/etc/libvirt/qemu";

/// libvirt's directory of the host's storage pools, with those to start with the daemon
/// (`autostart`): masked by an empty directory.
pub const STORAGE_CONFIG_DIR: &str = "/etc/libvirt/storage";

/// libvirt's directory of scripts it runs at each domain's and network's start and stop:
/// masked by an empty directory.
pub const HOOKS_DIR: &str = "/etc/libvirt/hooks";

/// The host's directories the harness's libvirtd sees empty, each with the name of the empty
/// directory (in the run's libvirt directory) bound over it.
const HIDDEN_CONFIG_DIRS: [(&str, &str); 3] = [
    (QEMU_CONFIG_DIR, "etc-libvirt-qemu"),
    (STORAGE_CONFIG_DIR, "etc-libvirt-storage"),
    (HOOKS_DIR, "etc-libvirt-hooks"),
];

/// The qemu.conf of the harness's libvirtd (see the module doc).
pub const QEMU_CONF: &str = "# metaboot-harness: the qemu.conf of the libvirtd it starts in a lab's namespace.\n\
# Guests run as root without relabelling, like the harness's own QEMU guests: a user's image\n\
# is never chowned, and libvirt's capability cache stays valid where /dev/kvm is root's only.\n\
# No cgroups of its own: the guest's QEMU is scheduled like the harness's own (a libvirt\n\
# cgroup counts as one task against every other process on the host), and libvirt leaves\n\
# the host's cgroup tree alone.\n\
# QEMU writes the console file itself: through virtlogd (the default, \"logd\") the file is\n\
# rotated at virtlogd's max_size, renamed under the harness's reader, which then misses every\n\
# later line.\n\
stdio_handler = \"file\"\n\
user = \"root\"\n\
group = \"root\"\n\
dynamic_ownership = 0\n\
security_driver = \"none\"\n\
remember_owner = 0\n\
cgroup_controllers = [ ]\n";

/// The daemons libvirt needs.
pub const TOOLS: [&str; 3] = ["libvirtd", "virtlogd", "virsh"];

/// Checks that libvirt is installed, and that no firewalld runs ([`crate::guest::firewalld`]).
pub fn preflight() -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS.into_iter().filter(|t| !process::on_path(t)).collect();
    if !missing.is_empty() {
        bail!(
            "missing tools for --via libvirt: {} (scripts/install-lab-deps installs \
             libvirt-daemon-system and libvirt-clients)",
            missing.join(", ")
        );
    }
    // Its rules would go to the host's firewall.
    crate::guest::firewalld::refuse_if_running()
}

/// `virsh -c qemu:///system ARGS…`.
pub fn virsh<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new("virsh");
    cmd.args(["-q", "-c", URI]).args(args);
    cmd
}

/// The libvirtd a run uses; stops what it started when stopped or dropped.
#[derive(Debug)]
pub struct Libvirtd {
    /// The daemons this run started (libvirtd last), stopped in reverse order.
    started: Vec<Daemon>,
    /// Held while the run uses libvirtd.
    _lock: nix::fcntl::Flock<File>,
}

impl Libvirtd {
    /// Starts virtlogd (unless one runs, or systemd starts the host's on demand) and libvirtd
    /// inside namespace `ns`, with their logs and private config in `dir`, and waits until
    /// libvirtd answers.
    pub fn start(ns: &str, dir: &Path) -> anyhow::Result<Self> {
        preflight()?;
        let lock = take_lock()?;
        fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let mut this = Self {
            started: Vec::new(),
            _lock: lock,
        };
        if let Some(pid) = running("libvirtd") {
            if netns::process_in(pid, ns) {
                tracing::info!("using libvirtd (pid {pid}) already running in {ns}");
                return Ok(this);
            }
            bail!(
                "libvirtd (pid {pid}) is already running outside the lab's namespace {ns}: the \
                 guests it starts could not reach the lab's taps; stop it (the harness starts \
                 its own) or run without --via libvirt"
            );
        }
        // The host's own libvirt, started by systemd on a connection (and gone when idle), or
        // its modular QEMU daemon: a libvirtd of the harness's would take over their sockets
        // under /run/libvirt and leave the host's libvirt broken after the run.
        if let Some(pid) = running("virtqemud") {
            bail!(
                "virtqemud (pid {pid}), the host's libvirt, is running: the guests it starts \
                 could not reach the lab's taps, and the harness's libvirtd would take its \
                 sockets; stop it (systemctl stop virtqemud.service virtqemud.socket) or run \
                 without --via libvirt"
            );
        }
        if let Some(unit) = socket_activated(Path::new(SYSTEMD_RUNTIME), Path::new("systemctl")) {
            bail!(
                "the host's libvirt is started by systemd on demand ({unit}): the harness's \
                 libvirtd would take its sockets under /run/libvirt; stop it first (systemctl \
                 stop {}) and start it again after the run, or run without --via libvirt",
                SOCKET_UNITS.join(" ")
            );
        }
        let socket = unit_active(
            Path::new(SYSTEMD_RUNTIME),
            Path::new("systemctl"),
            VIRTLOGD_SOCKET,
        );
        match virtlogd_plan(running("virtlogd"), socket) {
            Virtlogd::Running(pid) => tracing::info!("using virtlogd (pid {pid}) already running"),
            Virtlogd::SocketActivated => {
                tracing::info!("using the host's virtlogd, started by systemd ({VIRTLOGD_SOCKET})");
            }
            Virtlogd::Start => {
                let log = dir.join("virtlogd.log");
                let daemon = spawn_in_lab("virtlogd", &mut netns::exec(ns, "virtlogd"), &log)?;
                this.started.push(daemon);
            }
        }
        let conf = dir.join("qemu.conf");
        fs::write(&conf, QEMU_CONF)
            .with_context(|| format!("failed to write {}", conf.display()))?;
        for (_, name) in HIDDEN_CONFIG_DIRS {
            let empty = dir.join(name);
            fs::create_dir_all(&empty)
                .with_context(|| format!("failed to create {}", empty.display()))?;
        }
        let log = dir.join("libvirtd.log");
        let daemon = spawn_in_lab("libvirtd", &mut libvirtd_command(ns, &conf, dir), &log)?;
        this.started.push(daemon);
        let deadline = Instant::now() + START_TIMEOUT;
        let answered = wait_until(deadline, || {
            this.started.iter().all(Daemon::is_running)
                && output_with_timeout(&mut virsh(["version"]), VIRSH_TIMEOUT)
                    .is_ok_and(|out| out.status.success())
        });
        if !answered {
            bail!(
                "libvirtd did not answer within {START_TIMEOUT:?} ({}): {}",
                if this.started.iter().all(Daemon::is_running) {
                    "still running"
                } else {
                    "it exited"
                },
                crate::lab::tail(&log, 5)
            );
        }
        Ok(this)
    }

    /// Stops the daemons this run started (SIGTERM, then SIGKILL), newest first.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_started()
    }

    fn stop_started(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(daemon) = self.started.pop() {
            if let Err(err) = daemon.stop(STOP_GRACE) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Err(err) = self.stop_started() {
            eprintln!("failed to stop libvirt's daemons: {err:#}");
        }
    }
}

/// Starts a daemon in the lab's namespace, not while a signal's teardown runs nor after it
/// began ([`crate::lab::changes`], [`crate::lab::unless_stopped`]): one started meanwhile
/// would run on in a namespace the teardown deleted, holding libvirt's sockets under
/// /run/libvirt, and every later `--via libvirt` run would refuse it.
fn spawn_in_lab(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Daemon> {
    spawn_unless_stopped(crate::lab::unless_stopped, name, cmd, log)
}

/// [`spawn_in_lab`] with the check for a stop signal given.
fn spawn_unless_stopped(
    unless_stopped: impl FnOnce() -> anyhow::Result<()>,
    name: &str,
    cmd: &mut Command,
    log: &Path,
) -> anyhow::Result<Daemon> {
    let _changes = crate::lab::changes();
    unless_stopped().with_context(|| format!("{name} was not started"))?;
    Daemon::spawn(name, cmd, log)
}

/// libvirtd inside `ns`, in a private mount namespace where `conf` replaces the system's
/// qemu.conf and the empty directories in `dir` hide [`HIDDEN_CONFIG_DIRS`].
fn libvirtd_command(ns: &str, conf: &Path, dir: &Path) -> Command {
    // `ip netns exec` already makes a mount namespace of its own; `unshare --propagation
    // private` makes sure no mount of it ever reaches the host's.
    let mut script = format!("set -e; mount --bind \"$1\" {SYSTEM_QEMU_CONF}; ");
    for (hidden, name) in HIDDEN_CONFIG_DIRS {
        script.push_str(&format!(
            // Made when missing (an empty directory, as libvirt makes it at its first pool or
            // hook): else what libvirtd writes there would land in the host's /etc.
            "mkdir -p {hidden}; mount --bind \"$2/{name}\" {hidden}; "
        ));
    }
    script.push_str("exec libvirtd");
    let mut cmd = netns::exec(ns, "unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .arg("libvirtd-in-lab")
        .arg(conf)
        .arg(dir);
    cmd
}

/// Takes [`LOCK_FILE`], waiting up to [`LOCK_TIMEOUT`] for another run to let it go.
fn take_lock() -> anyhow::Result<nix::fcntl::Flock<File>> {
    let path = PathBuf::from(LOCK_FILE);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let mut told = false;
    loop {
        let file =
            File::create(&path).with_context(|| format!("failed to open {}", path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                if !told {
                    eprintln!(
                        "waiting for another metaboot-harness run to finish with libvirtd ({})",
                        path.display()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err((_, errno)) => bail!(
                "failed to lock {} ({errno}): another metaboot-harness run still uses libvirtd",
                path.display()
            ),
        }
    }
}

/// The PID of a running process named `name` (its `comm`), if any.
fn running(name: &str) -> Option<u32> {
    process::pids().into_iter().find(|pid| {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name)
            && !process::is_zombie(*pid)
    })
}

/// Present when systemd runs the machine (`sd_booted`).
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// The host's libvirt units systemd starts on a connection: Debian's libvirt-daemon-system
/// enables `libvirtd.socket` (libvirtd then exits when idle), newer libvirt the modular
/// `virtqemud.socket`.
pub const SOCKET_UNITS: [&str; 2] = ["libvirtd.socket", "virtqemud.socket"];

/// The first of [`SOCKET_UNITS`] active on a machine systemd runs (`runtime` is its
/// `/run/systemd/system`, `systemctl` the tool asked).
fn socket_activated(runtime: &Path, systemctl: &Path) -> Option<&'static str> {
    SOCKET_UNITS
        .into_iter()
        .find(|unit| unit_active(runtime, systemctl, unit))
}

/// The unit through which systemd starts the host's virtlogd on the first connection
/// (`/run/libvirt/virtlogd-sock`).
pub const VIRTLOGD_SOCKET: &str = "virtlogd.socket";

/// Whether systemd runs the machine (`runtime` is its `/run/systemd/system`) and says `unit` is
/// active. False without systemd, and when `systemctl` is missing or fails.
fn unit_active(runtime: &Path, systemctl: &Path, unit: &str) -> bool {
    if !runtime.is_dir() {
        return false;
    }
    let mut ask = Command::new(systemctl);
    ask.args(["is-active", "--quiet", unit]);
    output_with_timeout(&mut ask, VIRSH_TIMEOUT).is_ok_and(|out| out.status.success())
}

/// Where the harness's libvirtd finds its virtlogd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Virtlogd {
    /// A virtlogd process runs (pid): used as it is.
    Running(u32),
    /// None runs, but systemd starts the host's on the first connection ([`VIRTLOGD_SOCKET`]):
    /// its socket is left alone.
    SocketActivated,
    /// None at all: the harness starts one and stops it afterwards.
    Start,
}

/// Which virtlogd the run uses, from the PID of a running one and whether
/// [`VIRTLOGD_SOCKET`] is active.
fn virtlogd_plan(running: Option<u32>, socket_active: bool) -> Virtlogd {
    match (running, socket_active) {
        (Some(pid), _) => Virtlogd::Running(pid),
        (None, true) => Virtlogd::SocketActivated,
        (None, false) => Virtlogd::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a test gives a daemon to start, or waits to see one is not started.
    const STARTED: Duration = Duration::from_secs(10);

    /// libvirt's daemons start only once a signal's teardown in progress has let go of the
    /// lab's changes (it never does: it exits the process), and not at all once a stop signal
    /// came: none outlives the lab.
    #[test]
    fn libvirts_daemons_are_not_started_under_a_signals_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let started = dir.path().join("started");
        let touch = || {
            let mut cmd = Command::new("touch");
            cmd.arg(&started);
            cmd
        };

        let stopped = || {
            Err(anyhow::anyhow!(
                "stopped by a signal before it was complete"
            ))
        };
        let err = spawn_unless_stopped(stopped, "libvirtd", &mut touch(), &log).unwrap_err();
        assert!(
            format!("{err:#}").contains("libvirtd was not started"),
            "{err:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(!started.exists(), "started after a stop signal");

        let teardown = crate::lab::changes();
        let spawner = std::thread::spawn({
            let mut cmd = touch();
            let log = log.clone();
            move || spawn_in_lab("libvirtd", &mut cmd, &log).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !started.exists(),
            "started while the teardown held the lab's changes"
        );
        drop(teardown);
        spawner.join().unwrap().unwrap();
        assert!(crate::wait::wait_until(Instant::now() + STARTED, || {
            started.exists()
        }));
    }

    /// Whether `check` holds within a few seconds: a script the test just wrote cannot be run
    /// while a child forked by another test thread still holds it open for writing (ETXTBSY),
    /// which makes the fake `systemctl` look like a failing one for that moment.
    fn eventually(mut check: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        crate::wait::wait_until(deadline, &mut check)
    }

    /// A host whose libvirt systemd starts on demand is found (and then refused by `start`);
    /// without systemd, or with the units inactive, nothing is.
    #[test]
    fn the_hosts_socket_activated_libvirt_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run-systemd-system");
        let systemctl = dir.path().join("systemctl");
        let fake = |active: &str| {
            let script = format!("#!/bin/sh\n[ \"$3\" = \"{active}\" ]\n");
            fs::write(&systemctl, script).unwrap();
            fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
        };
        fake("virtqemud.socket");
        assert_eq!(socket_activated(&runtime, &systemctl), None, "no systemd");
        fs::create_dir(&runtime).unwrap();
        assert!(eventually(
            || socket_activated(&runtime, &systemctl) == Some("virtqemud.socket")
        ));
        fake("libvirtd.socket");
        assert!(eventually(
            || socket_activated(&runtime, &systemctl) == Some("libvirtd.socket")
        ));
        fake("nothing");
        assert_eq!(socket_activated(&runtime, &systemctl), None);
    }

    /// The host's virtlogd that systemd starts on demand is left to do so: the harness starts
    /// its own only when there is no virtlogd at all (as on machines without systemd).
    #[test]
    fn a_socket_activated_virtlogd_is_used_not_replaced() {
        assert_eq!(virtlogd_plan(None, false), Virtlogd::Start);
        assert_eq!(virtlogd_plan(None, true), Virtlogd::SocketActivated);
        assert_eq!(virtlogd_plan(Some(42), true), Virtlogd::Running(42));
        assert_eq!(virtlogd_plan(Some(42), false), Virtlogd::Running(42));

        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run-systemd-system");
        let systemctl = dir.path().join("systemctl");
        fs::write(
            &systemctl,
            format!("#!/bin/sh\n[ \"$3\" = \"{VIRTLOGD_SOCKET}\" ]\n"),
        )
        .unwrap();
        fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
        // No systemd as PID 1 (this machine, CI): the socket is not asked about.
        assert!(!unit_active(&runtime, &systemctl, VIRTLOGD_SOCKET));
        fs::create_dir(&runtime).unwrap();
        assert!(eventually(|| unit_active(
            &runtime,
            &systemctl,
            VIRTLOGD_SOCKET
        )));
        assert!(!unit_active(&runtime, &systemctl, "libvirtd.socket"));
        // systemctl missing (or failing): as without systemd.
        let absent = dir.path().join("no-systemctl");
        assert!(!unit_active(&runtime, &absent, VIRTLOGD_SOCKET));
    }

    #[test]
    fn the_private_qemu_conf_runs_guests_as_root_without_relabelling() {
        for line in [
            "user = \"root\"",
            "group = \"root\"",
            "dynamic_ownership = 0",
            "security_driver = \"none\"",
            "cgroup_controllers = [ ]",
            // The console file is never rotated away from its reader.
            "stdio_handler = \"file\"",
        ] {
            assert!(QEMU_CONF.lines().any(|l| l == line), "{line}");
        }
        let cmd = libvirtd_command("metaboot-x", Path::new("/d/qemu.conf"), Path::new("/d"));
        let line = process::describe(&cmd);
        assert!(
            line.starts_with(
                "ip netns exec metaboot-x unshare --mount --propagation private sh -c"
            ),
            "{line}"
        );
        assert!(
            line.contains("mount --bind \"$1\" /etc/libvirt/qemu.conf"),
            "{line}"
        );
        assert!(
            line.ends_with("exec libvirtd libvirtd-in-lab /d/qemu.conf /d"),
            "{line}"
        );
    }

    /// The harness's libvirtd sees none of the host's domains, networks, storage pools and
    /// hooks, autostarted or not: the whole of /etc/libvirt/qemu, /etc/libvirt/storage and
    /// /etc/libvirt/hooks is hidden, not only the autostart links.
    #[test]
    fn the_hosts_domains_networks_and_pools_are_hidden() {
        let cmd = libvirtd_command("metaboot-x", Path::new("/d/qemu.conf"), Path::new("/d"));
        let line = process::describe(&cmd);
        assert!(line.contains("mkdir -p /etc/libvirt/storage;"), "{line}");
        for mount in [
            "mount --bind \"$2/etc-libvirt-qemu\" /etc/libvirt/qemu;",
            "mount --bind \"$2/etc-libvirt-storage\" /etc/libvirt/storage;",
            "mount --bind \"$2/etc-libvirt-hooks\" /etc/libvirt/hooks;",
        ] {
            assert!(line.contains(mount), "{line}");
        }
        for hidden in ["/etc/libvirt/qemu/autostart", "/etc/libvirt/qemu/networks"] {
            assert!(Path::new(hidden).starts_with(QEMU_CONFIG_DIR), "{hidden}");
        }
    }

    #[test]
    fn virsh_talks_to_the_system_instance() {
        let line = process::describe(&virsh(["domstate", "g1"]));
        assert_eq!(line, "virsh -q -c qemu:///system domstate g1");
    }

    #[test]
    fn this_process_is_found_by_name_and_namespace_checks_fail_for_unknown_namespaces() {
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        assert!(running(me.trim()).is_some());
        assert!(running("no-such-process-name").is_none());
        assert!(!netns::process_in(
            std::process::id(),
            "metaboot-no-such-lab"
        ));
    }
}
