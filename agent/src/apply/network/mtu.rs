//! The MTU of a link that its renderer leaves running as it is, set at once: systemd-networkd
//! and ifupdown apply a changed static interface live (`networkctl reconfigure`, `ifup`), but
//! leave a DHCP link to the client already running, and their files take effect at the next
//! boot. On OpenStack's common port (one `ipv4_dhcp` network on VXLAN, `links[].mtu` 1450) the
//! MTU would stay the image's 1500 for the whole first boot (networkd ignores the DHCP server's
//! MTU option unless told, `UseMTU=yes`), and large packets of its downloads be lost.
//! `ip link set dev NAME mtu N` changes the MTU alone: the DHCP client keeps its lease. The
//! direct renderer sets every link's MTU itself (`direct.rs`).

use super::links::{link_mtu, own_link};
use super::live::Run;
use super::plan::{Applied, Interface};
use crate::root::Root;

/// The program that sets the MTU.
const IP: &str = "ip";

/// `ip`'s arguments that set link `name`'s MTU to `mtu`.
pub fn args(name: &str, mtu: u32) -> Vec<String> {
    ["link", "set", "dev", name, "mtu", &mtu.to_string()]
        .map(str::to_owned)
        .to_vec()
}

/// Sets the MTU of each of `interfaces` (with an MTU) whose own link ([`own_link`]) has
/// another (`<root>/sys/class/net/NAME/mtu`), reporting each `ip` run in `applied`.
pub fn set_live<'a>(
    root: &Root,
    interfaces: impl IntoIterator<Item = &'a Interface>,
    run: &mut Run<'_>,
    applied: &mut Applied,
) {
    for interface in interfaces {
        let (Some(name), Some(mtu)) = (own_link(root, interface), interface.mtu) else {
            continue;
        };
        if link_mtu(root, name) == Some(mtu) {
            continue;
        }
        let args = args(name, mtu);
        match run(IP, &args) {
            Ok(()) => applied.done.push(format!("{IP} {}", args.join(" "))),
            Err(err) => applied.errors.push(format!(
                "{err} (the MTU {mtu} of {name} applies from the next boot)"
            )),
        }
    }
}
