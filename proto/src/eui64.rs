//! A port's IPv6 addresses from its MAC, and its MAC back from an address: the modified EUI-64
//! interface identifier (RFC 4291 appendix A) that a guest's kernel puts after `fe80::/64` for
//! its link-local address and after a `/64` prefix for a SLAAC address. The agent reads a link-local
//! source back to the MAC and finds the port by it, as Neutron's agent does (docs/protocol.md
//! §2.3 step 2); the registry gives a port on a SLAAC subnet the address its guest will make.

use std::net::Ipv6Addr;

/// The prefix of every link-local address (`fe80::/64`) as its first 64 bits.
const LINK_LOCAL_PREFIX: u64 = 0xfe80_0000_0000_0000;
/// The bits of a MAC's first octet flipped in its interface id (universal/local).
const UNIVERSAL_LOCAL_BIT: u8 = 0x02;

/// The modified EUI-64 interface identifier of `mac`: its first three octets (the
/// universal/local bit flipped), `ff:fe`, its last three.
pub fn interface_id(mac: [u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = mac;
    u64::from_be_bytes([a ^ UNIVERSAL_LOCAL_BIT, b, c, 0xff, 0xfe, d, e, f])
}

/// The MAC an interface identifier was made from, when it has the EUI-64 shape (`ff:fe` in
/// the middle); `None` for privacy, stable-privacy or hand-made identifiers.
pub fn mac_of_interface_id(id: u64) -> Option<[u8; 6]> {
    let [a, b, c, ff, fe, d, e, f] = id.to_be_bytes();
    (ff == 0xff && fe == 0xfe).then_some([a ^ UNIVERSAL_LOCAL_BIT, b, c, d, e, f])
}

/// The link-local address a guest's kernel gives the NIC with `mac` (`fe80::/64` + EUI-64).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    with_prefix(LINK_LOCAL_PREFIX, mac)
}

/// The SLAAC address of `mac` in the `/64` whose first 64 bits are those of `prefix`.
pub fn slaac(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let high = (u128::from(prefix) >> 64) as u64;
    with_prefix(high, mac)
}

fn with_prefix(high: u64, mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(high) << 64 | u128::from(interface_id(mac)))
}

/// The MAC behind a link-local source address (`fe80::/64` with an EUI-64 interface id);
/// `None` for any other address.
pub fn mac_of_link_local(ip: Ipv6Addr) -> Option<[u8; 6]> {
    let bits = u128::from(ip);
    if (bits >> 64) as u64 != LINK_LOCAL_PREFIX {
        return None;
    }
    mac_of_interface_id(bits as u64)
}

/// A MAC in the lower-case colon form the registry keeps (`fa:16:3e:00:00:01`).
pub fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Six colon-separated hex octets (either case) as bytes; `None` for anything else.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        // Two hex digits: `from_str_radix` alone would take a sign (`+a`).
        if part.len() != 2 || !part.bytes().all(|digit| digit.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0x12, 0x34, 0x56];

    #[test]
    fn the_link_local_address_is_the_kernels() {
        // What Linux shows for a NIC with MAC fa:16:3e:12:34:56 (`ip -6 addr`, scope link).
        let ip = link_local(MAC);
        assert_eq!(ip.to_string(), "fe80::f816:3eff:fe12:3456");
        assert!(ip.is_unicast_link_local());
        assert_eq!(mac_of_link_local(ip), Some(MAC));
    }

    #[test]
    fn slaac_addresses_keep_the_prefix_and_take_the_mac() {
        let prefix: Ipv6Addr = "fdc6:1200:0:7::".parse().unwrap();
        assert_eq!(
            slaac(prefix, MAC).to_string(),
            "fdc6:1200:0:7:f816:3eff:fe12:3456"
        );
        // Host bits of the prefix do not matter.
        let with_host: Ipv6Addr = "fdc6:1200:0:7::99".parse().unwrap();
        assert_eq!(slaac(with_host, MAC), slaac(prefix, MAC));
    }

    #[test]
    fn only_eui64_link_local_addresses_give_a_mac() {
        for other in [
            // Global, with an EUI-64 interface id: looked up by address, not by MAC.
            "fdc6:1200:0:7:f816:3eff:fe12:3456",
            // Link-local without ff:fe (stable privacy, or hand-made).
            "fe80::1",
            "fe80::a9fe:a9fe",
            "fe80::f816:3eff:fd12:3456",
            // fe80::/10 but outside fe80::/64.
            "fe80:0:0:1:f816:3eff:fe12:3456",
        ] {
            let ip: Ipv6Addr = other.parse().unwrap();
            assert_eq!(mac_of_link_local(ip), None, "{other}");
        }
        // The universal/local bit is flipped both ways.
        let universal = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        assert_eq!(
            link_local(universal).to_string(),
            "fe80::211:22ff:fe33:4455"
        );
        assert_eq!(mac_of_link_local(link_local(universal)), Some(universal));
    }

    #[test]
    fn macs_parse_and_print_in_the_registrys_form() {
        assert_eq!(parse_mac("FA:16:3e:12:34:56"), Some(MAC));
        assert_eq!(mac_text(MAC), "fa:16:3e:12:34:56");
        for bad in [
            "fa:16:3e:12:34",
            "fa:16:3e:12:34:56:78",
            "fa:16:3e:12:34:5",
            "fa:16:3e:12:34:zz",
            "fa-16-3e-12-34-56",
            // A sign is no hex digit, though `from_str_radix` takes one.
            "+a:16:3e:12:34:56",
            "fa:16:3e:12:34:+6",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_mac_round_trips(mac: [u8; 6]) {
            proptest::prop_assert_eq!(mac_of_link_local(link_local(mac)), Some(mac));
            proptest::prop_assert_eq!(mac_of_interface_id(interface_id(mac)), Some(mac));
        }
    }
}
