//! The apply steps of a run, in cloud-init's module order, each with its frequency.

use std::path::Path;

use super::Instance;
use crate::apply::hostname::{self, HostnameError};
use crate::apply::users::Accounts;
use crate::apply::{
    hosts, passwords, random_seed, scripts, ssh_keys, sshd, users_groups, write_files,
};
use crate::fsutil::{self, WriteOptions, write_atomic};
use crate::state::result::{Done, Outcome, Report, ScriptResult, chain};
use crate::state::semaphore::Frequency;
use crate::userdata::Script;
use crate::userdata::cloud_config::{ManageEtcHosts, SshPwauth, UserEntry, Users};

type Step = fn(&Instance<'_>, &mut Vec<String>) -> Done;

/// Every apply step: name, frequency, body.
const APPLY: &[(&str, Frequency, Step)] = &[
    ("random-seed", Frequency::PerInstance, random_seed),
    ("bootcmd", Frequency::Always, bootcmd),
    ("boothooks", Frequency::Always, boothooks),
    ("write-files", Frequency::PerInstance, |i, w| {
        write_files(i, w, false)
    }),
    ("hostname", Frequency::Always, hostname),
    ("etc-hosts", Frequency::Always, etc_hosts),
    ("users-groups", Frequency::PerInstance, users_groups),
    ("ssh-keys", Frequency::PerInstance, ssh_keys),
    ("set-passwords", Frequency::PerInstance, set_passwords),
    ("ssh-pwauth", Frequency::PerInstance, ssh_pwauth),
    ("runcmd", Frequency::PerInstance, runcmd),
    ("write-files-deferred", Frequency::PerInstance, |i, w| {
        write_files(i, w, true)
    }),
    ("scripts-vendor", Frequency::PerInstance, scripts_vendor),
    ("scripts-per-once", Frequency::Once, |i, _| {
        scripts_per(i, "once", &i.user.per_once)
    }),
    ("scripts-per-boot", Frequency::Always, |i, _| {
        scripts_per(i, "boot", &i.user.per_boot)
    }),
    ("scripts-per-instance", Frequency::PerInstance, |i, _| {
        scripts_per(i, "instance", &i.user.per_instance)
    }),
    ("scripts-user", Frequency::PerInstance, scripts_user),
];

/// Runs every apply step, honouring `steps:` and the semaphores.
pub(super) fn apply_all(instance: &Instance<'_>, report: &mut Report) {
    let semaphores = instance.state.semaphores(&instance.id);
    for &(name, frequency, step) in APPLY {
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
        let outcome = report.step(name, || step(instance, &mut warnings));
        report
            .warnings
            .extend(warnings.into_iter().map(|w| format!("{name}: {w}")));
        if outcome != Outcome::Skipped
            && let Err(err) = semaphores.mark(name, frequency)
        {
            report.warnings.push(format!("{name}: {}", chain(&err)));
        }
    }
}

fn script_env(i: &Instance<'_>) -> scripts::ScriptEnv {
    scripts::ScriptEnv {
        instance_id: i.id.clone(),
        root: i.root.path().to_owned(),
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
        random_seed::feed_urandom(&seed).map(|()| Done::ok_with(format!("{} bytes", seed.len()))),
    )
}

fn run_commands(
    i: &Instance<'_>,
    name: &str,
    dir: &Path,
    commands: &[Option<crate::userdata::cloud_config::Command>],
) -> Done {
    let path = dir.join(name);
    if let Err(err) = scripts::write_script(&path, scripts::commands_to_script(commands).as_bytes())
    {
        return Done::error(chain(&err));
    }
    scripts_done(vec![scripts::run_script(&path, name, &script_env(i))])
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

fn write_and_run(i: &Instance<'_>, dir: &Path, list: &[Script]) -> Done {
    for script in list {
        if let Err(err) = scripts::write_script(&dir.join(&script.name), &script.body) {
            return Done::error(chain(&err));
        }
    }
    scripts_done(scripts::run_dir(dir, &script_env(i)))
}

fn boothooks(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let hooks: Vec<Script> = i
        .vendor
        .boothooks
        .iter()
        .chain(&i.user.boothooks)
        .cloned()
        .collect();
    if hooks.is_empty() {
        return Done::skipped("no #cloud-boothook parts");
    }
    write_and_run(i, &i.state.instance_dir(&i.id).join("boothooks"), &hooks)
}

fn accounts(i: &Instance<'_>) -> Option<Accounts> {
    Accounts::load(i.root).ok()
}

fn write_files(i: &Instance<'_>, warnings: &mut Vec<String>, deferred: bool) -> Done {
    let entries: Vec<_> = i
        .config
        .write_files
        .iter()
        .flatten()
        .filter(|e| e.defer.unwrap_or(false) == deferred)
        .collect();
    if entries.is_empty() {
        return Done::skipped(if deferred {
            "no deferred write_files"
        } else {
            "no write_files"
        });
    }
    let accounts = accounts(i);
    let (mut written, mut errors) = (Vec::new(), Vec::new());
    for entry in entries {
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
    let fqdn = hostname::sanitize(&names.fqdn)?;
    let short = hostname::sanitize(&names.hostname)?;
    let chosen = if i.config.prefer_fqdn_over_hostname == Some(true) {
        fqdn.clone()
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
    if i.config.preserve_hostname == Some(true) {
        return Done::skipped("preserve_hostname is set");
    }
    let result = (|| {
        let (_, name) = names(i)?;
        if name == "localhost" {
            return Ok(Done::skipped("resolved name is localhost; not applied"));
        }
        let record = i.state.data_file("previous-hostname");
        let previous = fsutil::read_optional_string(&record)
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
        let changed =
            hostname::write(i.root, &name, i.config.create_hostname_file.unwrap_or(true))?;
        write_atomic(
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
    let path = i.root.join(hosts::HOSTS_FILE);
    let old = match fsutil::read_optional_string(&path) {
        Ok(old) => old.unwrap_or_default(),
        Err(err) => return Done::error(format!("cannot read {}: {err}", path.display())),
    };
    let new = match mode {
        ManageEtcHosts::Template => hosts::render_template(&names.hostname, &names.fqdn),
        _ => hosts::update_local_line(&old, &names.hostname, &names.fqdn),
    };
    if new == old {
        return Done::ok_with("unchanged");
    }
    Done::from_result(
        write_atomic(&path, new.as_bytes(), &WriteOptions::keep_or(0o644)).map(|()| {
            Done::ok_with(format!(
                "{} {} {}",
                hosts::LOCAL_IP,
                names.fqdn,
                names.hostname
            ))
        }),
    )
}

fn default_user(i: &Instance<'_>) -> Option<crate::userdata::cloud_config::UserConfig> {
    users_groups::default_user(i.settings.agent.default_user.as_ref(), &i.config)
}

fn default_user_name(i: &Instance<'_>) -> Option<String> {
    default_user(i).map(|u| u.name.trim().to_owned())
}

fn users_groups(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    match users_groups::apply(i.root, &i.config, default_user(i).as_ref()) {
        Err(err) => Done::error(err),
        Ok(summary) => {
            warnings.extend(summary.warnings);
            let message = format!(
                "created [{}], updated [{}], groups [{}]",
                summary.created.join(", "),
                summary.updated.join(", "),
                summary.groups.join(", ")
            );
            if summary.errors.is_empty() {
                Done::ok_with(message)
            } else {
                Done::error(format!("{}; {message}", summary.errors.join("; ")))
            }
        }
    }
}

/// A key line without its options (`ssh-rsa AAAA… comment`), to put root's prefix in front.
fn without_options(key: &str) -> &str {
    let Some(blob) = ssh_keys::key_blob(key) else {
        return key;
    };
    let blob_at = key.find(blob).unwrap_or(0);
    let type_at = key[..blob_at]
        .trim_end()
        .rfind(char::is_whitespace)
        .map_or(0, |p| p + 1);
    &key[type_at..]
}

fn ssh_keys(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let mut keys = Vec::new();
    if i.config.allow_public_ssh_keys != Some(false) {
        keys.extend(ssh_keys::split_keys(
            i.meta.public_keys.iter().flatten().map(|(_, k)| k.as_str()),
        ));
    }
    if let Some(extra) = &i.config.ssh_authorized_keys {
        keys.extend(ssh_keys::split_keys(
            extra.to_vec().iter().map(String::as_str),
        ));
    }
    if keys.is_empty() {
        return Done::skipped("no public_keys in meta_data.json and no ssh_authorized_keys");
    }
    let Some(accounts) = accounts(i) else {
        return Done::error("cannot read the root's /etc/passwd");
    };
    let mut done_for = Vec::new();
    let mut errors = Vec::new();
    let default = default_user_name(i).filter(|name| name != "root");
    if let Some(name) = &default {
        match accounts.user(name) {
            Some(user) => match ssh_keys::write_user_keys(i.root, &user, &keys) {
                Ok(_) => done_for.push(name.clone()),
                Err(err) => errors.push(chain(&err)),
            },
            None => errors.push(format!("default user {name} does not exist")),
        }
    }
    let root_keys: Vec<String> = if i.config.disable_root.unwrap_or(true) {
        let opts = i
            .config
            .disable_root_opts
            .as_deref()
            .unwrap_or(ssh_keys::DISABLE_ROOT_OPTS);
        let prefix = ssh_keys::root_prefix(opts, default.as_deref());
        keys.iter()
            .map(|k| format!("{prefix} {}", without_options(k)))
            .collect()
    } else {
        keys.clone()
    };
    match accounts.user("root") {
        Some(root) => match ssh_keys::write_user_keys(i.root, &root, &root_keys) {
            Ok(_) => done_for.push("root".to_owned()),
            Err(err) => errors.push(chain(&err)),
        },
        None => errors.push("no root in /etc/passwd".to_owned()),
    }
    let message = format!(
        "{} for {}",
        super::count(keys.len(), "key"),
        done_for.join(", ")
    );
    if errors.is_empty() {
        Done::ok_with(message)
    } else {
        Done::error(format!("{}; {message}", errors.join("; ")))
    }
}

/// True when `users:` sets root's password itself.
fn users_set_root_password(i: &Instance<'_>) -> bool {
    let Some(Users::List(list)) = &i.config.users else {
        return false;
    };
    list.iter().any(|entry| match entry {
        UserEntry::Config(cfg) => {
            cfg.name.trim() == "root"
                && (cfg.hashed_passwd.is_some() || cfg.plain_text_passwd.is_some())
        }
        UserEntry::Name(_) => false,
    })
}

fn set_passwords(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let plan = passwords::plan(&i.config, default_user_name(i).as_deref());
    warnings.extend(plan.warnings.iter().cloned());
    let admin_pass = i
        .meta
        .admin_pass
        .as_deref()
        .filter(|p| !p.is_empty() && i.settings.agent.apply_admin_pass)
        .filter(|_| !plan.sets("root") && !users_set_root_password(i));
    if plan.changes.is_empty() && admin_pass.is_none() {
        return Done::skipped("no passwords to set");
    }
    let mut accounts = match Accounts::load(i.root) {
        Ok(a) => a,
        Err(err) => return Done::error(chain(&err)),
    };
    let mut applied = passwords::apply(&mut accounts, &plan.changes, plan.expire);
    if let Some(pass) = admin_pass {
        let admin = passwords::apply(
            &mut accounts,
            &[(
                "root".to_owned(),
                passwords::NewPassword::Text(pass.to_owned()),
            )],
            false,
        );
        applied
            .users
            .extend(admin.users.iter().map(|u| format!("{u} (admin_pass)")));
        applied.errors.extend(admin.errors);
    }
    if let Err(err) = accounts.save() {
        return Done::error(chain(&err));
    }
    if !applied.random.is_empty() {
        // The console only: never the log file, never a state file.
        let lines: Vec<String> = applied
            .random
            .iter()
            .map(|(u, p)| format!("{u}:{p}"))
            .collect();
        eprintln!("Set the following 'random' passwords\n{}", lines.join("\n"));
    }
    let message = format!(
        "set for {}{}",
        applied.users.join(", "),
        if plan.expire && !plan.changes.is_empty() {
            " (expired: change at first login)"
        } else {
            ""
        }
    );
    if applied.errors.is_empty() {
        Done::ok_with(message)
    } else {
        Done::error(format!("{}; {message}", applied.errors.join("; ")))
    }
}

fn ssh_pwauth(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let allow = match i.config.ssh_pwauth {
        None | Some(SshPwauth::Unchanged) => return Done::skipped("ssh_pwauth is not set"),
        Some(SshPwauth::Yes) => true,
        Some(SshPwauth::No) => false,
    };
    Done::from_result(
        sshd::set_password_auth(i.root, i.state, allow).map(|files| {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Done::ok_with(format!(
                "PasswordAuthentication {} in {}",
                if allow { "yes" } else { "no" },
                names.join(", ")
            ))
        }),
    )
}

fn runcmd(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let Some(commands) = &i.config.runcmd else {
        return Done::skipped("no runcmd");
    };
    let path = i.state.instance_dir(&i.id).join("scripts/runcmd");
    Done::from_result(
        scripts::write_script(&path, scripts::commands_to_script(commands).as_bytes())
            .map(|()| Done::ok_with(format!("{} written; runs in scripts-user", path.display()))),
    )
}

fn scripts_vendor(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    if i.vendor.scripts.is_empty() {
        return Done::skipped("no vendor scripts");
    }
    write_and_run(
        i,
        &i.state.instance_dir(&i.id).join("scripts/vendor"),
        &i.vendor.scripts,
    )
}

fn scripts_per(i: &Instance<'_>, frequency: &str, new: &[Script]) -> Done {
    let dir = i.state.scripts_dir(frequency);
    if i.new_instance {
        for script in new {
            if let Err(err) = scripts::write_script(&dir.join(&script.name), &script.body) {
                return Done::error(chain(&err));
            }
        }
    }
    let results = scripts::run_dir(&dir, &script_env(i));
    if results.is_empty() {
        return Done::skipped(format!("no per-{frequency} scripts"));
    }
    scripts_done(results)
}

fn scripts_user(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let dir = i.state.instance_dir(&i.id).join("scripts");
    for script in &i.user.scripts {
        if let Err(err) = scripts::write_script(&dir.join(&script.name), &script.body) {
            return Done::error(chain(&err));
        }
    }
    let results = scripts::run_dir(&dir, &script_env(i));
    if results.is_empty() {
        return Done::skipped("no user scripts and no runcmd");
    }
    scripts_done(results)
}
