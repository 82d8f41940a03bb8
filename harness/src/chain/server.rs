//! One server process of a chain (or a baseline the bench runs beside it) with its log: started
//! as the leader of its own process group, killed with that group when dropped, and waited on
//! until it serves.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::lab;
use crate::process::ProcessGroup;
use crate::wait::wait_until;

/// How long a server may take to start listening (`all` over a large registry included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a server's log shown when it fails to start, or when a test fails.
pub const LOG_TAIL_LINES: usize = 60;

/// A running server and its log.
#[derive(Debug)]
pub struct Server {
    /// What it is, for messages (`api`, `proxy-0`, `nginx-static`, …).
    pub name: String,
    /// The process (its group is killed on drop).
    pub process: ProcessGroup,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts `cmd` with stdin closed and its output in `<dir>/<name>.log`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().context("failed to share a log file")?)
            .stderr(file);
        let process = ProcessGroup::spawn(name, cmd)?;
        Ok(Self {
            name: name.to_owned(),
            process,
            log,
        })
    }

    /// The process's PID (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until `ready` holds; fails with the log's end if the process exits or
    /// [`START_TIMEOUT`] passes.
    pub fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let mut exited: Option<anyhow::Result<ExitStatus>> = None;
        let served = wait_until(Instant::now() + START_TIMEOUT, || {
            if ready() {
                return true;
            }
            exited = self.process.try_wait().transpose();
            exited.is_some()
        });
        match exited {
            Some(status) => bail!(
                "{} exited with {}:\n{}",
                self.name,
                status?,
                self.log_tail()
            ),
            None if served => Ok(()),
            None => bail!(
                "{} did not start within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines of its log.
    pub fn log_tail(&self) -> String {
        lab::tail(&self.log, LOG_TAIL_LINES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_serves_is_ready_and_one_that_exits_shows_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("listening");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("touch {}; exec sleep 30", flag.display()));
        let mut server = Server::spawn("sleeper", &mut cmd, dir.path()).unwrap();
        server.wait_ready(|| flag.exists()).unwrap();
        assert!(server.process.try_wait().unwrap().is_none());

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo cannot bind >&2; exit 3"]);
        let mut failing = Server::spawn("failing", &mut cmd, dir.path()).unwrap();
        let err = failing.wait_ready(|| false).unwrap_err().to_string();
        assert!(err.starts_with("failing exited with"), "{err}");
        assert!(err.contains("cannot bind"), "{err}");
        assert_eq!(failing.log, dir.path().join("failing.log"));
    }
}
