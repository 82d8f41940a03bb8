//! The metaboot guest agent: fetches OpenStack instance metadata (metadata service or config
//! drive), decodes user data the way cloud-init does, and applies it under a `--root`.

pub mod apply;
pub mod clean;
pub mod cli;
pub mod config;
pub mod console;
pub mod cpus;
pub mod fsutil;
pub mod local;
pub mod log;
pub mod messages;
pub mod query;
pub mod retry;
pub mod root;
pub mod run;
pub mod source;
pub mod start;
pub mod state;
pub mod sys_net;
pub mod userdata;

#[cfg(test)]
mod testutil;

use cli::{Cli, Command};

/// Runs one subcommand; returns the process's exit status.
pub fn main_with(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => run::main(&args, cli.verbose),
        Command::Status(args) => state::status::main(&args),
        Command::Query(args) => query::main(&args),
        Command::Local(args) => local::main(&args),
        Command::Clean(args) => clean::main(&args),
    }
}
