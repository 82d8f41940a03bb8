//! The registry CLI: `network`, `router`, `port` and `instance` commands.
//!
//! Each command opens the registry named by `--db`, makes one store call per change (so a
//! refused command writes nothing) and prints a table, a `key: value` block or `--json`.

mod config_drive;
#[cfg(test)]
mod fails_after_write;
mod input;
mod instance;
mod keys;
mod network;
mod output;
mod password;
mod port;
mod router;

pub use input::InputError;
pub use instance::{InstanceCommand, InstanceCreate};
pub use network::NetworkCommand;
pub use output::Output;
pub use port::PortCommand;
pub use router::RouterCommand;

use crate::store;

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
