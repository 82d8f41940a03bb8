//! The cloud-config keys metaboot applies (spec section 5), as typed serde structs read key by
//! key, so one malformed key is reported without losing the others.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::yaml::ConfigMap;

mod lenient;
pub mod not_applied;
pub mod shape_error;
mod str_like;
mod truth;
mod write_file;

pub use lenient::Flag;
pub use str_like::StrLike;
pub use truth::{is_false, is_true};
pub use write_file::{BadWriteFile, MAX_PERMISSIONS, Permissions, WriteFile, WriteFiles};

/// A key whose value has the wrong shape; the rest of the config still applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.key, self.message)
    }
}

macro_rules! cloud_config {
    ($($(#[$doc:meta])* $field:ident : $ty:ty = $key:literal,)*) => {
        /// The merged cloud-config, restricted to the keys metaboot implements.
        #[derive(Debug, Clone, Default)]
        pub struct CloudConfig {
            $($(#[$doc])* pub $field: Option<$ty>,)*
        }

        impl CloudConfig {
            /// Every key read (others are ignored, as cloud-init ignores keys of modules that
            /// are not enabled).
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Reads each known key on its own; a `null` value counts as absent.
            pub fn from_map(map: &ConfigMap) -> (CloudConfig, Vec<KeyError>) {
                let mut config = CloudConfig::default();
                let mut errors = Vec::new();
                $(config.$field = read(map, $key, &mut errors);)*
                config.read_empty_modules(map);
                (config, errors)
            }
        }
    };
}

impl CloudConfig {
    /// The keys whose `null` is not absence: `ntp:` with no value asks cloud-init's `ntp` for
    /// its defaults (the distribution's pool); `users:` with no value is a list of no one
    /// ([`Users::Null`]).
    fn read_empty_modules(&mut self, map: &ConfigMap) {
        let is_null = |key: &str| map.get(key).is_some_and(serde_json::Value::is_null);
        if self.ntp.is_none() && is_null("ntp") {
            self.ntp = Some(serde_json::Map::new());
        }
        if self.users.is_none() && is_null("users") {
            self.users = Some(Users::Null);
        }
    }
}

#[cfg(test)]
impl CloudConfig {
    /// The cloud-config of a JSON object whose every key reads without error (tests).
    pub fn from_json(value: serde_json::Value) -> CloudConfig {
        let serde_json::Value::Object(object) = value else {
            panic!("a cloud-config is a map")
        };
        let (config, errors) = CloudConfig::from_map(&object.into_iter().collect());
        assert!(errors.is_empty(), "{errors:?}");
        config
    }
}

/// The value of `key` in `map` (`null` counts as absent), or `None` with its error added to
/// `errors`.
fn read<T: serde::de::DeserializeOwned>(
    map: &ConfigMap,
    key: &'static str,
    errors: &mut Vec<KeyError>,
) -> Option<T> {
    let value = map.get(key).filter(|v| !v.is_null())?;
    serde_json::from_value::<T>(value.clone())
        .map_err(|err| {
            errors.push(KeyError {
                key,
                message: shape_error::without_values(&err),
            });
        })
        .ok()
}

cloud_config! {
    /// `hostname`: short name, or an FQDN (then its first label is the short name).
    hostname: StrLike = "hostname",
    /// `fqdn`.
    fqdn: StrLike = "fqdn",
    /// Write the FQDN instead of the short name.
    prefer_fqdn_over_hostname: Flag = "prefer_fqdn_over_hostname",
    /// Leave the hostname alone.
    preserve_hostname: Flag = "preserve_hostname",
    /// Whether `/etc/hostname` may be created when missing.
    create_hostname_file: Flag = "create_hostname_file",
    /// `true` / `template`: regenerate `/etc/hosts`; `localhost`: only its 127.0.1.1 line.
    manage_etc_hosts: ManageEtcHosts = "manage_etc_hosts",
    /// Keys added for the default user and root.
    ssh_authorized_keys: OneOrMany<String> = "ssh_authorized_keys",
    /// Whether `public_keys` of meta_data.json are used.
    allow_public_ssh_keys: Flag = "allow_public_ssh_keys",
    /// Prefix root's keys with `disable_root_opts`.
    disable_root: Flag = "disable_root",
    /// The options written in front of root's keys when `disable_root` is true.
    disable_root_opts: String = "disable_root_opts",
    /// `PasswordAuthentication yes|no`, or `unchanged`.
    ssh_pwauth: SshPwauth = "ssh_pwauth",
    /// Delete the image's SSH host keys on a new instance (default true, as cloud-init).
    ssh_deletekeys: Flag = "ssh_deletekeys",
    /// The instance's SSH host keys, given: `<type>_private`, `<type>_public` (`<type>_certificate`
    /// is reported and not written).
    ssh_keys: serde_json::Map<String, serde_json::Value> = "ssh_keys",
    /// The host key types made when missing (metaboot's default: ed25519 only).
    ssh_genkeytypes: OneOrMany<String> = "ssh_genkeytypes",
    /// ssh-keygen's output kept off the console.
    ssh_quiet_keygen: serde_json::Value = "ssh_quiet_keygen",
    /// `ssh: {emit_keys_to_console: false}` keeps the host keys off the console.
    ssh: serde_json::Map<String, serde_json::Value> = "ssh",
    /// Key types whose host keys are not printed on the console (default `ssh-dss`).
    ssh_key_console_blacklist: Vec<String> = "ssh_key_console_blacklist",
    /// Key types whose host key fingerprints are not printed on the console (default none).
    ssh_fp_console_blacklist: Vec<String> = "ssh_fp_console_blacklist",
    /// `no_ssh_fingerprints: true` keeps the authorized keys' fingerprints off the console.
    no_ssh_fingerprints: serde_json::Value = "no_ssh_fingerprints",
    /// The hash of those fingerprints (default `sha256`).
    authkey_hash: String = "authkey_hash",
    /// Password for the default user.
    password: StrLike = "password",
    /// Make the default user's password here and post it, encrypted for the instance's first
    /// SSH key, to the metadata service (nova's `get-password`; metaboot's own key).
    password_postback: Flag = "password_postback",
    /// `chpasswd: {expire, users, list}`.
    chpasswd: Chpasswd = "chpasswd",
    /// Overrides of the default user (cloud.cfg's `system_info.default_user`).
    user: UserOverride = "user",
    /// The distro's settings; of them, `default_user` (what metaboot.yaml's `default_user`
    /// gives, its options laid over those).
    system_info: SystemInfo = "system_info",
    /// Users to create or update.
    users: Users = "users",
    /// Groups to create.
    groups: Groups = "groups",
    /// Files to write, each entry read on its own.
    write_files: WriteFiles = "write_files",
    /// Commands run early at every boot.
    bootcmd: Vec<Option<Command>> = "bootcmd",
    /// Commands run once per instance, late.
    runcmd: Vec<Option<Command>> = "runcmd",
    /// `vendor_data: {prefix}`: what the vendor scripts run under (its `enabled` is read
    /// where vendor data is fetched).
    vendor_data: VendorData = "vendor_data",
    /// Extra entropy.
    random_seed: RandomSeed = "random_seed",
    /// `growpart: {mode, devices, ignore_growroot_disabled}`: the partitions grown.
    growpart: Growpart = "growpart",
    /// `resize_rootfs`: grow the root file system (default true; `noblock` counts as true).
    resize_rootfs: serde_json::Value = "resize_rootfs",
    /// `mounts`: fstab entries, lists of up to six fields (`null`: the default; a `null` mount
    /// point leaves the device out).
    mounts: serde_json::Value = "mounts",
    /// `mount_default_fields`: the six fields an entry's missing ones are taken from.
    mount_default_fields: serde_json::Value = "mount_default_fields",
    /// `swap: {filename, size, maxsize}`: a swap file.
    swap: serde_json::Map<String, serde_json::Value> = "swap",
    /// `device_aliases`: names for devices, used by `disk_setup`, `fs_setup` and `mounts`.
    device_aliases: serde_json::Value = "device_aliases",
    /// `disk_setup`: disks to partition (`{table_type, layout, overwrite}` per device).
    disk_setup: serde_json::Value = "disk_setup",
    /// `fs_setup`: file systems to make (`{device, filesystem, label, partition, …}` each).
    fs_setup: serde_json::Value = "fs_setup",
    /// `grub_dpkg: {enabled, grub-pc/install_devices, grub-pc/install_devices_empty}`: the
    /// boot disk in debconf's answers for grub-pc (on unless `enabled: false`).
    grub_dpkg: serde_json::Map<String, serde_json::Value> = "grub_dpkg",
    /// The same under its older name (used when `grub_dpkg` is absent).
    grub_dpkg_old: serde_json::Map<String, serde_json::Value> = "grub-dpkg",
    /// `timezone`: a tz database zone (`Europe/Berlin`).
    timezone: String = "timezone",
    /// `ca_certs: {remove_defaults, trusted}`: certificates the instance trusts.
    ca_certs: CaCerts = "ca_certs",
    /// The same under its older name (used when `ca_certs` is absent).
    ca_certs_old: CaCerts = "ca-certs",
    /// `locale`: the system locale (`de_DE.UTF-8`; `false` leaves it).
    locale: serde_json::Value = "locale",
    /// Where the system locale is set (default `/etc/default/locale`).
    locale_configfile: String = "locale_configfile",
    /// `packages`: packages to install (a name or `[name, version]` each).
    packages: serde_json::Value = "packages",
    /// `package_update`: refresh the package lists.
    package_update: serde_json::Value = "package_update",
    /// Its older name.
    apt_update: serde_json::Value = "apt_update",
    /// `package_upgrade`: upgrade the installed packages.
    package_upgrade: serde_json::Value = "package_upgrade",
    /// Its older name.
    apt_upgrade: serde_json::Value = "apt_upgrade",
    /// `apt: {sources, primary, security, sources_list, preserve_sources_list, proxy, conf, …}`:
    /// apt's sources, keys and configuration.
    apt: serde_json::Map<String, serde_json::Value> = "apt",
    /// `apt_pipelining`: apt's HTTP pipeline depth (`false`, 0–5, `os`).
    apt_pipelining: serde_json::Value = "apt_pipelining",
    /// cloud-init's older spellings of `apt`'s keys, read as `apt` when it is absent
    /// (`apply::apt::legacy`).
    apt_proxy: serde_json::Value = "apt_proxy",
    apt_http_proxy: serde_json::Value = "apt_http_proxy",
    apt_ftp_proxy: serde_json::Value = "apt_ftp_proxy",
    apt_https_proxy: serde_json::Value = "apt_https_proxy",
    apt_preserve_sources_list: serde_json::Value = "apt_preserve_sources_list",
    apt_custom_sources_list: serde_json::Value = "apt_custom_sources_list",
    apt_sources: serde_json::Value = "apt_sources",
    apt_mirror: serde_json::Value = "apt_mirror",
    apt_mirror_search: serde_json::Value = "apt_mirror_search",
    apt_mirror_search_dns: serde_json::Value = "apt_mirror_search_dns",
    add_apt_repo_match: serde_json::Value = "add_apt_repo_match",
    /// `rsyslog: {configs, remotes, config_dir, config_filename, service_reload_command}` (or
    /// the old list of configs).
    rsyslog: serde_json::Value = "rsyslog",
    /// The old list form's file name.
    rsyslog_filename: String = "rsyslog_filename",
    /// The old list form's directory.
    rsyslog_dir: String = "rsyslog_dir",
    /// `keyboard: {layout, model, variant, options}`: the system's keyboard layout.
    keyboard: serde_json::Map<String, serde_json::Value> = "keyboard",
    /// `disable_ec2_metadata: true`: the route to the metadata service prohibited once the run
    /// has read it.
    disable_ec2_metadata: serde_json::Value = "disable_ec2_metadata",
    /// `ntp: {enabled, ntp_client, servers, pools, config}`: the time client's servers.
    ntp: serde_json::Map<String, serde_json::Value> = "ntp",
    /// `final_message`: the line printed when the run is done (`$uptime`, `$timestamp`, …).
    final_message: StrLike = "final_message",
    /// `phone_home: {url, post, tries}`: a POST saying the instance is up.
    phone_home: serde_json::Map<String, serde_json::Value> = "phone_home",
    /// `power_state: {mode, delay, message, timeout, condition}`: power off, halt or reboot
    /// once the run is done.
    power_state: serde_json::Map<String, serde_json::Value> = "power_state",
    /// `network: {config: disabled}` leaves the network configuration alone (cloud-init's
    /// switch, usually in cloud.cfg: here metaboot.yaml).
    network: NetworkSwitch = "network",
}

/// `network:` of the configuration: only its `config` switch is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NetworkSwitch {
    /// `disabled` turns network configuration off.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

impl NetworkSwitch {
    /// True for `config: disabled`.
    pub fn disabled(&self) -> bool {
        self.config.as_ref().and_then(serde_json::Value::as_str) == Some("disabled")
    }
}

/// One value or a list of them (`ssh_authorized_keys: "ssh-ed25519 …"` is tolerated).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// A list given as YAML list or as a comma-separated string (`groups: "sudo, adm"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CsvList {
    Text(String),
    List(Vec<StrLike>),
}

impl CsvList {
    /// The items, trimmed, empty ones dropped.
    pub fn items(&self) -> Vec<String> {
        let raw: Vec<String> = match self {
            CsvList::Text(text) => text.split(',').map(str::to_owned).collect(),
            CsvList::List(list) => list.iter().map(|s| s.0.clone()).collect(),
        };
        raw.into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// `manage_etc_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum ManageEtcHosts {
    /// `false`: leave `/etc/hosts` alone.
    Off,
    /// `true` (or the deprecated `template`): render the whole file.
    Template,
    /// `localhost`: maintain only the 127.0.1.1 line.
    Localhost,
}

impl TryFrom<serde_json::Value> for ManageEtcHosts {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        match &value {
            // cloud-init's `translate_bool`: the words of a flag too (`"true"`, `"no"`).
            _ if is_true(&value) => Ok(Self::Template),
            _ if is_false(&value) => Ok(Self::Off),
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("template") => {
                Ok(Self::Template)
            }
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("localhost") => {
                Ok(Self::Localhost)
            }
            _ => Err(format!(
                "expected true, false or \"localhost\", found {value}"
            )),
        }
    }
}

/// `ssh_pwauth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum SshPwauth {
    Yes,
    No,
    Unchanged,
    /// Text that is none of these: cloud-init warns ("Unrecognized value") and leaves sshd's
    /// setting as it is; no error.
    Unrecognized,
}

impl TryFrom<serde_json::Value> for SshPwauth {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        // cloud-init's `handle_ssh_pwauth`: `util.is_true`, then `util.is_false` (`1`, `0`,
        // `" yes "` too), else unchanged.
        match &value {
            _ if is_true(&value) => Ok(Self::Yes),
            _ if is_false(&value) => Ok(Self::No),
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("unchanged") => {
                Ok(Self::Unchanged)
            }
            serde_json::Value::String(_) => Ok(Self::Unrecognized),
            // cloud-init fails the module on it (`.lower()` of a number or a list).
            _ => Err(format!(
                "expected true, false or \"unchanged\", found {value}"
            )),
        }
    }
}

/// `chpasswd`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Chpasswd {
    /// Force a password change at first login (default true).
    #[serde(default, deserialize_with = "lenient::flag")]
    pub expire: Option<bool>,
    /// `[{name, password, type}]`.
    pub users: Option<Vec<ChpasswdUser>>,
    /// Deprecated `user:password` lines (a list or one multi-line string).
    pub list: Option<OneOrMany<String>>,
}

/// One entry of `chpasswd.users`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChpasswdUser {
    pub name: String,
    pub password: Option<StrLike>,
    /// `text`, `hash` (the default) or `RANDOM`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `users`: a list, a comma-separated string, or a mapping of name → options.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Users {
    List(Vec<UserEntry>),
    Text(String),
    Map(BTreeMap<String, UserMapValue>),
    /// `users:` with no value (or `~`): cloud-init's `normalize_users_groups` warns and takes it
    /// as an empty list, so no user is made, the default user neither (unless `user:` adds
    /// it); a `null` in user data stays over the image's `users` in the merge.
    #[serde(skip)]
    Null,
    /// None of these: the step says so, and creates no user in its place (not even the
    /// default user, whom a `users` list may have left out on purpose).
    Invalid(serde_json::Value),
}

/// `user`: a new name for the default user, or options overriding its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UserOverride {
    Name(String),
    Config(Box<UserConfig>),
}

/// `system_info`, cloud.cfg's distro settings: user data may give them too, and cloud-init
/// builds its distro, the default user with it, from the merged configuration. Only
/// `default_user` is read (the other keys are the distro's own business).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    pub default_user: Option<UserConfig>,
}

/// One item of a `users` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UserEntry {
    /// `default` or a user name (comma-separated names allowed).
    Name(String),
    Config(Box<UserConfig>),
    /// An entry whose options cannot be read: that user's error, the others still applied.
    Invalid(serde_json::Value),
}

/// A value in the mapping form of `users` (`users: {default: true, bob: {gecos: Bob}}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UserMapValue {
    Enabled(bool),
    Config(Box<UserConfig>),
    /// Options that cannot be read: that user's error.
    Invalid(serde_json::Value),
}

/// A user's options (docs/protocol.md §5.4); unknown keys are ignored (those cloud-init
/// applies are warned about: `not_applied::user_warnings`). A key is read as cloud-init's
/// `ug_util` reads it: `-` as `_`, spaces around it dropped (`ssh-authorized-keys`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(remote = "Self", default)]
pub struct UserConfig {
    pub name: String,
    pub gecos: Option<StrLike>,
    #[serde(deserialize_with = "lenient::text")]
    pub homedir: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    pub primary_group: Option<String>,
    pub groups: Option<CsvList>,
    #[serde(deserialize_with = "lenient::text")]
    pub shell: Option<String>,
    #[serde(deserialize_with = "lenient::flag")]
    pub lock_passwd: Option<bool>,
    /// A hash, used only when the user is created.
    pub passwd: Option<StrLike>,
    /// A hash, set for new and existing users.
    pub hashed_passwd: Option<StrLike>,
    /// A clear-text password, hashed and set for new and existing users.
    pub plain_text_passwd: Option<StrLike>,
    pub ssh_authorized_keys: Option<OneOrMany<String>>,
    pub sudo: Option<Sudo>,
    #[serde(deserialize_with = "lenient::flag")]
    pub system: Option<bool>,
    pub uid: Option<StrLike>,
    #[serde(deserialize_with = "lenient::flag")]
    pub no_create_home: Option<bool>,
    #[serde(deserialize_with = "lenient::flag")]
    pub no_user_group: Option<bool>,
}

impl<'de> Deserialize<'de> for UserConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let options = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let options: serde_json::Map<String, serde_json::Value> = options
            .into_iter()
            .filter_map(|(key, value)| {
                let key = key.replace('-', "_").trim().to_owned();
                (!key.is_empty()).then_some((key, value))
            })
            .collect();
        // The derived reading (`remote = "Self"`), of the keys as cloud-init names them.
        UserConfig::deserialize(serde_json::Value::Object(options))
            .map_err(serde::de::Error::custom)
    }
}

/// `sudo`: one rule, several, or `false`/null for none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Sudo {
    Enabled(bool),
    Rules(OneOrMany<String>),
}

impl Sudo {
    /// The sudoers rules (none for `false`; `true` is not a rule and gives none either).
    pub fn rules(&self) -> Vec<String> {
        match self {
            Sudo::Enabled(_) => Vec::new(),
            Sudo::Rules(rules) => rules.to_vec(),
        }
    }
}

/// `groups`: a list of names or `{name: members}` items, a mapping, or a comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Groups {
    List(Vec<GroupEntry>),
    Map(BTreeMap<String, Option<CsvList>>),
    Text(String),
}

/// One item of a `groups` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum GroupEntry {
    Name(String),
    Members(BTreeMap<String, Option<CsvList>>),
}

impl Groups {
    /// `(group, members)` pairs in order.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        let members = |m: &Option<CsvList>| m.as_ref().map(CsvList::items).unwrap_or_default();
        match self {
            Groups::Text(text) => CsvList::Text(text.clone())
                .items()
                .into_iter()
                .map(|name| (name, Vec::new()))
                .collect(),
            Groups::Map(map) => map.iter().map(|(k, v)| (k.clone(), members(v))).collect(),
            Groups::List(list) => list
                .iter()
                .flat_map(|entry| match entry {
                    GroupEntry::Name(name) => vec![(name.trim().to_owned(), Vec::new())],
                    GroupEntry::Members(map) => {
                        map.iter().map(|(k, v)| (k.clone(), members(v))).collect()
                    }
                })
                .collect(),
        }
    }
}

/// A `bootcmd` / `runcmd` item: shell text, or an argv list (each item single-quoted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<StrLike>),
}

/// `vendor_data:` as cloud-init's cc_scripts_vendor reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VendorData {
    /// The words put in front of each vendor script's command (`[timeout, 30]`; a string is
    /// one word, a program's name, as cloud-init's `runparts` takes it).
    pub prefix: Option<OneOrMany<StrLike>>,
}

/// `ca_certs:` (cloud-init's cc_ca_certs; `remove-defaults` is its older spelling).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CaCerts {
    /// Deselect the distribution's own CAs first.
    pub remove_defaults: Option<bool>,
    #[serde(rename = "remove-defaults")]
    pub remove_defaults_old: Option<bool>,
    /// PEM certificates to trust.
    pub trusted: Option<OneOrMany<String>>,
}

impl CaCerts {
    /// Whether the distribution's own CAs are deselected (default false).
    pub fn removes_defaults(&self) -> bool {
        self.remove_defaults
            .or(self.remove_defaults_old)
            .unwrap_or(false)
    }
}

/// `growpart:` (cloud-init's cc_growpart).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Growpart {
    /// `auto` (default), `growpart`, `gpart`, `off` or `false`.
    pub mode: Option<serde_json::Value>,
    /// Mount points or partition device nodes (default `["/"]`).
    pub devices: Option<Vec<String>>,
    /// Grow even when `/etc/growroot-disabled` exists.
    pub ignore_growroot_disabled: Option<bool>,
}

/// `random_seed: {data, encoding}` (the `file` and `command` keys are not supported).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RandomSeed {
    pub data: Option<String>,
    pub encoding: Option<String>,
}

#[cfg(test)]
mod tests;
