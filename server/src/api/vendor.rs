//! Vendor data (docs/protocol.md §1.6): a static JSON file served as `vendor_data.json` and under
//! the `static` key of `vendor_data2.json` (nova's StaticJSON provider).

use std::io::{ErrorKind, Read as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use metaboot_proto::vendor_data::STATIC_PROVIDER_KEY;
use thiserror::Error;

/// Largest vendor data file accepted at start, in bytes.
pub const MAX_VENDOR_DATA_BYTES: usize = 256 * 1024;

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
}

impl VendorDataError {
    /// True when the user's file (not the machine) is at fault: the CLI exits 2.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Unreadable { .. } | Self::TooLarge { .. } | Self::NotJson { .. }
        )
    }

    /// The error for `source`, met opening or reading `path`.
    fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::IsADirectory => {
                Self::Unreadable { path, source }
            }
            _ => Self::Read { path, source },
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
        Self::from_value(&serde_json::json!({}))
    }
}

impl VendorDocs {
    fn from_value(value: &serde_json::Value) -> Self {
        let two = serde_json::json!({ STATIC_PROVIDER_KEY: value });
        Self {
            vendor_data: Bytes::from(value.to_string()),
            vendor_data2: Bytes::from(two.to_string()),
        }
    }

    /// Loads the file; a missing, too large or invalid file is an error at start (nova instead
    /// answers every request with 500, docs/protocol.md §1.6). Reads one byte past the limit,
    /// never more: a larger file (or `/dev/zero`) is refused for its size without reading it.
    pub fn load(path: &Path) -> Result<Self, VendorDataError> {
        let file = std::fs::File::open(path).map_err(|err| VendorDataError::io(path, err))?;
        let mut text = Vec::new();
        file.take(MAX_VENDOR_DATA_BYTES as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|err| VendorDataError::io(path, err))?;
        if text.len() > MAX_VENDOR_DATA_BYTES {
            return Err(VendorDataError::TooLarge {
                path: path.to_owned(),
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| VendorDataError::NotJson {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::from_value(&value))
    }
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
