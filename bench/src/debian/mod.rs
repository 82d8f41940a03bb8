//! Debian 12 cloud images side by side: `debian-cloud-init` and `debian-metaboot`, the two
//! flavours `image build debian` makes from one package base, booted under QEMU (TCG) one after
//! the other, interleaved over rounds, on the router path of one lab (the same chain), each boot
//! a new instance with the same user data (a host name, a user with an SSH key and a password, a
//! runcmd). The harness's cloud image run boots and checks each guest from outside; before the
//! guest is killed, this section reads its boot from systemd over SSH (see [`timeline`]).
//!
//! Two goals, each met only when every round meets it: QEMU start → first key login as the
//! default user (metaboot ≤ 0.5× cloud-init), and the provisioner's own time, its units' main
//! processes as systemd timed them (metaboot.service ≤ 1/20 of cloud-init's four stages). The
//! other rows say where the boot's time goes.

pub mod sample;
pub mod timeline;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metaboot_harness::check::ssh::{self, SshTarget};
use metaboot_harness::cli::{AgentArgs, build_debian};
use metaboot_harness::guest::Via;
use metaboot_harness::guest::qemu::DISK_BOOT_TIMEOUT;
use metaboot_harness::image::debian::{self, Flavour};
use metaboot_harness::image::disk::DiskImage;
use metaboot_harness::lab::Lab;
use metaboot_harness::progress;
use metaboot_harness::scenario::cloud_image::{self, CloudImageGuest, POLL, RunHooks};
use metaboot_harness::scenario::matrix::MetadataPath;
use metaboot_harness::wait::wait_until_ok;

pub use self::sample::{DebianSample, rows};
use self::sample::{print_boot, print_round};
use self::timeline::Timeline;
use crate::table::Row;

/// The metadata path every boot takes.
pub const PATH: MetadataPath = MetadataPath::Router;

/// How often the first key login is tried: the login times are this fine (the checks poll
/// every 2 s, too coarse to compare boots).
pub const LOGIN_POLL: Duration = Duration::from_millis(250);

/// How long after the checks the guest's boot may take to finish (systemd's last start-up job):
/// the checks start once the provisioner's verdict is final, so only stragglers remain.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(180);

/// cloud-init's four stages, in the order they run.
pub const CLOUD_INIT_UNITS: [&str; 4] = [
    "cloud-init-local.service",
    "cloud-init.service",
    "cloud-config.service",
    "cloud-final.service",
];

/// metaboot's two stages (the user scripts run after sshd starts, like cloud-final).
pub const METABOOT_UNITS: [&str; 2] = ["metaboot.service", "metaboot-final.service"];

/// The units that provision a flavour's guests.
pub fn units(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::CloudInit => &CLOUD_INIT_UNITS,
        Flavour::Metaboot => &METABOOT_UNITS,
    }
}

/// The boots of a run, in order: per round, cloud-init's guest then metaboot's.
pub fn boot_order(rounds: usize) -> Vec<(usize, Flavour)> {
    (1..=rounds)
        .flat_map(|round| Flavour::ALL.map(|flavour| (round, flavour)))
        .collect()
}

/// What the section measured, and what stopped it early.
#[derive(Debug, Default)]
pub struct Measured {
    /// The rows (from the boots that completed).
    pub rows: Vec<Row>,
    /// Every boot.
    pub samples: Vec<DebianSample>,
    /// Why it stopped before the last round, if it did.
    pub failure: Option<anyhow::Error>,
}

/// What every boot of the section shares.
pub struct Setup<'a> {
    /// The package and image cache (`image build debian` leaves the images there).
    pub cache: &'a Path,
    /// `metaboot-server`, which serves the lab.
    pub server_bin: &'a Path,
    /// The static guest agent baked into `debian-metaboot`.
    pub agent_bin: &'a Path,
    /// Root of the labs' state directories.
    pub state_root: &'a Path,
    /// The section's directory (console logs, keys, overlays).
    pub dir: &'a Path,
}

/// Builds (or finds) both images, brings a lab up and boots `rounds` rounds in it.
pub fn measure(setup: &Setup<'_>, rounds: usize) -> anyhow::Result<Measured> {
    metaboot_harness::scenario::preflight()?;
    debian::preflight()?;
    let lines = progress::Lines::new();
    let images = build_debian(
        setup.cache,
        None,
        &AgentArgs {
            agent: Some(setup.agent_bin.to_owned()),
        },
        &Flavour::ALL,
        &lines,
    )
    .context("failed to build the Debian images")?;
    for image in &images {
        println!(
            "  {} {} ({})",
            image.manifest.kind,
            if image.cached { "cached" } else { "built" },
            image.disk.display()
        );
    }
    let askpass = ssh::write_askpass(setup.dir)?;
    let lab = crate::qemu::lab_up(setup.server_bin, setup.state_root)?;
    let mut measured = Measured::default();
    for (round, flavour) in boot_order(rounds) {
        let outcome = crate::interrupt::check().and_then(|()| {
            let image = images
                .iter()
                .find(|i| i.manifest.kind == flavour.name())
                .with_context(|| format!("image build made no {}", flavour.name()))?;
            boot(&lab, image, flavour, round, setup.dir, &askpass, &lines)
        });
        match outcome {
            Ok(sample) => {
                print_boot(&sample);
                measured.samples.push(sample);
                if flavour == Flavour::Metaboot {
                    print_round(round, &measured.samples);
                }
            }
            Err(err) => {
                measured.failure = Some(err);
                break;
            }
        }
    }
    lab.down().context("failed to take the bench's lab down")?;
    measured.rows = rows(&measured.samples, rounds);
    Ok(measured)
}

/// Boots one guest of `flavour` as a new instance, checks it and reads its boot.
fn boot(
    lab: &Lab,
    image: &DiskImage,
    flavour: Flavour,
    round: usize,
    dir: &Path,
    askpass: &Path,
    progress: &dyn progress::Progress,
) -> anyhow::Result<DebianSample> {
    let spec = CloudImageGuest {
        name: format!("{}/{}-{round}", PATH.name(), flavour.name()),
        image: image.disk.clone(),
        format: "qcow2".into(),
        provisioner: Some(image.manifest.provisioner),
        default_user: image.manifest.default_user.clone(),
        path: PATH,
        via: Via::Qemu,
        boot_timeout: DISK_BOOT_TIMEOUT,
        // The image's size, as in every run before: the boot-to-login figures stay comparable.
        disk_growth: 0,
        trust_ca: false,
        reboot_once: false,
        mounts: false,
        apt_package: None,
        locale: false,
        keys_elsewhere: false,
        ntp: false,
        disable_metadata: false,
        rsyslog: false,
        bootcmd: false,
        disk_setup: false,
    };
    let guest_dir = dir.join(spec.slug());
    let mut seen = None;
    let mut inspect = |target: &SshTarget, key: &Path| -> anyhow::Result<()> {
        seen = Some(read_timeline(target, key, units(flavour), &guest_dir)?);
        Ok(())
    };
    let report = cloud_image::run_with(
        lab,
        &spec,
        &guest_dir,
        askpass,
        progress,
        &mut RunHooks {
            login_poll: LOGIN_POLL,
            inspect: &mut inspect,
        },
    );
    if !report.passed {
        bail!(
            "{} did not pass its checks:\n{}",
            spec.name,
            cloud_image::table(&[report])
        );
    }
    let guest = seen.with_context(|| format!("{}: no boot timeline read", spec.name))?;
    let console = std::fs::read_to_string(&report.serial_log).unwrap_or_default();
    Ok(DebianSample {
        round,
        image: flavour.name(),
        times: report.times,
        clock_offset: timeline::clock_offset(&console),
        guest,
    })
}

/// Waits until the guest's boot finished, then reads its timeline, and keeps what
/// systemd-analyze says of it in `dir` (for `--keep`).
fn read_timeline(
    target: &SshTarget,
    key: &Path,
    units: &[&str],
    dir: &Path,
) -> anyhow::Result<Timeline> {
    let command = timeline::show_command(units);
    let deadline = Instant::now() + FINISH_TIMEOUT;
    // Outer error: try again (ssh failed, the boot is not finished); inner: give up.
    let read = wait_until_ok(
        deadline,
        POLL,
        || -> anyhow::Result<anyhow::Result<Timeline>> {
            let out = ssh::with_key(target, key, &command)?;
            if !out.success() {
                bail!("systemctl show failed: {}", out.summary());
            }
            match timeline::parse(&out.stdout, units) {
                Ok(Some(timeline)) => Ok(Ok(timeline)),
                Ok(None) => bail!("the guest's boot has not finished"),
                Err(err) => Ok(Err(err)),
            }
        },
    );
    let timeline = read
        .with_context(|| format!("no finished boot within {FINISH_TIMEOUT:?}"))?
        .context("failed to read systemd's timestamps")?;
    // Kept for reading only (`--keep`): neither a failed look nor a failed write loses a number,
    // so a failure is written where the output would be.
    let text: String = timeline::ANALYZE_COMMANDS
        .iter()
        .map(|command| match ssh::with_key(target, key, command) {
            Ok(out) => format!("$ {command}\n{}{}\n", out.stdout, out.stderr),
            Err(err) => format!("$ {command}\nfailed in the guest: {err:#}\n\n"),
        })
        .collect();
    let _ =
        metaboot_harness::atomic::write(&dir.join("systemd-analyze.txt"), text.as_bytes(), 0o644);
    Ok(timeline)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Section};
    use crate::plan::{Plan, ROUNDS};

    fn plan(args: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(["metaboot-bench"].iter().chain(args).copied()).unwrap();
        Plan::new(&cli.bench).unwrap()
    }

    #[test]
    fn the_full_plan_interleaves_three_rounds_and_quick_one() {
        let full = plan(&["--only", "debian"]);
        assert_eq!(full.sections, vec![Section::Debian]);
        assert!(full.rounds >= 3 && full.rounds == ROUNDS);
        let order = boot_order(full.rounds);
        assert_eq!(order.len(), 2 * full.rounds);
        assert_eq!(
            &order[..4],
            &[
                (1, Flavour::CloudInit),
                (1, Flavour::Metaboot),
                (2, Flavour::CloudInit),
                (2, Flavour::Metaboot)
            ]
        );
        let quick = plan(&["--quick", "--only", "debian"]);
        assert_eq!(boot_order(quick.rounds).len(), 2);
        assert!(
            plan(&[]).has(Section::Debian),
            "the full run has the section"
        );
    }

    #[test]
    fn goals_and_limits() {
        assert!(LOGIN_POLL < POLL, "login times finer than the checks' poll");
        assert!(FINISH_TIMEOUT >= Duration::from_secs(60));
        assert_eq!(units(Flavour::CloudInit).len(), 4);
        assert_eq!(
            units(Flavour::Metaboot),
            ["metaboot.service", "metaboot-final.service"]
        );
    }
}
