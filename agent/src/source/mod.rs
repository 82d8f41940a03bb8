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
pub mod contract;
pub mod drive;
pub mod fallback_nic;
pub mod http;
pub mod metadata_service;
pub mod nocloud;
pub mod openstack;
pub mod prefetch;
pub mod token;
pub mod url;

pub use contract::{Detect, NetworkData, Probe, Source, SourceError, VendorData};

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
/// machine has. One that is there but unusable (a drive that does not mount, a metadata
/// service that never answers) adds a line to `warnings` and the next is tried. Without one,
/// why each unusable one was passed over (`name: reason`).
pub fn choose(
    order: &[&str],
    probe: &Probe<'_>,
    warnings: &mut Vec<String>,
) -> Result<Box<dyn Source>, Vec<String>> {
    let mut unusable = Vec::new();
    for wanted in order {
        let Some((name, detect)) = DATASOURCES.iter().find(|(name, _)| name == wanted) else {
            continue;
        };
        match detect(probe) {
            Ok(Some(source)) => {
                tracing::info!(datasource = name, "datasource found");
                return Ok(source);
            }
            Ok(None) => tracing::debug!(datasource = name, "not present"),
            Err(err) => {
                let why = format!("{name}: {}", crate::log::chain(err.as_ref()));
                warnings.push(format!("{why}; trying the next datasource"));
                unusable.push(why);
            }
        }
    }
    Err(unusable)
}

#[cfg(test)]
mod tests;
