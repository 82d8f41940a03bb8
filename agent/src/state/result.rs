//! The report of one run: each step's outcome, message and timing; written as `status.json`
//! (always) and as the instance's `result.json`.

use std::error::Error;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::log::chain;

/// Version of the report format.
pub const REPORT_VERSION: u32 = 1;

/// `n` and `what`, plural unless `n` is one ("1 key", "3 keys"), for step messages.
pub fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Skipped,
    Error,
}

/// Where the whole run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Done,
    Error,
}

impl RunStatus {
    /// The word status.json, `metaboot status` and the log use.
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Error => "error",
        }
    }
}

/// One script that was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptResult {
    pub name: String,
    /// The exit code; `null` when it could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One step of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<ScriptResult>,
}

/// What a step returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub outcome: Outcome,
    pub message: Option<String>,
    pub scripts: Vec<ScriptResult>,
    /// A command the run runs once its report is committed (`power_state`'s `shutdown`).
    pub after_commit: Option<Vec<String>>,
}

impl Done {
    /// Success, nothing to say.
    pub fn ok() -> Self {
        Self::new(Outcome::Ok, None)
    }

    /// Success with a note (what was changed).
    pub fn ok_with(message: impl Into<String>) -> Self {
        Self::new(Outcome::Ok, Some(message.into()))
    }

    /// Nothing to do, and why.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Skipped, Some(reason.into()))
    }

    /// Failure, one line saying what went wrong.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Outcome::Error, Some(message.into()))
    }

    /// What a step did (`said`) with what failed (`errors`): success with `said` when nothing
    /// failed, else an error with the failures first, then what was done.
    pub fn with_errors(mut errors: Vec<String>, said: Vec<String>) -> Self {
        if errors.is_empty() {
            Done::ok_with(said.join("; "))
        } else {
            errors.extend(said);
            Done::error(errors.join("; "))
        }
    }

    /// `Ok(done)` as is, `Err(e)` as an error with the whole cause chain.
    pub fn from_result<E: Error>(result: Result<Done, E>) -> Self {
        result.unwrap_or_else(|err| Done::error(chain(&err)))
    }

    /// The same, with `argv` to run once the run's report is committed.
    pub fn then_run(mut self, argv: Vec<String>) -> Self {
        self.after_commit = Some(argv);
        self
    }

    fn new(outcome: Outcome, message: Option<String>) -> Self {
        Done {
            outcome,
            message,
            scripts: Vec::new(),
            after_commit: None,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub status: RunStatus,
    pub instance_id: Option<String>,
    /// True when this run saw the instance for the first time.
    pub new_instance: Option<bool>,
    /// The datasource used (`config-drive`, `metadata-service`, …), if any was found.
    pub source: Option<String>,
    /// Unix seconds.
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub duration_ms: Option<u64>,
    pub steps: Vec<StepResult>,
    /// `<step>: <message>` for every failed step.
    pub errors: Vec<String>,
    /// Content ignored on purpose (unknown user-data parts, unsupported keys).
    pub warnings: Vec<String>,
    /// The stage the run waits for while `status` is `running` between stages: `final` after
    /// `metaboot run --stage init` (the user scripts, run by `metaboot run --stage final`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_stage: Option<String>,
    /// The kernel's id of the boot the run began in ([`boot_id`]): `status` takes a report of
    /// another boot for "not started" in this one, as cloud-init's status in `/run` is gone
    /// after a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// True when this run's init stage began after a final stage (or a whole run) had already
    /// finished in this boot: a manual `metaboot run --stage init`, whose final stage no unit
    /// runs (metaboot-final.service runs once a boot); `status` does not wait for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_ran: bool,
    #[serde(skip)]
    started: Option<Instant>,
    /// The commands steps of this stage left to run once the report is committed, in order.
    #[serde(skip)]
    pub after_commit: Vec<Vec<String>>,
}

/// Where the kernel gives the id of the running boot (a new random UUID at every boot).
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The id of the running boot; `None` without procfs (then no report is taken for another
/// boot's).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID_PATH)
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn millis(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Report {
    /// Whether the run began in an earlier boot than `now` (both known and different).
    pub fn from_another_boot(&self, now: Option<&str>) -> bool {
        matches!((self.boot_id.as_deref(), now), (Some(then), Some(now)) if then != now)
    }

    /// Whether a run that began after this one, in boot `now`, comes after a final stage that
    /// already ran in that boot ([`Report::final_ran`]): this run finished there (not `running`
    /// between stages), or it was itself begun after one.
    pub fn final_ran_before(&self, now: Option<&str>) -> bool {
        now.is_some()
            && self.boot_id.as_deref() == now
            && (self.final_ran || self.status != RunStatus::Running)
    }

    /// A report for a run starting now.
    pub fn start() -> Self {
        Report {
            version: REPORT_VERSION,
            status: RunStatus::Running,
            instance_id: None,
            new_instance: None,
            source: None,
            started_at: unix_now(),
            finished_at: None,
            duration_ms: None,
            steps: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            next_stage: None,
            boot_id: boot_id(),
            final_ran: false,
            started: Some(Instant::now()),
            after_commit: Vec::new(),
        }
    }

    /// Runs one step, timing it and recording its outcome.
    pub fn step(&mut self, name: &str, run: impl FnOnce() -> Done) -> Outcome {
        let start = Instant::now();
        tracing::debug!(step = name, "starting");
        let done = run();
        self.push(name, done, millis(start))
    }

    /// Records a step that was not run (its input is missing, or it is disabled).
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.push(name, Done::skipped(reason), 0);
    }

    fn push(&mut self, name: &str, done: Done, duration_ms: u64) -> Outcome {
        let message = done.message.clone().unwrap_or_default();
        match done.outcome {
            Outcome::Ok => tracing::info!(step = name, duration_ms, "ok {message}"),
            Outcome::Skipped => tracing::info!(step = name, "skipped: {message}"),
            Outcome::Error => {
                tracing::error!(step = name, duration_ms, "error: {message}");
                self.errors.push(format!("{name}: {message}"));
            }
        }
        self.after_commit.extend(done.after_commit);
        self.steps.push(StepResult {
            name: name.to_owned(),
            outcome: done.outcome,
            message: done.message,
            duration_ms,
            scripts: done.scripts,
        });
        done.outcome
    }

    /// The outcome recorded for `name`, if the step was recorded.
    pub fn outcome(&self, name: &str) -> Option<Outcome> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outcome)
    }

    /// Ends a stage that leaves the run open for `next`: still `running`, with the time so far.
    pub fn pause(&mut self, next: &str) {
        self.next_stage = Some(next.to_owned());
        self.duration_ms = self.started.map(millis);
    }

    /// Takes up a run a previous stage paused (read back from `status.json`): its time goes on
    /// from the time it had, so `duration_ms` is the stages' working time, not the wait between.
    pub fn resume(&mut self) {
        self.next_stage = None;
        let before = Duration::from_millis(self.duration_ms.unwrap_or(0));
        let now = Instant::now();
        self.started = Some(now.checked_sub(before).unwrap_or(now));
    }

    /// Ends the run: `done` when no step failed, `error` otherwise.
    pub fn finish(&mut self) {
        self.status = if self.errors.is_empty() {
            RunStatus::Done
        } else {
            RunStatus::Error
        };
        self.finished_at = Some(unix_now());
        self.duration_ms = self.started.map(millis);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A final stage (or a whole run) finished in this boot comes before a manual
    /// `--stage init`; an init stage still waiting for it, or another boot's run, does not.
    #[test]
    fn a_final_stage_that_ran_in_this_boot_is_told() {
        let mut last = Report::start();
        last.boot_id = Some("b1".into());
        last.next_stage = Some("final".into());
        assert!(!last.final_ran_before(Some("b1")));
        last.final_ran = true;
        assert!(last.final_ran_before(Some("b1")));
        last.final_ran = false;
        last.next_stage = None;
        last.finish();
        assert!(last.final_ran_before(Some("b1")));
        assert!(!last.final_ran_before(Some("b2")));
        assert!(!last.final_ran_before(None));
    }

    #[test]
    fn a_failed_step_makes_the_run_an_error_and_later_steps_still_record() {
        let mut report = Report::start();
        assert_eq!(report.step("a", Done::ok), Outcome::Ok);
        assert_eq!(report.step("b", || Done::error("boom")), Outcome::Error);
        report.skip("c", "no input");
        report.finish();
        assert_eq!(report.status, RunStatus::Error);
        assert_eq!(report.errors, ["b: boom"]);
        assert_eq!(report.outcome("c"), Some(Outcome::Skipped));
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["status"], report.status.word());
        assert_eq!(json["steps"][1]["outcome"], "error");
        assert_eq!(json["steps"][1]["message"], "boom");
        assert!(json["steps"][0].get("message").is_none());
    }

    #[test]
    fn with_errors_puts_the_failures_first() {
        let said = vec!["wrote a".to_owned(), "ran b".to_owned()];
        let mut report = Report::start();
        report.step("fine", || Done::with_errors(Vec::new(), said.clone()));
        report.step("broken", || {
            Done::with_errors(vec!["c failed".into()], said.clone())
        });
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["steps"][0]["outcome"], "ok");
        assert_eq!(json["steps"][0]["message"], "wrote a; ran b");
        assert_eq!(json["steps"][1]["outcome"], "error");
        assert_eq!(json["steps"][1]["message"], "c failed; wrote a; ran b");
    }

    #[test]
    fn a_paused_run_stays_running_and_resumes_with_its_time() {
        let mut report = Report::start();
        report.step("a", Done::ok);
        report.pause("final");
        assert_eq!(report.status, RunStatus::Running);
        assert!(report.finished_at.is_none());
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"next_stage\":\"final\""), "{json}");
        let mut back: Report = serde_json::from_str(&json).unwrap();
        back.duration_ms = Some(5_000);
        back.resume();
        back.step("b", Done::ok);
        back.finish();
        assert_eq!(back.status, RunStatus::Done);
        assert!(back.next_stage.is_none());
        assert!(back.duration_ms.unwrap() >= 5_000);
        assert!(!serde_json::to_string(&back).unwrap().contains("next_stage"));
        // A status.json of an older metaboot (no next_stage) still reads.
        let old = json.replace(",\"next_stage\":\"final\"", "");
        assert!(
            serde_json::from_str::<Report>(&old)
                .unwrap()
                .next_stage
                .is_none()
        );
    }

    #[test]
    fn all_ok_is_done() {
        let mut report = Report::start();
        report.step("a", || Done::ok_with("changed"));
        report.finish();
        assert_eq!(report.status, RunStatus::Done);
        assert!(report.duration_ms.is_some() && report.finished_at.is_some());
    }
}
