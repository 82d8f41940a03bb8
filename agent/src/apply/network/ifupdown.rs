//! ifupdown: one file, `/etc/network/interfaces.d/50-metaboot`, with a stanza per interface, family
//! and method (`inet dhcp|static|manual`, `inet6 static|auto|dhcp`), as cloud-init's ENI renderer
//! writes one per subnet in `50-cloud-init`. The image's `/etc/network/interfaces` must `source`
//! the directory (Debian's does), as the image's `ifup` reads `source` lines: else the step is an
//! error that says so (`sources.rs`). Static interfaces are brought up at once (`ifdown`, `ifup`)
//! when the root is `/`, and brought up again as they were when the new stanzas fail before an
//! address ([`bring_back`]); the others keep running as they are, but for their MTU and routes, set
//! at once (`mtu.rs`, `running.rs`), or are brought up (`ifup`) when they hold no address (a NIC
//! that no stanza of the image's names).

use std::fmt::Write as _;

use super::links::{holds_address, holds_one_of, own_link};
use super::live::{self, Run};
use super::plan::{Address, Applied, Interface, Ipv6Auto, Plan, normal_mac};
use super::sources;
use super::{mtu, running};
use crate::fsutil::WriteOptions;
use crate::root::Root;

/// The image's main file (its presence, with `ifup`, means ifupdown).
pub const INTERFACES: &str = "/etc/network/interfaces";
/// The directory the image's main file reads (`source`), where metaboot writes [`FILE`].
pub const DIR: &str = "/etc/network/interfaces.d";
/// The file metaboot writes.
pub const FILE: &str = "/etc/network/interfaces.d/50-metaboot";
/// Where ifupdown's `ifup` is.
pub const IFUP_PATHS: [&str; 2] = ["/usr/sbin/ifup", "/sbin/ifup"];
/// The start of the comment line that records, above an interface's stanzas, the MAC they were
/// written for (`# metaboot: ens3 fa:16:3e:00:00:01`): ifupdown names interfaces, and an image
/// made from this instance would bring its addresses up on the next instance's NIC of that
/// name; `metaboot local` sets the file aside before the network starts when a MAC it records
/// is on no interface of the system (`apply/network/stale.rs`).
pub const MAC_COMMENT: &str = "# metaboot: ";

/// The (name, MAC) pairs a file written by metaboot records in its [`MAC_COMMENT`] lines, the
/// MAC as [`normal_mac`] writes it; none in a file of a metaboot that wrote no such lines.
pub fn recorded_macs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix(MAC_COMMENT))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next()?;
            let mac = words.next()?;
            Some((name.to_owned(), normal_mac(mac)))
        })
        .collect()
}

/// One `iface` stanza: its family, its method, and the static addresses it carries.
struct Stanza<'a> {
    v6: bool,
    method: &'static str,
    addresses: Vec<&'a Address>,
}

/// The stanzas of one family, as cloud-init writes one per subnet: DHCP or router
/// advertisements when asked, and the static addresses; both when both are asked. ifup
/// applies them in order, and IPv6's `static` turns autoconfiguration off: for IPv6 the static
/// stanza comes first, so that `auto` or `dhcp` turns it back on.
fn stanzas_of(interface: &Interface, v6: bool) -> Vec<Stanza<'_>> {
    let automatic = match (v6, interface.dhcp4, interface.ipv6) {
        (false, true, _) | (true, _, Ipv6Auto::Dhcp) => Some("dhcp"),
        (true, _, Ipv6Auto::Slaac | Ipv6Auto::Stateless) => Some("auto"),
        _ => None,
    }
    .map(|method| Stanza {
        v6,
        method,
        addresses: Vec::new(),
    });
    let addresses: Vec<&Address> = interface
        .addresses
        .iter()
        .filter(|a| a.ip.is_ipv6() == v6)
        .collect();
    let fixed = (!addresses.is_empty()).then_some(Stanza {
        v6,
        method: "static",
        addresses,
    });
    if v6 {
        fixed.into_iter().chain(automatic).collect()
    } else {
        automatic.into_iter().chain(fixed).collect()
    }
}

/// An interface's `auto` line and stanzas (none for an interface with nothing to configure):
/// IPv4's, then IPv6's; one `manual` stanza when neither family has a
/// method but routes are asked, so that they are still added. The first stanza carries the
/// interface's MTU and the DNS servers (as cloud-init puts an interface's attributes on its
/// first stanza); a family's routes go on its last stanza (the interface's last when the
/// family has none).
fn interface_stanzas(
    out: &mut String,
    name: &str,
    interface: &Interface,
    plan: &Plan,
    defaults: &mut DefaultRoutes,
) {
    let mut stanzas = stanzas_of(interface, false);
    stanzas.extend(stanzas_of(interface, true));
    if stanzas.is_empty() {
        if interface.routes.is_empty() {
            return;
        }
        stanzas.push(Stanza {
            v6: false,
            method: "manual",
            addresses: Vec::new(),
        });
    }
    out.push('\n');
    // Only a MAC a NIC of this system had when the file was written: one the document gave
    // for a NIC that is not there (the document's name kept) would be "missing" on every boot
    // and set a valid file aside for good.
    if let Some(mac) = &interface.system_mac {
        let _ = writeln!(out, "{MAC_COMMENT}{name} {}", normal_mac(mac));
    }
    let _ = writeln!(out, "auto {name}");
    let last_of = |v6: bool| {
        stanzas
            .iter()
            .rposition(|stanza| stanza.v6 == v6)
            .unwrap_or(stanzas.len() - 1)
    };
    let (last_v4, last_v6) = (last_of(false), last_of(true));
    for (index, stanza) in stanzas.iter().enumerate() {
        let family = if stanza.v6 { "inet6" } else { "inet" };
        let _ = writeln!(out, "iface {name} {family} {}", stanza.method);
        if index == 0
            && let Some(mtu) = interface.mtu
        {
            let _ = writeln!(out, "    mtu {mtu}");
        }
        // ifupdown's `inet6 static` turns autoconfiguration off but leaves the kernel
        // accepting a router's default route: refused here, as cloud-init's ENI renderer
        // writes `accept_ra 0` for `accept-ra: false`.
        if stanza.v6 && stanza.method == "static" && interface.ipv6 == Ipv6Auto::StaticOnly {
            out.push_str("    accept_ra 0\n");
        }
        // `inet6 auto` runs no DHCPv6 client unless told: stateless DHCPv6 (the DNS servers)
        // needs `dhcp 1`, as cloud-init's ENI renderer writes it.
        if stanza.v6 && stanza.method == "auto" && interface.ipv6 == Ipv6Auto::Stateless {
            out.push_str("    dhcp 1\n");
        }
        for (i, address) in stanza.addresses.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "    address {address}");
            } else {
                let _ = writeln!(out, "    up ip addr add {address} dev {name}");
            }
        }
        for v6 in [false, true] {
            if index != if v6 { last_v6 } else { last_v4 } {
                continue;
            }
            routes(out, name, interface, v6, stanza, defaults);
        }
        if index == 0 {
            dns(out, plan);
        }
    }
}

/// What ends every `up ip route` line: a route the kernel refuses (a gateway no address of
/// the interface reaches, a default route already there) is left out, and `ifup` goes on with
/// the stanza's later lines and reports the interface up, as cloud-init's ENI renderer writes
/// its route lines (`post-up route add … || true`). Without it the first refused route ends
/// `ifup` with an error and skips the DNS lines after it.
const OR_TRUE: &str = " || true";

/// Whether the file has given a family's default route yet (IPv4, IPv6): the first of the
/// whole file is a `gateway`, every later one, on this interface or another, is appended.
/// Two `gateway` lines on two interfaces make the second `ifup` fail ("File exists") and skip
/// its later lines.
#[derive(Debug, Default)]
struct DefaultRoutes([bool; 2]);

/// The routes of one family, on `stanza`: the file's first default route of the family as
/// `gateway` on a static stanza of that family, every other as an `up ip route` line. A stanza takes one
/// `gateway` (ifup refuses a second: a duplicate option), and here a family's addresses share
/// one stanza; cloud-init's ENI renderer writes a stanza per subnet, each with its own
/// `gateway`, and a default route of a subnet's `routes` as `post-up route add default gw …`,
/// which adds it next to the first. A further default route is likewise added next to the
/// first, `ip route append` (`replace` would put it in the first's place). A gateway outside
/// the interface's subnets ([`Interface::gateway_onlink`]) takes `onlink` on an `up` line;
/// ifupdown adds it to a `gateway` of its own (Debian's `inet` and `inet6` `static` methods
/// run `ip route add default via … onlink`), and cloud-init's ENI renderer adds nothing.
fn routes(
    out: &mut String,
    name: &str,
    interface: &Interface,
    v6: bool,
    stanza: &Stanza<'_>,
    defaults: &mut DefaultRoutes,
) {
    let static_here = stanza.v6 == v6 && stanza.method == "static";
    let family = if v6 { "-6 " } else { "" };
    let given = &mut defaults.0[usize::from(v6)];
    for route in interface.routes.iter().filter(|r| r.via.is_ipv6() == v6) {
        let first = route.is_default() && !std::mem::replace(given, true);
        let onlink = if interface.gateway_onlink(route) {
            " onlink"
        } else {
            ""
        };
        if first && static_here {
            let _ = writeln!(out, "    gateway {}", route.via);
        } else if route.is_default() && !first {
            let _ = writeln!(
                out,
                "    up ip {family}route append default via {} dev {name}{onlink}{OR_TRUE}",
                route.via
            );
        } else {
            let _ = writeln!(
                out,
                "    up ip {family}route replace {} via {} dev {name}{onlink}{OR_TRUE}",
                route.to, route.via
            );
        }
    }
}

/// The DNS servers and search domains, for resolvconf's hook.
fn dns(out: &mut String, plan: &Plan) {
    if !plan.nameservers.is_empty() {
        let ns: Vec<String> = plan.nameservers.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "    dns-nameservers {}", ns.join(" "));
    }
    if !plan.search.is_empty() {
        let _ = writeln!(out, "    dns-search {}", plan.search.join(" "));
    }
}

/// The whole file.
pub fn render(plan: &Plan, source: &str) -> (String, Vec<String>) {
    let mut out =
        format!("# Written by metaboot from {source}; metaboot rewrites it for a new instance.\n");
    let mut unnamed = Vec::new();
    let mut defaults = DefaultRoutes::default();
    for interface in &plan.interfaces {
        let Some(name) = &interface.name else {
            if interface.is_static() {
                unnamed.push(interface.label());
            }
            continue;
        };
        interface_stanzas(&mut out, name, interface, plan, &mut defaults);
    }
    (out, unnamed)
}

/// ifupdown's program that brings an interface up.
const IFUP: &str = "ifup";
/// ifupdown's program that takes an interface down: `ifup` of an interface it has up (by the
/// image's own stanza, or metaboot's earlier one) says "already configured" and changes
/// nothing until the next boot.
const IFDOWN: &str = "ifdown";

/// Writes the file; brings the static interfaces down and up again when the root is `/` (the run's
/// documents are fetched by then, and their static addresses are the instance's), the file put back
/// as it was when one fails before its address ([`bring_back`]), and sets the MTU and routes of the
/// others, whose DHCP lease is kept.
pub fn apply(root: &Root, plan: &Plan, source: &str) -> Applied {
    apply_with(root, plan, source, root.is_host().then_some(&mut live::run))
}

/// [`apply`], with `live` running `ifdown NAME` and `ifup NAME`, and `ip` for an MTU or a route
/// (`None`: no live changes, a root other than `/`). The file is published first: ifup reads it from the directory, where
/// a staged run's write is only a temp file until then.
pub fn apply_with(root: &Root, plan: &Plan, source: &str, live: Option<Run<'_>>) -> Applied {
    let mut applied = Applied::default();
    let (text, unnamed) = render(plan, source);
    for label in unnamed {
        applied.errors.push(format!(
            "{label}: no interface of this system has its MAC, so ifupdown cannot name it"
        ));
    }
    let unread = unread(root);
    applied.errors.extend(unread.clone());
    // What the file was, to put back when the new one's `ifup` fails (`None`: unreadable).
    let old = root.read_optional(FILE).ok();
    if old
        .as_ref()
        .is_some_and(|old| old.as_deref() == Some(text.as_bytes()))
    {
        applied.done.push(format!("{FILE} (unchanged)"));
        return applied;
    }
    if let Err(err) = root.write_atomic(FILE, text.as_bytes(), &WriteOptions::keep_or(0o644)) {
        applied.errors.push(crate::log::chain(&err));
        return applied;
    }
    applied.done.push(FILE.to_owned());
    // `ifup` would not know the interfaces.
    let (Some(mut run), None) = (live, unread) else {
        return applied;
    };
    let (dynamic, fixed): (Vec<&Interface>, Vec<&Interface>) =
        plan.interfaces.iter().partition(|i| i.is_dynamic());
    // A DHCP link that holds no address has no lease to keep: no stanza of the image's named it
    // (a second NIC), so nothing brought it up, and it would stay down for the whole boot, its
    // routes refused. It is brought up with its new stanza (MTU and routes with it).
    let (running, unconfigured): (Vec<&Interface>, Vec<&Interface>) =
        dynamic.into_iter().partition(|interface| {
            own_link(root, interface).is_none_or(|name| holds_address(root, name))
        });
    mtu::set_live(root, running.iter().copied(), &mut run, &mut applied);
    running::set_routes(root, running, &mut run, &mut applied);
    root.publish();
    // The interfaces brought up with the new file so far.
    let mut switched: Vec<&str> = Vec::new();
    for interface in fixed {
        // One with nothing to configure has no stanza.
        let Some(name) = interface.name.as_ref().filter(|_| interface.is_static()) else {
            continue;
        };
        let args = std::slice::from_ref(name);
        // Not configured: nothing to take down.
        let down = run(IFDOWN, args);
        if let Err(err) = &down {
            applied.warnings.push(err.clone());
        }
        match run(IFUP, args) {
            Ok(()) => {
                applied.done.push(format!("{IFUP} {name}"));
                switched.push(name);
            }
            // A line after the address failed (a default route beside a DHCP client's): the
            // interface is up and reachable, as ifupdown leaves it at boot.
            Err(err) if holds_one_of(root, name, &interface.addresses) => {
                applied.errors.push(format!(
                    "{err}: {name} came up with its new address, but not with all of its stanza \
                     (fix the document's configuration of it and run the step again)"
                ));
            }
            Err(err) => {
                let failed = Failed {
                    name,
                    taken_down: down.is_ok(),
                    error: err,
                };
                bring_back(root, old, &failed, &switched, &mut run, &mut applied);
                return applied;
            }
        }
    }
    for interface in unconfigured {
        let Some(name) = own_link(root, interface) else {
            continue;
        };
        match run(IFUP, &[name.to_owned()]) {
            Ok(()) => applied.done.push(format!("{IFUP} {name}")),
            Err(err) => applied.errors.push(format!(
                "{err} ({name} holds no address: it stays down until its stanza comes up)"
            )),
        }
    }
    applied
}

/// A static interface whose `ifup` with the new file failed before any of its new addresses.
struct Failed<'a> {
    name: &'a str,
    /// Whether `ifdown` took its old configuration off before.
    taken_down: bool,
    /// What `ifup` said.
    error: String,
}

/// The new file is not kept when an interface's `ifup` fails with it before any of its new
/// addresses: `ifdown` took the interface down, and it would stay down for the rest of the
/// boot (and come up with the same stanzas at the next). The interfaces brought up with it
/// before (`switched`) are taken down while its stanzas are still there (ifupdown reads a
/// stanza's down commands from the file);
/// the global addresses the failed `ifup` left on its interface are flushed (only when
/// `ifdown` took the old configuration off first: else they may be the ones it runs on); the
/// file is put back as it was (`old`; removed when there was none), and all of them are
/// brought up again with the configuration they had. The error says what failed and that the
/// document's configuration is not applied.
fn bring_back(
    root: &Root,
    old: Option<Option<Vec<u8>>>,
    failed: &Failed<'_>,
    switched: &[&str],
    run: &mut Run<'_>,
    applied: &mut Applied,
) {
    let name = failed.name;
    for earlier in switched {
        if let Err(err) = run(IFDOWN, &[(*earlier).to_owned()]) {
            applied.warnings.push(err);
        }
    }
    if failed.taken_down {
        let flush = ["addr", "flush", "dev", name, "scope", "global"].map(str::to_owned);
        if let Err(err) = run("ip", &flush) {
            applied.warnings.push(err);
        }
    }
    let restored = match old {
        Some(Some(bytes)) => root
            .write_atomic_now(FILE, &bytes, &WriteOptions::keep_or(0o644))
            .map_err(|err| crate::log::chain(&err)),
        Some(None) => root
            .remove_file(FILE)
            .map(|_| ())
            .map_err(|err| format!("remove {FILE}: {err}")),
        None => Err(format!("{FILE} could not be read before it was replaced")),
    };
    let mut message = format!(
        "{}: the configuration of {name} did not come up (fix the document's configuration of \
         it and run the step again); ",
        failed.error
    );
    if let Err(err) = restored {
        let _ = write!(
            message,
            "{FILE} could not be put back as it was ({err}): {name} is down until it is fixed"
        );
        applied.errors.push(message);
        return;
    }
    applied.done.retain(|done| done != FILE);
    applied.done.push(format!("{FILE} put back as it was"));
    let mut again = vec![name];
    again.extend(switched);
    let _ = write!(
        message,
        "{FILE} was put back as it was and {} brought up again with it",
        again.join(", ")
    );
    for interface in again {
        match run(IFUP, &[interface.to_owned()]) {
            Ok(()) => applied.done.push(format!("{IFUP} {interface} (as it was)")),
            Err(err) => {
                let _ = write!(message, "; that failed too for {interface}: {err}");
            }
        }
    }
    applied.errors.push(message);
}

/// Why ifupdown never reads [`FILE`], if it does not: the image's [`INTERFACES`] sources
/// nothing of [`DIR`] as its `ifup` reads `source` lines (`sources.rs`; with two `ifup`s, as
/// either does). The file is written all the same, so that the fix the message asks for is all
/// it takes.
fn unread(root: &Root) -> Option<String> {
    let ifups = sources::ifups(root, &IFUP_PATHS);
    if ifups
        .iter()
        .any(|ifup| sources::reads(root, *ifup, INTERFACES, FILE))
    {
        return None;
    }
    let names: Vec<&str> = ifups.iter().map(|ifup| ifup.name()).collect();
    Some(format!(
        "{INTERFACES} reads no file of {DIR} as {} reads it (nor does a file it sources): \
         ifupdown never applies {FILE} (written all the same); add `source-directory {DIR}` to \
         {INTERFACES}, which Debian's ifupdown, ifupdown-ng and busybox read (`source {DIR}/*` \
         only Debian's and ifupdown-ng 0.12 or later; relative paths only Debian's), then \
         reboot",
        names.join(" or ")
    ))
}
