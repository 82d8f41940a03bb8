//! ifupdown: one file, `/etc/network/interfaces.d/50-metaboot`, with a stanza per interface
//! and family (`inet static|dhcp`, `inet6 static|auto|dhcp`), as cloud-init's ENI renderer
//! writes `50-cloud-init`. The image's `/etc/network/interfaces` must `source` the directory
//! (Debian's does). Static interfaces are brought up at once (`ifup`) when the root is `/`.

use std::fmt::Write as _;
use std::process::Command;

use super::plan::{Applied, Interface, Ipv6Auto, Plan};
use crate::fsutil::WriteOptions;
use crate::root::Root;

/// The image's main file (its presence, with `ifup`, means ifupdown).
pub const INTERFACES: &str = "/etc/network/interfaces";
/// The file metaboot writes.
pub const FILE: &str = "/etc/network/interfaces.d/50-metaboot";

fn stanza(out: &mut String, name: &str, interface: &Interface, v6: bool, plan: &Plan) {
    let family = if v6 { "inet6" } else { "inet" };
    let addresses: Vec<_> = interface
        .addresses
        .iter()
        .filter(|a| a.ip.is_ipv6() == v6)
        .collect();
    let routes: Vec<_> = interface
        .routes
        .iter()
        .filter(|r| r.via.is_ipv6() == v6)
        .collect();
    let method = match (v6, interface.dhcp4, interface.ipv6) {
        (_, _, _) if !addresses.is_empty() => "static",
        (false, true, _) => "dhcp",
        (true, _, Ipv6Auto::Dhcp) => "dhcp",
        (true, _, Ipv6Auto::Slaac) => "auto",
        _ => return,
    };
    let _ = writeln!(out, "iface {name} {family} {method}");
    if let Some(mtu) = interface.mtu.filter(|_| !v6) {
        let _ = writeln!(out, "    mtu {mtu}");
    }
    for (i, address) in addresses.iter().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "    address {address}");
        } else {
            let _ = writeln!(out, "    up ip addr add {address} dev {name}");
        }
    }
    for route in routes {
        if route.is_default() && method == "static" {
            let _ = writeln!(out, "    gateway {}", route.via);
        } else {
            let _ = writeln!(
                out,
                "    up ip {}route replace {} via {} dev {name}",
                if v6 { "-6 " } else { "" },
                route.to,
                route.via
            );
        }
    }
    if method == "static" && !v6 {
        if !plan.nameservers.is_empty() {
            let ns: Vec<String> = plan.nameservers.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "    dns-nameservers {}", ns.join(" "));
        }
        if !plan.search.is_empty() {
            let _ = writeln!(out, "    dns-search {}", plan.search.join(" "));
        }
    }
}

/// The whole file.
pub fn render(plan: &Plan, source: &str) -> (String, Vec<String>) {
    let mut out =
        format!("# Written by metaboot from {source}; metaboot rewrites it for a new instance.\n");
    let mut unnamed = Vec::new();
    for interface in &plan.interfaces {
        let Some(name) = &interface.name else {
            if interface.is_static() {
                unnamed.push(interface.label());
            }
            continue;
        };
        let _ = write!(out, "\nauto {name}\n");
        stanza(&mut out, name, interface, false, plan);
        stanza(&mut out, name, interface, true, plan);
    }
    (out, unnamed)
}

/// Writes the file; brings the static interfaces up when the root is `/`.
pub fn apply(root: &Root, plan: &Plan, source: &str) -> Applied {
    let mut applied = Applied::default();
    let (text, unnamed) = render(plan, source);
    for label in unnamed {
        applied.errors.push(format!(
            "{label}: no interface of this system has its MAC, so ifupdown cannot name it"
        ));
    }
    if root.read_optional_string(FILE).ok().flatten().as_deref() == Some(text.as_str()) {
        applied.done.push(format!("{FILE} (unchanged)"));
        return applied;
    }
    if let Err(err) = root.write_atomic(FILE, text.as_bytes(), &WriteOptions::keep_or(0o644)) {
        applied.errors.push(crate::log::chain(&err));
        return applied;
    }
    applied.done.push(FILE.to_owned());
    if !root.is_host() {
        return applied;
    }
    for interface in plan.interfaces.iter().filter(|i| i.is_static()) {
        let Some(name) = &interface.name else {
            continue;
        };
        match Command::new("ifup").arg(name).output() {
            Ok(out) if out.status.success() => applied.done.push(format!("ifup {name}")),
            Ok(out) => applied.errors.push(format!(
                "ifup {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(err) => applied.errors.push(format!("ifup {name}: {err}")),
        }
    }
    applied
}
