//! `metaboot run`: one provisioning pass. Choose a datasource (the first of `datasources:` this
//! machine has), fetch and decode its documents, then apply step by step; a failed step never stops the independent ones,
//! and every outcome lands in `status.json` and the instance's `result.json`.
//!
//! A pass runs whole (`--stage all`) or in two stages, like cloud-init's units: `init`
//! (metaboot.service, before the logins) applies everything and writes the user scripts;
//! `final` (metaboot-final.service, after sshd starts) runs them (`run/final_stage.rs`).

mod accounts;
mod disks;
mod fetch;
mod final_stage;
mod finish;
mod instance;
mod packages;
mod steps;
mod system;

use std::fs::File;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::cli::{RunArgs, RunStage};
use crate::config;
use crate::config::Settings;
use crate::log::chain;
use crate::retry::Retry;
use crate::root::Root;
use crate::source::http::HttpClient;
use crate::source::{self, Probe};
use crate::state::State;
use crate::state::result::{Done, Report, RunStatus};
use crate::state::status::{EXIT_DONE, EXIT_ERROR};
use finish::{finish, pause, skip_without_metadata};
use instance::Instance;

/// Runs `metaboot run`.
pub fn main(args: &RunArgs, verbose: bool) -> u8 {
    let root = match Root::open(&args.root) {
        Ok(root) => root,
        Err(err) => {
            eprintln!(
                "metaboot run: root {} is not a directory: {err}",
                args.root.display()
            );
            return EXIT_ERROR;
        }
    };
    let log_warning = crate::log::init(&root, verbose);
    let state = State::new(&root);
    let _lock = match lock(&state) {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!("{err}");
            return EXIT_ERROR;
        }
    };
    let known: Vec<&str> = steps::step_names().collect();
    let settings = config::load(&root, args.config.as_deref(), args.url.as_deref(), &known);
    let mut report = run_stage(&root, &settings, args.stage);
    report.warnings.extend(log_warning);
    // An init stage that went well leaves the run `running`, for the final stage.
    match report.status {
        RunStatus::Done => EXIT_DONE,
        RunStatus::Running if report.errors.is_empty() => EXIT_DONE,
        _ => EXIT_ERROR,
    }
}

/// Holds `var/lib/metaboot/.lock` so two runs never interleave.
pub(crate) fn lock(state: &State) -> Result<Flock<File>, String> {
    let path = state.lock_path();
    let shown = state.root().host_path(&path);
    let flags = OFlag::O_RDWR | OFlag::O_CREAT;
    let file = state
        .root()
        .open_file(&path, flags, 0o600, false, true)
        .map_err(|e| format!("cannot open {}: {e}", shown.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| format!("another metaboot run holds {} ({errno})", shown.display()))
}

/// One whole pass; returns the finished report (also written to disk).
pub fn run(root: &Root, settings: &Settings) -> Report {
    run_stage(root, settings, RunStage::All)
}

/// How long a reboot of a known instance keeps retrying its datasource: none, one round
/// (as `deadline_secs: 0`; each document still has its own attempts). cloud-init trusts its
/// cached datasource on such a boot (OpenStack's `check_instance_id`: the instance id is the
/// DMI system UUID) and waits for nothing, where the first boot's budget would hold the logins
/// back through a metadata outage on every reboot.
pub const KNOWN_INSTANCE_BUDGET: Duration = Duration::ZERO;

/// The retry budget of the datasource's discovery: [`KNOWN_INSTANCE_BUDGET`] when the last
/// run's instance id is this machine's DMI system UUID (nova sets it to the instance's uuid,
/// compared case-insensitively), the configured deadline otherwise (a first boot, a machine
/// without that UUID, or one that is another instance now). Without a datasource, the run
/// goes on without metadata (the every-boot steps, as after the full budget).
fn discovery_budget(root: &Root, state: &State, settings: &Settings) -> Duration {
    let configured = settings.agent.deadline();
    match known_instance(root, state) {
        Some(id) if configured > KNOWN_INSTANCE_BUDGET => {
            tracing::info!(
                instance = id,
                "this machine's instance as last boot: one round to find the datasource"
            );
            KNOWN_INSTANCE_BUDGET
        }
        _ => configured,
    }
}

/// The last run's instance id when it is this machine's DMI system UUID (compared
/// case-insensitively): a reboot of the same instance, whose cached data cloud-init trusts.
pub(crate) fn known_instance(root: &Root, state: &State) -> Option<String> {
    state.stored_instance_id().filter(|id| {
        source::openstack::dmi_product_uuid(root).is_some_and(|dmi| id.eq_ignore_ascii_case(&dmi))
    })
}

/// One pass or one stage of it; returns the report (also written to disk): finished, or
/// `running` with `next_stage` after the init stage. Every write of the stage is staged and
/// committed at its end (`fsutil/staging.rs`): a constant number of syncs however many files
/// it writes; scripts see what was written before them.
pub fn run_stage(root: &Root, settings: &Settings, stage: RunStage) -> Report {
    if stage == RunStage::Final {
        return final_stage::run(root, settings);
    }
    let whole = stage == RunStage::All;
    let root = &root.staged();
    let state = State::new(root);
    let mut report = Report::start();
    report.final_ran = stage == RunStage::Init
        && crate::state::status::read(root).is_ok_and(|last| {
            last.is_some_and(|last| last.final_ran_before(report.boot_id.as_deref()))
        });
    if let Err(err) = state.write_running(&report) {
        tracing::warn!("cannot write the running status: {}", chain(&err));
    }
    let mut left_out = Vec::new();
    let urls = source::metadata_service::service_urls(root, &settings.urls, &mut left_out);
    report.warnings.extend(left_out.iter().cloned());
    tracing::info!(root = %root.path().display(), urls = %urls.join(", "), "metaboot starting");
    report.step("config", || {
        if settings.errors.is_empty() {
            Done::ok_with(format!(
                "metadata URLs {} (from {})",
                urls.join(", "),
                settings.url_origin
            ))
        } else {
            Done::error(settings.errors.join("; "))
        }
    });
    let client = HttpClient::new(
        settings.agent.request_timeout(),
        Retry::for_budget(discovery_budget(root, &state, settings)),
    );
    let probe = Probe {
        root,
        urls: &urls,
        left_out: &left_out,
        client: &client,
    };
    let order = settings.agent.datasources();
    let (mut source, unusable) = match source::choose(&order, &probe, &mut report.warnings) {
        Ok(source) => (Some(source), Vec::new()),
        Err(unusable) => (None, unusable),
    };
    report.source = source.as_ref().map(|s| s.name().to_owned());
    let instance = match source.as_deref_mut() {
        Some(source) => {
            let known = known_instance(root, &state);
            let known = known.as_deref();
            fetch::fetch(root, &state, settings, source, &client, known, &mut report)
        }
        None => {
            report.step("meta-data", || {
                let why: String = unusable.iter().map(|why| format!("; {why}")).collect();
                Done::error(format!(
                    "no datasource found (tried: {}; see `datasources` in metaboot.yaml){why}",
                    order.join(", ")
                ))
            });
            None
        }
    };
    // A mounted drive is released before anything runs.
    drop(source);
    if let Some(instance) = instance {
        accounts::hash_ahead(&instance);
        steps::apply_init(&instance, &mut report);
        if whole {
            steps::apply_final(&instance, &mut report, |_| true);
        }
    } else {
        // What needs no metadata still runs: the every-boot steps, with the image's own
        // configuration (metaboot.yaml) and the last known instance id, if any; on a reboot
        // of the machine's own instance, with the configuration it merged (its user data's
        // `bootcmd` included), as cloud-init runs from its cached datasource.
        let mut instance = match known_instance(root, &state) {
            Some(id) => Instance::resumed(root, &state, settings, id),
            None => Instance::without_metadata(root, &state, settings),
        };
        instance.source.clone_from(&report.source);
        steps::apply_init_without_metadata(&instance, &mut report);
        if whole {
            steps::apply_final(&instance, &mut report, steps::every_boot);
        }
        let finals: Vec<&str> = steps::final_step_names().collect();
        let missing = steps::step_names().filter(|name| whole || !finals.contains(name));
        skip_without_metadata(&mut report, missing);
    }
    if whole {
        finish(&state, &mut report);
    } else {
        pause(&state, &mut report);
    }
    report
}
