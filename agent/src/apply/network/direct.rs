//! No network manager (the tiny busybox image): the plan is applied to the running system
//! with `ip` (busybox's or iproute2's; the same arguments work for both), and DNS goes to
//! `/etc/resolv.conf` (unless it is a symlink: then a resolver manager's, left to it). DHCP
//! links are left to the image's DHCP client. Nothing here persists
//! across a reboot except `/etc/resolv.conf`: such an image brings its network up itself.
//! A link already up with the wanted MTU gets no `ip link set`: each `ip` is a process, and
//! on an emulated guest (the tiny image under TCG) a process start costs tens of ms.

use std::path::Path;
use std::process::Command;

use super::links::link_in_place;
use super::plan::{Applied, Plan, resolv_conf};
use crate::fsutil::WriteOptions;
use crate::root::Root;

/// The resolver's configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `ip` commands for the plan, in order: link (MTU, up), addresses, routes (`onlink` for a
/// gateway outside the link's subnets, `plan::Interface::gateway_onlink`; busybox's `ip` takes it
/// too). A link for which `in_place(name, mtu)` holds gets no `link set` command.
pub fn commands(plan: &Plan, in_place: impl Fn(&str, Option<u32>) -> bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // A family's first default route replaces the one there; a further one (another subnet's,
    // another interface's) is appended, not put in its place.
    let mut defaults = [false; 2];
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for interface in &plan.interfaces {
        let Some(name) = &interface.name else {
            continue;
        };
        if !in_place(name, interface.mtu) {
            let mut link = args(&["link", "set", "dev", name]);
            if let Some(mtu) = interface.mtu {
                link.extend(args(&["mtu", &mtu.to_string()]));
            }
            link.push("up".to_owned());
            out.push(link);
        }
        for address in &interface.addresses {
            let family = if address.ip.is_ipv6() { "-6" } else { "-4" };
            out.push(args(&[
                family,
                "addr",
                "add",
                &address.to_string(),
                "dev",
                name,
            ]));
        }
        for route in &interface.routes {
            let family = if route.via.is_ipv6() { "-6" } else { "-4" };
            let mut how = "replace";
            let to = if route.is_default() {
                let seen = &mut defaults[usize::from(route.via.is_ipv6())];
                if std::mem::replace(seen, true) {
                    how = "append";
                }
                "default".to_owned()
            } else {
                route.to.to_string()
            };
            let mut command = args(&[
                family,
                "route",
                how,
                &to,
                "via",
                &route.via.to_string(),
                "dev",
                name,
            ]);
            // A gateway outside the link's subnets: refused without it.
            if interface.gateway_onlink(route) {
                command.push("onlink".to_owned());
            }
            out.push(command);
        }
    }
    out
}

/// Runs the commands (root `/` only) and writes `/etc/resolv.conf` (when there is DNS).
pub fn apply(root: &Root, plan: &Plan, source: &str) -> Applied {
    let mut applied = Applied::default();
    for interface in &plan.interfaces {
        if interface.name.is_none() {
            let line = format!("{}: not on this system", interface.label());
            if interface.is_static() {
                applied.errors.push(line);
            } else {
                applied.done.push(line);
            }
        } else if interface.dhcp4 && !interface.is_static() {
            applied.done.push(format!(
                "{}: DHCP (the image's DHCP client configures it)",
                interface.label()
            ));
        }
    }
    let commands = commands(plan, |name, mtu| link_in_place(root, name, mtu));
    if root.is_host() {
        for args in &commands {
            match Command::new("ip").args(args).output() {
                Ok(out) if out.status.success() => {}
                // `addr add` of an address already there: the wanted state.
                Ok(out) if String::from_utf8_lossy(&out.stderr).contains("File exists") => {}
                Ok(out) => applied.errors.push(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(err) => applied.errors.push(format!("ip {}: {err}", args.join(" "))),
            }
        }
        applied.done.extend(
            commands
                .iter()
                .filter(|a| a.contains(&"addr".to_owned()) || a.contains(&"route".to_owned()))
                .map(|a| format!("ip {}", a.join(" "))),
        );
    } else if !commands.is_empty() {
        applied.done.push(format!(
            "root is not /: {} ip command(s) not run",
            commands.len()
        ));
    }
    let existing = root.read_optional_string(RESOLV_CONF).ok().flatten();
    let Some(text) = resolv_conf(plan, source, existing.as_deref()) else {
        return applied;
    };
    match root.link_target(RESOLV_CONF) {
        Ok(None) => {}
        Ok(Some(target)) => {
            applied.warnings.push(managed_elsewhere(source, &target));
            return applied;
        }
        Err(err) => {
            applied
                .errors
                .push(format!("{RESOLV_CONF}: {err}: its DNS was not written"));
            return applied;
        }
    }
    match root.write_atomic(RESOLV_CONF, text.as_bytes(), &WriteOptions::keep_or(0o644)) {
        Ok(()) => applied.done.push(RESOLV_CONF.to_owned()),
        Err(err) => applied.errors.push(crate::log::chain(&err)),
    }
    applied
}

/// Why the DNS of `source` was not written to a `/etc/resolv.conf` that is a symlink (to
/// `target`): the file is then a resolver manager's (systemd-resolved's
/// `/run/systemd/resolve/stub-resolv.conf`, NetworkManager's, resolvconf's), which would
/// rewrite a file put in its place, or find its link gone for good.
fn managed_elsewhere(source: &str, target: &Path) -> String {
    format!(
        "the DNS servers and search domains of {source} were not written: {RESOLV_CONF} is a \
         link to {}, which its resolver manager writes; give them to that manager (or replace \
         the link with a file and run the step again)",
        target.display()
    )
}
