//! `metaboot run`: one provisioning pass. Fetch (config drive first, else the metadata
//! service), decode, then apply step by step; a failed step never stops the independent ones,
//! and every outcome lands in `status.json` and the instance's `result.json`.

mod accounts;
mod instance;
mod steps;

use std::fs::File;
use std::process::ExitCode;
use std::time::Instant;

use metaboot_proto::MetaData;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::cli::RunArgs;
use crate::config::{self, Settings};
use crate::log::chain;
use crate::retry::Retry;
use crate::root::Root;
use crate::source::config_drive::{self, ConfigDrive};
use crate::source::http::HttpClient;
use crate::source::metadata_service::MetadataService;
use crate::source::{Source, SourceError};
use crate::state::redact;
use crate::state::result::{Done, Report, RunStatus, count, unix_now};
use crate::state::status::{EXIT_DONE, EXIT_ERROR};
use crate::state::{State, check_instance_id};
use crate::userdata::cloud_config::CloudConfig;
use crate::userdata::{self, Decoded, yaml};
use instance::Instance;

/// Runs `metaboot run`.
pub fn main(args: &RunArgs, verbose: bool) -> ExitCode {
    let root = match Root::open(&args.root) {
        Ok(root) => root,
        Err(err) => {
            eprintln!(
                "metaboot run: root {} is not a directory: {err}",
                args.root.display()
            );
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let log_warning = crate::log::init(&root, verbose);
    let state = State::new(&root);
    let _lock = match lock(&state) {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let known: Vec<&str> = steps::step_names().collect();
    let settings = config::load(&root, args.config.as_deref(), args.url.as_deref(), &known);
    let mut report = run(&root, &settings);
    report.warnings.extend(log_warning);
    let code = if report.status == RunStatus::Done {
        EXIT_DONE
    } else {
        EXIT_ERROR
    };
    ExitCode::from(code)
}

/// Holds `var/lib/metaboot/.lock` so two runs never interleave.
fn lock(state: &State) -> Result<Flock<File>, String> {
    let path = state.status_path().with_file_name(".lock");
    let shown = state.root().host_path(&path);
    let flags = OFlag::O_RDWR | OFlag::O_CREAT;
    let file = state
        .root()
        .open_file(&path, flags, 0o600, false, true)
        .map_err(|e| format!("cannot open {}: {e}", shown.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| format!("another metaboot run holds {} ({errno})", shown.display()))
}

/// One pass; returns the finished report (also written to disk).
pub fn run(root: &Root, settings: &Settings) -> Report {
    let state = State::new(root);
    let mut report = Report::start();
    if let Err(err) = state.write_report(&report) {
        tracing::warn!("cannot write the running status: {}", chain(&err));
    }
    tracing::info!(root = %root.path().display(), url = %settings.url, "metaboot starting");
    report.step("config", || {
        if settings.errors.is_empty() {
            Done::ok_with(format!(
                "metadata URL {} (from {})",
                settings.url, settings.url_origin
            ))
        } else {
            Done::error(settings.errors.join("; "))
        }
    });
    let deadline = Instant::now() + settings.agent.deadline();
    let client = HttpClient::new(settings.agent.request_timeout(), Retry::until(deadline));
    let mut source = choose_source(root, settings, &client, &mut report);
    report.source = Some(source.name().to_owned());
    if let Some(instance) = fetch(
        root,
        &state,
        settings,
        source.as_mut(),
        &client,
        &mut report,
    ) {
        drop(source);
        steps::apply_all(&instance, &mut report);
    } else {
        drop(source);
        // What needs no metadata still runs: the every-boot steps, with the image's own
        // configuration (metaboot.yaml) and the last known instance id, if any.
        let instance = Instance::without_metadata(root, &state, settings);
        steps::apply_every_boot(&instance, &mut report);
        let missing: Vec<&str> = steps::step_names()
            .filter(|name| report.outcome(name).is_none())
            .collect();
        for name in missing {
            report.skip(name, "no instance metadata (meta-data failed)");
        }
    }
    finish(&state, &mut report);
    report
}

fn choose_source(
    root: &Root,
    settings: &Settings,
    client: &HttpClient,
    report: &mut Report,
) -> Box<dyn Source> {
    if settings.agent.config_drive
        && let Some((device, fs)) = config_drive::find(root)
    {
        match ConfigDrive::mount(root, &device, fs) {
            Ok(drive) => return Box::new(drive),
            Err(err) => report.warnings.push(format!(
                "config drive: {}; using the metadata service",
                chain(&err)
            )),
        }
    }
    Box::new(MetadataService::new(client.clone(), &settings.url))
}

fn optional(
    result: Result<Option<Vec<u8>>, SourceError>,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    result.map_err(|err| format!("{what}: {}", chain(&err)))
}

fn describe(decoded: &Decoded) -> String {
    format!(
        "{}, {}",
        count(decoded.configs.len(), "cloud-config part"),
        count(decoded.script_count(), "script")
    )
}

fn decoded_done(decoded: &Decoded, what: &str) -> Done {
    if decoded.errors.is_empty() {
        Done::ok_with(describe(decoded))
    } else {
        Done::error(format!(
            "{}; {what} still used: {}",
            decoded.errors.join("; "),
            describe(decoded)
        ))
    }
}

/// The fetch phase: meta-data (required), user-data, vendor-data, network-data, cloud-config.
fn fetch<'a>(
    root: &'a Root,
    state: &'a State,
    settings: &'a Settings,
    source: &mut dyn Source,
    client: &HttpClient,
    report: &mut Report,
) -> Option<Instance<'a>> {
    let mut meta: Option<(MetaData, bool)> = None;
    report.step("meta-data", || {
        let raw = match source.meta_data() {
            Ok(raw) => raw,
            Err(err) => return Done::error(chain(&err)),
        };
        let parsed: MetaData = match serde_json::from_slice(&raw) {
            Ok(parsed) => parsed,
            Err(err) => return Done::error(format!("meta_data.json is not valid: {err}")),
        };
        let new = match state.switch_instance(&parsed.uuid) {
            Ok(new) => new,
            Err(err) => return Done::error(chain(&err)),
        };
        if let Err(err) = state.cache(&parsed.uuid, "meta_data.json", &redact::meta_data(&raw)) {
            tracing::warn!("{}", chain(&err));
        }
        let message = format!(
            "instance {} ({})",
            parsed.uuid,
            if new { "new" } else { "same as last boot" }
        );
        meta = Some((parsed, new));
        Done::ok_with(message)
    });
    let (meta, new_instance) = meta?;
    let id = meta.uuid.clone();
    report.instance_id = Some(id.clone());
    report.new_instance = Some(new_instance);
    let enabled = |name: &str| settings.agent.step_enabled(name);
    let disabled = "disabled by `steps` in metaboot.yaml";

    let mut user = Decoded::default();
    if enabled("user-data") {
        report.step("user-data", || {
            let raw = match optional(source.user_data(), "user_data") {
                Ok(Some(raw)) => raw,
                Ok(None) => return Done::ok_with("no user data"),
                Err(err) => return Done::error(err),
            };
            if let Err(err) = state.cache(&id, "user_data", &raw) {
                tracing::warn!("{}", chain(&err));
            }
            user = userdata::decode(&raw, client);
            decoded_done(&user, "the rest is")
        });
    } else {
        report.skip("user-data", disabled);
    }

    let mut vendor = Decoded::default();
    if enabled("vendor-data") {
        report.step("vendor-data", || {
            let mut errors = Vec::new();
            let docs = [
                (
                    "vendor_data.json",
                    optional(source.vendor_data(), "vendor_data.json"),
                ),
                (
                    "vendor_data2.json",
                    optional(source.vendor_data2(), "vendor_data2.json"),
                ),
            ];
            for (name, doc) in docs {
                match doc {
                    Ok(Some(raw)) => {
                        if let Err(err) = state.cache(&id, name, &raw) {
                            tracing::warn!("{}", chain(&err));
                        }
                        vendor.extend(userdata::decode_vendor(&raw, name, client));
                    }
                    Ok(None) => {}
                    Err(err) => errors.push(err),
                }
            }
            vendor.errors.splice(0..0, errors);
            decoded_done(&vendor, "the rest is")
        });
    } else {
        report.skip("vendor-data", disabled);
    }

    if enabled("network-data") {
        report.step("network-data", || {
            match optional(source.network_data(), "network_data.json") {
                Ok(Some(raw)) => {
                    if let Err(err) = state.cache(&id, "network_data.json", &raw) {
                        tracing::warn!("{}", chain(&err));
                    }
                    match serde_json::from_slice::<metaboot_proto::NetworkData>(&raw) {
                        Ok(data) => Done::ok_with(format!(
                            "{}, cached (not applied)",
                            count(data.links.len(), "link")
                        )),
                        Err(err) => Done::error(format!("network_data.json is not valid: {err}")),
                    }
                }
                Ok(None) => Done::ok_with("no network data"),
                Err(err) => Done::error(err),
            }
        });
    } else {
        report.skip("network-data", disabled);
    }
    report
        .warnings
        .extend(user.warnings.iter().chain(&vendor.warnings).cloned());

    let mut merged = settings.base.clone();
    for doc in vendor.configs.iter().chain(&user.configs) {
        yaml::merge(&mut merged, doc.clone());
    }
    let (config, key_errors) = CloudConfig::from_map(&merged);
    report.step("cloud-config", || {
        let json = serde_json::to_vec_pretty(&redact::cloud_config(&merged)).unwrap_or_default();
        if let Err(err) = state.cache(&id, "cloud-config.json", &json) {
            tracing::warn!("{}", chain(&err));
        }
        if key_errors.is_empty() {
            Done::ok_with(format!("{} merged", count(merged.len(), "key")))
        } else {
            let errors: Vec<String> = key_errors.iter().map(ToString::to_string).collect();
            Done::error(format!("{}; the other keys still apply", errors.join("; ")))
        }
    });
    Some(Instance {
        root,
        state,
        settings,
        id,
        new_instance,
        meta,
        config,
        user,
        vendor,
    })
}

fn finish(state: &State, report: &mut Report) {
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
    if let Err(err) = state.write_report(report) {
        tracing::error!("cannot write the status: {}", chain(&err));
    }
    let status = match report.status {
        RunStatus::Done => "done",
        RunStatus::Error => "error",
        RunStatus::Running => "running",
    };
    let line = format!(
        "metaboot finished: status={status} instance={} errors={} duration_ms={}",
        report.instance_id.as_deref().unwrap_or("none"),
        report.errors.len(),
        report.duration_ms.unwrap_or(0)
    );
    if report.status == RunStatus::Done {
        tracing::info!("{line}");
    } else {
        for error in &report.errors {
            tracing::error!("{error}");
        }
        tracing::error!("{line}");
    }
}
