//! A Debian guest's boot as its systemd recorded it, read over SSH once the boot finished:
//! when systemd started, when network-online.target and ssh.service became active, when each
//! provisioner unit's main process started and exited, and when the boot finished, all on the
//! guest's monotonic clock (seconds since its kernel started). The console log ties that clock
//! to the host's: its lines carry both the host's time and the kernel's printk time.

use anyhow::{Context, bail};
use serde::Serialize;

/// The target the guest's network is online at.
pub const NETWORK_ONLINE: &str = "network-online.target";

/// Debian's OpenSSH server unit.
pub const SSH_UNIT: &str = "ssh.service";

/// The systemd manager's properties read: systemd's start and the boot's end.
pub const MANAGER_PROPERTIES: [&str; 2] =
    ["UserspaceTimestampMonotonic", "FinishTimestampMonotonic"];

/// Each unit's properties read.
pub const UNIT_PROPERTIES: [&str; 5] = [
    "Id",
    "LoadState",
    "ActiveEnterTimestampMonotonic",
    "ExecMainStartTimestampMonotonic",
    "ExecMainExitTimestampMonotonic",
];

/// The line before the manager's properties in [`show_command`]'s output.
const MANAGER_HEADER: &str = "--- manager";
/// The line before the units' properties.
const UNITS_HEADER: &str = "--- units";

/// What systemd-analyze says of the boot, each unit's CPU time and the journal without the
/// kernel's lines, read as root through sudo (kept next to the console log for reading): one
/// SSH call each, so that a slow one does not cost the others.
pub const ANALYZE_COMMANDS: &[&str] = &[
    "systemd-analyze --no-pager time; echo; systemd-analyze --no-pager blame | head -n 40",
    "systemd-analyze --no-pager critical-chain ssh.service network-online.target",
    "systemctl show -p Id -p CPUUsageNSec '*' | awk -F= '/^Id=/ {id = $2} \
       /^CPUUsageNSec=/ {cpu = $2} /^$/ {if (cpu ~ /^[0-9]+$/) printf \"%8.3f s %s\\n\", cpu / 1e9, id; \
       cpu = \"\"}' \
       | sort -n -r | head -n 40",
    "sudo -n journalctl --no-pager -b -o short-monotonic | grep -v ' kernel: ' | head -n 600",
];

/// One provisioner unit's main process, seconds on the guest's monotonic clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitRun {
    /// The unit (`cloud-init.service`, `metaboot.service`).
    pub unit: String,
    /// Its main process started.
    pub start: f64,
    /// Its main process exited.
    pub exit: f64,
}

impl UnitRun {
    /// How long its main process ran, seconds.
    pub fn seconds(&self) -> f64 {
        self.exit - self.start
    }
}

/// A finished boot, seconds on the guest's monotonic clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// systemd started (the kernel and the initramfs before it).
    pub systemd: f64,
    /// network-online.target became active.
    pub network_online: f64,
    /// ssh.service became active (sshd accepts logins).
    pub ssh: f64,
    /// The boot finished (every start-up job done).
    pub finished: f64,
    /// The provisioner's units, in the order asked.
    pub units: Vec<UnitRun>,
}

impl Timeline {
    /// The provisioner's own time: its units' main processes, summed.
    pub fn provisioner_seconds(&self) -> f64 {
        self.units.iter().map(UnitRun::seconds).sum()
    }

    /// When the provisioner's last unit exited.
    pub fn provisioned(&self) -> f64 {
        self.units.iter().map(|u| u.exit).fold(0.0, f64::max)
    }
}

/// The shell command that prints the manager's and the units' properties (the provisioner's
/// `units`, network-online.target and ssh.service); [`parse`] reads its output.
pub fn show_command(units: &[&str]) -> String {
    let props = |names: &[&str]| names.join(",");
    format!(
        "echo '{MANAGER_HEADER}'; systemctl show --property={}; \
         echo '{UNITS_HEADER}'; systemctl show --property={} {NETWORK_ONLINE} {SSH_UNIT} {}",
        props(&MANAGER_PROPERTIES),
        props(&UNIT_PROPERTIES),
        units.join(" ")
    )
}

/// Reads [`show_command`]'s output: `None` while the boot or a unit has not finished (a
/// timestamp still 0), an error when the output is not what systemctl prints or a unit is not
/// in the guest.
pub fn parse(text: &str, units: &[&str]) -> anyhow::Result<Option<Timeline>> {
    let (manager, unit_text) = text
        .split_once(UNITS_HEADER)
        .context("no unit properties in systemctl's output")?;
    let manager = manager
        .split_once(MANAGER_HEADER)
        .map(|(_, rest)| rest)
        .context("no manager properties in systemctl's output")?;
    let manager = properties(manager);
    let blocks: Vec<Vec<(&str, &str)>> = unit_text
        .split("\n\n")
        .map(properties)
        .filter(|block| !block.is_empty())
        .collect();
    let unit = |id: &str| -> anyhow::Result<&Vec<(&str, &str)>> {
        let block = blocks
            .iter()
            .find(|b| value(b, "Id") == Some(id))
            .with_context(|| format!("{id}: not in systemctl's output"))?;
        match value(block, "LoadState") {
            Some("loaded") => Ok(block),
            state => bail!("{id}: not loaded in the guest ({})", state.unwrap_or("?")),
        }
    };
    let mut stamps = Vec::new();
    stamps.push(micros(&manager, "UserspaceTimestampMonotonic", "systemd")?);
    stamps.push(micros(&manager, "FinishTimestampMonotonic", "systemd")?);
    for id in [NETWORK_ONLINE, SSH_UNIT] {
        stamps.push(micros(unit(id)?, "ActiveEnterTimestampMonotonic", id)?);
    }
    let mut runs = Vec::new();
    for id in units {
        let block = unit(id)?;
        let start = micros(block, "ExecMainStartTimestampMonotonic", id)?;
        let exit = micros(block, "ExecMainExitTimestampMonotonic", id)?;
        stamps.extend([start, exit]);
        runs.push((id, start, exit));
    }
    // systemd writes 0 for what has not happened yet.
    if stamps.contains(&0) {
        return Ok(None);
    }
    let secs = |us: u64| us as f64 / 1e6;
    Ok(Some(Timeline {
        systemd: secs(stamps[0]),
        finished: secs(stamps[1]),
        network_online: secs(stamps[2]),
        ssh: secs(stamps[3]),
        units: runs
            .into_iter()
            .map(|(id, start, exit)| UnitRun {
                unit: (*id).to_owned(),
                start: secs(start),
                exit: secs(exit),
            })
            .collect(),
    }))
}

fn properties(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .collect()
}

fn value<'a>(block: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    block.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn micros(block: &[(&str, &str)], name: &str, of: &str) -> anyhow::Result<u64> {
    let text = value(block, name).with_context(|| format!("{of}: no {name}"))?;
    text.parse()
        .with_context(|| format!("{of}: {name}={text} is not a number of microseconds"))
}

/// The host's time (seconds since QEMU started) at the guest's monotonic zero, from a console
/// log whose lines read `[  HOST] [  KERNEL] text` (the serial monitor's stamp, then printk's):
/// the smallest HOST − KERNEL, since a line only ever reaches the host late. Lines stamped
/// 0.000000 are left out (printed before the kernel's clock ran).
pub fn clock_offset(serial_log: &str) -> Option<f64> {
    serial_log
        .lines()
        .filter_map(|line| {
            let (host, rest) = stamp(line)?;
            let (kernel, _) = stamp(rest.trim_start())?;
            (kernel > 0.0).then_some(host - kernel)
        })
        .min_by(f64::total_cmp)
}

/// `[  12.345] rest` → (12.345, rest).
fn stamp(line: &str) -> Option<(f64, &str)> {
    let (inside, rest) = line.strip_prefix('[')?.split_once(']')?;
    Some((inside.trim().parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: [&str; 2] = ["cloud-init.service", "cloud-final.service"];

    fn output(final_exit: u64) -> String {
        format!(
            "{MANAGER_HEADER}\nUserspaceTimestampMonotonic=2500000\nFinishTimestampMonotonic=95000000\n\
             {UNITS_HEADER}\n\
             Id=network-online.target\nLoadState=loaded\nActiveEnterTimestampMonotonic=40000000\n\n\
             ExecMainStartTimestampMonotonic=0\nExecMainExitTimestampMonotonic=0\n\
             Id=ssh.service\nLoadState=loaded\nActiveEnterTimestampMonotonic=60250000\n\n\
             ExecMainStartTimestampMonotonic=30000000\nExecMainExitTimestampMonotonic=38500000\n\
             Id=cloud-init.service\nLoadState=loaded\nActiveEnterTimestampMonotonic=38600000\n\n\
             ExecMainStartTimestampMonotonic=70000000\nExecMainExitTimestampMonotonic={final_exit}\n\
             Id=cloud-final.service\nLoadState=loaded\nActiveEnterTimestampMonotonic=90000000\n"
        )
    }

    #[test]
    fn reads_systemds_timestamps_once_the_boot_finished() {
        let timeline = parse(&output(80_000_000), &UNITS).unwrap().unwrap();
        assert_eq!(timeline.systemd, 2.5);
        assert_eq!(timeline.network_online, 40.0);
        assert_eq!(timeline.ssh, 60.25);
        assert_eq!(timeline.finished, 95.0);
        assert_eq!(timeline.units.len(), 2);
        assert_eq!(timeline.units[0].unit, "cloud-init.service");
        assert!((timeline.provisioner_seconds() - 18.5).abs() < 1e-9);
        assert_eq!(timeline.provisioned(), 80.0);
        assert_eq!(parse(&output(0), &UNITS).unwrap(), None, "final still runs");
    }

    #[test]
    fn a_unit_the_guest_lacks_is_an_error() {
        let text = output(80_000_000).replace(
            "Id=cloud-final.service\nLoadState=loaded",
            "Id=cloud-final.service\nLoadState=not-found",
        );
        let err = parse(&text, &UNITS).unwrap_err();
        assert!(
            format!("{err:#}").contains("cloud-final.service: not loaded"),
            "{err:#}"
        );
        let err = parse(&output(1), &["metaboot.service"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("metaboot.service: not in"),
            "{err:#}"
        );
        assert!(parse("nothing", &UNITS).is_err());
    }

    #[test]
    fn the_command_asks_for_every_unit() {
        let command = show_command(&["metaboot.service"]);
        for part in [
            "--property=UserspaceTimestampMonotonic,FinishTimestampMonotonic",
            "network-online.target ssh.service metaboot.service",
            "ExecMainExitTimestampMonotonic",
        ] {
            assert!(command.contains(part), "{part} in {command}");
        }
    }

    #[test]
    fn the_console_ties_the_guest_clock_to_the_host() {
        let log = "[   0.120] SeaBIOS (version 1.16.2)\n\
                   [  12.903] [    0.000000] Linux version 6.1.0-57-cloud-amd64\n\
                   [  13.500] [    0.000000] Command line: console=ttyS0\n\
                   [  14.100] [    0.400000] smpboot: CPU0\n\
                   [  44.659] [   30.940369] systemd[1]: Reached target cryptsetup.target\n\
                   [  45.900] [   31.006225] systemd[1]: Listening on systemd-networkd.socket\n\
                   [  46.000]          Starting metaboot.service\n";
        let offset = clock_offset(log).unwrap();
        assert!((offset - 13.7).abs() < 1e-6, "{offset}");
        assert_eq!(clock_offset("[   0.120] SeaBIOS\n"), None);
    }
}
