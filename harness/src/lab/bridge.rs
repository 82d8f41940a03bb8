//! The lab's bridge namespace: one Linux bridge per tenant network, the veths of the router and
//! DHCP namespaces, and the guests' taps.

use crate::lab::netns;

/// Interface names are limited to 15 bytes (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Characters of a registry id used in interface names (as Neutron does: `qr-` + 11).
pub const ID_CHARS: usize = 11;

/// `prefix` + the first [`ID_CHARS`] characters of `id`, cut to [`MAX_IFNAME_LEN`].
pub fn ifname(prefix: &str, id: &str) -> String {
    let mut name = format!("{prefix}{}", id.chars().take(ID_CHARS).collect::<String>());
    name.truncate(MAX_IFNAME_LEN);
    name
}

/// The bridge namespace of lab `id`.
pub fn namespace(id: &str) -> String {
    format!("metaboot-{id}")
}

/// How the name of the bridge end of a client's veth begins (the client's name follows): a
/// machine the lab plugs in behind a bridge, as [`crate::lab::libvirt_host`] does.
pub const CLIENT_END_PREFIX: &str = "vc-";

/// The namespace of client `name` of the lab whose bridge namespace is `ns`: `ns-NAME`. Lab ids
/// have no `-` ([`crate::lab::config::validate_id`]), so it is no other lab's bridge namespace.
pub fn client_namespace(ns: &str, name: &str) -> String {
    format!("{ns}-{name}")
}

/// The bridge end of client `name`'s veth, inside the bridge namespace.
pub fn client_end(name: &str) -> String {
    ifname(CLIENT_END_PREFIX, name)
}

/// The bridge of a network.
pub fn bridge_name(network_id: &str) -> String {
    ifname("br-", network_id)
}

/// Creates the bridge for a network inside the bridge namespace.
pub fn add_bridge(ns: &str, bridge: &str) -> anyhow::Result<()> {
    netns::ip(ns, &["link", "add", bridge, "type", "bridge"])?;
    // Forward at once: no STP listening/learning delay before the first DHCP packet.
    netns::ip(
        ns,
        &[
            "link",
            "set",
            bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ],
    )?;
    netns::ip(ns, &["link", "set", bridge, "up"])?;
    Ok(())
}

/// A veth pair from the bridge namespace into `peer_ns`: `bridge_end` is enslaved to `bridge`,
/// `peer_end` appears (down) in `peer_ns`.
pub fn add_veth(
    ns: &str,
    bridge: &str,
    bridge_end: &str,
    peer_ns: &str,
    peer_end: &str,
) -> anyhow::Result<()> {
    netns::ip(
        ns,
        &[
            "link", "add", bridge_end, "type", "veth", "peer", "name", peer_end, "netns", peer_ns,
        ],
    )?;
    netns::ip(ns, &["link", "set", bridge_end, "master", bridge, "up"])?;
    Ok(())
}

/// A persistent tap for a guest, on `bridge`.
pub fn add_tap(ns: &str, bridge: &str, tap: &str) -> anyhow::Result<()> {
    netns::ip(ns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    netns::ip(ns, &["link", "set", tap, "master", bridge, "up"])?;
    Ok(())
}

/// Removes a tap (absent is fine: the lab may already be down).
pub fn delete_tap(ns: &str, tap: &str) {
    let _ = netns::ip(ns, &["link", "del", tap]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let id = "1c9b3f62-8a4d-4a59-9a3c-54f2d5e6a7b8";
        assert_eq!(ifname("qr-", id), "qr-1c9b3f62-8a");
        assert_eq!(ifname("tap", id), "tap1c9b3f62-8a");
        assert_eq!(bridge_name(id), "br-1c9b3f62-8a");
        assert_eq!(ifname("longprefix-", id).len(), MAX_IFNAME_LEN);
        assert!(namespace("abcdefgh").len() < 64);
        assert_eq!(client_namespace("metaboot-ab12", "x"), "metaboot-ab12-x");
        assert_eq!(client_end("x"), "vc-x");
        assert_eq!(client_end("a-long-client-name"), "vc-a-long-clie");
    }
}
