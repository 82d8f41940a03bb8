//! Address allocation: a subnet's default gateway and DHCP address, the lowest free host IP
//! of a subnet for a port, and random `fa:16:3e` MACs.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::error::{StoreError, StoreResult};
use super::model::Subnet;

/// The OpenStack MAC prefix (neutron's default `base_mac`), so lab MACs look like cloud MACs.
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];
/// Random MACs tried before giving up; with 2^24 addresses a collision run this long means
/// the prefix is nearly exhausted.
pub const MAX_MAC_ATTEMPTS: usize = 32;

/// An address as a number, so IPv4 and IPv6 ranges share one loop.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `net`'s family with value `value`.
pub fn ip_from_u128(net: IpNet, value: u128) -> IpAddr {
    match net {
        // IPv4 values come from IPv4 networks, so they fit in 32 bits; the mask says so.
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from((value & 0xffff_ffff) as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// First and last host address of `net` as numbers. The network address (IPv6: the
/// subnet-router anycast address) is never handed out, nor an IPv4 broadcast address; IPv6 has
/// no broadcast, so its all-ones address is a host, as in neutron's allocation pools.
pub fn host_range(net: IpNet) -> (u128, u128) {
    let network = ip_to_u128(net.network());
    let last = ip_to_u128(net.broadcast());
    let last = match net {
        IpNet::V4(_) => last.saturating_sub(1),
        IpNet::V6(_) => last,
    };
    (network.saturating_add(1), last)
}

/// The gateway and DHCP address of a new network: what was given, else the first host
/// address for the gateway and the next free one for the DHCP port, so a lab can rely on
/// `.1` being the router and `.2` the DHCP server.
pub fn network_addresses(
    cidr: IpNet,
    gateway: Option<IpAddr>,
    dhcp_ip: Option<IpAddr>,
) -> (IpAddr, IpAddr) {
    let (first, _) = host_range(cidr);
    let nth = |n: u128| ip_from_u128(cidr, first + n);
    let gateway = gateway.unwrap_or_else(|| {
        if dhcp_ip == Some(nth(0)) {
            nth(1)
        } else {
            nth(0)
        }
    });
    let dhcp_ip = dhcp_ip.unwrap_or_else(|| if gateway == nth(0) { nth(1) } else { nth(0) });
    (gateway, dhcp_ip)
}

/// The lowest host address of `subnet` (of network `name`) that is neither its gateway, its
/// DHCP address nor in `taken`, looked for from the address of value `from` up (the caller
/// knows none below it is free; 0 looks from the first host address).
pub fn lowest_free_ip(
    name: &str,
    subnet: &Subnet,
    taken: &HashSet<IpAddr>,
    from: u128,
) -> StoreResult<IpAddr> {
    let (first, last) = host_range(subnet.cidr);
    // At most taken + 2 addresses are skipped, so this ends quickly even on a /8.
    let mut value = first.max(from);
    while value <= last {
        let ip = ip_from_u128(subnet.cidr, value);
        if Some(ip) != subnet.gateway && Some(ip) != subnet.dhcp_ip && !taken.contains(&ip) {
            return Ok(ip);
        }
        value += 1;
    }
    Err(StoreError::Conflict(format!(
        "network {name} ({}) has no free address left: delete a port or instance on it, or use \
         a larger network",
        subnet.cidr
    )))
}

/// A random MAC under [`MAC_PREFIX`], lower-case colon form.
pub fn random_mac() -> String {
    let tail: [u8; 3] = rand::random();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2], tail[0], tail[1], tail[2]
    )
}

/// A random MAC that `in_use` says is free; gives up after [`MAX_MAC_ATTEMPTS`].
pub fn free_mac(mut in_use: impl FnMut(&str) -> StoreResult<bool>) -> StoreResult<String> {
    for _ in 0..MAX_MAC_ATTEMPTS {
        let mac = random_mac();
        if !in_use(&mac)? {
            return Ok(mac);
        }
    }
    Err(StoreError::Conflict(format!(
        "no free MAC found under {:02x}:{:02x}:{:02x} after {MAX_MAC_ATTEMPTS} tries: give one \
         with --mac",
        MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidr: &str) -> Subnet {
        let cidr: IpNet = cidr.parse().unwrap();
        let (gateway, dhcp_ip) = network_addresses(cidr, None, None);
        Subnet {
            cidr,
            gateway: Some(gateway),
            dhcp_ip: Some(dhcp_ip),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_are_first_and_second_host() {
        let cidr: IpNet = "198.18.0.0/24".parse().unwrap();
        assert_eq!(
            network_addresses(cidr, None, None),
            (ip("198.18.0.1"), ip("198.18.0.2"))
        );
        // A given DHCP address on .1 moves the default gateway, and the other way round.
        assert_eq!(
            network_addresses(cidr, None, Some(ip("198.18.0.1"))),
            (ip("198.18.0.2"), ip("198.18.0.1"))
        );
        assert_eq!(
            network_addresses(cidr, Some(ip("198.18.0.9")), None),
            (ip("198.18.0.9"), ip("198.18.0.1"))
        );
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(
            network_addresses(v6, None, None),
            (ip("fd00::1"), ip("fd00::2"))
        );
    }

    #[test]
    fn allocation_skips_gateway_dhcp_and_taken() {
        let net = network("198.18.0.0/24");
        let mut taken = HashSet::new();
        assert_eq!(
            lowest_free_ip("net1", &net, &taken, 0).unwrap(),
            ip("198.18.0.3")
        );
        taken.insert(ip("198.18.0.3"));
        taken.insert(ip("198.18.0.5"));
        assert_eq!(
            lowest_free_ip("net1", &net, &taken, 0).unwrap(),
            ip("198.18.0.4")
        );
        taken.insert(ip("198.18.0.4"));
        assert_eq!(
            lowest_free_ip("net1", &net, &taken, 0).unwrap(),
            ip("198.18.0.6")
        );
        // Looked for from a given address up.
        let from = ip_to_u128(ip("198.18.0.7"));
        assert_eq!(
            lowest_free_ip("net1", &net, &taken, from).unwrap(),
            ip("198.18.0.7")
        );
    }

    #[test]
    fn full_network_is_a_conflict() {
        let net = network("198.18.0.0/29");
        let taken: HashSet<IpAddr> = (3..=6).map(|i| ip(&format!("198.18.0.{i}"))).collect();
        match lowest_free_ip("net1", &net, &taken, 0) {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("no free address"), "{msg}"),
            other => panic!("expected Conflict, got {other:?}"),
        }
    }

    #[test]
    fn an_ipv6_network_hands_out_its_last_address_and_ipv4_keeps_its_broadcast() {
        let v6 = network("fd00::/125");
        let taken: HashSet<IpAddr> = (3..=6).map(|i| ip(&format!("fd00::{i}"))).collect();
        assert_eq!(
            lowest_free_ip("net6", &v6, &taken, 0).unwrap(),
            ip("fd00::7")
        );
        let v4 = network("198.18.0.0/29");
        let taken: HashSet<IpAddr> = (3..=6).map(|i| ip(&format!("198.18.0.{i}"))).collect();
        assert!(lowest_free_ip("net4", &v4, &taken, 0).is_err());
    }

    #[test]
    fn macs_have_the_openstack_prefix_and_retry() {
        let mac = random_mac();
        assert!(mac.starts_with("fa:16:3e:"), "{mac}");
        assert_eq!(mac.len(), 17);
        let mut calls = 0;
        let mac = free_mac(|_| {
            calls += 1;
            Ok(calls < 3)
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert!(mac.starts_with("fa:16:3e:"));
        assert!(matches!(
            free_mac(|_| Ok(true)),
            Err(StoreError::Conflict(_))
        ));
    }
}
