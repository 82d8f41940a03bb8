//! `metaboot-harness bench …`: the bench is its own crate (`bench/`, program `metaboot-bench`),
//! because it writes its bulk registries through the server's store, which the harness does
//! not link. This subcommand builds that program and runs it in this process's place with the
//! same arguments, so both spellings measure the same way.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::workspace::{self, CargoBinary};

/// `metaboot-bench` in the release profile: its storm client and registry writer run in its own
/// process, so a debug build would measure itself.
pub const BENCH: CargoBinary<'static> = CargoBinary {
    package: "metaboot-bench",
    bin: "metaboot-bench",
    profile: Some("release"),
    target: None,
    static_crt: false,
};

/// `bench`'s arguments, handed to `metaboot-bench` as they are.
#[derive(Debug, clap::Args)]
pub struct Forward {
    /// `metaboot-bench`'s flags (`--quick`, `--only`, `--json`, …; see `bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// `metaboot-bench`'s arguments: the harness's global flags it shares (`--cache`, `-v`), then
/// the rest as given.
pub fn command_line(cache: Option<&Path>, verbose: u8, forward: &Forward) -> Vec<OsString> {
    let mut line = Vec::new();
    if let Some(cache) = cache {
        line.push(OsString::from("--cache"));
        line.push(cache.as_os_str().to_owned());
    }
    line.extend((0..verbose).map(|_| OsString::from("-v")));
    line.extend(forward.args.iter().cloned());
    line
}

/// Builds `metaboot-bench` and runs it in place of this process (signals reach it directly);
/// returns only when it could not be started.
pub fn forward(cache: Option<&Path>, verbose: u8, forward: &Forward) -> anyhow::Result<i32> {
    let bin = workspace::build(BENCH).context("failed to build metaboot-bench")?;
    let err = Command::new(&bin)
        .args(command_line(cache, verbose, forward))
        .exec();
    Err(err).with_context(|| format!("failed to run {}", bin.display()))
}
