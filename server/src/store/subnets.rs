//! A new network's subnets as the registry keeps them: one or two, at most one per family (a
//! dual-stack network has an IPv4 and an IPv6 subnet, as Neutron's network with two subnets),
//! the IPv4 one first, each with its gateway and DHCP address (given, else the first free host
//! addresses); and the rules of the IPv6 address mode.

use ipnet::IpNet;

use super::error::{StoreError, StoreResult};
use super::model::{NewNetwork, Subnet};
use super::{allocate, validate};

/// The prefix length of an IPv6 subnet whose guests make their own address (SLAAC, RFC 4862
/// with a 64-bit EUI-64 interface id); Neutron refuses other lengths in those modes.
pub const EUI64_PREFIX_LEN: u8 = 64;

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

fn family(cidr: IpNet) -> &'static str {
    match cidr {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

/// `new` checked, its subnets in the registry's order and with their addresses filled in.
pub fn filled_network(new: &NewNetwork) -> StoreResult<NewNetwork> {
    validate::cidr(new.cidr)?;
    let given = Subnet {
        cidr: new.cidr,
        gateway: new.gateway,
        dhcp_ip: new.dhcp_ip,
    };
    let (first, second) = match new.second_subnet {
        None => (given, None),
        Some(other) => {
            validate::cidr(other.cidr)?;
            if family(other.cidr) == family(given.cidr) {
                return Err(invalid(format!(
                    "{} and {} are both {}: a network has at most one subnet per family (one \
                     IPv4, one IPv6); make another network for the second one",
                    given.cidr,
                    other.cidr,
                    family(given.cidr)
                )));
            }
            // The IPv4 subnet first, as nova lists a port's subnets in network_data.json.
            if given.cidr.addr().is_ipv6() {
                (other, Some(given))
            } else {
                (given, Some(other))
            }
        }
    };
    let checked = NewNetwork {
        dhcp_ip: first.dhcp_ip.or(second.and_then(|s| s.dhcp_ip)),
        ..new.clone()
    };
    validate::dhcp_choice(&checked)?;
    address_mode(new, first, second)?;
    let fill = |subnet: Subnet| {
        let (gateway, dhcp_ip) =
            allocate::network_addresses(subnet.cidr, subnet.gateway, subnet.dhcp_ip);
        Subnet {
            cidr: subnet.cidr,
            gateway: Some(gateway),
            // Without DHCP there is no DHCP port, and so no address kept for one.
            dhcp_ip: (!new.no_dhcp).then_some(dhcp_ip),
        }
    };
    let first = fill(first);
    let second = second.map(fill);
    let filled = NewNetwork {
        cidr: first.cidr,
        gateway: first.gateway,
        dhcp_ip: first.dhcp_ip,
        second_subnet: second,
        ..new.clone()
    };
    validate::new_network(&filled)?;
    if let Some(second) = second {
        subnet_addresses(&filled.name, second)?;
    }
    Ok(filled)
}

/// The gateway and DHCP address of a second subnet are host addresses of it, and differ.
fn subnet_addresses(name: &str, subnet: Subnet) -> StoreResult<()> {
    let label = format!("{name:?}");
    if let Some(gateway) = subnet.gateway {
        validate::host_ip("gateway", gateway, &label, subnet.cidr)?;
    }
    if let Some(dhcp_ip) = subnet.dhcp_ip {
        validate::host_ip("DHCP address", dhcp_ip, &label, subnet.cidr)?;
    }
    if subnet.gateway.is_some() && subnet.gateway == subnet.dhcp_ip {
        return Err(invalid(format!(
            "gateway and DHCP address of {} are the same address: give them different ones",
            subnet.cidr
        )));
    }
    Ok(())
}

/// An IPv6 address mode needs an IPv6 subnet and DHCP (Neutron refuses it with
/// `enable_dhcp: false`); the modes whose guests make their own address need a /64.
fn address_mode(new: &NewNetwork, first: Subnet, second: Option<Subnet>) -> StoreResult<()> {
    let Some(mode) = new.ipv6_address_mode else {
        return Ok(());
    };
    let Some(v6) = [Some(first), second]
        .into_iter()
        .flatten()
        .find(|subnet| subnet.cidr.addr().is_ipv6())
    else {
        return Err(invalid(format!(
            "IPv6 address mode {} needs an IPv6 subnet: add one (a second --cidr with an IPv6 \
             prefix) or drop the mode",
            mode.as_str()
        )));
    };
    if new.no_dhcp {
        return Err(invalid(format!(
            "IPv6 address mode {} and --no-dhcp contradict each other: the modes say how DHCP \
             and router advertisements configure guests; drop one of them",
            mode.as_str()
        )));
    }
    if mode.is_eui64() && v6.cidr.prefix_len() != EUI64_PREFIX_LEN {
        return Err(invalid(format!(
            "IPv6 address mode {} needs a /{EUI64_PREFIX_LEN} (guests append a 64-bit \
             interface id to the prefix): {} is a /{}",
            mode.as_str(),
            v6.cidr,
            v6.cidr.prefix_len()
        )));
    }
    Ok(())
}
