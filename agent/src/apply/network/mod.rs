//! The network configuration of an instance, applied (docs/protocol.md §4.2, §5.7): OpenStack's
//! `network_data.json` or NoCloud's `network-config` (version 1 or 2) becomes one [`Plan`]
//! (interfaces matched by MAC and named as the system names them, static addresses, routes,
//! DHCP, MTU, DNS servers and search domains), which is written the way the image configures
//! its network: systemd-networkd `.network` files, ifupdown's `interfaces.d`, or, on an image
//! with neither (the tiny busybox image), applied directly with `ip` and `/etc/resolv.conf`;
//! not on an image that uses NetworkManager (`networkmanager.rs`).
//! Before the network starts, an ifupdown file written for another instance's NICs is set
//! aside (`metaboot local`).

mod direct;
mod ifupdown;
mod links;
mod live;
mod mtu;
mod netconfig;
mod networkd;
mod networkmanager;
mod openstack;
mod plan;
mod running;
mod sources;
mod stale;

use crate::root::Root;

pub use ifupdown::FILE as IFUPDOWN_FILE;
pub use links::system_links;
pub use plan::{
    Address, Applied, Interface, Ipv6Auto, MAX_INTERFACES, NetworkError, Plan, Route, address,
    normal_mac, prefix_of, resolv_conf,
};
pub use stale::{
    NicNow, SET_ASIDE, Stale, UDEV_SETTLE_TIMEOUT_SECS, set_aside_stale, settle_args, udev_settle,
};

/// A network document as its source gave it, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkDoc {
    /// OpenStack's `network_data.json`.
    OpenStack(serde_json::Value),
    /// cloud-init's `network-config`, version 1 or 2 (NoCloud).
    NetworkConfig(serde_json::Value),
}

impl NetworkDoc {
    /// Whether the document turns networking off: a `network-config` of `config: disabled`
    /// (also under `network:`), as cloud-init reads it.
    pub fn disabled(&self) -> bool {
        match self {
            NetworkDoc::OpenStack(_) => false,
            NetworkDoc::NetworkConfig(value) => netconfig::disabled(value),
        }
    }
}

/// The plan of a document; `warnings` gets what is left out (bonds, VLANs, unknown types, the
/// default route of a DHCP link: [`Plan::leave_dhcp_default_routes`]).
pub fn plan(doc: &NetworkDoc, warnings: &mut Vec<String>) -> Result<Plan, NetworkError> {
    let (mut plan, source) = match doc {
        NetworkDoc::OpenStack(value) => (openstack::plan(value, warnings)?, "network_data.json"),
        NetworkDoc::NetworkConfig(value) => (netconfig::plan(value, warnings)?, "network-config"),
    };
    plan.leave_dhcp_default_routes(source, warnings);
    if plan.interfaces.len() > MAX_INTERFACES {
        return Err(NetworkError::TooMany);
    }
    plan.check()?;
    Ok(plan)
}

/// Names the plan's interfaces after the system's (`links`, [`system_links`]: NICs, not the
/// bridges, bonds and VLANs that share their MACs) by MAC (compared as [`normal_mac`] writes
/// them: `52-54-00-12-34-56` is the NIC's `52:54:00:12:34:56`), recording the NIC's MAC in
/// [`Interface::system_mac`]; an interface whose MAC no system interface has gets a warning
/// and keeps the document's name, if any, but a pattern. An interface
/// known by a pattern (`en*`) takes the first system interface it matches that no other of
/// the plan's has (by name order, never `lo`); one that matches none is left out with a
/// warning, so that no renderer ever writes a pattern.
pub fn name_interfaces(plan: &mut Plan, links: &[(String, String)], warnings: &mut Vec<String>) {
    let mut patterns = Vec::new();
    for (index, interface) in plan.interfaces.iter_mut().enumerate() {
        let Some(mac) = &interface.mac else {
            if interface.name.as_deref().is_some_and(plan::is_name_pattern) {
                patterns.push(index);
            }
            continue;
        };
        let wanted = normal_mac(mac);
        match links
            .iter()
            .find(|(_, address)| normal_mac(address) == wanted)
        {
            Some((name, address)) => {
                interface.name = Some(name.clone());
                interface.system_mac = Some(normal_mac(address));
            }
            None => {
                warnings.push(format!(
                    "no interface of this system has MAC {mac}{}",
                    interface
                        .name
                        .as_deref()
                        .map(|n| format!(" (the document calls it {n})"))
                        .unwrap_or_default()
                ));
                // No interface is both (netplan's `match` takes both).
                if interface.name.as_deref().is_some_and(plan::is_name_pattern) {
                    interface.name = None;
                }
            }
        }
    }
    let mut unmatched = Vec::new();
    for index in patterns {
        let pattern = plan.interfaces[index].name.clone().unwrap_or_default();
        let taken = |name: &str| {
            plan.interfaces
                .iter()
                .any(|other| other.name.as_deref() == Some(name))
        };
        let found = links
            .iter()
            .map(|(name, _)| name)
            .find(|name| *name != "lo" && links::name_matches(&pattern, name) && !taken(name))
            .cloned();
        match found {
            Some(name) => plan.interfaces[index].name = Some(name),
            None => {
                warnings.push(format!(
                    "no interface of this system matches {pattern:?}: its configuration is \
                     left out"
                ));
                unmatched.push(index);
            }
        }
    }
    for index in unmatched.into_iter().rev() {
        plan.interfaces.remove(index);
    }
}

/// How this image configures its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// systemd-networkd: `.network` files in `/etc/systemd/network`.
    Networkd,
    /// ifupdown: `/etc/network/interfaces.d/`.
    Ifupdown,
    /// NetworkManager: nothing written (`networkmanager.rs`).
    NetworkManager,
    /// Neither: `ip` commands now, and `/etc/resolv.conf`.
    Direct,
}

impl Renderer {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Renderer::Networkd => "systemd-networkd",
            Renderer::Ifupdown => "ifupdown",
            Renderer::NetworkManager => "NetworkManager",
            Renderer::Direct => "ip (no network manager)",
        }
    }
}

/// What `systemctl enable systemd-networkd` links in `/etc/systemd/system` (its unit's
/// `WantedBy=multi-user.target`, `Alias=dbus-org.freedesktop.network1.service` and
/// `Also=systemd-networkd.socket`, with `WantedBy=sockets.target`): any one of them means the
/// image starts networkd. A link is followed (inside the root): one to a unit that is not
/// there counts for nothing.
pub const NETWORKD_ENABLED: [&str; 3] = [
    "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
    "/etc/systemd/system/dbus-org.freedesktop.network1.service",
    "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
];
/// What `systemctl enable NetworkManager` links in `/etc/systemd/system` (its unit's
/// `WantedBy=multi-user.target` and `Alias=dbus-org.freedesktop.NetworkManager.service`): the
/// image starts NetworkManager. Followed as [`NETWORKD_ENABLED`].
pub const NETWORKMANAGER_ENABLED: [&str; 2] = [
    "/etc/systemd/system/multi-user.target.wants/NetworkManager.service",
    "/etc/systemd/system/dbus-org.freedesktop.NetworkManager.service",
];
/// systemd-networkd's daemon (`/lib` on an image without merged `/usr`).
const NETWORKD_DAEMON: [&str; 2] = [
    "/usr/lib/systemd/systemd-networkd",
    "/lib/systemd/systemd-networkd",
];

/// The renderer of the image under `root`: systemd-networkd when the image enables it (one of
/// [`NETWORKD_ENABLED`]), else ifupdown when `ifup` and `/etc/network/interfaces` are there,
/// else NetworkManager when the image enables it ([`NETWORKMANAGER_ENABLED`]: an Ubuntu
/// desktop or Fedora image, whose networkd, if installed, reads nothing), else
/// systemd-networkd when its daemon and its configuration directory are, else direct.
/// Installed is not enabled: Debian's `systemd` package ships networkd's daemon and
/// `/etc/systemd/network` on images that bring their network up with ifupdown (Debian 11 and
/// 12's genericcloud), where `.network` files are read by nothing. cloud-init's renderer
/// order likewise puts ifupdown (`eni`) before networkd.
pub fn detect(root: &Root) -> Renderer {
    let any = |paths: &[&str]| paths.iter().any(|p| root.exists(p));
    if any(&NETWORKD_ENABLED) {
        Renderer::Networkd
    } else if root.exists(ifupdown::INTERFACES) && any(&ifupdown::IFUP_PATHS) {
        Renderer::Ifupdown
    } else if any(&NETWORKMANAGER_ENABLED) {
        Renderer::NetworkManager
    } else if root.is_dir(networkd::DIR) && any(&NETWORKD_DAEMON) {
        Renderer::Networkd
    } else {
        Renderer::Direct
    }
}

/// Applies `plan` with `renderer`. Live changes (commands) only happen when the root is `/`.
pub fn apply(root: &Root, plan: &Plan, renderer: Renderer, source: &str) -> Applied {
    match renderer {
        Renderer::Networkd => networkd::apply(root, plan, source),
        Renderer::Ifupdown => ifupdown::apply(root, plan, source),
        Renderer::NetworkManager => networkmanager::apply(plan, source),
        Renderer::Direct => direct::apply(root, plan, source),
    }
}

/// What an instance without network configuration (its source has no document, or one that
/// configures nothing) gets: on an image whose network systemd-networkd brings up, the
/// `10-metaboot-*.network` files written for an earlier instance are removed, as a plan
/// without interfaces removes them (networkd reloaded when the root is `/`, and their links
/// waited for), so that the
/// image's own files configure their links; else a NoCloud clone whose new seed has no
/// `network-config` would keep the old instance's static addresses (matched by name). cloud-init
/// likewise replaces the earlier instance's configuration with its fallback (DHCP on the
/// first NIC). Never a file of the image's; nothing for the other renderers (ifupdown's file
/// of another instance's NICs is set aside before the network starts, `stale.rs`). `None` when
/// there is nothing of metaboot's to remove.
pub fn apply_none(root: &Root) -> Option<Applied> {
    if detect(root) != Renderer::Networkd {
        return None;
    }
    let applied = networkd::apply(root, &Plan::default(), "no network configuration");
    (!applied.done.is_empty() || !applied.errors.is_empty()).then_some(applied)
}

#[cfg(test)]
mod tests;
