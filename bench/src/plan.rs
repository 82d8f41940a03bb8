//! What one run does, from the flags: its sections in run order, the rounds of each
//! comparison, wrk's durations and the storm's large registry (full and `--quick` defaults).

use std::time::Duration;

use serde::Serialize;

use crate::cli::{BenchArgs, Section};
use crate::fleet;

/// Rounds of each interleaved comparison in a full run (the issue asks for at least 3).
pub const ROUNDS: usize = 3;
/// wrk's duration per throughput run (`-d10s`, as the issue asks).
pub const WRK_DURATION: Duration = Duration::from_secs(10);
/// wrk's duration per single-connection latency run.
pub const LATENCY_DURATION: Duration = Duration::from_secs(5);
/// Instances in the storm's large registries.
pub const LARGE_FLEET: usize = 100_000;
/// `--quick`: wrk's durations.
pub const QUICK_WRK_DURATION: Duration = Duration::from_secs(3);
/// `--quick`: single-connection duration.
pub const QUICK_LATENCY_DURATION: Duration = Duration::from_secs(2);

/// What this run does.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Sections, in run order.
    pub sections: Vec<Section>,
    /// Rounds of each comparison.
    pub rounds: usize,
    /// wrk's throughput duration.
    pub wrk_duration: Duration,
    /// wrk's single-connection duration.
    pub latency_duration: Duration,
    /// Instances of the storm's large registries (≤ 1 000: no large registry).
    pub large_fleet: usize,
}

impl Plan {
    /// The plan the flags ask for.
    pub fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { ROUNDS });
        if rounds == 0 {
            anyhow::bail!("--rounds must be at least 1");
        }
        let large_fleet = args
            .instances
            .unwrap_or(if args.quick { 0 } else { LARGE_FLEET });
        if large_fleet > fleet::MAX_FLEET {
            anyhow::bail!("--instances must be at most {}", fleet::MAX_FLEET);
        }
        let sections = Section::ALL
            .into_iter()
            .filter(|section| args.only.is_empty() || args.only.contains(section))
            .collect();
        Ok(Self {
            sections,
            rounds,
            wrk_duration: if args.quick {
                QUICK_WRK_DURATION
            } else {
                WRK_DURATION
            },
            latency_duration: if args.quick {
                QUICK_LATENCY_DURATION
            } else {
                LATENCY_DURATION
            },
            large_fleet,
        })
    }

    /// Whether the run measures `section`.
    pub fn has(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::fleet;

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(["metaboot-bench"].iter().chain(args).copied())?;
        Plan::new(&cli.bench)
    }

    #[test]
    fn full_and_quick_plans() {
        let full = plan(&[]).unwrap();
        assert_eq!(full.rounds, ROUNDS);
        assert_eq!(full.wrk_duration, WRK_DURATION);
        assert_eq!(full.large_fleet, LARGE_FLEET);
        assert_eq!(full.sections, Section::ALL.to_vec());
        let quick = plan(&["--quick", "--only", "storm,chain"]).unwrap();
        assert_eq!(quick.rounds, 1);
        assert_eq!(quick.large_fleet, 0);
        assert_eq!(quick.sections, vec![Section::Chain, Section::Storm]);
    }

    #[test]
    fn plans_outside_the_limits_are_refused() {
        assert!(plan(&["--rounds", "0"]).is_err());
        let too_many = (fleet::MAX_FLEET + 1).to_string();
        assert!(plan(&["--instances", &too_many]).is_err());
        assert!(plan(&["--instances", &fleet::MAX_FLEET.to_string()]).is_ok());
    }
}
