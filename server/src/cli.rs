//! The command line: registry commands and the daemons.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::store::StoreError;
use crate::{admin, agent, api, proxy};

/// Where the registry lives when `--db` and `METABOOT_DB` are not given.
pub const DEFAULT_DB: &str = "/var/lib/metaboot/registry.sqlite";

#[derive(Debug, Parser)]
#[command(
    name = "metaboot-server",
    version,
    about = "OpenStack-compatible instance metadata: API, agent, namespace proxy and registry"
)]
pub struct Cli {
    /// The registry: a SQLite file path (or sqlite:PATH) or a postgres:// URL.
    #[arg(long, global = true, env = "METABOOT_DB", default_value = DEFAULT_DB)]
    pub db: String,

    /// Log more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenant networks.
    #[command(subcommand)]
    Network(admin::NetworkCommand),
    /// Routers and the networks behind them.
    #[command(subcommand)]
    Router(admin::RouterCommand),
    /// Ports (an instance's address on a network).
    #[command(subcommand)]
    Port(admin::PortCommand),
    /// Instances and their metadata.
    #[command(subcommand)]
    Instance(admin::InstanceCommand),
    /// Serve the metadata API (the role of nova-api-metadata).
    Api(api::ApiArgs),
    /// Serve the metadata agent on a Unix socket (the role of neutron-metadata-agent).
    Agent(agent::AgentArgs),
    /// Serve the namespace proxy (the role of neutron-ns-metadata-proxy / haproxy).
    NsProxy(proxy::ProxyArgs),
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Network(cmd) => admin::network(&cli.db, cmd),
        Command::Router(cmd) => admin::router(&cli.db, cmd),
        Command::Port(cmd) => admin::port(&cli.db, cmd),
        Command::Instance(cmd) => admin::instance(&cli.db, cmd),
        Command::Api(args) => api::serve(&cli.db, args),
        Command::Agent(args) => agent::serve(&cli.db, args),
        Command::NsProxy(args) => proxy::serve(args),
    }
}

/// Exit code for an error: 2 when the caller's input was refused, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let refused = err.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_user_error)
            || cause.downcast_ref::<admin::InputError>().is_some()
    });
    if refused { 2 } else { 1 }
}

/// Logs to stderr; `RUST_LOG`-style levels from `-v`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A path argument that must name an existing readable file.
pub fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| {
        anyhow::Error::new(admin::InputError(format!(
            "cannot read {}: {err}",
            path.display()
        )))
    })
}

/// Parses an octal file mode such as `660` or `0660`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 660"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
