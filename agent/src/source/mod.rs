//! Where instance data comes from. Each datasource is one file here that implements [`Source`]
//! and one line of [`DATASOURCES`]; `datasources:` in metaboot.yaml picks and orders them, and
//! [`choose`] opens the first one this machine has. The default order is the table's: a config
//! drive, then a NoCloud seed, then the metadata service (cloud-init's ds-identify order:
//! ConfigDrive, NoCloud, …, OpenStack).
//!
//! A source speaks in OpenStack's documents (`meta_data.json` is required; user data, vendor
//! data and network data are optional, `Ok(None)` when absent), so the run decodes one format
//! whatever the source; a source keeping another format says so in [`VendorData`] and
//! [`NetworkData`], or converts its meta-data itself.

pub mod config_drive;
pub mod drive;
pub mod http;
pub mod metadata_service;
pub mod nocloud;
pub mod openstack;

use crate::root::Root;
use http::HttpClient;

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

/// Network configuration as its source keeps it (cached for the operator, not applied).
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
}

/// What a datasource may look at to find itself.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The root (block devices under its `/sys/class/block` and `/dev`, seed directories).
    pub root: &'a Root,
    /// The metadata service's base URL.
    pub url: &'a str,
    /// The run's HTTP client (its retries end at the run's deadline).
    pub client: &'a HttpClient,
}

/// Finds a datasource: `Ok(None)` when this machine does not have it, an error when it has it
/// but it cannot be used (the chooser then tries the next one).
pub type Detect = fn(&Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError>;

/// Every datasource: its name and how to find it, in the default order.
pub const DATASOURCES: &[(&str, Detect)] = &[
    (config_drive::NAME, config_drive::detect),
    (nocloud::NAME, nocloud::detect),
    (metadata_service::NAME, metadata_service::detect),
];

/// The names of every datasource, in the default order.
pub fn names() -> impl Iterator<Item = &'static str> {
    DATASOURCES.iter().map(|(name, _)| *name)
}

/// The first datasource of `order` (names from [`DATASOURCES`]; others are skipped) that this
/// machine has. One that is there but unusable adds a line to `warnings` and the next is tried.
pub fn choose(
    order: &[&str],
    probe: &Probe<'_>,
    warnings: &mut Vec<String>,
) -> Option<Box<dyn Source>> {
    for wanted in order {
        let Some((name, detect)) = DATASOURCES.iter().find(|(name, _)| name == wanted) else {
            continue;
        };
        match detect(probe) {
            Ok(Some(source)) => {
                tracing::info!(datasource = name, "datasource found");
                return Some(source);
            }
            Ok(None) => tracing::debug!(datasource = name, "not present"),
            Err(err) => warnings.push(format!(
                "{name}: {}; trying the next datasource",
                crate::log::chain(err.as_ref())
            )),
        }
    }
    None
}

#[cfg(test)]
mod tests;
