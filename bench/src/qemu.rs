//! Guests in QEMU, with the e2e harness's lab, image and console markers: the time from "the
//! kernel ran /init" to "provisioned" per metadata path, for the tiny image as it ships
//! (`metaboot run`, then dropbear) and for the same image told by `metaboot.baseline=wget` on
//! the kernel command line to only fetch meta_data.json once with wget after DHCP.
//!
//! Both guests are otherwise the same: same kernel, initramfs, modules, state disk, DHCP and
//! network path; each boot is a new instance (a first boot). Times are host-side, from the
//! serial console's marker lines; the goal is on the difference between the two guests of a
//! round (what provisioning adds), and every boot's console is split into phases
//! (`boot_phases.rs`) to show where that difference goes.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use metaboot_harness::guest::qemu::{BOOT_TIMEOUT, RunningGuest, TIMELINE};
use metaboot_harness::guest::{self, Guest, Nic, serial};
use metaboot_harness::image::Image;
use metaboot_harness::lab::registry::InstanceSpec;
use metaboot_harness::lab::{self, Lab, LabOptions};
use metaboot_harness::scenario::{self, matrix::MetadataPath, run::BootTimes};
use serde::Serialize;

use crate::boot_phases::{self, POINTS, Phase};
use crate::table::{Goal, Row, Unit};

/// The kernel command line flag that makes the tiny image's init fetch meta_data.json once
/// with wget instead of running `metaboot run` and dropbear (see images/tiny/init).
pub const BASELINE_FLAG: &str = "metaboot.baseline=wget";

/// Which guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestKind {
    /// udhcpc + one wget.
    Baseline,
    /// The tiny image as it ships.
    Metaboot,
}

/// One boot's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct BootSample {
    /// The metadata path.
    pub path: MetadataPath,
    /// Which guest.
    pub kind: GuestKind,
    /// Marker times, seconds since QEMU started.
    pub times: BootTimes,
    /// The boot's phases, from its console.
    pub phases: Vec<Phase>,
    /// The bench round it belongs to (from 1).
    pub round: usize,
}

impl BootSample {
    /// From "init reached" to "provisioned", seconds.
    pub fn init_to_provisioned(&self) -> Option<f64> {
        Some(self.times.provisioned? - self.times.init?)
    }

    /// From "init reached" to "metadata fetched", seconds.
    pub fn init_to_metadata(&self) -> Option<f64> {
        Some(self.times.metadata? - self.times.init?)
    }

    /// From "network up" (DHCP lease) to "metadata fetched": the provisioning step alone
    /// (`metaboot run`, or one wget), seconds.
    pub fn network_to_metadata(&self) -> Option<f64> {
        Some(self.times.metadata? - self.times.network?)
    }

    /// From "network up" (DHCP lease) to "provisioned": what follows the boot both guests
    /// share (kernel, modules, disk, DHCP), seconds.
    pub fn network_to_provisioned(&self) -> Option<f64> {
        Some(self.times.provisioned? - self.times.network?)
    }
}

/// Boots one guest of `kind` on `path`'s network of `lab` up to "provisioned"; `n` numbers
/// the boot (instance names, logs).
pub fn boot(
    lab: &Lab,
    image: &Image,
    dir: &Path,
    path: MetadataPath,
    kind: GuestKind,
    n: usize,
) -> anyhow::Result<BootSample> {
    let kind_name = match kind {
        GuestKind::Baseline => "wget",
        GuestKind::Metaboot => "metaboot",
    };
    let name = format!("bench-{}-{kind_name}-{n}", path.name());
    let user_data = dir.join(format!("{name}.user-data"));
    std::fs::write(&user_data, crate::fleet::user_data(&name))
        .with_context(|| format!("failed to write {}", user_data.display()))?;
    let network_id = lab.network(path.network())?.id.clone();
    let record = lab.register_instance(&InstanceSpec {
        name: name.clone(),
        network: network_id,
        hostname: Some(name.clone()),
        user_data: Some(user_data),
        ..InstanceSpec::default()
    })?;
    let disk = dir.join(format!("{name}.disk"));
    guest::make_state_disk(&disk)?;
    let tap = lab.add_tap(&record)?;
    let mut spec = Guest::new(&name, image, &dir.join(format!("{name}.serial.log")))
        .with_disk(&disk)
        .with_nic(Nic {
            netns: lab.state().bridge_ns.clone(),
            tap: tap.clone(),
            mac: record.mac.clone(),
        });
    if kind == GuestKind::Baseline {
        spec.add_kernel_arg(BASELINE_FLAG);
    }
    let result = run_to_provisioned(&spec);
    lab.delete_tap(&tap);
    let _ = std::fs::remove_file(&disk);
    // The instance stays registered: a new instance on its freed address would get a new MAC,
    // and dnsmasq keeps that address leased to the old one.
    let times = result?;
    let console = std::fs::read_to_string(&spec.serial_log).unwrap_or_default();
    Ok(BootSample {
        path,
        kind,
        times,
        phases: boot_phases::phases(&console),
        round: n,
    })
}

fn run_to_provisioned(spec: &Guest) -> anyhow::Result<BootTimes> {
    let mut vm = RunningGuest::start(spec)?;
    let deadline = vm.started + BOOT_TIMEOUT;
    let mut times = BootTimes::default();
    for name in TIMELINE {
        let marker = match vm.wait_for(name, 0, deadline) {
            Ok(marker) => marker,
            Err(err) => {
                let console = vm.console_text();
                let _ = vm.kill();
                return Err(err).with_context(|| {
                    let lines: Vec<&str> = console.lines().collect();
                    lines[lines.len().saturating_sub(20)..].join("\n")
                });
            }
        };
        if (name == serial::MARK_METADATA || name == serial::MARK_PROVISIONED)
            && let Err(err) = succeeded(&marker.text)
        {
            let _ = vm.kill();
            return Err(err);
        }
        let at = Some(marker.at.as_secs_f64());
        match name {
            serial::MARK_INIT => times.init = at,
            serial::MARK_NETWORK => times.network = at,
            serial::MARK_METADATA => times.metadata = at,
            _ => times.provisioned = at,
        }
    }
    vm.kill()?;
    Ok(times)
}

/// Whether the command a marker line reports on succeeded: images/tiny/init prints "metadata
/// fetched rc=N" and "provisioned … rc=N" (`metaboot-rc=N` on the metaboot guest) whatever
/// `metaboot run` or wget returned, so a boot whose provisioning failed (a wget that timed out,
/// rc=124 ten seconds later) would otherwise count as provisioned. Every `rc` field must be 0,
/// and there must be one.
pub fn succeeded(marker: &str) -> anyhow::Result<()> {
    let codes: Vec<&str> = marker
        .split_whitespace()
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            // The digits only: a kernel message the console put right after them (`rc=0[ 12.3]
            // …`) is not the command's.
            let digits = value
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(value.len());
            (name == "rc" || name.ends_with("-rc")).then_some(&value[..digits])
        })
        .collect();
    if codes.is_empty() {
        anyhow::bail!(
            "the guest's `{marker}` has no rc= field: images/tiny/init must say how the command \
             it reports on ended"
        );
    }
    if codes.iter().any(|code| *code != "0") {
        anyhow::bail!(
            "the guest's provisioning failed (`{marker}`): the boot does not count; its console \
             log says why"
        );
    }
    Ok(())
}

/// Brings a lab up with `server_bin` serving it; the caller takes it down.
pub fn lab_up(server_bin: &Path, state_root: &Path) -> anyhow::Result<Lab> {
    let config = lab::config::LabConfig::default_with_id(&lab::config::random_id());
    let started = Instant::now();
    let lab = Lab::up(
        &config,
        &LabOptions {
            state_root: state_root.to_owned(),
            server_bin: server_bin.to_owned(),
        },
    )
    .with_context(|| format!("failed to bring lab {} up", config.id))?;
    tracing::info!("lab {} up in {:?}", config.id, started.elapsed());
    Ok(lab)
}

/// The section's name in the table.
pub const SECTION: &str = "QEMU (TCG) tiny image: from /init to provisioned";
/// Goal for what provisioning adds: (init → provisioned) of the tiny image minus that of the
/// udhcpc + wget guest of the same round, seconds (issue 16).
pub const DIFFERENCE_GOAL_SECS: f64 = 0.150;

/// Boots, per round and per path, the wget guest then the metaboot guest, one at a time, in a
/// lab served by `server_bin`; the section's rows.
pub fn measure(
    server_bin: &Path,
    image: &Image,
    state_root: &Path,
    dir: &Path,
    rounds: usize,
) -> anyhow::Result<(Vec<Row>, Vec<BootSample>)> {
    scenario::preflight()?;
    let lab = lab_up(server_bin, state_root)?;
    let mut samples = Vec::new();
    let mut boots = || -> anyhow::Result<()> {
        for round in 1..=rounds {
            for path in [MetadataPath::Router, MetadataPath::Isolated] {
                for kind in [GuestKind::Baseline, GuestKind::Metaboot] {
                    crate::interrupt::check()?;
                    let sample = boot(&lab, image, dir, path, kind, round)?;
                    println!(
                        "  round {round}: {:<8} {:<8} init {:.2} s, +network {:.2} s, +metadata {:.2} s, +provisioned {:.2} s",
                        path.name(),
                        match kind {
                            GuestKind::Baseline => "wget",
                            GuestKind::Metaboot => "metaboot",
                        },
                        sample.times.init.unwrap_or(f64::NAN),
                        sample.times.network.unwrap_or(f64::NAN)
                            - sample.times.init.unwrap_or(f64::NAN),
                        sample.init_to_metadata().unwrap_or(f64::NAN),
                        sample.init_to_provisioned().unwrap_or(f64::NAN),
                    );
                    println!("           {}", boot_phases::describe(&sample.phases));
                    samples.push(sample);
                }
            }
        }
        Ok(())
    };
    let result = boots();
    let down = lab.down().context("failed to take the bench's lab down");
    result?;
    down?;
    Ok((rows(&samples, rounds), samples))
}

/// The section's rows from every boot: per path, what provisioning adds (judged per round),
/// the same from the lease on (the boot both guests share left out, with its noise), then
/// each phase of the boots (both paths).
pub fn rows(samples: &[BootSample], rounds: usize) -> Vec<Row> {
    let per_round = |path: MetadataPath, kind: GuestKind, f: fn(&BootSample) -> Option<f64>| {
        (1..=rounds)
            .map(|round| {
                samples
                    .iter()
                    .filter(|s| s.path == path && s.kind == kind && s.round == round)
                    .filter_map(f)
                    .collect::<Vec<f64>>()
            })
            .collect::<Vec<_>>()
    };
    let mut rows = Vec::new();
    for path in [MetadataPath::Router, MetadataPath::Isolated] {
        rows.push(Row::in_rounds(
            SECTION,
            &format!(
                "init → provisioned, {} path: tiny image − udhcpc+wget guest",
                path.name()
            ),
            Unit::Seconds,
            &per_round(path, GuestKind::Baseline, BootSample::init_to_provisioned),
            &per_round(path, GuestKind::Metaboot, BootSample::init_to_provisioned),
            Goal::DifferenceAtMost(DIFFERENCE_GOAL_SECS),
        ));
        rows.push(Row::in_rounds(
            SECTION,
            &format!(
                "lease → provisioned, {} path: tiny image − udhcpc+wget guest",
                path.name()
            ),
            Unit::Seconds,
            &per_round(
                path,
                GuestKind::Baseline,
                BootSample::network_to_provisioned,
            ),
            &per_round(
                path,
                GuestKind::Metaboot,
                BootSample::network_to_provisioned,
            ),
            Goal::Difference,
        ));
    }
    let phase = |kind: GuestKind, name: &str| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| s.phases.iter().filter(|p| p.name == name))
            .map(|p| p.seconds)
            .collect()
    };
    for (name, _) in &POINTS[1..] {
        let (wget, tiny) = (
            phase(GuestKind::Baseline, name),
            phase(GuestKind::Metaboot, name),
        );
        if wget.is_empty() && tiny.is_empty() {
            continue;
        }
        rows.push(Row::new(
            SECTION,
            &format!("  phase ending at {name} (wget guest vs tiny image)"),
            Unit::Seconds,
            wget,
            tiny,
            Goal::None,
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_need_both_markers() {
        let sample = BootSample {
            path: MetadataPath::Router,
            kind: GuestKind::Metaboot,
            times: BootTimes {
                init: Some(3.0),
                network: Some(3.2),
                metadata: Some(3.3),
                provisioned: Some(3.45),
                ssh: None,
            },
            phases: Vec::new(),
            round: 1,
        };
        assert!((sample.init_to_provisioned().unwrap() - 0.45).abs() < 1e-9);
        assert!((sample.init_to_metadata().unwrap() - 0.3).abs() < 1e-9);
        assert!((sample.network_to_metadata().unwrap() - 0.1).abs() < 1e-9);
        let partial = BootSample {
            times: BootTimes {
                provisioned: None,
                ..sample.times.clone()
            },
            ..sample
        };
        assert_eq!(partial.init_to_provisioned(), None);
    }

    fn sample(path: MetadataPath, kind: GuestKind, round: usize, provisioned: f64) -> BootSample {
        BootSample {
            path,
            kind,
            times: BootTimes {
                init: Some(3.0),
                network: Some(3.5),
                metadata: Some(3.0 + provisioned - 0.01),
                provisioned: Some(3.0 + provisioned),
                ssh: None,
            },
            phases: vec![Phase {
                name: "dhcp".to_owned(),
                seconds: 0.1,
            }],
            round,
        }
    }

    #[test]
    fn what_provisioning_adds_is_judged_in_every_round() {
        use GuestKind::{Baseline, Metaboot};
        use MetadataPath::{Isolated, Router};
        let mut samples = Vec::new();
        for (round, wget, tiny) in [(1, 0.60, 0.70), (2, 0.62, 0.80)] {
            for path in [Router, Isolated] {
                samples.push(sample(path, Baseline, round, wget));
                samples.push(sample(path, Metaboot, round, tiny));
            }
        }
        let rows = rows(&samples, 2);
        let router = &rows[0];
        assert!(router.metric.contains("router path"), "{}", router.metric);
        assert_eq!(router.rounds.len(), 2);
        assert!((router.rounds[0] - 0.10).abs() < 1e-9);
        assert!((router.rounds[1] - 0.18).abs() < 1e-9);
        assert_eq!(router.met, Some(false), "round 2 adds 180 ms");
        let dhcp = rows
            .iter()
            .find(|r| r.metric.contains("ending at dhcp"))
            .unwrap();
        assert_eq!(dhcp.metaboot_samples.len(), 4);
        assert_eq!(dhcp.baseline_samples.len(), 4);
    }

    /// The marker lines images/tiny/init prints, as the console shows them.
    #[test]
    fn a_marker_counts_only_when_its_command_succeeded() {
        for ok in [
            "metadata fetched rc=0",
            "provisioned baseline=wget rc=0",
            "provisioned hostname=bench-router-metaboot-1 metaboot-rc=0 password-auth=no",
            "metadata fetched rc=0[   12.345678] random: crng init done",
        ] {
            succeeded(ok).unwrap();
        }
        for failed in [
            "metadata fetched rc=124",
            "provisioned baseline=wget rc=124",
            "provisioned hostname=localhost metaboot-rc=1 password-auth=no",
            "metadata fetched rc=124[   12.345678] random: crng init done",
            "metadata fetched rc=",
        ] {
            let err = succeeded(failed).unwrap_err().to_string();
            assert!(err.contains("does not count"), "{err}");
        }
        let err = succeeded("metadata fetched").unwrap_err().to_string();
        assert!(err.contains("no rc= field"), "{err}");
    }

    #[test]
    fn the_tiny_init_reports_exit_codes() {
        let init =
            std::fs::read_to_string(metaboot_harness::workspace::root().join("images/tiny/init"))
                .unwrap();
        for marker in [
            "mark \"metadata fetched rc=$rc\"",
            "mark \"provisioned baseline=wget rc=$rc\"",
            "metaboot-rc=$rc",
        ] {
            assert!(
                init.contains(marker),
                "images/tiny/init must print {marker}"
            );
        }
    }

    #[test]
    fn the_tiny_init_knows_the_baseline_flag() {
        let init =
            std::fs::read_to_string(metaboot_harness::workspace::root().join("images/tiny/init"))
                .unwrap();
        assert!(
            init.contains(BASELINE_FLAG),
            "images/tiny/init must handle {BASELINE_FLAG}"
        );
    }
}
