//! The registry's records: networks, routers, ports and instances.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

pub use metaboot_proto::KeyPair;

/// A tenant network with one subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub project: String,
    pub cidr: IpNet,
    /// The router's address on this network, if it has one.
    pub gateway: Option<IpAddr>,
    /// The DHCP port's address (the isolated path's metadata next hop).
    pub dhcp_ip: Option<IpAddr>,
    /// No router: metadata is served from the DHCP namespace (`qdhcp-<id>`).
    pub isolated: bool,
    pub mtu: Option<u32>,
    pub created: String,
}

/// What `network create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewNetwork {
    pub name: String,
    pub project: String,
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dhcp_ip: Option<IpAddr>,
    pub isolated: bool,
    pub mtu: Option<u32>,
    /// `--no-dhcp`: no DHCP port; the ports are configured statically from `network_data.json`
    /// (`ipv4` / `ipv6` with the address, netmask and routes, instead of `ipv4_dhcp`).
    pub no_dhcp: bool,
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

/// A port: one address of one instance on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub id: String,
    pub network_id: String,
    /// Lower case, colon separated.
    pub mac: String,
    pub ip: IpAddr,
    /// The instance UUID (neutron's `device_id`).
    pub instance_id: String,
    pub project: String,
    pub created: String,
}

/// What `port create` (or `instance create`) asks for; `None` means "allocate one".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewPort {
    pub network_id: String,
    pub ip: Option<IpAddr>,
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
    /// Stored: this was the first POST.
    Stored,
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
