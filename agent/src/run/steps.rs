//! The apply steps of a run, in cloud-init's module order, each with its frequency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::accounts;
use super::instance::Instance;
use super::{disks, packages, system};
use crate::apply::hostname::{self, HostnameError};
use crate::apply::scripts::ScriptEnv;
use crate::apply::ssh_host_key::{self, HostKey};
use crate::apply::{
    ca_certs, final_message, hosts, instance_host_keys, keys_to_console, network, phone_home,
    power_state, random_seed, scripts, ssh_genkeytypes, write_files,
};
use crate::fsutil::WriteOptions;
use crate::log::chain;
use crate::retry::Retry;
use crate::source::http::HttpClient;
use crate::source::url;
use crate::state::result::{Done, Outcome, Report, ScriptResult, count};
use crate::state::semaphore::Frequency::{self, Always, Once, PerInstance};
use crate::userdata::Script;
use crate::userdata::cloud_config::{ManageEtcHosts, is_false};

/// The body of an apply step: it reads the instance, may add warnings, and says what it did.
pub(super) type StepFn = fn(&Instance<'_>, &mut Vec<String>) -> Done;

/// What a user-script step writes before the logins: the scripts the instance's data brought,
/// into the directory the step runs.
pub(super) type WriteFn = fn(&Instance<'_>) -> Result<(), String>;

/// The directory a user-script step runs.
pub(super) type DirFn = fn(&Instance<'_>) -> PathBuf;

/// When a step runs.
#[derive(Clone, Copy)]
pub(super) enum Stage {
    /// The fetch phase (`run/fetch.rs`): every run, before the apply steps.
    Fetch,
    /// An apply step: at most as often as its frequency, with this body.
    Apply(Frequency, StepFn),
    /// A step of the final stage (cloud-init's cloud-final: the packages, the deferred
    /// `write_files`, the user scripts, then the host keys on the console; here also the CAs
    /// the scripts may need): what it needs is written
    /// with the apply steps (a user-script step's scripts), and the step runs at the end
    /// (`metaboot run --stage final`, or at the end of a whole run), at most as often as its
    /// frequency. A user-script step (with a `WriteFn` and its directory) is marked as run
    /// before it runs, as cloud-init's semaphores are: a script that reboots the machine
    /// (`runcmd: [reboot]`) kills the run before its end, and must not run again at every boot.
    Final(Frequency, Option<(WriteFn, DirFn)>, StepFn),
}

/// A fetch step.
const fn fetch(name: &'static str) -> (&'static str, Stage) {
    (name, Stage::Fetch)
}

/// An apply step.
const fn apply(name: &'static str, frequency: Frequency, body: StepFn) -> (&'static str, Stage) {
    (name, Stage::Apply(frequency, body))
}

/// A user-script step: its scripts are written before the logins into `dir`, run in the final
/// stage.
const fn scripts(
    name: &'static str,
    frequency: Frequency,
    (write, dir): (WriteFn, DirFn),
    run: StepFn,
) -> (&'static str, Stage) {
    (name, Stage::Final(frequency, Some((write, dir)), run))
}

/// A final-stage step with nothing to write before the logins.
const fn last(name: &'static str, frequency: Frequency, run: StepFn) -> (&'static str, Stage) {
    (name, Stage::Final(frequency, None, run))
}

/// Every step of a run, in order (cloud-init's init, config and final stages): the one list of
/// step names. `steps:` in metaboot.yaml selects among them; `config` and `meta-data` always run.
pub(super) const STEPS: &[(&str, Stage)] = &[
    fetch("config"),
    fetch("meta-data"),
    fetch("user-data"),
    fetch("vendor-data"),
    fetch("network-data"),
    fetch("cloud-config"),
    apply("network", PerInstance, network),
    apply("random-seed", PerInstance, random_seed),
    // cloud-init runs the boothooks as it consumes user data, before its init modules (bootcmd
    // the first of those that metaboot has).
    apply("boothooks", Always, boothooks),
    apply("bootcmd", Always, bootcmd),
    apply("write-files", PerInstance, |i, w| write_files(i, w, false)),
    apply("growpart", Always, disks::growpart),
    apply("resizefs", Always, disks::resizefs),
    apply("disk-setup", PerInstance, disks::disk_setup),
    apply("mounts", PerInstance, disks::mounts),
    apply("hostname", Always, hostname),
    apply("etc-hosts", Always, etc_hosts),
    apply("users-groups", PerInstance, accounts::users_groups),
    apply("instance-host-keys", PerInstance, instance_host_keys),
    apply("ssh-host-keys", Always, ssh_host_keys),
    apply("ssh-keys", PerInstance, accounts::ssh_keys),
    apply("set-passwords", PerInstance, accounts::set_passwords),
    apply(
        "password-postback",
        PerInstance,
        accounts::password_postback,
    ),
    apply("ssh-pwauth", PerInstance, accounts::ssh_pwauth),
    apply("timezone", PerInstance, system::timezone),
    apply("keyboard", PerInstance, system::keyboard),
    // cloud-init's config stage, before the user scripts: the metadata read, no guest process
    // reads it after this.
    apply("disable-ec2-metadata", Always, system::disable_ec2_metadata),
    apply("runcmd", PerInstance, runcmd),
    // The trust store before the scripts that may need it; its rebuild (tens of seconds under
    // emulation) never holds the logins back, which need no CA.
    last("ca-certs", PerInstance, ca_certs),
    // cloud-init's config stage, which runs while the logins start: here after them, as
    // building a locale takes tens of seconds under emulation.
    last("locale", PerInstance, system::set_locale),
    // cloud-init's config stage: debconf's answers before apt may upgrade grub-pc (perl under
    // emulation: after the logins).
    last("grub-dpkg", PerInstance, system::grub_dpkg),
    // cloud-init's config stage: apt's sources before the packages that come from them.
    last("apt-configure", PerInstance, packages::configure_apt),
    // cloud-init's config stage: the time client, installed from apt's sources when missing.
    last("ntp", PerInstance, system::configure_ntp),
    // cloud-init's first final module: installed before the scripts that may use them.
    last("packages", PerInstance, packages::install_packages),
    // cloud-init's `write_files_deferred`, its next final module here: after the packages,
    // so that an entry may be owned by a user a package creates (`postgres`).
    last("write-files-deferred", PerInstance, |i, w| {
        write_files(i, w, true)
    }),
    // cloud-init's init stage: here after the packages, which may have brought rsyslog.
    last("rsyslog", PerInstance, system::configure_rsyslog),
    scripts(
        "scripts-vendor",
        PerInstance,
        (write_vendor_scripts, vendor_dir),
        run_vendor_scripts,
    ),
    scripts(
        "scripts-per-once",
        Once,
        (|i| write_per_scripts(i, Once), |i| per_dir(i, Once).0),
        |i, _| run_per_scripts(i, Once),
    ),
    scripts(
        "scripts-per-boot",
        Always,
        (|i| write_per_scripts(i, Always), |i| per_dir(i, Always).0),
        |i, _| run_per_scripts(i, Always),
    ),
    scripts(
        "scripts-per-instance",
        PerInstance,
        (
            |i| write_per_scripts(i, PerInstance),
            |i| per_dir(i, PerInstance).0,
        ),
        |i, _| run_per_scripts(i, PerInstance),
    ),
    scripts(
        "scripts-user",
        PerInstance,
        (write_user_scripts, user_dir),
        run_user_scripts,
    ),
    last(
        "ssh-authkey-fingerprints",
        PerInstance,
        accounts::authkey_fingerprints,
    ),
    last("keys-to-console", PerInstance, keys_to_console),
    last("phone-home", PerInstance, phone_home),
    last("final-message", Always, final_message),
    // Last: the machine may go down once the run's report is committed.
    last("power-state", PerInstance, power_state),
];

/// The name of every step, in order.
pub(super) fn step_names() -> impl Iterator<Item = &'static str> {
    STEPS.iter().map(|(name, _)| *name)
}

/// The name of every step of the final stage (the user scripts, the keys on the console), in
/// order.
pub(super) fn final_step_names() -> impl Iterator<Item = &'static str> {
    STEPS
        .iter()
        .filter(|(_, stage)| matches!(stage, Stage::Final(..)))
        .map(|(name, _)| *name)
}

/// The init stage: every apply step before `ca-certs`, honouring `steps:` and the semaphores,
/// then the user scripts written where the final stage runs them.
pub(super) fn apply_init(instance: &Instance<'_>, report: &mut Report) {
    apply_where(instance, report, |_| true);
    write_scripts(instance, report);
}

/// The init stage of a run without metadata: the every-boot steps only. It has no user data,
/// so no scripts to write, and marks none written (the next run with metadata writes them).
pub(super) fn apply_init_without_metadata(instance: &Instance<'_>, report: &mut Report) {
    apply_where(instance, report, every_boot);
}

/// The steps that run on every boot and need no instance metadata (bootcmd, hostname,
/// /etc/hosts, per-boot scripts), as cloud-init does with its None datasource.
pub(super) fn every_boot(frequency: Frequency) -> bool {
    frequency == Always
}

/// The final-stage steps `wanted` takes, each one not already reported (a
/// failed write in the init stage), honouring `steps:` and the semaphores.
pub(super) fn apply_final(
    instance: &Instance<'_>,
    report: &mut Report,
    wanted: impl Fn(Frequency) -> bool,
) {
    let run = STEPS.iter().filter_map(|&(name, stage)| match stage {
        Stage::Final(frequency, write, run) if wanted(frequency) => {
            let marked = match write {
                Some((_, dir)) => Marked::Before(dir),
                None => Marked::After,
            };
            Some((name, frequency, run, marked))
        }
        _ => None,
    });
    let run: Vec<_> = run
        .filter(|(name, ..)| report.outcome(name).is_none())
        .collect();
    run_steps(instance, report, run);
}

/// The semaphore (per instance) of an every-boot user-script step's write, as its name ends
/// (`scripts-per-boot-written`): its scripts are written by a new instance, and by any boot of
/// an instance that has not written them yet (a first boot cut short by a reboot in a
/// `bootcmd`, or a reset, after its instance id was kept but before the write).
const WRITTEN_SUFFIX: &str = "-written";

/// The per-instance semaphore of an every-boot step's write (see [`WRITTEN_SUFFIX`]).
fn written_mark(name: &str) -> String {
    format!("{name}{WRITTEN_SUFFIX}")
}

/// Writes the scripts of each user-script step that will run (enabled, not yet run for this
/// instance; an every-boot one when it was not written for this instance yet, or the
/// instance is new); a failed write is that step's error, and the final stage leaves it at
/// that.
fn write_scripts(instance: &Instance<'_>, report: &mut Report) {
    let semaphores = instance.state.semaphores(&instance.id);
    for &(name, stage) in STEPS {
        let Stage::Final(frequency, Some((write, _)), _) = stage else {
            continue;
        };
        if !instance.settings.agent.step_enabled(name) {
            continue;
        }
        let every_boot = frequency == Always;
        let done = if every_boot {
            !instance.new_instance && semaphores.has(&written_mark(name), PerInstance)
        } else {
            semaphores.has(name, frequency)
        };
        if done {
            continue;
        }
        match write(instance) {
            // Marked after the write (staged after the scripts): a run killed before both
            // are in place writes them again.
            Ok(()) if every_boot => {
                if let Err(err) = semaphores.mark(&written_mark(name), PerInstance) {
                    report.warnings.push(format!("{name}: {}", chain(&err)));
                }
            }
            Ok(()) => {}
            Err(err) => {
                report.step(name, || {
                    Done::error(format!("cannot write the scripts: {err}"))
                });
            }
        }
    }
}

fn apply_where(instance: &Instance<'_>, report: &mut Report, wanted: impl Fn(Frequency) -> bool) {
    let apply = STEPS.iter().filter_map(|&(name, stage)| match stage {
        Stage::Apply(frequency, step) if wanted(frequency) => {
            Some((name, frequency, step, Marked::After))
        }
        _ => None,
    });
    run_steps(instance, report, apply);
}

/// When a step's semaphore is written.
#[derive(Clone, Copy)]
enum Marked {
    /// After the step, staged after its files: a run killed before its commit runs the step
    /// again at the next boot, which finds its files old or new.
    After,
    /// Before the step, whatever it then does (cloud-init's rule for every module): a user
    /// script runs at most once per instance even when it reboots the machine (`runcmd:
    /// [reboot]`, `apt-get dist-upgrade && reboot`). The script runner publishes every staged
    /// write, this one included, before the first script starts. Only when the step's
    /// directory has a script to run: a step with none is not marked, so that a later boot
    /// that brings some runs them (as a step that skips is not marked after it).
    Before(DirFn),
}

/// Runs `steps`, each unless `steps:` disables it or its semaphore says it already ran.
fn run_steps(
    instance: &Instance<'_>,
    report: &mut Report,
    steps: impl IntoIterator<Item = (&'static str, Frequency, StepFn, Marked)>,
) {
    let semaphores = instance.state.semaphores(&instance.id);
    for (name, frequency, step, marked) in steps {
        if !instance.settings.agent.step_enabled(name) {
            report.skip(name, "disabled by `steps` in metaboot.yaml");
            continue;
        }
        if semaphores.has(name, frequency) {
            let reason = match frequency {
                Frequency::Once => "already ran once on this system",
                _ => "already ran for this instance",
            };
            report.skip(name, reason);
            continue;
        }
        let mut warnings = Vec::new();
        if let Marked::Before(dir) = marked
            && scripts::has_scripts(instance.root, &dir(instance))
            && let Err(err) = semaphores.mark(name, frequency)
        {
            warnings.push(chain(&err));
        }
        let outcome = report.step(name, || step(instance, &mut warnings));
        report
            .warnings
            .extend(warnings.into_iter().map(|w| format!("{name}: {w}")));
        if matches!(marked, Marked::After)
            && outcome != Outcome::Skipped
            && let Err(err) = semaphores.mark(name, frequency)
        {
            report.warnings.push(format!("{name}: {}", chain(&err)));
        }
    }
}

fn script_env(i: &Instance<'_>) -> ScriptEnv {
    ScriptEnv {
        instance_id: i.id.clone(),
        root: i.root.path().to_owned(),
        relay: Some(PathBuf::from(scripts::RELAY_PROGRAM)),
        prefix: Vec::new(),
    }
}

fn scripts_done(results: Vec<ScriptResult>) -> Done {
    let (ok, summary) = scripts::summarize(&results);
    let mut done = if ok {
        Done::ok_with(summary)
    } else {
        Done::error(summary)
    };
    done.scripts = results;
    done
}

/// The `network` step (cloud-init's network stage, once per instance): the source's network
/// document rendered for the image's network manager, or applied directly without one.
fn network(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    if i.config.network.as_ref().is_some_and(|n| n.disabled()) {
        return Done::skipped("network: {config: disabled}");
    }
    let Some(doc) = &i.network else {
        if i.network_absent {
            return without_network(i, "no network data", warnings);
        }
        return Done::skipped("no network data");
    };
    if doc.disabled() {
        return Done::skipped(super::fetch::NETWORK_CONFIG_DISABLED);
    }
    let source = match doc {
        network::NetworkDoc::OpenStack(_) => "network_data.json",
        network::NetworkDoc::NetworkConfig(_) => "network-config",
    };
    let mut plan = match network::plan(doc, warnings) {
        Ok(plan) => plan,
        Err(err) => return Done::error(chain(&err)),
    };
    if plan.interfaces.is_empty() && plan.nameservers.is_empty() {
        return without_network(i, &format!("{source} configures nothing"), warnings);
    }
    // A MAC this system lacks is a warning here; the renderers refuse what they cannot do
    // without a name (a static interface without networkd).
    network::name_interfaces(&mut plan, &network::system_links(i.root), warnings);
    let renderer = network::detect(i.root);
    let applied = network::apply(i.root, &plan, renderer, source);
    warnings.extend(applied.warnings);
    let message = format!(
        "{} with {}: {}",
        source,
        renderer.name(),
        applied.done.join(", ")
    );
    if applied.errors.is_empty() {
        Done::ok_with(message)
    } else {
        Done::error(format!("{}; {message}", applied.errors.join("; ")))
    }
}

/// The `network` step of an instance whose source has no network configuration (`why`; not
/// one whose document could not be read, or was not asked for): skipped, once
/// metaboot's files of an earlier instance are removed (`network::apply_none`); still skipped
/// then, so that the step runs again at the next boot (a document a failed fetch missed).
fn without_network(i: &Instance<'_>, why: &str, warnings: &mut Vec<String>) -> Done {
    let Some(applied) = network::apply_none(i.root) else {
        return Done::skipped(why);
    };
    warnings.extend(applied.warnings);
    let message = format!("{why}: {}", applied.done.join(", "));
    if applied.errors.is_empty() {
        Done::skipped(message)
    } else {
        Done::error(format!("{}; {message}", applied.errors.join("; ")))
    }
}

fn random_seed(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let seed =
        match random_seed::seed_bytes(i.meta.random_seed.as_deref(), i.config.random_seed.as_ref())
        {
            Ok(seed) => seed,
            Err(err) => return Done::error(chain(&err)),
        };
    if seed.is_empty() {
        return Done::skipped("no random_seed in meta_data.json or cloud-config");
    }
    if !i.root.is_host() {
        return Done::skipped(format!("root is not /: {} untouched", random_seed::URANDOM));
    }
    Done::from_result(
        random_seed::feed_urandom(i.root, &seed)
            .map(|()| Done::ok_with(format!("{} bytes", seed.len()))),
    )
}

/// `ca_certs` (or its older name `ca-certs`): the default CAs deselected when asked, the
/// trusted certificates written, the trust store rebuilt (host root only).
fn ca_certs(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let Some(config) = i
        .config
        .ca_certs
        .as_ref()
        .or(i.config.ca_certs_old.as_ref())
    else {
        return Done::skipped("no ca_certs");
    };
    if i.config.ca_certs.is_some() && i.config.ca_certs_old.is_some() {
        warnings.push("both ca_certs and ca-certs are set: ca-certs is ignored".into());
    }
    let applied = ca_certs::apply(i.root, config);
    let store = applied.store;
    let mut said = Vec::new();
    if applied.deselected > 0 {
        said.push(format!("deselected {} default CAs", applied.deselected));
    }
    if !applied.written.is_empty() {
        said.push(format!(
            "wrote {} to {}",
            applied.written.join(", "),
            store.local_dir
        ));
    }
    if !applied.removed.is_empty() {
        said.push(format!(
            "removed {} (no longer trusted) from {}",
            applied.removed.join(", "),
            store.local_dir
        ));
    }
    if applied.updated {
        said.push(format!("ran {}", store.update));
    } else if !i.root.is_host() {
        said.push(format!("root is not /: {} not run", store.update));
    }
    if applied.errors.is_empty() {
        Done::ok_with(said.join("; "))
    } else {
        let mut all: Vec<String> = applied.errors.iter().map(|e| chain(e)).collect();
        all.extend(said);
        Done::error(all.join("; "))
    }
}

/// On a new instance: the image's SSH host keys deleted (`ssh_deletekeys`, default true) and
/// the keys `ssh_keys` gives written.
fn instance_host_keys(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let delete = i.config.ssh_deletekeys.is_none_or(|flag| flag.0);
    let none = serde_json::Map::new();
    let given = i.config.ssh_keys.as_ref().unwrap_or(&none);
    if !delete && given.is_empty() {
        return Done::skipped("ssh_deletekeys is false and no ssh_keys");
    }
    // Done even when there was nothing to delete: the step must not run again for this
    // instance, where it would delete the keys made since.
    let mut said = Vec::new();
    if delete {
        match instance_host_keys::delete_image_keys(i.root, warnings) {
            Ok(deleted) if deleted.is_empty() => said.push(format!(
                "no host keys in {} to delete",
                instance_host_keys::SSH_DIR
            )),
            Ok(deleted) => said.push(format!("deleted the image's {}", deleted.join(", "))),
            Err(err) => return Done::error(chain(&err)),
        }
    }
    match instance_host_keys::write_given(i.root, given, || host_key_comment(i), warnings) {
        Ok(written) if written.is_empty() => {}
        Ok(written) => said.push(format!("wrote {} from ssh_keys", written.join(", "))),
        Err(err) => return Done::error(chain(&err)),
    }
    Done::ok_with(said.join("; "))
}

/// The comment ending a host key's public line, as ssh-keygen writes it: `root@<hostname>`.
fn host_key_comment(i: &Instance<'_>) -> String {
    let host = names(i).map_or_else(|_| "localhost".to_owned(), |(_, name)| name);
    format!("root@{host}")
}

/// The host keys of `ssh_genkeytypes` (by default ed25519 only) when sshd is installed and they
/// are missing, named `root@<hostname>`: ed25519 made in-process, the others by ssh-keygen.
fn ssh_host_keys(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    if !i.root.exists(ssh_host_key::SSHD_CONFIG) {
        return Done::skipped(format!("no {}", ssh_host_key::SSHD_CONFIG));
    }
    let types = ssh_genkeytypes::wanted(&i.config, warnings);
    let quiet = ssh_genkeytypes::quiet(&i.config);
    let mut made = Vec::new();
    let mut errors = Vec::new();
    for kind in &types {
        // The host name is resolved only when a key is made (on most boots nothing is).
        let result = if kind == "ed25519" {
            ssh_host_key::ensure(i.root, || host_key_comment(i))
                .map(|done| matches!(done, HostKey::Made | HostKey::PublicWritten))
                .map_err(|err| chain(&err))
        } else {
            ssh_genkeytypes::make(i.root, kind, || host_key_comment(i), quiet)
                .map_err(|err| chain(&err))
        };
        match result {
            Ok(true) => made.push(format!("{kind}: {}", ssh_genkeytypes::key_path(kind))),
            Ok(false) => {}
            Err(err) => errors.push(err),
        }
    }
    if !errors.is_empty() {
        errors.extend(made);
        Done::error(errors.join("; "))
    } else if made.is_empty() {
        match types.as_slice() {
            [] => Done::skipped("ssh_genkeytypes names no type"),
            [one] => Done::skipped(format!("the {one} host key is there")),
            _ => Done::skipped(format!("the {} host keys are there", types.join(", "))),
        }
    } else {
        Done::ok_with(made.join(", "))
    }
}

fn run_commands(
    i: &Instance<'_>,
    name: &str,
    dir: &Path,
    commands: &[Option<crate::userdata::cloud_config::Command>],
) -> Done {
    let path = dir.join(name);
    let script = scripts::commands_to_script(commands);
    if let Err(err) = scripts::write_script(i.root, &path, script.as_bytes()) {
        return Done::error(chain(&err));
    }
    scripts_done(vec![scripts::run_script(
        i.root,
        &path,
        name,
        &script_env(i),
    )])
}

fn bootcmd(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    match &i.config.bootcmd {
        Some(commands) => run_commands(
            i,
            "bootcmd",
            &i.state.instance_dir(&i.id).join("boot"),
            commands,
        ),
        None => Done::skipped("no bootcmd"),
    }
}

/// The `boothooks` step: this boot's hooks, each written then run in the order cloud-init
/// handles them (user data's parts in their order, then vendor data's), and only they: a hook
/// an earlier boot wrote (user data changed by a rebuild, an include that failed this time)
/// stays in the directory but does not run.
fn boothooks(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let hooks: Vec<Script> = i
        .user
        .boothooks
        .iter()
        .cloned()
        .chain(from_vendor(&i.vendor.boothooks))
        .collect();
    if hooks.is_empty() {
        return Done::skipped("no #cloud-boothook parts");
    }
    let dir = i.state.instance_dir(&i.id).join("boothooks");
    let env = script_env(i);
    let mut results = Vec::new();
    let mut unwritten = Vec::new();
    for hook in &hooks {
        let path = dir.join(&hook.name);
        match scripts::write_script(i.root, &path, &hook.body) {
            Ok(()) => results.push(scripts::run_script(i.root, &path, &hook.name, &env)),
            Err(err) => unwritten.push(chain(&err)),
        }
    }
    let mut done = scripts_done(results);
    if !unwritten.is_empty() {
        let ran = done.message.take().unwrap_or_default();
        done = Done {
            scripts: done.scripts,
            ..Done::error(format!("{}; {ran}", unwritten.join("; ")))
        };
    }
    done
}

fn write_files(i: &Instance<'_>, warnings: &mut Vec<String>, deferred: bool) -> Done {
    let entries: Vec<_> = i
        .config
        .write_files
        .iter()
        .flat_map(|files| &files.0)
        .filter(|item| match item {
            Ok(entry) => entry.defer.unwrap_or(false) == deferred,
            Err(bad) => bad.defer == deferred,
        })
        .collect();
    if entries.is_empty() {
        return Done::skipped(if deferred {
            "no deferred write_files"
        } else {
            "no write_files"
        });
    }
    let accounts = accounts::load(i);
    let (mut written, mut errors) = (Vec::new(), Vec::new());
    for item in entries {
        // One bad entry fails alone: the others are still written.
        let entry = match item {
            Ok(entry) => entry,
            Err(bad) => {
                errors.push(bad.to_string());
                continue;
            }
        };
        match write_files::write_entry(i.root, accounts.as_ref(), entry) {
            Ok((_, w)) => {
                written.push(entry.path.clone());
                warnings.extend(w);
            }
            Err(err) => errors.push(chain(&err)),
        }
    }
    if errors.is_empty() {
        Done::ok_with(format!("wrote {}", written.join(", ")))
    } else {
        Done::error(format!("{}; wrote {}", errors.join("; "), written.len()))
    }
}

/// The names to use: (hostname, fqdn) after resolution, and the one written.
fn names(i: &Instance<'_>) -> Result<(hostname::Names, String), HostnameError> {
    let current = hostname::current(i.root)?;
    let names = hostname::resolve(
        i.config.hostname.as_deref(),
        i.config.fqdn.as_deref(),
        Some(i.meta.hostname.as_str()),
        &current,
    );
    // The whole name for /etc/hosts; the kernel's and /etc/hostname's within their bound.
    let fqdn = hostname::sanitize_fqdn(&names.fqdn)?;
    let short = hostname::sanitize(&names.hostname)?;
    let chosen = if i
        .config
        .prefer_fqdn_over_hostname
        .is_some_and(|flag| flag.0)
    {
        hostname::sanitize(&fqdn)?
    } else {
        short.clone()
    };
    Ok((
        hostname::Names {
            hostname: short,
            fqdn,
        },
        chosen,
    ))
}

fn hostname(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    if i.config.preserve_hostname.is_some_and(|flag| flag.0) {
        return Done::skipped("preserve_hostname is set");
    }
    let result = (|| {
        let (_, name) = names(i)?;
        // cloud-init leaves a default `localhost` alone (no name from the data, `is_default`)
        // but sets one the user or the metadata asked for.
        let asked = [
            i.config.hostname.as_deref(),
            i.config.fqdn.as_deref(),
            Some(i.meta.hostname.as_str()),
        ]
        .into_iter()
        .any(|name| name.is_some_and(|name| !name.trim().is_empty()));
        if name == "localhost" && !asked {
            return Ok(Done::skipped("resolved name is localhost; not applied"));
        }
        let record = i.state.data_file("previous-hostname");
        let previous = i
            .root
            .read_optional_string(&record)
            .ok()
            .flatten()
            .map(|s| s.trim().to_owned());
        let current = hostname::current(i.root)?;
        if !i.new_instance
            && previous.as_ref().is_some_and(|p| *p != current)
            && !current.is_empty()
        {
            return Ok(Done::skipped(format!(
                "{current:?} was set by someone else since metaboot set {:?}; left alone",
                previous.unwrap_or_default()
            )));
        }
        let changed = hostname::write(
            i.root,
            &name,
            i.config.create_hostname_file.is_none_or(|flag| flag.0),
        )?;
        i.root.write_atomic(
            &record,
            format!("{name}\n").as_bytes(),
            &WriteOptions::keep_or(0o644),
        )?;
        Ok(Done::ok_with(if changed {
            format!("set to {name}")
        } else {
            format!("{name} (unchanged)")
        }))
    })();
    Done::from_result::<HostnameError>(result)
}

fn etc_hosts(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let mode = i.config.manage_etc_hosts.unwrap_or(ManageEtcHosts::Off);
    if mode == ManageEtcHosts::Off {
        return Done::skipped("manage_etc_hosts is not set");
    }
    let (names, _) = match names(i) {
        Ok(n) => n,
        Err(err) => return Done::error(chain(&err)),
    };
    let path = hosts::HOSTS_FILE;
    let old = match i.root.read_optional_text(path) {
        Ok(old) => old.unwrap_or_default(),
        Err(err) => {
            let shown = i.root.host_path(path);
            return Done::error(format!("cannot read {}: {err}", shown.display()));
        }
    };
    let new = match mode {
        ManageEtcHosts::Template => hosts::render_template(&names.hostname, &names.fqdn),
        _ => hosts::update_local_line(&old, &names.hostname, &names.fqdn),
    };
    if new == old {
        return Done::ok_with("unchanged");
    }
    Done::from_result(
        i.root
            .write_atomic(path, new.as_bytes(), &WriteOptions::keep_or(0o644))
            .map(|()| {
                Done::ok_with(format!(
                    "{} {} {}",
                    hosts::LOCAL_IP,
                    names.fqdn,
                    names.hostname
                ))
            }),
    )
}

fn runcmd(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let Some(commands) = &i.config.runcmd else {
        return Done::skipped("no runcmd");
    };
    let path = i.state.instance_dir(&i.id).join("scripts/runcmd");
    let shown = i.root.host_path(&path);
    Done::from_result(
        scripts::write_script(
            i.root,
            &path,
            scripts::commands_to_script(commands).as_bytes(),
        )
        .map(|()| Done::ok_with(format!("{} written; runs in scripts-user", shown.display()))),
    )
}

/// Writes `list` into `dir`: every script that can be, whatever became of the others; the
/// error names each one that could not.
fn write_all<'s>(
    i: &Instance<'_>,
    dir: &Path,
    list: impl IntoIterator<Item = &'s Script>,
) -> Result<(), String> {
    let failed: Vec<String> = list
        .into_iter()
        .filter_map(|script| {
            scripts::write_script(i.root, &dir.join(&script.name), &script.body)
                .err()
                .map(|err| chain(&err))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Runs every script in `dir`; skipped, saying `none`, when it has none.
fn run_scripts_dir(i: &Instance<'_>, dir: &Path, none: String) -> Done {
    run_scripts_dir_with(i, dir, none, &script_env(i))
}

fn run_scripts_dir_with(i: &Instance<'_>, dir: &Path, none: String, env: &ScriptEnv) -> Done {
    let results = scripts::run_dir(i.root, dir, env);
    if results.is_empty() {
        return Done::skipped(none);
    }
    scripts_done(results)
}

/// Where vendor data's scripts go (cloud-init's `scripts/vendor`).
fn vendor_dir(i: &Instance<'_>) -> std::path::PathBuf {
    i.state.instance_dir(&i.id).join("scripts/vendor")
}

fn write_vendor_scripts(i: &Instance<'_>) -> Result<(), String> {
    write_all(i, &vendor_dir(i), &i.vendor.scripts)
}

/// Vendor data's scripts, each under `vendor_data: {prefix}` (cloud-init's cc_scripts_vendor:
/// the one prefix for both vendor documents' scripts).
fn run_vendor_scripts(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let prefix = i
        .config
        .vendor_data
        .as_ref()
        .and_then(|vendor| vendor.prefix.as_ref())
        .map(|prefix| prefix.to_vec().into_iter().map(|word| word.0).collect())
        .unwrap_or_default();
    let env = ScriptEnv {
        prefix,
        ..script_env(i)
    };
    run_scripts_dir_with(i, &vendor_dir(i), "no vendor scripts".to_owned(), &env)
}

/// The directory of the `text/x-shellscript-per-*` scripts of `frequency` (cloud-init's
/// `scripts/per-boot`, `per-instance`, `per-once`), and its word.
fn per_dir(i: &Instance<'_>, frequency: Frequency) -> (std::path::PathBuf, &'static str) {
    let what = match frequency {
        Always => "boot",
        PerInstance => "instance",
        Once => "once",
    };
    (i.state.scripts_dir(what), what)
}

/// The instance's per-`frequency` scripts (user data's and vendor data's, as cloud-init's
/// handler takes both), into their directory. `write_scripts` says when: per-boot ones once
/// per instance (they stay for its later boots), per-instance and per-once ones whenever their
/// step has not run yet; either way a first boot cut short after its instance id was kept, but
/// before they were written, still gets them at the next boot.
fn write_per_scripts(i: &Instance<'_>, frequency: Frequency) -> Result<(), String> {
    let vendor: Vec<Script> = from_vendor(i.vendor.per(frequency)).collect();
    write_all(
        i,
        &per_dir(i, frequency).0,
        vendor.iter().chain(i.user.per(frequency)),
    )
}

/// Vendor data's scripts named apart from user data's (`vendor-<name>`): the two are decoded
/// separately, so both may have a `part-001`, and they share a directory.
fn from_vendor<'s>(scripts: impl IntoIterator<Item = &'s Script>) -> impl Iterator<Item = Script> {
    scripts.into_iter().map(|script| Script {
        name: format!("vendor-{}", script.name),
        body: script.body.clone(),
    })
}

fn run_per_scripts(i: &Instance<'_>, frequency: Frequency) -> Done {
    let (dir, what) = per_dir(i, frequency);
    run_scripts_dir(i, &dir, format!("no per-{what} scripts"))
}

/// Where user data's scripts and runcmd's script go (cloud-init's `scripts`).
fn user_dir(i: &Instance<'_>) -> std::path::PathBuf {
    i.state.instance_dir(&i.id).join("scripts")
}

fn write_user_scripts(i: &Instance<'_>) -> Result<(), String> {
    write_all(i, &user_dir(i), &i.user.scripts)
}

fn run_user_scripts(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    run_scripts_dir(i, &user_dir(i), "no user scripts and no runcmd".to_owned())
}

/// The `keys-to-console` step (cloud-init's `keys_to_console`, once per instance, last): the
/// host keys' public lines on the console, where the instance's console log shows them.
fn keys_to_console(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let emit = i
        .config
        .ssh
        .as_ref()
        .and_then(|ssh| ssh.get("emit_keys_to_console"));
    if emit.is_some_and(is_false) {
        return Done::skipped("ssh: emit_keys_to_console is false");
    }
    let keys_left_out = i
        .config
        .ssh_key_console_blacklist
        .clone()
        .unwrap_or_else(|| {
            keys_to_console::DEFAULT_LEFT_OUT
                .map(str::to_owned)
                .to_vec()
        });
    let fingerprints_left_out = i
        .config
        .ssh_fp_console_blacklist
        .clone()
        .unwrap_or_default();
    match keys_to_console::public_keys(i.root, warnings) {
        Ok(keys) => {
            let shown = keys_to_console::blocks(&keys, &fingerprints_left_out, &keys_left_out);
            if shown.is_empty() {
                return Done::skipped(format!(
                    "no host keys in {} to show",
                    instance_host_keys::SSH_DIR
                ));
            }
            eprint!("{shown}");
            Done::ok_with(count(keys.len(), "host key") + " on the console")
        }
        Err(err) => Done::error(chain(&err)),
    }
}

/// The `phone-home` step (cloud-init's `phone_home`, once per instance, after the keys are on
/// the console): the instance's id, the datasource's host names and the host keys POSTed as a
/// form to `url`. As with cloud-init, a POST that fails in every try is a warning, not a failed
/// run: the instance itself is provisioned.
fn phone_home(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let Some(config) = &i.config.phone_home else {
        return Done::skipped("no phone_home");
    };
    let request = match phone_home::parse(config, warnings) {
        Ok(Some(request)) => request,
        Ok(None) => return Done::skipped("phone_home has no url"),
        Err(err) => return Done::error(err),
    };
    let url = phone_home::render_url(&request.url, &i.id);
    let mut values: Vec<(&str, String)> = vec![("instance_id", i.id.clone())];
    // The datasource's names, as cloud-init's `cloud.get_hostname()` gives them (meta_data's
    // `hostname`), not the ones the cloud-config sets.
    match hostname::current(i.root) {
        Ok(current) => {
            let names = hostname::resolve(None, None, Some(i.meta.hostname.as_str()), &current);
            values.push(("hostname", names.hostname));
            values.push(("fqdn", names.fqdn));
        }
        Err(err) => warnings.push(format!("phone_home: no host name to post: {}", chain(&err))),
    }
    for (field, path) in phone_home::KEY_FILES {
        if !request.fields.iter().any(|wanted| wanted == field) {
            continue;
        }
        match i.root.read_optional(path) {
            Ok(Some(key)) if key.len() <= keys_to_console::MAX_PUBLIC_KEY_BYTES => {
                values.push((field, String::from_utf8_lossy(&key).into_owned()));
            }
            Ok(Some(_)) => warnings.push(format!(
                "phone_home: {path} is larger than a public key: {} posted",
                phone_home::NOT_AVAILABLE
            )),
            Ok(None) => warnings.push(format!(
                "phone_home: no {path}: {} posted",
                phone_home::NOT_AVAILABLE
            )),
            Err(err) => warnings.push(format!(
                "phone_home: cannot read {path}: {err}: {} posted",
                phone_home::NOT_AVAILABLE
            )),
        }
    }
    for field in &request.fields {
        if !phone_home::FIELDS.contains(&field.as_str()) {
            warnings.push(format!(
                "phone_home: no field {field} (fields: {}): {} posted",
                phone_home::FIELDS.join(", "),
                phone_home::NOT_AVAILABLE
            ));
        }
    }
    let body = phone_home::form(&request.fields, &values);
    let timeout = i.settings.agent.request_timeout();
    let most = (timeout + phone_home::BETWEEN_TRIES) * request.tries;
    let client = HttpClient::new(
        timeout,
        Retry::until(Instant::now() + most)
            .with_backoff(phone_home::BETWEEN_TRIES, phone_home::BETWEEN_TRIES)
            .with_attempts(request.tries),
    );
    // The message goes to status.json and result.json (0644) and the log: a user name and
    // password in the URL are masked there, as in every other message.
    let shown = url::shown(&url);
    match client.post_following(
        &url,
        phone_home::FORM,
        body.as_bytes(),
        phone_home::MAX_REDIRECTS,
    ) {
        Ok(()) => Done::ok_with(format!(
            "posted {} to {shown}",
            count(request.fields.len(), "field")
        )),
        Err(err) => {
            warnings.push(format!("phone_home: not posted: {}", chain(&err)));
            Done::ok_with(format!("not posted to {shown} (see the warnings)"))
        }
    }
}

/// The `final-message` step (cloud-init's `final_message`, every boot): the message, or
/// cloud-init's default line, on the console.
fn final_message(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let uptime = i.root.read_optional("/proc/uptime").ok().flatten();
    let values = final_message::Values {
        uptime: final_message::uptime(uptime.as_deref()).into_owned(),
        timestamp: crate::log::rfc2822(std::time::SystemTime::now()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        datasource: i.source.clone().unwrap_or_else(|| "none".to_owned()),
    };
    let message = i.config.final_message.as_deref().unwrap_or_default();
    match final_message::render(message, &values) {
        Ok(rendered) => {
            for left in &rendered.left {
                warnings.push(format!(
                    "`{left}` is not rendered (variables: uptime, timestamp, version, \
                     datasource): printed as written"
                ));
            }
            // Each line as written, its control characters escaped (as the log's): a message
            // can neither drive the console nor hide a line in it.
            for line in rendered.text.lines() {
                eprintln!("{}", crate::log::escape_controls(line));
            }
            Done::ok_with(count(rendered.text.lines().count(), "line") + " on the console")
        }
        Err(err) => Done::error(err),
    }
}

/// The `power-state` step (cloud-init's `power_state_change`, once per instance, last): the
/// request checked and its condition asked; the run then runs `shutdown` once its report is
/// committed.
fn power_state(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let Some(request) = &i.config.power_state else {
        return Done::skipped("no power_state");
    };
    let change = match power_state::parse(request) {
        Ok(change) => change,
        Err(err) => return Done::error(err),
    };
    if !i.root.is_host() {
        return Done::skipped(format!(
            "root is not /: `{}` not run",
            change.command_line()
        ));
    }
    match power_state::check(&change.condition) {
        Ok(power_state::Verdict::Met) => Done::ok_with(format!(
            "{} once the run's report is written",
            change.command_line()
        ))
        .then_run(change.argv()),
        // Asked once per instance, as cloud-init does: a condition not met is an answer.
        Ok(power_state::Verdict::NotMet(why)) => {
            Done::ok_with(format!("{why}: no {}", change.mode.name()))
        }
        Err(err) => Done::error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_named_once_and_fetching_comes_first() {
        let names: Vec<&str> = step_names().collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let first_apply = STEPS
            .iter()
            .position(|(_, stage)| matches!(stage, Stage::Apply(..)))
            .unwrap();
        assert!(
            STEPS[first_apply..]
                .iter()
                .all(|(_, stage)| !matches!(stage, Stage::Fetch))
        );
        assert_eq!(names[..2], ["config", "meta-data"]);
        assert_eq!(names.last(), Some(&"power-state"));
    }

    #[test]
    fn the_final_stage_is_the_trust_store_locale_grub_apt_ntp_packages_deferred_files_scripts_keys_message_then_power()
     {
        let finals: Vec<&str> = final_step_names().collect();
        assert_eq!(
            finals,
            [
                "ca-certs",
                "locale",
                "grub-dpkg",
                "apt-configure",
                "ntp",
                "packages",
                "write-files-deferred",
                "rsyslog",
                "scripts-vendor",
                "scripts-per-once",
                "scripts-per-boot",
                "scripts-per-instance",
                "scripts-user",
                "ssh-authkey-fingerprints",
                "keys-to-console",
                "phone-home",
                "final-message",
                "power-state"
            ]
        );
        let names: Vec<&str> = step_names().collect();
        assert_eq!(names[names.len() - finals.len()..], finals[..]);
    }
}
