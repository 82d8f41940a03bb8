//! Part types: the MIME types cloud-init handles and the first-line markers (`#!`,
//! `#cloud-config`, …) that type untyped parts (docs/protocol.md §4.6 step 3).

/// First-line markers and the type they give, longest first so `#cloud-config-archive` wins
/// over `#cloud-config` and `#include-once` over `#include`.
pub const FIRST_LINE_TYPES: &[(&str, &str)] = &[
    ("#cloud-config-archive", CLOUD_CONFIG_ARCHIVE),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("## template: jinja", "text/jinja2"),
    ("#cloud-boothook", BOOTHOOK),
    ("#include-once", INCLUDE_ONCE),
    ("#cloud-config", CLOUD_CONFIG),
    ("#part-handler", "text/part-handler"),
    ("#include", INCLUDE),
    ("#!", SHELLSCRIPT),
];

/// `#cloud-config`.
pub const CLOUD_CONFIG: &str = "text/cloud-config";
/// `#cloud-config-archive`.
pub const CLOUD_CONFIG_ARCHIVE: &str = "text/cloud-config-archive";
/// `#!`: run once per instance.
pub const SHELLSCRIPT: &str = "text/x-shellscript";
/// Scripts run at every boot.
pub const SHELLSCRIPT_PER_BOOT: &str = "text/x-shellscript-per-boot";
/// Scripts run once per instance (from the per-instance directory).
pub const SHELLSCRIPT_PER_INSTANCE: &str = "text/x-shellscript-per-instance";
/// Scripts run once ever.
pub const SHELLSCRIPT_PER_ONCE: &str = "text/x-shellscript-per-once";
/// `#cloud-boothook`.
pub const BOOTHOOK: &str = "text/cloud-boothook";
/// `#include`.
pub const INCLUDE: &str = "text/x-include-url";
/// `#include-once`.
pub const INCLUDE_ONCE: &str = "text/x-include-once-url";
/// Untyped content (not MIME).
pub const NOT_MULTIPART: &str = "text/x-not-multipart";

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

/// Types that are re-typed by their first line.
const RETYPED: &[&str] = &["text/plain", NOT_MULTIPART, SHELLSCRIPT];

/// The type given by the first line (leading whitespace skipped, case-insensitive), if any.
pub fn type_from_first_line(body: &[u8]) -> Option<&'static str> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let head = &body[start..];
    FIRST_LINE_TYPES
        .iter()
        .find(|(marker, _)| {
            head.len() >= marker.len()
                && head[..marker.len()].eq_ignore_ascii_case(marker.as_bytes())
        })
        .map(|(_, kind)| *kind)
}

/// The effective type of a part: its declared type, or its first line's for the generic types.
pub fn effective_type(declared: &str, body: &[u8]) -> String {
    let declared = declared.to_ascii_lowercase();
    if RETYPED.contains(&declared.as_str())
        && let Some(kind) = type_from_first_line(body)
    {
        return kind.to_owned();
    }
    declared
}

/// A file name safe to use inside a scripts directory: `[A-Za-z0-9._-]`, no leading dot.
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
        cleaned.chars().take(100).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_markers_longest_first_case_insensitive() {
        assert_eq!(
            type_from_first_line(b"#cloud-config\na: 1"),
            Some(CLOUD_CONFIG)
        );
        assert_eq!(
            type_from_first_line(b"#cloud-config-archive\n- x"),
            Some(CLOUD_CONFIG_ARCHIVE)
        );
        assert_eq!(
            type_from_first_line(b"  \n#Cloud-Config\n"),
            Some(CLOUD_CONFIG)
        );
        assert_eq!(type_from_first_line(b"#!/bin/bash\n"), Some(SHELLSCRIPT));
        assert_eq!(
            type_from_first_line(b"#include-once\nhttp://x"),
            Some(INCLUDE_ONCE)
        );
        assert_eq!(type_from_first_line(b"#include\nhttp://x"), Some(INCLUDE));
        assert_eq!(
            type_from_first_line(b"#cloud-boothook\necho"),
            Some(BOOTHOOK)
        );
        assert_eq!(type_from_first_line(b"hello"), None);
        assert_eq!(type_from_first_line(b""), None);
    }

    #[test]
    fn only_generic_types_are_retyped() {
        assert_eq!(
            effective_type("text/plain", b"#cloud-config\n"),
            CLOUD_CONFIG
        );
        assert_eq!(
            effective_type("TEXT/X-NOT-MULTIPART", b"#!/bin/sh"),
            SHELLSCRIPT
        );
        assert_eq!(
            effective_type("text/x-shellscript", b"#cloud-config\n"),
            CLOUD_CONFIG
        );
        assert_eq!(
            effective_type("text/x-shellscript", b"echo no shebang"),
            SHELLSCRIPT
        );
        assert_eq!(
            effective_type("text/cloud-config", b"#!/bin/sh"),
            CLOUD_CONFIG
        );
        assert_eq!(effective_type("text/plain", b"nothing"), "text/plain");
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("hello.sh"), "hello.sh");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a b;c"), "a_b_c");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name(".."), "part");
    }
}
