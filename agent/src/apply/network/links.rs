//! The system's network interfaces, read from `<root>/sys/class/net`: their names and MACs
//! (to name a plan's interfaces), and whether a link is already up with a given MTU (so that
//! applying a plan changes only what differs).

use std::path::Path;

use crate::root::Root;

/// The network interfaces of the system, under the root.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// Most interfaces read from [`SYS_CLASS_NET`].
pub const MAX_SYSTEM_LINKS: usize = 256;

/// The interfaces of the system: `(name, MAC)` from `<root>/sys/class/net/*/address`.
pub fn system_links(root: &Root) -> Vec<(String, String)> {
    let Some(entries) = root
        .dir_optional(SYS_CLASS_NET)
        .ok()
        .flatten()
        .and_then(|dir| dir.entries().ok())
    else {
        return Vec::new();
    };
    let mut links: Vec<(String, String)> = entries
        .into_iter()
        .take(MAX_SYSTEM_LINKS)
        .filter_map(|(name, _)| {
            let name = name.to_str()?.to_owned();
            let address = Path::new(SYS_CLASS_NET).join(&name).join("address");
            let mac = root.read_optional_string(&address).ok()??;
            Some((name, mac.trim().to_ascii_lowercase()))
        })
        .collect();
    links.sort();
    links
}

/// `IFF_UP` of an interface's `flags` (linux/if.h).
const IFF_UP: u64 = 0x1;

/// Whether the link `name` is up already, with `mtu` when one is wanted, as
/// `<root>/sys/class/net/NAME/{flags,mtu}` say (unreadable: not in place).
pub fn link_in_place(root: &Root, name: &str, mtu: Option<u32>) -> bool {
    let read = |file: &str| {
        let path = Path::new(SYS_CLASS_NET).join(name).join(file);
        root.read_optional_string(&path).ok().flatten()
    };
    let up = read("flags")
        .and_then(|flags| u64::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & IFF_UP != 0);
    up && mtu.is_none_or(|mtu| read("mtu").and_then(|m| m.trim().parse().ok()) == Some(mtu))
}
