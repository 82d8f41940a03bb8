//! cloud-init's `rsyslog` (once per instance): rsyslog configuration files from user data, as
//! cloud-init 22.4 writes them, then rsyslog reloaded.
//!
//! - `configs`: each a string or `{content, filename}` (default `config_filename`,
//!   `20-cloud-config.conf`), in `config_dir` (default `/etc/rsyslog.d`); a file named again
//!   gets the next entry appended, a file named the first time is replaced; a newline ends each
//!   entry. An entry without `content` or with an empty `filename` is a warning.
//! - `remotes: {NAME: "[MATCH] [@|@@]HOST[:PORT]"}`: one forwarding line each (`*.*` and UDP
//!   unless given; `@@` is TCP; an IPv6 address in brackets), `# NAME` after it, between
//!   `# begin remotes` and `# end remotes`, as the last entry of the default file. A line that
//!   does not parse is a warning, as in cloud-init.
//! - The old list form (`rsyslog: [...]`, with `rsyslog_filename` and `rsyslog_dir` beside it)
//!   is read as `configs`.
//! - `service_reload_command`: `auto` (the default): `systemctl reload-or-try-restart rsyslog`
//!   on the running system (an rsyslog that does not run starts later with the files); a list
//!   is run as a command, a string by `/bin/sh -c`. A failed reload is a warning, as cloud-init
//!   logs it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::userdata::cloud_config::CloudConfig;

/// The file an entry without `filename` goes to (cloud-init's `DEF_FILENAME`).
pub const DEFAULT_FILENAME: &str = "20-cloud-config.conf";
/// Where the files go (`DEF_DIR`).
pub const DEFAULT_DIR: &str = "/etc/rsyslog.d";
/// rsyslog's systemd unit.
pub const SERVICE: &str = "rsyslog";
/// The most entries (`configs` and `remotes` together) read.
pub const MAX_ENTRIES: usize = 256;
/// A configuration file's mode.
pub const FILE_MODE: u32 = 0o644;

/// How rsyslog is told about the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// `systemctl reload-or-try-restart rsyslog`.
    Auto,
    /// A command and its arguments.
    Command(Vec<String>),
    /// A shell command line.
    Shell(String),
}

/// What `rsyslog` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// (file, content) in order; a file may come more than once.
    pub entries: Vec<(PathBuf, String)>,
    pub reload: Reload,
}

/// `rsyslog` of `config`: `None` when absent or when it names nothing to write; an error for a
/// value of the wrong type (cloud-init's `load_config`).
pub fn request(
    config: &CloudConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<Request>, String> {
    let Some(rsyslog) = &config.rsyslog else {
        return Ok(None);
    };
    let empty = serde_json::Map::new();
    let (map, legacy_configs) = match rsyslog {
        Value::Object(map) => (map, None),
        Value::Array(list) => (&empty, Some(list)),
        _ => return Err("rsyslog: neither a map nor a list".to_owned()),
    };
    let text = |key: &str, default: &str, legacy: Option<&String>| -> Result<String, String> {
        match map.get(key) {
            None => Ok(legacy.cloned().unwrap_or_else(|| default.to_owned())),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(format!("rsyslog: `{key}` is {other}, not a string")),
        }
    };
    let legacy = legacy_configs.is_some();
    let filename = text(
        "config_filename",
        DEFAULT_FILENAME,
        config.rsyslog_filename.as_ref().filter(|_| legacy),
    )?;
    let dir = text(
        "config_dir",
        DEFAULT_DIR,
        config.rsyslog_dir.as_ref().filter(|_| legacy),
    )?;
    let configs: Vec<Value> = match (legacy_configs, map.get("configs")) {
        (Some(list), _) => list.clone(),
        (None, None) => Vec::new(),
        (None, Some(Value::Array(list))) => list.clone(),
        (None, Some(other)) => return Err(format!("rsyslog: `configs` is {other}, not a list")),
    };
    let reload = match map.get("service_reload_command") {
        None => Reload::Auto,
        Some(Value::String(auto)) if auto == "auto" => Reload::Auto,
        Some(Value::String(line)) => Reload::Shell(line.clone()),
        Some(Value::Array(words)) if !words.is_empty() => Reload::Command(
            words
                .iter()
                .map(|word| match word {
                    Value::String(word) => word.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Some(other) => {
            return Err(format!(
                "rsyslog: `service_reload_command` is {other}, not `auto`, a command or a list"
            ));
        }
    };
    let mut contents: Vec<(String, String)> = Vec::new();
    for (index, entry) in configs.iter().enumerate() {
        let (content, name) = match entry {
            Value::String(content) => (content.clone(), filename.clone()),
            Value::Object(entry) => {
                let Some(Value::String(content)) = entry.get("content") else {
                    warnings.push(format!(
                        "rsyslog: configs entry {} has no content",
                        index + 1
                    ));
                    continue;
                };
                let name = match entry.get("filename") {
                    Some(Value::String(name)) => name.clone(),
                    _ => filename.clone(),
                };
                (content.clone(), name)
            }
            other => {
                warnings.push(format!(
                    "rsyslog: configs entry {} is {other}, not a string or a map",
                    index + 1
                ));
                continue;
            }
        };
        let name = name.trim();
        if name.is_empty() {
            warnings.push(format!(
                "rsyslog: configs entry {} has an empty filename",
                index + 1
            ));
            continue;
        }
        contents.push((name.to_owned(), content));
    }
    match map.get("remotes") {
        None => {}
        Some(Value::Object(remotes)) if remotes.is_empty() => {}
        Some(Value::Object(remotes)) => {
            let mut block = String::from("# begin remotes\n");
            for (name, line) in remotes {
                let line = match line {
                    Value::String(line) if !line.is_empty() => line,
                    Value::String(_) | Value::Null => continue,
                    other => {
                        warnings.push(format!("rsyslog: remote {name} is {other}, not a line"));
                        continue;
                    }
                };
                match remote_line(line, Some(name)) {
                    Ok(rendered) => {
                        block.push_str(&rendered);
                        block.push('\n');
                    }
                    Err(why) => warnings.push(format!("rsyslog: remote {name}: {line}: {why}")),
                }
            }
            block.push_str("# end remotes\n");
            contents.push((filename.clone(), block));
        }
        Some(other) => return Err(format!("rsyslog: `remotes` is {other}, not a map")),
    }
    if contents.len() > MAX_ENTRIES {
        return Err(format!(
            "rsyslog: {} entries, more than {MAX_ENTRIES}",
            contents.len()
        ));
    }
    if contents.is_empty() {
        return Ok(None);
    }
    let entries = contents
        .into_iter()
        .map(|(name, content)| (Path::new(&dir).join(name), content))
        .collect();
    Ok(Some(Request { entries, reload }))
}

/// One `remotes` value as rsyslog's forwarding line (cloud-init's `parse_remotes_line` and
/// `SyslogRemotesLine`): `[MATCH] [@|@@]ADDRESS[:PORT] [# COMMENT]` → `MATCH @ADDRESS:PORT #
/// NAME`; the name, else the line's own comment, ends it.
pub fn remote_line(line: &str, name: Option<&str>) -> Result<String, String> {
    let (data, comment) = split_comment(line);
    let words: Vec<&str> = data.split_whitespace().collect();
    let (matched, host_port) = match words.as_slice() {
        [host_port] => ("*.*", *host_port),
        [matched, host_port] => (*matched, *host_port),
        _ => return Err("a remote is `[MATCH] HOST[:PORT]`".to_owned()),
    };
    let proto_len = host_port.len() - host_port.trim_start_matches('@').len();
    let proto = &host_port[..proto_len.min(2)];
    let rest = &host_port[proto.len()..];
    let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address without its closing bracket")?;
        (address, after)
    } else {
        let end = rest.find(':').unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    };
    let port = match port {
        "" => None,
        port => match port.strip_prefix(':') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(digits)
            }
            _ => return Err(format!("invalid host specification {host_port:?}")),
        },
    };
    if address.is_empty() {
        return Err("address is required".to_owned());
    }
    let mut out = format!("{matched} {}", if proto == "@@" { "@@" } else { "@" });
    if address.contains(':') {
        out.push_str(&format!("[{address}]"));
    } else {
        out.push_str(address);
    }
    if let Some(port) = port {
        // cloud-init writes the port as a number.
        let port = port.trim_start_matches('0');
        out.push(':');
        out.push_str(if port.is_empty() { "0" } else { port });
    }
    if let Some(name) = name.or(comment).filter(|n| !n.is_empty()) {
        out.push_str(" # ");
        out.push_str(name);
    }
    Ok(out)
}

/// A remote's data and comment: split at the first `#` run (with the spaces around it), as
/// cloud-init's `[ ]*[#]+[ ]*` does when the line has exactly one such run.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let Some(start) = line.find('#') else {
        return (line, None);
    };
    let data = line[..start].trim_end_matches(' ');
    let comment = line[start..]
        .trim_start_matches('#')
        .trim_start_matches(' ');
    if comment.contains('#') {
        // More than one separator: cloud-init's split fails and keeps the line whole.
        return (line, None);
    }
    (data, Some(comment.trim()))
}

/// Writes the request's files under `root` (each file once, its entries in order: a file named
/// again is appended to within the run, as cloud-init's write then append leaves it); returns
/// the files written.
pub fn write(root: &Root, request: &Request) -> Result<Vec<PathBuf>, PathError> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (path, content) in &request.entries {
        let text = match files.iter_mut().find(|(p, _)| p == path) {
            Some((_, text)) => text,
            None => {
                files.push((path.clone(), String::new()));
                &mut files.last_mut().expect("just pushed").1
            }
        };
        text.push_str(content);
        if !content.ends_with('\n') {
            text.push('\n');
        }
    }
    for (path, text) in &files {
        root.write_atomic(path, text.as_bytes(), &WriteOptions::exact(FILE_MODE, None))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// The command that reloads rsyslog for `reload`.
pub fn reload_command(reload: &Reload) -> Vec<String> {
    match reload {
        Reload::Auto => ["systemctl", "reload-or-try-restart", SERVICE]
            .map(str::to_owned)
            .to_vec(),
        Reload::Command(words) => words.clone(),
        Reload::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
    }
}

#[cfg(test)]
mod tests;
