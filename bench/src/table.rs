//! The bench's result: one row per metric (baseline, metaboot, their ratio, the goal and
//! whether it is met), printed as one table and written as JSON. A row measured in rounds
//! ([`Row::in_rounds`]) shows the range of the judged value over its rounds and meets its
//! goal only when every round does; a row of paired samples can be judged on each pair
//! ([`Row::every_round`]).

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::median;

/// What a number measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Requests per second.
    ReqPerSec,
    /// Microseconds.
    Micros,
    /// Seconds.
    Seconds,
    /// KiB of memory.
    KiB,
    /// Bytes on disk.
    Bytes,
    /// A count (errors).
    Count,
}

impl Unit {
    /// `value` for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::ReqPerSec if value >= 1e3 => format!("{:.1}k req/s", value / 1e3),
            Unit::ReqPerSec => format!("{value:.0} req/s"),
            Unit::Micros if value >= 1e4 => format!("{:.1} ms", value / 1e3),
            Unit::Micros if value >= 1e3 => format!("{:.2} ms", value / 1e3),
            Unit::Micros => format!("{value:.0} µs"),
            Unit::Seconds if value < 1.0 => format!("{:.0} ms", value * 1e3),
            Unit::Seconds => format!("{value:.2} s"),
            Unit::KiB => format!("{:.1} MiB", value / 1024.0),
            Unit::Bytes if value >= 1024.0 * 1024.0 => {
                format!("{:.2} MiB", value / 1024.0 / 1024.0)
            }
            Unit::Bytes => format!("{:.0} KiB", value / 1024.0),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

/// What a row has to reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Goal {
    /// Reference only.
    None,
    /// metaboot / baseline at least this.
    RatioAtLeast(f64),
    /// metaboot / baseline at most this.
    RatioAtMost(f64),
    /// metaboot's own value at most this (in the row's unit).
    AtMost(f64),
    /// metaboot − baseline at most this (in the row's unit).
    DifferenceAtMost(f64),
    /// Reference only, judged as metaboot − baseline (the per-round column shows it).
    Difference,
}

impl Goal {
    fn describe(self, unit: Unit) -> String {
        match self {
            Goal::None | Goal::Difference => "-".to_owned(),
            Goal::RatioAtLeast(r) => format!("ratio ≥ {}", ratio_text(r)),
            Goal::RatioAtMost(r) => format!("ratio ≤ {}", ratio_text(r)),
            Goal::AtMost(v) => format!("≤ {}", unit.format(v)),
            Goal::DifferenceAtMost(v) => format!("diff ≤ {}", unit.format(v)),
        }
    }

    /// The value the goal judges, from a baseline and a metaboot value: their ratio, their
    /// difference, or metaboot's own value.
    fn judged(self, baseline: Option<f64>, metaboot: Option<f64>) -> Option<f64> {
        match self {
            Goal::None | Goal::RatioAtLeast(_) | Goal::RatioAtMost(_) => match (baseline, metaboot)
            {
                (Some(b), Some(m)) if b != 0.0 => Some(m / b),
                _ => None,
            },
            Goal::AtMost(_) => metaboot,
            Goal::DifferenceAtMost(_) | Goal::Difference => Some(metaboot? - baseline?),
        }
    }

    /// Whether `value` (what [`Goal::judged`] gives) meets the goal.
    fn meets(self, value: f64) -> Option<bool> {
        match self {
            Goal::None | Goal::Difference => None,
            Goal::RatioAtLeast(r) => Some(value >= r),
            Goal::RatioAtMost(r) | Goal::AtMost(r) | Goal::DifferenceAtMost(r) => Some(value <= r),
        }
    }

    /// Whether the goal is judged at all (not a reference row).
    fn judges(self) -> bool {
        !matches!(self, Goal::None | Goal::Difference)
    }

    fn met(self, baseline: Option<f64>, metaboot: Option<f64>) -> Option<bool> {
        self.judged(baseline, metaboot)
            .and_then(|value| self.meets(value))
    }

    /// The judged value for people: a ratio as a number, anything else in the row's unit.
    fn format_judged(self, unit: Unit, value: f64) -> String {
        match self {
            Goal::AtMost(_) => unit.format(value),
            Goal::DifferenceAtMost(_) | Goal::Difference if value < 0.0 => {
                format!("-{}", unit.format(-value))
            }
            Goal::DifferenceAtMost(_) | Goal::Difference => format!("+{}", unit.format(value)),
            _ => format!("{value:.3}"),
        }
    }
}

fn ratio_text(r: f64) -> String {
    if r > 0.0 && r < 0.1 {
        format!("1/{:.0}", 1.0 / r)
    } else {
        format!("{r:.2}")
    }
}

/// One metric.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The section it belongs to.
    pub section: String,
    /// What is measured, and against what.
    pub metric: String,
    /// The unit of both values.
    pub unit: Unit,
    /// The baseline's median.
    pub baseline: Option<f64>,
    /// metaboot's median.
    pub metaboot: Option<f64>,
    /// metaboot / baseline.
    pub ratio: Option<f64>,
    /// The goal.
    pub goal: Goal,
    /// Whether the goal is met (none for reference rows or missing numbers).
    pub met: Option<bool>,
    /// Whether the goal is judged on every round too (see [`Row::every_round`]).
    pub every_round: bool,
    /// Every baseline sample, in the order measured.
    pub baseline_samples: Vec<f64>,
    /// Every metaboot sample, in the order measured.
    pub metaboot_samples: Vec<f64>,
    /// The judged value (ratio, difference or metaboot's value) of each round, when measured
    /// in rounds: the goal is met only when every round meets it.
    pub rounds: Vec<f64>,
    /// The rounds (from 1) in which either side had errors (see [`Row::unless_errors`]).
    pub rounds_with_errors: Vec<usize>,
}

impl Row {
    /// A row from samples; values are their medians.
    pub fn new(
        section: &str,
        metric: &str,
        unit: Unit,
        baseline_samples: Vec<f64>,
        metaboot_samples: Vec<f64>,
        goal: Goal,
    ) -> Self {
        let baseline = median(&baseline_samples);
        let metaboot = median(&metaboot_samples);
        let ratio = match (baseline, metaboot) {
            (Some(b), Some(m)) if b != 0.0 => Some(m / b),
            _ => None,
        };
        Self {
            section: section.to_owned(),
            metric: metric.to_owned(),
            unit,
            baseline,
            metaboot,
            ratio,
            goal,
            met: goal.met(baseline, metaboot),
            every_round: false,
            baseline_samples,
            metaboot_samples,
            rounds: Vec::new(),
            rounds_with_errors: Vec::new(),
        }
    }

    /// `errors[i]`: whether either side had errors (failed requests, non-2xx answers,
    /// timeouts) in round `i + 1`. Such a round's numbers leave the failures out (wrk counts
    /// a non-2xx answer as a request and a timed-out one not at all), so it cannot meet the
    /// goal whatever its ratio says; the rounds are named in the table.
    pub fn unless_errors(mut self, errors: &[bool]) -> Self {
        self.rounds_with_errors = errors
            .iter()
            .enumerate()
            .filter(|(_, failed)| **failed)
            .map(|(i, _)| i + 1)
            .collect();
        if !self.rounds_with_errors.is_empty() && self.goal.judges() {
            self.met = Some(false);
        }
        self
    }

    /// The `met?` column.
    fn met_text(&self) -> String {
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "-",
        };
        if self.rounds_with_errors.is_empty() {
            return verdict.to_owned();
        }
        let rounds: Vec<String> = self
            .rounds_with_errors
            .iter()
            .map(usize::to_string)
            .collect();
        format!("{verdict} (errors in round {})", rounds.join(", "))
    }

    /// A row from samples grouped by round (`baseline[i]` and `metaboot[i]` measured
    /// interleaved in round `i`): values are the medians of every sample; the goal is judged
    /// on each round's medians and met only when every round meets it.
    pub fn in_rounds(
        section: &str,
        metric: &str,
        unit: Unit,
        baseline: &[Vec<f64>],
        metaboot: &[Vec<f64>],
        goal: Goal,
    ) -> Self {
        let judged: Vec<Option<f64>> = baseline
            .iter()
            .zip(metaboot)
            .map(|(b, m)| goal.judged(median(b), median(m)))
            .collect();
        // A round that measured one side only (a boot that never said it was provisioned) or
        // a round missing on one side cannot meet the goal: "every round" counts them.
        let whole = baseline.len() == metaboot.len() && judged.iter().all(Option::is_some);
        let rounds: Vec<f64> = judged.into_iter().flatten().collect();
        let mut row = Self::new(
            section,
            metric,
            unit,
            baseline.concat(),
            metaboot.concat(),
            goal,
        );
        if rounds.is_empty() {
            // Rounds planned, none measured on both sides: no round shows the goal met, whatever
            // the medians of one side's rounds and the other's would say.
            let planned = !baseline.is_empty() || !metaboot.is_empty();
            if planned && goal.judges() {
                row.met = Some(false);
            }
        } else {
            row.met = rounds
                .iter()
                .map(|value| goal.meets(*value))
                .collect::<Option<Vec<bool>>>()
                .map(|all| whole && all.iter().all(|met| *met));
        }
        row.rounds = rounds;
        row
    }

    /// The range of the judged value over the rounds (`-` when not measured in rounds).
    fn rounds_text(&self) -> String {
        let lo = self.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .rounds
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return "-".to_owned();
        }
        let goal = match self.goal {
            Goal::None => Goal::RatioAtMost(0.0),
            goal => goal,
        };
        format!(
            "{}…{}",
            goal.format_judged(self.unit, lo),
            goal.format_judged(self.unit, hi)
        )
    }

    /// The goal judged on every round as well as on the medians: met only when each round's
    /// pair of samples (the i-th baseline and the i-th metaboot sample) meets it too.
    pub fn every_round(mut self) -> Self {
        self.every_round = true;
        // The judged value of each round, for the per-round column.
        if self.rounds.is_empty() && matches!(self.goal, Goal::AtMost(_)) {
            self.rounds = self.metaboot_samples.clone();
        } else if self.rounds.is_empty()
            && self.baseline_samples.len() == self.metaboot_samples.len()
        {
            self.rounds = self
                .baseline_samples
                .iter()
                .zip(&self.metaboot_samples)
                .filter_map(|(&b, &m)| self.goal.judged(Some(b), Some(m)))
                .collect();
        }
        if self.met == Some(true) && matches!(self.goal, Goal::AtMost(_)) {
            // metaboot's own value: each of its samples alone.
            let each = self
                .metaboot_samples
                .iter()
                .all(|&m| self.goal.met(None, Some(m)) == Some(true));
            self.met = Some(each);
        } else if self.met == Some(true) {
            let paired = self.baseline_samples.len() == self.metaboot_samples.len();
            let each = self
                .baseline_samples
                .iter()
                .zip(&self.metaboot_samples)
                .all(|(&b, &m)| self.goal.met(Some(b), Some(m)) == Some(true));
            self.met = Some(paired && each);
        }
        self
    }
}

/// Renders the rows as one table.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| row.unit.format(v));
            [
                row.metric.clone(),
                value(row.baseline),
                value(row.metaboot),
                row.ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
                row.rounds_text(),
                if row.every_round && row.goal != Goal::None {
                    format!("{}, each round", row.goal.describe(row.unit))
                } else {
                    row.goal.describe(row.unit)
                },
                row.met_text(),
            ]
        })
        .collect();
    let header = [
        "metric",
        "baseline",
        "metaboot",
        "ratio",
        "per round",
        "goal",
        "met?",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i == 0 || i >= 5 {
                let _ = write!(text, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(text, "{}{cell}", " ".repeat(pad));
            }
            text.push_str(" | ");
        }
        let _ = writeln!(out, "{}", text.trim_end_matches([' ', '|']));
    };
    line(&mut out, &header.map(str::to_owned));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    let mut section = None;
    for (row, cells) in rows.iter().zip(&cells) {
        if section.as_ref() != Some(&row.section) {
            let mut title = vec![format!("[{}]", row.section)];
            title.extend((1..7).map(|_| String::new()));
            line(&mut out, &title);
            section = Some(row.section.clone());
        }
        line(&mut out, cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_take_medians_and_judge_goals() {
        let row = Row::new(
            "chain",
            "throughput",
            Unit::ReqPerSec,
            vec![30_000.0, 36_000.0, 35_000.0],
            vec![20_000.0, 25_000.0, 21_000.0],
            Goal::RatioAtLeast(0.6),
        );
        assert_eq!(row.baseline, Some(35_000.0));
        assert_eq!(row.metaboot, Some(21_000.0));
        assert_eq!(row.ratio, Some(0.6));
        assert_eq!(row.met, Some(true));
        let slow = Row::new(
            "agent",
            "wall",
            Unit::Seconds,
            vec![0.5],
            vec![0.1],
            Goal::RatioAtMost(1.0 / 30.0),
        );
        assert_eq!(slow.met, Some(false));
        let absolute = Row::new(
            "storm",
            "p99",
            Unit::Micros,
            vec![],
            vec![19_000.0],
            Goal::AtMost(20_000.0),
        );
        assert_eq!((absolute.ratio, absolute.met), (None, Some(true)));
        let reference = Row::new(
            "chain",
            "haproxy",
            Unit::ReqPerSec,
            vec![1.0],
            vec![2.0],
            Goal::None,
        );
        assert_eq!(reference.met, None);
    }

    #[test]
    fn a_goal_judged_every_round_is_missed_by_one_round() {
        let samples = |b: &[f64], m: &[f64]| {
            Row::new(
                "debian",
                "login",
                Unit::Seconds,
                b.to_vec(),
                m.to_vec(),
                Goal::RatioAtMost(0.5),
            )
            .every_round()
        };
        let all = samples(&[100.0, 90.0, 110.0], &[40.0, 45.0, 50.0]);
        assert_eq!(all.met, Some(true));
        // Medians 100 and 45 meet 0.5; the second round (50 / 90) does not.
        let one_off = samples(&[100.0, 90.0, 110.0], &[40.0, 50.0, 45.0]);
        assert_eq!(one_off.ratio, Some(0.45));
        assert_eq!(one_off.met, Some(false));
        // The per-round column shows each round's ratio.
        assert_eq!(one_off.rounds, [0.4, 50.0 / 90.0, 45.0 / 110.0]);
        let unpaired = samples(&[100.0, 90.0], &[40.0]);
        assert_eq!(unpaired.met, Some(false));
        let missed = samples(&[100.0], &[60.0]);
        assert_eq!(missed.met, Some(false));
        let own = |m: &[f64]| {
            Row::new(
                "storm",
                "propagation",
                Unit::Micros,
                Vec::new(),
                m.to_vec(),
                Goal::AtMost(50.0),
            )
            .every_round()
        };
        assert_eq!(own(&[10.0, 20.0, 30.0]).met, Some(true));
        assert_eq!(own(&[10.0, 60.0, 30.0]).met, Some(false));
        assert_eq!(own(&[10.0, 60.0, 30.0]).rounds, [10.0, 60.0, 30.0]);
        let text = render(&[all]);
        assert!(text.contains("ratio ≤ 0.50, each round"), "{text}");
    }

    #[test]
    fn the_table_has_a_header_sections_and_aligned_columns() {
        let rows = vec![
            Row::new(
                "chain",
                "throughput: 3-process chain",
                Unit::ReqPerSec,
                vec![35_800.0],
                vec![22_000.0],
                Goal::RatioAtLeast(0.6),
            ),
            Row::new(
                "guest agent",
                "wall time",
                Unit::Seconds,
                vec![0.55],
                vec![0.012],
                Goal::RatioAtMost(1.0 / 30.0),
            ),
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("metric"), "{text}");
        assert!(
            text.contains("[chain]") && text.contains("[guest agent]"),
            "{text}"
        );
        assert!(
            text.contains("35.8k req/s") && text.contains("ratio ≥ 0.60") && text.contains("met"),
            "{text}"
        );
        assert!(
            text.contains("ratio ≤ 1/30") && text.contains("12 ms"),
            "{text}"
        );
        let bar = lines[0].find('|').unwrap();
        assert_eq!(lines[3].find('|'), Some(bar), "{text}");
    }

    #[test]
    fn rows_in_rounds_meet_their_goal_only_in_every_round() {
        let ratio = Row::in_rounds(
            "agent",
            "wall",
            Unit::Seconds,
            &[vec![0.30, 0.32], vec![0.40], vec![0.30]],
            &[vec![0.009, 0.009], vec![0.010], vec![0.012]],
            Goal::RatioAtMost(1.0 / 30.0),
        );
        assert_eq!(ratio.rounds.len(), 3);
        assert!((ratio.rounds[0] - 0.009 / 0.31).abs() < 1e-9);
        assert_eq!(ratio.met, Some(false), "round 3 is 1/25");
        assert_eq!(ratio.rounds_text(), "0.025…0.040");
        let all = Row::in_rounds(
            "agent",
            "wall",
            Unit::Seconds,
            &[vec![0.30], vec![0.40]],
            &[vec![0.009], vec![0.010]],
            Goal::RatioAtMost(1.0 / 30.0),
        );
        assert_eq!(all.met, Some(true));
        // A round without its metaboot sample, or with no round on one side, is not met.
        for (baseline, metaboot) in [
            (vec![vec![0.30], vec![0.40]], vec![vec![0.009], vec![]]),
            (vec![vec![0.30], vec![0.40]], vec![vec![0.009]]),
        ] {
            let short = Row::in_rounds(
                "agent",
                "wall",
                Unit::Seconds,
                &baseline,
                &metaboot,
                Goal::RatioAtMost(1.0 / 30.0),
            );
            assert_eq!(short.met, Some(false), "{metaboot:?}");
        }
        let diff = Row::in_rounds(
            "qemu",
            "init → provisioned",
            Unit::Seconds,
            &[vec![0.60], vec![0.70]],
            &[vec![0.72], vec![0.86]],
            Goal::DifferenceAtMost(0.15),
        );
        assert_eq!(diff.met, Some(false), "round 2 is +160 ms");
        assert_eq!(diff.rounds_text(), "+120 ms…+160 ms");
        let reference = Row::in_rounds(
            "qemu",
            "lease → provisioned",
            Unit::Seconds,
            &[vec![0.10], vec![0.12]],
            &[vec![0.30], vec![0.25]],
            Goal::Difference,
        );
        assert_eq!(reference.met, None);
        assert_eq!(reference.rounds_text(), "+130 ms…+200 ms");
        let text = render(&[diff]);
        assert!(
            text.contains("diff ≤ 150 ms") && text.contains("NOT MET"),
            "{text}"
        );
        assert!(text.lines().next().unwrap().contains("per round"), "{text}");
    }

    /// Rounds planned but none with both sides measured: not met, though the medians of the
    /// two sides' rounds would meet the goal; reference rows and rows without rounds stay
    /// unjudged.
    #[test]
    fn rows_in_rounds_none_complete_are_not_met() {
        let in_rounds = |baseline: &[Vec<f64>], metaboot: &[Vec<f64>], goal| {
            Row::in_rounds("debian", "login", Unit::Seconds, baseline, metaboot, goal)
        };
        let halves = in_rounds(
            &[vec![100.0], vec![]],
            &[vec![], vec![40.0]],
            Goal::RatioAtMost(0.5),
        );
        assert_eq!(halves.ratio, Some(0.4), "the medians meet it");
        assert!(halves.rounds.is_empty());
        assert_eq!(halves.met, Some(false));
        let nothing = in_rounds(&[vec![], vec![]], &[vec![], vec![]], Goal::AtMost(1.0));
        assert_eq!(nothing.met, Some(false));
        let reference = in_rounds(
            &[vec![100.0], vec![]],
            &[vec![], vec![40.0]],
            Goal::Difference,
        );
        assert_eq!(reference.met, None);
        assert_eq!(in_rounds(&[], &[], Goal::RatioAtMost(0.5)).met, None);
    }

    #[test]
    fn a_round_with_errors_on_either_side_does_not_meet_the_goal() {
        let row = |errors: &[bool]| {
            Row::new(
                "chain",
                "req/s",
                Unit::ReqPerSec,
                vec![20_000.0, 21_000.0],
                vec![40_000.0, 41_000.0],
                Goal::RatioAtLeast(1.5),
            )
            .every_round()
            .unless_errors(errors)
        };
        assert_eq!(row(&[false, false]).met, Some(true));
        let failed = row(&[false, true]);
        assert_eq!(failed.met, Some(false), "the ratios alone meet it");
        assert_eq!(failed.rounds_with_errors, [2]);
        let text = render(&[failed]);
        assert!(text.contains("NOT MET (errors in round 2)"), "{text}");
        let reference = Row::new(
            "chain",
            "p99",
            Unit::Micros,
            vec![1.0],
            vec![2.0],
            Goal::None,
        )
        .unless_errors(&[true]);
        assert_eq!(reference.met, None);
        assert!(render(&[reference]).contains("- (errors in round 1)"));
    }

    #[test]
    fn units_read_well() {
        assert_eq!(Unit::Micros.format(38.0), "38 µs");
        assert_eq!(Unit::Micros.format(2_500.0), "2.50 ms");
        assert_eq!(Unit::KiB.format(65_536.0), "64.0 MiB");
        assert_eq!(Unit::Bytes.format(3_162_752.0), "3.02 MiB");
        assert_eq!(Unit::Seconds.format(0.45), "450 ms");
        assert_eq!(Unit::Count.format(0.0), "0");
    }
}
