//! How documents are rendered: deployment settings (the DHCP domain, vendor data), the same
//! for every instance.

use super::vendor::VendorDocs;

/// nova's `[api] dhcp_domain` default.
pub const DEFAULT_DHCP_DOMAIN: &str = "novalocal";

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
}
