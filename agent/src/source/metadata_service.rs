//! The OpenStack metadata service (docs/protocol.md §4.3): `GET /openstack`, pick the newest
//! version both sides know (else `latest`), then the documents under it.

use metaboot_proto::OpenStackVersion;

use super::http::{HttpClient, MAX_METADATA_BYTES, MAX_USER_DATA_BYTES};
use super::{Source, SourceError};

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

    /// The HTTP client (for `#include`).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    fn version(&mut self) -> Result<String, SourceError> {
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

    fn document(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let version = self.version()?;
        let url = format!("{}/openstack/{version}/{name}", self.base);
        Ok(self.client.get(&url, limit)?)
    }
}

impl Source for MetadataService {
    fn name(&self) -> &'static str {
        "metadata-service"
    }

    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError> {
        let version = self.version()?;
        self.document("meta_data.json", MAX_METADATA_BYTES)?
            .ok_or_else(|| {
                SourceError::MissingMetaData(format!("{}/openstack/{version}", self.base))
            })
    }

    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.document("user_data", MAX_USER_DATA_BYTES)
    }

    fn vendor_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.document("vendor_data.json", MAX_METADATA_BYTES)
    }

    fn vendor_data2(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.document("vendor_data2.json", MAX_METADATA_BYTES)
    }

    fn network_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.document("network_data.json", MAX_METADATA_BYTES)
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
