//! What a datasource is: the [`Source`] trait every datasource implements (only `meta_data` is
//! required; the other getters default to "absent"), the documents it hands over, and how the
//! chooser finds it ([`Probe`], [`Detect`]). Datasources import this file, never `source/mod.rs`,
//! so the chooser can name them without a loop.

use crate::root::Root;

use super::http::HttpClient;

/// A datasource's failure, as the run sees it: each source has its own error type (with its
/// causes), and the run only reports it. Boxed so that adding a source touches no shared enum.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Vendor data as its source keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorData {
    /// OpenStack's `vendor_data.json` / `vendor_data2.json`: JSON whose `cloud-init` key (or the
    /// whole document) holds user-data-like content.
    Json(Vec<u8>),
    /// User-data-like content as it is (NoCloud's `vendor-data`).
    Plain(Vec<u8>),
}

/// Network configuration as its source keeps it (cached, then applied by the `network` step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkData {
    /// OpenStack's `network_data.json`.
    Json(Vec<u8>),
    /// cloud-init's `network-config` (version 1 or 2, YAML), as NoCloud carries it.
    NetworkConfig(Vec<u8>),
}

/// The documents of one instance, as a datasource provides them. Only `meta_data` is required:
/// a source implements the getters its documents need and the others say "absent".
pub trait Source {
    /// Its name in `datasources:` and in the report (`config-drive`, `metadata-service`, …).
    fn name(&self) -> &'static str;

    /// The instance's meta-data as OpenStack's `meta_data.json` (a source with another format
    /// converts its own).
    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError>;

    /// The user data, raw bytes (gzip, MIME and the rest are the decoder's business).
    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(None)
    }

    /// The vendor data.
    fn vendor_data(&mut self) -> Result<Option<VendorData>, SourceError> {
        Ok(None)
    }

    /// OpenStack's second vendor data document (`vendor_data2.json`, dynamic vendor data).
    fn vendor_data2(&mut self) -> Result<Option<VendorData>, SourceError> {
        Ok(None)
    }

    /// The network configuration.
    fn network_data(&mut self) -> Result<Option<NetworkData>, SourceError> {
        Ok(None)
    }

    /// What the source did without while reading its documents (a NoCloud meta-data that
    /// does not parse: its defaults apply, as in cloud-init), one report line each; taken, so
    /// a second call has none.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// The metadata service's base URL the documents were read from (e.g.
    /// `http://169.254.169.254`), for a source that reads them from the service.
    fn service_url(&self) -> Option<String> {
        None
    }
}

/// What a datasource may look at to find itself.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The root (block devices under its `/sys/class/block` and `/dev`, seed directories).
    pub root: &'a Root,
    /// The metadata service's base URLs, in the order they are tried (link-local ones
    /// already scoped to an interface).
    pub urls: &'a [String],
    /// Why each configured URL missing from `urls` was left out, one line each (see
    /// `metadata_service::service_urls`).
    pub left_out: &'a [String],
    /// The run's HTTP client (its retries end at the run's deadline).
    pub client: &'a HttpClient,
}

/// Finds a datasource: `Ok(None)` when this machine does not have it, an error when it has it
/// but it cannot be used (the chooser then tries the next one).
pub type Detect = fn(&Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError>;
