//! `network_data.json` (docs/protocol.md §1.5) as a [`Plan`], as cloud-init's
//! `convert_net_json` reads it: a link per physical NIC (by `ethernet_mac_address`, with its
//! `mtu`), its networks by `type` (`ipv4_dhcp` / `ipv6_dhcp` / `ipv6_dhcpv6-stateful` → DHCP,
//! `ipv6_slaac` → router advertisements, `ipv6_dhcpv6-stateless` → those and stateless
//! DHCPv6, `ipv4` / `ipv6` (or cloud-init's `static` / `static6`) → the `ip_address` with its
//! `netmask`, `gateway` and `routes`), the networks' DNS (`dns` services in their routes and
//! of their own, `dns_nameservers`, `dns_search`) and the `dns` services of the document.

use serde_json::Value;

use super::netconfig::strings;
use super::plan::{Interface, Ipv6Auto, NetworkError, Plan, Route, address};

/// Link types that are not a NIC of their own.
const VIRTUAL_LINKS: [&str; 2] = ["bond", "vlan"];

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Adds the `dns` entries of `services` to the plan; returns how many there were.
fn services(plan: &mut Plan, services: &[Value], warnings: &mut Vec<String>) -> usize {
    let mut found = 0;
    for service in services {
        if text(service, "type") != Some("dns") {
            continue;
        }
        found += 1;
        match text(service, "address").and_then(|a| a.trim().parse().ok()) {
            Some(ip) => plan.add_nameserver(ip),
            None => warnings.push(format!(
                "network_data.json: a dns service without a usable address: {service}"
            )),
        }
    }
    found
}

/// Adds a network's DNS to the plan as cloud-init's `convert_net_json` gathers it: the `dns`
/// services listed inside its `routes`, then its own `services`; its `dns_nameservers` only
/// when neither has any (cloud-init's services replace them); its `dns_search` always (each
/// domain that is one: a bad one is a warning, not the end of the plan).
fn network_dns(plan: &mut Plan, network: &Value, warnings: &mut Vec<String>) {
    let mut found = 0;
    for route in list(network, "routes") {
        found += services(plan, list(route, "services"), warnings);
    }
    found += services(plan, list(network, "services"), warnings);
    if found == 0 {
        for ns in strings(network.get("dns_nameservers")) {
            match ns.trim().parse() {
                Ok(ip) => plan.add_nameserver(ip),
                Err(_) => warnings.push(format!(
                    "network_data.json: dns_nameservers: {ns:?} is not an address; left out"
                )),
            }
        }
    }
    for domain in strings(network.get("dns_search")) {
        plan.add_search(&domain, "network_data.json: dns_search", warnings);
    }
}

/// The plan of a `network_data.json` document (`{}` gives an empty plan).
pub fn plan(doc: &Value, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    if !doc.is_object() {
        return Err(NetworkError::Invalid(
            "network_data.json is not a JSON object".to_owned(),
        ));
    }
    let mut plan = Plan::default();
    // (link id, interface)
    let mut links: Vec<(String, Interface)> = Vec::new();
    for link in list(doc, "links") {
        let id = text(link, "id").unwrap_or_default().to_owned();
        let kind = text(link, "type").unwrap_or("phy");
        if VIRTUAL_LINKS.contains(&kind) {
            warnings.push(format!(
                "network_data.json: link {id} is a {kind}; bonds and VLANs are not applied"
            ));
            continue;
        }
        let Some(mac) = text(link, "ethernet_mac_address") else {
            warnings.push(format!(
                "network_data.json: link {id} has no ethernet_mac_address; left out"
            ));
            continue;
        };
        let mtu = link
            .get("mtu")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok());
        links.push((
            id,
            Interface {
                mac: Some(mac.trim().to_ascii_lowercase()),
                mtu,
                ..Interface::default()
            },
        ));
    }
    for network in list(doc, "networks") {
        let id = text(network, "id").unwrap_or_default();
        let link = text(network, "link").unwrap_or_default();
        let Some((_, interface)) = links.iter_mut().find(|(lid, _)| lid == link) else {
            warnings.push(format!(
                "network_data.json: network {id} is on link {link}, which is not applied"
            ));
            continue;
        };
        let kind = text(network, "type").unwrap_or_default();
        match kind {
            // A DHCP network's routes and DNS are kept too, next to what the DHCP server
            // gives: `convert_net_json` keeps both on the DHCP subnet, and cloud-init's
            // renderers write the routes of every subnet (networkd `[Route]`, ENI `up`
            // lines) and the DNS on the `inet dhcp` stanza (`dns-nameservers`). nova writes
            // none on these; Ironic's and other producers' documents do.
            "ipv4_dhcp" | "dhcp4" => {
                interface.dhcp4 = true;
                interface.routes.extend(routes(id, network, warnings));
                network_dns(&mut plan, network, warnings);
            }
            // Its default route comes with the router's advertisements (DHCPv6 gives none), as
            // for the IPv6 networks below: only its host routes are added.
            "ipv6_dhcp" | "dhcp6" => {
                interface.ipv6 = Ipv6Auto::Dhcp;
                let host_routes = routes(id, network, warnings).into_iter();
                interface
                    .routes
                    .extend(host_routes.filter(|route| !route.is_default()));
                network_dns(&mut plan, network, warnings);
            }
            // nova writes these with the subnet's address, routes and DNS, as a static
            // network: the address comes from the router's advertisements or DHCPv6, the host
            // routes and DNS from here (cloud-init's `convert_net_json` keeps them too).
            "ipv6_dhcpv6-stateful" | "ipv6_slaac" | "ipv6_dhcpv6-stateless" => {
                interface.ipv6 = match kind {
                    "ipv6_dhcpv6-stateful" => Ipv6Auto::Dhcp,
                    "ipv6_dhcpv6-stateless" => Ipv6Auto::Stateless,
                    _ => Ipv6Auto::Slaac,
                };
                // The default route comes with the router's advertisements, as the address
                // does: only the subnet's host routes are added (a link without them stays one
                // with nothing static to apply).
                let host_routes = routes(id, network, warnings).into_iter();
                interface
                    .routes
                    .extend(host_routes.filter(|route| !route.is_default()));
                network_dns(&mut plan, network, warnings);
            }
            // `static` and `static6` are cloud-init's own names, which `convert_net_json`
            // takes as `ipv4` and `ipv6`.
            "ipv4" | "ipv6" | "static" | "static6" => {
                let ip = text(network, "ip_address").unwrap_or_default();
                let Some(addr) = address(ip, text(network, "netmask")) else {
                    return Err(NetworkError::Invalid(format!(
                        "network_data.json: network {id} has no usable ip_address/netmask ({ip:?})"
                    )));
                };
                interface.addresses.push(addr);
                // A static IPv6 network refuses router advertisements, as cloud-init's
                // `accept-ra: false`; but not on a link that also gets its IPv6 from them or
                // from DHCPv6 (before or after this network), where cloud-init's flag would
                // turn that off.
                if matches!(kind, "ipv6" | "static6") && interface.ipv6 == Ipv6Auto::None {
                    interface.ipv6 = Ipv6Auto::StaticOnly;
                }
                // The network's `gateway` (a key cloud-init keeps, nova writes the default
                // route in `routes`) is its default route, the first of the network's: a
                // `gateway` line for ifupdown, as cloud-init's ENI renderer writes it.
                let mut network_routes = Vec::new();
                if let Some(gateway) = text(network, "gateway") {
                    match default_route(gateway) {
                        Some(route) => network_routes.push(route),
                        None => warnings.push(format!(
                            "network_data.json: network {id}: gateway {gateway:?} is not an \
                             address; left out"
                        )),
                    }
                }
                for route in routes(id, network, warnings) {
                    if !network_routes.contains(&route) {
                        network_routes.push(route);
                    }
                }
                interface.routes.extend(network_routes);
                network_dns(&mut plan, network, warnings);
            }
            other => warnings.push(format!(
                "network_data.json: network {id} has the unknown type {other:?}; left out"
            )),
        }
    }
    services(&mut plan, list(doc, "services"), warnings);
    plan.interfaces = links.into_iter().map(|(_, i)| i).collect();
    Ok(plan)
}

/// The default route via `gateway`, of the gateway's family.
fn default_route(gateway: &str) -> Option<Route> {
    let via: std::net::IpAddr = gateway.trim().parse().ok()?;
    let any = if via.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    Some(Route {
        to: address(any, None)?,
        via,
    })
}

/// A network's `routes`; one without a usable network, netmask and gateway is a warning.
fn routes(id: &str, network: &Value, warnings: &mut Vec<String>) -> Vec<Route> {
    let mut out = Vec::new();
    for route in list(network, "routes") {
        let to = text(route, "network").unwrap_or_default();
        let parsed = address(to, text(route, "netmask"))
            .zip(text(route, "gateway").and_then(|g| g.trim().parse().ok()));
        match parsed {
            Some((to, via)) => out.push(Route { to, via }),
            None => warnings.push(format!(
                "network_data.json: network {id}: a route without a usable network, netmask and gateway: {route}"
            )),
        }
    }
    out
}
