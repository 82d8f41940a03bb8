//! The run's report: a table on the terminal, a JSON file, and the failed guests' console logs.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::atomic;
use crate::image::Image;
use crate::scenario::run::{BootTimes, ScenarioReport};

/// Console lines shown per failed boot.
pub const SERIAL_TAIL_LINES: usize = 80;

/// The image a run booted.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// Input hash.
    pub key: String,
    /// Gzipped initramfs size.
    pub initrd_bytes: u64,
    /// Debian packages it was made of.
    pub packages: Vec<String>,
}

/// Everything a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The lab's id.
    pub lab_id: String,
    /// The image.
    pub image: ImageSummary,
    /// Guests booting at once.
    pub jobs: usize,
    /// Time to bring the lab up.
    pub lab_up_seconds: f64,
    /// Wall time of the run (lab up to lab down).
    pub total_seconds: f64,
    /// True when every scenario passed.
    pub passed: bool,
    /// Scenarios that passed.
    pub passed_count: usize,
    /// Scenarios that failed.
    pub failed_count: usize,
    /// One entry per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// The end of `metaboot-server all`'s log.
    pub server_log_tail: String,
}

impl RunReport {
    /// Sums up the scenarios.
    pub fn new(
        lab_id: &str,
        image: &Image,
        jobs: usize,
        lab_up_seconds: f64,
        total_seconds: f64,
        scenarios: Vec<ScenarioReport>,
        server_log_tail: String,
    ) -> Self {
        let passed_count = scenarios.iter().filter(|s| s.passed).count();
        let failed_count = scenarios.len() - passed_count;
        Self {
            lab_id: lab_id.to_owned(),
            image: ImageSummary {
                key: image.manifest.key.clone(),
                initrd_bytes: image.manifest.initrd_bytes,
                packages: image.manifest.packages.clone(),
            },
            jobs,
            lab_up_seconds,
            total_seconds,
            passed: failed_count == 0 && passed_count > 0,
            passed_count,
            failed_count,
            scenarios,
            server_log_tail,
        }
    }

    /// Writes the JSON report atomically.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        atomic::write(path, &json, 0o644)
    }

    /// The table: one row per boot, checks as short labels, times since QEMU start.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:<6} {:<44} {:>6} {:>6} {:>6} {:>6} {:>6}",
            "scenario", "result", "checks", "init", "net", "meta", "prov", "ssh"
        );
        for s in &self.scenarios {
            let boots = if s.boots.is_empty() {
                vec![BootTimes::default()]
            } else {
                s.boots.clone()
            };
            for (i, times) in boots.iter().enumerate() {
                let (name, result) = if i == 0 {
                    (s.name.clone(), if s.passed { "PASS" } else { "FAIL" })
                } else {
                    (format!("  boot {}", i + 1), "")
                };
                let checks: Vec<String> = s
                    .checks
                    .iter()
                    .filter(|c| boot_of(&c.name) == i)
                    .map(|c| format!("{}{}", short(&c.name), if c.passed { "✔" } else { "✘" }))
                    .collect();
                let t = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    out,
                    "{name:<26} {result:<6} {:<44} {:>6} {:>6} {:>6} {:>6} {:>6}",
                    checks.join(" "),
                    t(times.init),
                    t(times.network),
                    t(times.metadata),
                    t(times.provisioned),
                    t(times.ssh)
                );
            }
            if let Some(err) = &s.error {
                let _ = writeln!(out, "  error: {}", err.lines().next().unwrap_or(""));
            }
        }
        let _ = writeln!(
            out,
            "times: seconds since QEMU started (host clock): init = kernel ran /init, net = DHCP lease, \
             meta = `metaboot run` done, prov = sshd up, ssh = first key login"
        );
        let _ = writeln!(
            out,
            "lab {}: up in {:.2} s; {} scenarios with {} guests at once in {:.1} s",
            self.lab_id,
            self.lab_up_seconds,
            self.scenarios.len(),
            self.jobs,
            self.total_seconds
        );
        let _ = writeln!(
            out,
            "{} passed, {} failed",
            self.passed_count, self.failed_count
        );
        out
    }

    /// For each failed scenario: its error, failed checks and the end of its console logs.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for s in self.scenarios.iter().filter(|s| !s.passed) {
            let _ = writeln!(
                out,
                "==================== {} FAILED ====================",
                s.name
            );
            if let Some(err) = &s.error {
                let _ = writeln!(out, "error: {err}");
            }
            for c in s.checks.iter().filter(|c| !c.passed) {
                let _ = writeln!(out, "check failed: {}: {}", c.name, c.detail);
            }
            for log in &s.serial_logs {
                let _ = writeln!(
                    out,
                    "---------- {} (last {SERIAL_TAIL_LINES} lines) ----------",
                    log.display()
                );
                let _ = writeln!(out, "{}", crate::lab::tail(log, SERIAL_TAIL_LINES));
                let qemu = log.with_extension("qemu.log");
                let qemu_text = crate::lab::tail(&qemu, 20);
                if !qemu_text.trim().is_empty() {
                    let _ = writeln!(out, "---------- QEMU ----------\n{qemu_text}");
                }
            }
        }
        if self.failed_count > 0 && !self.server_log_tail.trim().is_empty() {
            let _ = writeln!(
                out,
                "---------- metaboot-server all (end of log) ----------\n{}",
                self.server_log_tail
            );
        }
        out
    }
}

/// Which boot a check belongs to (checks of the second boot carry a prefix).
fn boot_of(name: &str) -> usize {
    usize::from(name.starts_with("after reboot: ") || name.starts_with("new instance: "))
}

/// A short label for the table.
fn short(name: &str) -> &'static str {
    let name = name.split_once(": ").map_or(name, |(_, rest)| rest);
    match name {
        "key login + hostname" => "key+host",
        "password login" => "pw",
        "admin_pass login" => "admin-pw",
        n if n.starts_with("source is") => "source",
        "the metadata service does not know it" => "no-md",
        "password login refused" => "no-pw",
        "metaboot status" => "status",
        "script ran once" => "script",
        n if n.starts_with("runcmd") => "runcmd",
        "no DHCP lease" => "no-dhcp",
        "static address and default route" => "static-ip",
        "get-password decrypts it" => "get-pw",
        "password login with it" => "postback-pw",
        "IPv6 address and route, no IPv4" => "ipv6-addr",
        "metadata from fe80::a9fe:a9fe" => "md-ipv6",
        "rebooted itself once provisioned (power_state)" => "reboot",
        "final message on the console" => "final-msg",
        "not rebooted again (once per instance)" => "no-reboot",
        "phoned home once (phone_home)" => "phone-home",
        crate::check::fingerprints::NAME => "authkey-fp",
        _ => "check",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckResult;
    use crate::image::Manifest;
    use crate::scenario::matrix;

    fn image() -> Image {
        Image {
            dir: "/i".into(),
            kernel: "/i/k".into(),
            initrd: "/i/r".into(),
            manifest: Manifest {
                kind: "tiny".into(),
                key: "abc".into(),
                packages: vec!["busybox-static=1".into()],
                initrd_bytes: 4_000_000,
                ..Manifest::default()
            },
            cached: true,
        }
    }

    fn scenario_report(index: usize, passed: bool) -> ScenarioReport {
        let scenario = matrix::matrix()[index];
        ScenarioReport {
            name: scenario.name(),
            scenario,
            passed,
            checks: vec![
                CheckResult::pass("key login + hostname", "ok"),
                CheckResult::from_bool("after reboot: runcmd not re-run", passed, "1 line"),
            ],
            boots: vec![
                BootTimes {
                    init: Some(2.9),
                    network: Some(3.1),
                    metadata: Some(3.3),
                    provisioned: Some(3.5),
                    ssh: Some(3.9),
                },
                BootTimes::default(),
            ],
            error: None,
            instances: vec!["u1".into()],
            serial_logs: vec!["/nonexistent/serial-1.log".into()],
            seconds: 5.0,
        }
    }

    #[test]
    fn the_ipv6_checks_have_their_own_labels() {
        assert_eq!(short("IPv6 address and route, no IPv4"), "ipv6-addr");
        assert_eq!(short("metadata from fe80::a9fe:a9fe"), "md-ipv6");
    }

    #[test]
    fn table_has_a_row_per_boot_and_the_closing_count_line() {
        let report = RunReport::new(
            "lab1",
            &image(),
            2,
            0.4,
            60.0,
            vec![scenario_report(13, true), scenario_report(0, false)],
            String::new(),
        );
        assert!(!report.passed);
        let table = report.table();
        assert!(table.contains("router/reboot"), "{table}");
        assert!(table.contains("  boot 2"), "{table}");
        assert!(table.contains("key+host✔"), "{table}");
        assert!(table.contains("runcmd✘"), "{table}");
        assert!(table.contains("   2.90 "), "{table}");
        assert!(table.lines().any(|l| l == "1 passed, 1 failed"), "{table}");
        let failures = report.failures();
        assert!(
            failures.contains("router/none FAILED") && !failures.contains("router/reboot FAILED"),
            "{failures}"
        );
        let dir = tempfile::tempdir().unwrap();
        report.write_json(&dir.path().join("r.json")).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(v["failed_count"], 1);
        assert_eq!(v["scenarios"][0]["boots"][0]["init"], 2.9);
        assert_eq!(v["scenarios"][0]["scenario"]["path"], "router");
    }
}
