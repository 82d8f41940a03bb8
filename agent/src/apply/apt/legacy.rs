//! cloud-init's older apt keys (`apt_proxy`, `apt_mirror`, `apt_sources`, …, before `apt:`
//! took them in 0.7.9), read as cloud-init 22.4's `convert_to_v3_apt_format` reads them: moved
//! under `apt` when user data has no `apt`, dropped in its favour when it has one. Each use is a
//! warning that names the key to write instead.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::userdata::cloud_config::CloudConfig;

/// The name `apt_sources`' list entries without a `filename` take (cloud-init's).
const UNNAMED_SOURCE: &str = "cloud_config_sources.list";

/// The older keys that move under `apt` as they are, with their new names.
fn renames(config: &CloudConfig) -> [(&'static str, &'static str, Option<&Value>); 7] {
    [
        ("apt_proxy", "proxy", config.apt_proxy.as_ref()),
        (
            "apt_http_proxy",
            "http_proxy",
            config.apt_http_proxy.as_ref(),
        ),
        // cloud-init 22.4 swaps these two (its ftp proxy becomes the https one); each is
        // read here as its name says.
        ("apt_ftp_proxy", "ftp_proxy", config.apt_ftp_proxy.as_ref()),
        (
            "apt_https_proxy",
            "https_proxy",
            config.apt_https_proxy.as_ref(),
        ),
        (
            "apt_preserve_sources_list",
            "preserve_sources_list",
            config.apt_preserve_sources_list.as_ref(),
        ),
        (
            "apt_custom_sources_list",
            "sources_list",
            config.apt_custom_sources_list.as_ref(),
        ),
        (
            "add_apt_repo_match",
            "add_apt_repo_match",
            config.add_apt_repo_match.as_ref(),
        ),
    ]
}

/// The older mirror keys, and where each goes in `primary`'s entry.
fn mirror_keys(config: &CloudConfig) -> [(&'static str, &'static str, Option<&Value>); 3] {
    [
        ("apt_mirror", "uri", config.apt_mirror.as_ref()),
        (
            "apt_mirror_search",
            "search",
            config.apt_mirror_search.as_ref(),
        ),
        (
            "apt_mirror_search_dns",
            "search_dns",
            config.apt_mirror_search_dns.as_ref(),
        ),
    ]
}

/// A value cloud-init counts as not given.
fn given(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null() && v.as_str() != Some(""))
}

/// The keys of `keys` that are given, with their new names and values.
fn present<'c, const N: usize>(
    keys: [(&'static str, &'static str, Option<&'c Value>); N],
) -> Vec<(&'static str, &'static str, &'c Value)> {
    keys.into_iter()
        .filter_map(|(old, new, value)| given(value).map(|value| (old, new, value)))
        .collect()
}

/// The `apt` to apply: user data's own, or the older keys moved under it when it has none.
pub fn effective<'c>(
    config: &'c CloudConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<Cow<'c, Map<String, Value>>>, String> {
    let sources = given(config.apt_sources.as_ref());
    let renamed = present(renames(config));
    let mirrors = present(mirror_keys(config));
    let mut old_keys: Vec<&str> = renamed.iter().map(|(old, ..)| *old).collect();
    old_keys.extend(mirrors.iter().map(|(old, ..)| *old));
    if sources.is_some() {
        old_keys.push("apt_sources");
    }
    if old_keys.is_empty() {
        return Ok(config.apt.as_ref().map(Cow::Borrowed));
    }
    old_keys.sort_unstable();
    if let Some(apt) = &config.apt {
        // cloud-init prefers `apt` too, and fails the module when a key says otherwise.
        warnings.push(format!(
            "{} ignored: cloud-init's older apt keys are not read when `apt` is set",
            quoted(&old_keys)
        ));
        for (old, new, value) in &renamed {
            if apt
                .get(*new)
                .is_some_and(|set| !set.is_null() && set != *value)
            {
                warnings.push(format!(
                    "`{old}` and `apt: {{{new}: …}}` differ: `apt`'s is used"
                ));
            }
        }
        return Ok(Some(Cow::Borrowed(apt)));
    }
    let mut apt = Map::new();
    for (_, new, value) in &renamed {
        apt.insert((*new).to_owned(), (*value).clone());
    }
    if let Some(sources) = sources {
        apt.insert("sources".into(), Value::Object(sources_map(sources)?));
    }
    if !mirrors.is_empty() {
        let mut entry = Map::new();
        entry.insert("arches".into(), Value::from(vec!["default"]));
        for (_, new, value) in &mirrors {
            entry.insert((*new).to_owned(), (*value).clone());
        }
        apt.insert("primary".into(), Value::Array(vec![Value::Object(entry)]));
    }
    let moved: Vec<String> = renamed
        .iter()
        .map(|(old, new, _)| format!("{old} → apt.{new}"))
        .chain(sources.map(|_| "apt_sources → apt.sources".to_owned()))
        .chain(
            mirrors
                .iter()
                .map(|(old, new, _)| format!("{old} → apt.primary[0].{new}")),
        )
        .collect();
    warnings.push(format!(
        "cloud-init's older apt keys read as `apt` ({}): write them under `apt`",
        moved.join(", ")
    ));
    Ok(Some(Cow::Owned(apt)))
}

/// `apt_sources` as `apt.sources` takes it: a list (the oldest form) becomes a map keyed by each
/// entry's `filename`, or `cloud_config_sources.list` (made unique) for one without.
fn sources_map(sources: &Value) -> Result<Map<String, Value>, String> {
    match sources {
        Value::Object(map) => Ok(map.clone()),
        Value::Array(entries) => {
            let mut map = Map::new();
            for entry in entries {
                let Value::Object(fields) = entry else {
                    return Err("apt_sources: each entry must be a map".into());
                };
                let name = match fields.get("filename").and_then(Value::as_str) {
                    Some(name) => name.to_owned(),
                    None => unique(&map, UNNAMED_SOURCE),
                };
                map.insert(name, entry.clone());
            }
            Ok(map)
        }
        _ => Err("apt_sources must be a list or a map".into()),
    }
}

/// `base`, or `base_N` for the first N it is not taken with.
fn unique(map: &Map<String, Value>, base: &str) -> String {
    if !map.contains_key(base) {
        return base.to_owned();
    }
    (0..)
        .map(|n| format!("{base}_{n}"))
        .find(|name| !map.contains_key(name))
        .unwrap_or_else(|| base.to_owned())
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: Value) -> (Option<Map<String, Value>>, Vec<String>) {
        let config = CloudConfig::from_json(value);
        let mut warnings = Vec::new();
        let apt = effective(&config, &mut warnings)
            .unwrap()
            .map(Cow::into_owned);
        (apt, warnings)
    }

    #[test]
    fn older_keys_move_under_apt_with_a_warning() {
        let (apt, warnings) = read(json!({
            "apt_proxy": "http://10.0.0.1:3142",
            "apt_ftp_proxy": "ftp://10.0.0.1:21",
            "apt_preserve_sources_list": true,
            "apt_mirror": "http://mirror.example/debian",
            "apt_sources": [
                {"source": "deb http://a.example/ bookworm main", "filename": "a.list"},
                {"source": "deb http://b.example/ bookworm main"},
                {"source": "deb http://c.example/ bookworm main"},
            ],
            "apt_http_proxy": "",
        }));
        assert_eq!(
            Value::Object(apt.unwrap()),
            json!({
                "proxy": "http://10.0.0.1:3142",
                "ftp_proxy": "ftp://10.0.0.1:21",
                "preserve_sources_list": true,
                "primary": [{"arches": ["default"], "uri": "http://mirror.example/debian"}],
                "sources": {
                    "a.list": {"source": "deb http://a.example/ bookworm main", "filename": "a.list"},
                    "cloud_config_sources.list": {"source": "deb http://b.example/ bookworm main"},
                    "cloud_config_sources.list_0": {"source": "deb http://c.example/ bookworm main"},
                },
            })
        );
        assert_eq!(
            warnings,
            [
                "cloud-init's older apt keys read as `apt` (apt_proxy → apt.proxy, apt_ftp_proxy → \
              apt.ftp_proxy, apt_preserve_sources_list → apt.preserve_sources_list, apt_sources → \
              apt.sources, apt_mirror → apt.primary[0].uri): write them under `apt`"
            ]
        );
    }

    #[test]
    fn apt_wins_over_older_keys() {
        let (apt, warnings) = read(json!({
            "apt": {"proxy": "http://new:3142"},
            "apt_proxy": "http://old:3142",
            "apt_mirror": "http://mirror.example/debian",
        }));
        assert_eq!(
            Value::Object(apt.unwrap()),
            json!({"proxy": "http://new:3142"})
        );
        assert_eq!(
            warnings,
            [
                "`apt_mirror`, `apt_proxy` ignored: cloud-init's older apt keys are not read \
                 when `apt` is set",
                "`apt_proxy` and `apt: {proxy: …}` differ: `apt`'s is used",
            ]
        );
    }

    #[test]
    fn without_older_keys_apt_is_as_given() {
        assert_eq!(read(json!({})), (None, Vec::new()));
        let (apt, warnings) = read(json!({"apt": {"conf": "x"}}));
        assert_eq!(Value::Object(apt.unwrap()), json!({"conf": "x"}));
        assert!(warnings.is_empty());
    }

    #[test]
    fn sources_of_no_known_shape_are_refused() {
        let config = CloudConfig::from_json(json!({"apt_sources": "deb x"}));
        assert_eq!(
            effective(&config, &mut Vec::new()),
            Err("apt_sources must be a list or a map".into())
        );
    }
}
