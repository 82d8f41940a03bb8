//! The network configuration as one plan, whatever document it came from: interfaces (by MAC
//! or name) with their addresses, routes, DHCP and MTU, and the DNS servers and search domains;
//! plus the address and netmask parsing the readers share and what a renderer reports. The
//! readers and renderers of `apply::network` take these from here, not from their parent.

use std::net::IpAddr;

/// Most interfaces one document may configure.
pub const MAX_INTERFACES: usize = 64;

/// How an interface gets its IPv6 configuration besides static addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv6Auto {
    /// Nothing asked: the system's default (static addresses, if any, and router
    /// advertisements where the system accepts them).
    #[default]
    None,
    /// Static addresses only, router advertisements refused: OpenStack's static IPv6 network
    /// (`ipv6`, `static6`), as cloud-init's `convert_net_json` marks it (`accept-ra: false`).
    /// Without it systemd-networkd accepts them and the guest gets a SLAAC address and a
    /// default route next to the port's.
    StaticOnly,
    /// Router advertisements (SLAAC; `ipv6_slaac`).
    Slaac,
    /// Router advertisements for the address, stateless DHCPv6 for the rest, such as the DNS
    /// servers (`ipv6_dhcpv6-stateless`).
    Stateless,
    /// DHCPv6 (`ipv6_dhcp`, `ipv6_dhcpv6-stateful`).
    Dhcp,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Address {
    /// Whether `ip` is in this address's subnet (of its family, the same first `prefix` bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        let mask = u128::MAX
            .checked_shl(128u32.saturating_sub(u32::from(self.prefix)))
            .unwrap_or(0);
        self.ip.is_ipv4() == ip.is_ipv4() && bits(self.ip) & mask == bits(ip) & mask
    }
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
    /// The MAC of the system's NIC it was named after by its own MAC (`name_interfaces`), as
    /// the system writes it ([`normal_mac`]); `None` when no NIC has the document's MAC (the
    /// document's name, if any, is kept) or it has none. ifupdown records it, and only it, for
    /// `metaboot local` (`apply/network/stale.rs`).
    pub system_mac: Option<String>,
    pub mtu: Option<u32>,
    pub dhcp4: bool,
    /// The document tells the DHCP client to install none of the lease's routes (netplan's
    /// `dhcp4-overrides: use-routes: false`): the document's default route is kept.
    pub dhcp4_ignores_routes: bool,
    pub ipv6: Ipv6Auto,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
}

impl Interface {
    /// Whether anything static is configured (addresses or routes).
    pub fn is_static(&self) -> bool {
        !self.addresses.is_empty() || !self.routes.is_empty()
    }

    /// Whether the link's addresses come from a DHCP server or router advertisements alone (no
    /// static address): a renderer leaves such a link running as it is, its routes and MTU set
    /// at once (`running.rs`, `mtu.rs`), rather than restart its DHCP client for them.
    pub fn is_dynamic(&self) -> bool {
        self.addresses.is_empty()
            && (self.dhcp4 || !matches!(self.ipv6, Ipv6Auto::None | Ipv6Auto::StaticOnly))
    }

    /// Whether there is nothing to configure: no address, route, DHCP or router
    /// advertisements (a link without networks, such as a member of a bond left out); its MTU
    /// alone is no configuration.
    pub fn configures_nothing(&self) -> bool {
        !self.dhcp4 && self.ipv6 == Ipv6Auto::None && !self.is_static()
    }

    /// Whether `route`'s gateway is in none of the interface's static subnets of its family,
    /// while it has one (a /32 address with its provider's gateway, a gateway of another
    /// subnet): the kernel refuses such a route ("Nexthop has invalid gateway") unless told
    /// that the gateway is on the link (`onlink`, systemd-networkd's `GatewayOnLink=yes`), as
    /// cloud-init's networkd renderer tells it (`should_add_gateway_onlink_flag`). Without a
    /// static address of the family (DHCP, router advertisements) there is no telling.
    pub fn gateway_onlink(&self, route: &Route) -> bool {
        let mut subnets = self
            .addresses
            .iter()
            .filter(|address| address.ip.is_ipv4() == route.via.is_ipv4())
            .peekable();
        subnets.peek().is_some() && !subnets.any(|subnet| subnet.contains(route.via))
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
    pub(super) fn add_nameserver(&mut self, ip: IpAddr) {
        if !self.nameservers.contains(&ip) {
            self.nameservers.push(ip);
        }
    }

    /// Adds a search domain. One that is not a domain name ([`is_domain`]: `bücher.de`,
    /// `a.example,b.example`, a line break) is left out with a warning that `what` (the
    /// document and its key) begins, and the rest of the plan stands: cloud-init writes what it
    /// gets, and one bad domain must not leave the instance without its network.
    pub(super) fn add_search(&mut self, domain: &str, what: &str, warnings: &mut Vec<String>) {
        let domain = domain.trim();
        if domain.is_empty() || self.search.iter().any(|d| d == domain) {
            return;
        }
        if is_domain(domain) {
            self.search.push(domain.to_owned());
        } else {
            warnings.push(format!(
                "{what}: {domain:?} is not a domain name; left out (one domain per entry, of \
                 letters, digits, `-`, `_` and dots: an internationalised name in its `xn--` \
                 form)"
            ));
        }
    }

    /// Leaves out the IPv4 default route of each interface whose IPv4 address comes from DHCP
    /// alone (no static IPv4 address), with a warning that `source` (the document) begins: the
    /// lease's router is the link's default route already (systemd-networkd's at metric 1024,
    /// `proto dhcp`), and the document's beside it would be a second one: live (`ip route
    /// replace default`, metric 0, `running.rs`) and from networkd's own `[Route]` at every
    /// boot. cloud-init is the reference, and keeps only the lease's in most of its paths: its
    /// netplan renderer writes no route of a DHCP subnet, its ENI renderer's `route add
    /// default` fails beside dhclient's (`|| true`), and it reads a version 2 `gateway4` only
    /// with a static address (netplan itself, given `dhcp4` and a default route, writes both);
    /// and the IPv6 default route of a DHCPv6 or SLAAC network is likewise left to the router's
    /// advertisements (`openstack.rs`). The host routes of a DHCP link are kept, and its
    /// default route too when the document tells DHCP to install no routes
    /// ([`Interface::dhcp4_ignores_routes`]).
    pub(super) fn leave_dhcp_default_routes(&mut self, source: &str, warnings: &mut Vec<String>) {
        for interface in &mut self.interfaces {
            if !interface.dhcp4
                || interface.dhcp4_ignores_routes
                || interface.addresses.iter().any(|a| a.ip.is_ipv4())
            {
                continue;
            }
            let label = interface.label();
            interface.routes.retain(|route| {
                let keep = !(route.is_default() && route.via.is_ipv4());
                if !keep {
                    warnings.push(format!(
                        "{source}: {label}: the default route via {} is left out: the interface \
                         gets its IPv4 address by DHCP, whose lease gives the default route (give \
                         it a static address to route it otherwise)",
                        route.via
                    ));
                }
                keep
            });
        }
    }

    /// Refuses a plan with a name, MAC or search domain that is not one: each is written into
    /// a configuration file (an ifupdown stanza runs its `up` lines as root), where a line
    /// break or a space would add lines or words of its own. The readers leave a bad search
    /// domain out before ([`Plan::add_search`]); this refuses one set otherwise.
    pub(super) fn check(&self) -> Result<(), NetworkError> {
        let refuse = |what: &str, value: &str| {
            Err(NetworkError::Invalid(format!(
                "{what} {value:?} is not one: nothing was applied"
            )))
        };
        for interface in &self.interfaces {
            if let Some(name) = &interface.name
                && !is_interface_name(name)
            {
                return refuse("interface name", name);
            }
            if let Some(mac) = &interface.mac
                && !is_mac(mac)
            {
                return refuse("MAC address", mac);
            }
        }
        for domain in &self.search {
            if !is_domain(domain) {
                return refuse("search domain", domain);
            }
        }
        Ok(())
    }
}

/// Longest interface name Linux takes (`IFNAMSIZ` less its NUL).
pub const MAX_INTERFACE_NAME_BYTES: usize = 15;
/// Longest domain name.
pub const MAX_DOMAIN_BYTES: usize = 253;

/// An interface name, or a pattern of one (`en*`, `eth?`, as netplan's `match: name:` takes,
/// resolved against the system's interfaces before anything is written): 1 to 15 bytes of
/// letters, digits, `_`, `.` and `-` (and `*`, `?`), not starting with `-`, not `.` or `..`.
/// Linux takes more (any byte but `/`, `:` and blanks), but the name is written into
/// ifupdown's `up` lines, which a shell runs as root, and is an argument of `ifup`, `ip` and
/// `networkctl`: `e;reboot` or `-a` must never get there.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME_BYTES
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-*?".contains(c))
}

/// Whether an interface name is a pattern (`*` or `?` in it) rather than a name.
pub fn is_name_pattern(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// A MAC as the kernel writes it in `/sys/class/net/*/address`: lower case, `:` between the
/// pairs (a document may write `52-54-00-12-34-56`, which [`is_mac`] takes).
pub fn normal_mac(mac: &str) -> String {
    mac.trim().to_ascii_lowercase().replace('-', ":")
}

/// Hex digit pairs separated by `:` (or `-`).
fn is_mac(mac: &str) -> bool {
    !mac.is_empty()
        && mac
            .split([':', '-'])
            .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Letters, digits, `-`, `_` and dots, up to 253 bytes.
fn is_domain(domain: &str) -> bool {
    domain.len() <= MAX_DOMAIN_BYTES
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A document that cannot be turned into a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error("More than {MAX_INTERFACES} interfaces")]
    TooMany,
}

/// What applying did, for the step's message.
#[derive(Debug, Default)]
pub struct Applied {
    /// One line per interface or file.
    pub done: Vec<String>,
    /// Failures (the rest was still applied).
    pub errors: Vec<String>,
    /// What was left alone on purpose, for the step's warnings.
    pub warnings: Vec<String>,
}

/// `/etc/resolv.conf` for the plan's DNS (the direct renderer's, and what the others leave to
/// their own resolver handling); with search domains but no servers, the `nameserver` and
/// `options` lines of the `existing` file are kept.
pub fn resolv_conf(plan: &Plan, source: &str, existing: Option<&str>) -> Option<String> {
    if plan.nameservers.is_empty() && plan.search.is_empty() {
        return None;
    }
    let mut out = format!("# Written by metaboot from {source}.\n");
    if plan.nameservers.is_empty() {
        // Search domains alone: the servers already there (a DHCP client's) stay, else the
        // guest would be left with no resolver at all.
        for line in existing.unwrap_or_default().lines() {
            let word = line.split_whitespace().next().unwrap_or_default();
            if word == "nameserver" || word == "options" {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }
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
