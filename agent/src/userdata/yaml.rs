//! YAML read the way cloud-init's PyYAML reads it: `yes/no/on/off` are booleans, `<<` merges,
//! the last duplicate key wins, and a leading-zero number such as `0644` keeps its spelling (so
//! `permissions` can read it as octal).

use serde_json::{Map, Value};
use serde_saphyr::options::{DuplicateKeyPolicy, MergeKeyPolicy};

/// A parsed cloud-config document: top-level key → value.
pub type ConfigMap = Map<String, Value>;

/// A YAML document that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Not valid YAML (or over the parser's depth, node or alias budgets).
    #[error("Invalid YAML: {0}")]
    Syntax(String),
    /// Valid YAML whose top level is not a mapping.
    #[error("Expected a mapping at the top level, found {0}")]
    NotAMapping(&'static str),
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::LastWins,
        merge_keys: MergeKeyPolicy::Merge,
        legacy_octal_numbers: true,
        leading_zero_numbers_as_strings: true,
        // `!!binary` scalars stay base64 text (binary content is not UTF-8);
        // `mark_binary_write_files` restores their meaning for write_files.
        ignore_binary_tag_for_string: true,
    }
}

/// Parses any YAML document into a JSON value (budgets: serde-saphyr's defaults, depth 64).
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    parse_value_with(text, options())
}

fn parse_value_with(text: &str, options: serde_saphyr::Options) -> Result<Value, YamlError> {
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|err| {
        // The library's message carries a multi-line source snippet; the first line says it.
        let message = err.to_string();
        let first = message.lines().next().unwrap_or("parse error");
        YamlError::Syntax(first.trim_start_matches("error: ").to_owned())
    })
}

/// Parses a `#cloud-config-archive` document. Its items' `!!binary` scalars are decoded, as
/// PyYAML hands them to cloud-init (`content: !!binary IyEvYmluL3No…` is the script itself);
/// binary content that is not UTF-8 text is an error naming its line.
pub fn parse_archive(text: &str) -> Result<Value, YamlError> {
    let mut options = options();
    options.ignore_binary_tag_for_string = false;
    parse_value_with(text, options)
}

/// Parses a cloud-config (or metaboot.yaml) document: a mapping, or nothing at all (a file with
/// only the `#cloud-config` line is an empty config).
pub fn parse_map(text: &str) -> Result<ConfigMap, YamlError> {
    match parse_value(text)? {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(ConfigMap::new()),
        Value::Array(_) => Err(YamlError::NotAMapping("a list")),
        Value::String(_) => Err(YamlError::NotAMapping("a string")),
        Value::Number(_) => Err(YamlError::NotAMapping("a number")),
        Value::Bool(_) => Err(YamlError::NotAMapping("a boolean")),
    }
}

/// The YAML tag of a `!!binary` scalar.
const BINARY_TAG: &str = "tag:yaml.org,2002:binary";

/// A cloud-config document: [`parse_map`], plus `write_files` entries whose `content` is
/// tagged `!!binary` marked as base64 (PyYAML hands cloud-init the decoded bytes; an
/// `encoding: gz` on such an entry then means gzip of those bytes).
pub fn parse_cloud_config(text: &str) -> Result<ConfigMap, YamlError> {
    let mut map = parse_map(text)?;
    if text.contains("!!binary") || text.contains(BINARY_TAG) {
        mark_binary_write_files(text, &mut map);
    }
    Ok(map)
}

fn mark_binary_write_files(text: &str, map: &mut ConfigMap) {
    #[derive(serde::Deserialize)]
    struct Probe {
        write_files: Option<Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        content: Option<serde_saphyr::Tagged<String>>,
    }
    let Ok(probe) = serde_saphyr::from_str_with_options::<Probe>(text, options()) else {
        return;
    };
    let Some(Value::Array(entries)) = map.get_mut("write_files") else {
        return;
    };
    for (entry, probed) in entries
        .iter_mut()
        .zip(probe.write_files.unwrap_or_default())
    {
        let binary = probed
            .content
            .and_then(|tagged| tagged.1)
            .is_some_and(|tag| tag == BINARY_TAG || tag == "!!binary");
        if let (true, Value::Object(entry)) = (binary, entry) {
            let encoding = match entry.get("encoding").and_then(Value::as_str) {
                Some(e) if matches!(e.to_ascii_lowercase().as_str(), "gz" | "gzip") => "gz+b64",
                _ => "b64",
            };
            entry.insert("encoding".to_owned(), Value::String(encoding.to_owned()));
        }
    }
}

/// Merges the configuration layer `over` onto `base` as cloud-init's `mergemanydict` merges its
/// layers (the image's configuration, vendor data, user data): mappings merge key by key,
/// recursively; anything else in `over` replaces `base`. The parts of one user data merge by
/// their own rules (`merge.rs`).
pub fn merge(base: &mut ConfigMap, over: ConfigMap) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_1_1_booleans() {
        let map = parse_map("a: yes\nb: no\nc: on\nd: off\ne: True\nf: FALSE\n").unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"a": true, "b": false, "c": true, "d": false, "e": true, "f": false})
        );
    }

    #[test]
    fn merge_keys_apply_and_local_keys_win() {
        let map = parse_map(
            "base: &base\n  shell: /bin/sh\n  lock_passwd: true\nuser:\n  <<: *base\n  lock_passwd: false\n",
        )
        .unwrap();
        assert_eq!(
            map["user"],
            json!({"shell": "/bin/sh", "lock_passwd": false})
        );
    }

    #[test]
    fn last_duplicate_wins() {
        let map = parse_map("hostname: one\nhostname: two\n").unwrap();
        assert_eq!(map["hostname"], json!("two"));
    }

    #[test]
    fn leading_zero_numbers_keep_their_spelling() {
        let map = parse_map("a: 0644\nb: '0600'\nc: 420\nd: 007\n").unwrap();
        assert_eq!(map["a"], json!("0644"));
        assert_eq!(map["b"], json!("0600"));
        assert_eq!(map["c"], json!(420));
        assert_eq!(map["d"], json!("007"));
    }

    #[test]
    fn header_only_is_empty_and_non_mappings_are_refused() {
        assert!(parse_map("#cloud-config\n").unwrap().is_empty());
        assert!(matches!(
            parse_map("- a\n- b\n"),
            Err(YamlError::NotAMapping("a list"))
        ));
        assert!(matches!(
            parse_map("just text"),
            Err(YamlError::NotAMapping("a string"))
        ));
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let err = parse_map("runcmd: [echo, 'x'\n").unwrap_err().to_string();
        assert!(err.starts_with("Invalid YAML: line 1"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let start = std::time::Instant::now();
        assert!(parse_map(&deep).is_err());
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn binary_write_files_content_is_marked_base64() {
        let elf = "write_files:\n- path: /bin/arch\n  permissions: '0555'\n  content: !!binary |\n    \
                   f0VMRgIBAQAAAAAAAAAAAAIAPgABAAAAwARAAAAAAABAAAAAAAAAAJAVAAAAAAAAAAAAAEAAOAAI\n\
                   - path: /z\n  encoding: gz\n  content: !!binary H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==\n\
                   - path: /plain\n  content: aGVsbG8=\n";
        let map = parse_cloud_config(elf).unwrap();
        let files = map["write_files"].as_array().unwrap();
        assert_eq!(files[0]["encoding"], json!("b64"));
        assert!(
            files[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("f0VMRgIB")
        );
        assert_eq!(files[1]["encoding"], json!("gz+b64"));
        assert!(
            files[2].get("encoding").is_none(),
            "untagged content is left alone"
        );
    }

    #[test]
    fn merge_is_recursive_for_mappings_and_replaces_the_rest() {
        let mut base =
            parse_map("chpasswd: {expire: false}\nruncmd: [a]\nssh_authorized_keys: [k1]\n")
                .unwrap();
        let over = parse_map("chpasswd: {users: [{name: root}]}\nruncmd: [b]\n").unwrap();
        merge(&mut base, over);
        assert_eq!(
            Value::Object(base),
            json!({"chpasswd": {"expire": false, "users": [{"name": "root"}]},
                   "runcmd": ["b"], "ssh_authorized_keys": ["k1"]})
        );
    }
}
