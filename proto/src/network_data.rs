//! `network_data.json` (docs/protocol.md §1.5): links, networks and services of the instance's
//! ports.

use serde::{Deserialize, Serialize};

/// The document served at `/openstack/<version>/network_data.json` (>= 2015-10-15).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkData {
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A layer-2 link: one per port (VIF). What metaboot serves always has `vif_id` and
/// `ethernet_mac_address`; nova's schema makes both optional (a bond has no VIF, a VLAN link
/// has `vlan_mac_address` instead), so a guest reads a document without them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The tap device name (`tap` + the first 11 characters of the port id).
    pub id: String,
    /// The port id.
    #[serde(default)]
    pub vif_id: Option<String>,
    /// `bridge`, `ovs`, `tap`, …, or `phy`; `bond`, `vlan` from nova for Ironic and trunks.
    #[serde(rename = "type")]
    pub kind: String,
    /// Network MTU, or null.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ethernet_mac_address: Option<String>,
}

/// A layer-3 network on a link. Only `link` and `type` are read by every guest (cloud-init's
/// `convert_net_json`); a document from elsewhere without the others is still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// `network<N>`, counted across all links.
    #[serde(default)]
    pub id: String,
    /// The link id.
    pub link: String,
    /// The registry's network id.
    #[serde(default)]
    pub network_id: String,
    /// `ipv4`, `ipv4_dhcp`, `ipv6`, `ipv6_dhcp`, `ipv6_slaac`, ….
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
}

/// A route of a static network (one without a gateway is read, and left to the guest to
/// judge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub network: String,
    pub netmask: String,
    #[serde(default)]
    pub gateway: String,
}

/// A network service (DNS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_without_the_ids_nova_adds_is_read() {
        let doc: NetworkData = serde_json::from_value(serde_json::json!({
            "links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
            "networks": [{"link": "eth0", "type": "ipv4", "ip_address": "198.18.0.5",
                "netmask": "255.255.255.0",
                "routes": [{"network": "198.19.0.0", "netmask": "255.255.0.0"}]}],
        }))
        .unwrap();
        assert_eq!(doc.networks[0].network_id, "");
        assert_eq!(doc.networks[0].routes.as_ref().unwrap()[0].gateway, "");
    }
}
