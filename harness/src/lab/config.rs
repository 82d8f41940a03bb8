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
//! [[network]]
//! name = "tenant-6"
//! cidr = "fdc6:1200:0:40::/64" # IPv6 only: static addresses, metadata at fe80::a9fe:a9fe
//! dhcp = false
//! [[router]]
//! name = "router1"
//! networks = ["tenant-r", "tenant-6"]
//! [[guest]]
//! name = "g1"
//! network = "tenant-r"
//! ```

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// The only IPv6 addresses a lab may use: one unique local prefix (RFC 4193), chosen for the
/// lab, from which each IPv6-only network takes a /64. Nothing outside the lab routes it.
pub const LAB_RANGE_V6: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0xfdc6, 0x1200, 0, 0, 0, 0, 0, 0), 48) {
        Ok(net) => net,
        Err(_) => panic!("fdc6:1200::/48 is a valid network"),
    };

/// The prefix length of an IPv6 subnet: a /64, as SLAAC and EUI-64 addresses need.
pub const IPV6_PREFIX_LEN: u8 = 64;

/// Smallest prefix length (largest network) an IPv4 tenant network may have.
pub const MIN_PREFIX_LEN: u8 = 16;
/// Largest IPv4 prefix length: room for the gateway, the DHCP port and at least one guest.
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

/// A tenant network with one subnet: IPv4, or IPv6 only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Name (unique in the lab).
    pub name: String,
    /// The subnet: IPv4 inside 198.18.0.0/15, or an IPv6 /64 inside [`LAB_RANGE_V6`].
    pub cidr: IpNet,
    /// `false`: no DHCP (the registry's `--no-dhcp`, dnsmasq does not serve it); guests
    /// configure their address from `network_data.json` (config drive or metadata service).
    /// Such a network needs a router. On an IPv6 network `true` means SLAAC: dnsmasq sends
    /// router advertisements (no DHCPv6) from the router on a routed network, from the DHCP
    /// port on an isolated one; the registry's address mode is `slaac`.
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
        let dir = std::path::absolute(path)
            .with_context(|| format!("failed to resolve {}", path.display()))?;
        Ok(config.relative_to(dir.parent().unwrap_or(Path::new("/"))))
    }

    /// The guests' key and user data files given relative in the lab file, made relative to
    /// the lab file's directory (`key_files = ["keys/web1.pub"]` next to the file), not to
    /// wherever `lab up` runs.
    pub fn relative_to(mut self, dir: &Path) -> Self {
        for guest in &mut self.guests {
            for key in &mut guest.key_files {
                *key = dir.join(&*key);
            }
            if let Some(user_data) = &mut guest.user_data {
                *user_data = dir.join(&*user_data);
            }
        }
        self
    }

    /// The lab `run` uses: one network behind a router, one isolated network, one without
    /// DHCP behind the same router (static addresses from config drives), and two IPv6-only
    /// networks, where guests reach the metadata service at `fe80::a9fe:a9fe`: one behind the
    /// router without DHCP (static addresses from `network_data.json`), one isolated with SLAAC.
    pub fn default_with_id(id: &str) -> Self {
        let net = |name: &str, third: u8, dhcp: bool| NetworkConfig {
            name: name.to_owned(),
            cidr: IpNet::V4(
                Ipv4Net::new(Ipv4Addr::new(198, 18, third, 0), 24).unwrap_or(LAB_RANGE),
            ),
            dhcp,
        };
        let ipv6_only = |name: &str, subnet: u16, dhcp: bool| NetworkConfig {
            name: name.to_owned(),
            cidr: IpNet::V6(
                Ipv6Net::new(
                    Ipv6Addr::new(0xfdc6, 0x1200, 0, subnet, 0, 0, 0, 0),
                    IPV6_PREFIX_LEN,
                )
                .unwrap_or(LAB_RANGE_V6),
            ),
            dhcp,
        };
        Self {
            id: id.to_owned(),
            networks: vec![
                net("tenant-r", 10, true),
                net("tenant-i", 20, true),
                net("tenant-s", 30, false),
                ipv6_only("tenant-6", 0x40, false),
                ipv6_only("tenant-6i", 0x41, true),
            ],
            routers: vec![RouterConfig {
                name: "router1".into(),
                networks: vec!["tenant-r".into(), "tenant-s".into(), "tenant-6".into()],
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
            validate_subnet(net)?;
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

/// Checks a network's subnet: inside the lab's range of its family, of an allowed size,
/// without host bits.
fn validate_subnet(net: &NetworkConfig) -> anyhow::Result<()> {
    let (inside, range, sizes) = match net.cidr {
        IpNet::V4(cidr) => (
            LAB_RANGE.contains(&cidr),
            LAB_RANGE.to_string(),
            MIN_PREFIX_LEN..=MAX_PREFIX_LEN,
        ),
        IpNet::V6(cidr) => (
            LAB_RANGE_V6.contains(&cidr),
            LAB_RANGE_V6.to_string(),
            IPV6_PREFIX_LEN..=IPV6_PREFIX_LEN,
        ),
    };
    if !inside {
        bail!(
            "network {} ({}) is outside {range}: the lab uses no other addresses",
            net.name,
            net.cidr
        );
    }
    if !sizes.contains(&net.cidr.prefix_len()) {
        bail!(
            "network {} ({}): the prefix length must be {}..={}",
            net.name,
            net.cidr,
            sizes.start(),
            sizes.end()
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
    Ok(())
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

/// The longest name of the lab file (a network, router or guest) or of `boot --name`.
pub const MAX_NAME_LEN: usize = 63;

/// A name of the lab file (a network, router or guest) or of `boot --name`: it names
/// directories and namespaces, so 1 to [`MAX_NAME_LEN`] letters, digits, `-` and `_`.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("name {name:?} must be 1 to {MAX_NAME_LEN} characters of letters, digits, - and _");
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

    /// A guest's files named relative in a lab file are found next to the lab file, wherever
    /// `lab up` runs; absolute ones stay as they are.
    #[test]
    fn a_guests_relative_files_are_next_to_the_lab_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.toml");
        std::fs::write(
            &path,
            r#"id = "demo"
            [[network]]
            name = "tenant-r"
            cidr = "198.18.10.0/24"
            [[guest]]
            name = "g1"
            network = "tenant-r"
            key_files = ["keys/g1.pub", "/root/.ssh/id_ed25519.pub"]
            user_data = "g1.yaml"
            "#,
        )
        .unwrap();
        let guest = &LabConfig::load(&path).unwrap().guests[0];
        assert_eq!(
            guest.key_files,
            [
                dir.path().join("keys/g1.pub"),
                Path::new("/root/.ssh/id_ed25519.pub").to_path_buf()
            ]
        );
        assert_eq!(guest.user_data, Some(dir.path().join("g1.yaml")));
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
    fn an_ipv6_network_is_a_lab_64_routed_or_with_slaac() {
        let lab = |cidr: &str, dhcp: &str, routed: bool| {
            let router = if routed {
                "[[router]]\nname = \"r\"\nnetworks = [\"n\"]\n"
            } else {
                ""
            };
            parse(&format!(
                "id = \"t\"\n[[network]]\nname = \"n\"\ncidr = \"{cidr}\"\n{dhcp}\n{router}"
            ))
        };
        let msg = |r: anyhow::Result<LabConfig>| format!("{:#}", r.unwrap_err());
        assert!(lab("fdc6:1200:0:7::/64", "dhcp = false", true).is_ok());
        assert!(
            lab("fdc6:1200:0:7::/64", "", false).is_ok(),
            "isolated, SLAAC"
        );
        assert!(msg(lab("2001:db8::/64", "dhcp = false", true)).contains("outside fdc6:1200::/48"));
        assert!(msg(lab("fdc6:1200:0:7::/80", "dhcp = false", true)).contains("64..=64"));
        assert!(msg(lab("fdc6:1200:0:7::5/64", "dhcp = false", true)).contains("host bits"));
        assert!(msg(lab("fdc6:1200:0:7::/64", "dhcp = false", false)).contains("no router"));
        let default = LabConfig::default_with_id("t");
        let six: Vec<&NetworkConfig> = default
            .networks
            .iter()
            .filter(|n| n.cidr.addr().is_ipv6())
            .collect();
        assert_eq!(six.len(), 2);
        assert!(!six[0].dhcp && !default.is_isolated(&six[0].name));
        assert!(six[1].dhcp && default.is_isolated(&six[1].name));
    }

    #[test]
    fn the_example_lab_file_is_valid() {
        let config = parse(include_str!("../../lab.example.toml")).unwrap();
        assert_eq!(config.id, "demo");
        assert!(config.is_isolated("tenant-i") && !config.is_isolated("tenant-r"));
    }

    #[test]
    fn names_are_at_most_the_limit_and_plain() {
        assert!(validate_name("tenant-r_1").is_ok());
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        let err = validate_name(&"a".repeat(MAX_NAME_LEN + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("1 to {MAX_NAME_LEN}")), "{err}");
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("a/b").is_err());
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
                cidr: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(198, 18, i as u8, 0), 24).unwrap()),
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
