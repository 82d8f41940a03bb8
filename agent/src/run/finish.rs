//! How a stage of a run ends: its writes committed with the report last, the run finished
//! (`done` / `error`) or left `running` for the next stage; and what a run without instance
//! metadata reports for the steps it could not run.

use crate::apply::{scripts, tool};
use crate::cli::RunStage;
use crate::log::chain;
use crate::state::State;
use crate::state::check_instance_id;
use crate::state::result::{Outcome, Report, RunStatus, unix_now};

/// Why the steps that need instance metadata did not run.
const NO_METADATA: &str = "no instance metadata (meta-data failed)";
/// Why they did not run when meta-data came but another document could not be fetched.
const INCOMPLETE: &str = "the instance's documents are incomplete (see the fetch steps): \
                          the next boot fetches them again";

/// Records each of `names` the run has no outcome for as skipped for want of metadata.
pub(super) fn skip_without_metadata(
    report: &mut Report,
    names: impl IntoIterator<Item = &'static str>,
) {
    let why = match report.outcome("meta-data") {
        Some(Outcome::Ok) => INCOMPLETE,
        _ => NO_METADATA,
    };
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|name| report.outcome(name).is_none())
        .collect();
    for name in missing {
        report.skip(name, why);
    }
}

/// Ends the init stage: its writes committed, the run left `running` for the final stage.
pub(super) fn pause(state: &State, report: &mut Report) {
    report.pause(RunStage::Final.name());
    commit(state, report);
    log_end(
        report,
        "metaboot init stage finished:",
        "; the user scripts run in `metaboot run --stage final` (metaboot-final.service)",
    );
}

/// Most commits at the end of a run: the first, and one more to rewrite the report when the
/// first could not place every file.
const MAX_FINAL_COMMITS: usize = 2;

pub(super) fn finish(state: &State, report: &mut Report) {
    report.finish();
    if let Some(id) = &report.instance_id
        && check_instance_id(id).is_ok()
    {
        let marker = state.instance_dir(id).join("boot-finished");
        let text = format!("{} {:?}\n", unix_now(), report.status).to_lowercase();
        if let Err(err) = state.root().write_atomic(
            &marker,
            text.as_bytes(),
            &crate::fsutil::WriteOptions::exact(0o644, None),
        ) {
            report.warnings.push(chain(&err));
        }
    }
    commit(state, report);
    let head = format!("metaboot finished: status={}", report.status.word());
    log_end(report, &head, "");
    run_after_commit(state, report);
}

/// Runs what the steps left for after the commit (`power_state`'s `shutdown`), so the report
/// says how the run went before the machine goes down. A command that fails makes the run an
/// error, committed again.
fn run_after_commit(state: &State, report: &mut Report) {
    for argv in std::mem::take(&mut report.after_commit) {
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        let line = scripts::shell_line(&argv);
        tracing::info!("the run is over: running {line}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let failure = match tool::run(program, &args) {
            Ok(Some(())) => continue,
            Ok(None) => format!("{line}: {program} is not installed (not found in PATH)"),
            Err(err) => chain(&err),
        };
        tracing::error!("after the run: {failure}");
        report.errors.push(format!("after the run: {failure}"));
        report.status = RunStatus::Error;
        commit(state, report);
    }
}

/// A stage's last log line (`head`, the instance, the error count, the time, `tail`): info
/// when the run has no error, else each error then the line.
fn log_end(report: &Report, head: &str, tail: &str) {
    let line = format!(
        "{head} instance={} errors={} duration_ms={}{tail}",
        report.instance_id.as_deref().unwrap_or("none"),
        report.errors.len(),
        report.duration_ms.unwrap_or(0)
    );
    if report.errors.is_empty() {
        tracing::info!("{line}");
    } else {
        for error in &report.errors {
            tracing::error!("{error}");
        }
        tracing::error!("{line}");
    }
}

/// Commits the stage's writes with the report last: once status.json says "done" (or that the
/// final stage is next), every file before it is in place. What could not be placed makes the
/// run an error.
fn commit(state: &State, report: &mut Report) {
    for _ in 0..MAX_FINAL_COMMITS {
        if let Err(err) = state.write_report(report) {
            tracing::error!("cannot write the status: {}", chain(&err));
        }
        let committed = state.root().commit();
        tracing::debug!(
            files = committed.totals.files,
            publishes = committed.totals.publishes,
            syncs = committed.totals.syncs,
            "committed the run's writes"
        );
        if committed.failures.is_empty() {
            break;
        }
        // What did not reach its place (its old file is kept) makes the run an error; the
        // report says so in a new commit. A run paused for its final stage stays `running`
        // (with the error), so `status --wait` waits for that stage; its end makes it an error.
        for failure in &committed.failures {
            report.errors.push(format!("commit: {}", chain(failure)));
        }
        if report.next_stage.is_none() {
            report.status = RunStatus::Error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::Root;
    use crate::state::result::Done;

    #[test]
    fn what_runs_after_the_commit_runs_once_the_report_says_done_and_a_failure_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap().staged();
        let state = State::new(&root);
        let status = state.root().host_path(state.status_path());
        let mut report = Report::start();
        // The command sees the report committed: it copies status.json while it runs.
        let copy = dir.path().join("seen.json");
        let seen = format!("cp {} {}", status.display(), copy.display());
        report.step("power-state", || {
            Done::ok().then_run(vec!["sh".into(), "-c".into(), seen])
        });
        finish(&state, &mut report);
        assert_eq!(report.status, RunStatus::Done);
        assert!(report.after_commit.is_empty());
        let seen: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
        assert_eq!(seen["status"], "done");

        let mut report = Report::start();
        report.step("power-state", || {
            Done::ok().then_run(vec!["sh".into(), "-c".into(), "echo no >&2; exit 3".into()])
        });
        report.step("later", || {
            Done::ok().then_run(vec!["metaboot-no-such-program".into()])
        });
        finish(&state, &mut report);
        assert_eq!(report.status, RunStatus::Error);
        assert_eq!(
            report.errors,
            [
                "after the run: sh -c echo no >&2; exit 3 failed (exit status: 3): no",
                "after the run: metaboot-no-such-program: metaboot-no-such-program is not \
                 installed (not found in PATH)"
            ]
        );
        // Committed again: status.json says what went wrong.
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
        assert_eq!(written["status"], "error");
        assert_eq!(written["errors"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_failed_commit_of_the_init_stage_leaves_the_run_running_for_the_final_stage() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap().staged();
        let state = State::new(&root);
        let mut report = Report::start();
        root.write_atomic(
            "/etc/app.conf",
            b"x",
            &crate::fsutil::WriteOptions::default(),
        )
        .unwrap();
        // Someone puts a non-empty directory where the file goes before the commit.
        std::fs::create_dir_all(dir.path().join("etc/app.conf/inside")).unwrap();
        pause(&state, &mut report);
        let status = state.root().host_path(state.status_path());
        let read = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap()
        };
        // `metaboot status --wait` goes on waiting: the final stage is still to run.
        let written = read();
        assert_eq!(written["status"], "running", "{written}");
        assert_eq!(written["next_stage"], "final", "{written}");
        assert_eq!(written["errors"].as_array().unwrap().len(), 1, "{written}");
        // The final stage's end makes the run an error.
        report.resume();
        finish(&state, &mut report);
        assert_eq!(read()["status"], "error");
    }
}
