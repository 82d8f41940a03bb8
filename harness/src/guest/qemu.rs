//! Running a guest under QEMU (TCG), started by the harness or by libvirt: the command line, the
//! process group or domain, the console monitor and the boot timeline measured on the host.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::domain::{ConsoleFile, Domain};
use super::serial::{self, Marker, SerialMonitor};
use super::{Boot, Entropy, Guest, QEMU_BIN, Via};
use crate::lab::netns;
use crate::process::ProcessGroup;

/// How long a guest may take from QEMU start to the "provisioned" marker. TCG boots take 3-6 s
/// here; the margin covers parallel boots on 2 cores and slow CI machines.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a guest booting a distribution from its disk may take from QEMU's start to its
/// first SSH key login: about a minute under TCG here (spec: lab.md), the margin for two
/// boots at once on 2 busy cores and slower CI machines.
pub const DISK_BOOT_TIMEOUT: Duration = Duration::from_secs(360);

/// The SMBIOS system information nova gives its guests (manufacturer and product).
pub const NOVA_SMBIOS: &str = "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova";

/// How long a guest may take to power off after `poweroff -f`.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a wait for a marker asks whether the guest still runs: a guest that stopped is
/// reported within this, not at the boot's deadline (under libvirt the console file never ends
/// by itself; each look is a `virsh domstate`).
pub const GUEST_STATE_POLL: Duration = Duration::from_secs(2);

/// How long QEMU has to be reaped once its console closed: it closes its stdout as it exits, a
/// moment before its exit status can be had.
pub const REAP_AFTER_CLOSE: Duration = Duration::from_secs(5);

/// How a wait for a marker ended.
#[derive(Debug)]
enum Waited {
    /// The marker came.
    Marker(Marker),
    /// The guest stopped first: why, as [`RunningGuest::stopped`] says it.
    Stopped(String),
    /// The deadline passed.
    Deadline,
}

/// Waits for marker `name` (after the first `from`) on `serial` until `deadline`, asking
/// `stopped` every `poll` whether the guest stopped (and when the console ends).
fn wait_watching(
    serial: &SerialMonitor,
    name: &str,
    from: usize,
    deadline: Instant,
    poll: Duration,
    mut stopped: impl FnMut() -> anyhow::Result<Option<String>>,
) -> anyhow::Result<Waited> {
    loop {
        let slice = (Instant::now() + poll).min(deadline);
        if let Some(marker) = serial.wait_for(name, from, slice) {
            return Ok(Waited::Marker(marker));
        }
        if let Some(why) = stopped()? {
            return Ok(Waited::Stopped(why));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Waited::Deadline);
        }
        if serial.closed() || serial.panicked() {
            // The console's wait returns at once now: look again a poll later.
            std::thread::sleep(poll.min(deadline - now));
        }
    }
}

/// `path` as the value of a QEMU option (`file=…` in `-drive`): a comma doubled, as QEMU reads
/// `,,` as one comma, so a directory named `a,b` can neither break the option nor add one.
fn option_value(path: &Path) -> OsString {
    let bytes = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// QEMU's arguments for `guest`.
pub fn args(guest: &Guest) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-name", &format!("guest={}", guest.name.replace(',', ",,"))]);
    // KVM guests hang on these machines (/dev/kvm exists, but a guest spins at 100 % system
    // time with nothing on the console): TCG only.
    push(&[
        "-accel",
        "tcg",
        "-smp",
        "1",
        "-m",
        &guest.memory_mb.to_string(),
    ]);
    push(&[
        "-cpu",
        if guest.entropy == Entropy::CpuMax {
            "max"
        } else {
            "qemu64"
        },
    ]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    // -nodefaults drops the serial port: put it back on stdout, where the harness reads it.
    push(&[
        "-chardev",
        "stdio,id=serial0,signal=off",
        "-serial",
        "chardev:serial0",
    ]);
    match &guest.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            args.push("-kernel".into());
            args.push(kernel.clone().into());
            args.push("-initrd".into());
            args.push(initrd.clone().into());
            args.push("-append".into());
            args.push(cmdline.clone().into());
        }
        Boot::Disk { overlay } => {
            // The disk SeaBIOS boots from, whatever other disks the guest has.
            let mut spec = OsString::from("file=");
            spec.push(option_value(overlay));
            spec.push(",format=qcow2,if=none,id=boot");
            args.push("-drive".into());
            args.push(spec);
            args.push("-device".into());
            args.push("virtio-blk-pci,drive=boot,bootindex=0".into());
            // What nova tells its guests through SMBIOS: cloud-init's ds-identify looks for
            // it before it tries the OpenStack metadata service.
            args.push("-smbios".into());
            args.push(NOVA_SMBIOS.into());
        }
    }
    if let Some(nic) = &guest.nic {
        args.push("-netdev".into());
        args.push(format!("tap,id=net0,ifname={},script=no,downscript=no", nic.tap).into());
        args.push("-device".into());
        args.push(format!("virtio-net-pci,netdev=net0,mac={}", nic.mac).into());
    }
    for disk in &guest.disks {
        let mut spec = OsString::from("file=");
        spec.push(option_value(disk));
        spec.push(",format=raw,if=virtio");
        args.push("-drive".into());
        args.push(spec);
    }
    if let Some(drive) = &guest.config_drive {
        let mut spec = OsString::from("file=");
        spec.push(option_value(drive));
        spec.push(",format=raw,if=virtio,readonly=on");
        args.push("-drive".into());
        args.push(spec);
    }
    if guest.entropy == Entropy::VirtioRng {
        args.extend(
            [
                "-object",
                "rng-random,filename=/dev/urandom,id=rng0",
                "-device",
                "virtio-rng-pci,rng=rng0",
            ]
            .map(OsString::from),
        );
    }
    args
}

/// A running QEMU with its console monitor.
#[derive(Debug)]
pub struct RunningGuest {
    /// The guest it runs.
    pub guest: Guest,
    backend: Backend,
    serial: SerialMonitor,
    /// When QEMU was started (host monotonic clock).
    pub started: Instant,
    stderr_log: std::path::PathBuf,
    /// Where this run's lines start in `stderr_log` (libvirt appends a domain's QEMU log
    /// across runs; the harness's own QEMU gets a fresh file).
    stderr_from: u64,
}

/// The text of `path` from byte `from` on, lossy; all of it when the file is shorter (it was
/// rotated or cut since), nothing when there is no file.
fn log_since(path: &Path, from: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(from)
        .ok()
        .filter(|&at| at <= bytes.len())
        .unwrap_or(0);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `lines` lines of `text`.
fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Lines of QEMU's messages an error about a stopped guest quotes.
pub const QEMU_LOG_TAIL_LINES: usize = 5;

/// Who runs the QEMU process.
#[derive(Debug)]
enum Backend {
    /// The harness, in a process group of its own.
    Qemu(ProcessGroup),
    /// libvirtd, as a transient domain.
    Libvirt(Domain),
}

impl RunningGuest {
    /// Starts QEMU (inside the NIC's namespace when there is one).
    pub fn start(guest: &Guest) -> anyhow::Result<Self> {
        Self::start_via(guest, Via::Qemu)
    }

    /// Starts the guest's QEMU itself or through libvirt (whose libvirtd must be running in
    /// the NIC's namespace: see [`super::libvirtd::Libvirtd`]).
    pub fn start_via(guest: &Guest, via: Via) -> anyhow::Result<Self> {
        match via {
            Via::Qemu => Self::start_qemu(guest),
            Via::Libvirt => Self::start_libvirt(guest),
        }
    }

    fn start_qemu(guest: &Guest) -> anyhow::Result<Self> {
        let mut cmd = match &guest.nic {
            Some(nic) => netns::exec(&nic.netns, QEMU_BIN),
            None => Command::new(QEMU_BIN),
        };
        let stderr_log = guest.serial_log.with_extension("qemu.log");
        let stderr = std::fs::File::create(&stderr_log)
            .with_context(|| format!("failed to create {}", stderr_log.display()))?;
        cmd.args(args(guest))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let started = Instant::now();
        // Not while a signal's teardown runs: a QEMU started after it would outlive the lab.
        let changes = crate::lab::changes();
        let mut process = ProcessGroup::spawn(&format!("QEMU for {}", guest.name), &mut cmd)?;
        drop(changes);
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .context("QEMU's stdout is piped")?;
        let serial = SerialMonitor::start(stdout, &guest.serial_log, started)?;
        Ok(Self {
            guest: guest.clone(),
            backend: Backend::Qemu(process),
            serial,
            started,
            stderr_log,
            stderr_from: 0,
        })
    }

    fn start_libvirt(guest: &Guest) -> anyhow::Result<Self> {
        let console = guest.serial_log.with_extension("console.raw");
        let log_from = super::domain::qemu_log_size(&guest.name);
        let started = Instant::now();
        let (domain, reader) = Domain::create(guest, &console)
            .with_context(|| format!("failed to create libvirt domain {}", guest.name))?;
        Self::watch_domain(guest, domain, reader, started, log_from)
    }

    /// A libvirt domain of `guest`, started at `started`, whose console `reader` follows; its
    /// QEMU log had `log_from` bytes before the start.
    fn watch_domain(
        guest: &Guest,
        domain: Domain,
        reader: ConsoleFile,
        started: Instant,
        log_from: u64,
    ) -> anyhow::Result<Self> {
        let stderr_log = domain.qemu_log();
        let serial = SerialMonitor::start(reader, &guest.serial_log, started)?;
        Ok(Self {
            guest: guest.clone(),
            backend: Backend::Libvirt(domain),
            serial,
            started,
            stderr_log,
            stderr_from: log_from,
        })
    }

    /// Starts `guest` on a libvirt network with `virt-install` (see [`super::virt_install`]);
    /// its `nic` (a lab tap) is ignored, `network` is its NIC.
    pub fn start_virt_install(
        guest: &Guest,
        network: &super::virt_install::NetworkNic,
    ) -> anyhow::Result<Self> {
        let console = guest.serial_log.with_extension("console.raw");
        let log_from = super::domain::qemu_log_size(&guest.name);
        let started = Instant::now();
        super::virt_install::install(guest, network, &console)
            .with_context(|| format!("failed to start {} with virt-install", guest.name))?;
        let (domain, reader) = Domain::adopt(&guest.name, &console)?;
        Self::watch_domain(guest, domain, reader, started, log_from)
    }

    /// Waits for a marker (after the first `from` markers); fails as soon as the guest stops
    /// (QEMU exits, the domain is gone, the kernel panics: looked at every
    /// [`GUEST_STATE_POLL`]) or when the deadline passes, naming the console log.
    pub fn wait_for(
        &mut self,
        name: &str,
        from: usize,
        deadline: Instant,
    ) -> anyhow::Result<Marker> {
        let serial = self.serial.clone();
        let waited = wait_watching(&serial, name, from, deadline, GUEST_STATE_POLL, || {
            self.stopped_or_silent()
        })?;
        let log = self.guest.serial_log.display();
        match waited {
            Waited::Marker(marker) => Ok(marker),
            Waited::Stopped(why) => bail!(
                "{}: the guest stopped {:.1} s after its start, before the `{name}` marker \
                 (console log: {log}): {why}",
                self.guest.name,
                self.started.elapsed().as_secs_f64()
            ),
            Waited::Deadline => bail!(
                "{}: no `{name}` marker within {:?} (console log: {log})",
                self.guest.name,
                deadline.saturating_duration_since(self.started)
            ),
        }
    }

    /// [`RunningGuest::stopped`], and also a console that closed: QEMU gets
    /// [`REAP_AFTER_CLOSE`] to be reaped, and a console closed while QEMU still runs is a
    /// stop of its own (no marker can come any more).
    fn stopped_or_silent(&mut self) -> anyhow::Result<Option<String>> {
        if let Some(why) = self.stopped()? {
            return Ok(Some(why));
        }
        if !self.serial.closed() {
            return Ok(None);
        }
        if let Backend::Qemu(process) = &mut self.backend {
            process.wait_timeout(REAP_AFTER_CLOSE)?;
        }
        Ok(Some(self.stopped()?.unwrap_or_else(|| {
            format!(
                "its console closed, though QEMU still runs: {}",
                self.qemu_tail()
            )
        })))
    }

    /// Why the guest can no longer come up, if it cannot: its kernel panicked or QEMU exited.
    pub fn stopped(&mut self) -> anyhow::Result<Option<String>> {
        if self.serial.panicked() {
            return Ok(Some("the guest kernel panicked".to_owned()));
        }
        let ended = match &mut self.backend {
            Backend::Qemu(process) => process
                .try_wait()?
                .map(|status| format!("QEMU exited ({status})")),
            Backend::Libvirt(domain) => {
                (!domain.running()?).then(|| format!("libvirt domain {} is gone", domain.name()))
            }
        };
        Ok(ended.map(|what| format!("{what}: {}", self.qemu_tail())))
    }

    /// The console monitor.
    pub fn serial(&self) -> &SerialMonitor {
        &self.serial
    }

    /// Waits for QEMU to exit by itself (after the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let exited = match &mut self.backend {
            Backend::Qemu(process) => process.wait_timeout(timeout)?.is_some(),
            Backend::Libvirt(domain) => {
                let deadline = Instant::now() + timeout;
                loop {
                    if !domain.running()? {
                        break true;
                    }
                    if Instant::now() >= deadline {
                        break false;
                    }
                    std::thread::sleep(super::domain::STATE_POLL);
                }
            }
        };
        if !exited {
            bail!("{} did not power off within {timeout:?}", self.guest.name);
        }
        self.serial
            .wait_closed(Instant::now() + Duration::from_secs(2));
        Ok(())
    }

    /// Kills QEMU (destroys the libvirt domain).
    pub fn kill(mut self) -> anyhow::Result<()> {
        match &mut self.backend {
            Backend::Qemu(process) => process.kill(),
            Backend::Libvirt(domain) => domain.destroy(),
        }
    }

    /// The last [`QEMU_LOG_TAIL_LINES`] of QEMU's messages of this run.
    fn qemu_tail(&self) -> String {
        last_lines(
            &log_since(&self.stderr_log, self.stderr_from),
            QEMU_LOG_TAIL_LINES,
        )
    }

    /// The console log plus QEMU's own messages (of this run only), for failure reports.
    pub fn console_text(&self) -> String {
        let serial_text = std::fs::read_to_string(&self.guest.serial_log).unwrap_or_default();
        let qemu = log_since(&self.stderr_log, self.stderr_from);
        if qemu.trim().is_empty() {
            serial_text
        } else {
            format!("{serial_text}--- QEMU ---\n{qemu}")
        }
    }
}

/// The console log plus QEMU's messages of a guest (also after QEMU is gone).
pub fn console_text(guest: &Guest) -> String {
    let serial_text = std::fs::read_to_string(&guest.serial_log).unwrap_or_default();
    let qemu =
        std::fs::read_to_string(guest.serial_log.with_extension("qemu.log")).unwrap_or_default();
    if qemu.trim().is_empty() {
        serial_text
    } else {
        format!("{serial_text}--- QEMU ---\n{qemu}")
    }
}

/// Whether a QEMU binary is installed.
pub fn available() -> bool {
    Command::new(QEMU_BIN)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The markers the boot timeline is made of, in order.
pub const TIMELINE: [&str; 4] = [
    serial::MARK_INIT,
    serial::MARK_NETWORK,
    serial::MARK_METADATA,
    serial::MARK_PROVISIONED,
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Nic;
    use super::*;
    use crate::image::{Image, Manifest};

    fn guest() -> Guest {
        let image = Image {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initrd.img".into(),
            manifest: Manifest {
                kind: "tiny".into(),
                key: "k".into(),
                ..Manifest::default()
            },
            cached: true,
        };
        Guest::new("g1", &image, Path::new("/run/g1.serial.log"))
    }

    /// A "guest" that is `sh -c script`, its console its stdout, run as QEMU would be.
    fn fake_guest(dir: &Path, script: &str) -> RunningGuest {
        fake_guest_after(dir, script, "")
    }

    /// [`fake_guest`], its messages appended to a log that already holds `earlier` (as
    /// libvirt's log of a domain of the same name holds an earlier run's).
    fn fake_guest_after(dir: &Path, script: &str, earlier: &str) -> RunningGuest {
        let guest = Guest::from_disk("fake", &dir.join("overlay.qcow2"), &dir.join("serial.log"));
        let stderr_log = dir.join("serial.qemu.log");
        std::fs::write(&stderr_log, earlier).unwrap();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&stderr_log)
            .unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let started = Instant::now();
        let mut process = ProcessGroup::spawn("fake QEMU", &mut cmd).unwrap();
        let stdout = process.child_mut().stdout.take().unwrap();
        let serial = SerialMonitor::start(stdout, &guest.serial_log, started).unwrap();
        RunningGuest {
            guest,
            backend: Backend::Qemu(process),
            serial,
            started,
            stderr_log,
            stderr_from: earlier.len() as u64,
        }
    }

    /// A failure report quotes this run's QEMU messages, not an earlier run's that libvirt
    /// kept in the same log file.
    #[test]
    fn only_this_runs_qemu_messages_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = "qemu: an earlier run's error\n".repeat(10);
        let mut vm = fake_guest_after(dir.path(), "echo 'qemu: this run' >&2; exit 1", &earlier);
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = vm
            .wait_for(serial::MARK_INIT, 0, deadline)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("qemu: this run") && !err.contains("earlier"),
            "{err}"
        );
        let text = vm.console_text();
        assert!(
            text.contains("--- QEMU ---\nqemu: this run") && !text.contains("earlier"),
            "{text}"
        );
        // A log cut since (rotated): all of it.
        let log = dir.path().join("log");
        std::fs::write(&log, "short\n").unwrap();
        assert_eq!(log_since(&log, 100), "short\n");
        assert_eq!(log_since(&log, 2), "ort\n");
        assert_eq!(log_since(&dir.path().join("none"), 0), "");
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        const { assert!(QEMU_LOG_TAIL_LINES >= 1 && QEMU_LOG_TAIL_LINES <= 20) };
    }

    /// QEMU that closes its console a moment before it exits: the wait says it stopped, with
    /// its exit status and the console log, not that no marker came within the boot's time.
    #[test]
    fn a_guest_whose_console_closes_before_it_is_reaped_is_reported_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo 'metaboot-tiny: init reached'; exec >&-; echo 'qemu: bad disk' >&2; \
                      sleep 1; exit 3";
        let mut vm = fake_guest(dir.path(), script);
        let began = Instant::now();
        let deadline = began + Duration::from_secs(90);
        assert_eq!(
            vm.wait_for(serial::MARK_INIT, 0, deadline).unwrap().text,
            "init reached"
        );
        let err = vm
            .wait_for(serial::MARK_PROVISIONED, 0, deadline)
            .unwrap_err()
            .to_string();
        assert!(began.elapsed() < Duration::from_secs(30), "{err}");
        assert!(
            err.starts_with("fake: the guest stopped ")
                && err.contains("before the `provisioned` marker")
                && err.contains(&format!(
                    "console log: {}",
                    dir.path().join("serial.log").display()
                ))
                && err.contains("exit status: 3")
                && err.contains("qemu: bad disk"),
            "{err}"
        );
        const { assert!(REAP_AFTER_CLOSE.as_secs() >= 1 && REAP_AFTER_CLOSE.as_secs() <= 30) };
    }

    /// A libvirt domain's console file never ends by itself: the wait asks the guest's state
    /// every poll, and a guest gone ends it then, not at the deadline.
    #[test]
    fn a_wait_notices_a_stopped_guest_whose_console_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, _writer) = std::io::pipe().unwrap();
        let serial =
            SerialMonitor::start(reader, &dir.path().join("serial.log"), Instant::now()).unwrap();
        let began = Instant::now();
        let gone_at = began + Duration::from_millis(300);
        let mut asked = 0;
        let waited = wait_watching(
            &serial,
            serial::MARK_PROVISIONED,
            0,
            began + Duration::from_secs(120),
            Duration::from_millis(100),
            || {
                asked += 1;
                Ok((Instant::now() >= gone_at).then(|| "libvirt domain g1 is gone".to_owned()))
            },
        )
        .unwrap();
        assert!(
            matches!(&waited, Waited::Stopped(why) if why == "libvirt domain g1 is gone"),
            "{waited:?}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{:?}",
            began.elapsed()
        );
        assert!(asked >= 2, "asked {asked} times");
        // Still running at the deadline: the deadline.
        let waited = wait_watching(
            &serial,
            serial::MARK_PROVISIONED,
            0,
            Instant::now() + Duration::from_millis(300),
            Duration::from_millis(100),
            || Ok(None),
        )
        .unwrap();
        assert!(matches!(waited, Waited::Deadline), "{waited:?}");
        const { assert!(GUEST_STATE_POLL.as_secs() >= 1 && GUEST_STATE_POLL.as_secs() <= 5) };
    }

    /// QEMU's arguments for `guest` as one line.
    fn command_line(guest: &Guest) -> String {
        let words: Vec<String> = args(guest)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        words.join(" ")
    }

    #[test]
    fn qemu_uses_tcg_the_tap_and_the_ports_mac() {
        let g = guest().with_disk(Path::new("/run/g1.img")).with_nic(Nic {
            netns: "ns".into(),
            tap: "tap1".into(),
            mac: "fa:16:3e:00:00:01".into(),
        });
        let line = command_line(&g);
        for expect in [
            "-accel tcg",
            "-cpu max",
            "-no-reboot",
            "-netdev tap,id=net0,ifname=tap1,script=no,downscript=no",
            "-device virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01",
            "-drive file=/run/g1.img,format=raw,if=virtio",
            "-kernel /img/vmlinuz -initrd /img/initrd.img -append console=ttyS0 panic=-1 no_timer_check loglevel=4",
            "-serial chardev:serial0",
        ] {
            assert!(line.contains(expect), "{expect} in {line}");
        }
        assert!(!line.contains("virtio-rng"));
        assert!(!line.contains("-smbios"), "a direct kernel boot: {line}");
        let rng = guest().with_entropy(Entropy::VirtioRng);
        let line = command_line(&rng);
        assert!(
            line.contains("virtio-rng-pci") && line.contains("-cpu qemu64"),
            "{line}"
        );
    }

    /// A run directory named `a,b` (QEMU reads `,` as the end of an option's value): the
    /// comma is doubled, so it cannot end `file=` or add an option.
    #[test]
    fn a_comma_in_a_path_stays_in_the_path() {
        let g = Guest::from_disk(
            "debian,x",
            Path::new("/run/a,format=raw/overlay.qcow2"),
            Path::new("/run/d/serial.log"),
        )
        .with_disk(Path::new("/run/a,b/state.img"));
        let line = command_line(&g);
        for expect in [
            "-name guest=debian,,x ",
            "-drive file=/run/a,,format=raw/overlay.qcow2,format=qcow2,if=none,id=boot",
            "-drive file=/run/a,,b/state.img,format=raw,if=virtio",
        ] {
            assert!(line.contains(expect), "{expect} in {line}");
        }
    }

    #[test]
    fn a_disk_guest_boots_its_overlay_through_the_firmware() {
        let mut g = Guest::from_disk(
            "debian-metaboot",
            Path::new("/run/d/overlay.qcow2"),
            Path::new("/run/d/serial.log"),
        )
        .with_disk(Path::new("/run/d/state.img"));
        g.add_kernel_arg("ignored");
        assert_eq!(g.memory_mb, super::super::DISK_MEMORY_MB);
        let line = command_line(&g);
        assert!(
            !line.contains("-kernel") && !line.contains("-append"),
            "{line}"
        );
        for expect in [
            "-drive file=/run/d/overlay.qcow2,format=qcow2,if=none,id=boot",
            "-device virtio-blk-pci,drive=boot,bootindex=0",
            "-smbios type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova",
            "-drive file=/run/d/state.img,format=raw,if=virtio",
            "-m 1024",
            "-accel tcg",
        ] {
            assert!(line.contains(expect), "{expect} in {line}");
        }
    }
}
