//! Networks served on a bridge of the host (`network create --libvirt-network NAME` or
//! `--bridge BR`): libvirt's own network or any bridge whose DHCP server is not Neutron's. No
//! router and no DHCP namespace: metadata is served on the bridge itself, and an instance is
//! known by the MAC of its interface, its address learned from the DHCP server's leases (or
//! fixed with `--ip`).

use std::net::{IpAddr, Ipv4Addr};

use super::error::{StoreError, StoreResult};
use super::fixed_ips::check_free;
use super::model::{HostBridge, LEARNED_IP_BLOCK, Network, NewNetwork};
use super::sql::Sql;
use super::taken::Taken;
use super::{allocate, validate};

/// The longest interface name Linux takes (`IFNAMSIZ` less its terminating NUL).
pub const MAX_BRIDGE_NAME_BYTES: usize = 15;

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// A bridge name Linux accepts: 1 to [`MAX_BRIDGE_NAME_BYTES`] bytes, no `/`, `:`, blanks or
/// control characters, not `.` or `..`.
pub fn bridge_name(name: &str) -> StoreResult<()> {
    let bad = name.is_empty()
        || name.len() > MAX_BRIDGE_NAME_BYTES
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(invalid(format!(
            "bad bridge name {name:?}: give an interface name of 1 to {MAX_BRIDGE_NAME_BYTES} \
             bytes without '/', ':' or blanks (see `ip link show type bridge`)"
        )));
    }
    Ok(())
}

/// The longest name a file takes (Linux's `NAME_MAX`).
const MAX_FILE_NAME_BYTES: usize = 255;

/// The longest suffix libvirt gives a file named after a network (`NAME-radvd.conf`; the
/// others are `NAME.xml`, `NAME.conf`, `NAME.hostsfile`, `NAME.pid`).
const LIBVIRT_LONGEST_FILE_SUFFIX: &str = "-radvd.conf";

/// The longest libvirt network name whose every file fits [`MAX_FILE_NAME_BYTES`].
pub const MAX_LIBVIRT_NETWORK_NAME_BYTES: usize =
    MAX_FILE_NAME_BYTES - LIBVIRT_LONGEST_FILE_SUFFIX.len();

/// A libvirt network name as libvirt takes one, not a display name: not empty, no `/`
/// (libvirt keeps files named after the network, and so does its dnsmasq: `NAME.conf` under
/// the leases directory), at most [`MAX_LIBVIRT_NETWORK_NAME_BYTES`] bytes so those files can
/// be made, and no control character (nothing `virsh net-list` would show).
pub fn libvirt_network_name(name: &str) -> StoreResult<()> {
    let fault = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_LIBVIRT_NETWORK_NAME_BYTES {
        Some(format!(
            "it is {} bytes long, and libvirt's files named after it take at most \
             {MAX_LIBVIRT_NETWORK_NAME_BYTES}",
            name.len()
        ))
    } else if name.contains('/') {
        Some("it contains '/', which libvirt refuses in a network name".to_owned())
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character".to_owned())
    } else {
        None
    };
    match fault {
        Some(fault) => Err(invalid(format!(
            "bad libvirt network name {name:?}: {fault}; give the name `virsh net-list --all` \
             shows"
        ))),
        None => Ok(()),
    }
}

/// `new` (with `host` set) checked and filled in: one IPv4 subnet, no router, the gateway
/// being the bridge's own address (libvirt's `<ip address=…>`, the first host address unless
/// `--gateway` says otherwise), which is also where its DHCP server answers.
pub fn filled_host_network(new: &NewNetwork, host: &HostBridge) -> StoreResult<NewNetwork> {
    match host {
        HostBridge::LibvirtNetwork(name) => libvirt_network_name(name)?,
        HostBridge::Bridge(name) => bridge_name(name)?,
    }
    let what = host.describe();
    if !new.cidr.addr().is_ipv4() || new.second_subnet.is_some() {
        return Err(invalid(format!(
            "a network on a {what} has one IPv4 subnet: give one IPv4 --cidr (IPv6 is not \
             served on host bridges yet)"
        )));
    }
    if let Some(mode) = new.ipv6_address_mode {
        return Err(invalid(format!(
            "IPv6 address mode {} needs an IPv6 subnet, and a network on a {what} has one IPv4 \
             subnet (IPv6 is not served on host bridges yet): drop --ipv6-address-mode",
            mode.as_str()
        )));
    }
    if new.isolated {
        return Err(invalid(format!(
            "--isolated and the {what} contradict each other: a network on a host bridge has \
             no DHCP namespace; drop --isolated"
        )));
    }
    if new.dhcp_ip.is_some() {
        return Err(invalid(format!(
            "a network on a {what} has no DHCP port: its DHCP server answers on the bridge's \
             address (--gateway); drop --dhcp-ip"
        )));
    }
    validate::cidr(new.cidr)?;
    let (gateway, _) = allocate::network_addresses(new.cidr, new.gateway, None);
    let filled = NewNetwork {
        gateway: Some(gateway),
        dhcp_ip: (!new.no_dhcp).then_some(gateway),
        ..new.clone()
    };
    // `validate::new_network` refuses a DHCP address equal to the gateway, which is what a
    // host bridge has: check it with the gateway alone.
    validate::new_network(&NewNetwork {
        dhcp_ip: None,
        ..filled.clone()
    })?;
    Ok(filled)
}

/// Refuses a second network on the same libvirt network or bridge: the metadata address and
/// its listener on a bridge can stand for one network only, so the guests of the second would
/// be looked up on the first and answered 404. In the write transaction, so two CLIs racing
/// cannot both pass.
pub fn check_bridge_free(sql: &mut dyn Sql, host: &HostBridge) -> StoreResult<()> {
    let taken = sql
        .networks()?
        .into_iter()
        .find(|network| network.host.as_ref() == Some(host));
    match taken {
        Some(network) => Err(StoreError::Conflict(format!(
            "network {} is already served on the {}: one network per bridge (metadata is \
             served there for one network); add the instances to {} or delete it first",
            network.name,
            host.describe(),
            network.name
        ))),
        None => Ok(()),
    }
}

/// A port's address on a host network: the one given (checked as any fixed address), else a
/// placeholder from [`LEARNED_IP_BLOCK`] free on the network, which says "learned from the
/// leases". A port there needs its MAC: that is how the instance is known.
pub fn host_port_ip(
    sql: &mut dyn Sql,
    taken: &mut Taken,
    network: &Network,
    host: &HostBridge,
    given: &[IpAddr],
    mac: Option<&str>,
) -> StoreResult<IpAddr> {
    if mac.is_none() {
        return Err(invalid(format!(
            "network {} is served on the {}, where instances are known by MAC: pass --mac \
             with the MAC of the guest's interface (virt-install --network \
             network=NAME,mac=52:54:00:…)",
            network.name,
            host.describe()
        )));
    }
    match given {
        [] if !network.has_dhcp() => Err(invalid(format!(
            "network {} has no DHCP server, so no lease to learn an address from: give the \
             instance its address with --ip",
            network.name
        ))),
        [] => {
            // A host network has one subnet: its ports' addresses are their first ones.
            let taken = taken.ips(&network.id, || sql.network_ips(&network.id))?;
            let size = 1u32 << (32 - u32::from(LEARNED_IP_BLOCK.prefix_len()));
            let free = (1..size)
                .map(|n| IpAddr::V4(Ipv4Addr::from(u32::from(LEARNED_IP_BLOCK.network()) + n)))
                .find(|ip| !taken.contains(ip));
            free.ok_or_else(|| {
                StoreError::Conflict(format!(
                    "network {} has no room for more ports",
                    network.name
                ))
            })
        }
        [ip] => {
            check_free(sql, network, &network.first_subnet(), *ip)?;
            Ok(*ip)
        }
        _ => Err(invalid(format!(
            "network {} has one IPv4 subnet: give at most one --ip",
            network.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_follow_linux_rules() {
        for good in ["virbr0", "br-lab", "a", "bridge_name_15b"] {
            assert!(bridge_name(good).is_ok(), "{good}");
        }
        assert_eq!("bridge_name_15b".len(), MAX_BRIDGE_NAME_BYTES);
        for bad in ["", "bridge_name_16by", "br/0", "br 0", "br:0", ".", ".."] {
            let err = bridge_name(bad).unwrap_err().to_string();
            assert!(err.contains("bad bridge name"), "{bad}: {err}");
        }
    }

    #[test]
    fn libvirt_network_names_are_checked_as_libvirt_names_them() {
        assert_eq!(MAX_LIBVIRT_NETWORK_NAME_BYTES, 244);
        // What libvirt takes, though nova would refuse it as a server's display name.
        let longest = "n".repeat(MAX_LIBVIRT_NETWORK_NAME_BYTES);
        for good in [
            "default",
            "lab net",
            " padded ",
            "net\u{200b}zw",
            "🦀",
            &longest,
        ] {
            assert!(libvirt_network_name(good).is_ok(), "{good:?}");
        }
        let too_long = "n".repeat(MAX_LIBVIRT_NETWORK_NAME_BYTES + 1);
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "'/'"),
            (too_long.as_str(), "245 bytes long"),
            ("a\nb", "control character"),
        ] {
            let err = libvirt_network_name(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("bad libvirt network name") && err.contains(why),
                "{bad:?}: {err}"
            );
            assert!(err.contains("virsh net-list --all"), "{err}");
            assert!(!err.contains("nova"), "{err}");
        }
    }
}
