//! The registry's records: networks, routers, ports and instances.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::error::{StoreError, StoreResult};

pub use metaboot_proto::KeyPair;

/// A tenant network: one subnet, IPv4 or IPv6, and on a dual-stack network a second subnet of
/// the other family (Neutron's second subnet on one network). The IPv4 subnet comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub project: String,
    /// The first subnet.
    pub cidr: IpNet,
    /// The router's address on the first subnet, if it has one.
    pub gateway: Option<IpAddr>,
    /// The DHCP port's address on the first subnet (the isolated path's metadata next hop).
    pub dhcp_ip: Option<IpAddr>,
    /// The IPv6 subnet of a dual-stack network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_subnet: Option<Subnet>,
    /// How guests configure their address on the IPv6 subnet (Neutron's
    /// `ipv6_address_mode`); `None`: DHCPv6 when the network has DHCP, static otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<Ipv6AddressMode>,
    /// No router: metadata is served from the DHCP namespace (`qdhcp-<id>`).
    pub isolated: bool,
    pub mtu: Option<u32>,
    pub created: String,
    /// Served on a bridge of the host (a libvirt network's or a named one) instead of from a
    /// router or DHCP namespace; its instances are known by MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostBridge>,
}

/// The bridge a host network is served on, as `network create` named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostBridge {
    /// `--libvirt-network NAME`: libvirt's network, whose bridge and leases libvirt knows.
    LibvirtNetwork(String),
    /// `--bridge BR`: a bridge of the host's own namespace.
    Bridge(String),
}

impl HostBridge {
    /// The libvirt network's name (the `libvirt_network` column).
    pub fn libvirt_network(&self) -> Option<&str> {
        match self {
            Self::LibvirtNetwork(name) => Some(name),
            Self::Bridge(_) => None,
        }
    }

    /// The bridge's name (the `bridge` column).
    pub fn bridge(&self) -> Option<&str> {
        match self {
            Self::LibvirtNetwork(_) => None,
            Self::Bridge(name) => Some(name),
        }
    }

    /// From the two columns (at most one is set).
    pub fn from_columns(libvirt_network: Option<String>, bridge: Option<String>) -> Option<Self> {
        libvirt_network
            .map(Self::LibvirtNetwork)
            .or(bridge.map(Self::Bridge))
    }

    /// "libvirt network default" / "bridge br0", for tables and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::LibvirtNetwork(name) => format!("libvirt network {name}"),
            Self::Bridge(name) => format!("bridge {name}"),
        }
    }
}

/// One subnet of a network: its CIDR, the router's address and the DHCP port's address there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Subnet {
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dhcp_ip: Option<IpAddr>,
}

impl Network {
    /// The first subnet.
    pub fn first_subnet(&self) -> Subnet {
        Subnet {
            cidr: self.cidr,
            gateway: self.gateway,
            dhcp_ip: self.dhcp_ip,
        }
    }

    /// Its subnets, the first one first.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> + '_ {
        std::iter::once(self.first_subnet()).chain(self.second_subnet)
    }

    /// Its subnet of `ip`'s family, if it has one.
    pub fn subnet_for(&self, ip: IpAddr) -> Option<Subnet> {
        self.subnets()
            .find(|subnet| subnet.cidr.addr().is_ipv4() == ip.is_ipv4())
    }

    /// Its IPv4 subnet, if it has one.
    pub fn ipv4_subnet(&self) -> Option<Subnet> {
        self.subnets().find(|subnet| subnet.cidr.addr().is_ipv4())
    }

    /// Its IPv6 subnet, if it has one.
    pub fn ipv6_subnet(&self) -> Option<Subnet> {
        self.subnets().find(|subnet| subnet.cidr.addr().is_ipv6())
    }

    /// Whether the network has a DHCP port (none after `network create --no-dhcp`).
    pub fn has_dhcp(&self) -> bool {
        self.dhcp_ip.is_some()
    }

    /// The CIDRs, comma-separated (`198.18.0.0/24,fdc6:1200:0:7::/64`), for tables and
    /// messages.
    pub fn cidrs(&self) -> String {
        self.subnets()
            .map(|subnet| subnet.cidr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Neutron's `ipv6_address_mode`: how a guest gets its address on an IPv6 subnet, as
/// `network_data.json` tells it (`ipv6_slaac`, `ipv6_dhcpv6-stateful`,
/// `ipv6_dhcpv6-stateless`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Ipv6AddressMode {
    /// Router advertisements; the guest makes its address from the prefix and its MAC.
    #[serde(rename = "slaac")]
    Slaac,
    /// DHCPv6 hands out the port's address.
    #[serde(rename = "dhcpv6-stateful")]
    Dhcpv6Stateful,
    /// The address from router advertisements (as SLAAC), the rest from DHCPv6.
    #[serde(rename = "dhcpv6-stateless")]
    Dhcpv6Stateless,
}

impl Ipv6AddressMode {
    /// Every mode, for messages.
    pub const ALL: [Self; 3] = [Self::Slaac, Self::Dhcpv6Stateful, Self::Dhcpv6Stateless];

    /// Neutron's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slaac => "slaac",
            Self::Dhcpv6Stateful => "dhcpv6-stateful",
            Self::Dhcpv6Stateless => "dhcpv6-stateless",
        }
    }

    /// A mode by its Neutron name.
    pub fn parse(text: &str) -> StoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|mode| mode.as_str()).collect();
                StoreError::Invalid(format!(
                    "unknown IPv6 address mode {text:?}: use one of {}",
                    names.join(", ")
                ))
            })
    }

    /// Whether a port's address is the one its guest makes from the prefix and its MAC
    /// (EUI-64), as Neutron allocates it on such subnets.
    pub fn is_eui64(self) -> bool {
        matches!(self, Self::Slaac | Self::Dhcpv6Stateless)
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewNetwork {
    pub name: String,
    pub project: String,
    /// The first subnet (the registry puts an IPv4 subnet first).
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dhcp_ip: Option<IpAddr>,
    /// A second subnet of the other family (dual stack); its gateway and DHCP address are
    /// allocated as the first one's when not given.
    pub second_subnet: Option<Subnet>,
    /// For the IPv6 subnet.
    pub ipv6_address_mode: Option<Ipv6AddressMode>,
    pub isolated: bool,
    pub mtu: Option<u32>,
    /// `--no-dhcp`: no DHCP port; the ports are configured statically from `network_data.json`
    /// (`ipv4` / `ipv6` with the address, netmask and routes, instead of `ipv4_dhcp`).
    pub no_dhcp: bool,
    /// `--libvirt-network NAME` / `--bridge BR`: served on that bridge of the host.
    pub host: Option<HostBridge>,
}

/// A router and the networks attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Router {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Ids of the attached networks, sorted.
    pub networks: Vec<String>,
    pub created: String,
}

/// What `router create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRouter {
    pub name: String,
    pub project: String,
    /// Ids of networks to attach at once.
    pub networks: Vec<String>,
}

/// A port: one instance's interface on one network, with its address on each of the
/// network's subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub id: String,
    pub network_id: String,
    /// Lower case, colon separated.
    pub mac: String,
    /// Its address on the network's first subnet (`leased` in JSON when it is learned from
    /// the DHCP leases: see [`Port::ip_learned`]).
    #[serde(serialize_with = "shown_ip")]
    pub ip: IpAddr,
    /// Its address on the network's second subnet (dual stack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_ip: Option<IpAddr>,
    /// The instance UUID (neutron's `device_id`).
    pub instance_id: String,
    pub project: String,
    pub created: String,
}

/// A port's first address as JSON shows it: `leased` for a learned one's placeholder, which
/// no script must take for an address.
fn shown_ip<S: serde::Serializer>(ip: &IpAddr, serializer: S) -> Result<S::Ok, S::Error> {
    if is_learned_placeholder(*ip) {
        serializer.serialize_str(LEARNED_IP_SHOWN)
    } else {
        serializer.collect_str(ip)
    }
}

impl Port {
    /// Its addresses, the first subnet's first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.ip).chain(self.second_ip)
    }

    /// Whether its address is learned from the network's DHCP leases (a port on a host
    /// network created without `--ip`): then `ip` is only a placeholder that no guest can send
    /// from, in [`LEARNED_IP_BLOCK`], and never identifies anyone.
    pub fn ip_learned(&self) -> bool {
        is_learned_placeholder(self.ip)
    }

    /// Its addresses as tables and JSON show them: `leased` for a learned address.
    pub fn shown_ips(&self) -> Vec<String> {
        if self.ip_learned() {
            return vec![LEARNED_IP_SHOWN.to_owned()];
        }
        self.ips().map(|ip| ip.to_string()).collect()
    }

    /// Its first address as tables and JSON show it (`leased` for a learned one).
    pub fn shown_ip(&self) -> String {
        if self.ip_learned() {
            LEARNED_IP_SHOWN.to_owned()
        } else {
            self.ip.to_string()
        }
    }

    /// Its address of one family (`ipv4`: IPv4, else IPv6), if it has one.
    pub fn ip_of_family(&self, ipv4: bool) -> Option<IpAddr> {
        self.ips().find(|ip| ip.is_ipv4() == ipv4)
    }
}

/// Where the placeholder addresses of ports whose address is learned from DHCP leases come
/// from: RFC 1122's "this network" block, which no packet carries as its source once the
/// sender has an address, so a placeholder can never be mistaken for a guest's address.
pub const LEARNED_IP_BLOCK: ipnet::Ipv4Net =
    match ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, 8) {
        Ok(block) => block,
        Err(_) => panic!("0.0.0.0/8 is a valid prefix"),
    };

/// What stands for a learned address in tables and JSON.
pub const LEARNED_IP_SHOWN: &str = "leased";

/// Whether `ip` is a learned port's placeholder (in [`LEARNED_IP_BLOCK`]).
pub fn is_learned_placeholder(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => LEARNED_IP_BLOCK.contains(&v4),
        IpAddr::V6(_) => false,
    }
}

/// What `port create` (or `instance create`) asks for; `None` means "allocate one".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewPort {
    pub network_id: String,
    /// An address for one of the network's subnets (the one of its family).
    pub ip: Option<IpAddr>,
    /// An address for the other subnet of a dual-stack network.
    pub second_ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub instance_id: String,
}

/// An instance record: everything the metadata API renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub uuid: String,
    /// A small integer unique per instance; EC2's `i-%08x` instance id is made from it.
    pub ec2_id: i64,
    pub project: String,
    pub name: String,
    pub hostname: String,
    pub availability_zone: Option<String>,
    pub launch_index: u32,
    pub key_pairs: Vec<KeyPair>,
    #[serde(skip)]
    pub user_data: Option<Vec<u8>>,
    pub meta: BTreeMap<String, String>,
    /// The admin password set at boot (nova's `adminPass`): config drive only.
    #[serde(skip)]
    pub admin_pass: Option<String>,
    /// What the guest posted to the password endpoint (write-once).
    #[serde(skip)]
    pub password: Option<String>,
    pub created: String,
}

/// What `instance create` asks for; the uuid is given by the caller (the CLI makes a v4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewInstance {
    pub uuid: String,
    pub project: String,
    pub name: String,
    pub hostname: String,
    pub availability_zone: Option<String>,
    pub launch_index: u32,
    pub key_pairs: Vec<KeyPair>,
    pub user_data: Option<Vec<u8>>,
    pub meta: BTreeMap<String, String>,
    pub admin_pass: Option<String>,
}

/// The outcome of a password POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSet {
    /// Stored: this was the first POST; `change` is the change log's number of the write.
    Stored { change: i64 },
    /// A password was already stored; nothing changed (409).
    AlreadySet,
    /// The instance does not exist (any more).
    NoInstance,
}

/// What kind of record a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ChangeKind {
    Network,
    Router,
    Port,
    Instance,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Router => "router",
            Self::Port => "port",
            Self::Instance => "instance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "network" => Some(Self::Network),
            "router" => Some(Self::Router),
            "port" => Some(Self::Port),
            "instance" => Some(Self::Instance),
            _ => None,
        }
    }
}

/// One entry of the change log every admin write appends to; running servers poll it to drop
/// cached documents and to add or remove namespace listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    pub id: String,
}
