//! The command line: `metaboot-bench [--quick] [--only SECTIONS] [--json FILE] …`, the same
//! flags `metaboot-harness bench` forwards.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use metaboot_harness::cli::{AgentArgs, LabArgs, ServerArgs};
use serde::Serialize;

/// `metaboot-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "metaboot-bench",
    version,
    about = "Measure the chain and the guest agent against real baselines (nginx, haproxy, \
             cloud-init) in one run; print one table. Exits 0 even when goals are missed."
)]
pub struct Cli {
    /// Cache for packages and images (default: the harness's, /var/cache/metaboot as root).
    #[arg(long, env = "METABOOT_CACHE")]
    pub cache: Option<PathBuf>,
    /// Log more (repeat for even more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub bench: BenchArgs,
}

impl Cli {
    /// The cache directory, the same `metaboot-harness` uses by default (cloud-init's package,
    /// the tiny and Debian images), so the bench reuses what `image build` left there.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(metaboot_harness::image::cache::default_dir)
    }
}

/// The bench's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// Chain throughput and latency against nginx and haproxy.
    Chain,
    /// The guest agent against cloud-init.
    Agent,
    /// The boot storm with 1k and 100k instances, SQLite and PostgreSQL.
    Storm,
    /// Guests in QEMU: /init to provisioned.
    Qemu,
    /// The Debian cloud images side by side, cloud-init vs metaboot: QEMU start to first key
    /// login, and the provisioner's own time.
    Debian,
}

impl Section {
    /// Every section, in run order.
    pub const ALL: [Section; 5] = [
        Section::Chain,
        Section::Agent,
        Section::Storm,
        Section::Qemu,
        Section::Debian,
    ];
}

/// What to measure and how long.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A short run for development: one round, short wrk runs, 1 000 instances only.
    #[arg(long)]
    pub quick: bool,
    /// Write every number (and every sample) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Only these sections (comma separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// Rounds of each interleaved comparison (default 3; 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Instances in the storm's large registries (default 100000; none with --quick).
    #[arg(long)]
    pub instances: Option<usize>,
    /// Do not apt-get install what is missing (fail instead).
    #[arg(long)]
    pub no_install: bool,
    /// Keep the bench's directory (server logs, registries, guest consoles) and print its path.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub lab: LabArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// What `metaboot-harness ARGS` hands to `metaboot-bench`, parsed as `metaboot-bench` does.
    fn through_the_harness(args: &[&str]) -> Cli {
        let harness = metaboot_harness::cli::Cli::try_parse_from(args).unwrap();
        let metaboot_harness::cli::Command::Bench(forward) = &harness.command else {
            panic!("{args:?} is not the bench command");
        };
        let line = metaboot_harness::bench::command_line(
            harness.cache.as_deref(),
            harness.verbose,
            forward,
        );
        Cli::try_parse_from(std::iter::once("metaboot-bench".into()).chain(line)).unwrap()
    }

    #[test]
    fn the_harness_subcommand_means_the_same() {
        let cli = through_the_harness(&[
            "metaboot-harness",
            "--cache",
            "/c",
            "-v",
            "bench",
            "--only",
            "chain,agent",
            "--json",
            "bench.json",
            "-v",
        ]);
        assert_eq!(cli.cache_dir(), PathBuf::from("/c"));
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.bench.only, vec![Section::Chain, Section::Agent]);
        assert_eq!(cli.bench.json, Some(PathBuf::from("bench.json")));
        assert!(!cli.bench.quick);
        let quick = through_the_harness(&["metaboot-harness", "bench", "--quick"]);
        assert!(quick.bench.quick);
        assert!(quick.bench.only.is_empty());
    }
}
