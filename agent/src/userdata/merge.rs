//! How `#cloud-config` parts merge into one configuration, as cloud-init's
//! `CloudConfigPartHandler` merges them: each part onto what the parts before it gave, by the
//! part's own mergers (its `merge_how` / `merge_type` key, then its `Merge-Type` MIME header),
//! else by `dict(replace)+list()+str()`: a key a part sets replaces the earlier value whole.
//!
//! Mergers (cloud-init's `mergers/m_dict.py`, `m_list.py`, `m_str.py`):
//! - `dict(replace | no_replace, recurse_list, recurse_str, allow_delete)`: keys only the new
//!   part has are added; for a key both have, `replace` takes the new value, `no_replace` keeps
//!   the old one but merges a new mapping into it (and a new list or text, with
//!   `recurse_list` / `recurse_str`); `allow_delete` drops a key the new part sets to null.
//! - `list(replace | append | prepend | no_replace, recurse_dict, recurse_list, recurse_str)`:
//!   `append` / `prepend` join the lists; `replace` replaces item by item (an old list longer
//!   than the new one keeps its tail), merging items as the `recurse_*` settings say.
//! - `str(append)`: joins texts; else the new text.
//!
//! A value no named merger handles (a number, a boolean, null; a mapping when no `dict` merger
//! is named) keeps its old value, as cloud-init's lookup does.

use serde_json::Value;

use super::yaml::ConfigMap;

/// The mergers of a part that names none.
pub const DEFAULT_MERGERS: &str = "dict(replace)+list()+str()";
/// The cloud-config key that names a part's mergers (`merge_type`: its older name).
pub const MERGE_HOW: &str = "merge_how";
const MERGE_TYPE: &str = "merge_type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Replace,
    NoReplace,
    Append,
    Prepend,
}

/// One named merger with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Merger {
    Dict {
        replace: bool,
        recurse_list: bool,
        recurse_str: bool,
        allow_delete: bool,
    },
    List {
        method: Method,
        recurse_dict: bool,
        recurse_list: bool,
        recurse_str: bool,
    },
    Str {
        append: bool,
    },
}

/// The mergers of one part, in the order named (the first of a kind is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mergers(Vec<Merger>);

impl Mergers {
    /// Mergers from `merge_how` text: `name(setting, …)+…` (any case, `-` for `_`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut named = Vec::new();
        for item in text.split('+') {
            let item = item.trim().to_ascii_lowercase().replace('-', "_");
            if item.is_empty() {
                continue;
            }
            let (name, settings) = item
                .strip_suffix(')')
                .and_then(|head| head.split_once('('))
                .ok_or_else(|| format!("merger {item:?} is not NAME(SETTINGS)"))?;
            let settings: Vec<String> = settings
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            named.push(Merger::named(name, &settings)?);
        }
        Ok(Mergers(named))
    }

    /// Mergers from a `merge_how` value: text, or a list of `{name, settings}` mappings (or
    /// `[name, setting, …]` lists).
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let items = match value {
            Value::String(text) => return Self::parse(text),
            Value::Array(items) => items,
            _ => return Err("merge_how must be text or a list of mergers".to_owned()),
        };
        let mut named = Vec::new();
        for item in items {
            let (name, settings) = match item {
                Value::Object(map) => (map.get("name"), map.get("settings")),
                Value::Array(list) => (list.first(), None),
                _ => (None, None),
            };
            let name = name
                .and_then(Value::as_str)
                .ok_or("a merger of merge_how has no name")?
                .trim()
                .to_ascii_lowercase()
                .replace('-', "_");
            let settings: Vec<String> = match (item, settings) {
                (Value::Array(list), _) => list.iter().skip(1).filter_map(text).collect(),
                (_, Some(Value::Array(list))) => list.iter().filter_map(text).collect(),
                (_, None | Some(Value::Null)) => Vec::new(),
                (_, Some(_)) => return Err(format!("merger {name}: settings must be a list")),
            };
            named.push(Merger::named(&name, &settings)?);
        }
        Ok(Mergers(named))
    }

    /// The mergers a part names: its `merge_how` (else `merge_type`) key, taken out of it, then
    /// its `Merge-Type` header; `None` when it names none.
    pub fn of_part(map: &mut ConfigMap, header: Option<&str>) -> Result<Option<Self>, String> {
        let mut take = |key: &str| map.remove(key).filter(|value| !value.is_null());
        let key = take(MERGE_HOW).or_else(|| take(MERGE_TYPE));
        let mut named = match key {
            Some(value) => Self::from_value(&value)?.0,
            None => Vec::new(),
        };
        if let Some(header) = header {
            named.extend(Self::parse(header)?.0);
        }
        Ok((!named.is_empty()).then_some(Mergers(named)))
    }

    /// The text `parse` reads back as the same mergers.
    pub fn text(&self) -> String {
        let items: Vec<String> = self.0.iter().map(Merger::text).collect();
        items.join("+")
    }

    /// `new` merged onto `old`.
    fn merge(&self, old: Value, new: Value) -> Value {
        let merger = |wanted: fn(&Merger) -> bool| self.0.iter().find(|m| wanted(m));
        match old {
            Value::Object(old) => match merger(|m| matches!(m, Merger::Dict { .. })) {
                Some(dict) => self.on_dict(dict, old, new),
                None => Value::Object(old),
            },
            Value::Array(old) => match merger(|m| matches!(m, Merger::List { .. })) {
                Some(list) => self.on_list(list, old, new),
                None => Value::Array(old),
            },
            Value::String(old) => match merger(|m| matches!(m, Merger::Str { .. })) {
                Some(&Merger::Str { append: true }) => match new {
                    Value::String(new) => Value::String(old + &new),
                    new => new,
                },
                Some(_) => new,
                None => Value::String(old),
            },
            old => old,
        }
    }

    fn on_dict(&self, dict: &Merger, mut old: ConfigMap, new: Value) -> Value {
        let &Merger::Dict {
            replace,
            recurse_list,
            recurse_str,
            allow_delete,
        } = dict
        else {
            return Value::Object(old);
        };
        let Value::Object(new) = new else {
            return Value::Object(old);
        };
        for (key, value) in new {
            let Some(current) = old.remove(&key) else {
                old.insert(key, value);
                continue;
            };
            if value.is_null() && allow_delete {
                continue;
            }
            let merged = match value {
                value if replace => value,
                value @ Value::Array(_) if recurse_list => self.merge(current, value),
                value @ Value::String(_) if recurse_str => self.merge(current, value),
                value @ Value::Object(_) => self.merge(current, value),
                _ => current,
            };
            old.insert(key, merged);
        }
        Value::Object(old)
    }

    fn on_list(&self, list: &Merger, old: Vec<Value>, new: Value) -> Value {
        let &Merger::List {
            method,
            recurse_dict,
            recurse_list,
            recurse_str,
        } = list
        else {
            return Value::Array(old);
        };
        let new = match new {
            Value::Array(new) => new,
            new if method == Method::Replace => return new,
            new => vec![new],
        };
        match method {
            Method::Append => Value::Array(old.into_iter().chain(new).collect()),
            Method::Prepend => Value::Array(new.into_iter().chain(old).collect()),
            Method::NoReplace => Value::Array(old),
            Method::Replace => {
                let mut merged = old;
                for (i, value) in new.into_iter().enumerate() {
                    let Some(slot) = merged.get_mut(i) else {
                        break;
                    };
                    let current = std::mem::take(slot);
                    *slot = match value {
                        value @ Value::Array(_) if recurse_list => self.merge(current, value),
                        value @ Value::String(_) if recurse_str => self.merge(current, value),
                        value @ Value::Object(_) if recurse_dict => self.merge(current, value),
                        value => value,
                    };
                }
                Value::Array(merged)
            }
        }
    }
}

impl Merger {
    fn named(name: &str, settings: &[String]) -> Result<Merger, String> {
        let has = |wanted: &[&str]| settings.iter().any(|s| wanted.contains(&s.as_str()));
        let first = |methods: &[(&str, Method)], default| {
            methods
                .iter()
                .find(|(word, _)| has(&[word]))
                .map_or(default, |(_, method)| *method)
        };
        match name.strip_prefix("m_").unwrap_or(name) {
            "dict" => Ok(Merger::Dict {
                replace: first(
                    &[
                        ("replace", Method::Replace),
                        ("no_replace", Method::NoReplace),
                    ],
                    Method::NoReplace,
                ) == Method::Replace,
                recurse_list: has(&["recurse_array", "recurse_list"]),
                recurse_str: has(&["recurse_str"]),
                allow_delete: has(&["allow_delete"]),
            }),
            "list" => Ok(Merger::List {
                method: first(
                    &[
                        ("append", Method::Append),
                        ("prepend", Method::Prepend),
                        ("replace", Method::Replace),
                        ("no_replace", Method::NoReplace),
                    ],
                    Method::Replace,
                ),
                recurse_dict: has(&["recurse_dict"]),
                recurse_list: has(&["recurse_array", "recurse_list"]),
                recurse_str: has(&["recurse_str"]),
            }),
            "str" => Ok(Merger::Str {
                append: has(&["append"]),
            }),
            other => Err(format!("unknown merger {other:?} (dict, list or str)")),
        }
    }

    fn text(&self) -> String {
        let flags = |pairs: &[(&str, bool)]| {
            let on: Vec<&str> = pairs
                .iter()
                .filter(|(_, on)| *on)
                .map(|(word, _)| *word)
                .collect();
            on.join(",")
        };
        match *self {
            Merger::Dict {
                replace,
                recurse_list,
                recurse_str,
                allow_delete,
            } => format!(
                "dict({})",
                flags(&[
                    ("replace", replace),
                    ("no_replace", !replace),
                    ("recurse_list", recurse_list),
                    ("recurse_str", recurse_str),
                    ("allow_delete", allow_delete),
                ])
            ),
            Merger::List {
                method,
                recurse_dict,
                recurse_list,
                recurse_str,
            } => format!(
                "list({})",
                flags(&[
                    ("append", method == Method::Append),
                    ("prepend", method == Method::Prepend),
                    ("replace", method == Method::Replace),
                    ("no_replace", method == Method::NoReplace),
                    ("recurse_dict", recurse_dict),
                    ("recurse_list", recurse_list),
                    ("recurse_str", recurse_str),
                ])
            ),
            Merger::Str { append } => format!("str({})", flags(&[("append", append)])),
        }
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(|s| s.trim().to_ascii_lowercase())
}

/// The parts' configurations merged in order, each by its own mergers (kept, checked, under
/// [`MERGE_HOW`] by the decoder) or the default ones.
pub fn parts(configs: &[ConfigMap]) -> ConfigMap {
    let default = Mergers::parse(DEFAULT_MERGERS).unwrap_or(Mergers(Vec::new()));
    let mut merged = Value::Object(ConfigMap::new());
    for config in configs {
        let mut config = config.clone();
        let mergers = Mergers::of_part(&mut config, None).ok().flatten();
        merged = mergers
            .as_ref()
            .unwrap_or(&default)
            .merge(merged, Value::Object(config));
    }
    match merged {
        Value::Object(map) => map,
        _ => ConfigMap::new(),
    }
}

#[cfg(test)]
mod tests;
