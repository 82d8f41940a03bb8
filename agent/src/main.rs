//! `metaboot`: the guest agent binary (fetch instance metadata, apply it under a root).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = metaboot::cli::Cli::from_env();
    metaboot::main_with(cli)
}
