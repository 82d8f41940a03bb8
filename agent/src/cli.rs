//! Command-line interface: `metaboot run | status | query`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    }
}
