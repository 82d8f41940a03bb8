//! nova's documents by name (`meta_data.json`, `user_data`, `vendor_data.json`,
//! `vendor_data2.json`, `network_data.json`), for the sources that keep them as nova lays them
//! out: the config drive and the metadata service. Such a source only says how to get one
//! document by name; its [`Source`] getters follow from that. Both pick the version they read
//! with [`pick_version`].

use metaboot_proto::OpenStackVersion;

use super::contract::{NetworkData, Source, SourceError, VendorData};
use super::http::{MAX_METADATA_BYTES, MAX_USER_DATA_BYTES};

/// The machine's SMBIOS system UUID, under the root: nova sets it to the instance's uuid (what
/// cloud-init's OpenStack `check_instance_id` compares with the cached instance id).
pub const DMI_PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";

/// The machine's [`DMI_PRODUCT_UUID`], lower-case; `None` when it cannot be read or is empty.
pub fn dmi_product_uuid(root: &crate::root::Root) -> Option<String> {
    let uuid = root.read_optional_string(DMI_PRODUCT_UUID).ok()??;
    let uuid = uuid.trim().to_ascii_lowercase();
    (!uuid.is_empty()).then_some(uuid)
}

/// A source of nova's documents.
pub trait OpenStackLayout {
    /// Its name in `datasources:` and in the report.
    const NAME: &'static str;

    /// The document `name` (at most `limit` bytes); `Ok(None)` when absent.
    fn document(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError>;

    /// The error for a missing `meta_data.json`, saying where it was looked for.
    fn missing_meta_data(&self) -> SourceError;

    /// The metadata service's base URL the documents came from, for the service.
    fn service_url(&self) -> Option<String> {
        None
    }
}

impl<T: OpenStackLayout> Source for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError> {
        self.document("meta_data.json", MAX_METADATA_BYTES)?
            .ok_or_else(|| self.missing_meta_data())
    }

    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.document("user_data", MAX_USER_DATA_BYTES)
    }

    fn vendor_data(&mut self) -> Result<Option<VendorData>, SourceError> {
        Ok(self
            .document("vendor_data.json", MAX_METADATA_BYTES)?
            .map(VendorData::Json))
    }

    fn vendor_data2(&mut self) -> Result<Option<VendorData>, SourceError> {
        Ok(self
            .document("vendor_data2.json", MAX_METADATA_BYTES)?
            .map(VendorData::Json))
    }

    fn network_data(&mut self) -> Result<Option<NetworkData>, SourceError> {
        Ok(self
            .document("network_data.json", MAX_METADATA_BYTES)?
            .map(NetworkData::Json))
    }

    fn service_url(&self) -> Option<String> {
        OpenStackLayout::service_url(self)
    }
}

/// The version to read among those `offered` (the metadata service's `/openstack` listing, one
/// a line; the names in a config drive's `openstack/` directory): the newest dated one metaboot
/// knows, else `latest`, as cloud-init's `_find_working_version` picks it.
pub fn pick_version<'a>(offered: impl IntoIterator<Item = &'a str>) -> String {
    let offered: Vec<&str> = offered.into_iter().map(str::trim).collect();
    OpenStackVersion::ALL
        .iter()
        .rev()
        .map(|v| v.date())
        .find(|date| offered.contains(date))
        .unwrap_or("latest")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_known_version() {
        let listed = |listing: &str| pick_version(listing.lines());
        assert_eq!(
            listed("2012-08-10\n2018-08-27\n2013-04-04\nlatest"),
            "2018-08-27"
        );
        assert_eq!(
            listed(&OpenStackVersion::listing("2099-01-01")),
            OpenStackVersion::LATEST.date()
        );
        assert_eq!(listed("2099-12-31\nlatest"), "latest");
        assert_eq!(listed(""), "latest");
        assert_eq!(listed("2016-06-30 \r\nlatest"), "2016-06-30");
    }
}
