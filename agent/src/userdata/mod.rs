//! User data and vendor data decoding (docs/protocol.md §4.6, §4.7): gzip, MIME multipart,
//! first-line typing, includes, and the hand-off of each part to its handler. Errors and warnings
//! are collected, never fatal: one bad part does not hide the good ones.

pub mod archive;
pub mod cloud_config;
pub mod gzip;
pub mod include;
pub mod merge;
pub mod mime;
pub mod parts;
pub mod yaml;

use std::borrow::Cow;
use std::collections::BTreeSet;

use metaboot_proto::vendor_data::CLOUD_INIT_KEY;
use serde_json::Value;

use crate::log::chain;
use crate::source::url::shown as shown_url;
use crate::state::semaphore::Frequency;
use include::Fetch;
use merge::Mergers;
use parts::{GZIP_TYPES, NOT_MULTIPART, PartKind};
use yaml::ConfigMap;

/// Most parts one document may yield, after MIME splitting, includes and archives.
pub const MAX_PARTS: usize = 256;

/// A script taken from user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// A safe file name (the MIME filename, or `part-NNN`).
    pub name: String,
    pub body: Vec<u8>,
}

/// Everything one user-data (or vendor-data) document contributes.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// `#cloud-config` documents in order, each with its mergers checked and kept under
    /// `merge_how` (`merge::parts` merges them).
    pub configs: Vec<ConfigMap>,
    /// `#!` scripts, run once per instance.
    pub scripts: Vec<Script>,
    /// `text/x-shellscript-per-{boot,instance,once}` parts, with their frequency.
    pub per_frequency: Vec<(Frequency, Script)>,
    /// `#cloud-boothook` parts (marker line removed), run early at every boot.
    pub boothooks: Vec<Script>,
    /// Content ignored on purpose (unknown types), one line each.
    pub warnings: Vec<String>,
    /// Content that should have been used and could not be, one line each.
    pub errors: Vec<String>,
}

impl Decoded {
    /// The scripts of every kind.
    pub fn script_count(&self) -> usize {
        self.scripts.len() + self.per_frequency.len() + self.boothooks.len()
    }

    /// The `text/x-shellscript-per-*` scripts of one frequency.
    pub fn per(&self, frequency: Frequency) -> impl Iterator<Item = &Script> {
        self.per_frequency
            .iter()
            .filter(move |(f, _)| *f == frequency)
            .map(|(_, script)| script)
    }

    /// Leaves out the parts whose MIME type is one of `disabled` (vendor data's
    /// `disabled_handlers`, which cloud-init's handler walk skips by the part's type:
    /// `text/cloud-config`, `text/x-shellscript`, `text/x-shellscript-per-boot`, …,
    /// `text/cloud-boothook`).
    pub fn without_types(&mut self, disabled: &[String]) {
        let off = |kind: PartKind| disabled.iter().any(|mime| mime == kind.mime_type());
        if off(PartKind::CloudConfig) {
            self.configs.clear();
        }
        if off(PartKind::Script) {
            self.scripts.clear();
        }
        self.per_frequency
            .retain(|(frequency, _)| !off(PartKind::ScriptPer(*frequency)));
        if off(PartKind::Boothook) {
            self.boothooks.clear();
        }
    }

    /// Appends everything `other` contributed (later documents win when configs merge): the
    /// parts of another document (vendor_data2.json after vendor_data.json). Each document
    /// names its unnamed parts from `part-001`: a script whose name this one already has gets a
    /// suffix (`part-001.1`), so the two never overwrite each other's file.
    pub fn extend(&mut self, other: Decoded) {
        self.configs.extend(other.configs);
        let mut taken = names(&self.scripts);
        for script in other.scripts {
            self.scripts.push(renamed_apart(&mut taken, script));
        }
        let mut taken: BTreeSet<String> = self
            .per_frequency
            .iter()
            .map(|(_, script)| script.name.clone())
            .collect();
        for (frequency, script) in other.per_frequency {
            self.per_frequency
                .push((frequency, renamed_apart(&mut taken, script)));
        }
        let mut taken = names(&self.boothooks);
        for script in other.boothooks {
            self.boothooks.push(renamed_apart(&mut taken, script));
        }
        self.warnings.extend(other.warnings);
        self.errors.extend(other.errors);
    }
}

fn names(scripts: &[Script]) -> BTreeSet<String> {
    scripts.iter().map(|script| script.name.clone()).collect()
}

/// `script`, with a suffix (`.1`, `.2`, …) when its name is `taken`; its name is taken then.
fn renamed_apart(taken: &mut BTreeSet<String>, mut script: Script) -> Script {
    let base = script.name.clone();
    let mut n = 1;
    while !taken.insert(script.name.clone()) {
        script.name = format!("{base}.{n}");
        n += 1;
    }
    script
}

/// Names no part takes: files of their own beside the user's scripts (`runcmd`'s script, the
/// `vendor` directory of vendor data's), which a part named so would overwrite or fail on. A
/// part of such a name gets a suffix (`runcmd.1`), as a second part of one name does.
pub const RESERVED_NAMES: &[&str] = &["runcmd", "vendor"];

/// Decodes user data as cloud-init does. With the instance's `launch_index` (nova's
/// `launch_index`, NoCloud's `launch-index`), a part marked for another instance of its
/// multi-create request is left out (cloud-init's `launch_index.Filter`); vendor data is never
/// filtered.
pub fn decode(data: &[u8], launch_index: Option<i64>, fetch: &dyn Fetch) -> Decoded {
    let mut decoder = Decoder::new(fetch);
    decoder.launch_index = launch_index;
    decoder.document(data, 0, "user data");
    decoder.finish()
}

/// Decodes `vendor_data.json` / `vendor_data2.json`: a string is user-data-like content, a list
/// holds parts, a mapping contributes only its `cloud-init` key (a string or a list). An empty
/// value (`null`, `""`, `{}`, `[]`, `0`, `false`) there or at the top is no vendor data, not
/// an error, as cloud-init's `convert_vendordata` takes it (`if not data: return None`).
pub fn decode_vendor(json: &[u8], origin: &str, fetch: &dyn Fetch) -> Decoded {
    let mut decoder = Decoder::new(fetch);
    let value: Value = match serde_json::from_slice(json) {
        Ok(value) => value,
        Err(err) => {
            decoder.error(format!("{origin}: not valid JSON: {err}"));
            return decoder.finish();
        }
    };
    let payload = match value {
        Value::Object(mut map) => map.remove(CLOUD_INIT_KEY).unwrap_or(Value::Null),
        other => other,
    };
    match payload {
        empty if is_empty(&empty) => {}
        Value::String(text) => decoder.document(text.as_bytes(), 0, origin),
        Value::Array(items) => {
            for item in items {
                decoder.list_item(&item, 0, origin, ItemOf::VendorList);
            }
        }
        Value::Object(_) => decoder.error(format!(
            "{origin}: `{CLOUD_INIT_KEY}` must be a string or a list, found a mapping"
        )),
        other => decoder.error(format!(
            "{origin}: `{CLOUD_INIT_KEY}` must be a string or a list, found {other}"
        )),
    }
    decoder.finish()
}

/// Whether `value` is false to Python (`not value`): `null`, `false`, zero, or an empty text,
/// list or mapping.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// The most errors, and the most warnings, one document's decoding lists (logs and keeps for
/// `status.json`) one by one; past it they are counted, and the count is the last line. A
/// document of a million empty multiparts gives 64 lines and a count, not a million lines on
/// the serial console.
pub const MAX_LISTED_MESSAGES: usize = 64;

/// Where a list item comes from, which says how far it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemOf {
    /// A `#cloud-config-archive`: the item is a leaf, applied by its `type` (or its first line)
    /// as cloud-init's `_explode_archive` attaches it: no include fetched, no archive
    /// expanded, no gzip or MIME opened.
    Archive,
    /// A vendor-data list: each item is processed as a document of its own, as cloud-init's
    /// `UserDataProcessor.process` runs `_process_msg` on each.
    VendorList,
}

/// What a part says of itself: its MIME type, file name, `Merge-Type` and `Launch-Index`
/// headers.
struct Declared<'a> {
    mime: &'a str,
    filename: Option<&'a str>,
    merge_type: Option<&'a str>,
    launch_index: Option<String>,
}

impl<'a> Declared<'a> {
    fn mime(mime: &'a str) -> Self {
        Declared {
            mime,
            filename: None,
            merge_type: None,
            launch_index: None,
        }
    }
}

/// A launch index as cloud-init's `safe_int` reads one: an integer, or text holding one;
/// anything else is none. Also how meta-data's `launch_index` and NoCloud's `launch-index`
/// are read.
pub fn launch_index_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// The launch index a `#cloud-config` part gives itself with a `launch-index` key (read when
/// it has no `Launch-Index` header).
fn config_launch_index(map: &ConfigMap) -> Option<String> {
    map.get(LAUNCH_INDEX_KEY)
        .and_then(launch_index_of)
        .map(|n| n.to_string())
}

/// The key of a `#cloud-config` part (and of an archive item) naming its launch index.
const LAUNCH_INDEX_KEY: &str = "launch-index";

struct Decoder<'a> {
    out: Decoded,
    fetch: &'a dyn Fetch,
    parts: usize,
    urls: usize,
    names: BTreeSet<String>,
    /// Bytes the gzip parts decompressed to so far.
    inflated: usize,
    /// What is left of the scalar bytes and values the YAML parts may expand to together.
    yaml: yaml::Allowance,
    /// The instance's launch index: parts marked for another are left out.
    launch_index: Option<i64>,
    /// Errors and warnings past [`MAX_LISTED_MESSAGES`], counted only.
    unlisted_errors: usize,
    unlisted_warnings: usize,
}

impl<'a> Decoder<'a> {
    fn new(fetch: &'a dyn Fetch) -> Self {
        Decoder {
            out: Decoded::default(),
            fetch,
            parts: 0,
            urls: 0,
            names: RESERVED_NAMES.iter().map(|&name| name.to_owned()).collect(),
            inflated: 0,
            yaml: yaml::Allowance::default(),
            launch_index: None,
            unlisted_errors: 0,
            unlisted_warnings: 0,
        }
    }

    /// What was decoded, with the count of the messages not listed.
    fn finish(mut self) -> Decoded {
        if self.unlisted_errors > 0 {
            let message = format!("{} more errors like these", self.unlisted_errors);
            tracing::error!("{message}");
            self.out.errors.push(message);
        }
        if self.unlisted_warnings > 0 {
            let message = format!("{} more warnings like these", self.unlisted_warnings);
            tracing::warn!("{message}");
            self.out.warnings.push(message);
        }
        self.out
    }

    /// Whether a part marked with launch index `marked` (`None`: unmarked) is for this
    /// instance: unmarked parts are for every instance, and so is every part when the
    /// instance has no launch index. A mark that is not a number is for none (cloud-init's
    /// `safe_int` gives `None`, which matches no index).
    fn for_this_instance(&self, name: &str, marked: Option<&str>) -> bool {
        let (Some(wanted), Some(marked)) = (self.launch_index, marked) else {
            return true;
        };
        let chosen = marked.trim().parse::<i64>().ok() == Some(wanted);
        if !chosen {
            tracing::info!(
                "{name}: Launch-Index {marked:?} is not this instance's ({wanted}); left out"
            );
        }
        chosen
    }

    fn error(&mut self, message: String) {
        if self.out.errors.len() >= MAX_LISTED_MESSAGES {
            self.unlisted_errors += 1;
            return;
        }
        tracing::error!("{message}");
        self.out.errors.push(message);
    }

    fn warning(&mut self, message: String) {
        if self.out.warnings.len() >= MAX_LISTED_MESSAGES {
            self.unlisted_warnings += 1;
            return;
        }
        tracing::warn!("{message}");
        self.out.warnings.push(message);
    }

    /// A whole document: gunzip by magic, then MIME or a single untyped part.
    fn document(&mut self, data: &[u8], depth: usize, origin: &str) {
        let data = if gzip::is_gzip(data) {
            // The document's own gzip counts with its parts' and its includes' towards the one
            // bound of the whole user data.
            let left = gzip::MAX_DECOMPRESSED_BYTES.saturating_sub(self.inflated);
            match gzip::gunzip(data, left) {
                Ok(plain) => {
                    self.inflated += plain.len();
                    Cow::Owned(plain)
                }
                Err(err) => {
                    return self.error(format!(
                        "{origin}: {} (the gzip parts of one user data decompress to at most \
                         {} bytes together)",
                        chain(&err),
                        gzip::MAX_DECOMPRESSED_BYTES
                    ));
                }
            }
        } else {
            Cow::Borrowed(data)
        };
        if mime::looks_like_mime(&data) {
            let split = mime::split(&data);
            for err in &split.errors {
                self.error(format!("{origin}: {}", chain(err)));
            }
            for part in split.parts {
                let declared = Declared {
                    mime: &part.content_type,
                    filename: part.filename.as_deref(),
                    merge_type: part.merge_type.as_deref(),
                    launch_index: part.launch_index.clone(),
                };
                self.part(&declared, &part.body, depth, false);
            }
        } else {
            self.part(&Declared::mime(NOT_MULTIPART), &data, depth, false);
        }
    }

    fn unique_name(&mut self, filename: Option<&str>) -> String {
        let base = filename
            .map(parts::safe_name)
            .unwrap_or_else(|| format!("part-{:03}", self.parts));
        let mut name = base.clone();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}.{n}");
            n += 1;
        }
        name
    }

    /// One part. A `leaf` (an archive's item) is applied by its type as it is; any other part
    /// is gunzipped, typed by its first line when its type is generic, and opened when it is an
    /// include or an archive.
    fn part(&mut self, declared: &Declared<'_>, body: &[u8], depth: usize, leaf: bool) {
        let filename = declared.filename;
        let merge_type = declared.merge_type;
        let launch_index = declared.launch_index.as_deref();
        let declared = declared.mime;
        self.parts += 1;
        if self.parts > MAX_PARTS {
            if self.parts == MAX_PARTS + 1 {
                self.error(format!(
                    "user data has more than {MAX_PARTS} parts; the rest is ignored"
                ));
            }
            return;
        }
        let name = self.unique_name(filename);
        let mut declared = declared.to_ascii_lowercase();
        let mut body = Cow::Borrowed(body);
        if !leaf && (GZIP_TYPES.contains(&declared.as_str()) || gzip::is_gzip(&body)) {
            // One bound for every gzip part of the document together, not one per part.
            let left = gzip::MAX_DECOMPRESSED_BYTES.saturating_sub(self.inflated);
            match gzip::gunzip(&body, left) {
                Ok(plain) => {
                    self.inflated += plain.len();
                    body = Cow::Owned(plain);
                }
                Err(err) => {
                    return self.error(format!(
                        "{name}: {} (the gzip parts of one user data decompress to at most {} \
                         bytes together)",
                        chain(&err),
                        gzip::MAX_DECOMPRESSED_BYTES
                    ));
                }
            }
            declared = NOT_MULTIPART.to_owned();
        }
        let script = |body: &[u8]| Script {
            name: name.clone(),
            body: dos2unix(body),
        };
        let kind = if leaf {
            PartKind::of_archive_item(&declared, &body)
        } else {
            PartKind::of(&declared, &body)
        };
        // An include or an archive is opened whatever its mark: cloud-init filters the parts
        // they hold, each by its own mark.
        let opened = !leaf
            && matches!(
                kind,
                PartKind::Include | PartKind::IncludeOnce | PartKind::CloudConfigArchive
            );
        if !opened && !self.for_this_instance(&name, launch_index) {
            return;
        }
        // cloud-init attaches an archive's item as it is: an include, an archive, text or any
        // other type that no handler takes is logged ("Unhandled unknown content-type").
        if leaf
            && matches!(
                kind,
                PartKind::Include
                    | PartKind::IncludeOnce
                    | PartKind::CloudConfigArchive
                    | PartKind::Untyped
                    | PartKind::Other(_)
            )
        {
            let mime = if declared.is_empty() {
                kind.mime_type()
            } else {
                &declared
            };
            return self.warning(format!(
                "{name}: archive item of type {mime} ignored: an archive's items are applied as \
                 they are, as cloud-init applies them (no include fetched, no archive expanded, \
                 no gzip or MIME opened), and no handler takes this type; give it as user data \
                 or a MIME part of its own"
            ));
        }
        match kind {
            PartKind::CloudConfig => match std::str::from_utf8(&body) {
                Ok(text) => match yaml::parse_cloud_config(text, &mut self.yaml) {
                    Ok(map)
                        if launch_index.is_none()
                            && !self.for_this_instance(
                                &name,
                                config_launch_index(&map).as_deref(),
                            ) => {}
                    Ok(mut map) => match Mergers::of_part(&mut map, merge_type) {
                        Ok(mergers) => {
                            if let Some(mergers) = mergers {
                                map.insert(merge::MERGE_HOW.to_owned(), mergers.text().into());
                            }
                            self.out.configs.push(map);
                        }
                        Err(err) => self.error(format!(
                            "{name}: merge_how: {err}; this part was not merged"
                        )),
                    },
                    Err(err) => self.error(format!("{name}: cloud-config: {err}")),
                },
                Err(_) => self.error(format!("{name}: cloud-config is not UTF-8")),
            },
            PartKind::Script => self.out.scripts.push(script(&body)),
            PartKind::ScriptPer(frequency) => {
                self.out.per_frequency.push((frequency, script(&body)));
            }
            PartKind::Boothook => self.out.boothooks.push(Script {
                name: name.clone(),
                body: boothook(&body),
            }),
            PartKind::Include | PartKind::IncludeOnce => self.include(&body, depth, &name),
            PartKind::CloudConfigArchive => self.archive(&body, depth, &name),
            PartKind::Untyped => self.warning(format!(
                "{name}: unrecognised content (first line is not #cloud-config, #!, #include, …); ignored"
            )),
            // cloud-init would apply it: the run is an error, so that status says what of the
            // user's data was left out.
            PartKind::Unhandled(mime) => self.error(format!(
                "{name}: {mime} parts are not supported by metaboot; this part was not applied"
            )),
            PartKind::Other(mime) => {
                self.warning(format!("{name}: unsupported part type {mime}; ignored"));
            }
        }
    }

    fn include(&mut self, body: &[u8], depth: usize, name: &str) {
        if depth >= include::MAX_INCLUDE_DEPTH {
            return self.error(format!(
                "{name}: includes nested more than {} levels deep",
                include::MAX_INCLUDE_DEPTH
            ));
        }
        for url in include::urls(body) {
            self.urls += 1;
            if self.urls > include::MAX_INCLUDE_URLS {
                return self.error(format!(
                    "{name}: more than {} include URLs; {} and the rest ignored",
                    include::MAX_INCLUDE_URLS,
                    shown_url(&url)
                ));
            }
            match self.fetch.fetch(&url, include::MAX_INCLUDE_BYTES) {
                // The URL names the document in its messages: masked, as everywhere.
                Ok(Some(content)) => self.document(&content, depth + 1, &shown_url(&url)),
                Ok(None) => self.error(format!(
                    "{name}: include {}: not found (404)",
                    shown_url(&url)
                )),
                Err(err) => self.error(format!("{name}: include {}: {err}", shown_url(&url))),
            }
        }
    }

    /// A `#cloud-config-archive`: its items are leaves, so archives never nest.
    fn archive(&mut self, body: &[u8], depth: usize, name: &str) {
        let text = String::from_utf8_lossy(body);
        let parsed = archive::parse(&text, &mut self.yaml);
        if let Ok(archive) = &parsed {
            for number in &archive.not_text {
                self.warning(format!(
                    "{name}: cloud-config-archive item {number}: its `!!binary` content is not \
                     UTF-8 text (gzip bytes?); ignored, as cloud-init has no handler for it (give \
                     text content, or a gzip part outside the archive)"
                ));
            }
        }
        match parsed.map(|archive| archive.value) {
            Ok(Value::Array(items)) => {
                for item in items {
                    self.list_item(&item, depth, name, ItemOf::Archive);
                }
            }
            Ok(_) => self.error(format!("{name}: cloud-config-archive must be a list")),
            Err(err) => self.error(format!("{name}: cloud-config-archive: {err}")),
        }
    }

    /// An archive or vendor-data list item: a string, or `{content, type, filename}`. An
    /// archive's item is a leaf ([`ItemOf::Archive`]); without a type it is typed by its first
    /// line, else cloud-config (cloud-init's `ARCHIVE_UNDEF_TYPE`). A vendor-data list's string
    /// is a document, its untyped mapping a part typed by its first line.
    fn list_item(&mut self, item: &Value, depth: usize, origin: &str, of: ItemOf) {
        let leaf = of == ItemOf::Archive;
        match item {
            Value::String(content) if !leaf => self.document(content.as_bytes(), depth, origin),
            Value::String(content) => {
                self.part(&Declared::mime(""), content.as_bytes(), depth, true);
            }
            Value::Object(map) => {
                let content = match map.get("content") {
                    None | Some(Value::Null) => "",
                    Some(Value::String(text)) => text,
                    // A mapping or a list (a `content:` without its `|`): no part's text.
                    Some(other) => {
                        let found = match other {
                            Value::Object(_) => "a mapping",
                            Value::Array(_) => "a list",
                            _ => "not text",
                        };
                        return self.warning(format!(
                            "{origin}: an archive item's content is {found}, not text (a block \
                             scalar needs `content: |`); ignored"
                        ));
                    }
                };
                let untyped = if leaf { "" } else { NOT_MULTIPART };
                let kind = map.get("type").and_then(Value::as_str).unwrap_or(untyped);
                // Its other keys are its headers, as cloud-init's `_explode_archive` makes them.
                let header = |name: &str| {
                    map.iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .and_then(|(_, value)| value.as_str())
                };
                let declared = Declared {
                    mime: kind,
                    filename: map.get("filename").and_then(Value::as_str),
                    merge_type: header("merge-type").or_else(|| header("x-merge-type")),
                    // As cloud-init's `str(ent["launch-index"])`: a number or text.
                    launch_index: map.get(LAUNCH_INDEX_KEY).map(|value| match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    }),
                };
                self.part(&declared, content.as_bytes(), depth, leaf);
            }
            // Not quoted: it may hold anything, and warnings go to status.json.
            _ => self.warning(format!(
                "{origin}: ignoring a list item that is neither text nor a part (a map)"
            )),
        }
    }
}

/// A script's body as cloud-init writes every script (`util.dos2unix`): when its first line
/// ends in CRLF (a script typed in a Windows browser, Horizon's user data box), every CRLF
/// becomes LF, else the kernel would look for the interpreter `/bin/bash\r`; a script whose
/// first line ends in LF is kept as it is.
pub fn dos2unix(body: &[u8]) -> Vec<u8> {
    let crlf = body
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|end| end > 0 && body[end - 1] == b'\r');
    if !crlf {
        return body.to_vec();
    }
    let mut unix = Vec::with_capacity(body.len());
    for (i, &b) in body.iter().enumerate() {
        if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            continue;
        }
        unix.push(b);
    }
    unix
}

/// A boothook's script, as cloud-init's `BootHookPartHandler` writes it: line ends made LF as
/// every script's ([`dos2unix`]), the `#cloud-boothook` marker taken off, then the blank space
/// before the script (a part declared `text/cloud-boothook` without the marker, `#!/bin/bash`
/// first, is kept whole).
fn boothook(body: &[u8]) -> Vec<u8> {
    let unix = dos2unix(body);
    let rest = unix.strip_prefix(BOOTHOOK_MARKER).unwrap_or(&unix);
    let start = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    rest[start..].to_vec()
}

/// The first line of a boothook.
const BOOTHOOK_MARKER: &[u8] = b"#cloud-boothook";

#[cfg(test)]
mod tests;
