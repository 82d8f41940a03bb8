//! How documents are rendered: deployment settings (the DHCP domain, vendor data), the same
//! for every instance.

use super::vendor::VendorDocs;

/// nova's `[api] dhcp_domain` default.
pub const DEFAULT_DHCP_DOMAIN: &str = "novalocal";
/// The zone of an instance registered without one: nova's `default_availability_zone`, the
/// zone nova's conductor gives an instance on a host in no zone aggregate, so nova never
/// serves an instance without a zone (docs/protocol.md §1.4).
pub const DEFAULT_AVAILABILITY_ZONE: &str = "nova";

/// How documents are rendered (deployment settings, not per instance).
#[derive(Debug, Clone)]
pub struct Rendering {
    /// Appended to the instance's host name; empty means none.
    pub dhcp_domain: String,
    pub vendor: VendorDocs,
}

impl Default for Rendering {
    fn default() -> Self {
        Self {
            dhcp_domain: DEFAULT_DHCP_DOMAIN.to_owned(),
            vendor: VendorDocs::default(),
        }
    }
}

impl Rendering {
    /// `<hostname>.<dhcp_domain>`, or the bare host name when the domain is empty.
    pub fn hostname(&self, short: &str) -> String {
        if self.dhcp_domain.is_empty() {
            short.to_owned()
        } else {
            format!("{short}.{}", self.dhcp_domain)
        }
    }

    /// The instance's availability zone, [`DEFAULT_AVAILABILITY_ZONE`] when it has none.
    pub fn availability_zone(&self, zone: Option<&str>) -> String {
        zone.unwrap_or(DEFAULT_AVAILABILITY_ZONE).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_without_a_zone_is_in_nova_s_default_zone() {
        let rendering = Rendering::default();
        assert_eq!(rendering.availability_zone(None), "nova");
        assert_eq!(rendering.availability_zone(Some("az-2")), "az-2");
    }
}
