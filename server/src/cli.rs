//! The command line: registry commands and the daemons.

use clap::{Parser, Subcommand};

use crate::store::StoreError;
use crate::{admin, agent, all, api, proxy};

#[derive(Debug, Parser)]
#[command(
    name = "metaboot-server",
    version,
    about = "OpenStack-compatible instance metadata: API, agent, namespace proxy and registry"
)]
pub struct Cli {
    /// The registry: a SQLite file path (or sqlite:PATH) or a postgres:// URL.
    /// [default: /var/lib/metaboot-server/registry.sqlite]
    // The help names the variable but never its value: a URL may hold the password.
    #[arg(long, global = true, env = "METABOOT_DB", hide_env_values = true)]
    pub db: Option<String>,

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
    /// Serve every role in one process: API, agent and a proxy per router and isolated network.
    All(Box<all::AllArgs>),
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let db = || match cli.db.as_deref() {
        Some(db) => Ok(db),
        None => crate::store::default_db().map_err(anyhow::Error::from),
    };
    match cli.command {
        Command::Network(cmd) => admin::network(db()?, cmd),
        Command::Router(cmd) => admin::router(db()?, cmd),
        Command::Port(cmd) => admin::port(db()?, cmd),
        Command::Instance(cmd) => admin::instance(db()?, cmd),
        Command::Api(args) => api::serve(db()?, args),
        Command::Agent(args) => agent::serve(db()?, args),
        Command::NsProxy(args) => proxy::serve(args),
        // `all` may take the registry from its configuration file: only --db wins over it (or
        // METABOOT_DB, the flag's environment form; docs/server.md says so).
        Command::All(args) => all::serve(cli.db.as_deref(), &args),
    }
}

/// The exit code of refused input (a flag, the shared secret, the registry's rules, the
/// configuration), as of clap's own usage errors: running again changes nothing, so the
/// systemd units do not restart on it (`RestartPreventExitStatus=`).
pub const EXIT_REFUSED: u8 = 2;
/// The exit code of any other failure (a backend, a namespace not there yet): worth a retry.
pub const EXIT_FAILED: u8 = 1;

/// Exit code for an error: [`EXIT_REFUSED`] when the caller's input was refused,
/// [`EXIT_FAILED`] otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let refused = err.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_user_error)
            || cause.downcast_ref::<admin::InputError>().is_some()
            || cause
                .downcast_ref::<crate::secret::SecretError>()
                .is_some_and(crate::secret::SecretError::is_user_error)
            || cause
                .downcast_ref::<crate::all::config::ConfigError>()
                .is_some_and(crate::all::config::ConfigError::is_user_error)
            || cause
                .downcast_ref::<crate::api::vendor::VendorDataError>()
                .is_some_and(crate::api::vendor::VendorDataError::is_user_error)
    });
    if refused { EXIT_REFUSED } else { EXIT_FAILED }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// A flag clap refuses exits as any other refused input: the units stop on both alike.
    #[test]
    fn a_refused_flag_exits_as_refused_input() {
        use clap::Parser as _;
        let argv = ["metaboot-server", "api", "--listen", "nowhere"];
        let err = super::Cli::try_parse_from(argv).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(super::EXIT_REFUSED));
        assert_ne!(super::EXIT_REFUSED, super::EXIT_FAILED);
    }

    /// A value from the environment may be a secret (METABOOT_DB's URL holds the PostgreSQL
    /// password): `--help` names the variable of every such flag, never its value.
    #[test]
    fn help_never_shows_a_value_from_the_environment() {
        fn check(command: &clap::Command) {
            for arg in command.get_arguments() {
                if arg.get_env().is_some() {
                    assert!(
                        arg.is_hide_env_values_set(),
                        "{} --{}",
                        command.get_name(),
                        arg.get_id()
                    );
                }
            }
            command.get_subcommands().for_each(check);
        }
        check(&super::Cli::command());
    }

    #[test]
    fn the_db_help_names_the_default_registry() {
        let command = super::Cli::command();
        let db = command
            .get_arguments()
            .find(|arg| arg.get_id() == "db")
            .unwrap();
        let help = db.get_help().unwrap().to_string();
        assert!(help.contains(crate::store::DEFAULT_DB), "{help}");
    }
}
