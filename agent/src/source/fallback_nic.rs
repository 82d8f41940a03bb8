//! The interface a link-local metadata URL is scoped to when it names none: cloud-init's
//! fallback NIC (`cloudinit/net/__init__.py`, `find_fallback_nic`), read from
//! `<root>/sys/class/net`. Loopback, veth, bridge, bond and bond-member interfaces are left
//! out; interfaces with carrier come first, then those that are down or dormant (they may
//! get carrier once up); in each group `eth0` first, then natural order (`eth2` before
//! `eth10`).

use std::cmp::Ordering;

use crate::root::Root;
use crate::sys_net::{attribute, has_entry as exists, interface_names};

/// The interface cloud-init puts first (`DEFAULT_PRIMARY_NIC`).
pub const PRIMARY_NIC: &str = "eth0";

/// `operstate` values of an interface that may still get carrier (cloud-init's list).
const MAYBE_CONNECTED: [&str; 4] = ["dormant", "down", "lowerlayerdown", "unknown"];

/// How likely an interface is to reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Link {
    Connected,
    Possibly,
}

/// How `name` may reach the network, or `None` when it is not a candidate.
fn link(root: &Root, name: &str) -> Option<Link> {
    if name == "lo" || name.starts_with("veth") {
        return None;
    }
    if exists(root, name, "bridge") || exists(root, name, "bonding") {
        return None;
    }
    if exists(root, name, "bonding_slave") {
        return None;
    }
    if attribute(root, name, "carrier").as_deref() == Some("1") {
        return Some(Link::Connected);
    }
    if attribute(root, name, "dormant").as_deref() == Some("1") {
        return Some(Link::Possibly);
    }
    let state = attribute(root, name, "operstate")?;
    MAYBE_CONNECTED
        .contains(&state.as_str())
        .then_some(Link::Possibly)
}

/// Natural order: runs of digits compare as numbers (`eth2` < `eth10`).
fn natural(a: &str, b: &str) -> Ordering {
    fn chunks(text: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = text.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &text[start..i]));
                start = i;
            }
        }
        out
    }
    let (left, right) = (chunks(a), chunks(b));
    for ((digits_a, a), (digits_b, b)) in left.iter().zip(&right) {
        let order = if *digits_a && *digits_b {
            let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        } else {
            a.cmp(b)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    left.len().cmp(&right.len())
}

/// The interfaces cloud-init would try, best first.
pub fn candidates(root: &Root) -> Vec<String> {
    let mut found: Vec<(Link, String)> = interface_names(root)
        .into_iter()
        .filter_map(|name| link(root, &name).map(|link| (link, name)))
        .collect();
    found.sort_by(|(link_a, a), (link_b, b)| {
        link_a
            .cmp(link_b)
            .then_with(|| (b == PRIMARY_NIC).cmp(&(a == PRIMARY_NIC)))
            .then_with(|| natural(a, b))
    });
    found.into_iter().map(|(_, name)| name).collect()
}

/// The interface cloud-init falls back to, if the system has one.
pub fn fallback_nic(root: &Root) -> Option<String> {
    candidates(root).into_iter().next()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A root whose `/sys/class/net` has these interfaces: (name, files in its directory).
    fn root_with(interfaces: &[(&str, &[(&str, &str)])]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        for (name, files) in interfaces {
            let path = dir.path().join("sys/class/net").join(name);
            fs::create_dir_all(&path).unwrap();
            for (file, text) in *files {
                if text.is_empty() {
                    fs::create_dir_all(path.join(file)).unwrap();
                } else {
                    fs::write(path.join(file), text).unwrap();
                }
            }
        }
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    const UP: &[(&str, &str)] = &[("carrier", "1\n"), ("operstate", "up\n")];
    const DOWN: &[(&str, &str)] = &[("operstate", "down\n")];

    #[test]
    fn connected_interfaces_first_eth0_first_then_natural_order() {
        let (_dir, root) = root_with(&[
            ("lo", UP),
            ("eth10", UP),
            ("eth2", UP),
            ("ens3", DOWN),
            ("veth1", UP),
            ("br0", &[("carrier", "1\n"), ("bridge", "")]),
            ("bond0", &[("carrier", "1\n"), ("bonding", "")]),
            ("eth3", &[("carrier", "1\n"), ("bonding_slave", "")]),
            ("wwan0", &[("operstate", "notpresent\n")]),
        ]);
        assert_eq!(candidates(&root), ["eth2", "eth10", "ens3"]);
        let (_dir, root) = root_with(&[("ens3", UP), ("eth0", UP), ("eth1", UP)]);
        assert_eq!(fallback_nic(&root).as_deref(), Some("eth0"));
        // A primary NIC that is down still comes after the connected ones.
        let (_dir, root) = root_with(&[("eth0", DOWN), ("ens4", UP)]);
        assert_eq!(candidates(&root), ["ens4", "eth0"]);
    }

    #[test]
    fn without_interfaces_there_is_no_fallback() {
        let (_dir, root) = root_with(&[("lo", UP)]);
        assert_eq!(fallback_nic(&root), None);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(fallback_nic(&Root::open(empty.path()).unwrap()), None);
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        let mut names = vec!["eth10", "eth2", "eth1", "ens3"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["ens3", "eth1", "eth2", "eth10"]);
    }
}
