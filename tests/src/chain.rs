//! The metadata chain as real processes: the harness's chain fixture (shared with the bench:
//! `Chain`, `Scope`, `free_port`, `SECRET`, `write_private`, …), plus what only tests need, a
//! server that must refuse to start.

use std::process::Command;

pub use metaboot_harness::chain::*;

/// What a server that must refuse to start did: its exit code and stderr.
#[derive(Debug)]
pub struct Refused {
    pub code: Option<i32>,
    pub stderr: String,
}

/// Runs a server command that must stop by itself within [`START_TIMEOUT`] (it is killed and
/// the test fails otherwise).
pub fn run_to_exit(cmd: &mut Command) -> anyhow::Result<Refused> {
    let out = metaboot_harness::process::output_with_timeout(cmd, START_TIMEOUT)?;
    Ok(Refused {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
