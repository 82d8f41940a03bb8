//! The OpenStack metadata service (docs/protocol.md §4.3): `GET /openstack`, pick the newest
//! version both sides know (else `latest`), then the documents under it.

use metaboot_proto::OpenStackVersion;

use super::contract::{Probe, Source, SourceError};
use super::http::{FetchError, HttpClient, MAX_METADATA_BYTES};
use super::openstack::OpenStackLayout;
use crate::retry::RetryError;

/// Its name in `datasources:`.
pub const NAME: &str = "metadata-service";

/// Metadata service failures.
#[derive(Debug, thiserror::Error)]
pub enum MetadataServiceError {
    #[error("Metadata service")]
    Fetch(#[from] RetryError<FetchError>),
    #[error("meta_data.json is missing (404) at {0}")]
    MissingMetaData(String),
}

/// The metadata service at the configured URL. It is always "there": whether it answers is
/// found out by fetching, within the run's deadline.
pub fn detect(probe: &Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError> {
    Ok(Some(Box::new(MetadataService::new(
        probe.client.clone(),
        probe.url,
    ))))
}

/// The metadata service at one base URL.
#[derive(Debug)]
pub struct MetadataService {
    client: HttpClient,
    base: String,
    version: Option<String>,
}

/// The newest dated version in a `/openstack` listing that metaboot knows, else `latest`.
pub fn pick_version(listing: &str) -> String {
    let offered: Vec<&str> = listing.lines().map(str::trim).collect();
    OpenStackVersion::ALL
        .iter()
        .rev()
        .map(|v| v.date())
        .find(|date| offered.contains(date))
        .unwrap_or("latest")
        .to_owned()
}

impl MetadataService {
    /// The service at `base` (e.g. `http://169.254.169.254`, no trailing slash).
    pub fn new(client: HttpClient, base: &str) -> Self {
        MetadataService {
            client,
            base: base.trim_end_matches('/').to_owned(),
            version: None,
        }
    }

    fn version(&mut self) -> Result<String, MetadataServiceError> {
        if let Some(version) = &self.version {
            return Ok(version.clone());
        }
        let url = format!("{}/openstack", self.base);
        let version = match self.client.get(&url, MAX_METADATA_BYTES)? {
            Some(body) => pick_version(&String::from_utf8_lossy(&body)),
            None => "latest".to_owned(),
        };
        tracing::info!(version, "metadata version chosen");
        self.version = Some(version.clone());
        Ok(version)
    }
}

impl OpenStackLayout for MetadataService {
    const NAME: &'static str = NAME;

    fn document(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let version = self.version()?;
        let url = format!("{}/openstack/{version}/{name}", self.base);
        Ok(self
            .client
            .get(&url, limit)
            .map_err(MetadataServiceError::from)?)
    }

    fn missing_meta_data(&self) -> SourceError {
        let version = self.version.as_deref().unwrap_or("latest");
        MetadataServiceError::MissingMetaData(format!("{}/openstack/{version}", self.base)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_known_version() {
        assert_eq!(
            pick_version("2012-08-10\n2018-08-27\n2013-04-04\nlatest"),
            "2018-08-27"
        );
        assert_eq!(
            pick_version(&OpenStackVersion::listing("2099-01-01")),
            OpenStackVersion::LATEST.date()
        );
        assert_eq!(pick_version("2099-12-31\nlatest"), "latest");
        assert_eq!(pick_version(""), "latest");
        assert_eq!(pick_version("2016-06-30 \r\nlatest"), "2016-06-30");
    }
}
