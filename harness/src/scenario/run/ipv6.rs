//! The `ipv6-only` flow's own checks: the guest on an IPv6-only network has no IPv4 address
//! (so its metadata can only have come over IPv6), holds the registry's IPv6 address (behind
//! the router with the default route `network_data.json` gave it; on the isolated network the
//! SLAAC address the registry expects), and its guest agent says the metadata service answered
//! at `fe80::a9fe:a9fe` on its NIC.

use std::path::Path;

use metaboot_proto::METADATA_IPV6;

use super::{Runner, ScenarioReport};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::lab::registry::InstanceRecord;
use crate::scenario::matrix::Scenario;

/// Separates the outputs of the commands the address check runs in one ssh session.
const SEPARATOR: &str = "--metaboot-check--";

/// The name of the check of the guest's addresses (the report's table labels it by name).
const IPV6_ADDRESS_CHECK: &str = "IPv6 address and route, no IPv4";
/// The name of the check of the URL that answered.
const IPV6_METADATA_CHECK: &str = "metadata from fe80::a9fe:a9fe";

/// The guest agent's log line naming the URL that answered.
const ANSWERED: &str = "metadata service answered";

impl Runner<'_> {
    /// The checks only an IPv6-only guest needs (after the usual ones of its boot).
    pub(super) fn check_ipv6_only(
        &self,
        scenario: &Scenario,
        target: &SshTarget,
        key: &Path,
        record: &InstanceRecord,
        report: &mut ScenarioReport,
    ) {
        // An isolated network has no router: no default route to look for.
        let gateway = self
            .lab
            .network(scenario.network())
            .ok()
            .filter(|n| !n.isolated)
            .map(|n| n.gateway.to_string());
        let checks = [
            (
                IPV6_ADDRESS_CHECK,
                check_addresses(target, key, &record.ip.to_string(), gateway.as_deref()),
            ),
            (IPV6_METADATA_CHECK, check_metadata_url(target, key)),
        ];
        for (name, result) in checks {
            report.checks.push(match result {
                Ok(check) => CheckResult {
                    name: name.to_owned(),
                    ..check
                },
                Err(err) => CheckResult::fail(name, format!("{err:#}")),
            });
        }
    }
}

/// `ip` inside the guest: no IPv4 address on eth0, the registry's IPv6 address (a /64), and
/// the default route through the router's IPv6 address when there is a router.
fn check_addresses(
    target: &SshTarget,
    key: &Path,
    ip: &str,
    gateway: Option<&str>,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(
        target,
        key,
        &format!(
            "ip -4 addr show dev eth0; echo {SEPARATOR}; ip -6 addr show dev eth0; ip -6 route"
        ),
    )?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    Ok(addresses_result(&out.stdout, ip, gateway))
}

fn addresses_result(text: &str, ip: &str, gateway: Option<&str>) -> CheckResult {
    let (ipv4, ipv6) = text.split_once(SEPARATOR).unwrap_or((text, ""));
    let route = gateway.map(|gateway| format!("default via {gateway}"));
    let ok = !ipv4.contains("inet ")
        && ipv6.contains(&format!("inet6 {ip}/64"))
        && route.as_ref().is_none_or(|route| ipv6.contains(route));
    CheckResult::from_bool(
        "",
        ok,
        format!(
            "expected no inet, inet6 {ip}/64{}, got {:?}",
            route.map(|r| format!(" and {r}")).unwrap_or_default(),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    )
}

/// The guest agent's log names the URL that answered: `fe80::a9fe:a9fe`, zoned to its NIC.
fn check_metadata_url(target: &SshTarget, key: &Path) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(
        target,
        key,
        &format!("grep '{ANSWERED}' /var/log/metaboot.log"),
    )?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    Ok(url_result(&out.stdout))
}

fn url_result(log: &str) -> CheckResult {
    let wanted = format!("[{METADATA_IPV6}%25eth0]");
    let ok = log.lines().any(|line| line.contains(&wanted));
    CheckResult::from_bool(
        "",
        ok,
        format!(
            "expected \"{ANSWERED}\" with http://{wanted} in /var/log/metaboot.log, got {:?}",
            log.trim()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_check_wants_ipv6_alone() {
        let good = format!(
            "{SEPARATOR}\n2: eth0: <UP>\n    inet6 fdc6:1200:0:40::2/64 scope global\n    \
             inet6 fe80::f816:3eff:fe01:203/64 scope link\ndefault via fdc6:1200:0:40::1 dev eth0\n"
        );
        let (ip, gateway) = ("fdc6:1200:0:40::2", Some("fdc6:1200:0:40::1"));
        assert!(addresses_result(&good, ip, gateway).passed);
        let with_ipv4 = format!("    inet 198.18.40.5/24 scope global eth0\n{good}");
        assert!(!addresses_result(&with_ipv4, ip, gateway).passed);
        let no_route = good.replace("default via", "fdc6:1200:0:40::/64 dev");
        assert!(!addresses_result(&no_route, ip, gateway).passed);
        // Isolated: no router, so no route is asked for; the address still is.
        assert!(addresses_result(&no_route, ip, None).passed);
        assert!(!addresses_result(&no_route, "fdc6:1200:0:40::3", None).passed);
    }

    #[test]
    fn the_url_check_wants_the_zoned_ipv6_address() {
        let line = "2026-12-02T03:40:00Z INFO metadata service answered \
                    url=\"http://[fe80::a9fe:a9fe%25eth0]\"";
        assert!(url_result(line).passed);
        let ipv4 = "INFO metadata service answered url=\"http://169.254.169.254\"";
        assert!(!url_result(ipv4).passed);
        assert!(!url_result("").passed);
    }
}
