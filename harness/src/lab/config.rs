//! The declarative lab file (TOML): the lab's id, its tenant networks, routers and guests.
//!
//! ```toml
//! id = "demo"
//! [[network]]
//! name = "tenant-r"
//! cidr = "198.18.10.0/24"
//! [[network]]
//! name = "tenant-i"
//! cidr = "198.18.20.0/24"     # no router: an isolated network
//! [[router]]
//! name = "router1"
//! networks = ["tenant-r"]
//! [[guest]]
//! name = "g1"
//! network = "tenant-r"
//! ```

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Longest lab id: it goes into interface and namespace names, which are short.
pub const MAX_ID_LEN: usize = 8;

/// Most networks (and routers) one lab may have.
pub const MAX_NETWORKS: usize = 16;

/// The only addresses a lab may use (RFC 2544 benchmarking range), so nothing collides with a
/// real network even if a route leaked.
pub const LAB_RANGE: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15) {
    Ok(net) => net,
    Err(_) => panic!("198.18.0.0/15 is a valid network"),
};

/// Smallest prefix length (largest network) a tenant network may have.
pub const MIN_PREFIX_LEN: u8 = 16;
/// Largest prefix length: room for the gateway, the DHCP port and at least one guest.
pub const MAX_PREFIX_LEN: u8 = 29;

/// A lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Short id (`[a-z0-9]`, at most [`MAX_ID_LEN`]); every name the lab makes carries it.
    pub id: String,
    /// Tenant networks.
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkConfig>,
    /// Routers; a network behind none is isolated (metadata from its DHCP namespace).
    #[serde(default, rename = "router")]
    pub routers: Vec<RouterConfig>,
    /// Guests registered when the lab comes up (booted with `metaboot-harness boot`).
    #[serde(default, rename = "guest")]
    pub guests: Vec<GuestConfig>,
}

/// A tenant network with one IPv4 subnet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Name (unique in the lab).
    pub name: String,
    /// The subnet, inside 198.18.0.0/15.
    pub cidr: Ipv4Net,
    /// `false`: no DHCP (the registry's `--no-dhcp`, dnsmasq does not serve it); guests
    /// configure their address from their config drive's `network_data.json`. Such a network
    /// needs a router.
    #[serde(default = "dhcp_on")]
    pub dhcp: bool,
}

fn dhcp_on() -> bool {
    true
}

/// A router joining networks (and serving their metadata through its namespace).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Name (unique in the lab).
    pub name: String,
    /// The networks it has an interface on.
    pub networks: Vec<String>,
}

/// A guest registered at `lab up`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// Instance name.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Host name (default: from the name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// SSH public key files to inject.
    #[serde(default)]
    pub key_files: Vec<std::path::PathBuf>,
    /// A user data file.
    #[serde(default)]
    pub user_data: Option<std::path::PathBuf>,
}

impl LabConfig {
    /// Reads and validates a lab file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the lab file {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("failed to parse the lab file {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("invalid lab file {}", path.display()))?;
        Ok(config)
    }

    /// The lab `run` uses: one network behind a router, one isolated network, and one without
    /// DHCP behind the same router (static addresses from config drives).
    pub fn default_with_id(id: &str) -> Self {
        let net = |name: &str, third: u8, dhcp: bool| NetworkConfig {
            name: name.to_owned(),
            cidr: Ipv4Net::new(Ipv4Addr::new(198, 18, third, 0), 24).unwrap_or(LAB_RANGE),
            dhcp,
        };
        Self {
            id: id.to_owned(),
            networks: vec![
                net("tenant-r", 10, true),
                net("tenant-i", 20, true),
                net("tenant-s", 30, false),
            ],
            routers: vec![RouterConfig {
                name: "router1".into(),
                networks: vec!["tenant-r".into(), "tenant-s".into()],
            }],
            guests: Vec::new(),
        }
    }

    /// Whether `network` is behind no router.
    pub fn is_isolated(&self, network: &str) -> bool {
        !self
            .routers
            .iter()
            .any(|r| r.networks.iter().any(|n| n == network))
    }

    /// Checks ids, names, address ranges and references.
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_id(&self.id)?;
        if self.networks.is_empty() {
            bail!("a lab needs at least one [[network]]");
        }
        if self.networks.len() > MAX_NETWORKS || self.routers.len() > MAX_NETWORKS {
            bail!("a lab may have at most {MAX_NETWORKS} networks and {MAX_NETWORKS} routers");
        }
        let mut names = BTreeSet::new();
        for net in &self.networks {
            if !names.insert(net.name.as_str()) {
                bail!("network {} is defined twice", net.name);
            }
            validate_name(&net.name)?;
            if !LAB_RANGE.contains(&net.cidr) {
                bail!(
                    "network {} ({}) is outside {LAB_RANGE}: the lab uses no other addresses",
                    net.name,
                    net.cidr
                );
            }
            if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&net.cidr.prefix_len()) {
                bail!(
                    "network {} ({}): the prefix length must be {MIN_PREFIX_LEN}..={MAX_PREFIX_LEN}",
                    net.name,
                    net.cidr
                );
            }
            if net.cidr.network() != net.cidr.addr() {
                bail!(
                    "network {}: {} has host bits set; write {}",
                    net.name,
                    net.cidr,
                    net.cidr.trunc()
                );
            }
        }
        for net in self.networks.iter().filter(|n| !n.dhcp) {
            if self.is_isolated(&net.name) {
                bail!(
                    "network {} has no DHCP and no router: an isolated network serves metadata \
                     from its DHCP port; attach it to a router or drop `dhcp = false`",
                    net.name
                );
            }
        }
        let mut attached = BTreeSet::new();
        let mut router_names = BTreeSet::new();
        for router in &self.routers {
            validate_name(&router.name)?;
            if !router_names.insert(router.name.as_str()) {
                bail!("router {} is defined twice", router.name);
            }
            for net in &router.networks {
                if !names.contains(net.as_str()) {
                    bail!("router {} names the unknown network {net}", router.name);
                }
                if !attached.insert(net.as_str()) {
                    bail!("network {net} is attached to more than one router (or twice)");
                }
            }
        }
        let mut guest_names = BTreeSet::new();
        for guest in &self.guests {
            validate_name(&guest.name)?;
            if !guest_names.insert(guest.name.as_str()) {
                bail!("guest {} is defined twice", guest.name);
            }
            if !names.contains(guest.network.as_str()) {
                bail!(
                    "guest {} names the unknown network {}",
                    guest.name,
                    guest.network
                );
            }
        }
        Ok(())
    }
}

/// Checks a lab id: `[a-z0-9]`, 1..=[`MAX_ID_LEN`] characters.
pub fn validate_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!("lab id {id:?} must be 1 to {MAX_ID_LEN} characters of a-z and 0-9");
    }
    Ok(())
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("name {name:?} must be 1 to 63 characters of letters, digits, - and _");
    }
    Ok(())
}

/// A new random lab id (`[a-z0-9]{6}`).
pub fn random_id() -> String {
    let mut bytes = [0u8; 6];
    // getrandom only fails without a kernel entropy source; fall back to the PID and time then.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        bytes.copy_from_slice(&seed.to_le_bytes()[..6]);
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<LabConfig> {
        let config: LabConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn parses_the_documented_example() {
        let config = parse(
            r#"id = "demo"
            [[network]]
            name = "tenant-r"
            cidr = "198.18.10.0/24"
            [[network]]
            name = "tenant-i"
            cidr = "198.18.20.0/24"
            [[router]]
            name = "router1"
            networks = ["tenant-r"]
            [[guest]]
            name = "g1"
            network = "tenant-r"
            "#,
        )
        .unwrap();
        assert!(!config.is_isolated("tenant-r"));
        assert!(config.is_isolated("tenant-i"));
        assert_eq!(config.guests.len(), 1);
        LabConfig::default_with_id("x1").validate().unwrap();
    }

    #[test]
    fn refuses_what_would_break_or_escape_the_lab() {
        let base = |extra: &str, cidr: &str| {
            parse(&format!(
                "id = \"t\"\n[[network]]\nname = \"n\"\ncidr = \"{cidr}\"\n{extra}"
            ))
        };
        let msg = |r: anyhow::Result<LabConfig>| format!("{:#}", r.unwrap_err());
        assert!(msg(base("", "10.0.0.0/24")).contains("outside 198.18.0.0/15"));
        assert!(msg(base("", "198.18.1.1/24")).contains("host bits"));
        assert!(msg(base("", "198.18.1.0/30")).contains("prefix length"));
        assert!(msg(base("", "198.18.0.0/15")).contains("prefix length"));
        assert!(
            msg(base(
                "[[router]]\nname = \"r\"\nnetworks = [\"zz\"]",
                "198.18.1.0/24"
            ))
            .contains("unknown network")
        );
        assert!(msg(base("bogus = 1", "198.18.1.0/24")).contains("bogus"));
        assert!(msg(base("dhcp = false", "198.18.1.0/24")).contains("no DHCP and no router"));
        assert!(
            base(
                "dhcp = false\n[[router]]\nname = \"r\"\nnetworks = [\"n\"]",
                "198.18.1.0/24"
            )
            .is_ok()
        );
        assert!(base("", "198.18.1.0/29").is_ok());
        assert!(base("", "198.19.255.0/24").is_ok());
    }

    #[test]
    fn the_example_lab_file_is_valid() {
        let config = parse(include_str!("../../lab.example.toml")).unwrap();
        assert_eq!(config.id, "demo");
        assert!(config.is_isolated("tenant-i") && !config.is_isolated("tenant-r"));
    }

    #[test]
    fn lab_ids_are_short_and_plain() {
        assert!(validate_id("abc123").is_ok());
        assert!(validate_id(&"a".repeat(MAX_ID_LEN)).is_ok());
        assert!(validate_id(&"a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(validate_id("Ab").is_err());
        assert!(validate_id("a-b").is_err());
        assert!(validate_id("").is_err());
        let id = random_id();
        assert!(validate_id(&id).is_ok(), "{id}");
    }

    #[test]
    fn at_most_max_networks() {
        let mut config = LabConfig::default_with_id("t");
        config.networks = (0..=MAX_NETWORKS)
            .map(|i| NetworkConfig {
                name: format!("n{i}"),
                cidr: Ipv4Net::new(Ipv4Addr::new(198, 18, i as u8, 0), 24).unwrap(),
                dhcp: true,
            })
            .collect();
        config.routers.clear();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        config.networks.pop();
        config.validate().unwrap();
    }
}
