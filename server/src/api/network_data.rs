//! `network_data.json` (docs/protocol.md §1.5) from the instance's ports and their networks.

use std::net::IpAddr;

use bytes::Bytes;
use ipnet::IpNet;
use metaboot_proto::{Link, Network, NetworkData, Route};

use crate::store;

/// The VIF type every link reports: the lab and a Linux-bridge host plug taps into a bridge.
pub const LINK_TYPE: &str = "bridge";

/// Renders the document; `{}` when the instance has no ports.
pub fn render(ports: &[(store::Port, store::Network)]) -> Bytes {
    if ports.is_empty() {
        return Bytes::from_static(b"{}");
    }
    let mut doc = NetworkData::default();
    for (index, (port, network)) in ports.iter().enumerate() {
        let link_id = tap_name(&port.id);
        doc.links.push(Link {
            id: link_id.clone(),
            vif_id: port.id.clone(),
            kind: LINK_TYPE.to_owned(),
            mtu: network.mtu,
            ethernet_mac_address: port.mac.clone(),
        });
        let family = if port.ip.is_ipv4() { "ipv4" } else { "ipv6" };
        let mut entry = Network {
            id: format!("network{index}"),
            link: link_id,
            network_id: network.id.clone(),
            kind: family.to_owned(),
            ip_address: None,
            netmask: None,
            routes: None,
            services: None,
        };
        if network.dhcp_ip.is_some() {
            // A DHCP-managed subnet: the guest asks DHCP for the rest (nova's `ipv4_dhcp`).
            entry.kind = format!("{family}_dhcp");
        } else {
            entry.ip_address = Some(port.ip.to_string());
            entry.netmask = Some(netmask(network.cidr).to_string());
            entry.routes = Some(default_route(network.gateway, port.ip));
            entry.services = Some(Vec::new());
        }
        doc.networks.push(entry);
    }
    // Serialising plain strings and lists cannot fail.
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec()))
}

/// Nova's link id: `tap` + the first 11 characters of the port id.
pub fn tap_name(port_id: &str) -> String {
    let prefix: String = port_id.chars().take(11).collect();
    format!("tap{prefix}")
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
