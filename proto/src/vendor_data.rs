//! Vendor data (docs/protocol.md §1.6 and §4.7): free-form JSON documents; the guest agent reads
//! only their `cloud-init` key.

/// The key of a vendor data document that carries user-data-like content.
pub const CLOUD_INIT_KEY: &str = "cloud-init";

/// The key `vendor_data2.json` gives the static vendor data file under.
pub const STATIC_PROVIDER_KEY: &str = "static";

/// A vendor data document: any JSON value, `{}` when nothing is configured.
pub type VendorData = serde_json::Value;
