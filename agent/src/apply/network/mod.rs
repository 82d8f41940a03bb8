//! The network configuration of an instance, applied (docs/protocol.md §4.2, §5.7): OpenStack's
//! `network_data.json` or NoCloud's `network-config` (version 1 or 2) becomes one [`Plan`]
//! (interfaces matched by MAC and named as the system names them, static addresses, routes,
//! DHCP, MTU, DNS servers and search domains), which is written the way the image configures
//! its network: systemd-networkd `.network` files, ifupdown's `interfaces.d`, or, on an image
//! with neither (the tiny busybox image), applied directly with `ip` and `/etc/resolv.conf`.

mod direct;
mod ifupdown;
mod netconfig;
mod networkd;
mod openstack;

use std::net::IpAddr;
use std::path::Path;

use crate::root::Root;

/// The network interfaces of the system, under the root.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// Most interfaces read from [`SYS_CLASS_NET`].
pub const MAX_SYSTEM_LINKS: usize = 256;
/// Most interfaces one document may configure.
pub const MAX_INTERFACES: usize = 64;

/// A network document as its source gave it, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkDoc {
    /// OpenStack's `network_data.json`.
    OpenStack(serde_json::Value),
    /// cloud-init's `network-config`, version 1 or 2 (NoCloud).
    NetworkConfig(serde_json::Value),
}

/// How an interface gets its IPv6 configuration besides static addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv6Auto {
    /// Static addresses only (or no IPv6).
    #[default]
    None,
    /// Router advertisements (SLAAC; `ipv6_slaac`, `ipv6_dhcpv6-stateless`).
    Slaac,
    /// DHCPv6 (`ipv6_dhcp`, `ipv6_dhcpv6-stateful`).
    Dhcp,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// A route: `to` (a network, `0.0.0.0/0` or `::/0` for the default) via a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub to: Address,
    pub via: IpAddr,
}

impl Route {
    /// True for the default route of its family.
    pub fn is_default(&self) -> bool {
        self.to.prefix == 0
    }
}

/// One interface to configure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// Its MAC (lower case), when the document gives one.
    pub mac: Option<String>,
    /// Its name on this system (found by MAC, or given by the document).
    pub name: Option<String>,
    pub mtu: Option<u32>,
    pub dhcp4: bool,
    pub ipv6: Ipv6Auto,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
}

impl Interface {
    /// Whether anything static is configured (addresses or routes).
    pub fn is_static(&self) -> bool {
        !self.addresses.is_empty() || !self.routes.is_empty()
    }

    /// How the interface is named in messages and file names.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.mac.clone())
            .unwrap_or_else(|| "?".to_owned())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub interfaces: Vec<Interface>,
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl Plan {
    fn add_nameserver(&mut self, ip: IpAddr) {
        if !self.nameservers.contains(&ip) {
            self.nameservers.push(ip);
        }
    }

    fn add_search(&mut self, domain: &str) {
        let domain = domain.trim();
        if !domain.is_empty() && !self.search.iter().any(|d| d == domain) {
            self.search.push(domain.to_owned());
        }
    }
}

/// A document that cannot be turned into a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error("More than {MAX_INTERFACES} interfaces")]
    TooMany,
}

/// The plan of a document; `warnings` gets what is left out (bonds, VLANs, unknown types).
pub fn plan(doc: &NetworkDoc, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    let plan = match doc {
        NetworkDoc::OpenStack(value) => openstack::plan(value, warnings)?,
        NetworkDoc::NetworkConfig(value) => netconfig::plan(value, warnings)?,
    };
    if plan.interfaces.len() > MAX_INTERFACES {
        return Err(NetworkError::TooMany);
    }
    Ok(plan)
}

/// The interfaces of the system: `(name, MAC)` from `<root>/sys/class/net/*/address`.
pub fn system_links(root: &Root) -> Vec<(String, String)> {
    let Some(entries) = root
        .dir_optional(SYS_CLASS_NET)
        .ok()
        .flatten()
        .and_then(|dir| dir.entries().ok())
    else {
        return Vec::new();
    };
    let mut links: Vec<(String, String)> = entries
        .into_iter()
        .take(MAX_SYSTEM_LINKS)
        .filter_map(|(name, _)| {
            let name = name.to_str()?.to_owned();
            let address = Path::new(SYS_CLASS_NET).join(&name).join("address");
            let mac = root.read_optional_string(&address).ok()??;
            Some((name, mac.trim().to_ascii_lowercase()))
        })
        .collect();
    links.sort();
    links
}

/// Names the plan's interfaces after the system's (by MAC); an interface whose MAC no
/// system interface has gets a warning and keeps the document's name, if any.
pub fn name_interfaces(plan: &mut Plan, links: &[(String, String)], warnings: &mut Vec<String>) {
    for interface in &mut plan.interfaces {
        let Some(mac) = &interface.mac else { continue };
        match links.iter().find(|(_, address)| address == mac) {
            Some((name, _)) => interface.name = Some(name.clone()),
            None => warnings.push(format!(
                "no interface of this system has MAC {mac}{}",
                interface
                    .name
                    .as_deref()
                    .map(|n| format!(" (the document calls it {n})"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// How this image configures its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// systemd-networkd: `.network` files in `/etc/systemd/network`.
    Networkd,
    /// ifupdown: `/etc/network/interfaces.d/`.
    Ifupdown,
    /// Neither: `ip` commands now, and `/etc/resolv.conf`.
    Direct,
}

impl Renderer {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Renderer::Networkd => "systemd-networkd",
            Renderer::Ifupdown => "ifupdown",
            Renderer::Direct => "ip (no network manager)",
        }
    }
}

/// The renderer of the image under `root`: systemd-networkd when its daemon and its
/// configuration directory are there, else ifupdown when `ifup` and `/etc/network/interfaces`
/// are, else direct.
pub fn detect(root: &Root) -> Renderer {
    let any = |paths: &[&str]| paths.iter().any(|p| root.exists(p));
    if root.is_dir(networkd::DIR)
        && any(&[
            "/usr/lib/systemd/systemd-networkd",
            "/lib/systemd/systemd-networkd",
        ])
    {
        Renderer::Networkd
    } else if root.exists(ifupdown::INTERFACES) && any(&["/usr/sbin/ifup", "/sbin/ifup"]) {
        Renderer::Ifupdown
    } else {
        Renderer::Direct
    }
}

/// What applying did, for the step's message.
#[derive(Debug, Default)]
pub struct Applied {
    /// One line per interface or file.
    pub done: Vec<String>,
    /// Failures (the rest was still applied).
    pub errors: Vec<String>,
}

/// Applies `plan` with `renderer`. Live changes (commands) only happen when the root is `/`.
pub fn apply(root: &Root, plan: &Plan, renderer: Renderer, source: &str) -> Applied {
    match renderer {
        Renderer::Networkd => networkd::apply(root, plan, source),
        Renderer::Ifupdown => ifupdown::apply(root, plan, source),
        Renderer::Direct => direct::apply(root, plan, source),
    }
}

/// `/etc/resolv.conf` for the plan's DNS (the direct renderer's, and what the others leave to
/// their own resolver handling).
pub fn resolv_conf(plan: &Plan, source: &str) -> Option<String> {
    if plan.nameservers.is_empty() && plan.search.is_empty() {
        return None;
    }
    let mut out = format!("# Written by metaboot from {source}.\n");
    for ns in &plan.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !plan.search.is_empty() {
        out.push_str(&format!("search {}\n", plan.search.join(" ")));
    }
    Some(out)
}

/// A netmask (`255.255.255.0`, `ffff:ffff::`, or a bare prefix length) as a prefix length.
pub fn prefix_of(netmask: &str) -> Option<u8> {
    if let Ok(prefix) = netmask.trim().parse::<u8>() {
        return (prefix <= 128).then_some(prefix);
    }
    let bits: u128 = match netmask.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    let prefix = bits.leading_ones();
    // A netmask is ones then zeros.
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

/// `ip/prefix`, or `ip` with `netmask`: an [`Address`], its prefix within the family's bound.
pub fn address(text: &str, netmask: Option<&str>) -> Option<Address> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip.trim().parse::<IpAddr>().ok()?, prefix_of(prefix)?),
        None => {
            let ip = text.trim().parse::<IpAddr>().ok()?;
            let full = if ip.is_ipv4() { 32 } else { 128 };
            (ip, netmask.map_or(Some(full), prefix_of)?)
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Address { ip, prefix })
}

#[cfg(test)]
mod tests;
