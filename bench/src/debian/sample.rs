//! One boot's numbers and the section's rows: what a Debian guest's boot took on the host's
//! clock (QEMU start, first key login) and on its own (systemd's timestamps, tied to the host's
//! by the console), the rows they make, and the lines printed as the boots go.

use metaboot_harness::image::debian::Flavour;
use metaboot_harness::scenario::cloud_image::DiskBootTimes;
use serde::Serialize;

use super::timeline::Timeline;
use crate::table::{Goal, Row, Unit};

/// The section's name in the table.
pub const SECTION: &str = "Debian 12 cloud image (TCG), router path: cloud-init vs metaboot";

/// Goal: metaboot's QEMU start → first key login at most this share of cloud-init's.
pub const LOGIN_GOAL_RATIO: f64 = 0.5;

/// Goal: metaboot.service's own time at most this share of cloud-init's four stages.
pub const PROVISIONER_GOAL_RATIO: f64 = 1.0 / 20.0;

/// One boot.
#[derive(Debug, Clone, Serialize)]
pub struct DebianSample {
    /// The round.
    pub round: usize,
    /// The image (`debian-cloud-init`, `debian-metaboot`).
    pub image: &'static str,
    /// Host times, seconds since QEMU started: kernel banner, first key login, verdict, …
    pub times: DiskBootTimes,
    /// The host's time at the guest's monotonic zero (from the console).
    pub clock_offset: Option<f64>,
    /// The boot as the guest's systemd recorded it.
    pub guest: Timeline,
}

impl DebianSample {
    /// QEMU start → first key login, seconds.
    pub fn login(&self) -> Option<f64> {
        self.times.ssh
    }

    /// The provisioner's units' main processes, summed, seconds.
    pub fn provisioner(&self) -> Option<f64> {
        Some(self.guest.provisioner_seconds())
    }

    /// QEMU start → kernel banner: SeaBIOS, GRUB, loading the kernel and initramfs.
    pub fn firmware(&self) -> Option<f64> {
        self.times.kernel
    }

    /// Kernel start → systemd start: the kernel and the initramfs.
    pub fn kernel(&self) -> Option<f64> {
        Some(self.guest.systemd)
    }

    /// systemd start → network-online.target.
    pub fn systemd_to_network(&self) -> Option<f64> {
        Some(self.guest.network_online - self.guest.systemd)
    }

    /// A guest monotonic time on the host's clock (seconds since QEMU started).
    fn on_host(&self, guest_secs: f64) -> Option<f64> {
        Some(self.clock_offset.or(self.times.kernel)? + guest_secs)
    }

    /// QEMU start → ssh.service active.
    pub fn sshd(&self) -> Option<f64> {
        self.on_host(self.guest.ssh)
    }

    /// QEMU start → the provisioner's last unit exited.
    pub fn provisioned(&self) -> Option<f64> {
        self.on_host(self.guest.provisioned())
    }

    /// QEMU start → systemd's boot finished.
    pub fn finished(&self) -> Option<f64> {
        self.on_host(self.guest.finished)
    }
}

/// A row of the section: its metric, its sample's number, its goal.
type Metric = (&'static str, fn(&DebianSample) -> Option<f64>, Goal);

/// The section's rows, in order; the goals are judged on every round.
pub const METRICS: [Metric; 8] = [
    (
        "QEMU start → first key login (vs cloud-init)",
        DebianSample::login,
        Goal::RatioAtMost(LOGIN_GOAL_RATIO),
    ),
    (
        "provisioner: metaboot's 2 stages vs cloud-init's 4",
        DebianSample::provisioner,
        Goal::RatioAtMost(PROVISIONER_GOAL_RATIO),
    ),
    (
        "  QEMU start → kernel: SeaBIOS, GRUB, loading",
        DebianSample::firmware,
        Goal::None,
    ),
    (
        "  kernel → systemd: kernel, initramfs",
        DebianSample::kernel,
        Goal::None,
    ),
    (
        "  systemd → network-online.target",
        DebianSample::systemd_to_network,
        Goal::None,
    ),
    (
        "  QEMU start → ssh.service active",
        DebianSample::sshd,
        Goal::None,
    ),
    (
        "  QEMU start → provisioner's last unit exited",
        DebianSample::provisioned,
        Goal::None,
    ),
    (
        "  QEMU start → boot finished (systemd)",
        DebianSample::finished,
        Goal::None,
    ),
];

/// The section's rows from the samples of its `rounds` rounds (1..=rounds): each goal is
/// judged on each round's two boots, and a round without a number on either side (a boot
/// that failed, a time the console never showed, a round never run) does not meet it.
pub fn rows(samples: &[DebianSample], rounds: usize) -> Vec<Row> {
    let per_round = |flavour: Flavour, f: fn(&DebianSample) -> Option<f64>| -> Vec<Vec<f64>> {
        (1..=rounds)
            .map(|round| {
                samples
                    .iter()
                    .filter(|s| s.round == round && s.image == flavour.name())
                    .filter_map(f)
                    .collect()
            })
            .collect()
    };
    METRICS
        .iter()
        .map(|(metric, f, goal)| {
            let mut row = Row::in_rounds(
                SECTION,
                metric,
                Unit::Seconds,
                &per_round(Flavour::CloudInit, *f),
                &per_round(Flavour::Metaboot, *f),
                *goal,
            );
            // Judged on every round by `Row::in_rounds`: the goal column says so.
            row.every_round = true;
            row
        })
        .collect()
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} s"))
}

/// The boot's line on the console, as the boots go.
pub fn print_boot(sample: &DebianSample) {
    let stages: Vec<String> = sample
        .guest
        .units
        .iter()
        .map(|u| format!("{} {:.2}", u.unit.trim_end_matches(".service"), u.seconds()))
        .collect();
    println!(
        "  round {}: {:<17} first key login {} | kernel at {}, systemd +{}, network-online +{} \
         | provisioner {:.2} s ({}) | ssh.service at {}, provisioned at {}, boot finished at {}",
        sample.round,
        sample.image,
        secs(sample.login()),
        secs(sample.firmware()),
        secs(sample.kernel()),
        secs(sample.systemd_to_network()),
        sample.guest.provisioner_seconds(),
        stages.join(", "),
        secs(sample.sshd()),
        secs(sample.provisioned()),
        secs(sample.finished()),
    );
}

/// The round's two ratios against their goals, once its two boots are done.
pub fn print_round(round: usize, samples: &[DebianSample]) {
    let of = |flavour: Flavour| {
        samples
            .iter()
            .find(|s| s.round == round && s.image == flavour.name())
    };
    let (Some(cloud_init), Some(metaboot)) = (of(Flavour::CloudInit), of(Flavour::Metaboot)) else {
        return;
    };
    let judge = |name: &str, f: fn(&DebianSample) -> Option<f64>, goal: f64| match (
        f(cloud_init),
        f(metaboot),
    ) {
        (Some(b), Some(m)) if b > 0.0 => {
            let ratio = m / b;
            format!(
                "{name} {ratio:.3} (goal ≤ {goal:.3}: {})",
                if ratio <= goal { "met" } else { "NOT MET" }
            )
        }
        _ => format!("{name} -"),
    };
    println!(
        "  round {round}: {}; {}",
        judge("first key login", DebianSample::login, LOGIN_GOAL_RATIO),
        judge(
            "provisioner",
            DebianSample::provisioner,
            PROVISIONER_GOAL_RATIO
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::super::timeline::UnitRun;
    use super::*;

    #[test]
    fn the_goals_are_the_issues() {
        assert_eq!(LOGIN_GOAL_RATIO, 0.5);
        assert_eq!(PROVISIONER_GOAL_RATIO, 0.05);
    }

    fn sample(round: usize, flavour: Flavour, login: f64, provisioner: f64) -> DebianSample {
        DebianSample {
            round,
            image: flavour.name(),
            times: DiskBootTimes {
                kernel: Some(13.0),
                ssh: Some(login),
                ..DiskBootTimes::default()
            },
            clock_offset: Some(13.5),
            guest: Timeline {
                systemd: 3.0,
                network_online: 20.0,
                ssh: 30.0,
                finished: 60.0,
                units: vec![UnitRun {
                    unit: match flavour {
                        Flavour::CloudInit => "cloud-init.service",
                        Flavour::Metaboot => "metaboot.service",
                    }
                    .to_owned(),
                    start: 25.0,
                    exit: 25.0 + provisioner,
                }],
            },
        }
    }

    #[test]
    fn a_goal_is_met_only_when_every_round_meets_it() {
        let samples = vec![
            sample(1, Flavour::CloudInit, 100.0, 40.0),
            sample(1, Flavour::Metaboot, 45.0, 1.0),
            sample(2, Flavour::CloudInit, 90.0, 40.0),
            sample(2, Flavour::Metaboot, 50.0, 1.0),
            sample(3, Flavour::CloudInit, 110.0, 40.0),
            sample(3, Flavour::Metaboot, 40.0, 3.0),
        ];
        let rows = rows(&samples, 3);
        assert_eq!(rows.len(), METRICS.len());
        let login = &rows[0];
        assert_eq!((login.baseline, login.metaboot), (Some(100.0), Some(45.0)));
        // The medians meet 0.5 (0.45), round 2 does not (50 / 90).
        assert_eq!(login.met, Some(false));
        // Round 3's provisioner took 3 / 40 > 1/20; the median (1 / 40) meets it.
        let provisioner = &rows[1];
        assert_eq!(provisioner.ratio, Some(1.0 / 40.0));
        assert_eq!(provisioner.met, Some(false));
        let ssh = rows
            .iter()
            .find(|r| r.metric.contains("ssh.service"))
            .unwrap();
        assert_eq!(ssh.metaboot, Some(43.5), "guest time on the host's clock");
        assert!(rows_met(&good(), 3));
        // A round never run does not meet the goals.
        assert!(!rows_met(&good(), 4));
    }

    /// Every round meeting both goals: round 2's login exactly half of cloud-init's.
    fn good() -> Vec<DebianSample> {
        vec![
            sample(1, Flavour::CloudInit, 100.0, 40.0),
            sample(1, Flavour::Metaboot, 45.0, 1.0),
            sample(2, Flavour::CloudInit, 90.0, 40.0),
            sample(2, Flavour::Metaboot, 45.0, 1.0),
            sample(3, Flavour::CloudInit, 110.0, 40.0),
            sample(3, Flavour::Metaboot, 40.0, 1.0),
        ]
    }

    /// A sample whose first key login the console never showed.
    fn without_login(mut sample: DebianSample) -> DebianSample {
        sample.times.ssh = None;
        sample
    }

    /// A login missing on each side, in different rounds: the rest must not pair up across
    /// rounds (round 2's cloud-init with round 1's metaboot) into a goal met.
    #[test]
    fn a_round_missing_a_login_does_not_meet_the_goal() {
        let samples = vec![
            without_login(sample(1, Flavour::CloudInit, 100.0, 40.0)),
            sample(1, Flavour::Metaboot, 45.0, 1.0),
            sample(2, Flavour::CloudInit, 100.0, 40.0),
            sample(2, Flavour::Metaboot, 45.0, 1.0),
            sample(3, Flavour::CloudInit, 100.0, 40.0),
            without_login(sample(3, Flavour::Metaboot, 45.0, 1.0)),
        ];
        let rows = rows(&samples, 3);
        let login = &rows[0];
        assert_eq!(login.ratio, Some(0.45), "the medians meet it");
        assert_eq!(login.rounds, [0.45], "round 2 is the only whole one");
        assert_eq!(login.met, Some(false));
        assert!(login.every_round);
        assert_eq!(
            rows[1].met,
            Some(true),
            "the provisioner was measured every round"
        );
    }

    fn rows_met(samples: &[DebianSample], rounds: usize) -> bool {
        rows(samples, rounds)
            .iter()
            .filter(|r| r.goal != Goal::None)
            .all(|r| r.met == Some(true))
    }
}
