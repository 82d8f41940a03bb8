//! `network_data.json` (docs/protocol.md §1.5) from the instance's ports and their networks.

use std::net::IpAddr;

use bytes::Bytes;
use ipnet::IpNet;
use metaboot_proto::{Link, Network, NetworkData, Route};

use crate::store;

/// The VIF type every link reports: the lab and a Linux-bridge host plug taps into a bridge.
pub const LINK_TYPE: &str = "bridge";
/// Longest device name nova gives a port (`nova/network/model.py`, `NIC_NAME_LEN`: Linux's 15
/// bytes with the terminating NUL); the link id is `tap` + the port id, cut to it.
pub const NIC_NAME_LEN: usize = 14;
/// What nova puts before the port id in a port's device name (`nova/network/neutron.py`).
pub const TAP_PREFIX: &str = "tap";

/// Renders the document; `{}` when the instance has no ports. One link per port, and one
/// network per subnet of its network, IPv4 first, counted across all links (nova's
/// `network<N>`).
pub fn render(ports: &[(store::Port, store::Network)]) -> Bytes {
    if ports.is_empty() {
        return Bytes::from_static(b"{}");
    }
    let mut doc = NetworkData::default();
    for (port, network) in ports {
        let link_id = tap_name(&port.id);
        doc.links.push(Link {
            id: link_id.clone(),
            vif_id: Some(port.id.clone()),
            kind: LINK_TYPE.to_owned(),
            mtu: network.mtu,
            ethernet_mac_address: Some(port.mac.clone()),
        });
        for subnet in network.subnets() {
            let ipv4 = subnet.cidr.addr().is_ipv4();
            let Some(ip) = port.ip_of_family(ipv4) else {
                continue;
            };
            let id = format!("network{}", doc.networks.len());
            doc.networks
                .push(subnet_network(id, &link_id, network, &subnet, ip));
        }
    }
    // Serialising plain strings and lists cannot fail.
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec()))
}

/// The `networks[]` entry of one subnet of a port (nova's `_get_nets`): `ipv4_dhcp` /
/// `ipv6_dhcp` with only four keys on a DHCP network without an IPv6 address mode; else
/// `ipv4`, `ipv6` or `ipv6_<mode>` with the address, netmask, default route and services.
fn subnet_network(
    id: String,
    link: &str,
    network: &store::Network,
    subnet: &store::Subnet,
    ip: IpAddr,
) -> Network {
    let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
    let mode = network.ipv6_address_mode.filter(|_| ip.is_ipv6());
    let mut entry = Network {
        id,
        link: link.to_owned(),
        network_id: network.id.clone(),
        kind: family.to_owned(),
        ip_address: None,
        netmask: None,
        routes: None,
        services: None,
    };
    match mode {
        Some(mode) => entry.kind = format!("ipv6_{}", mode.as_str()),
        None if network.has_dhcp() => {
            // A DHCP-managed subnet: the guest asks DHCP for the rest (nova's `ipv4_dhcp`).
            entry.kind = format!("{family}_dhcp");
            return entry;
        }
        None => {}
    }
    entry.ip_address = Some(ip.to_string());
    entry.netmask = Some(netmask(subnet.cidr).to_string());
    entry.routes = Some(default_route(subnet.gateway, ip));
    entry.services = Some(Vec::new());
    entry
}

/// Nova's link id, its device name of the port: [`TAP_PREFIX`] + the port id, cut to
/// [`NIC_NAME_LEN`] characters (`tap` + the first 11 of the id).
pub fn tap_name(port_id: &str) -> String {
    TAP_PREFIX
        .chars()
        .chain(port_id.chars())
        .take(NIC_NAME_LEN)
        .collect()
}

fn netmask(cidr: IpNet) -> IpAddr {
    cidr.netmask()
}

fn default_route(gateway: Option<IpAddr>, ip: IpAddr) -> Vec<Route> {
    let Some(gateway) = gateway else {
        return Vec::new();
    };
    let any = if ip.is_ipv4() { "0.0.0.0" } else { "::" };
    vec![Route {
        network: any.to_owned(),
        netmask: any.to_owned(),
        gateway: gateway.to_string(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_nova_s_device_names() {
        let name = tap_name("3f8e2c1a-4b5d-4e6f-8a9b-0c1d2e3f4a5b");
        assert_eq!(name, "tap3f8e2c1a-4b");
        assert_eq!(name.len(), NIC_NAME_LEN);
        assert_eq!(tap_name("short"), "tapshort");
    }
}
