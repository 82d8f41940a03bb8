//! The account steps: users and groups, SSH keys, passwords (with the config drive's
//! `admin_pass`), the password post-back, `ssh_pwauth`, and the authorized keys' fingerprints
//! on the console.

use metaboot_proto::MetaData;

use super::instance::Instance;
use crate::apply::users::Accounts;
use crate::apply::{
    authkey_fingerprints, password_postback, passwords, ssh_keys, ssh_keys_file, sshd, users_groups,
};
use crate::log::chain;
use crate::retry::Retry;
use crate::source::http::{FetchError, HttpClient};
use crate::source::metadata_service;
use crate::state::result::{Done, count};
use crate::userdata::cloud_config::{SshPwauth, UserConfig, UserEntry, UserMapValue, Users};

/// The root's accounts, if its passwd can be read.
pub(super) fn load(i: &Instance<'_>) -> Option<Accounts> {
    Accounts::load(i.root).ok()
}

/// The default user, when the user list holds it (`users_groups::lists_default`).
fn default_user(i: &Instance<'_>) -> Option<UserConfig> {
    users_groups::default_user(i.settings.agent.default_user.as_ref(), &i.config)
        .filter(|_| users_groups::lists_default(&i.config))
}

fn default_user_name(i: &Instance<'_>) -> Option<String> {
    default_user(i).map(|u| u.name.trim().to_owned())
}

pub(super) fn users_groups(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
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

pub(super) fn ssh_keys(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let mut keys = Vec::new();
    if i.config.allow_public_ssh_keys.is_none_or(|flag| flag.0) {
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
    let Some(accounts) = load(i) else {
        return Done::error("cannot read the root's /etc/passwd");
    };
    let settings = ssh_keys_file::sshd_settings(i.root);
    let mut done_for = Vec::new();
    let mut errors = Vec::new();
    let default = default_user_name(i).filter(|name| name != "root");
    if let Some(name) = &default {
        match accounts.user(name) {
            Some(user) => match ssh_keys::write_user_keys(i.root, &settings, &user, &keys) {
                Ok(_) => done_for.push(name.clone()),
                Err(err) => errors.push(chain(&err)),
            },
            None => errors.push(format!("default user {name} does not exist")),
        }
    }
    let root_keys: Vec<String> = if i.config.disable_root.is_none_or(|flag| flag.0) {
        let opts = i
            .config
            .disable_root_opts
            .as_deref()
            .unwrap_or(ssh_keys::DISABLE_ROOT_OPTS);
        // A name useradd would refuse (a quote or a line break in it would break root's
        // authorized_keys lines) is not named there.
        let named = default
            .as_deref()
            .filter(|name| crate::apply::users::check_name(name).is_ok());
        let prefix = ssh_keys::root_prefix(opts, named);
        keys.iter()
            .map(|k| format!("{prefix} {}", without_options(k)))
            .collect()
    } else {
        keys.clone()
    };
    match accounts.user("root") {
        Some(root) => match ssh_keys::write_user_keys(i.root, &settings, &root, &root_keys) {
            Ok(_) => done_for.push("root".to_owned()),
            Err(err) => errors.push(chain(&err)),
        },
        None => errors.push("no root in /etc/passwd".to_owned()),
    }
    let message = format!("{} for {}", count(keys.len(), "key"), done_for.join(", "));
    if errors.is_empty() {
        Done::ok_with(message)
    } else {
        Done::error(format!("{}; {message}", errors.join("; ")))
    }
}

/// True when `users:` sets root's password itself (as a list entry or in the map form).
fn users_set_root_password(i: &Instance<'_>) -> bool {
    let sets_password =
        |cfg: &UserConfig| cfg.hashed_passwd.is_some() || cfg.plain_text_passwd.is_some();
    // An entry for root that cannot be read is not applied; its password still means
    // `admin_pass` is not root's.
    let unread_sets_password = |value: &serde_json::Value| {
        value.get("hashed_passwd").is_some() || value.get("plain_text_passwd").is_some()
    };
    match &i.config.users {
        Some(Users::List(list)) => list.iter().any(|entry| match entry {
            UserEntry::Config(cfg) => cfg.name.trim() == "root" && sets_password(cfg),
            UserEntry::Name(_) => false,
            UserEntry::Invalid(value) => {
                value.get("name").and_then(|n| n.as_str()).map(str::trim) == Some("root")
                    && unread_sets_password(value)
            }
        }),
        Some(Users::Map(map)) => match map.get("root") {
            Some(UserMapValue::Config(cfg)) => sets_password(cfg),
            Some(UserMapValue::Invalid(value)) => unread_sets_password(value),
            Some(UserMapValue::Enabled(_)) | None => false,
        },
        Some(Users::Text(_) | Users::Null | Users::Invalid(_)) | None => false,
    }
}

/// nova's `admin_pass` when it is root's new password: given, applied by the configuration,
/// and root gets none from `chpasswd`/`password` or `users:`.
fn admin_pass<'i>(i: &'i Instance<'_>, plan: &passwords::Plan) -> Option<&'i str> {
    i.meta
        .admin_pass
        .as_deref()
        .filter(|p| !p.is_empty() && i.settings.agent.apply_admin_pass)
        .filter(|_| !plan.sets("root") && !users_set_root_password(i))
}

/// Starts hashing, on a second CPU, the clear-text passwords this new instance's steps will
/// set (`users:` `plain_text_passwd`, `chpasswd`/`password`, `admin_pass`): see
/// `apply/passwords/ahead.rs`. Returns whether it started.
pub(super) fn hash_ahead(i: &Instance<'_>) -> bool {
    if !i.new_instance {
        return false;
    }
    let plan = passwords::plan(&i.config, default_user_name(i).as_deref());
    let mut texts: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|(_, change)| match change {
            passwords::NewPassword::Text(text) => Some(text.clone()),
            passwords::NewPassword::Hash(_) | passwords::NewPassword::Random => None,
        })
        .collect();
    texts.extend(admin_pass(i, &plan).map(str::to_owned));
    match &i.config.users {
        Some(Users::List(list)) => {
            texts.extend(list.iter().filter_map(|entry| match entry {
                UserEntry::Config(cfg) => cfg.plain_text_passwd.as_ref().map(|text| text.0.clone()),
                UserEntry::Name(_) | UserEntry::Invalid(_) => None,
            }));
        }
        Some(Users::Map(map)) => {
            texts.extend(map.values().filter_map(|value| match value {
                UserMapValue::Config(cfg) => {
                    cfg.plain_text_passwd.as_ref().map(|text| text.0.clone())
                }
                UserMapValue::Enabled(_) | UserMapValue::Invalid(_) => None,
            }));
        }
        _ => {}
    }
    passwords::hash_ahead(texts)
}

pub(super) fn set_passwords(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let plan = passwords::plan(&i.config, default_user_name(i).as_deref());
    warnings.extend(plan.warnings.iter().cloned());
    let admin_pass = admin_pass(i, &plan);
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
        crate::console::show_secret(i.root, &passwords::random_banner(&applied.random));
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

/// The instance's first SSH key: `(name, key line)`, from `keys` (which keeps the order the
/// key pairs were given in; an `x509` certificate is no SSH key) or else the first of
/// `public_keys`. `metaboot-server instance get-password` picks the same key.
fn first_key(meta: &MetaData) -> Option<(String, String)> {
    if let Some(keys) = &meta.keys {
        return keys
            .iter()
            .find(|key| key.is_ssh())
            .map(|first| (first.name.clone(), first.data.clone()));
    }
    meta.public_keys
        .as_ref()
        .and_then(|keys| keys.iter().next())
        .map(|(name, key)| (name.clone(), key.clone()))
}

/// The `password-postback` step (`password_postback: true`): a random password for the
/// default user (root without one), encrypted for the first SSH key (nothing is set when that
/// cannot be done), set, then POSTed to the metadata service's `password` endpoint. The clear
/// password goes to the console only when the post fails, so that it is not lost.
pub(super) fn password_postback(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    if !i.config.password_postback.is_some_and(|flag| flag.0) {
        return Done::skipped("password_postback is not set");
    }
    let user = default_user_name(i).unwrap_or_else(|| "root".to_owned());
    let Some((key_name, key)) = first_key(&i.meta) else {
        return Done::error(chain(&password_postback::PostbackError::NoKey));
    };
    let result = passwords::random_password()
        .map_err(|err| chain(&err))
        .and_then(|password| {
            let posted = password_postback::encrypt(&key_name, &key, &password)
                .map_err(|err| chain(&err))?;
            let hash = passwords::hash_password(&password).map_err(|err| chain(&err))?;
            let mut accounts = Accounts::load(i.root).map_err(|err| chain(&err))?;
            accounts
                .set_password_hash(&user, &hash, false)
                .and_then(|()| accounts.save())
                .map_err(|err| chain(&err))?;
            Ok((password, posted))
        });
    let (password, posted) = match result {
        Ok(done) => done,
        Err(err) => return Done::error(format!("{err}; no password set for {user}")),
    };
    let client = HttpClient::new(
        i.settings.agent.request_timeout(),
        Retry::for_budget(i.settings.agent.deadline()),
    )
    .in_session(&i.session);
    let posted_to = password_url(i, &client)
        .and_then(|url| post_password(&client, &url, &posted).map(|()| url));
    match posted_to {
        Ok(url) => Done::ok_with(format!(
            "set for {user}, encrypted for key pair {key_name} and posted to {url}"
        )),
        Err(err) => {
            // The console only, as cloud-init's random passwords: never the log file.
            crate::console::show_secret(
                i.root,
                &passwords::random_banner(&[(user.clone(), password)]),
            );
            Done::error(format!(
                "set for {user} but not posted ({err}); the password is on the console"
            ))
        }
    }
}

/// The `password` endpoint of the metadata service: under the URL the instance's documents
/// came from, else (they came from a config drive) under [`service_base`].
fn password_url(i: &Instance<'_>, client: &HttpClient) -> Result<String, String> {
    let base = match &i.service_url {
        Some(base) => base.clone(),
        None => service_base(i, client)?,
    };
    Ok(format!("{base}/openstack/latest/password"))
}

/// The metadata service's base URL when the documents did not come from it: the one URL, or
/// the first of several that answers (the same search as the metadata service's).
fn service_base(i: &Instance<'_>, client: &HttpClient) -> Result<String, String> {
    let mut warnings = Vec::new();
    let urls = metadata_service::service_urls(i.root, &i.settings.urls, &mut warnings);
    match urls.as_slice() {
        [one] => Ok(one.clone()),
        _ => metadata_service::discover(client, &urls, &[metadata_service::LISTING])
            .map(|(base, _)| base)
            .map_err(|err| {
                let mut text = chain(&err);
                for warning in &warnings {
                    text.push_str("; ");
                    text.push_str(warning);
                }
                text
            }),
    }
}

/// POSTs the encrypted password. A 409 after a retried POST may mean the first one did
/// arrive: then the stored text is ours, and that is a success.
fn post_password(client: &HttpClient, url: &str, posted: &str) -> Result<(), String> {
    match client.post(url, "text/plain", posted.as_bytes()) {
        Ok(()) => Ok(()),
        Err(err) => {
            let conflict = matches!(err.last(), FetchError::PostStatus { status: 409, .. });
            let stored = conflict
                .then(|| client.get(url, password_postback::MAX_POSTED_BYTES as u64 + 1))
                .and_then(Result::ok)
                .flatten();
            if stored.as_deref() == Some(posted.as_bytes()) {
                Ok(())
            } else {
                Err(chain(&err))
            }
        }
    }
}

pub(super) fn ssh_pwauth(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let allow = match i.config.ssh_pwauth {
        None | Some(SshPwauth::Unchanged) => return Done::skipped("ssh_pwauth is not set"),
        Some(SshPwauth::Unrecognized) => {
            // The value is not repeated: it is the user's text, and says nothing new.
            warnings.push(
                "ssh_pwauth: a text that is not true, false or unchanged; PasswordAuthentication \
                 left unchanged (write ssh_pwauth: true or false)"
                    .to_owned(),
            );
            return Done::skipped("ssh_pwauth is not true or false");
        }
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

/// The `ssh-authkey-fingerprints` step (cloud-init's `ssh_authkey_fingerprints`, once per
/// instance, after the user scripts): for each user of the user list (not a system user, not
/// one without a home), the fingerprints of the keys in `~/.ssh/authorized_keys` on the
/// console, unless `no_ssh_fingerprints` is true.
pub(super) fn authkey_fingerprints(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    if i.config
        .no_ssh_fingerprints
        .as_ref()
        .is_some_and(crate::userdata::cloud_config::is_true)
    {
        return Done::skipped("no_ssh_fingerprints is true");
    }
    let hash = i
        .config
        .authkey_hash
        .as_deref()
        .unwrap_or(authkey_fingerprints::DEFAULT_HASH);
    if !authkey_fingerprints::HASHES.contains(&hash) {
        warnings.push(format!(
            "authkey_hash {hash}: metaboot has {} only; the fingerprints show ?",
            authkey_fingerprints::HASHES.join(", ")
        ));
    }
    let Some(accounts) = load(i) else {
        return Done::error("cannot read the root's /etc/passwd");
    };
    // The user list's own warnings and errors were the users-groups step's.
    let users = users_groups::user_list(
        &i.config,
        default_user(i).as_ref(),
        &mut Vec::new(),
        &mut Vec::new(),
    );
    let settings = ssh_keys_file::sshd_settings(i.root);
    let mut shown = Vec::new();
    for wanted in users {
        if wanted.no_create_home == Some(true) || wanted.system == Some(true) {
            continue;
        }
        let name = wanted.name.trim();
        let Some(user) = accounts.user(name) else {
            warnings.push(format!("no fingerprints for {name}: no such user"));
            continue;
        };
        match ssh_keys::read_user_keys(i.root, &settings, &user) {
            Ok((file, text)) => {
                eprint!(
                    "{}",
                    authkey_fingerprints::render(
                        name,
                        &file.display().to_string(),
                        text.as_deref(),
                        hash
                    )
                );
                shown.push(name.to_owned());
            }
            Err(err) => warnings.push(format!("no fingerprints for {name}: {}", chain(&err))),
        }
    }
    if shown.is_empty() {
        return Done::skipped("no user to show the fingerprints of");
    }
    Done::ok_with(format!(
        "the authorized keys' fingerprints of {} on the console",
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_encrypted_for_the_first_ssh_key_not_a_certificate() {
        let meta: MetaData = serde_json::from_value(serde_json::json!({
            "uuid": "u",
            "keys": [
                {"name": "cert", "type": "x509", "data": "-----BEGIN CERTIFICATE-----\n"},
                {"name": "rsa", "type": "ssh", "data": "ssh-rsa AAAA r@h"},
            ],
            "public_keys": {"cert": "-----BEGIN CERTIFICATE-----\n"},
        }))
        .unwrap();
        assert_eq!(
            first_key(&meta),
            Some(("rsa".to_owned(), "ssh-rsa AAAA r@h".to_owned()))
        );
        // Without `keys` (an older metadata version), the first of `public_keys`.
        let older: MetaData = serde_json::from_value(serde_json::json!({
            "uuid": "u", "public_keys": {"k": "ssh-rsa BBBB k@h"},
        }))
        .unwrap();
        assert_eq!(
            first_key(&older),
            Some(("k".to_owned(), "ssh-rsa BBBB k@h".to_owned()))
        );
    }
}
