//! How a stage of a run ends: its writes committed with the report last, the run finished
//! (`done` / `error`) or left `running` for the next stage; and what a run without instance
//! metadata reports for the steps it could not run.

use crate::cli::RunStage;
use crate::log::chain;
use crate::state::State;
use crate::state::check_instance_id;
use crate::state::result::{Report, RunStatus, unix_now};

/// Why the steps that need instance metadata did not run.
const NO_METADATA: &str = "no instance metadata (meta-data failed)";

/// Records each of `names` the run has no outcome for as skipped for want of metadata.
pub(super) fn skip_without_metadata(
    report: &mut Report,
    names: impl IntoIterator<Item = &'static str>,
) {
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|name| report.outcome(name).is_none())
        .collect();
    for name in missing {
        report.skip(name, NO_METADATA);
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
        // report says so in a new commit.
        for failure in &committed.failures {
            report.errors.push(format!("commit: {}", chain(failure)));
        }
        report.status = RunStatus::Error;
    }
}
