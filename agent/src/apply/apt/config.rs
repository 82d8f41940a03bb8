//! The `apt` and `apt_pipelining` keys read (cloud-init's names and defaults, and its older
//! top-level `apt_*` keys through `legacy.rs`): what they ask for, as a [`Request`]; the
//! `primary`/`security` entry for this architecture chosen; what cannot be applied a warning.

use serde_json::{Map, Value};

use super::distro::dpkg_architecture;
use super::{deb822, legacy, template};
use crate::userdata::cloud_config::{CloudConfig, is_false};

/// Most entries `sources` may have.
pub const MAX_SOURCES: usize = 256;

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
pub(super) fn pipelining(value: Option<&Value>, warnings: &mut Vec<String>) -> Option<u8> {
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

pub(super) fn text(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(format!("apt: `{key}` must be text, not {other}")),
    }
}

pub(super) fn texts(key: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(|item| text(key, item)).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("apt: `{key}` must be a list, not {other}")),
    }
}

/// The entry of a `primary`/`security` list for `arch`, else the one for `default`
/// (cloud-init's `get_arch_mirrorconfig`).
pub(super) fn mirror(
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

pub(super) fn sources(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<Source>, String> {
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
