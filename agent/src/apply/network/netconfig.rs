//! cloud-init's `network-config` (NoCloud) as a [`Plan`]: version 1 (`config:` a list of
//! `physical` entries with `subnets`, and `nameserver` entries) and version 2 (netplan's
//! `ethernets:` with `match`, `dhcp4`, `dhcp6`, `addresses`, `gateway4`/`gateway6`, `routes`,
//! `nameservers`, `mtu`). Either may sit under a top-level `network:` key. Bonds, bridges and
//! VLANs are left out with a warning.

use serde_json::Value;

use super::plan::{Address, Interface, Ipv6Auto, NetworkError, Plan, Route, address};

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A list that may be written as one string.
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(one)) => one.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                other => other.as_u64().map(|n| n.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn mtu(value: &Value) -> Option<u32> {
    value
        .get("mtu")
        .and_then(|m| m.as_u64().or_else(|| m.as_str()?.parse().ok()))
        .and_then(|m| u32::try_from(m).ok())
}

/// The IPv6 configuration of an interface with `accept-ra` (of a version 1 `physical` entry, a
/// version 2 ethernet; true as cloud-init's `util.is_true` reads it: `true`, or `true`, `1`,
/// `on` or `yes` written as a string): when no subnet or `dhcp6` says otherwise, true takes
/// router advertisements (SLAAC) and anything else refuses them (`IPv6AcceptRA=no`, ifupdown's
/// `accept_ra 0`, as cloud-init's renderers write it), where networkd would otherwise accept
/// them and add a SLAAC address and a default route.
fn accept_ra(ipv6: Ipv6Auto, value: Option<&Value>) -> Ipv6Auto {
    let text = match value {
        None | Some(Value::Null) => return ipv6,
        Some(Value::String(text)) => text.trim().to_ascii_lowercase(),
        Some(other) => other.to_string(),
    };
    let accept = ["true", "1", "on", "yes"].contains(&text.as_str());
    match ipv6 {
        Ipv6Auto::None if accept => Ipv6Auto::Slaac,
        Ipv6Auto::None => Ipv6Auto::StaticOnly,
        other => other,
    }
}

/// Whether `value` is false as systemd-networkd reads the value cloud-init's networkd renderer
/// writes for it (`UseRoutes=` of `dhcp4-overrides: use-routes`): `false`, `0`, or `no`, `n`,
/// `false`, `f`, `off` or `0` written as a string, in any case.
fn is_false(value: &Value) -> bool {
    let text = match value {
        Value::String(text) => text.trim().to_ascii_lowercase(),
        other => other.to_string(),
    };
    ["no", "n", "false", "f", "off", "0"].contains(&text.as_str())
}

fn bad(what: &str) -> NetworkError {
    NetworkError::Invalid(format!("network-config: {what}"))
}

/// The default route of `gateway` for an address's family.
fn default_route(gateway: &str, what: &str) -> Result<Route, NetworkError> {
    let via: std::net::IpAddr = gateway
        .trim()
        .parse()
        .map_err(|_| bad(&format!("{what}: gateway {gateway:?} is not an address")))?;
    let any = if via.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    Ok(Route {
        to: address(any, None).ok_or_else(|| bad("default route"))?,
        via,
    })
}

/// Adds DNS servers and search domains; a server that is not an address, or a search domain
/// that is not one, is left out with a warning (`keys` name the servers' and the domains' key
/// there), as `network_data.json`'s are.
fn add_dns(
    plan: &mut Plan,
    addresses: Option<&Value>,
    search: Option<&Value>,
    keys: [&str; 2],
    warnings: &mut Vec<String>,
) {
    let [address_key, search_key] = keys;
    for ns in strings(addresses) {
        match ns.trim().parse() {
            Ok(ip) => plan.add_nameserver(ip),
            Err(_) => warnings.push(format!(
                "network-config: {address_key}: {ns:?} is not an address; left out"
            )),
        }
    }
    for domain in strings(search) {
        plan.add_search(&domain, &format!("network-config: {search_key}"), warnings);
    }
}

/// The document itself: under a top-level `network:` key, or the whole.
fn inner(doc: &Value) -> &Value {
    doc.get("network").filter(|n| n.is_object()).unwrap_or(doc)
}

/// Whether the document is `config: disabled` (at the top or under `network:`), cloud-init's
/// way to leave the network alone: it has no `version`.
pub fn disabled(doc: &Value) -> bool {
    text(inner(doc), "config") == Some("disabled")
}

/// The plan of a `network-config` document.
pub fn plan(doc: &Value, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    if disabled(doc) {
        return Ok(Plan::default());
    }
    let doc = inner(doc);
    match doc
        .get("version")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    {
        Some(1) => version1(doc, warnings),
        Some(2) => version2(doc, warnings),
        Some(other) => Err(bad(&format!("version {other} is not 1 or 2"))),
        None => Err(bad("no `version`")),
    }
}

/// A version 1 address or route network, read as cloud-init reads it: the first of `keys`
/// present, its prefix from its own `/N`, else `prefix` (a number or a string), else
/// `netmask`, else /24 for IPv4 and /64 for IPv6.
fn address_v1(value: &Value, keys: &[&str]) -> Option<Address> {
    let given = keys.iter().find_map(|key| text(value, key))?;
    if given.contains('/') {
        return address(given, None);
    }
    let prefix = match value.get("prefix") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let default = if given.contains(':') { "64" } else { "24" };
    let mask = prefix.or_else(|| text(value, "netmask").map(str::to_owned));
    address(given, Some(mask.as_deref().unwrap_or(default)))
}

fn route_v1(route: &Value, what: &str) -> Result<Route, NetworkError> {
    let to = address_v1(route, &["network", "destination"])
        .ok_or_else(|| bad(&format!("{what}: a route without a usable network")))?;
    let via = text(route, "gateway")
        .and_then(|g| g.trim().parse().ok())
        .ok_or_else(|| bad(&format!("{what}: a route without a usable gateway")))?;
    Ok(Route { to, via })
}

fn version1(doc: &Value, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    let mut plan = Plan::default();
    let entries = doc
        .get("config")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("version 1 without a `config` list"))?;
    for entry in entries {
        let name = text(entry, "name").map(str::to_owned);
        let what = name.clone().unwrap_or_else(|| "an entry".to_owned());
        match text(entry, "type").unwrap_or_default() {
            "physical" => {}
            "nameserver" => {
                add_dns(
                    &mut plan,
                    entry.get("address"),
                    entry.get("search"),
                    ["nameserver: address", "nameserver: search"],
                    warnings,
                );
                continue;
            }
            other => {
                warnings.push(format!("network-config: {what} is a {other:?}; left out"));
                continue;
            }
        }
        let mut interface = Interface {
            mac: text(entry, "mac_address").map(|m| m.trim().to_ascii_lowercase()),
            name,
            mtu: mtu(entry),
            ..Interface::default()
        };
        let subnets = entry
            .get("subnets")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for subnet in subnets {
            match text(subnet, "type").unwrap_or_default() {
                "dhcp" | "dhcp4" => interface.dhcp4 = true,
                "dhcp6" | "ipv6_dhcpv6-stateful" => interface.ipv6 = Ipv6Auto::Dhcp,
                "ipv6_slaac" => interface.ipv6 = Ipv6Auto::Slaac,
                "ipv6_dhcpv6-stateless" => interface.ipv6 = Ipv6Auto::Stateless,
                "static" | "static6" => {
                    let addr = address_v1(subnet, &["address", "ip_address"]).ok_or_else(|| {
                        let ip = text(subnet, "address").or_else(|| text(subnet, "ip_address"));
                        bad(&format!(
                            "{what}: static address {:?}",
                            ip.unwrap_or_default()
                        ))
                    })?;
                    interface.addresses.push(addr);
                    if let Some(gateway) = text(subnet, "gateway") {
                        interface.routes.push(default_route(gateway, &what)?);
                    }
                    add_dns(
                        &mut plan,
                        subnet.get("dns_nameservers"),
                        subnet.get("dns_search"),
                        [
                            &format!("{what}: dns_nameservers"),
                            &format!("{what}: dns_search"),
                        ],
                        warnings,
                    );
                }
                other => {
                    warnings.push(format!(
                        "network-config: {what}: subnet type {other:?} left out"
                    ));
                    continue;
                }
            }
            // A subnet's routes, whatever its type: cloud-init's renderers write the routes
            // of a DHCP or SLAAC subnet as they write a static one's. A static subnet's route
            // that cannot be read fails the document, as its address would; another subnet's is
            // left out with a warning, so its DHCP still applies.
            let is_static = matches!(text(subnet, "type"), Some("static" | "static6"));
            for route in subnet
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match route_v1(route, &what) {
                    Ok(route) => interface.routes.push(route),
                    Err(err) if is_static => return Err(err),
                    Err(err) => warnings.push(format!("{err}; left out")),
                }
            }
        }
        interface.ipv6 = accept_ra(interface.ipv6, entry.get("accept-ra"));
        plan.interfaces.push(interface);
    }
    Ok(plan)
}

fn version2(doc: &Value, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    let mut plan = Plan::default();
    for key in ["bonds", "bridges", "vlans", "wifis"] {
        if doc.get(key).is_some() {
            warnings.push(format!("network-config: `{key}` left out"));
        }
    }
    let Some(ethernets) = doc.get("ethernets").and_then(Value::as_object) else {
        return Ok(plan);
    };
    for (id, eth) in ethernets {
        let matched = eth.get("match");
        let mac = matched
            .and_then(|m| text(m, "macaddress"))
            .map(|m| m.trim().to_ascii_lowercase());
        let name = eth
            .get("set-name")
            .or_else(|| matched.and_then(|m| m.get("name")))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| matched.is_none().then(|| id.clone()));
        let mut interface = Interface {
            mac,
            name,
            mtu: mtu(eth),
            dhcp4: eth.get("dhcp4").and_then(Value::as_bool).unwrap_or(false),
            dhcp4_ignores_routes: eth
                .get("dhcp4-overrides")
                .and_then(|overrides| overrides.get("use-routes"))
                .is_some_and(is_false),
            ipv6: if eth.get("dhcp6").and_then(Value::as_bool).unwrap_or(false) {
                Ipv6Auto::Dhcp
            } else {
                accept_ra(Ipv6Auto::None, eth.get("accept-ra"))
            },
            ..Interface::default()
        };
        for addr in strings(eth.get("addresses")) {
            let parsed: Address = address(&addr, None)
                .filter(|_| addr.contains('/'))
                .ok_or_else(|| bad(&format!("{id}: address {addr:?} needs a /prefix")))?;
            interface.addresses.push(parsed);
        }
        for key in ["gateway4", "gateway6"] {
            if let Some(gateway) = text(eth, key) {
                interface.routes.push(default_route(gateway, id)?);
            }
        }
        for route in eth
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let to = match text(route, "to") {
                Some("default") | None => {
                    let via = text(route, "via").unwrap_or_default();
                    if text(route, "to").is_none() {
                        return Err(bad(&format!("{id}: a route without `to`")));
                    }
                    interface.routes.push(default_route(via, id)?);
                    continue;
                }
                Some(to) => {
                    address(to, None).ok_or_else(|| bad(&format!("{id}: route to {to:?}")))?
                }
            };
            let via = text(route, "via")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad(&format!("{id}: a route without a usable `via`")))?;
            interface.routes.push(Route { to, via });
        }
        if let Some(ns) = eth.get("nameservers") {
            add_dns(
                &mut plan,
                ns.get("addresses"),
                ns.get("search"),
                [
                    &format!("{id}: nameservers: addresses"),
                    &format!("{id}: nameservers: search"),
                ],
                warnings,
            );
        }
        plan.interfaces.push(interface);
    }
    Ok(plan)
}
