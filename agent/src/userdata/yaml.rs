//! YAML read the way cloud-init's PyYAML reads it: `yes/no/on/off` are booleans, `<<` merges,
//! the last duplicate key wins, and a leading-zero number such as `0644` keeps its spelling (so
//! `permissions` can read it as octal).

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{Map, Value};
use serde_saphyr::budget::BudgetBreach;
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
    /// YAML whose scalars, aliases repeated, come to more than what is left of its
    /// [`Allowance`].
    #[error(
        "user data's YAML expands past {allowed} bytes (aliases repeat their anchor's text, and \
         all the YAML of one user data together, each part's repeats counted, may come to at \
         most {allowed} bytes; {left} were left for this part){at}: repeat less text through \
         aliases, or write it out once"
    )]
    TooLarge {
        /// The whole allowance ([`MAX_YAML_SCALAR_BYTES`]).
        allowed: usize,
        /// What was left of it for this parse.
        left: usize,
        /// Where the parse stopped (` at line L column C`), or nothing.
        at: String,
    },
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

/// What is left of one document's [`MAX_YAML_SCALAR_BYTES`]: each parse may expand to what is
/// left, and spends what it expanded to (also when it failed: the work was done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    allowed: usize,
    left: usize,
}

impl Allowance {
    /// A whole allowance of `allowed` bytes.
    pub fn new(allowed: usize) -> Self {
        Allowance {
            allowed,
            left: allowed,
        }
    }

    /// The bytes left to spend.
    pub fn left(&self) -> usize {
        self.left
    }
}

impl Default for Allowance {
    fn default() -> Self {
        Allowance::new(MAX_YAML_SCALAR_BYTES)
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

/// `options` with their scalar budget set to `max_scalar_bytes`.
fn within(mut options: serde_saphyr::Options, max_scalar_bytes: usize) -> serde_saphyr::Options {
    let mut budget = options.budget.take().unwrap_or_default();
    budget.max_total_scalar_bytes = max_scalar_bytes;
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

fn parse_value_with(
    text: &str,
    options: serde_saphyr::Options,
    allowance: &mut Allowance,
) -> Result<Value, YamlError> {
    // The library reports what the parse expanded to, also when it stopped at the bound.
    let report = Rc::new(Cell::new((0, false)));
    let seen = Rc::clone(&report);
    let options = within(options, allowance.left).with_budget_report(move |report| {
        let breached = matches!(report.breached, Some(BudgetBreach::ScalarBytes { .. }));
        seen.set((report.total_scalar_bytes, breached));
    });
    let parsed = serde_saphyr::from_str_with_options::<Value>(text, options);
    let (used, breached) = report.get();
    let left = allowance.left;
    allowance.left = left.saturating_sub(used);
    parsed.map_err(|err| {
        if breached {
            let at = err
                .location()
                .map(|at| format!(" at line {} column {}", at.line(), at.column()))
                .unwrap_or_default();
            return YamlError::TooLarge {
                allowed: allowance.allowed,
                left,
                at,
            };
        }
        // The library's message carries a multi-line source snippet; the first line says it.
        let message = err.to_string();
        let first = message.lines().next().unwrap_or("parse error");
        YamlError::Syntax(first.trim_start_matches("error: ").to_owned())
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
    match parse_value_within(text, allowance)? {
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
/// `encoding: gz` on such an entry then means gzip of those bytes), spending from `allowance`.
pub fn parse_cloud_config(text: &str, allowance: &mut Allowance) -> Result<ConfigMap, YamlError> {
    let left = allowance.left;
    let mut map = parse_map_within(text, allowance)?;
    if text.contains("!!binary") || text.contains(BINARY_TAG) {
        // The same text again, as far as it was allowed the first time; what it keeps (the
        // entries' tags) is not kept after, so it spends nothing.
        mark_binary_write_files(text, &mut map, left);
    }
    Ok(map)
}

fn mark_binary_write_files(text: &str, map: &mut ConfigMap, max_scalar_bytes: usize) {
    #[derive(serde::Deserialize)]
    struct Probe {
        write_files: Option<Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        content: Option<serde_saphyr::Tagged<String>>,
    }
    let options = within(options(), max_scalar_bytes);
    let Ok(probe) = serde_saphyr::from_str_with_options::<Probe>(text, options) else {
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
        let mut allowance = Allowance::new(100);
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
        assert_eq!(allowance.left(), 100 - 3 - 20 - 1);
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
        assert_eq!(allowance.left(), 0);
        assert!(matches!(
            parse_map_within("a: b\n", &mut allowance),
            Err(YamlError::TooLarge { left: 0, .. })
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
