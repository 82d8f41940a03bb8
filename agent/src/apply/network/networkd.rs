//! systemd-networkd: one `.network` file per interface in `/etc/systemd/network`, named
//! `10-metaboot-<name>.network` so it sorts before an image's catch-all (such as
//! `50-dhcp.network`) and wins for its link. A file that changed for a static interface is
//! applied at once on the running system (`networkctl reload`), and its link waited for;
//! DHCP links that hold an address (their lease) are left running as they are, but for their
//! MTU and routes, set at once (`mtu.rs`, `running.rs`); one that holds none (a second NIC the
//! image's own files do not match, which networkd leaves down) is reloaded and waited for too.
//! An interface with nothing to configure gets
//! no file (one would take its link from the image's catch-all and leave it unconfigured), and
//! the one metaboot wrote for it earlier is removed, as is every file of metaboot's for an
//! interface the plan does not have (an earlier instance's).

use std::fmt::Write as _;

use super::links::{holds_address, link_mtu, own_link};
use super::live::{self, Run};
use super::plan::{Applied, Interface, Ipv6Auto, Plan};
use super::{mtu, running};
use crate::fsutil::WriteOptions;
use crate::root::Root;

/// systemd-networkd's configuration directory.
pub const DIR: &str = "/etc/systemd/network";
/// The start of the files metaboot writes there.
pub const PREFIX: &str = "10-metaboot-";

/// A name made safe for a file name.
fn file_label(interface: &Interface) -> String {
    interface
        .label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The `.network` file of one interface.
pub fn render(interface: &Interface, plan: &Plan, source: &str) -> String {
    let mut out = format!(
        "# Written by metaboot from {source}; metaboot rewrites it for a new instance.\n[Match]\n"
    );
    // Both when both are known, as cloud-init writes them: a VLAN or bond takes its parent's
    // MAC, and must not take its parent's addresses too.
    if let Some(mac) = &interface.mac {
        let _ = writeln!(out, "MACAddress={mac}");
    }
    if let Some(name) = &interface.name {
        let _ = writeln!(out, "Name={name}");
    }
    if let Some(mtu) = interface.mtu {
        let _ = write!(out, "\n[Link]\nMTUBytes={mtu}\n");
    }
    let dhcp = match (interface.dhcp4, interface.ipv6 == Ipv6Auto::Dhcp) {
        (true, true) => "yes",
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        (false, false) => "no",
    };
    let _ = write!(out, "\n[Network]\nDHCP={dhcp}\n");
    match interface.ipv6 {
        Ipv6Auto::None => {}
        // networkd accepts them by default (IPv6 forwarding off): a static port would get a
        // SLAAC address and a default route from the router too.
        Ipv6Auto::StaticOnly => out.push_str("IPv6AcceptRA=no\n"),
        // Stateless too: networkd starts its DHCPv6 client (information only) when the
        // router's advertisement says so, its `O` flag (`[IPv6AcceptRA] DHCPv6Client=yes`,
        // the default).
        Ipv6Auto::Slaac | Ipv6Auto::Stateless | Ipv6Auto::Dhcp => {
            out.push_str("IPv6AcceptRA=yes\n");
        }
    }
    for address in &interface.addresses {
        let _ = writeln!(out, "Address={address}");
    }
    for ns in &plan.nameservers {
        let _ = writeln!(out, "DNS={ns}");
    }
    if !plan.search.is_empty() {
        let _ = writeln!(out, "Domains={}", plan.search.join(" "));
    }
    if interface.dhcp4 {
        // Neutron's DHCP server (and the lab's dnsmasq) gives a port its address by MAC.
        out.push_str("\n[DHCPv4]\nClientIdentifier=mac\n");
        if interface.dhcp4_ignores_routes {
            // As cloud-init's networkd renderer writes `use-routes: false` (the gateway too:
            // networkd's `UseGateway=` follows `UseRoutes=`).
            out.push_str("UseRoutes=false\n");
        }
    }
    for route in &interface.routes {
        let _ = write!(
            out,
            "\n[Route]\nDestination={}\nGateway={}\n",
            route.to, route.via
        );
        // cloud-init adds it to a subnet's `gateway` only; a host route through a gateway
        // outside the link's subnets is refused all the same without it.
        if interface.gateway_onlink(route) {
            out.push_str("GatewayOnLink=yes\n");
        }
    }
    out
}

/// networkd's control program.
const NETWORKCTL: &str = "networkctl";
/// systemd-networkd-wait-online (`/lib` on an image without merged `/usr`).
const WAIT_ONLINE: [&str; 2] = [
    "/usr/lib/systemd/systemd-networkd-wait-online",
    "/lib/systemd/systemd-networkd-wait-online",
];
/// Longest wait for the links `networkctl reload` reconfigured to be configured again, before
/// the run's later steps (password post-back, packages, phone_home) use the network.
pub const WAIT_ONLINE_TIMEOUT_SECS: u32 = 30;

/// Writes the files; applies the changed ones (and the links whose file was removed) when the
/// root is `/`, but for the links left running, whose MTU and routes are set at once.
pub fn apply(root: &Root, plan: &Plan, source: &str) -> Applied {
    apply_with(root, plan, source, root.is_host().then_some(&mut live::run))
}

/// [`apply`], with `live` running networkctl and systemd-networkd-wait-online, and `ip` for an
/// MTU or a route (`None`: no live changes, a root other than `/`). The files are published
/// before `networkctl reload`: networkd reads them from the directory, where a staged run's
/// writes are only temp files until then.
///
/// `networkctl reload` reconfigures every link whose `.network` file is new, changed or
/// removed (networkctl(1)); `networkctl reconfigure` would drop all of a link's configuration
/// (its DHCP lease too) even on a systemd whose reload keeps what it can. A link left running
/// (its addresses from DHCP or router advertisements alone, [`Interface::is_dynamic`], no
/// static address of an earlier file of metaboot's to replace, and an address held now,
/// [`holds_address`]) has its file written after the reload, so that networkd reads it at the
/// next boot, not now. A DHCP link that holds no address has no lease to keep: no file of the
/// image matched it (networkd leaves such a link down), or it is not there yet; its file is
/// reloaded at once, else it would stay down for the whole boot and its routes be refused.
pub fn apply_with(root: &Root, plan: &Plan, source: &str, live: Option<Run<'_>>) -> Applied {
    let mut applied = Applied::default();
    let mut reload = false;
    // The links reconfigured from a file written for them, waited for.
    let mut wait = Vec::new();
    // (interface, path, text, whether it is left running: written after the reload)
    let mut pending = Vec::new();
    // The files of the plan's interfaces.
    let mut planned = Vec::new();
    for interface in &plan.interfaces {
        if interface.mac.is_none() && interface.name.is_none() {
            applied
                .errors
                .push("an interface with neither MAC nor name cannot be matched".to_owned());
            continue;
        }
        let path = format!("{DIR}/{PREFIX}{}.network", file_label(interface));
        planned.push(path.clone());
        if interface.configures_nothing() {
            let label = interface.label();
            match root.remove_file(&path) {
                Ok(true) => {
                    applied.done.push(format!(
                        "{label}: nothing to configure, {path} removed (the image's own \
                         configuration applies)"
                    ));
                    reload = true;
                }
                Ok(false) => applied.done.push(format!(
                    "{label}: nothing to configure, left to the image's own configuration"
                )),
                Err(err) => applied.errors.push(format!(
                    "{label}: nothing to configure, but {path}, written for it earlier, could \
                     not be removed ({err}): remove it, or the link stays unconfigured"
                )),
            }
            continue;
        }
        let text = render(interface, plan, source);
        let old = root.read_optional_string(&path).ok().flatten();
        if old.as_deref() == Some(text.as_str()) {
            applied.done.push(format!("{path} (unchanged)"));
            continue;
        }
        let left = interface.is_dynamic()
            && old.is_none_or(|old| !old.contains("\nAddress="))
            && own_link(root, interface).is_some_and(|name| holds_address(root, name));
        pending.push((interface, path, text, left));
    }
    reload |= remove_stale(root, &planned, &mut applied);
    let mut live = live;
    let mut running = Vec::new();
    for left in [false, true] {
        for (interface, path, text, _) in pending.iter().filter(|p| p.3 == left) {
            match root.write_atomic(path, text.as_bytes(), &WriteOptions::keep_or(0o644)) {
                Ok(()) if left => running.push(*interface),
                Ok(()) => {
                    reload = true;
                    wait.extend(interface.name.clone());
                }
                Err(err) => {
                    applied.errors.push(crate::log::chain(&err));
                    continue;
                }
            }
            applied.done.push(path.clone());
        }
        if let Some(run) = live.as_mut().filter(|_| reload && !left) {
            root.publish();
            match run(NETWORKCTL, &["reload".to_owned()]) {
                Err(err) => applied.errors.push(err),
                Ok(()) => wait_online(root, &wait, run, &mut applied),
            }
        }
    }
    if let Some(mut run) = live {
        mtu::set_live(root, running.iter().copied(), &mut run, &mut applied);
        running::set_routes(root, running, &mut run, &mut applied);
    }
    applied
}

/// Removes metaboot's files ([`PREFIX`], `.network`) that are not `planned`: an earlier
/// instance's (an image made from an instance, a NoCloud clone), whose file matched by name
/// alone would give this instance's NIC that instance's addresses. Never another file. True
/// when one was removed. The links they matched are not waited for: one that no other file
/// matches is unmanaged from the reload on, and systemd-networkd-wait-online would wait for it
/// until its timeout.
fn remove_stale(root: &Root, planned: &[String], applied: &mut Applied) -> bool {
    let mut removed = false;
    for (name, _) in root.entries_or_none(DIR) {
        let name = name.to_string_lossy();
        let path = format!("{DIR}/{name}");
        if !name.starts_with(PREFIX) || !name.ends_with(".network") || planned.contains(&path) {
            continue;
        }
        let result = root.remove_file(&path);
        removed |= result.is_ok();
        match result {
            Ok(_) => applied
                .done
                .push(format!("{path} removed (no interface of this plan)")),
            Err(err) => applied.errors.push(format!(
                "{path} (no interface of this plan): {err}: remove it"
            )),
        }
    }
    removed
}

/// Waits for the links `names` that are there (systemd-networkd-wait-online, when the image
/// has it), at most [`WAIT_ONLINE_TIMEOUT_SECS`], reporting a link not configured in time as
/// an error.
fn wait_online(root: &Root, names: &[String], run: &mut Run<'_>, applied: &mut Applied) {
    let Some(program) = WAIT_ONLINE.iter().find(|path| root.exists(path)) else {
        return;
    };
    let mut args = vec![format!("--timeout={WAIT_ONLINE_TIMEOUT_SECS}")];
    for name in names.iter().filter(|name| link_mtu(root, name).is_some()) {
        args.extend(["-i".to_owned(), name.clone()]);
    }
    if args.len() > 1
        && let Err(err) = run(program, &args)
    {
        // The files are in place and networkd applies them; a link still configuring (no
        // carrier yet, router advertisements awaited) is not the step's failure.
        applied.warnings.push(format!(
            "{err}: not configured within {WAIT_ONLINE_TIMEOUT_SECS} s (`networkctl status` says \
             why)"
        ));
    }
}
