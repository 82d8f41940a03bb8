//! Vendor data (docs/protocol.md §1.6): a static JSON file served as `vendor_data.json` and under
//! the `static` key of `vendor_data2.json` (nova's StaticJSON provider). The file's own text is
//! served, its whitespace outside strings dropped: never parsed into numbers and maps and
//! written again, which would sort its keys and round integers past 64 bits.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use metaboot_proto::vendor_data::STATIC_PROVIDER_KEY;
use thiserror::Error;

/// Largest vendor data file accepted at start, in bytes.
pub const MAX_VENDOR_DATA_BYTES: usize = 256 * 1024;
/// Deepest nesting of arrays and objects accepted: serde_json reads 127 levels, and
/// `vendor_data2.json` puts the file one level down (`{"static": …}`), so the guest agent,
/// which reads vendor data with serde_json, can read every document the server serves.
pub const MAX_VENDOR_DATA_DEPTH: usize = 126;

/// Why the vendor data file was refused.
#[derive(Debug, Error)]
pub enum VendorDataError {
    #[error(
        "cannot read the vendor data file {}: give the path of a JSON file the user this runs \
         as can read",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the vendor data file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the vendor data file {} is larger than {MAX_VENDOR_DATA_BYTES} bytes, the limit: \
         serve less, or point guests at a URL in it",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error(
        "the vendor data file {} is not valid JSON (nova's StaticJSON provider serves a JSON \
         document): fix it",
        path.display()
    )]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the vendor data file {} is not UTF-8 (JSON text is UTF-8): save it as UTF-8",
        path.display()
    )]
    NotUtf8 {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error(
        "the vendor data file {} nests arrays and objects more than {MAX_VENDOR_DATA_DEPTH} \
         deep, the limit (the guest agent's JSON parser reads no deeper): flatten it",
        path.display()
    )]
    TooDeep { path: PathBuf },
}

impl VendorDataError {
    /// True when the user's file (not the machine) is at fault: the CLI exits 2.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Unreadable { .. }
                | Self::TooLarge { .. }
                | Self::NotJson { .. }
                | Self::NotUtf8 { .. }
                | Self::TooDeep { .. }
        )
    }

    /// The error for `source`, met opening or reading `path`.
    fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        if crate::user_file::is_users_fault(source.kind()) {
            Self::Unreadable { path, source }
        } else {
            Self::Read { path, source }
        }
    }
}

/// The two vendor documents, rendered once at start.
#[derive(Debug, Clone)]
pub struct VendorDocs {
    pub vendor_data: Bytes,
    pub vendor_data2: Bytes,
}

impl Default for VendorDocs {
    /// No file configured: `{}` and `{"static": {}}`, as nova.
    fn default() -> Self {
        Self::from_compact("{}".to_owned())
    }
}

impl VendorDocs {
    /// The documents around `compact`, one JSON value without whitespace outside strings.
    fn from_compact(compact: String) -> Self {
        let two = format!("{{\"{STATIC_PROVIDER_KEY}\":{compact}}}");
        Self {
            vendor_data: Bytes::from(compact),
            vendor_data2: Bytes::from(two),
        }
    }

    /// Loads the file; a missing, too large or invalid file is an error at start (nova instead
    /// answers every request with 500, docs/protocol.md §1.6). Reads one byte past the limit,
    /// never more: a larger file (or `/dev/zero`) is refused for its size without reading it.
    pub fn load(path: &Path) -> Result<Self, VendorDataError> {
        let file = std::fs::File::open(path).map_err(|err| VendorDataError::io(path, err))?;
        let text = crate::user_file::read_at_most(file, MAX_VENDOR_DATA_BYTES)
            .map_err(|err| VendorDataError::io(path, err))?
            .ok_or_else(|| VendorDataError::TooLarge {
                path: path.to_owned(),
            })?;
        let text = String::from_utf8(text).map_err(|source| VendorDataError::NotUtf8 {
            path: path.to_owned(),
            source,
        })?;
        // The depth first, so that a file too deep is told so (serde_json's own parse stops
        // at its limit with a syntax error).
        let compact = compact(&text).ok_or_else(|| VendorDataError::TooDeep {
            path: path.to_owned(),
        })?;
        // Checked as the guest agent reads it (serde_json): what it could not read (`1e400`, a
        // lone surrogate `"\ud800"`) stops the server here rather than every guest's vendor
        // data. The value is then dropped: the file's own text is what is served.
        serde_json::from_str::<serde_json::Value>(&text).map_err(|source| {
            VendorDataError::NotJson {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(Self::from_compact(compact))
    }
}

/// `json`, valid JSON, without the whitespace between its tokens (metaboot's JSON is compact,
/// docs/protocol.md §1.1); every string, number and key stays as written, in its place. `None`
/// when arrays and objects nest deeper than [`MAX_VENDOR_DATA_DEPTH`].
fn compact(json: &str) -> Option<String> {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped, mut depth) = (false, false, 0usize);
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                // JSON's whitespace (RFC 8259 §2); nothing else lies between tokens.
                ' ' | '\t' | '\n' | '\r' => continue,
                '"' => in_string = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_VENDOR_DATA_DEPTH {
                        return None;
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_documents_match_nova() {
        let docs = VendorDocs::default();
        assert_eq!(docs.vendor_data, "{}");
        assert_eq!(docs.vendor_data2, r#"{"static":{}}"#);
    }

    #[test]
    fn loads_a_file_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("vendor.json");
        std::fs::write(
            &good,
            r##"{"cloud-init": "#cloud-config\nruncmd: [true]"}"##,
        )
        .unwrap();
        let docs = VendorDocs::load(&good).unwrap();
        assert!(docs.vendor_data2.starts_with(br#"{"static":{"cloud-init""#));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{nope").unwrap();
        let err = VendorDocs::load(&bad).unwrap_err();
        assert!(matches!(err, VendorDataError::NotJson { .. }), "{err}");
        assert!(err.is_user_error());
        let err = VendorDocs::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, VendorDataError::Unreadable { .. }), "{err}");
        assert!(err.is_user_error());
        let err = VendorDocs::load(dir.path()).unwrap_err();
        assert!(err.is_user_error(), "a directory: {err}");
    }

    /// nova serves what Python's `json` read (key order kept, integers exact): the file's own
    /// text, not a re-serialised map with sorted keys and integers rounded to floats.
    #[test]
    fn the_files_text_is_served_as_written_without_its_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vendor.json");
        std::fs::write(
            &file,
            "{\n  \"zeta\": 1,\r\n\t\"id\": 123456789012345678901234,\n  \"alpha\": {\"b\": 1e300, \
             \"a\": \"x y\\n\\\"q\\\" \\\\ {\"},\n  \"list\": [ 1.50, -0.0, 2E+3, \"é\\u00e9\" ]\n}\n",
        )
        .unwrap();
        let docs = VendorDocs::load(&file).unwrap();
        let want = r#"{"zeta":1,"id":123456789012345678901234,"alpha":{"b":1e300,"a":"x y\n\"q\" \\ {"},"list":[1.50,-0.0,2E+3,"é\u00e9"]}"#;
        assert_eq!(std::str::from_utf8(&docs.vendor_data).unwrap(), want);
        assert_eq!(
            std::str::from_utf8(&docs.vendor_data2).unwrap(),
            format!(r#"{{"static":{want}}}"#)
        );
        // Any JSON value, as nova's `json.load` takes (cloud-init reads a string or a list too).
        std::fs::write(&file, " [ \"#cloud-config\" ] ").unwrap();
        let docs = VendorDocs::load(&file).unwrap();
        assert_eq!(docs.vendor_data, r##"["#cloud-config"]"##);
        assert_eq!(docs.vendor_data2, r##"{"static":["#cloud-config"]}"##);
        // What the guest agent's serde_json cannot read is refused at start.
        for unreadable in ["{\"b\": 1e400}", "[-1e400]", "\"\\ud800\""] {
            std::fs::write(&file, unreadable).unwrap();
            let err = VendorDocs::load(&file).unwrap_err();
            assert!(
                matches!(err, VendorDataError::NotJson { .. }),
                "{unreadable}: {err}"
            );
        }
        // Trailing text after the value is still refused.
        std::fs::write(&file, "{} {}").unwrap();
        let err = VendorDocs::load(&file).unwrap_err();
        assert!(matches!(err, VendorDataError::NotJson { .. }), "{err}");
        std::fs::write(&file, b"{\"a\": \"\xff\"}").unwrap();
        let err = VendorDocs::load(&file).unwrap_err();
        assert!(matches!(err, VendorDataError::NotUtf8 { .. }), "{err}");
        assert!(err.is_user_error());
    }

    /// The deepest file served is one the guest agent's serde_json still reads, also inside
    /// `vendor_data2.json`'s `{"static": …}`.
    #[test]
    fn the_depth_limit_is_serde_jsons() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vendor.json");
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deepest = nested(MAX_VENDOR_DATA_DEPTH);
        std::fs::write(&file, &deepest).unwrap();
        let docs = VendorDocs::load(&file).unwrap();
        assert_eq!(docs.vendor_data, deepest);
        let two = std::str::from_utf8(&docs.vendor_data2).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(two).is_ok());
        // Far deeper too: told as too deep, not as a syntax error.
        for far in [MAX_VENDOR_DATA_DEPTH + 2, 4 * MAX_VENDOR_DATA_DEPTH] {
            std::fs::write(&file, nested(far)).unwrap();
            let err = VendorDocs::load(&file).unwrap_err();
            assert!(
                matches!(err, VendorDataError::TooDeep { .. }),
                "{far}: {err}"
            );
        }
        let deeper = nested(MAX_VENDOR_DATA_DEPTH + 1);
        let wrapped = format!(r#"{{"static":{deeper}}}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&wrapped).is_err());
        std::fs::write(&file, &deeper).unwrap();
        let err = VendorDocs::load(&file).unwrap_err();
        assert!(matches!(err, VendorDataError::TooDeep { .. }), "{err}");
        assert!(err.is_user_error());
        assert!(err.to_string().contains("more than 126 deep"), "{err}");
    }

    #[test]
    fn the_size_limit_holds_at_one_byte_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vendor.json");
        // A JSON string of exactly the limit, then one byte longer.
        let quoted = |len: usize| format!("\"{}\"", "x".repeat(len - 2));
        std::fs::write(&file, quoted(MAX_VENDOR_DATA_BYTES)).unwrap();
        assert!(VendorDocs::load(&file).is_ok());
        std::fs::write(&file, quoted(MAX_VENDOR_DATA_BYTES + 1)).unwrap();
        let err = VendorDocs::load(&file).unwrap_err();
        assert!(matches!(err, VendorDataError::TooLarge { .. }), "{err}");
        assert!(err.is_user_error());
        assert!(
            err.to_string()
                .contains(&format!("larger than {MAX_VENDOR_DATA_BYTES} bytes")),
            "{err}"
        );
    }

    #[test]
    fn an_endless_file_is_refused_for_its_size_without_reading_it_all() {
        let err = VendorDocs::load(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, VendorDataError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn other_read_errors_are_the_machines() {
        let err = VendorDataError::io(
            Path::new("v.json"),
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(!err.is_user_error(), "{err}");
    }
}
