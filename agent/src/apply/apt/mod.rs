//! `apt` and `apt_pipelining` (cloud-init's cc_apt_configure and cc_apt_pipelining, per
//! instance, before `packages`): apt's sources, keys, proxies and configuration written as
//! cloud-init 22.4 writes them on the Debian family, so that the packages the user data asks
//! for come from the repositories it names.
//!
//! - `sources: {NAME: {source, key, filename, append}}`: `source` (its `$MIRROR`, `$RELEASE`,
//!   `$KEY_FILE`, … filled in, `template.rs`) appended to `/etc/apt/sources.list.d/NAME.list`;
//!   `key` (ASCII-armored) dearmored into `/etc/apt/trusted.gpg.d/NAME.gpg`, or into
//!   `/etc/apt/cloud-init.gpg.d/NAME.gpg` when the source names it as `$KEY_FILE`
//!   (`[signed-by=$KEY_FILE]`); a `ppa:…`-like source goes to `add-apt-repository`. Then
//!   `apt-get update` on the running system (once per instance, shared with `packages`).
//! - `preserve_sources_list: false` rewrites `/etc/apt/sources.list` from `sources_list` (or
//!   the distribution's default, [`Distro`]: Debian's, or Ubuntu's on Ubuntu and its
//!   derivatives; refused on another) with the `primary` and `security` mirrors for this
//!   architecture (default the distribution's);
//!   `disable_suites` comments suites out. On Ubuntu 24.04 and Debian 13 and later, or where
//!   the image already has `ubuntu.sources`/`debian.sources`, the default is written in deb822
//!   format to that file instead, and so is a deb822 `sources_list` on any release; the one-line
//!   file then steps aside, as cloud-init 24.1 and later do it (`deb822.rs`). The default keeps the image's file, as Debian's own
//!   cloud.cfg tells cloud-init (`preserve_sources_list: true`); what then does nothing is a
//!   warning (`unused_while_kept`).
//! - `proxy`/`http_proxy`, `https_proxy`, `ftp_proxy` → `90cloud-init-aptproxy`; `conf` →
//!   `94cloud-init-config` (both in `/etc/apt/apt.conf.d`).
//! - `apt_pipelining: false` or 0–5 → `90cloud-init-pipelining`; `os`, `none`, `unchanged`
//!   leave apt's default.
//!
//! Not done, each a warning: `keyid`/`keyserver` (no key server is reached: give `key`),
//! mirror `search`/`search_dns`, `debconf_selections`, `add_apt_repo_match`.

pub mod armor;
pub mod deb822;
pub mod legacy;
pub mod template;

use serde_json::{Map, Value};

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::userdata::cloud_config::{CloudConfig, is_false};
use template::{Params, TemplateError};

/// apt's file of the system's sources.
pub const SOURCES_LIST: &str = "/etc/apt/sources.list";
/// Where a source named by a relative `filename` goes.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Keys every source is checked against.
pub const TRUSTED_DIR: &str = "/etc/apt/trusted.gpg.d";
/// Keys only the sources naming them (`signed-by`) are checked against.
pub const SIGNED_BY_DIR: &str = "/etc/apt/cloud-init.gpg.d";
/// cloud-init's files for `proxy` and `conf`, and for `apt_pipelining`.
pub const PROXY_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-aptproxy";
pub const CONF_FILE: &str = "/etc/apt/apt.conf.d/94cloud-init-config";
pub const PIPELINING_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-pipelining";
/// The image's release (`VERSION_CODENAME`).
pub const OS_RELEASE: &str = "/etc/os-release";
/// The mirrors Debian's cloud.cfg gives cloud-init (`system_info: package_mirrors`).
pub const DEFAULT_PRIMARY: &str = "https://deb.debian.org/debian";
pub const DEFAULT_SECURITY: &str = "https://deb.debian.org/debian-security";
/// Ubuntu's mirrors as cloud-init's cc_apt_configure defaults them (`get_default_mirrors`):
/// the archive and its security mirror for [`UBUNTU_ARCHIVE_ARCHES`], the ports archive for
/// both on every other architecture.
pub const UBUNTU_PRIMARY: &str = "http://archive.ubuntu.com/ubuntu";
pub const UBUNTU_SECURITY: &str = "http://security.ubuntu.com/ubuntu";
pub const UBUNTU_PORTS: &str = "http://ports.ubuntu.com/ubuntu-ports";
/// The architectures of Ubuntu's main archive (cloud-init's `PRIMARY_ARCHES`).
pub const UBUNTU_ARCHIVE_ARCHES: [&str; 2] = ["amd64", "i386"];
/// Most entries `sources` may have.
pub const MAX_SOURCES: usize = 256;
/// A source matching this is for `add-apt-repository` (cloud-init's `ADD_APT_REPO_MATCH`,
/// `^[\w-]+:\w`): `ppa:owner/name`.
fn is_repository_shorthand(source: &str) -> bool {
    let Some((scheme, rest)) = source.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Debian's sources.list as cloud-init renders it by default (its `sources.list.debian.tmpl`;
/// `$SECURITY_SUITE` is `RELEASE-security`, or `RELEASE/updates` before bullseye).
const DEBIAN_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
deb $MIRROR $RELEASE main
deb-src $MIRROR $RELEASE main
deb $SECURITY $SECURITY_SUITE main
deb-src $SECURITY $SECURITY_SUITE main
deb $MIRROR $RELEASE-updates main
deb-src $MIRROR $RELEASE-updates main
deb $MIRROR $RELEASE-backports main
deb-src $MIRROR $RELEASE-backports main
";

/// Ubuntu's sources.list as cloud-init renders it by default (its `sources.list.ubuntu.tmpl`,
/// classic one-line format): every component in the release and its `-updates`, `-backports`
/// and `-security` suites, the last from the security mirror.
const UBUNTU_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
deb $MIRROR $RELEASE main restricted universe multiverse
deb $MIRROR $RELEASE-updates main restricted universe multiverse
deb $MIRROR $RELEASE-backports main restricted universe multiverse
deb $SECURITY $RELEASE-security main restricted universe multiverse
";

/// The distributions whose default sources.list and mirrors metaboot knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    Debian,
    Ubuntu,
}

impl Distro {
    /// The distribution of an os-release text: Ubuntu when `ID` or a word of `ID_LIKE` is
    /// `ubuntu` (Linux Mint, Pop!_OS), Debian when `ID` is `debian`; else `Err` with the `ID`.
    pub fn of_os_release(text: &str) -> Result<Distro, String> {
        let value = |key| crate::apply::locale::shell_value(text, key).unwrap_or_default();
        let (id, like) = (value("ID"), value("ID_LIKE"));
        if id == "ubuntu" || like.split_whitespace().any(|word| word == "ubuntu") {
            Ok(Distro::Ubuntu)
        } else if id == "debian" {
            Ok(Distro::Debian)
        } else {
            Err(id)
        }
    }

    /// The default primary and security mirrors on `arch` (a dpkg architecture).
    pub fn mirrors(self, arch: &str) -> (&'static str, &'static str) {
        match self {
            Distro::Debian => (DEFAULT_PRIMARY, DEFAULT_SECURITY),
            Distro::Ubuntu if UBUNTU_ARCHIVE_ARCHES.contains(&arch) => {
                (UBUNTU_PRIMARY, UBUNTU_SECURITY)
            }
            Distro::Ubuntu => (UBUNTU_PORTS, UBUNTU_PORTS),
        }
    }

    /// cloud-init's name of the distribution, that of its deb822 sources file.
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    /// The file of its sources in deb822 format, `ubuntu.sources` or `debian.sources`.
    pub fn deb822_file(self) -> String {
        deb822_file(self.name())
    }

    /// The keyring of its archive, its sources' default `Signed-By`.
    fn keyring(self) -> &'static str {
        match self {
            Distro::Debian => deb822::DEBIAN_KEYRING,
            Distro::Ubuntu => deb822::UBUNTU_KEYRING,
        }
    }

    /// The default sources list, in deb822 format or in the one-line one.
    fn template(self, deb822: bool) -> &'static str {
        match (self, deb822) {
            (Distro::Debian, false) => DEBIAN_TEMPLATE,
            (Distro::Ubuntu, false) => UBUNTU_TEMPLATE,
            (Distro::Debian, true) => deb822::DEBIAN_TEMPLATE,
            (Distro::Ubuntu, true) => deb822::UBUNTU_TEMPLATE,
        }
    }
}

/// The file of the sources in deb822 format of the distribution cloud-init names `name`.
pub fn deb822_file(name: &str) -> String {
    format!("{SOURCES_DIR}/{name}.sources")
}

/// Whether the distribution's default sources are written in deb822 format on this image:
/// when its deb822 file is already there (an image never writes the same sources twice), or
/// when os-release names a release whose cloud-init writes that file
/// ([`deb822::release_is_deb822`]: Ubuntu 24.04 and later, Debian 13 and later). Else the
/// one-line `/etc/apt/sources.list`, as before.
pub fn default_is_deb822(root: &Root, distro: Distro, os_release: &str) -> bool {
    root.exists(distro.deb822_file()) || deb822::release_is_deb822(os_release)
}

/// What `apt` and `apt_pipelining` ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Rewrite `sources.list` (`preserve_sources_list` false).
    pub rewrite_sources_list: bool,
    /// `sources_list`: the template of the rewritten file.
    pub sources_list: Option<String>,
    /// The mirrors chosen for this architecture (`uri`), and their keys.
    pub primary: Option<Mirror>,
    pub security: Option<Mirror>,
    /// `disable_suites`.
    pub disable_suites: Vec<String>,
    /// The proxy lines, `conf`.
    pub proxies: Vec<String>,
    pub conf: Option<String>,
    /// `sources`, sorted by name; `None` when the key is absent (no `apt-get update` then).
    pub sources: Option<Vec<Source>>,
    /// `apt_pipelining`'s depth, when it sets one.
    pub pipeline_depth: Option<u8>,
}

/// A `primary` or `security` mirror for this architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub uri: Option<String>,
    pub key: Option<String>,
}

/// One entry of `sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// `filename` (default the entry's name).
    pub filename: String,
    pub source: Option<String>,
    pub key: Option<String>,
    /// `append: false` replaces the file instead of adding the line.
    pub append: bool,
}

impl Request {
    /// Nothing asked.
    pub fn is_empty(&self) -> bool {
        *self == Request::default()
    }
}

/// The `apt` (and `apt_pipelining`) of `config`; what cannot be applied becomes a warning.
pub fn request(config: &CloudConfig, warnings: &mut Vec<String>) -> Result<Request, String> {
    let mut request = Request {
        pipeline_depth: pipelining(config.apt_pipelining.as_ref(), warnings),
        ..Request::default()
    };
    let Some(apt) = legacy::effective(config, warnings)? else {
        return Ok(request);
    };
    let apt: &Map<String, Value> = &apt;
    let arch = dpkg_architecture();
    for (key, value) in apt {
        match key.as_str() {
            "preserve_sources_list" => request.rewrite_sources_list = is_false(value),
            "sources_list" => request.sources_list = Some(text(key, value)?),
            "primary" => request.primary = mirror(key, value, arch, warnings)?,
            "security" => request.security = mirror(key, value, arch, warnings)?,
            "disable_suites" => request.disable_suites = texts(key, value)?,
            "proxy" | "http_proxy" | "https_proxy" | "ftp_proxy" => {}
            "conf" => request.conf = Some(text(key, value)?),
            "sources" => request.sources = Some(sources(value, warnings)?),
            "debconf_selections" | "add_apt_repo_match" => {
                warnings.push(format!("apt: `{key}` is not applied by metaboot"));
            }
            other => warnings.push(format!("apt: unknown key `{other}` ignored")),
        }
    }
    if !request.rewrite_sources_list {
        unused_while_kept(apt, &request, warnings);
    }
    // cloud-init's order: `proxy`, `http_proxy`, `ftp_proxy`, `https_proxy`.
    for (key, scheme) in [
        ("proxy", "http"),
        ("http_proxy", "http"),
        ("ftp_proxy", "ftp"),
        ("https_proxy", "https"),
    ] {
        if let Some(value) = apt.get(key).filter(|v| !v.is_null()) {
            let proxy = text(key, value)?;
            if !proxy.is_empty() {
                request
                    .proxies
                    .push(format!("Acquire::{scheme}::Proxy \"{proxy}\";"));
            }
        }
    }
    Ok(request)
}

/// The variables of a `sources` line the `primary` mirror fills in (and `SECURITY` too, when
/// `security` gives no `uri`), and those the `security` mirror fills in.
const PRIMARY_VARIABLES: [&str; 4] = ["MIRROR", "PRIMARY", "mirror", "primary"];
const SECURITY_VARIABLES: [&str; 2] = ["SECURITY", "security"];

/// Warns of the keys that do nothing while the image's sources list is kept: `sources_list`
/// and `disable_suites`, and `primary`/`security` unless a `sources` line uses the mirror
/// (`$MIRROR`, `$PRIMARY`, `$SECURITY`); their `key` is written only with the rewrite.
fn unused_while_kept(apt: &Map<String, Value>, request: &Request, warnings: &mut Vec<String>) {
    let given = |key: &str| apt.get(key).is_some_and(|v| !v.is_null());
    let used: Vec<String> = request
        .sources
        .iter()
        .flatten()
        .filter_map(|source| source.source.as_deref())
        .flat_map(template::variables)
        .collect();
    let uses = |names: &[&str]| used.iter().any(|name| names.contains(&name.as_str()));
    let mut unused = Vec::new();
    for key in ["sources_list", "disable_suites"] {
        if given(key) {
            unused.push(format!("`{key}`"));
        }
    }
    let security_uri = request.security.as_ref().is_some_and(|m| m.uri.is_some());
    for (key, mirror, used) in [
        (
            "primary",
            &request.primary,
            uses(&PRIMARY_VARIABLES) || (!security_uri && uses(&SECURITY_VARIABLES)),
        ),
        ("security", &request.security, uses(&SECURITY_VARIABLES)),
    ] {
        if !given(key) {
            continue;
        }
        match mirror {
            Some(mirror) if mirror.uri.is_some() && used => {
                if mirror.key.is_some() {
                    unused.push(format!("`{key}`'s `key`"));
                }
            }
            _ => unused.push(format!("`{key}`")),
        }
    }
    if !unused.is_empty() {
        warnings.push(format!(
            "apt: {} not applied: the image's sources list (/etc/apt/sources.list, or \
             sources.list.d/ubuntu.sources or debian.sources) is kept \
             (`preserve_sources_list` is true by default); set `preserve_sources_list: false` \
             to rewrite it with them",
            unused.join(", ")
        ));
    }
}

/// cloud-init's cc_apt_pipelining: `false` → 0, `0`–`5` → that depth, `os`/`none`/`unchanged`
/// (the default) → apt's own; anything else a warning.
fn pipelining(value: Option<&Value>, warnings: &mut Vec<String>) -> Option<u8> {
    let text = match value? {
        Value::String(text) => text.trim().to_ascii_lowercase(),
        Value::Bool(flag) => if *flag { "true" } else { "false" }.to_owned(),
        other => other.to_string(),
    };
    match text.as_str() {
        "false" => Some(0),
        "none" | "unchanged" | "os" => None,
        depth => match depth.parse::<u8>() {
            Ok(depth) if depth <= 5 => Some(depth),
            _ => {
                warnings.push(format!(
                    "apt_pipelining: {text:?} is not false, os or a depth from 0 to 5: ignored"
                ));
                None
            }
        },
    }
}

fn text(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(format!("apt: `{key}` must be text, not {other}")),
    }
}

fn texts(key: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(|item| text(key, item)).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("apt: `{key}` must be a list, not {other}")),
    }
}

/// The dpkg name of the architecture this agent was built for.
pub fn dpkg_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        other => other,
    }
}

/// The entry of a `primary`/`security` list for `arch`, else the one for `default`
/// (cloud-init's `get_arch_mirrorconfig`).
fn mirror(
    key: &str,
    value: &Value,
    arch: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Mirror>, String> {
    let Value::Array(entries) = value else {
        return Err(format!(
            "apt: `{key}` must be a list of {{arches, uri}} entries"
        ));
    };
    let mut chosen = None;
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(format!(
                "apt: each `{key}` entry must be a map of arches, uri"
            ));
        };
        let arches = texts("arches", entry.get("arches").unwrap_or(&Value::Null))?;
        if arches.iter().any(|a| a == arch) {
            chosen = Some(entry);
            break;
        }
        if arches.iter().any(|a| a == "default") {
            chosen = Some(entry);
        }
    }
    let Some(entry) = chosen else {
        return Ok(None);
    };
    for unsupported in ["search", "search_dns", "keyid", "keyserver"] {
        if entry.get(unsupported).is_some_and(|v| !v.is_null()) {
            warnings.push(format!(
                "apt: {key}: `{unsupported}` is not applied by metaboot (it reaches no name or \
                 key server): give `uri` and `key`"
            ));
        }
    }
    let field = |name: &str| -> Result<Option<String>, String> {
        entry
            .get(name)
            .filter(|v| !v.is_null())
            .map(|v| text(name, v))
            .transpose()
    };
    Ok(Some(Mirror {
        uri: field("uri")?,
        key: field("key")?,
    }))
}

fn sources(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<Source>, String> {
    let Value::Object(entries) = value else {
        return Err("apt: `sources` must be a map of NAME: {source, key, …}".into());
    };
    if entries.len() > MAX_SOURCES {
        return Err(format!(
            "apt: `sources` has {} entries, more than {MAX_SOURCES}",
            entries.len()
        ));
    }
    // serde_json's map is ordered by key: the entries come sorted by name.
    let mut out = Vec::new();
    for (name, entry) in entries {
        let empty = Map::new();
        let entry = match entry {
            Value::Object(entry) => entry,
            Value::Null => &empty,
            _ => return Err(format!("apt: sources: {name:?} must be a map")),
        };
        let field = |key: &str| -> Result<Option<String>, String> {
            entry
                .get(key)
                .filter(|v| !v.is_null())
                .map(|v| text(key, v).map_err(|err| format!("sources: {name:?}: {err}")))
                .transpose()
        };
        if entry.get("keyid").is_some_and(|v| !v.is_null()) && field("key")?.is_none() {
            warnings.push(format!(
                "apt: sources: {name:?}: `keyid` is not applied (metaboot reaches no key \
                 server): give the key itself as `key`"
            ));
        }
        let filename = field("filename")?.unwrap_or_else(|| name.clone());
        if filename.is_empty() || filename.contains('\0') {
            return Err(format!("apt: sources: {name:?}: an empty file name"));
        }
        let source = field("source")?;
        // cloud-init writes every `source` as a line of a `.list` file, deb822 ones included.
        if source.as_deref().is_some_and(deb822::is_deb822) {
            warnings.push(format!(
                "apt: sources: {name:?}: `source` is in deb822 format, which is written to its \
                 .list file as cloud-init writes it, where apt cannot read it: give a one-line \
                 `deb URI SUITE COMPONENTS` source"
            ));
        }
        out.push(Source {
            name: name.clone(),
            filename,
            source,
            key: field("key")?,
            append: !entry.get("append").is_some_and(is_false),
        });
    }
    Ok(out)
}

/// Why an `apt` request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("{what}: {source}")]
    Template {
        what: String,
        #[source]
        source: TemplateError,
    },
    #[error("the key of {what}: {source}")]
    Key {
        what: String,
        #[source]
        source: armor::ArmorError,
    },
    #[error(
        "sources_list: not rewritten: metaboot knows the default sources of Debian and Ubuntu, \
         and this image's os-release ID is {id:?}: give the file as `sources_list`, or keep the \
         image's with `preserve_sources_list: true`"
    )]
    NoDefaultSources { id: String },
    #[error(
        "sources_list: in deb822 format, it goes to /etc/apt/sources.list.d/<distribution>.sources, \
         and this image's os-release ID {id:?} names none: give `sources_list` in the one-line \
         format (`deb URI SUITE COMPONENTS`)"
    )]
    NoDistributionName { id: String },
    #[error("sources: {name:?} uses $KEY_FILE but gives no `key`")]
    NoKeyFile { name: String },
    #[error("sources: {name:?}: {line:?} is for add-apt-repository, which is not installed here")]
    NoAddAptRepository { name: String, line: String },
    #[error("sources: {name:?}: {line:?} needs add-apt-repository on the running system")]
    NotHost { name: String, line: String },
    #[error(transparent)]
    Tool(#[from] crate::apply::tool::ToolError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// What was written.
#[derive(Debug, Default)]
pub struct Applied {
    /// Files written, in order.
    pub written: Vec<String>,
    /// Files of an earlier run removed (a proxy or configuration no longer asked for).
    pub removed: Vec<String>,
    /// The image's one-line sources list removed, its sources being in the deb822 file written
    /// in its place (as cloud-init does off Ubuntu).
    pub superseded: Vec<String>,
    /// Sources handed to add-apt-repository.
    pub added: Vec<String>,
    /// What was done as cloud-init does it but may not be what the user meant.
    pub warnings: Vec<String>,
    /// `sources` was given: the package lists are to be refreshed.
    pub refresh: bool,
    pub errors: Vec<AptError>,
}

/// The proxy and configuration files an earlier run (metaboot's or cloud-init's) left.
pub fn stale_files(root: &Root) -> bool {
    root.exists(PROXY_FILE) || root.exists(CONF_FILE)
}

/// Removes `path` when it is there.
fn remove(root: &Root, applied: &mut Applied, path: &str) {
    match root.remove_file(path) {
        Ok(true) => applied.removed.push(path.to_owned()),
        Ok(false) => {}
        Err(err) => applied
            .errors
            .push(PathError::fail("remove", path)(err).into()),
    }
}

/// Writes what `request` asks under `root`; each part is tried when one before it failed.
pub fn apply(root: &Root, request: &Request) -> Applied {
    let mut applied = Applied::default();
    let os_release = root.read_optional_string(OS_RELEASE).ok().flatten();
    let distro = os_release
        .as_deref()
        .map_or_else(|| Err(String::new()), Distro::of_os_release);
    let mut params = mirror_params(root, request, distro.as_ref().ok().copied());
    let write = |applied: &mut Applied, path: &str, contents: &[u8]| {
        put(root, applied, path, contents);
    };
    if let Some(depth) = request.pipeline_depth {
        let text = format!(
            "//Written by metaboot per 'apt_pipelining'\nAcquire::http::Pipeline-Depth \"{depth}\";\n"
        );
        write(&mut applied, PIPELINING_FILE, text.as_bytes());
    }
    // The default sources are the distribution's, in the format its cloud-init writes them in
    // on this release; on another distribution, the rewrite is refused.
    let default_deb822 =
        |distro: Distro| default_is_deb822(root, distro, os_release.as_deref().unwrap_or_default());
    let template = match (request.rewrite_sources_list, &request.sources_list, &distro) {
        (false, ..) => None,
        (true, Some(template), _) => Some(template.as_str()),
        (true, None, Ok(distro)) => Some(distro.template(default_deb822(*distro))),
        (true, None, Err(id)) => {
            applied
                .errors
                .push(AptError::NoDefaultSources { id: id.clone() });
            None
        }
    };
    if let Some(template) = template {
        // cloud-init 25.1: a mirror's key file is the template's `primary_key`/`security_key`.
        let mut list_params = params.clone();
        for (file, mirror) in [
            ("primary", &request.primary),
            ("security", &request.security),
        ] {
            if let Some(key) = mirror.as_ref().and_then(|m| m.key.as_deref()) {
                match armor::dearmor(key) {
                    Ok(binary) => {
                        let path = format!("{TRUSTED_DIR}/{file}.gpg");
                        if put(root, &mut applied, &path, &binary) {
                            list_params.insert(format!("{file}_key"), path);
                        }
                    }
                    Err(source) => applied.errors.push(AptError::Key {
                        what: format!("the {file} mirror"),
                        source,
                    }),
                }
            }
        }
        // The `Signed-By` of the distribution's deb822 sources (jinja's `default` in cloud-init's
        // templates): for metaboot's templates only, not a variable of the user's.
        if let (None, Ok(distro)) = (&request.sources_list, &distro) {
            let key = |name: &str| list_params.get(name).cloned();
            let (primary_key, security_key) = (key("primary_key"), key("security_key"));
            let signed_by = deb822::signed_by(
                distro.keyring(),
                primary_key.as_deref(),
                security_key.as_deref(),
            );
            for (name, value) in signed_by {
                list_params.insert(name.to_owned(), value);
            }
        }
        match template::render(template, &list_params) {
            Ok(rendered) => {
                write_sources_list(root, &rendered, request, &params, &distro, &mut applied);
            }
            Err(source) => applied.errors.push(AptError::Template {
                what: "sources_list".into(),
                source,
            }),
        }
    }
    // A proxy or a configuration no longer asked for (an image made with a build proxy) is
    // removed, as cloud-init removes them: apt must not keep going through it.
    if request.proxies.is_empty() {
        remove(root, &mut applied, PROXY_FILE);
    } else {
        let text = request.proxies.join("\n") + "\n";
        write(&mut applied, PROXY_FILE, text.as_bytes());
    }
    match request.conf.as_deref().filter(|conf| !conf.is_empty()) {
        Some(conf) => write(&mut applied, CONF_FILE, conf.as_bytes()),
        None => remove(root, &mut applied, CONF_FILE),
    }
    for source in request.sources.iter().flatten() {
        if let Err(err) = add_source(root, source, &mut params, &mut applied) {
            applied.errors.push(err);
        }
    }
    applied.refresh = request.sources.is_some();
    applied
}

/// Writes `path` (mode 0644 when new); true when written, else the error is noted.
fn put(root: &Root, applied: &mut Applied, path: &str, contents: &[u8]) -> bool {
    match root.write_atomic(path, contents, &WriteOptions::keep_or(0o644)) {
        Ok(()) => {
            applied.written.push(path.to_owned());
            true
        }
        Err(err) => {
            applied.errors.push(err.into());
            false
        }
    }
}

/// Writes a rendered sources list where cloud-init writes it, its `disable_suites` commented
/// out: one in deb822 format to the distribution's `.sources` file, after which the one-line
/// `/etc/apt/sources.list` steps aside (Ubuntu's note pointing to the new file in it, else
/// removed) so that apt reads no source twice; one in the one-line format to
/// `/etc/apt/sources.list`.
fn write_sources_list(
    root: &Root,
    rendered: &str,
    request: &Request,
    params: &Params,
    distro: &Result<Distro, String>,
    applied: &mut Applied,
) {
    let text = disable_suites(rendered, &request.disable_suites, params);
    if !deb822::is_deb822(rendered) {
        if let Ok(distro) = distro {
            let image_file = distro.deb822_file();
            if root.exists(&image_file) {
                applied.warnings.push(format!(
                    "apt: `sources_list` is in the one-line format: written to {SOURCES_LIST} as \
                     cloud-init writes it, beside the image's {image_file}, which is kept: apt \
                     reads both (give `sources_list` in deb822 format to replace that file)"
                ));
            }
        }
        put(root, applied, SOURCES_LIST, text.as_bytes());
        return;
    }
    let name = match distro {
        Ok(distro) => distro.name(),
        Err(id) if is_plain_name(id) => id.as_str(),
        Err(id) => {
            applied
                .errors
                .push(AptError::NoDistributionName { id: id.clone() });
            return;
        }
    };
    if !put(root, applied, &deb822_file(name), text.as_bytes()) {
        return;
    }
    if *distro == Ok(Distro::Ubuntu) {
        match root.read_optional_string(SOURCES_LIST) {
            Ok(Some(old)) if old != deb822::UBUNTU_SOURCES_LIST_NOTE => {
                put(
                    root,
                    applied,
                    SOURCES_LIST,
                    deb822::UBUNTU_SOURCES_LIST_NOTE.as_bytes(),
                );
            }
            Ok(_) => {}
            Err(err) => applied
                .errors
                .push(PathError::fail("read", SOURCES_LIST)(err).into()),
        }
        return;
    }
    match root.remove_file(SOURCES_LIST) {
        Ok(true) => applied.superseded.push(SOURCES_LIST.to_owned()),
        Ok(false) => {}
        Err(err) => applied
            .errors
            .push(PathError::fail("remove", SOURCES_LIST)(err).into()),
    }
}

/// An os-release `ID` that can name a file: lowercase letters, digits, `.`, `_`, `-`.
fn is_plain_name(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// The template parameters: `MIRROR`/`PRIMARY`, `SECURITY` (the security mirror defaults to
/// the primary, both to the distribution's: Ubuntu's on Ubuntu, else Debian's),
/// `RELEASE`/`codename` when the image names its release.
fn mirror_params(root: &Root, request: &Request, distro: Option<Distro>) -> Params {
    let uri = |m: &Option<Mirror>| m.as_ref().and_then(|m| m.uri.clone());
    let (default_primary, default_security) = distro
        .unwrap_or(Distro::Debian)
        .mirrors(dpkg_architecture());
    let (primary, security) = match (uri(&request.primary), uri(&request.security)) {
        (Some(primary), security) => (primary.clone(), security.unwrap_or(primary)),
        (None, security) => (
            default_primary.to_owned(),
            security.unwrap_or_else(|| default_security.to_owned()),
        ),
    };
    let mut params = Params::new();
    for (name, value) in [
        ("MIRROR", &primary),
        ("PRIMARY", &primary),
        ("SECURITY", &security),
    ] {
        params.insert(name.to_owned(), value.clone());
        params.insert(name.to_ascii_lowercase(), value.clone());
    }
    if let Some(release) = release(root) {
        let suite = if ["buster", "stretch", "jessie"].contains(&release.as_str()) {
            format!("{release}/updates")
        } else {
            format!("{release}-security")
        };
        params.insert("SECURITY_SUITE".into(), suite);
        params.insert("RELEASE".into(), release.clone());
        params.insert("codename".into(), release);
    }
    params
}

/// `VERSION_CODENAME` of the image's os-release.
fn release(root: &Root) -> Option<String> {
    let text = root.read_optional_string(OS_RELEASE).ok()??;
    crate::apply::locale::shell_value(&text, "VERSION_CODENAME").filter(|name| !name.is_empty())
}

/// cloud-init's `disable_suites`: each line (not a comment) whose suite is one of `suites`
/// (`updates`, `security`, `backports`, `proposed` and `release` name the release's) commented
/// out; in a deb822 text, the suites taken out of their sections ([`deb822::disable_suites`]).
pub fn disable_suites(text: &str, suites: &[String], params: &Params) -> String {
    if suites.is_empty() {
        return text.to_owned();
    }
    let release = params.get("RELEASE").map_or("", String::as_str);
    let disabled: Vec<String> = suites
        .iter()
        .map(|suite| match suite.as_str() {
            "updates" | "backports" | "security" | "proposed" => format!("{release}-{suite}"),
            "release" => release.to_owned(),
            other => other.replace("$RELEASE", release),
        })
        .collect();
    if deb822::is_deb822(text) {
        return deb822::disable_suites(text, &disabled);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with('#') && suite_of(line).is_some_and(|s| disabled.iter().any(|d| d == s))
        {
            out.push_str("# suite disabled by metaboot: ");
        }
        out.push_str(line);
    }
    out
}

/// The suite of a source line: its third column, after any `[ options ]`.
fn suite_of(line: &str) -> Option<&str> {
    let mut columns = line.split_whitespace();
    columns.next()?;
    let mut column = columns.next()?;
    if column.starts_with('[') {
        while !column.ends_with(']') {
            column = columns.next()?;
        }
        columns.next()?;
    }
    columns.next()
}

/// One `sources` entry: its key, then its line (or add-apt-repository).
fn add_source(
    root: &Root,
    source: &Source,
    params: &mut Params,
    applied: &mut Applied,
) -> Result<(), AptError> {
    let options = WriteOptions::keep_or(0o644);
    let signed_by = source
        .source
        .as_deref()
        .is_some_and(|line| line.contains("$KEY_FILE") || line.contains("${KEY_FILE}"));
    params.remove("KEY_FILE");
    if let Some(key) = &source.key {
        let binary = armor::dearmor(key).map_err(|err| AptError::Key {
            what: format!("sources: {:?}", source.name),
            source: err,
        })?;
        let dir = if signed_by {
            SIGNED_BY_DIR
        } else {
            TRUSTED_DIR
        };
        let path = format!("{dir}/{}.gpg", stem(&source.filename));
        root.write_atomic(&path, &binary, &options)?;
        applied.written.push(path.clone());
        params.insert("KEY_FILE".into(), path);
    } else if signed_by {
        return Err(AptError::NoKeyFile {
            name: source.name.clone(),
        });
    }
    let Some(line) = &source.source else {
        return Ok(());
    };
    let line = template::render(line, params).map_err(|err| AptError::Template {
        what: format!("sources: {:?}", source.name),
        source: err,
    })?;
    if is_repository_shorthand(&line) {
        if !root.is_host() {
            return Err(AptError::NotHost {
                name: source.name.clone(),
                line,
            });
        }
        root.publish();
        return match crate::apply::tool::run("add-apt-repository", &["--no-update", &line])? {
            Some(()) => {
                applied.added.push(line);
                Ok(())
            }
            None => Err(AptError::NoAddAptRepository {
                name: source.name.clone(),
                line,
            }),
        };
    }
    let mut path = if source.filename.starts_with('/') {
        source.filename.clone()
    } else {
        format!("{SOURCES_DIR}/{}", source.filename)
    };
    if !path.ends_with(".list") {
        path.push_str(".list");
    }
    let shown = root.host_path(&path);
    let (dir, name) = root
        .parent(&path, true)
        .map_err(PathError::fail("create directory", &shown))?;
    let mut text = if source.append {
        // As write_files' `append`: never through a symlink or a hard link.
        dir.read_unshared(&name)
            .map_err(PathError::fail("read", &shown))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    dir.write_atomic_as(&name, &shown, text.as_bytes(), &options)?;
    applied.written.push(path);
    Ok(())
}

/// A file name without its directory and last extension (Python's `pathlib.Path.stem`).
fn stem(filename: &str) -> &str {
    std::path::Path::new(filename)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(filename)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deb822;
