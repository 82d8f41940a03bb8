//! The registry CLI: `network`, `router`, `port` and `instance` commands.
//!
//! Each command opens the registry named by `--db`, makes one store call per change (so a
//! refused command writes nothing) and prints a table, a `key: value` block or `--json`.

mod instance;
mod keys;
mod network;
mod output;
mod port;
mod router;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use thiserror::Error;

use crate::store;

/// Input the CLI refuses before it reaches the store (unreadable file, bad `K=V`, …): exit 2.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct InputError(pub String);

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with one subnet.
    Create {
        name: String,
        /// The subnet, e.g. 198.18.0.0/24.
        #[arg(long)]
        cidr: String,
        /// The router's address on it (default: the first host address).
        #[arg(long)]
        gateway: Option<String>,
        /// The DHCP port's address (default: the second host address).
        #[arg(long = "dhcp-ip")]
        dhcp_ip: Option<String>,
        #[arg(long, default_value = "admin")]
        project: String,
        /// No router: metadata is served from the DHCP namespace.
        #[arg(long)]
        isolated: bool,
        #[arg(long)]
        mtu: Option<u32>,
        #[command(flatten)]
        output: Output,
    },
    /// List networks.
    List(Output),
    /// Show one network (by id or unique name).
    Show {
        network: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a network (refused while ports are on it; detached from its routers).
    Delete { network: String },
}

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Create a router, optionally with networks behind it.
    Create {
        name: String,
        /// Attach a network (id or name); repeatable.
        #[arg(long = "network")]
        networks: Vec<String>,
        #[arg(long, default_value = "admin")]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Attach a network to a router.
    AddNetwork { router: String, network: String },
    /// List routers.
    List(Output),
    /// Show one router (by id or unique name).
    Show {
        router: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a router (its networks stay).
    Delete { router: String },
}

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Add a port (an address on a network) to an instance.
    Create {
        /// Network id or name.
        #[arg(long)]
        network: String,
        /// Instance uuid or name.
        #[arg(long)]
        instance: String,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        mac: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List ports.
    List(Output),
    /// Show one port (by id).
    Show {
        port: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a port.
    Delete { port: String },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance with one port on a network.
    Create(Box<InstanceCreate>),
    /// List instances.
    List(Output),
    /// Show one instance (by id or unique name).
    Show {
        instance: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete an instance and its ports.
    Delete { instance: String },
}

#[derive(Debug, Args)]
pub struct InstanceCreate {
    pub name: String,
    /// Network id or name for the instance's port.
    #[arg(long)]
    pub network: String,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub mac: Option<String>,
    /// Host name (default: derived from the name as nova 23 and later derive it: `web.prod.01`
    /// → `web-prod-01`, Latin-1 letters kept, `Server-<uuid>` when nothing usable is left).
    #[arg(long)]
    pub hostname: Option<String>,
    #[arg(long, default_value = "admin")]
    pub project: String,
    #[arg(long = "availability-zone")]
    pub availability_zone: Option<String>,
    #[arg(long = "launch-index", default_value_t = 0)]
    pub launch_index: u32,
    /// An SSH public key file; repeatable. The key pair is named after the file (without
    /// `.pub`) unless --key-name names it.
    #[arg(long = "key-file")]
    pub key_files: Vec<PathBuf>,
    /// Name of the key pair of the --key-file at the same position (letters, digits, '_', '-',
    /// '@', '.' and spaces, at most 255); give it once per --key-file, or not at all.
    #[arg(long = "key-name")]
    pub key_names: Vec<String>,
    /// The user data file (at most 65535 bytes).
    #[arg(long = "user-data")]
    pub user_data: Option<PathBuf>,
    /// Server metadata `K=V`; repeatable.
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    /// Admin password (served on config drives only). Other users can read it in `ps`:
    /// prefer --admin-pass-file.
    #[arg(long = "admin-pass", conflicts_with = "admin_pass_file")]
    pub admin_pass: Option<String>,
    /// A file holding the admin password (one trailing newline is dropped); `/dev/stdin`
    /// reads it from a pipe.
    #[arg(long = "admin-pass-file")]
    pub admin_pass_file: Option<PathBuf>,
    /// Instance uuid (default: a new random one).
    #[arg(long)]
    pub uuid: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

/// `--json` for scripts.
#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `network …` against the registry `db`.
pub fn network(db: &str, cmd: NetworkCommand) -> anyhow::Result<()> {
    network::run(&*store::open(db)?, cmd)
}

/// `router …` against the registry `db`.
pub fn router(db: &str, cmd: RouterCommand) -> anyhow::Result<()> {
    router::run(&*store::open(db)?, cmd)
}

/// `port …` against the registry `db`.
pub fn port(db: &str, cmd: PortCommand) -> anyhow::Result<()> {
    port::run(&*store::open(db)?, cmd)
}

/// `instance …` against the registry `db`.
pub fn instance(db: &str, cmd: InstanceCommand) -> anyhow::Result<()> {
    instance::run(&*store::open(db)?, cmd)
}
