//! `write_files` entries (docs/protocol.md §5.5), each read on its own so that a malformed one
//! fails alone.

use std::fmt;

use serde::Deserialize;
use serde::de::Deserializer;

use super::str_like::StrLike;

/// `write_files`: a list whose entries are read one by one, so that an entry of the wrong shape
/// fails alone (reported by the step that would have written it) and the others are written.
#[derive(Debug, Clone, Default)]
pub struct WriteFiles(pub Vec<Result<WriteFile, BadWriteFile>>);

impl WriteFiles {
    /// The entries that were read.
    pub fn entries(&self) -> impl Iterator<Item = &WriteFile> {
        self.0.iter().filter_map(|item| item.as_ref().ok())
    }
}

/// A `write_files` entry of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWriteFile {
    /// Its position in the list, from 1.
    pub index: usize,
    /// Its `path`, when that is a string.
    pub path: Option<String>,
    /// Its `defer`, when that is a boolean: which step reports it.
    pub defer: bool,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BadWriteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write_files entry {}", self.index)?;
        if let Some(path) = &self.path {
            write!(f, " ({path})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl<'de> Deserialize<'de> for WriteFiles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<serde_json::Value>::deserialize(deserializer)?;
        let read = |(i, item): (usize, serde_json::Value)| {
            let path = item.get("path").and_then(|p| p.as_str()).map(str::to_owned);
            let defer = item.get("defer").and_then(|d| d.as_bool()).unwrap_or(false);
            serde_json::from_value::<WriteFile>(item).map_err(|err| BadWriteFile {
                index: i + 1,
                path,
                defer,
                message: super::shape_error::without_values(&err),
            })
        };
        Ok(WriteFiles(
            items.into_iter().enumerate().map(read).collect(),
        ))
    }
}

/// One `write_files` entry (docs/protocol.md §5.5).
#[derive(Debug, Clone, Deserialize)]
pub struct WriteFile {
    pub path: String,
    #[serde(default)]
    pub content: Option<StrLike>,
    /// `source: {uri, headers}`: not supported (a warning), `content` is used.
    #[serde(default)]
    pub source: Option<serde_json::Value>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub permissions: Option<Permissions>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::flag")]
    pub append: Option<bool>,
    #[serde(default, deserialize_with = "super::lenient::flag")]
    pub defer: Option<bool>,
}

/// File permissions: a string is octal (`"0644"`, `"0o644"`, and unquoted `0644`, which the
/// loader keeps as text); a plain integer is the mode value itself, as in cloud-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct Permissions(pub u32);

/// Highest mode bits `permissions` may set.
pub const MAX_PERMISSIONS: u32 = 0o7777;

impl TryFrom<serde_json::Value> for Permissions {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        let mode = match &value {
            serde_json::Value::String(s) => {
                let digits = s.trim();
                let digits = digits
                    .strip_prefix("0o")
                    .or_else(|| digits.strip_prefix("0O"))
                    .unwrap_or(digits);
                u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal mode"))?
            }
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{n} is not a mode"))?,
            _ => {
                return Err(format!(
                    "expected an octal mode such as \"0644\", found {value}"
                ));
            }
        };
        if mode > MAX_PERMISSIONS {
            return Err(format!("mode {mode:o} is above {MAX_PERMISSIONS:o}"));
        }
        Ok(Permissions(mode))
    }
}
