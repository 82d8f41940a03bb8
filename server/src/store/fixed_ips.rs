//! A new port's fixed addresses, one per subnet of its network (Neutron's `fixed_ips`): the
//! addresses given are matched to the subnet of their family and checked (inside it, not the
//! gateway or the DHCP port, not another port's); a subnet without one gets the lowest free
//! host address, except an IPv6 subnet in `slaac` or `dhcpv6-stateless` mode, where the
//! address is the one the guest makes itself from the prefix and its MAC (EUI-64), as Neutron
//! allocates it.

use std::net::IpAddr;

use metaboot_proto::eui64;

use super::error::{StoreError, StoreResult};
use super::model::{Network, Port, Subnet};
use super::sql::Sql;
use super::taken::Taken;
use super::validate;

/// "port ID (198.18.0.3, instance web)", for messages that name an existing port.
pub fn describe_port(sql: &mut dyn Sql, port: &Port) -> StoreResult<String> {
    let owner = match sql.instance(&port.instance_id)? {
        Some(instance) => format!("instance {}", instance.name),
        None => format!("instance {}", port.instance_id),
    };
    let ips = port.shown_ips();
    Ok(format!("port {} ({}, {owner})", port.id, ips.join(", ")))
}

/// The given addresses by subnet: `[first subnet's, second subnet's]`.
fn by_subnet(network: &Network, given: &[IpAddr]) -> StoreResult<[Option<IpAddr>; 2]> {
    let mut placed = [None, None];
    for &ip in given {
        let index = network
            .subnets()
            .position(|subnet| subnet.cidr.addr().is_ipv4() == ip.is_ipv4())
            .ok_or_else(|| {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                StoreError::Invalid(format!(
                    "IP {ip} is {family}, but network {} has no {family} subnet ({}): give an \
                     address in it or omit the IP",
                    network.name,
                    network.cidrs()
                ))
            })?;
        if let Some(other) = placed[index] {
            return Err(StoreError::Invalid(format!(
                "IPs {other} and {ip} are both for the {} subnet of network {}: a port has one \
                 address per subnet",
                network
                    .subnets()
                    .nth(index)
                    .map_or(network.cidr, |s| s.cidr),
                network.name
            )));
        }
        placed[index] = Some(ip);
    }
    Ok(placed)
}

/// The port's addresses on `network` (`(first subnet's, second subnet's)`), for a port with
/// `mac`; `given` are the addresses asked for (at most one per subnet), the others allocated
/// around what `taken` knows of the network.
pub fn fixed_ips(
    sql: &mut dyn Sql,
    taken: &mut Taken,
    network: &Network,
    given: &[IpAddr],
    mac: &str,
) -> StoreResult<(IpAddr, Option<IpAddr>)> {
    let placed = by_subnet(network, given)?;
    let mut chosen = [None, None];
    for (index, subnet) in network.subnets().enumerate() {
        let eui64 = subnet.cidr.addr().is_ipv6()
            && network
                .ipv6_address_mode
                .is_some_and(|mode| mode.is_eui64());
        let ip = if eui64 {
            let made = slaac_address(network, &subnet, mac)?;
            if let Some(asked) = placed[index]
                && asked != made
            {
                return Err(StoreError::Invalid(format!(
                    "IP {asked}: the IPv6 subnet {} of network {} is in {} mode, where a \
                     port's address is the one its guest makes from the prefix and its MAC \
                     ({made}); omit the IPv6 address",
                    subnet.cidr,
                    network.name,
                    network
                        .ipv6_address_mode
                        .map_or("slaac", |mode| mode.as_str())
                )));
            }
            check_free(sql, network, &subnet, made)?;
            made
        } else if let Some(asked) = placed[index] {
            check_free(sql, network, &subnet, asked)?;
            asked
        } else {
            taken.lowest_free(network, &subnet, || sql.network_ips(&network.id))?
        };
        chosen[index] = Some(ip);
    }
    let first = chosen[0]
        .ok_or_else(|| StoreError::Backend(format!("network {} has no subnet", network.name)))?;
    Ok((first, chosen[1]))
}

/// The EUI-64 address of `mac` on an IPv6 subnet (which must be a /64).
fn slaac_address(network: &Network, subnet: &Subnet, mac: &str) -> StoreResult<IpAddr> {
    let (IpAddr::V6(prefix), Some(mac)) = (subnet.cidr.addr(), eui64::parse_mac(mac)) else {
        return Err(StoreError::Backend(format!(
            "no EUI-64 address for MAC {mac} on {} of network {}",
            subnet.cidr, network.name
        )));
    };
    Ok(IpAddr::V6(eui64::slaac(prefix, mac)))
}

/// `ip` may be given to a new port on `subnet`: a host address of it, not the gateway nor the
/// DHCP port, not held by another port on the network.
pub(super) fn check_free(
    sql: &mut dyn Sql,
    network: &Network,
    subnet: &Subnet,
    ip: IpAddr,
) -> StoreResult<()> {
    validate::host_ip("IP", ip, &network.name, subnet.cidr)?;
    let role = if Some(ip) == subnet.gateway {
        Some("gateway")
    } else if Some(ip) == subnet.dhcp_ip {
        Some("DHCP address")
    } else {
        None
    };
    if let Some(role) = role {
        return Err(StoreError::Conflict(format!(
            "IP {ip} is the {role} of network {}: pick another address or omit the IP to get \
             a free one",
            network.name
        )));
    }
    let on_network = std::slice::from_ref(&network.id);
    if let Some(other) = sql.ports_with_ip(ip, Some(on_network))?.first() {
        let other = describe_port(sql, other)?;
        return Err(StoreError::Conflict(format!(
            "IP {ip} is already used on network {} by {other}: pick another address or omit \
             the IP to get a free one",
            network.name
        )));
    }
    Ok(())
}
