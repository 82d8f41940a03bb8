//! `qrouter-<router id>`: the router's namespace, its interface on each network (the gateway
//! address; on an IPv6 network also `fe80::a9fe:a9fe`) and Neutron's metadata rules, with
//! iptables for 169.254.169.254 and ip6tables for `fe80::a9fe:a9fe` (docs/protocol.md §2.1).

use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use metaboot_proto::{METADATA_IPV4, METADATA_IPV6, METADATA_PORT, ROUTER_PROXY_PORT};

use crate::lab::{bridge, netns};
use crate::process::check;

/// The packet mark of metadata traffic (Neutron's `metadata_access_mark` and its mask).
pub const METADATA_MARK: &str = "0x1/0xffff";

/// How the name of a router's namespace begins (Neutron's: the router id follows).
pub const NAMESPACE_PREFIX: &str = "qrouter-";

/// How the name of the bridge end of a router interface's veth begins (the network id follows).
pub const BRIDGE_END_PREFIX: &str = "rtr-";

/// The router's namespace.
pub fn namespace(router_id: &str) -> String {
    format!("{NAMESPACE_PREFIX}{router_id}")
}

/// The router's interface on a network, inside its namespace (`qr-` + 11, as Neutron names it).
pub fn interface(network_id: &str) -> String {
    bridge::ifname("qr-", network_id)
}

/// The bridge end of that interface's veth, inside the bridge namespace.
pub fn bridge_end(network_id: &str) -> String {
    bridge::ifname(BRIDGE_END_PREFIX, network_id)
}

/// Neutron's L3-agent metadata rules for one metadata address (169.254.169.254 or
/// `fe80::a9fe:a9fe`), as `iptables` or `ip6tables` argument lists (`-t TABLE -A CHAIN …`).
pub fn metadata_rules(metadata: IpAddr) -> Vec<Vec<String>> {
    let port = ROUTER_PROXY_PORT.to_string();
    let guest_port = METADATA_PORT.to_string();
    let dst = match metadata {
        IpAddr::V4(ip) => format!("{ip}/32"),
        IpAddr::V6(ip) => format!("{ip}/128"),
    };
    let metadata_in = [
        "-d",
        dst.as_str(),
        "-i",
        "qr-+",
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        guest_port.as_str(),
    ];
    let rule = |table: &str, chain: &str, matches: &[&str], target: &[&str]| {
        ["-t", table, "-A", chain]
            .iter()
            .chain(matches)
            .chain(target)
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
    };
    vec![
        // Mark metadata requests arriving on a router interface…
        rule(
            "mangle",
            "PREROUTING",
            &metadata_in,
            &["-j", "MARK", "--set-xmark", METADATA_MARK],
        ),
        // …send them to the proxy…
        rule(
            "nat",
            "PREROUTING",
            &metadata_in,
            &["-j", "REDIRECT", "--to-ports", &port],
        ),
        // …let only marked packets reach it…
        rule(
            "filter",
            "INPUT",
            &["-m", "mark", "--mark", METADATA_MARK],
            &["-j", "ACCEPT"],
        ),
        rule(
            "filter",
            "INPUT",
            &["-p", "tcp", "-m", "tcp", "--dport", &port],
            &["-j", "DROP"],
        ),
        // …and never forward a marked packet.
        rule(
            "filter",
            "FORWARD",
            &["-m", "mark", "--mark", METADATA_MARK],
            &["-j", "DROP"],
        ),
    ]
}

/// Creates the router namespace with forwarding on (both families) and the metadata rules of
/// both addresses installed.
pub fn create(ns: &str) -> anyhow::Result<()> {
    netns::create(ns)?;
    for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        check(netns::exec(ns, "sysctl").args(["-q", "-w", sysctl]))?;
    }
    for (tool, metadata) in [
        ("iptables", IpAddr::V4(METADATA_IPV4)),
        ("ip6tables", IpAddr::V6(METADATA_IPV6)),
    ] {
        for rule in metadata_rules(metadata) {
            check(netns::exec(ns, tool).arg("-w").args(&rule))?;
        }
    }
    Ok(())
}

/// Gives the router an interface on a network: a veth from the network's bridge, with the gateway
/// address. On an IPv6 network the interface also holds `fe80::a9fe:a9fe/64`, which guests
/// reach on the link and the ip6tables REDIRECT sends to the proxy on `[::]:9697`; IPv6
/// addresses go on `nodad` (usable at once, as Neutron adds the metadata address).
pub fn attach(
    bridge_ns: &str,
    bridge: &str,
    ns: &str,
    network_id: &str,
    gateway: &IpNet,
) -> anyhow::Result<()> {
    let inside = interface(network_id);
    bridge::add_veth(bridge_ns, bridge, &bridge_end(network_id), ns, &inside)?;
    match gateway {
        IpNet::V4(_) => {
            netns::ip(ns, &["addr", "add", &gateway.to_string(), "dev", &inside])?;
        }
        IpNet::V6(_) => {
            for address in [gateway.to_string(), format!("{METADATA_IPV6}/64")] {
                netns::ip(ns, &["addr", "add", &address, "dev", &inside, "nodad"])?;
            }
        }
    }
    netns::ip(ns, &["link", "set", &inside, "up"])?;
    Ok(())
}

/// The router's nat table as `iptables -S` prints it (for the lab's status display and tests).
pub fn nat_rules(ns: &str) -> anyhow::Result<String> {
    check(Command::new("ip").args(["netns", "exec", ns, "iptables", "-w", "-t", "nat", "-S"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_neutrons_l3_agent() {
        let rules: Vec<String> = metadata_rules(IpAddr::V4(METADATA_IPV4))
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rules,
            [
                "-t mangle -A PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff",
                "-t nat -A PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697",
                "-t filter -A INPUT -m mark --mark 0x1/0xffff -j ACCEPT",
                "-t filter -A INPUT -p tcp -m tcp --dport 9697 -j DROP",
                "-t filter -A FORWARD -m mark --mark 0x1/0xffff -j DROP",
            ]
        );
        assert_eq!(interface("0123456789abcdef"), "qr-0123456789a");
        let rules: Vec<String> = metadata_rules(IpAddr::V6(METADATA_IPV6))
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rules[..2],
            [
                "-t mangle -A PREROUTING -d fe80::a9fe:a9fe/128 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff",
                "-t nat -A PREROUTING -d fe80::a9fe:a9fe/128 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697",
            ]
        );
        assert_eq!(rules.len(), 5);
    }
}
