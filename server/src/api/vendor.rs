//! Vendor data (docs/protocol.md §1.6): a static JSON file served as `vendor_data.json` and under
//! the `static` key of `vendor_data2.json` (nova's StaticJSON provider).

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use metaboot_proto::vendor_data::STATIC_PROVIDER_KEY;

/// Largest vendor data file accepted at start, in bytes.
pub const MAX_VENDOR_DATA_BYTES: usize = 256 * 1024;

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
    /// answers every request with 500, docs/protocol.md §1.6).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("failed to read the vendor data file {}", path.display()))?;
        if text.len() > MAX_VENDOR_DATA_BYTES {
            anyhow::bail!(
                "the vendor data file {} is {} bytes; the limit is {MAX_VENDOR_DATA_BYTES}",
                path.display(),
                text.len()
            );
        }
        let value: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
            format!("the vendor data file {} is not valid JSON", path.display())
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
        assert!(VendorDocs::load(&bad).is_err());
        assert!(VendorDocs::load(&dir.path().join("missing.json")).is_err());
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, format!("\"{}\"", "x".repeat(MAX_VENDOR_DATA_BYTES))).unwrap();
        assert!(VendorDocs::load(&huge).is_err());
    }
}
