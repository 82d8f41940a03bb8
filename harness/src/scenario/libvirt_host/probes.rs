//! The libvirt host's cheaper checks: the metadata address on the bridge, an unregistered MAC
//! (a veth behind the bridge with a real lease from libvirt's dnsmasq), and a tiny guest that is
//! served as itself, is not served another guest's data when it takes that guest's address
//! (clean-traffic), and is served as itself again after its lease moved to another address.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metaboot_proto::{METADATA_IPV4, METADATA_URL};

use super::registry::Registry;
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::guest::libvirt_network::{CLEAN_TRAFFIC, random_mac};
use crate::guest::qemu::RunningGuest;
use crate::guest::serial::MARK_PROVISIONED;
use crate::guest::virt_install::NetworkNic;
use crate::guest::{Entropy, Guest};
use crate::image::Image;
use crate::lab::libvirt_host::LibvirtHost;
use crate::lab::netns;
use crate::process::output_with_timeout;
use crate::wait::wait_until_ok;

/// How long a tiny guest may take from `virt-install` (or a reset) to "provisioned".
pub const TINY_BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The OpenStack document every check asks for.
pub const META_DATA_PATH: &str = "/openstack/latest/meta_data.json";

/// How long one metadata request from a client may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a DHCP client behind the bridge may take to get its lease.
pub const CLIENT_LEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the impostor's attempt (address swap, request, address back) may take.
pub const IMPOSTOR_TIMEOUT: Duration = Duration::from_secs(60);

/// The host number of the fixed address the tiny guest's lease moves to.
pub const MOVED_HOST: u8 = 60;

/// The tiny guest's instance (and host) name.
pub const TINY: &str = "tiny-b";

/// A udhcpc event script for the client behind the bridge: the lease's address and route.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
# udhcpc event script of the lab's client behind the libvirt bridge\n\
case \"$1\" in\n\
bound|renew)\n\
\tip -4 addr flush dev \"$interface\"\n\
\tip -4 addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
\tfor gw in $router; do ip -4 route replace default via \"$gw\" dev \"$interface\"; break; done\n\
\t;;\n\
esac\n";

/// `ip -4 addr show` of the bridge lists 169.254.169.254/32 (`all` put it there).
pub(super) fn metadata_address_on_bridge(host: &LibvirtHost) -> CheckResult {
    let name = "169.254.169.254/32 on the libvirt bridge";
    let bridge = &host.network().spec().bridge;
    match netns::ip(&host.ns, &["-4", "addr", "show", "dev", bridge]) {
        Ok(out) => CheckResult::from_bool(
            name,
            out.contains(&format!("inet {METADATA_IPV4}/32")),
            out.split_whitespace().collect::<Vec<_>>().join(" "),
        ),
        Err(err) => CheckResult::fail(name, format!("{err:#}")),
    }
}

/// A machine behind the bridge whose MAC no instance has gets a lease, then 404 for its
/// metadata.
pub(super) fn unregistered_mac(host: &mut LibvirtHost, dir: &Path) -> CheckResult {
    let name = "an unregistered MAC with a lease gets 404";
    match unregistered_status(host, dir) {
        Ok((ip, status)) => CheckResult::from_bool(
            name,
            status == "404",
            format!("{ip} (leased) asked {META_DATA_PATH}: HTTP {status}"),
        ),
        Err(err) => CheckResult::fail(name, format!("{err:#}")),
    }
}

fn unregistered_status(host: &mut LibvirtHost, dir: &Path) -> anyhow::Result<(Ipv4Addr, String)> {
    let mac = random_mac()?;
    let client = host.add_client("x", &mac)?;
    let script = dir.join("udhcpc.script");
    crate::atomic::write(&script, UDHCPC_SCRIPT.as_bytes(), 0o755)?;
    let mut udhcpc = netns::exec(&client, "busybox");
    udhcpc
        .args([
            "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "10", "-T", "1", "-s",
        ])
        .arg(&script);
    let out = output_with_timeout(&mut udhcpc, CLIENT_LEASE_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "udhcpc got no lease: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let ip = host
        .network()
        .wait_for_lease(&mac, None, CLIENT_LEASE_TIMEOUT)?;
    let mut curl = netns::exec(&client, "curl");
    curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "--retry",
            "5",
            "--retry-delay",
            "1",
            "--retry-connrefused",
            "--max-time",
        ])
        .arg(REQUEST_TIMEOUT.as_secs().to_string())
        .arg(format!("{METADATA_URL}{META_DATA_PATH}"));
    let out = output_with_timeout(&mut curl, REQUEST_TIMEOUT * 2)?;
    Ok((ip, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// The tiny guest, registered by MAC and started with virt-install behind clean-traffic.
struct Tiny<'a> {
    host: &'a LibvirtHost,
    image: &'a Image,
    dir: &'a Path,
    mac: String,
    key: std::path::PathBuf,
    uuid: String,
}

impl Tiny<'_> {
    /// Starts it and waits until it is provisioned; returns it and its leased address.
    fn boot(&self, not: Option<Ipv4Addr>) -> anyhow::Result<(RunningGuest, Ipv4Addr)> {
        let serial = self.dir.join(format!(
            "serial-{}.log",
            if not.is_some() { "moved" } else { "first" }
        ));
        let guest = Guest::new(TINY, self.image, &serial).with_entropy(Entropy::CpuMax);
        let mut vm = RunningGuest::start_virt_install(
            &guest,
            &NetworkNic {
                network: self.host.network().spec().name.clone(),
                mac: self.mac.clone(),
                filter: Some(CLEAN_TRAFFIC.to_owned()),
            },
        )?;
        vm.wait_for(MARK_PROVISIONED, 0, Instant::now() + TINY_BOOT_TIMEOUT)
            .with_context(|| vm.console_text())?;
        let ip = self
            .host
            .network()
            .wait_for_lease(&self.mac, not, CLIENT_LEASE_TIMEOUT)?;
        Ok((vm, ip))
    }

    fn target(&self, ip: Ipv4Addr) -> SshTarget {
        SshTarget {
            netns: self.host.ns.clone(),
            ip: ip.into(),
            user: "root".into(),
        }
    }

    /// Logs in with the instance's key at `ip` and asks for its host name and its metadata:
    /// passes when both are the tiny instance's.
    fn served_as_itself(&self, name: &str, ip: Ipv4Addr) -> CheckResult {
        // busybox's wget crashes with -T here: `timeout` bounds it instead.
        let command = format!(
            "hostname; rm -f /tmp/served.json; \
             timeout {} wget -q -O /tmp/served.json {METADATA_URL}{META_DATA_PATH}; \
             cat /tmp/served.json",
            REQUEST_TIMEOUT.as_secs()
        );
        match ssh::with_key(&self.target(ip), &self.key, &command) {
            Ok(out) => {
                let hostname = out.stdout.lines().next().unwrap_or_default().trim();
                CheckResult::from_bool(
                    name,
                    out.success() && hostname == TINY && out.stdout.contains(&self.uuid),
                    format!(
                        "at {ip}: host name {hostname:?}, meta_data {} uuid {} ({})",
                        if out.stdout.contains(&self.uuid) {
                            "has its"
                        } else {
                            "lacks its"
                        },
                        self.uuid,
                        out.summary()
                    ),
                )
            }
            Err(err) => CheckResult::fail(name, format!("{err:#}")),
        }
    }

    /// The guest takes `victim`'s address for one request (then its own again) and reports
    /// what it got; passes when it got none of the victim's data and no answer at all: the
    /// filter drops the impostor's packets before they reach the host.
    fn impostor(&self, own: Ipv4Addr, victim: Ipv4Addr, victim_uuid: &str) -> CheckResult {
        let name = "a guest that takes another's address is not served its data (clean-traffic)";
        match self.impersonate(own, victim) {
            Ok(attempt) => CheckResult::from_bool(
                name,
                !attempt.got.contains(victim_uuid) && !attempt.refused(),
                format!(
                    "from {victim} (the Debian guest's): {}",
                    attempt.describe(victim_uuid)
                ),
            ),
            Err(err) => CheckResult::fail(name, format!("{err:#}")),
        }
    }

    /// The second defence, and the control of the first: the same attempt once the filter is
    /// taken off the guest's interface (`virsh update-device --live`) reaches metaboot (so it is
    /// clean-traffic that stopped it before, not the attempt's own failure) and is refused
    /// with 404, because the host's neighbour table gives the address to the impostor's MAC
    /// while the lease names the victim's.
    fn without_filter(&self, own: Ipv4Addr, victim: Ipv4Addr, victim_uuid: &str) -> CheckResult {
        let name = "without clean-traffic the same impostor reaches metaboot and is refused (404)";
        let attempt = self
            .drop_filter()
            .and_then(|()| self.impersonate(own, victim));
        match attempt {
            Ok(attempt) => CheckResult::from_bool(
                name,
                !attempt.got.contains(victim_uuid) && attempt.refused(),
                format!(
                    "from {victim} without the filter: {}",
                    attempt.describe(victim_uuid)
                ),
            ),
            Err(err) => CheckResult::fail(name, format!("{err:#}")),
        }
    }

    /// Replaces the guest's interface by the same one without a filter.
    fn drop_filter(&self) -> anyhow::Result<()> {
        let xml = format!(
            "<interface type='network'>\n  <mac address='{}'/>\n  <source network='{}'/>\n  \
             <model type='virtio'/>\n</interface>\n",
            self.mac,
            self.host.network().spec().name
        );
        let path = self.dir.join("interface-unfiltered.xml");
        crate::atomic::write(&path, xml.as_bytes(), 0o644)?;
        let mut cmd = crate::guest::libvirtd::virsh([
            std::ffi::OsStr::new("update-device"),
            std::ffi::OsStr::new(TINY),
            path.as_os_str(),
            std::ffi::OsStr::new("--live"),
        ]);
        let out = output_with_timeout(&mut cmd, crate::guest::libvirtd::VIRSH_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                crate::process::describe(&cmd),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn impersonate(&self, own: Ipv4Addr, victim: Ipv4Addr) -> anyhow::Result<Attempt> {
        let gateway = self.host.network().spec().gateway();
        // Detached: the SSH session goes down with the guest's own address.
        // The neighbour cache goes too: the guest asks for the gateway's MAC from the
        // victim's address, so the host learns the impostor's MAC for it.
        let swap = format!(
            "ip -4 addr flush dev eth0; ip neigh flush dev eth0; \
             ip -4 addr add {victim}/24 dev eth0; \
             ip -4 route replace default via {gateway} dev eth0; \
             timeout {t} wget -O /tmp/impostor.json {METADATA_URL}{META_DATA_PATH} \
                 2>/tmp/impostor.err; \
             echo $? > /tmp/impostor.rc; \
             ip -4 addr flush dev eth0; ip -4 addr add {own}/24 dev eth0; \
             ip -4 route replace default via {gateway} dev eth0",
            t = REQUEST_TIMEOUT.as_secs()
        );
        let command = format!(
            "rm -f /tmp/impostor.*; setsid sh -c 'sleep 1; {swap}' </dev/null >/dev/null 2>&1 &"
        );
        let target = self.target(own);
        let out = ssh::with_key(&target, &self.key, &command)?;
        if !out.success() {
            bail!("failed to start the impostor's request: {}", out.summary());
        }
        let rc = wait_until_ok(
            Instant::now() + IMPOSTOR_TIMEOUT,
            Duration::from_secs(2),
            || -> anyhow::Result<String> {
                let out = ssh::with_key(&target, &self.key, "cat /tmp/impostor.rc")?;
                if out.success() {
                    Ok(out.stdout.trim().to_owned())
                } else {
                    bail!("no result yet: {}", out.summary())
                }
            },
        )
        .context("the guest did not come back with its own address")?;
        let got = ssh::with_key(&target, &self.key, "cat /tmp/impostor.json 2>/dev/null")?;
        let err = ssh::with_key(&target, &self.key, "cat /tmp/impostor.err 2>/dev/null")?;
        Ok(Attempt {
            rc,
            got: got.stdout,
            err: err.stdout,
        })
    }
}

/// What an impostor's request came back with.
struct Attempt {
    /// wget's exit status.
    rc: String,
    /// The body it saved.
    got: String,
    /// What wget said (busybox prints the status line of an HTTP error).
    err: String,
}

impl Attempt {
    /// metaboot answered and refused it with 404.
    fn refused(&self) -> bool {
        self.err.contains("404")
    }

    fn describe(&self, victim_uuid: &str) -> String {
        format!(
            "wget exit {}, {} bytes, {}, {}",
            self.rc,
            self.got.len(),
            if self.got.contains(victim_uuid) {
                "WITH the Debian guest's uuid"
            } else {
                "without the Debian guest's uuid"
            },
            if self.refused() {
                "answered 404"
            } else {
                "no HTTP answer"
            }
        )
    }
}

/// The tiny guest's checks, pushed onto `checks`; `victim` is the Debian guest's address and
/// uuid (none when it failed).
pub(super) fn tiny_guest(
    host: &LibvirtHost,
    registry: &Registry<'_>,
    image: &Image,
    dir: &Path,
    victim: Option<(Ipv4Addr, &str)>,
    checks: &mut Vec<CheckResult>,
) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let key = ssh::keygen(dir, "id_tiny")?;
    let mac = random_mac()?;
    let uuid = registry.instance(TINY, &mac, &key.with_extension("pub"), None, Some(TINY))?;
    let tiny = Tiny {
        host,
        image,
        dir,
        mac,
        key,
        uuid,
    };
    let (vm, ip) = tiny.boot(None)?;
    checks.push(tiny.served_as_itself("a MAC-registered tiny guest is served as itself", ip));
    match victim {
        Some((victim_ip, victim_uuid)) => {
            checks.push(tiny.impostor(ip, victim_ip, victim_uuid));
            checks.push(tiny.without_filter(ip, victim_ip, victim_uuid));
        }
        None => checks.push(CheckResult::fail(
            "a guest that takes another's address is not served its data (clean-traffic)",
            "no victim: the Debian guest has no address",
        )),
    }
    vm.kill()?;

    // The user fixes the guest's address (`virsh net-update … ip-dhcp-host`) and starts it
    // again: a new lease at a new address, the same instance.
    let moved = host.network().spec().fixed(MOVED_HOST);
    host.network().set_host(&tiny.mac, moved)?;
    let (vm, new_ip) = tiny.boot(Some(ip))?;
    let name = "after its lease moved to another address it is still served as itself";
    if new_ip == moved {
        checks.push(tiny.served_as_itself(name, new_ip));
    } else {
        checks.push(CheckResult::fail(
            name,
            format!("the lease moved from {ip} to {new_ip}, not to the fixed {moved}"),
        ));
    }
    vm.kill()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::libvirt_network::{DHCP_RANGE, NetworkSpec};

    #[test]
    fn the_moved_address_is_a_fixed_one_and_the_bounds_fit_together() {
        const { assert!(MOVED_HOST > 1 && MOVED_HOST < DHCP_RANGE.0) };
        let spec = NetworkSpec::for_lab("ab12");
        assert!(spec.subnet.contains(&spec.fixed(MOVED_HOST)));
        assert!(REQUEST_TIMEOUT >= Duration::from_secs(5));
        // The impostor's request and its way back fit in its bound, with room for a slow SSH.
        assert!(REQUEST_TIMEOUT * 2 < IMPOSTOR_TIMEOUT);
        assert!(CLIENT_LEASE_TIMEOUT >= Duration::from_secs(10));
        assert!(UDHCPC_SCRIPT.starts_with("#!/bin/sh\n"));
    }
}
