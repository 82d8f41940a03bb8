//! The `users-groups` step (docs/protocol.md §5.4, `cc_users_groups`): groups, users created or
//! updated from `users` (default: the configured default user), their passwords, locks, sudo rules
//! and keys.

use std::path::Path;

use nix::sys::stat::SFlag;

use crate::apply::login_defs::{self, PasswordAgeing};
use crate::apply::users::{Accounts, NewUser, User, check_field};
use crate::apply::{home, passwords, ssh_keys, ssh_keys_file, sudoers};
use crate::fsutil::{self, PathError, WriteOptions, kind};
use crate::root::Root;
use crate::userdata::cloud_config::shape_error::without_values;
use crate::userdata::cloud_config::{
    CloudConfig, CsvList, StrLike, Sudo, UserConfig, UserEntry, UserMapValue, UserOverride, Users,
};

/// Login shell of created users when none is given (Debian's useradd default).
pub const DEFAULT_SHELL: &str = "/bin/sh";
/// Where sudo rules go, under the root (cloud-init: `90-cloud-init-users`).
pub const SUDOERS_FILE: &str = "/etc/sudoers.d/90-metaboot-users";
/// Skeleton files copied into new homes, under the root.
pub const SKEL_DIR: &str = "/etc/skel";

/// What the step did.
#[derive(Debug, Default)]
pub struct Summary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub groups: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// The default user: metaboot.yaml's `default_user`, with the cloud-config's
/// `system_info.default_user` laid over it (user data's, merged over the image's configuration
/// as cloud-init builds its distro from it), then the `user` key (a name, or options); `None`
/// when none names one.
pub fn default_user(configured: Option<&UserConfig>, config: &CloudConfig) -> Option<UserConfig> {
    let configured = configured.cloned().unwrap_or_default();
    let base = match config
        .system_info
        .as_ref()
        .and_then(|info| info.default_user.clone())
    {
        Some(over) => laid_over(over, configured),
        None => configured,
    };
    let user = match &config.user {
        None => base,
        Some(UserOverride::Name(name)) => UserConfig {
            name: name.clone(),
            ..base
        },
        Some(UserOverride::Config(over)) => laid_over((**over).clone(), base),
    };
    (!user.name.trim().is_empty()).then_some(user)
}

/// `over`'s options, each one `over` lacks taken from `base` (the name too, when `over` has
/// none).
fn laid_over(over: UserConfig, base: UserConfig) -> UserConfig {
    macro_rules! pick {
        ($($field:ident),*) => {
            UserConfig {
                name: if over.name.trim().is_empty() { base.name } else { over.name },
                $($field: over.$field.or(base.$field),)*
            }
        };
    }
    pick!(
        gecos,
        homedir,
        primary_group,
        groups,
        shell,
        lock_passwd,
        passwd,
        hashed_passwd,
        plain_text_passwd,
        ssh_authorized_keys,
        sudo,
        system,
        uid,
        no_create_home,
        no_user_group
    )
}

/// The default user with the options of an entry that names it (`{name: default, ...}`, or
/// no name), as cloud-init's `_normalize_users` merges them: the default user's own options
/// stay, the entry adds the ones it lacks, and its groups join the default user's.
fn default_with(default: &UserConfig, entry: &UserConfig) -> UserConfig {
    let mut groups = default
        .groups
        .as_ref()
        .map(CsvList::items)
        .unwrap_or_default();
    for group in entry
        .groups
        .as_ref()
        .map(CsvList::items)
        .unwrap_or_default()
    {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    let entry = UserConfig {
        name: String::new(),
        ..entry.clone()
    };
    UserConfig {
        groups: (!groups.is_empty()).then(|| CsvList::Text(groups.join(","))),
        ..laid_over(default.clone(), entry)
    }
}

/// The user list to apply: `users` (default `[default]`) with `default` replaced by the
/// configured default user. An entry that cannot be read is in `errors` (what is wrong with
/// it, never its values) and left out; a `users` that is no list, text or map creates nobody.
pub fn user_list(
    config: &CloudConfig,
    default_user: Option<&UserConfig>,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Vec<UserConfig> {
    let mut out = Vec::new();
    if matches!(config.users, Some(Users::Null)) {
        warnings.push(
            "users: empty (null), so no user is created, the default user neither, as in \
             cloud-init; write `users: [default]` for the default user"
                .to_owned(),
        );
    }
    for item in wanted(config, errors) {
        match item {
            Wanted::User(cfg) => out.push(cfg),
            Wanted::Default(entry) => match default_user {
                Some(default) => out.push(match entry {
                    Some(entry) => default_with(default, &entry),
                    None => default.clone(),
                }),
                None if config.users.is_some() => {
                    warnings.push(
                        "users: `default` given but metaboot.yaml has no default_user".to_owned(),
                    );
                }
                None => {}
            },
        }
    }
    out
}

/// One user the list names.
enum Wanted {
    /// The default user, with the options of an entry that names it `default` (or not at all).
    Default(Option<UserConfig>),
    User(UserConfig),
}

impl Wanted {
    /// An entry with options: the default user's when its name is `default` or missing, as
    /// cloud-init reads it.
    fn entry(cfg: UserConfig) -> Self {
        let name = cfg.name.trim();
        if name.is_empty() || name == DEFAULT {
            Wanted::Default(Some(cfg))
        } else {
            Wanted::User(cfg)
        }
    }

    fn is_default(&self) -> bool {
        matches!(self, Wanted::Default(_))
    }
}

/// The name that stands for the default user in `users`.
const DEFAULT: &str = "default";

/// The users the list names, in order, as cloud-init's `normalize_users_groups` reads `users`
/// and `user:`; what cannot be read is in `errors`.
fn wanted(config: &CloudConfig, errors: &mut Vec<String>) -> Vec<Wanted> {
    let named = |name: &str| UserConfig {
        name: name.to_owned(),
        ..UserConfig::default()
    };
    let mut wanted: Vec<Wanted> = Vec::new();
    let push_names = |text: &str, wanted: &mut Vec<Wanted>| {
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            wanted.push(if name == DEFAULT {
                Wanted::Default(None)
            } else {
                Wanted::User(named(name))
            });
        }
    };
    let unreadable = |what: String, value: &serde_json::Value| {
        let why = serde_json::from_value::<UserConfig>(value.clone())
            .err()
            .map_or_else(|| "not a user".to_owned(), |err| without_values(&err));
        format!("{what}: {why}; not applied")
    };
    match &config.users {
        None => wanted.push(Wanted::Default(None)),
        Some(Users::Null) => {}
        Some(Users::Invalid(_)) => errors.push(
            "users: not a list, a comma-separated text or a map of users; no user applied"
                .to_owned(),
        ),
        Some(Users::Text(text)) => push_names(text, &mut wanted),
        Some(Users::List(list)) => {
            for (index, entry) in list.iter().enumerate() {
                match entry {
                    UserEntry::Name(text) => push_names(text, &mut wanted),
                    UserEntry::Config(cfg) => wanted.push(Wanted::entry((**cfg).clone())),
                    UserEntry::Invalid(value) => {
                        let name = value.get("name").and_then(|n| n.as_str());
                        let what = match name {
                            Some(name) => format!("users: {name}"),
                            None => format!("users: entry {}", index + 1),
                        };
                        errors.push(unreadable(what, value));
                    }
                }
            }
        }
        Some(Users::Map(map)) => {
            for (name, value) in map {
                match value {
                    UserMapValue::Enabled(false) => {}
                    UserMapValue::Enabled(true) => push_names(name, &mut wanted),
                    UserMapValue::Config(cfg) => wanted.push(Wanted::entry(UserConfig {
                        name: name.clone(),
                        ..(**cfg).clone()
                    })),
                    UserMapValue::Invalid(value) => {
                        errors.push(unreadable(format!("users: {name}"), value));
                    }
                }
            }
        }
    }
    // `user:` makes its user the default one and adds it to the list, unless the list has it
    // already or turns it off. A `users` of no known shape creates nobody.
    let turned_off = match &config.users {
        Some(Users::Map(map)) => map.contains_key(DEFAULT),
        Some(Users::Invalid(_)) => true,
        _ => false,
    };
    if config.user.is_some() && !turned_off && !wanted.iter().any(Wanted::is_default) {
        wanted.push(Wanted::Default(None));
    }
    wanted
}

/// A password key's value, unless it is empty: cloud-init sets none then (an empty shadow
/// field would let the user in without a password where PAM allows `nullok`).
fn given(value: &Option<StrLike>) -> Option<&StrLike> {
    value.as_ref().filter(|value| !value.is_empty())
}

/// Whether the user list holds the default user, as cloud-init's `extract_default` finds it:
/// with no `users` (the image's `[default]`), with `default` among them, or with `user:` set
/// (which adds it). Without it, the steps that act for the default user (the instance's SSH
/// keys, `password`) have none: the keys go to root alone, as cloud-init gives them.
pub fn lists_default(config: &CloudConfig) -> bool {
    wanted(config, &mut Vec::new())
        .iter()
        .any(Wanted::is_default)
}

/// What one user's account edits did.
struct Applied {
    created: bool,
    /// The home to create, for a created user that gets one.
    home: Option<String>,
}

/// Creates or updates one user's entries in `accounts` (nothing on disk yet). On error the
/// caller rolls `accounts` back, so a failed user leaves no entry and no group behind.
fn apply_user(
    accounts: &mut Accounts,
    cfg: &UserConfig,
    ageing: PasswordAgeing,
    warnings: &mut Vec<String>,
) -> Result<Applied, String> {
    let name = cfg.name.trim();
    let system = cfg.system == Some(true);
    let created = accounts.user(name).is_none();
    let mut home = None;
    if created {
        let uid_wanted = match &cfg.uid {
            Some(uid) => Some(
                uid.parse::<u32>()
                    .map_err(|_| format!("{name}: uid {:?} is not a number", uid.0))?,
            ),
            None => None,
        };
        // A uid asked for is that uid or nothing, as `useradd --uid` makes it: another would
        // break what the uid is for (files on a shared disk, NFS).
        if let Some(uid) = uid_wanted
            && let Some(owner) = accounts.uid_owner(uid)
        {
            return Err(format!(
                "{name}: uid {uid} is taken by {owner}; not created (choose a free uid, or \
                 leave uid out)"
            ));
        }
        let uid = accounts
            .next_uid(system, uid_wanted)
            .map_err(|e| format!("{name}: {e}"))?;
        let gid = if let Some(group) = &cfg.primary_group {
            // A number is a group id, as useradd -g takes it.
            match group.trim().parse::<u32>() {
                Ok(gid) if accounts.has_gid(gid) => gid,
                Ok(gid) => {
                    return Err(format!("{name}: primary_group {gid}: no group has that id"));
                }
                Err(_) => accounts
                    .ensure_group(group, system, None)
                    .map_err(|e| format!("{name}: {e}"))?,
            }
        } else if cfg.no_user_group == Some(true) {
            accounts.gid("users").unwrap_or(100)
        } else if accounts.gid(name).is_some() && !accounts.left_by_a_cut_run(name) {
            // useradd refuses it ("group NAME exists"): the group (`docker`) is not the new
            // user's to take over.
            return Err(format!(
                "{name}: group {name} exists; not created, as useradd refuses it (to make it \
                 the user's primary group write `primary_group: {name}`; else rename the user or \
                 set `no_user_group: true`)"
            ));
        } else {
            accounts
                .ensure_group(name, system, Some(uid))
                .map_err(|e| format!("{name}: {e}"))?
        };
        let home_dir = cfg
            .homedir
            .clone()
            .unwrap_or_else(|| format!("/home/{name}"));
        accounts
            .create_user(&NewUser {
                name: name.to_owned(),
                uid: Some(uid),
                gid,
                gecos: cfg.gecos.as_ref().map(|g| g.0.clone()).unwrap_or_default(),
                home: home_dir.clone(),
                shell: cfg
                    .shell
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SHELL.to_owned()),
                system,
                // `useradd --system` gives a system user no password ageing.
                ageing: (!system).then_some(ageing),
            })
            .map_err(|e| format!("{name}: {e}"))?;
        if !system && cfg.no_create_home != Some(true) {
            home = Some(home_dir);
        }
        if let Some(hash) = given(&cfg.passwd) {
            check_field("passwd", hash).map_err(|e| format!("{name}: {e}"))?;
            accounts
                .set_password_hash(name, hash, false)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        // `groups` only for a user made now: cloud-init passes them to useradd, and skips an
        // existing user there (`add_user`), the groups with it.
        for group in cfg.groups.as_ref().map(|g| g.items()).unwrap_or_default() {
            accounts
                .ensure_group(&group, false, None)
                .map_err(|e| format!("{name}: {e}"))?;
            accounts.add_member(&group, name);
        }
    } else {
        if given(&cfg.passwd).is_some() {
            warnings.push(format!(
                "{name}: `passwd` is only used when the user is created; ignored"
            ));
        }
        let missing: Vec<String> = cfg
            .groups
            .as_ref()
            .map(|g| g.items())
            .unwrap_or_default()
            .into_iter()
            .filter(|group| !accounts.in_group(group, name))
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "{name}: exists already, so `groups` is not applied, as in cloud-init (not added \
                 to {}); to add an existing user, list it under the top-level `groups`: \
                 `groups: [{{{}: [{name}]}}]`",
                missing.join(", "),
                missing[0]
            ));
        }
    }
    if let Some(hash) = given(&cfg.hashed_passwd) {
        accounts
            .set_password_hash(name, hash, false)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    if let Some(text) = given(&cfg.plain_text_passwd) {
        let hash = passwords::hash_password(text).map_err(|e| format!("{name}: {e}"))?;
        accounts
            .set_password_hash(name, &hash, false)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    if cfg.lock_passwd.unwrap_or(true) {
        accounts.lock(name).map_err(|e| format!("{name}: {e}"))?;
    } else {
        accounts.unlock(name).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(Applied { created, home })
}

/// Creates (or takes over) a created user's home: owned by the user, with `mode` (what useradd
/// takes from the image's login.defs) and the skeleton files when the agent made it.
fn make_home(root: &Root, user: &User, mode: u32) -> std::io::Result<()> {
    let (home, created) = home::open_home(root, user)?;
    // A directory that was there is left as it is, as useradd leaves it: a `homedir` naming
    // one of the system's (`/etc`, `/home`) never becomes the user's, nor does a home kept
    // from an earlier instance (a rebuild that kept /home) get its modes loosened. An empty
    // one is taken: what a run cut short between making the home and giving it to its user
    // leaves. So is one the new user owns that holds nothing but directories: what a run cut
    // short before the skeleton files it staged were published leaves (a home in use has
    // files: `.bashrc`, `.profile`, a shell's history); never root's, as every system
    // directory is.
    let entries = home.entries()?;
    let only_directories = entries.iter().all(|(_, stat)| kind(stat) == SFlag::S_IFDIR);
    let left_by_a_cut_run = user.uid != 0 && home.stat()?.st_uid == user.uid && only_directories;
    if created || entries.is_empty() || left_by_a_cut_run {
        home.set_owner_mode(Some(user.owner()), mode)?;
        if let Some(skel) = root.dir_optional(SKEL_DIR)? {
            home::copy_skel(&skel, &home, user)?;
        }
    }
    Ok(())
}

/// Applies `groups` and the user list. Each user's account edits apply whole or not at all;
/// the account files are saved once, then homes, keys and sudo rules are written for the
/// users that exist.
pub fn apply(
    root: &Root,
    config: &CloudConfig,
    default_user: Option<&UserConfig>,
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut accounts = Accounts::load(root).map_err(|e| crate::log::chain(&e))?;
    for (group, members) in config
        .groups
        .as_ref()
        .map(|g| g.entries())
        .unwrap_or_default()
    {
        match accounts.ensure_group(&group, false, None) {
            Ok(_) => summary.groups.push(group.clone()),
            Err(err) => summary.errors.push(format!("group {group}: {err}")),
        }
        for member in members {
            if accounts.user(&member).is_some() {
                accounts.add_member(&group, &member);
            } else {
                summary
                    .warnings
                    .push(format!("group {group}: no user {member}; not added"));
            }
        }
    }
    let users = user_list(
        config,
        default_user,
        &mut summary.warnings,
        &mut summary.errors,
    );
    // What useradd (which cloud-init runs) takes from the image's login.defs, read when a
    // user is to be created.
    let creates = users
        .iter()
        .any(|cfg| accounts.user(cfg.name.trim()).is_none());
    let login_defs = if creates {
        let (text, warnings) = login_defs::read(root);
        summary.warnings.extend(warnings);
        text
    } else {
        None
    };
    let (ageing, warnings) = login_defs::password_ageing(login_defs.as_deref());
    summary.warnings.extend(warnings);
    let mut errored: Vec<&str> = Vec::new();
    let mut homes: Vec<(&str, String)> = Vec::new();
    for cfg in &users {
        let name = cfg.name.trim();
        if let Err(err) = crate::apply::users::check_name(name) {
            summary.errors.push(err.to_string());
            errored.push(name);
            continue;
        }
        let before = accounts.clone();
        match apply_user(&mut accounts, cfg, ageing, &mut summary.warnings) {
            Ok(applied) => {
                if applied.created {
                    summary.created.push(name.to_owned());
                } else {
                    summary.updated.push(name.to_owned());
                }
                homes.extend(applied.home.map(|home| (name, home)));
            }
            Err(err) => {
                accounts = before;
                summary.errors.push(err);
                errored.push(name);
            }
        }
    }
    accounts.save().map_err(|e| crate::log::chain(&e))?;

    // The users exist now: a home that cannot be made is that user's error, not a rollback.
    // Its mode is useradd's, from the image's login.defs, as cloud-init's useradd makes it.
    let home_mode = if homes.is_empty() {
        home::HOME_MODE
    } else {
        let (mode, warnings) = login_defs::home_mode(login_defs.as_deref());
        summary.warnings.extend(warnings);
        mode
    };
    for (name, home) in homes {
        let Some(user) = accounts.user(name) else {
            continue;
        };
        if let Err(err) = make_home(root, &user, home_mode) {
            summary.errors.push(format!("{name}: home {home}: {err}"));
            errored.push(name);
        }
    }

    let keys_files = ssh_keys_file::sshd_settings(root);
    let mut rules = String::new();
    for cfg in users.iter().filter(|c| !errored.contains(&c.name.trim())) {
        let name = cfg.name.trim();
        match &cfg.sudo {
            // cloud-init raises on it: `true` names no rule.
            Some(Sudo::Enabled(true)) => summary.errors.push(format!(
                "{name}: `sudo: true` is not a sudoers rule; write one, e.g. \
                 `sudo: ALL=(ALL) NOPASSWD:ALL`"
            )),
            Some(sudo) => {
                for rule in sudo.rules() {
                    // A blank rule (`sudo: ""`, a template's empty variable) would be the line
                    // `NAME`, which sudo cannot parse: it would refuse every user's sudo.
                    if rule.trim().is_empty() {
                        continue;
                    }
                    if rule.contains(['\n', '\r']) {
                        summary.errors.push(format!(
                            "{name}: a sudo rule holds a line break; it was not written"
                        ));
                        continue;
                    }
                    rules.push_str(&format!("{name} {}\n", rule.trim()));
                }
            }
            None => {}
        }
        let keys = cfg
            .ssh_authorized_keys
            .as_ref()
            .map(|k| k.to_vec())
            .unwrap_or_default();
        if keys.is_empty() {
            continue;
        }
        if let Some(user) = accounts.user(name) {
            let keys = ssh_keys::split_keys(keys.iter().map(String::as_str));
            if let Err(err) = ssh_keys::write_user_keys(root, &keys_files, &user, &keys) {
                summary
                    .errors
                    .push(format!("{name}: {}", crate::log::chain(&err)));
            }
        }
    }
    if !rules.is_empty() {
        write_sudoers(root, &rules, &mut summary);
    }
    Ok(summary)
}

/// Adds `rules` (one `NAME RULE` line each) to metaboot's sudoers file, as cloud-init appends
/// to its own: rules an earlier instance wrote stay (its users still exist), a line already
/// there is not written twice. /etc/sudoers is made to include its directory first.
fn write_sudoers(root: &Root, rules: &str, summary: &mut Summary) {
    let path = Path::new(SUDOERS_FILE);
    let Some(dir) = path.parent().filter(|dir| root.is_dir(dir)) else {
        summary.warnings.push(
            "sudo rules not written: /etc/sudoers.d does not exist (no sudo on this image?)"
                .to_owned(),
        );
        return;
    };
    if let Err(err) = sudoers::ensure_included(root, dir) {
        summary.errors.push(format!(
            "{}; sudo rules not written (sudo would not read them)",
            crate::log::chain(&err)
        ));
        return;
    }
    let old = match root.read_optional_text(path) {
        Ok(old) => old,
        Err(err) => {
            summary.errors.push(crate::log::chain(&PathError::fail(
                "read",
                root.host_path(path),
            )(err)));
            return;
        }
    };
    let mut text = old.unwrap_or_else(|| SUDOERS_HEADER.to_owned());
    let mut added = false;
    for line in rules.lines() {
        if !text.lines().any(|old| old.trim() == line) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
            added = true;
        }
    }
    if !added && root.exists(path) {
        return;
    }
    if let Err(err) = root.write_atomic(
        path,
        text.as_bytes(),
        &WriteOptions::exact(0o440, Some(fsutil::Owner { uid: 0, gid: 0 })),
    ) {
        summary.errors.push(crate::log::chain(&err));
    }
}

/// The first line of metaboot's sudoers file.
const SUDOERS_HEADER: &str = "# Created by metaboot from the users of user data.\n";

#[cfg(test)]
mod tests;
