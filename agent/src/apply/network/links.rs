//! The system's network interfaces as the network apply sees them (read through
//! `crate::sys_net`): their names and MACs (to name a plan's interfaces, also by a pattern such
//! as `en*`), and whether a link is already up with a given MTU (so that applying a plan
//! changes only what differs).

use crate::root::Root;
use crate::sys_net::{attribute, interface_names};

/// The interfaces of the system: `(name, MAC)` from `<root>/sys/class/net/*/address`.
pub fn system_links(root: &Root) -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = interface_names(root)
        .into_iter()
        .filter_map(|name| {
            let mac = attribute(root, &name, "address")?;
            Some((name, mac.to_ascii_lowercase()))
        })
        .collect();
    links.sort_unstable();
    links
}

/// `IFF_UP` of an interface's `flags` (linux/if.h).
const IFF_UP: u64 = 0x1;

/// Whether the link `name` is up already, with `mtu` when one is wanted, as
/// `<root>/sys/class/net/NAME/{flags,mtu}` say (unreadable: not in place).
pub fn link_in_place(root: &Root, name: &str, mtu: Option<u32>) -> bool {
    let up = attribute(root, name, "flags")
        .and_then(|flags| u64::from_str_radix(flags.trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & IFF_UP != 0);
    up && mtu
        .is_none_or(|mtu| attribute(root, name, "mtu").and_then(|m| m.parse().ok()) == Some(mtu))
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
