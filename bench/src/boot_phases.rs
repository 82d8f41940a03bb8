//! Where a tiny guest's boot goes, from its serial console: the host-side timestamps the
//! harness writes in front of every line (`[   3.456] …`), at the tiny image's markers and at
//! the guest agent's own log lines (its start, the datasource, the last fetch step, the last
//! step, its end), turned into consecutive phases.

use serde::Serialize;

/// The points a boot passes, in order: (phase name, text of the console line that ends it).
/// A phase lasts from the previous point found to this one.
pub const POINTS: &[(&str, &str)] = &[
    ("init", "metaboot-tiny: init reached"),
    ("modules", "metaboot-tiny: modules loaded"),
    ("disk", "metaboot-tiny: persistent disk mounted"),
    ("dhcp", "metaboot-tiny: network up"),
    ("agent start", "metaboot starting"),
    ("datasource", "datasource found"),
    ("fetch+decode", "step=\"cloud-config\""),
    ("apply", "step=\"keys-to-console\""),
    ("commit", "metaboot finished"),
    ("run returned", "metaboot-tiny: metadata fetched"),
    ("ssh listening", "metaboot-tiny: ssh listening"),
    ("provisioned", "metaboot-tiny: provisioned"),
];

/// One phase: its name (the point that ends it) and how long it took, seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// The point that ends the phase (a name from [`POINTS`]).
    pub name: String,
    /// Host-clock time from the previous point found to this one.
    pub seconds: f64,
}

/// The host time of a console line (`[   3.456] text` → 3.456).
fn stamp(line: &str) -> Option<f64> {
    line.strip_prefix('[')?
        .split_once(']')?
        .0
        .trim()
        .parse()
        .ok()
}

/// The phases of the boot whose console log is `log`: each point found (the first line
/// holding its text, after the previous point) ends a phase that began at the previous point
/// found. Points a guest does not pass (the wget guest runs no agent) are left out.
pub fn phases(log: &str) -> Vec<Phase> {
    let mut lines = log.lines();
    let mut found: Vec<(&str, f64)> = Vec::new();
    for (name, text) in POINTS {
        let mut rest = lines.clone();
        if let Some(at) = rest.find(|line| line.contains(text)).and_then(stamp) {
            found.push((name, at));
            lines = rest;
        }
    }
    found
        .windows(2)
        .map(|pair| Phase {
            name: pair[1].0.to_owned(),
            seconds: pair[1].1 - pair[0].1,
        })
        .collect()
}

/// The phases as one line for the progress output: `modules 120 ms, disk 90 ms, …`.
pub fn describe(phases: &[Phase]) -> String {
    phases
        .iter()
        .map(|p| format!("{} {:.0} ms", p.name, p.seconds * 1e3))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const METABOOT: &str = "[   0.100] Linux version 6.1
[   3.000] metaboot-tiny: init reached
[   3.300] metaboot-tiny: modules loaded
[   3.450] metaboot-tiny: persistent disk mounted
[   3.580] metaboot-tiny: network up
[   3.650] 2026-12-02T01:59:46Z  INFO metaboot starting root=/ url=http://169.254.169.254
[   3.690] 2026-12-02T01:59:46Z  INFO datasource found datasource=\"metadata-service\"
[   3.760] 2026-12-02T01:59:46Z  INFO ok 8 keys merged step=\"cloud-config\" duration_ms=2
[   3.830] 2026-12-02T01:59:46Z  INFO skipped: no user scripts step=\"scripts-user\"
[   3.840] 2026-12-02T01:59:46Z  INFO skipped: no host keys in /etc/ssh to show step=\"keys-to-console\"
[   3.870] 2026-12-02T01:59:46Z  INFO metaboot finished: status=done
[   3.880] metaboot-tiny: metadata fetched rc=0
[   3.881] metaboot-tiny: ssh listening
[   3.885] metaboot-tiny: provisioned hostname=g1 metaboot-rc=0 password-auth=yes
";

    #[test]
    fn a_metaboot_boot_splits_into_every_phase() {
        let got = phases(METABOOT);
        let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            POINTS[1..]
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
        );
        let ms: Vec<i64> = got
            .iter()
            .map(|p| (p.seconds * 1e3).round() as i64)
            .collect();
        assert_eq!(ms, [300, 150, 130, 70, 40, 70, 80, 30, 10, 1, 4]);
        assert!(describe(&got).starts_with("modules 300 ms, disk 150 ms"));
    }

    #[test]
    fn a_wget_boot_has_only_the_phases_it_passes() {
        let log = "[   2.000] metaboot-tiny: init reached
[   2.300] metaboot-tiny: modules loaded
[   2.400] metaboot-tiny: persistent disk mounted
[   2.500] metaboot-tiny: network up
[   2.560] metaboot-tiny: metadata fetched rc=0
[   2.561] metaboot-tiny: provisioned baseline=wget rc=0
";
        let names: Vec<String> = phases(log).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["modules", "disk", "dhcp", "run returned", "provisioned"]
        );
        assert!(phases("no markers at all\n").is_empty());
    }
}
