//! A deleted port's DHCP, taken back as Neutron's DHCP agent does (`reload_allocations` and
//! `_release_unused_leases` in `neutron/agent/linux/dhcp.py`): the port's host entry goes,
//! dnsmasq rereads its hosts (SIGHUP), and the port's lease is released with `dhcp_release
//! IFACE IP MAC` (package dnsmasq-utils) inside the DHCP namespace. The address is then free:
//! the next port given it gets it at once, where dnsmasq would otherwise keep it for the
//! deleted port's MAC for the lease time; and the deleted port's guest, if it still runs, is
//! given no renewal of it (no entry names its MAC any more).

use std::net::Ipv4Addr;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::lab::dhcp::{self, DnsmasqFiles};
use crate::lab::netns;
use crate::process::{self, Daemon};

/// The program that releases a lease, as Neutron's DHCP agent runs it.
pub const RELEASE_TOOL: &str = "dhcp_release";

/// The Debian package that has it.
pub const RELEASE_PACKAGE: &str = "dnsmasq-utils";

/// Refuses to go on without [`RELEASE_TOOL`], saying what to install: for a command that
/// deletes the port it registers (`boot`), whose address the next port is given.
pub fn require_release_tool() -> anyhow::Result<()> {
    if process::on_path(RELEASE_TOOL) {
        return Ok(());
    }
    anyhow::bail!(
        "{RELEASE_TOOL} is missing: without it a deleted port's lease is kept for up to {}, and \
         the next guest given its address gets none; install {RELEASE_PACKAGE} \
         (scripts/install-lab-deps does)",
        dhcp::LEASE_TIME
    )
}

/// Takes back the DHCP of deleted port `port_id` (`mac`, `ip`) on IPv4 network `network_id`,
/// whose dnsmasq is `dnsmasq`: [`forget_host`], then [`release_lease`]. Keeps going after an
/// error, then returns the first.
pub fn release_port(
    files: &DnsmasqFiles,
    dnsmasq: &Daemon,
    network_id: &str,
    port_id: &str,
    mac: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    let forgotten = forget_host(files, dnsmasq, port_id);
    // After the entry is gone: a guest asking again meanwhile is not given the address back.
    let released = release_lease(network_id, mac, ip);
    forgotten.and(released)
}

/// Removes the port's host entry ([`dhcp::remove_host`]) and has dnsmasq reread its hosts
/// (SIGHUP; removed files are forgotten only then).
pub fn forget_host(files: &DnsmasqFiles, dnsmasq: &Daemon, port_id: &str) -> anyhow::Result<()> {
    dhcp::remove_host(files, port_id)?;
    dnsmasq.signal(Signal::SIGHUP).map_err(|err| {
        err.context(format!(
            "dnsmasq was not told to forget deleted port {port_id} (is it running?): take the \
             lab down and up again"
        ))
    })
}

/// Releases `mac`'s lease of `ip` with [`RELEASE_TOOL`] in the network's DHCP namespace. When
/// the tool is missing, warns (saying what that leaves and what to install) and goes on.
pub fn release_lease(network_id: &str, mac: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    if !process::on_path(RELEASE_TOOL) {
        tracing::warn!("{}", missing_tool_warning(mac, ip));
        return Ok(());
    }
    process::check(&mut release_command(network_id, mac, ip))?;
    Ok(())
}

/// `ip netns exec qdhcp-NETWORK dhcp_release tapNETWORK IP MAC`: from the DHCP port's
/// interface, where dnsmasq listens.
pub fn release_command(network_id: &str, mac: &str, ip: Ipv4Addr) -> Command {
    let mut cmd = netns::exec(&dhcp::namespace(network_id), RELEASE_TOOL);
    cmd.arg(dhcp::interface(network_id))
        .arg(ip.to_string())
        .arg(mac);
    cmd
}

/// What a release without [`RELEASE_TOOL`] leaves, and what to do.
pub fn missing_tool_warning(mac: &str, ip: Ipv4Addr) -> String {
    format!(
        "{RELEASE_TOOL} is not installed, so the lease of {ip} to {mac} (a deleted port's) is \
         not released: dnsmasq gives {ip} to no other port for up to {} (its lease time); \
         install {RELEASE_PACKAGE} (scripts/install-lab-deps does)",
        dhcp::LEASE_TIME
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// How long a fake dnsmasq may take to start, and to note a signal.
    const FAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The release runs in the DHCP namespace, from the DHCP port's interface, with the
    /// address and the MAC, as Neutron's agent runs it.
    #[test]
    fn the_lease_is_released_from_the_dhcp_port_in_its_namespace() {
        let cmd = release_command(
            "34567c7e-f1a2",
            "fa:16:3e:00:00:01",
            "198.18.20.5".parse().unwrap(),
        );
        assert_eq!(
            process::describe(&cmd),
            "ip netns exec qdhcp-34567c7e-f1a2 dhcp_release tap34567c7e-f1 198.18.20.5 \
             fa:16:3e:00:00:01"
        );
        let warning = missing_tool_warning("fa:16:3e:00:00:01", "198.18.20.5".parse().unwrap());
        assert!(warning.contains("install dnsmasq-utils"), "{warning}");
        assert!(warning.contains("12h"), "{warning}");
    }

    /// The port's entry is removed and dnsmasq is sent SIGHUP to forget it; a dnsmasq that
    /// is gone is an error saying what to do, after the entry was removed.
    #[test]
    fn a_deleted_ports_entry_is_removed_and_dnsmasq_told() {
        let dir = tempfile::tempdir().unwrap();
        let files = DnsmasqFiles::under(dir.path(), "n1");
        std::fs::create_dir_all(&files.hosts_dir).unwrap();
        let ip: Ipv4Addr = "198.18.20.5".parse().unwrap();
        dhcp::add_host(&files, "port-1", "fa:16:3e:00:00:01", ip).unwrap();
        // A dnsmasq that notes each SIGHUP.
        let heard = dir.path().join("heard");
        let ready = dir.path().join("ready");
        let script = format!(
            "trap 'echo hup >> {}' HUP; touch {}; while :; do sleep 0.05; done",
            heard.display(),
            ready.display()
        );
        let dnsmasq = Daemon::spawn(
            "dnsmasq in qdhcp-n1",
            Command::new("sh").args(["-c", &script]),
            &dir.path().join("log"),
        )
        .unwrap();
        assert!(crate::wait::wait_until(
            Instant::now() + FAKE_TIMEOUT,
            || ready.exists()
        ));
        forget_host(&files, &dnsmasq, "port-1").unwrap();
        assert!(!files.hosts_dir.join("port-1").exists());
        assert!(crate::wait::wait_until(
            Instant::now() + FAKE_TIMEOUT,
            || std::fs::read_to_string(&heard).is_ok_and(|text| text == "hup\n")
        ));
        dnsmasq.stop(Duration::from_secs(1)).unwrap();
        dhcp::add_host(&files, "port-2", "fa:16:3e:00:00:02", ip).unwrap();
        let err = format!("{:#}", forget_host(&files, &dnsmasq, "port-2").unwrap_err());
        assert!(err.contains("take the lab down and up again"), "{err}");
        assert!(!files.hosts_dir.join("port-2").exists());
    }
}
