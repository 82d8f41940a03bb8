//! Who a lab belongs to, recorded in its state: the process that brought it up (its PID and
//! start time) and whether the lab lives only as long as that process (a `run`'s) or is the
//! user's (`lab up`, `run --keep-lab`). What is done with it is in `abandoned.rs`.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::process;

/// How long a lab lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabKind {
    /// A `run`'s lab (or one being brought up): it lives as long as its owner; once the owner
    /// is gone, the next `run` takes it down.
    Run,
    /// Brought up by `lab up`, or kept by `run --keep-lab`: the user's, until `lab down`.
    Kept,
}

/// The process a lab belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its PID.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22): a later process
    /// that took the PID is not the owner.
    pub start_ticks: u64,
    /// How long the lab lives.
    pub kind: LabKind,
}

impl Owner {
    /// This process, as the owner of a lab of `kind`.
    pub fn this_process(kind: LabKind) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let start_ticks = process::start_ticks(pid)
            .context("failed to read this process's start time from /proc/self/stat")?;
        Ok(Self {
            pid,
            start_ticks,
            kind,
        })
    }

    /// Whether the owner still runs (the same process: PID and start time, not a zombie).
    pub fn is_running(&self) -> bool {
        process::is_running(self.pid, self.start_ticks)
    }
}

/// What `lab list` says of the owner of lab `id` (`None`: a state file from before owners were
/// recorded): whose it is, and what takes it down.
pub fn describe(owner: Option<&Owner>, id: &str) -> String {
    describe_as(owner, id, owner.is_some_and(Owner::is_running))
}

/// [`describe`], given whether the owner still runs.
fn describe_as(owner: Option<&Owner>, id: &str, running: bool) -> String {
    match owner {
        None => format!(
            "owner: not recorded (a state file from before owners): up until `lab down --id {id}`"
        ),
        Some(Owner {
            pid,
            kind: LabKind::Kept,
            ..
        }) => format!("owner: kept (brought up by PID {pid}): up until `lab down --id {id}`"),
        Some(Owner {
            pid,
            kind: LabKind::Run,
            ..
        }) if running => format!("owner: run PID {pid}: taken down when that run ends"),
        Some(Owner {
            pid,
            kind: LabKind::Run,
            ..
        }) => format!(
            "owner: run PID {pid}, gone: the next `run` takes it down, or `lab down --id {id}`"
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A process that has ended (and was reaped).
    pub(crate) fn gone(kind: LabKind) -> Owner {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start_ticks = process::start_ticks(pid).unwrap_or(1);
        child.wait().unwrap();
        Owner {
            pid,
            start_ticks,
            kind,
        }
    }

    #[test]
    fn an_owner_runs_while_its_process_with_its_start_time_does() {
        let me = Owner::this_process(LabKind::Run).unwrap();
        assert!(me.is_running());
        // Same PID, another start time: a later process that took the PID.
        let reused = Owner {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!reused.is_running());
        assert!(!gone(LabKind::Run).is_running());
    }

    /// `lab list` tells a run's lab, a kept one and one whose run is gone apart, with the PID.
    #[test]
    fn the_owner_is_described_for_lab_list() {
        let me = Owner::this_process(LabKind::Run).unwrap();
        let running = describe(Some(&me), "ab12");
        assert!(
            running.starts_with(&format!("owner: run PID {}:", me.pid)),
            "{running}"
        );
        let dead = gone(LabKind::Run);
        let ended = describe(Some(&dead), "ab12");
        assert!(
            ended.starts_with(&format!("owner: run PID {}, gone", dead.pid)),
            "{ended}"
        );
        assert!(ended.contains("lab down --id ab12"), "{ended}");
        // Kept: the user's whether `lab up` still runs or not.
        for kept in [
            Owner::this_process(LabKind::Kept).unwrap(),
            gone(LabKind::Kept),
        ] {
            let text = describe(Some(&kept), "ab12");
            assert!(text.starts_with("owner: kept"), "{text}");
            assert!(text.contains(&kept.pid.to_string()), "{text}");
        }
        let old = describe_as(None, "ab12", false);
        assert!(old.starts_with("owner: not recorded"), "{old}");
    }
}
