//! A libvirt network, as on a plain libvirt host: a bridge with the host's address, libvirt's
//! own dnsmasq handing out leases, NAT forwarding (the guests' default route goes to the host,
//! where `metaboot-server all` puts 169.254.169.254). The harness makes it transient (`virsh
//! net-create`) with the libvirtd it runs inside a lab namespace, so the bridge, the dnsmasq and
//! libvirt's iptables rules live in that namespace only; `virsh net-destroy` removes it at the
//! end, also on failure (on drop).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;

use super::libvirtd::{URI, VIRSH_TIMEOUT, virsh};
use crate::lab::config::LAB_RANGE;
use crate::process::{describe, output_with_timeout};
use crate::wait::wait_until_ok;

/// The lab's libvirt network: a /24 of the lab range that no other lab network uses (the
/// Neutron-like lab takes 198.18.0–59.x; the libvirt network lives in its own namespace
/// anyway).
pub const LAB_SUBNET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 60, 0), 24) {
    Ok(net) => net,
    Err(_) => panic!("198.18.60.0/24 is a valid network"),
};

/// The first and last host number of the DHCP range (the rest stays for fixed addresses).
pub const DHCP_RANGE: (u8, u8) = (100, 199);

/// libvirt's filter that keeps a guest to its own MAC and IP (and DHCP, ARP).
pub const CLEAN_TRAFFIC: &str = "clean-traffic";

/// How often leases are read while waiting for one.
pub const LEASE_POLL: Duration = Duration::from_millis(500);

/// A libvirt network to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// libvirt's name of the network.
    pub name: String,
    /// The bridge libvirt makes.
    pub bridge: String,
    /// The subnet; the host (gateway) has its first address.
    pub subnet: Ipv4Net,
}

impl NetworkSpec {
    /// The lab's network for lab `id`: `metaboot-ID` on bridge `virbr-ID` in [`LAB_SUBNET`].
    pub fn for_lab(id: &str) -> Self {
        Self {
            name: format!("metaboot-{id}"),
            bridge: format!("virbr-{id}"),
            subnet: LAB_SUBNET,
        }
    }

    /// The host's address on the bridge (the guests' default gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        nth(self.subnet, 1)
    }

    /// The DHCP range.
    pub fn dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            nth(self.subnet, DHCP_RANGE.0),
            nth(self.subnet, DHCP_RANGE.1),
        )
    }

    /// A fixed address outside the DHCP range (host number `host`, below [`DHCP_RANGE`]).
    pub fn fixed(&self, host: u8) -> Ipv4Addr {
        nth(self.subnet, host)
    }

    /// Fails unless the subnet is a /24 inside the lab range.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !LAB_RANGE.contains(&self.subnet) || self.subnet.prefix_len() != 24 {
            bail!(
                "libvirt network {}: {} must be a /24 inside {LAB_RANGE}",
                self.name,
                self.subnet
            );
        }
        if self.bridge.len() > crate::lab::bridge::MAX_IFNAME_LEN {
            bail!("bridge name {} is longer than 15 bytes", self.bridge);
        }
        Ok(())
    }

    /// The network XML (what `virsh net-dumpxml default` shows on a fresh libvirt host, in the
    /// lab's addresses; no STP and no forwarding delay, so the first DHCP packet passes).
    pub fn xml(&self) -> String {
        let (first, last) = self.dhcp_range();
        let mut xml = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(xml, "<network>");
        let _ = writeln!(xml, "  <name>{}</name>", self.name);
        let _ = writeln!(xml, "  <forward mode='nat'/>");
        let _ = writeln!(
            xml,
            "  <bridge name='{}' stp='off' delay='0'/>",
            self.bridge
        );
        let _ = writeln!(
            xml,
            "  <ip address='{}' netmask='{}'>",
            self.gateway(),
            self.subnet.netmask()
        );
        let _ = writeln!(xml, "    <dhcp>");
        let _ = writeln!(xml, "      <range start='{first}' end='{last}'/>");
        let _ = writeln!(xml, "    </dhcp>");
        let _ = writeln!(xml, "  </ip>");
        let _ = writeln!(xml, "</network>");
        xml
    }
}

/// A random MAC in the range libvirt and QEMU give guests (`52:54:00:…`), as a user picks one
/// for `virt-install --network network=NAME,mac=…`.
pub fn random_mac() -> anyhow::Result<String> {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("failed to pick a MAC: {e}"))?;
    Ok(format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        bytes[0], bytes[1], bytes[2]
    ))
}

fn nth(net: Ipv4Net, host: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + u32::from(host))
}

/// One lease of libvirt's dnsmasq (`virsh net-dhcp-leases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The guest's MAC.
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The host name it sent, if any.
    pub hostname: Option<String>,
}

/// A running libvirt network; destroyed when dropped.
#[derive(Debug)]
pub struct Network {
    spec: NetworkSpec,
    destroyed: bool,
}

impl Network {
    /// Creates the transient network `spec` (its XML written to `dir`) with the running
    /// libvirtd.
    pub fn create(spec: &NetworkSpec, dir: &Path) -> anyhow::Result<Self> {
        spec.validate()?;
        let path = dir.join(format!("{}.network.xml", spec.name));
        crate::atomic::write(&path, spec.xml().as_bytes(), 0o644)?;
        virsh_ok(&mut virsh([
            std::ffi::OsStr::new("net-create"),
            path.as_os_str(),
        ]))?;
        Ok(Self {
            spec: spec.clone(),
            destroyed: false,
        })
    }

    /// What it was made from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The leases libvirt's dnsmasq handed out.
    pub fn leases(&self) -> anyhow::Result<Vec<Lease>> {
        let out = virsh_ok(&mut virsh(["net-dhcp-leases", &self.spec.name]))?;
        Ok(parse_leases(&out))
    }

    /// Waits until the guest with `mac` has a lease (other than `not`); returns its address.
    pub fn wait_for_lease(
        &self,
        mac: &str,
        not: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> anyhow::Result<Ipv4Addr> {
        wait_until_ok(Instant::now() + timeout, LEASE_POLL, || {
            let leases = self.leases()?;
            leases
                .iter()
                .find(|l| l.mac.eq_ignore_ascii_case(mac) && Some(l.ip) != not)
                .map(|l| l.ip)
                .with_context(|| {
                    format!(
                        "no lease for {mac} on libvirt network {} (leases: {leases:?})",
                        self.spec.name
                    )
                })
        })
        .with_context(|| format!("no lease within {timeout:?}"))
    }

    /// Gives `mac` the fixed address `ip` from now on (`virsh net-update … ip-dhcp-host`, as
    /// a user fixes a guest's address), replacing an entry it has.
    pub fn set_host(&self, mac: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        let entry = format!("<host mac='{mac}' ip='{ip}'/>");
        let update = |command: &str| {
            virsh_ok(&mut virsh([
                "net-update",
                &self.spec.name,
                command,
                "ip-dhcp-host",
                &entry,
                "--live",
            ]))
        };
        update("modify").or_else(|_| update("add-last"))?;
        Ok(())
    }

    /// Destroys the network (nothing when it is already gone). Only once virsh says it is gone
    /// is it marked destroyed: after a failure, a later call (the one on drop) tries again.
    pub fn destroy(&mut self) -> anyhow::Result<()> {
        self.destroy_with(|cmd| output_with_timeout(cmd, VIRSH_TIMEOUT))
    }

    /// [`Network::destroy`], with `run` running the `virsh net-destroy`.
    fn destroy_with(
        &mut self,
        run: impl FnOnce(&mut std::process::Command) -> anyhow::Result<std::process::Output>,
    ) -> anyhow::Result<()> {
        if self.destroyed {
            return Ok(());
        }
        let name = &self.spec.name;
        let mut cmd = virsh(["net-destroy", name]);
        let out = run(&mut cmd)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !network_gone(out.status.success(), &stderr) {
            bail!(
                "{} failed: {} (the network may still be up: `virsh -c {URI} net-destroy {name}`)",
                describe(&cmd),
                stderr.trim()
            );
        }
        self.destroyed = true;
        Ok(())
    }
}

/// Whether `virsh net-destroy`'s answer (its success and stderr) says the network is gone: it
/// stopped it, or there was none to stop (VIR_ERR_NO_NETWORK, or one not active).
fn network_gone(success: bool, stderr: &str) -> bool {
    success || stderr.contains("Network not found") || stderr.contains("network is not active")
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            eprintln!(
                "failed to destroy libvirt network {}: {err:#}",
                self.spec.name
            );
        }
    }
}

/// Runs a `virsh` command; its standard output, or an error with its message.
fn virsh_ok(cmd: &mut std::process::Command) -> anyhow::Result<String> {
    let out = output_with_timeout(cmd, VIRSH_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            describe(cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads `virsh -q net-dhcp-leases` lines: expiry date, time, MAC, protocol, IP/prefix, host
/// name (`-` when none), client id.
fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (mac, proto, addr) = (fields.get(2)?, fields.get(3)?, fields.get(4)?);
            if *proto != "ipv4" {
                return None;
            }
            let ip = addr.split('/').next()?.parse().ok()?;
            let hostname = fields
                .get(5)
                .filter(|h| **h != "-")
                .map(|h| (*h).to_owned());
            Some(Lease {
                mac: (*mac).to_owned(),
                ip,
                hostname,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_network_is_a_nat_network_in_its_own_part_of_the_lab_range() {
        let spec = NetworkSpec::for_lab("ab12");
        spec.validate().unwrap();
        assert_eq!(spec.bridge, "virbr-ab12");
        assert_eq!(spec.gateway(), Ipv4Addr::new(198, 18, 60, 1));
        assert_eq!(spec.fixed(50), Ipv4Addr::new(198, 18, 60, 50));
        const { assert!(DHCP_RANGE.0 > 50 && DHCP_RANGE.0 < DHCP_RANGE.1) };
        let xml = spec.xml();
        for expect in [
            "<name>metaboot-ab12</name>",
            "<forward mode='nat'/>",
            "<bridge name='virbr-ab12' stp='off' delay='0'/>",
            "<ip address='198.18.60.1' netmask='255.255.255.0'>",
            "<range start='198.18.60.100' end='198.18.60.199'/>",
        ] {
            assert!(xml.contains(expect), "{expect} in\n{xml}");
        }
        let outside = NetworkSpec {
            subnet: "192.168.122.0/24".parse().unwrap(),
            ..spec.clone()
        };
        assert!(outside.validate().is_err());
    }

    /// A `net-destroy` that failed (libvirtd unreachable, busy) leaves the network to be
    /// destroyed again, on drop at the latest; one that stopped it, or found none, does not.
    #[test]
    fn a_network_counts_as_destroyed_only_when_virsh_says_it_is_gone() {
        use std::os::unix::process::ExitStatusExt;
        let answer = |code: i32, stderr: &str| std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        // Never dropped: its drop would ask the host's libvirtd.
        let mut net = std::mem::ManuallyDrop::new(Network {
            spec: NetworkSpec::for_lab("ab12"),
            destroyed: false,
        });
        let unreachable = "error: failed to connect to the hypervisor\n\
            error: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n";
        let err = net
            .destroy_with(|_| Ok(answer(1, unreachable)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to connect") && err.contains("net-destroy metaboot-ab12`"),
            "{err}"
        );
        assert!(!net.destroyed, "tried again later");
        net.destroy_with(|_| anyhow::bail!("virsh did not finish"))
            .unwrap_err();
        assert!(!net.destroyed);
        net.destroy_with(|_| Ok(answer(0, ""))).unwrap();
        assert!(net.destroyed);
        // Once destroyed, virsh is not run again.
        net.destroy_with(|_| panic!("virsh run again")).unwrap();
        let not_found = "error: failed to get network 'metaboot-ab12'\n\
            error: Network not found: no network with matching name 'metaboot-ab12'\n";
        assert!(network_gone(false, not_found));
        assert!(network_gone(
            false,
            "error: Requested operation is not valid: network is not active\n"
        ));
        assert!(!network_gone(false, unreachable));
    }

    #[test]
    fn the_network_xml_validates_against_libvirts_schema() {
        if !crate::process::tool_for_test(
            "virt-xml-validate",
            "scripts/install-lab-deps installs libvirt-clients",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.xml");
        std::fs::write(&path, NetworkSpec::for_lab("ab12").xml()).unwrap();
        let out = std::process::Command::new("virt-xml-validate")
            .arg(&path)
            .arg("network")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn leases_are_read_from_virsh() {
        let text = " 2026-12-02 07:22:58   52:54:00:aa:bb:01   ipv4       198.18.60.123/24   tiny       01:52:54:00:aa:bb:01\n \
                     2026-12-02 07:23:01   52:54:00:aa:bb:02   ipv4       198.18.60.150/24   -          -\n \
                     2026-12-02 07:23:01   52:54:00:aa:bb:03   ipv6       fd00::5/64         -          -\n";
        assert_eq!(
            parse_leases(text),
            vec![
                Lease {
                    mac: "52:54:00:aa:bb:01".into(),
                    ip: Ipv4Addr::new(198, 18, 60, 123),
                    hostname: Some("tiny".into()),
                },
                Lease {
                    mac: "52:54:00:aa:bb:02".into(),
                    ip: Ipv4Addr::new(198, 18, 60, 150),
                    hostname: None,
                },
            ]
        );
        assert!(parse_leases("").is_empty());
    }

    #[test]
    fn random_macs_are_qemus() {
        let mac = random_mac().unwrap();
        assert!(mac.starts_with("52:54:00:") && mac.len() == 17, "{mac}");
        assert!(LEASE_POLL < Duration::from_secs(5));
    }
}
