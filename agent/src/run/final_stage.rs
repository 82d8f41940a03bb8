//! `metaboot run --stage final` (metaboot-final.service, after sshd starts): takes up the run
//! the init stage of this boot left `running` in `status.json` (an earlier boot's is refused:
//! its instance and scripts may not be this boot's; `status.json` then says so, where it said
//! that boot's `running`), runs the user scripts it wrote (vendor,
//! per-once, per-boot, per-instance, user data's and runcmd's), shows the host keys on the
//! console, and finishes the run. It needs none of the instance's data beyond its id and the
//! cloud-config the init stage merged: no network, no fetch, no decode.

use super::finish::{finish, skip_without_metadata};
use super::instance::Instance;
use super::steps;
use crate::cli::RunStage;
use crate::config::Settings;
use crate::root::Root;
use crate::state::result::{Report, RunStatus, boot_id};
use crate::state::{State, status};

/// Runs the final stage; returns the report (written to disk when there was a run to finish).
pub(super) fn run(root: &Root, settings: &Settings) -> Report {
    let root = &root.staged();
    let state = State::new(root);
    let mut report = match status::read(root) {
        Ok(Some(report)) => report,
        Ok(None) => {
            return refused(
                "no run to finish: status.json is missing; the init stage \
                 (`metaboot run --stage init`, metaboot.service) runs first",
            );
        }
        Err(err) => return refused(&err),
    };
    if report.next_stage.as_deref() != Some(RunStage::Final.name()) {
        if report.status != RunStatus::Running {
            // A whole run, or a final stage that already ran: nothing is left to do.
            tracing::info!(
                "nothing to do: the last run already finished (status={})",
                report.status.word()
            );
            return report;
        }
        // `running` without a next stage: the init stage, or a final stage, was stopped
        // before it ended (the lock is ours, so it is not running). Finish the run as an
        // error, so that `status --wait` does not wait for ever.
        report.resume();
        report
            .errors
            .push("the run did not finish (it was stopped); run `metaboot run` again".to_owned());
        finish(&state, &mut report);
        return report;
    }
    if report.from_another_boot(boot_id().as_deref()) {
        // Said in status.json, the run of this boot: left as it was, the earlier boot's
        // `running` would stand there until the next init stage.
        let mut refusal = Report::start();
        refusal.errors.push(
            "no run of this boot to finish: status.json was an init stage's of an earlier \
             boot; the init stage (`metaboot run --stage init`, metaboot.service) runs first"
                .to_owned(),
        );
        finish(&state, &mut refusal);
        return refusal;
    }
    report.resume();
    // `running` with no stage left to wait for: from here on, a final stage that is killed
    // (kill -9, the OOM killer, `systemctl stop`) leaves a run no process holds, which
    // `metaboot status` reports as stopped instead of waiting for ever.
    if let Err(err) = state.write_running(&report) {
        tracing::warn!(
            "cannot write the running status: {}",
            crate::log::chain(&err)
        );
    }
    tracing::info!(
        instance = report.instance_id.as_deref().unwrap_or("none"),
        "metaboot final stage starting"
    );
    // With the instance the init stage took up (its meta-data and every other document
    // fetched), that instance; without, what the init stage used too (the last known
    // instance, or none) and only the every-boot scripts.
    let with_metadata = report.instance_id.is_some();
    // Without it, on a reboot of the machine's own instance, what the init stage used too:
    // the configuration the instance merged at its last run.
    let resumed = if with_metadata {
        report.instance_id.clone()
    } else {
        super::known_instance(root, &state)
    };
    let mut instance = match resumed {
        Some(id) => Instance::resumed(root, &state, settings, id),
        None => Instance::without_metadata(root, &state, settings),
    };
    instance.source.clone_from(&report.source);
    if with_metadata {
        steps::apply_final(&instance, &mut report, |_| true);
    } else {
        steps::apply_final(&instance, &mut report, steps::every_boot);
        skip_without_metadata(&mut report, steps::final_step_names());
    }
    finish(&state, &mut report);
    report
}

/// A final stage with no run to finish: an error, and nothing written.
fn refused(why: &str) -> Report {
    tracing::error!("{why}");
    let mut report = Report::start();
    report.errors.push(why.to_owned());
    report.finish();
    report
}
