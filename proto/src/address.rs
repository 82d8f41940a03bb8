//! Where guests find the metadata service: the well-known link-local addresses, the port they
//! call, and the port router proxies listen on behind Neutron's REDIRECT (docs/protocol.md
//! §2.1). The server, the guest agent, the lab and the tests all take them from here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The metadata service's IPv4 address (neutron-lib `METADATA_V4_IP`), a `/32` on the DHCP
/// port or the target of the router's REDIRECT.
pub const METADATA_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The metadata service's IPv6 address (neutron-lib `METADATA_V6_IP`): link-local, so a guest
/// names its interface as a zone (`http://[fe80::a9fe:a9fe%25eth0]/`).
pub const METADATA_IPV6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe);
/// Both addresses, IPv4 first.
pub const METADATA_ADDRESSES: [IpAddr; 2] = [IpAddr::V4(METADATA_IPV4), IpAddr::V6(METADATA_IPV6)];
/// The port guests call on the metadata address.
pub const METADATA_PORT: u16 = 80;
/// The port a router namespace's proxy listens on: the REDIRECT target of guests' port 80
/// (Neutron's `metadata_port`).
pub const ROUTER_PROXY_PORT: u16 = 9697;
/// The URL a guest asks by default: the IPv4 address on port 80 (`METADATA_IPV4` and
/// `METADATA_PORT` written out, as a guest's configuration spells it).
pub const METADATA_URL: &str = "http://169.254.169.254";
/// The IPv6 address's URL without its zone: a guest names the interface it calls from
/// (`http://[fe80::a9fe:a9fe%25eth0]`), as a link-local address needs one.
pub const METADATA_URL_IPV6: &str = "http://[fe80::a9fe:a9fe]";
/// The URLs a guest tries, in order (cloud-init's `metadata_urls`): IPv4, then IPv6.
pub const METADATA_URLS: [&str; 2] = [METADATA_URL, METADATA_URL_IPV6];

/// `METADATA_IPV4:METADATA_PORT`, where a DHCP namespace's proxy listens.
pub const METADATA_IPV4_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(METADATA_IPV4), METADATA_PORT);
/// `[METADATA_IPV6]:METADATA_PORT`, where a DHCP namespace's proxy listens too, scoped to the
/// interface that holds the address (no scope here: the server finds it in the namespace).
pub const METADATA_IPV6_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V6(METADATA_IPV6), METADATA_PORT);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addresses_are_neutrons() {
        assert_eq!(METADATA_IPV4.to_string(), "169.254.169.254");
        assert_eq!(METADATA_IPV6.to_string(), "fe80::a9fe:a9fe");
        assert!(METADATA_IPV4.is_link_local());
        assert!(METADATA_IPV6.is_unicast_link_local());
        assert_eq!(METADATA_IPV4_LISTEN.to_string(), "169.254.169.254:80");
        assert_eq!(METADATA_IPV6_LISTEN.to_string(), "[fe80::a9fe:a9fe]:80");
    }

    #[test]
    fn the_default_url_names_the_ipv4_address_on_the_metadata_port() {
        let host = METADATA_URL.strip_prefix("http://").unwrap();
        assert_eq!(host.parse::<IpAddr>().unwrap(), IpAddr::V4(METADATA_IPV4));
        // Port 80 is http's own, so the URL leaves it out.
        assert_eq!(METADATA_PORT, 80);
        let host = METADATA_URL_IPV6.strip_prefix("http://[").unwrap();
        let host = host.strip_suffix(']').unwrap();
        assert_eq!(host.parse::<IpAddr>().unwrap(), IpAddr::V6(METADATA_IPV6));
        assert_eq!(METADATA_URLS, [METADATA_URL, METADATA_URL_IPV6]);
    }
}
