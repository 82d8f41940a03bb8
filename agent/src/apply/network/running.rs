//! The routes of a link that its renderer leaves running, added at once: a DHCP link whose
//! document adds routes (OpenStack's host route to `169.254.169.254/32`, an Ironic network's)
//! keeps its lease, where `networkctl reconfigure` or `ifup` would restart its DHCP client
//! (and drop the lease while the run's later steps use the link). `ip route replace`, as the
//! direct renderer adds them (`direct.rs`); the file written for the link applies them from
//! the next boot.

use super::links::own_link;
use super::live::Run;
use super::plan::{Applied, Interface};
use crate::root::Root;

/// Adds the routes of each of `interfaces` whose own link is there ([`own_link`]), reporting
/// each `ip` run in `applied`. Such a link has no static address, so no gateway is taken as on
/// the link ([`Interface::gateway_onlink`]).
pub fn set_routes<'a>(
    root: &Root,
    interfaces: impl IntoIterator<Item = &'a Interface>,
    run: &mut Run<'_>,
    applied: &mut Applied,
) {
    for interface in interfaces {
        let Some(name) = own_link(root, interface) else {
            continue;
        };
        for route in &interface.routes {
            let family = if route.via.is_ipv6() { 6 } else { 4 };
            let line = format!(
                "-{family} route replace {} via {} dev {name}",
                route.to, route.via
            );
            let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
            match run("ip", &args) {
                Ok(()) => applied.done.push(format!("ip {line}")),
                Err(err) => applied
                    .errors
                    .push(format!("{err} (the route applies from the next boot)")),
            }
        }
    }
}
