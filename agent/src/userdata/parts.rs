//! Part kinds: the MIME types cloud-init handles and the first-line markers (`#!`,
//! `#cloud-config`, …) that type untyped parts (docs/protocol.md §4.6 step 3). A new format is a
//! new [`PartKind`]: the compiler then points at every place that must handle it.

use crate::state::semaphore::Frequency;

/// What a part of user data is, and so what the decoder does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// `#cloud-config`: merged into the configuration.
    CloudConfig,
    /// `#cloud-config-archive`: a YAML list of parts.
    CloudConfigArchive,
    /// `#!`: a user script, run once per instance by `scripts-user`.
    Script,
    /// `text/x-shellscript-per-{boot,instance,once}`: a script run from the directory of its
    /// frequency.
    ScriptPer(Frequency),
    /// `#cloud-boothook`: run early at every boot.
    Boothook,
    /// `#include`: URLs whose content is decoded in place.
    Include,
    /// `#include-once`: the same, fetched once per instance by cloud-init.
    IncludeOnce,
    /// `#cloud-config-jsonp`, `## template: jinja`, `#part-handler`: cloud-init formats metaboot
    /// does not handle (their MIME type, for the warning).
    Unhandled(&'static str),
    /// `text/plain` or untyped content whose first line names no kind.
    Untyped,
    /// Any other MIME type.
    Other(String),
}

/// The MIME type of each kind that has one of its own.
const MIME_TYPES: &[(&str, PartKind)] = &[
    (CLOUD_CONFIG_TYPE, PartKind::CloudConfig),
    ("text/cloud-config-archive", PartKind::CloudConfigArchive),
    ("text/x-shellscript", PartKind::Script),
    (
        "text/x-shellscript-per-boot",
        PartKind::ScriptPer(Frequency::Always),
    ),
    (
        "text/x-shellscript-per-instance",
        PartKind::ScriptPer(Frequency::PerInstance),
    ),
    (
        "text/x-shellscript-per-once",
        PartKind::ScriptPer(Frequency::Once),
    ),
    ("text/cloud-boothook", PartKind::Boothook),
    ("text/x-include-url", PartKind::Include),
    ("text/x-include-once-url", PartKind::IncludeOnce),
    (
        "text/cloud-config-jsonp",
        PartKind::Unhandled("text/cloud-config-jsonp"),
    ),
    ("text/jinja2", PartKind::Unhandled("text/jinja2")),
    (
        "text/part-handler",
        PartKind::Unhandled("text/part-handler"),
    ),
    ("text/plain", PartKind::Untyped),
    (NOT_MULTIPART, PartKind::Untyped),
];

/// First-line markers and the kind they give, longest first so `#cloud-config-archive` wins
/// over `#cloud-config` and `#include-once` over `#include`.
pub const FIRST_LINE_KINDS: &[(&str, PartKind)] = &[
    ("#cloud-config-archive", PartKind::CloudConfigArchive),
    (
        "#cloud-config-jsonp",
        PartKind::Unhandled("text/cloud-config-jsonp"),
    ),
    ("## template: jinja", PartKind::Unhandled("text/jinja2")),
    ("#cloud-boothook", PartKind::Boothook),
    ("#include-once", PartKind::IncludeOnce),
    ("#cloud-config", PartKind::CloudConfig),
    ("#part-handler", PartKind::Unhandled("text/part-handler")),
    ("#include", PartKind::Include),
    ("#!", PartKind::Script),
];

/// The type of content that is not MIME multipart (cloud-init's name for it).
pub const NOT_MULTIPART: &str = "text/x-not-multipart";
/// The type of a `#cloud-config` part.
pub const CLOUD_CONFIG_TYPE: &str = "text/cloud-config";

/// MIME types whose body is gzip (cloud-init's `DECOMP_TYPES`).
pub const GZIP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

impl PartKind {
    /// The kind a MIME type declares (case-insensitive).
    pub fn from_mime(declared: &str) -> PartKind {
        let declared = declared.to_ascii_lowercase();
        MIME_TYPES
            .iter()
            .find(|(mime, _)| *mime == declared)
            .map_or(PartKind::Other(declared), |(_, kind)| kind.clone())
    }

    /// The kind the first line gives (leading whitespace skipped, case-insensitive), if any.
    pub fn from_first_line(body: &[u8]) -> Option<PartKind> {
        let start = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(body.len());
        let head = &body[start..];
        FIRST_LINE_KINDS
            .iter()
            .find(|(marker, _)| {
                head.len() >= marker.len()
                    && head[..marker.len()].eq_ignore_ascii_case(marker.as_bytes())
            })
            .map(|(_, kind)| kind.clone())
    }

    /// The kind of a part: its declared type's, or its first line's for the generic types
    /// (`text/plain`, untyped, and `text/x-shellscript`, as cloud-init re-types them).
    pub fn of(declared: &str, body: &[u8]) -> PartKind {
        let kind = PartKind::from_mime(declared);
        match kind {
            PartKind::Untyped | PartKind::Script => PartKind::from_first_line(body).unwrap_or(kind),
            _ => kind,
        }
    }

    /// The MIME type of this kind (the first one [`MIME_TYPES`] gives it, `Other`'s own).
    pub fn mime_type(&self) -> &str {
        match self {
            PartKind::Other(mime) => mime,
            kind => MIME_TYPES
                .iter()
                .find(|(_, named)| named == kind)
                .map_or(NOT_MULTIPART, |(mime, _)| mime),
        }
    }

    /// The kind of a `#cloud-config-archive` item, as cloud-init's `_explode_archive` types it:
    /// its `type` as given (`""`: none), never re-typed; without one, its first line's, else
    /// cloud-config (`ARCHIVE_UNDEF_TYPE`).
    pub fn of_archive_item(declared: &str, body: &[u8]) -> PartKind {
        if declared.is_empty() {
            PartKind::from_first_line(body).unwrap_or(PartKind::CloudConfig)
        } else {
            PartKind::from_mime(declared)
        }
    }
}

/// Longest file name a part gets (characters, all ASCII after [`safe_name`]), well under a
/// file system's 255 bytes so that a suffix (`.1`) and a `vendor-` prefix still fit.
pub const MAX_PART_NAME_CHARS: usize = 100;

/// A file name safe to use inside a scripts directory: `[A-Za-z0-9._-]`, no leading dot, at
/// most [`MAX_PART_NAME_CHARS`] long.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "part".to_owned()
    } else {
        cleaned.chars().take(MAX_PART_NAME_CHARS).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_markers_longest_first_case_insensitive() {
        let kind = PartKind::from_first_line;
        assert_eq!(kind(b"#cloud-config\na: 1"), Some(PartKind::CloudConfig));
        assert_eq!(
            kind(b"#cloud-config-archive\n- x"),
            Some(PartKind::CloudConfigArchive)
        );
        assert_eq!(kind(b"  \n#Cloud-Config\n"), Some(PartKind::CloudConfig));
        assert_eq!(kind(b"#!/bin/bash\n"), Some(PartKind::Script));
        assert_eq!(
            kind(b"#include-once\nhttp://x"),
            Some(PartKind::IncludeOnce)
        );
        assert_eq!(kind(b"#include\nhttp://x"), Some(PartKind::Include));
        assert_eq!(kind(b"#cloud-boothook\necho"), Some(PartKind::Boothook));
        assert_eq!(
            kind(b"## template: jinja\n"),
            Some(PartKind::Unhandled("text/jinja2"))
        );
        assert_eq!(kind(b"hello"), None);
        assert_eq!(kind(b""), None);
    }

    #[test]
    fn mime_types_name_their_kind() {
        assert_eq!(
            PartKind::from_mime("Text/X-Shellscript-Per-Boot"),
            PartKind::ScriptPer(Frequency::Always)
        );
        assert_eq!(
            PartKind::from_mime("text/x-shellscript-per-once"),
            PartKind::ScriptPer(Frequency::Once)
        );
        assert_eq!(PartKind::from_mime(NOT_MULTIPART), PartKind::Untyped);
        assert_eq!(
            PartKind::from_mime("application/JSON"),
            PartKind::Other("application/json".to_owned())
        );
    }

    #[test]
    fn only_generic_types_are_retyped() {
        let cases: [(&str, &[u8], PartKind); 6] = [
            ("text/plain", b"#cloud-config\n", PartKind::CloudConfig),
            ("TEXT/X-NOT-MULTIPART", b"#!/bin/sh", PartKind::Script),
            (
                "text/x-shellscript",
                b"#cloud-config\n",
                PartKind::CloudConfig,
            ),
            ("text/x-shellscript", b"echo no shebang", PartKind::Script),
            ("text/cloud-config", b"#!/bin/sh", PartKind::CloudConfig),
            ("text/plain", b"nothing", PartKind::Untyped),
        ];
        for (declared, body, kind) in cases {
            assert_eq!(PartKind::of(declared, body), kind, "{declared}");
        }
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("hello.sh"), "hello.sh");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a b;c"), "a_b_c");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name(".."), "part");
    }

    #[test]
    fn names_are_cut_to_the_bound() {
        let long = "a".repeat(MAX_PART_NAME_CHARS + 1);
        assert_eq!(safe_name(&long), long[..MAX_PART_NAME_CHARS]);
        assert_eq!(safe_name(&long[1..]), long[1..]);
    }
}
