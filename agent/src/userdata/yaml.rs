//! YAML read the way cloud-init's PyYAML reads it: `yes/no/on/off` are booleans, `<<` merges,
//! the last duplicate key wins, and a leading-zero number such as `0644` keeps its spelling (so
//! `permissions` can read it as octal).

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{Map, Value};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::options::{DuplicateKeyPolicy, MergeKeyPolicy};

mod node;

use node::{BINARY_TAG, BinaryContents, Parsed};

/// A parsed cloud-config document: top-level key → value.
pub type ConfigMap = Map<String, Value>;

/// A YAML document that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Not valid YAML (or over the parser's depth or alias budgets).
    #[error("Invalid YAML: {0}")]
    Syntax(String),
    /// Valid YAML whose top level is not a mapping.
    #[error("Expected a mapping at the top level, found {0}")]
    NotAMapping(&'static str),
    /// YAML whose scalars, aliases repeated, come to more than what is left of its
    /// [`Allowance`].
    #[error("{}", too_large(*allowed, *left, at))]
    TooLarge {
        /// The whole allowance ([`MAX_YAML_SCALAR_BYTES`]).
        allowed: usize,
        /// What was left of it for this parse.
        left: usize,
        /// Where the parse stopped (` at line L column C`), or nothing.
        at: String,
    },
    /// YAML whose values (mappings, lists, scalars), aliases repeated, come to more than what
    /// is left of its [`Allowance`].
    #[error("{}", too_many_values(*allowed, *left, at))]
    TooManyValues {
        /// The whole allowance ([`MAX_YAML_NODES`]).
        allowed: usize,
        /// What was left of it for this parse.
        left: usize,
        /// Where the parse stopped (` at line L column C`), or nothing.
        at: String,
    },
}

/// [`YamlError::TooLarge`]'s message. A parse that found its whole allowance (metaboot.yaml,
/// NoCloud meta-data, a user data's first YAML part) passed it alone; one that found less
/// passed it with the parts of the same user data (or vendor data) before it.
fn too_large(allowed: usize, left: usize, at: &str) -> String {
    if left == allowed {
        format!(
            "YAML expands past {allowed} bytes (aliases repeat their anchor's text, and a \
             document may come to at most {allowed} bytes){at}: repeat less text through \
             aliases, or write it out once"
        )
    } else {
        format!(
            "user data's YAML expands past {allowed} bytes (aliases repeat their anchor's text, \
             and all the YAML of one user data or vendor data together, each part's repeats \
             counted, may come to at most {allowed} bytes; {left} were left for this \
             part){at}: repeat less text through aliases, or write it out once"
        )
    }
}

/// [`YamlError::TooManyValues`]'s message, worded as [`too_large`]'s.
fn too_many_values(allowed: usize, left: usize, at: &str) -> String {
    let counted = "each mapping, list and scalar is one, and an alias counts its anchor's \
                   values again each time it is used";
    if left == allowed {
        format!(
            "YAML has more than {allowed} values ({counted}; a document may have at most \
             {allowed}){at}: repeat less through aliases, or give fewer values"
        )
    } else {
        format!(
            "user data's YAML has more than {allowed} values ({counted}; all the YAML of one \
             user data or vendor data together, each part's repeats counted, may have at most \
             {allowed}; {left} were left for this part){at}: repeat less through aliases, or \
             give fewer values"
        )
    }
}

impl YamlError {
    /// Whether the YAML was refused for passing what was left of its [`Allowance`] (bytes or
    /// values): parsing the same text another way would pass it too.
    pub fn is_over_allowance(&self) -> bool {
        matches!(
            self,
            YamlError::TooLarge { .. } | YamlError::TooManyValues { .. }
        )
    }
}

/// Most bytes of scalar text the YAML of one user data (or one vendor data document) may
/// expand to, all its parts together: an alias (`*a`) counts its anchor's text again each time
/// it is used, as the parsed configuration holds a copy for each. 64 MiB, serde-saphyr's own
/// bound for a single parse (`Budget::max_total_scalar_bytes`), so no document that parsed
/// alone is refused; shared by the parts, a small part whose aliases expand to that much
/// cannot be repeated in [`super::MAX_PARTS`] parts to keep gigabytes in the guest's memory.
/// A real cloud-config is far below it: its text is at most what the sources deliver
/// (`source::http::MAX_USER_DATA_BYTES`, 1 MiB) and what gzip and includes add
/// (`gzip::MAX_DECOMPRESSED_BYTES`, 16 MiB together; `include::MAX_INCLUDE_URLS` ×
/// `MAX_INCLUDE_BYTES`, 16 MiB).
pub const MAX_YAML_SCALAR_BYTES: usize = 64 * 1024 * 1024;

/// Most values (nodes: mappings, lists and scalars) the YAML of one user data (or one vendor
/// data document) may have, all its parts together: an alias counts its anchor's values again
/// each time it is used, as the parsed configuration holds a copy of each. Aliases of an empty
/// scalar spend no [`MAX_YAML_SCALAR_BYTES`], so a part of a few hundred bytes reaches this
/// many values (about 12 MB of parsed configuration). 250,000, serde-saphyr's own bound for a
/// single parse (`Budget::max_nodes`), so no document that parsed alone is refused; shared by
/// the parts, such a part cannot be repeated in [`super::MAX_PARTS`] parts to keep gigabytes
/// in the guest's memory (a multiple would let a small guest keep a multiple of 12 MB for
/// nothing). A real cloud-config writes its values out, one per key, list item and setting:
/// hundreds or thousands; the 1 MiB the sources deliver (`source::http::MAX_USER_DATA_BYTES`)
/// holds about 100,000 values of ten bytes.
pub const MAX_YAML_NODES: usize = 250_000;

/// What is left of one document's [`MAX_YAML_SCALAR_BYTES`] and [`MAX_YAML_NODES`]: each
/// parse may expand to what is left, and spends what it expanded to (also when it failed: the
/// work was done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    bytes: usize,
    bytes_left: usize,
    nodes: usize,
    nodes_left: usize,
}

impl Allowance {
    /// A whole allowance of `bytes` scalar bytes and `nodes` values.
    pub fn new(bytes: usize, nodes: usize) -> Self {
        Allowance {
            bytes,
            bytes_left: bytes,
            nodes,
            nodes_left: nodes,
        }
    }

    /// The scalar bytes left to spend.
    pub fn bytes_left(&self) -> usize {
        self.bytes_left
    }

    /// The values left to spend.
    pub fn nodes_left(&self) -> usize {
        self.nodes_left
    }
}

impl Default for Allowance {
    fn default() -> Self {
        Allowance::new(MAX_YAML_SCALAR_BYTES, MAX_YAML_NODES)
    }
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

/// `options` with their scalar and node budgets set to what is left of `allowance`.
fn within(mut options: serde_saphyr::Options, allowance: &Allowance) -> serde_saphyr::Options {
    let mut budget = options.budget.take().unwrap_or_default();
    budget.max_total_scalar_bytes = allowance.bytes_left;
    budget.max_nodes = allowance.nodes_left;
    options.budget = Some(budget);
    options
}

/// Parses any YAML document into a JSON value (budgets: serde-saphyr's defaults, depth 64, and
/// a whole [`Allowance`]).
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    parse_value_within(text, &mut Allowance::default())
}

/// [`parse_value`], spending from `allowance`.
pub fn parse_value_within(text: &str, allowance: &mut Allowance) -> Result<Value, YamlError> {
    parse_value_with(text, options(), allowance)
}

/// Which part of an [`Allowance`] a parse passed.
#[derive(Debug, Clone, Copy)]
enum Breach {
    Bytes,
    Nodes,
}

fn parse_value_with(
    text: &str,
    options: serde_saphyr::Options,
    allowance: &mut Allowance,
) -> Result<Value, YamlError> {
    parse_with(text, options, allowance).map(|parsed| parsed.value)
}

fn parse_with(
    text: &str,
    options: serde_saphyr::Options,
    allowance: &mut Allowance,
) -> Result<Parsed, YamlError> {
    // The library reports what the parse expanded to, also when it stopped at a bound.
    let report = Rc::new(Cell::new((0, 0, None)));
    let seen = Rc::clone(&report);
    let options = within(options, allowance).with_budget_report(move |report| {
        let breached = match report.breached {
            Some(BudgetBreach::ScalarBytes { .. }) => Some(Breach::Bytes),
            Some(BudgetBreach::Nodes { .. }) => Some(Breach::Nodes),
            _ => None,
        };
        seen.set((report.total_scalar_bytes, report.nodes, breached));
    });
    let parsed = serde_saphyr::from_str_with_options::<Parsed>(text, options);
    let (bytes, nodes, breached) = report.get();
    let before = *allowance;
    allowance.bytes_left = before.bytes_left.saturating_sub(bytes);
    allowance.nodes_left = before.nodes_left.saturating_sub(nodes);
    parsed.map_err(|err| {
        let at = || {
            err.location()
                .map(|at| format!(" at line {} column {}", at.line(), at.column()))
                .unwrap_or_default()
        };
        match breached {
            Some(Breach::Bytes) => YamlError::TooLarge {
                allowed: before.bytes,
                left: before.bytes_left,
                at: at(),
            },
            Some(Breach::Nodes) => YamlError::TooManyValues {
                allowed: before.nodes,
                left: before.nodes_left,
                at: at(),
            },
            None => {
                // The library's message carries a multi-line source snippet; its first line
                // says it.
                let message = err.to_string();
                let first = message.lines().next().unwrap_or("parse error");
                YamlError::Syntax(first.trim_start_matches("error: ").to_owned())
            }
        }
    })
}

/// Parses a `#cloud-config-archive` document, spending from `allowance`. Its items' `!!binary`
/// scalars are decoded, as PyYAML hands them to cloud-init (`content: !!binary IyEvYmluL3No…`
/// is the script itself); binary content that is not UTF-8 text is an error naming its line.
pub fn parse_archive(text: &str, allowance: &mut Allowance) -> Result<Value, YamlError> {
    let mut options = options();
    options.ignore_binary_tag_for_string = false;
    parse_value_with(text, options, allowance)
}

/// Parses a cloud-config (or metaboot.yaml) document: a mapping, or nothing at all (a file with
/// only the `#cloud-config` line is an empty config).
pub fn parse_map(text: &str) -> Result<ConfigMap, YamlError> {
    parse_map_within(text, &mut Allowance::default())
}

/// [`parse_map`], spending from `allowance`.
pub fn parse_map_within(text: &str, allowance: &mut Allowance) -> Result<ConfigMap, YamlError> {
    into_map(parse_value_within(text, allowance)?)
}

fn into_map(value: Value) -> Result<ConfigMap, YamlError> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(ConfigMap::new()),
        Value::Array(_) => Err(YamlError::NotAMapping("a list")),
        Value::String(_) => Err(YamlError::NotAMapping("a string")),
        Value::Number(_) => Err(YamlError::NotAMapping("a number")),
        Value::Bool(_) => Err(YamlError::NotAMapping("a boolean")),
    }
}

/// A cloud-config document: [`parse_map`], plus `write_files` entries whose `content` is
/// tagged `!!binary` marked as base64 (PyYAML hands cloud-init the decoded bytes; an
/// `encoding: gz` on such an entry then means gzip of those bytes), spending from `allowance`.
pub fn parse_cloud_config(text: &str, allowance: &mut Allowance) -> Result<ConfigMap, YamlError> {
    if !(text.contains("!!binary") || text.contains(BINARY_TAG)) {
        return parse_map_within(text, allowance);
    }
    let parsed = Parsed::cloud_config(|| parse_with(text, options(), allowance))?;
    let mut map = into_map(parsed.value)?;
    mark_binary_write_files(&mut map, &parsed.binary);
    Ok(map)
}

fn mark_binary_write_files(map: &mut ConfigMap, binary: &BinaryContents) {
    let Some(Value::Array(entries)) = map.get_mut("write_files") else {
        return;
    };
    for index in binary.entries() {
        if let Some(Value::Object(entry)) = entries.get_mut(index) {
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
        let map = parse_cloud_config(elf, &mut Allowance::default()).unwrap();
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

    /// Documents of every shape, good and bad, for the comparisons below.
    const SHAPES: &[&str] = &[
        "a: 1\nb: -2\nc: 1.5\nd: .nan\ne: .inf\nf: 18446744073709551615\ng: -9223372036854775809\n",
        "a: 99999999999999999999999999\nb: 0x1F\nc: 0o17\nd: 1e400\ne: ~\nf:\ng: null\n",
        "a: [1, [2, {b: c}], {}]\nb: {}\nc: []\nd: 'x'\ne: \"y\\n\"\nf: |\n  z\n",
        "1: a\n2.5: b\ntrue: c\nnull: d\n",
        "a: 1\n? [x, y]\n: 2\n",
        "? [x, y]\n: 2\n",
        "a: 1\n? {x: y}\n: 2\n",
        "base: &b {x: 1}\nuse: {<<: *b, y: 2}\nx: *b\n",
        "a: *nowhere\n",
        "a: [1, 2\n",
        "a: b: c\n",
        "- a\n- b\n",
        "just text",
        "",
        "a: !!binary aGk=\nb: !!binary |\n  aGVsbG8=\n",
        "a: !!str 5\nb: !!int '7'\nc: !!float '1'\nd: !!bool 'yes'\n",
        "a: !!int x\n",
        "a: !custom {b: 1}\nc: !!map {d: 2}\ne: !!seq [1]\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\na: 2\n",
        "write_files:\n- {path: /a, content: !!binary aGk=}\n- {path: /b, content: x}\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n  encoding: GZIP\n",
        "write_files:\n- path: /a\n  content: !<tag:yaml.org,2002:binary> aGk=\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n  content: plain\n",
        "write_files:\n- path: /a\n  content: plain\n  content: !!binary aGk=\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- just a string\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- path: /b\n  content: [x]\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- path: /b\n  content: {x: y}\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- path: /b\n  content: 5\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- path: /b\n  content:\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- path: /b\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\n- ~\n",
        "bin: &bin !!binary aGk=\nwrite_files:\n- path: /a\n  content: *bin\n",
        "d: &d {content: !!binary aGk=, path: /a}\nwrite_files:\n- <<: *d\n- *d\n",
        "write_files: !!binary aGk=\n",
        "write_files: {content: !!binary aGk=}\n",
        "write_files: []\nother: [{content: !!binary aGk=}]\n",
        "write_files:\n- path: /a\n  content: !!binary aGk=\nwrite_files:\n- path: /b\n  content: x\n",
        "write_files:\n- path: /a\n  content: !!binary 'not base64'\n",
    ];

    #[test]
    fn every_parse_builds_the_value_and_errors_serde_json_would() {
        for text in SHAPES {
            let ours = serde_saphyr::from_str_with_options::<Parsed>(text, options())
                .map(|parsed| parsed.value)
                .map_err(|err| err.to_string());
            let json = serde_saphyr::from_str_with_options::<Value>(text, options())
                .map_err(|err| err.to_string());
            assert_eq!(ours, json, "{text:?}");
            let cloud_config = Parsed::cloud_config(|| {
                serde_saphyr::from_str_with_options::<Parsed>(text, options())
            })
            .map(|parsed| parsed.value)
            .map_err(|err| err.to_string());
            assert_eq!(cloud_config, json, "{text:?}");
        }
    }

    /// The typed second pass the tags were read with before: the entries it marks.
    fn marked_by_a_typed_read(text: &str) -> Vec<usize> {
        #[derive(serde::Deserialize)]
        struct Probe {
            write_files: Option<Vec<Entry>>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            content: Option<serde_saphyr::Tagged<String>>,
        }
        let Ok(probe) = serde_saphyr::from_str_with_options::<Probe>(text, options()) else {
            return Vec::new();
        };
        let values = parse_map(text).unwrap();
        let Some(Value::Array(values)) = values.get("write_files") else {
            return Vec::new();
        };
        let mut marked = Vec::new();
        for (index, (entry, value)) in probe
            .write_files
            .unwrap_or_default()
            .into_iter()
            .zip(values)
            .enumerate()
        {
            let binary = entry
                .content
                .and_then(|tagged| tagged.1)
                .is_some_and(|tag| tag == BINARY_TAG || tag == "!!binary");
            if binary && value.is_object() {
                marked.push(index);
            }
        }
        marked
    }

    #[test]
    fn binary_contents_are_the_ones_a_typed_read_finds() {
        for text in SHAPES {
            let Ok(map) = parse_map(text) else {
                continue;
            };
            let parsed = Parsed::cloud_config(|| {
                serde_saphyr::from_str_with_options::<Parsed>(text, options())
            })
            .unwrap();
            let found: Vec<usize> = match map.get("write_files") {
                Some(Value::Array(entries)) => parsed
                    .binary
                    .entries()
                    .filter(|index| entries.get(*index).is_some_and(Value::is_object))
                    .collect(),
                _ => Vec::new(),
            };
            assert_eq!(found, marked_by_a_typed_read(text), "{text:?}");
        }
    }

    #[test]
    fn only_a_cloud_config_notes_binary_contents() {
        let text = "write_files:\n- path: /a\n  content: !!binary aGk=\n";
        let plain = serde_saphyr::from_str_with_options::<Parsed>(text, options()).unwrap();
        assert_eq!(plain.binary.entries().count(), 0);
        let noted =
            Parsed::cloud_config(|| serde_saphyr::from_str_with_options::<Parsed>(text, options()))
                .unwrap();
        assert_eq!(noted.binary.entries().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn the_expansion_bound_is_the_parsers_own_per_parse_bound() {
        assert_eq!(MAX_YAML_SCALAR_BYTES, 64 * 1024 * 1024);
        assert_eq!(
            MAX_YAML_SCALAR_BYTES,
            serde_saphyr::Budget::default().max_total_scalar_bytes
        );
    }

    #[test]
    fn each_parse_spends_what_its_aliases_expand_to() {
        let mut allowance = Allowance::new(100, MAX_YAML_NODES);
        // 3 key bytes and 10 of text, then the 10 again through the alias.
        let map = parse_map_within(
            "a: &x 0123456789
b: *x
c: d
",
            &mut allowance,
        )
        .unwrap();
        assert_eq!(map["b"], json!("0123456789"));
        assert_eq!(allowance.bytes_left(), 100 - 3 - 20 - 1);
        let err = parse_map_within(
            "a: &x 0123456789
b: [*x, *x, *x, *x, *x, *x, *x, *x]
",
            &mut allowance,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("user data's YAML expands past 100 bytes (aliases repeat"),
            "{err}"
        );
        assert!(err.contains("76 were left for this part"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // What the failed parse did is spent too: the next finds nothing left.
        assert_eq!(allowance.bytes_left(), 0);
        assert!(matches!(
            parse_map_within("a: b\n", &mut allowance),
            Err(YamlError::TooLarge { left: 0, .. })
        ));
    }

    #[test]
    fn a_document_past_its_whole_allowance_is_told_so_alone() {
        // metaboot.yaml and NoCloud meta-data are parsed with an allowance of their own: the
        // message speaks of the document, not of a user data's parts.
        for (text, mut allowance, start) in [
            (
                "a: &x 0123456789\nb: [*x, *x, *x, *x, *x, *x, *x, *x, *x, *x]\n",
                Allowance::new(100, MAX_YAML_NODES),
                "YAML expands past 100 bytes (aliases",
            ),
            (
                "a: &x \"\"\nb: [*x, *x, *x, *x, *x, *x, *x, *x, *x, *x, *x, *x]\n",
                Allowance::new(MAX_YAML_SCALAR_BYTES, 10),
                "YAML has more than 10 values (each",
            ),
        ] {
            let err = parse_map_within(text, &mut allowance)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(start), "{err}");
            assert!(
                !err.contains("user data") && !err.contains("left for"),
                "{err}"
            );
            assert!(
                err.ends_with("write it out once") || err.ends_with("give fewer values"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_node_bound_is_the_parsers_own_per_parse_bound() {
        assert_eq!(MAX_YAML_NODES, 250_000);
        assert_eq!(MAX_YAML_NODES, serde_saphyr::Budget::default().max_nodes);
    }

    #[test]
    fn each_parse_spends_the_values_its_aliases_expand_to() {
        let mut allowance = Allowance::new(MAX_YAML_SCALAR_BYTES, 20);
        // The top mapping, 2 keys, the empty scalar and the list of 3 copies of it: 8 values.
        let map = parse_map_within("a: &x \"\"\nb: [*x, *x, *x]\n", &mut allowance).unwrap();
        assert_eq!(map["b"], json!(["", "", ""]));
        assert_eq!(allowance.nodes_left(), 20 - 8);
        let err = parse_map_within(
            "a: &x \"\"\nb: [*x, *x, *x, *x, *x, *x, *x, *x]\n",
            &mut allowance,
        )
        .unwrap_err();
        assert!(err.is_over_allowance());
        let err = err.to_string();
        assert!(
            err.starts_with("user data's YAML has more than 20 values (each mapping, list"),
            "{err}"
        );
        assert!(
            err.contains("12 were left for this part) at line 2"),
            "{err}"
        );
        assert!(
            err.ends_with("repeat less through aliases, or give fewer values"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        // What the failed parse did is spent too: the next finds nothing left.
        assert_eq!(allowance.nodes_left(), 0);
        assert!(matches!(
            parse_map_within("a: b\n", &mut allowance),
            Err(YamlError::TooManyValues { left: 0, .. })
        ));
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
