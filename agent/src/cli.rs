//! Command-line interface: `metaboot run | status | query`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The metaboot guest agent (the job cloud-init does on OpenStack).
#[derive(Debug, Parser)]
#[command(name = "metaboot", version, about)]
pub struct Cli {
    /// Log debug detail (every request, every step start).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One provisioning pass: fetch metadata and user data, apply them.
    Run(RunArgs),
    /// Show the outcome of the last run (done / running / error); non-zero unless done.
    Status(StatusArgs),
    /// Print one value from the cached instance data.
    Query(QueryArgs),
}

/// Arguments of `metaboot run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Metadata service base URL (an IP literal; overrides metaboot.yaml and `metaboot.url=`).
    #[arg(long)]
    pub url: Option<String>,
    /// Directory every path read or written is taken under.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Configuration file (default: `<root>/etc/metaboot/metaboot.yaml`); taken as given, not
    /// under the root.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Which part of the pass: `all`, or `init` (everything up to the logins: metaboot.service)
    /// then `final` (the user scripts, after logins open: metaboot-final.service), like
    /// cloud-init's stages.
    #[arg(long, value_enum, default_value_t = RunStage::All)]
    pub stage: RunStage,
}

/// The parts of a provisioning pass (`metaboot run --stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunStage {
    /// The whole pass in one process.
    All,
    /// Every step but the user scripts, which it writes for `final`; the run stays `running`.
    Init,
    /// The user scripts (vendor, per-once/boot/instance, user data's and runcmd) of the run
    /// `init` left open; then the run is done.
    Final,
}

impl RunStage {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RunStage::All => "all",
            RunStage::Init => "init",
            RunStage::Final => "final",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [RunStage::All, RunStage::Init, RunStage::Final]
            .into_iter()
            .find(|stage| stage.name() == name)
    }
}

/// Arguments of `metaboot status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Directory the state is read under.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Print the whole status document as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait until the run in progress has finished.
    #[arg(long)]
    pub wait: bool,
}

/// Arguments of `metaboot query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// One of: instance-id, local-hostname, hostname, availability-zone, project-id,
    /// public-keys, user-data, vendor-data.
    pub key: String,
    /// Directory the cached data is read under.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

impl Cli {
    /// The process's command line: `metaboot run` and its plain flags (how images start it)
    /// without clap, any other through clap. Under emulation (the tiny image's TCG guest) each
    /// piece of code costs its translation the first time it runs, and clap's parser is as much
    /// code as a run's whole HTTP client.
    pub fn from_env() -> Self {
        let args: Vec<OsString> = std::env::args_os().collect();
        Self::plain_run(&args).unwrap_or_else(|| Self::parse_from(args))
    }

    /// `run` followed only by `-v`/`--verbose` and `--root`/`--url`/`--config`/`--stage VALUE`
    /// (each at most once, as separate words, values non-empty and not starting with `-`, the
    /// stage one of its names); `None` for anything else (`--help`, `--root=DIR`, errors),
    /// which clap then parses. Gives what clap gives for the same words.
    pub fn plain_run(args: &[OsString]) -> Option<Self> {
        let mut words = args.get(1..)?.iter();
        let mut verbose = false;
        let mut seen_run = false;
        let (mut url, mut root, mut config, mut stage) = (None, None, None, None);
        while let Some(word) = words.next() {
            match word.to_str()? {
                "run" if !seen_run => seen_run = true,
                "-v" | "--verbose" if !verbose => verbose = true,
                flag @ ("--url" | "--root" | "--config" | "--stage") if seen_run => {
                    let value = words.next()?;
                    if value.is_empty() || value.as_encoded_bytes().starts_with(b"-") {
                        return None;
                    }
                    let slot = match flag {
                        "--url" => &mut url,
                        "--root" => &mut root,
                        "--stage" => &mut stage,
                        _ => &mut config,
                    };
                    if slot.replace(value.clone()).is_some() {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        if !seen_run {
            return None;
        }
        let url = match url {
            Some(url) => Some(url.into_string().ok()?),
            None => None,
        };
        let stage = match stage {
            Some(stage) => RunStage::from_name(stage.to_str()?)?,
            None => RunStage::All,
        };
        Some(Cli {
            verbose,
            command: Command::Run(RunArgs {
                url,
                root: root.map_or_else(|| PathBuf::from("/"), PathBuf::from),
                config: config.map(PathBuf::from),
                stage,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_the_host_root() {
        let cli = Cli::parse_from(["metaboot", "run"]);
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.root, PathBuf::from("/"));
        assert!(args.url.is_none());
        assert_eq!(args.stage, RunStage::All);
    }

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn a_plain_run_parses_as_clap_parses_it() {
        for line in [
            "metaboot run",
            "metaboot -v run",
            "metaboot run --verbose",
            "metaboot run --root /tmp/r --url http://169.254.169.254",
            "metaboot run --config /etc/m.yaml -v --root /mnt",
            "metaboot --verbose run --url http://[fe80::1%25eth0]:8080",
            "metaboot run --stage init",
            "metaboot run --stage final --root /mnt",
            "metaboot run -v --stage all",
        ] {
            let args = words(line);
            let plain = Cli::plain_run(&args).unwrap_or_else(|| panic!("{line}: not plain"));
            assert_eq!(
                format!("{plain:?}"),
                format!("{:?}", Cli::parse_from(&args)),
                "{line}"
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_clap() {
        for line in [
            "metaboot",
            "metaboot status",
            "metaboot query uuid",
            "metaboot run --help",
            "metaboot --version",
            "metaboot run --root=/mnt",
            "metaboot run --root",
            "metaboot run --root /a --root /b",
            "metaboot run --url -v",
            "metaboot run --url ",
            "metaboot run run",
            "metaboot -v -v run",
            "metaboot --root /mnt run",
            "metaboot run --json",
            "metaboot run --stage",
            "metaboot run --stage boot",
            "metaboot run --stage init --stage final",
            "metaboot run --stage=init",
        ] {
            assert!(Cli::plain_run(&words(line)).is_none(), "{line}");
        }
    }
}
