//! The addresses taken on networks as one write transaction sees them: read from the registry
//! once per network (`Sql::network_ips`), the first time the transaction allocates there, then
//! kept current as it adds ports. Registering many instances in one call
//! (`Store::create_instances`) so reads each network's addresses once, not once per instance,
//! and each search for the lowest free address starts where the one before it ended.
//!
//! A `Taken` belongs to one attempt at one write transaction (a backend may run the body of a
//! transaction again: each run makes its own), which adds ports and deletes none: an address
//! it saw taken stays taken until it ends.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::allocate;
use super::error::StoreResult;
use super::model::{Network, Port, Subnet};

/// What is known of one network's addresses.
struct Held {
    /// Every address its ports hold, on either subnet.
    ips: HashSet<IpAddr>,
    /// Per subnet, the value of an address below which no host address is free: where the
    /// next search for the lowest free one starts.
    floors: HashMap<IpNet, u128>,
}

/// The taken addresses of the networks one write transaction allocated on.
#[derive(Default)]
pub struct Taken {
    networks: HashMap<String, Held>,
}

impl Taken {
    /// What is known of `network_id`, read with `read` the first time.
    fn held(
        &mut self,
        network_id: &str,
        read: impl FnOnce() -> StoreResult<HashSet<IpAddr>>,
    ) -> StoreResult<&mut Held> {
        Ok(match self.networks.entry(network_id.to_owned()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unknown) => unknown.insert(Held {
                ips: read()?,
                floors: HashMap::new(),
            }),
        })
    }

    /// The addresses the ports on `network_id` hold, read with `read` the first time.
    pub fn ips(
        &mut self,
        network_id: &str,
        read: impl FnOnce() -> StoreResult<HashSet<IpAddr>>,
    ) -> StoreResult<&HashSet<IpAddr>> {
        Ok(&self.held(network_id, read)?.ips)
    }

    /// The lowest free host address of `subnet` on `network` (neither its gateway, its DHCP
    /// address nor a port's), its addresses read with `read` the first time.
    pub fn lowest_free(
        &mut self,
        network: &Network,
        subnet: &Subnet,
        read: impl FnOnce() -> StoreResult<HashSet<IpAddr>>,
    ) -> StoreResult<IpAddr> {
        let held = self.held(&network.id, read)?;
        let floor = held.floors.get(&subnet.cidr).copied().unwrap_or(0);
        let ip = allocate::lowest_free_ip(&network.name, subnet, &held.ips, floor)?;
        // Everything below it is taken, and no address is freed before the transaction ends.
        held.floors.insert(subnet.cidr, allocate::ip_to_u128(ip));
        Ok(ip)
    }

    /// Records the addresses of a port just added, on a network whose addresses were read.
    pub fn hold(&mut self, port: &Port) {
        if let Some(held) = self.networks.get_mut(&port.network_id) {
            held.ips.extend(port.ips());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn network(id: &str, cidr: &str) -> Network {
        Network {
            id: id.to_owned(),
            name: id.to_owned(),
            project: "p1".to_owned(),
            cidr: cidr.parse().unwrap(),
            gateway: Some(ip("198.18.0.1")),
            dhcp_ip: Some(ip("198.18.0.2")),
            second_subnet: None,
            ipv6_address_mode: None,
            isolated: false,
            mtu: None,
            created: String::new(),
            host: None,
        }
    }

    fn port(network: &Network, at: IpAddr) -> Port {
        Port {
            id: format!("port-{at}"),
            network_id: network.id.clone(),
            mac: String::new(),
            ip: at,
            second_ip: None,
            instance_id: String::new(),
            project: String::new(),
            created: String::new(),
        }
    }

    #[test]
    fn a_network_is_read_once_and_kept_current_as_ports_are_added() {
        let net = network("net1", "198.18.0.0/24");
        let subnet = net.first_subnet();
        let mut taken = Taken::default();
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            Ok([ip("198.18.0.3"), ip("198.18.0.5")].into_iter().collect())
        };
        let mut handed_out = Vec::new();
        for n in 0..4 {
            let next = taken.lowest_free(&net, &subnet, read).unwrap();
            handed_out.push(next);
            taken.hold(&port(&net, next));
            // A port given its address in between: skipped from then on.
            if n == 1 {
                taken.hold(&port(&net, ip("198.18.0.8")));
            }
        }
        assert_eq!(
            handed_out,
            ["198.18.0.4", "198.18.0.6", "198.18.0.7", "198.18.0.9"].map(ip)
        );
        assert_eq!(reads.get(), 1);
        assert!(
            taken
                .ips(&net.id, read)
                .unwrap()
                .contains(&ip("198.18.0.9"))
        );
        assert_eq!(reads.get(), 1);
        // Another network is read on its own, once.
        let other = network("net2", "198.18.0.0/24");
        let first = taken.lowest_free(&other, &subnet, read).unwrap();
        assert_eq!((first, reads.get()), (ip("198.18.0.4"), 2));
    }

    #[test]
    fn an_address_not_yet_held_is_handed_out_again_and_a_full_subnet_is_refused() {
        let net = network("net1", "198.18.0.0/29");
        let subnet = net.first_subnet();
        let mut taken = Taken::default();
        let read = || Ok(HashSet::new());
        // Without its port recorded, the lowest free address is still free.
        assert_eq!(
            taken.lowest_free(&net, &subnet, read).unwrap(),
            ip("198.18.0.3")
        );
        assert_eq!(
            taken.lowest_free(&net, &subnet, read).unwrap(),
            ip("198.18.0.3")
        );
        for last in 3..=6 {
            let next = taken.lowest_free(&net, &subnet, read).unwrap();
            assert_eq!(next, ip(&format!("198.18.0.{last}")));
            taken.hold(&port(&net, next));
        }
        let refused = taken.lowest_free(&net, &subnet, read).unwrap_err();
        assert!(
            refused.to_string().contains("no free address left"),
            "{refused}"
        );
    }
}
