//! `metaboot`: the guest agent binary (fetch instance metadata, apply it under a root).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = metaboot::cli::Cli::parse();
    metaboot::main_with(cli)
}
