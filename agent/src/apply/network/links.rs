//! The system's network interfaces as the network apply sees them (read through
//! `crate::sys_net`): their names and MACs (to name a plan's interfaces, also by a pattern such
//! as `en*`), and whether a link is already up, has a given MTU (so that applying a plan
//! changes only what differs), or holds an address (a DHCP link a renderer leaves running).

use std::net::IpAddr;

use super::plan::{Address, Interface};
use crate::root::Root;
use crate::sys_net::{attribute, has_entry, interface_names};

/// The interfaces of the system that a plan's interface can be: `(name, MAC)` from
/// `<root>/sys/class/net/*/address`, by name, without bridges, bonds and VLANs. Each of those
/// takes the MAC of a NIC under it (and a bridge or bond sorts before `ens3`), so matching by
/// MAC would give it the NIC's configuration; a plan configures physical NICs only (bonds,
/// bridges and VLANs are left out). cloud-init's `get_interfaces_by_mac` skips them too.
pub fn system_links(root: &Root) -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = interface_names(root)
        .into_iter()
        .filter(|name| !is_virtual(root, name))
        .filter_map(|name| {
            let mac = attribute(root, &name, "address")?;
            Some((name, mac.to_ascii_lowercase()))
        })
        .collect();
    links.sort_unstable();
    links
}

/// What a VLAN's `uevent` says of its type.
const VLAN_DEVTYPE: &str = "DEVTYPE=vlan";

/// Whether interface `name` is a bridge (`bridge/`), a bond (`bonding/`) or a VLAN (`uevent`
/// says `DEVTYPE=vlan`), as cloud-init's `is_bridge`, `is_bond` and `is_vlan` tell.
fn is_virtual(root: &Root, name: &str) -> bool {
    has_entry(root, name, "bridge")
        || has_entry(root, name, "bonding")
        || attribute(root, name, "uevent")
            .is_some_and(|uevent| uevent.lines().any(|line| line.trim() == VLAN_DEVTYPE))
}

/// The name of `interface`'s own link when it is there (`<root>/sys/class/net/NAME/mtu`), for
/// a change made at once. Not for one whose MAC no NIC has ([`Interface::system_mac`] `None`):
/// the name it keeps is the document's, no link of this system, or another NIC's (`eth0` under
/// `net.ifnames=0`); nor a link that is not there (a name the document gave): its file applies
/// when it comes.
pub fn own_link<'a>(root: &Root, interface: &'a Interface) -> Option<&'a str> {
    let name = interface.name.as_deref()?;
    let foreign = interface.mac.is_some() && interface.system_mac.is_none();
    (!foreign && link_mtu(root, name).is_some()).then_some(name)
}

/// `IFF_UP` of an interface's `flags` (linux/if.h).
const IFF_UP: u64 = 0x1;

/// Whether the link `name` is up already, with `mtu` when one is wanted, as
/// `<root>/sys/class/net/NAME/{flags,mtu}` say (unreadable: not in place).
pub fn link_in_place(root: &Root, name: &str, mtu: Option<u32>) -> bool {
    let up = attribute(root, name, "flags")
        .and_then(|flags| u64::from_str_radix(flags.trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & IFF_UP != 0);
    up && mtu.is_none_or(|mtu| mtu_in_place(root, name, mtu))
}

/// Whether the link `name` has the MTU `mtu` already, as `<root>/sys/class/net/NAME/mtu` says
/// (unreadable: not in place).
pub fn mtu_in_place(root: &Root, name: &str, mtu: u32) -> bool {
    link_mtu(root, name) == Some(mtu)
}

/// The MTU of the link `name`, as `<root>/sys/class/net/NAME/mtu` says; `None` when unreadable
/// (no such link).
pub fn link_mtu(root: &Root, name: &str) -> Option<u32> {
    attribute(root, name, "mtu").and_then(|m| m.parse().ok())
}

/// The kernel's IPv6 addresses, one a line: address, link index, prefix length, scope, flags
/// (hexadecimal) and the link's name.
pub const IPV6_ADDRESSES: &str = "/proc/net/if_inet6";
/// The scope of a global IPv6 address in [`IPV6_ADDRESSES`] (`IPV6_ADDR_SCOPE_GLOBAL`); a
/// link-local one (`20`) is every up link's.
const GLOBAL_SCOPE: &str = "00";
/// The IPv4 routes of the main table, a header line and then one a line, the link's name first.
/// The kernel lists no link's IPv4 addresses under `/proc`; each address adds its subnet's route
/// to this table (a `/32` lease comes with its DHCP client's route to the gateway), so a link
/// with a route here holds an IPv4 address.
pub const IPV4_ROUTES: &str = "/proc/net/route";

/// Whether the link `name` holds an address now (`<root>/proc/net/if_inet6` lists a global
/// IPv6 address of it, or `<root>/proc/net/route` an IPv4 route on it): a DHCP lease or router
/// advertisements configured it. Unreadable (no `/proc`, over the read limit): held, so that a
/// running lease is never restarted on no evidence; a missing `if_inet6` beside a readable
/// route table is a kernel without IPv6.
pub fn holds_address(root: &Root, name: &str) -> bool {
    let Ok(Some(routes)) = root.read_optional_string(IPV4_ROUTES) else {
        return true;
    };
    let Ok(ipv6) = root.read_optional_string(IPV6_ADDRESSES) else {
        return true;
    };
    let ipv6 = ipv6_entries(&ipv6.unwrap_or_default())
        .any(|[_, _, _, scope, _, link]| scope == GLOBAL_SCOPE && link == name);
    ipv6 || routes
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().next() == Some(name))
}

/// The entries of [`IPV6_ADDRESSES`]' text `table`, their six fields each.
fn ipv6_entries(table: &str) -> impl Iterator<Item = [&str; 6]> {
    table.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        <[&str; 6]>::try_from(fields).ok()
    })
}

/// The flag of an IPv6 address (the fifth field of [`IPV6_ADDRESSES`]) whose duplicate address
/// detection failed: listed, but not the link's to use (`ifup` fails on it).
pub const IFA_F_DADFAILED: u32 = 0x08;

/// The kernel's IPv4 routing tables as a trie: each address of the system is a leaf (`|-- IP`)
/// followed by a `/32 host LOCAL` line.
pub const IPV4_TRIE: &str = "/proc/net/fib_trie";

/// Whether the link `name` holds one of `addresses` now: an IPv6 one as [`IPV6_ADDRESSES`] lists it
/// on the link (but for one whose duplicate address detection failed), an IPv4 one as [`IPV4_TRIE`]
/// lists it as the system's (the kernel names no link of an IPv4 address under `/proc`). A table
/// that cannot be read: held, so that nothing is undone on no evidence.
pub fn holds_one_of(root: &Root, name: &str, addresses: &[Address]) -> bool {
    addresses.iter().any(|address| match address.ip {
        IpAddr::V6(ip) => match root.read_optional_string(IPV6_ADDRESSES) {
            Ok(table) => {
                let hex = format!("{:032x}", u128::from(ip));
                ipv6_entries(&table.unwrap_or_default()).any(|[address, _, _, _, flags, link]| {
                    address == hex
                        && link == name
                        && u32::from_str_radix(flags, 16)
                            .is_ok_and(|flags| flags & IFA_F_DADFAILED == 0)
                })
            }
            Err(_) => true,
        },
        IpAddr::V4(ip) => {
            let Ok(Some(trie)) = root.read_optional_string(IPV4_TRIE) else {
                return true;
            };
            let mut leaf = None;
            trie.lines().map(str::trim).any(|line| {
                if let Some(found) = line.strip_prefix("|-- ") {
                    leaf = found.parse().ok();
                }
                line.starts_with("/32 host LOCAL") && leaf == Some(ip)
            })
        }
    })
}

/// Whether `name` matches `pattern`: `*` any run of characters, `?` any one, anything else
/// itself (netplan's `match: name:` globs, without `[…]`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    // The classic backtracking match: on a mismatch, let the last `*` take one more byte.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}
