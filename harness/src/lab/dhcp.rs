//! `qdhcp-<network id>`: the network's DHCP port (plus 169.254.169.254/32 for isolated
//! networks) and dnsmasq handing out the ports' fixed addresses, with option 121 on isolated
//! networks (docs/protocol.md §2.1). On an IPv6 network dnsmasq only sends router
//! advertisements (SLAAC, no DHCPv6): a routed one's from its router's namespace (the default
//! router), an isolated one's from here, and an isolated one's port holds `fe80::a9fe:a9fe`.
//! On a network without DHCP the namespace is only the lab's place on the network.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use metaboot_proto::{METADATA_IPV4, METADATA_IPV6};

use crate::atomic;
use crate::lab::{bridge, netns, router};
use crate::process::Daemon;

/// Lease time dnsmasq gives (long: guests never renew during a test).
pub const LEASE_TIME: &str = "12h";

/// How the name of a network's DHCP namespace begins (Neutron's: the network id follows).
pub const NAMESPACE_PREFIX: &str = "qdhcp-";

/// How the name of the bridge end of the DHCP port's veth begins (the network id follows).
pub const BRIDGE_END_PREFIX: &str = "dhc-";

/// The network's DHCP namespace.
pub fn namespace(network_id: &str) -> String {
    format!("{NAMESPACE_PREFIX}{network_id}")
}

/// The DHCP port's interface inside it (`tap` + 11, as Neutron names it).
pub fn interface(network_id: &str) -> String {
    bridge::ifname("tap", network_id)
}

/// The bridge end of its veth.
pub fn bridge_end(network_id: &str) -> String {
    bridge::ifname(BRIDGE_END_PREFIX, network_id)
}

/// What dnsmasq needs to know about a network.
#[derive(Debug, Clone)]
pub struct DhcpNetwork {
    /// The network's registry id.
    pub id: String,
    /// The subnet.
    pub cidr: Ipv4Net,
    /// The router's address (option 3; last hop of the default route in option 121).
    pub gateway: Ipv4Addr,
    /// The DHCP port's address.
    pub dhcp_ip: Ipv4Addr,
    /// No router: push the metadata route to the DHCP port with option 121.
    pub isolated: bool,
}

/// Files dnsmasq uses, all absolute (it changes directory to `/`).
#[derive(Debug, Clone)]
pub struct DnsmasqFiles {
    /// One file per port with `mac,ip` (dnsmasq watches the directory).
    pub hosts_dir: PathBuf,
    /// Its lease file.
    pub leases: PathBuf,
    /// Its PID file.
    pub pid: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

impl DnsmasqFiles {
    /// The files of network `id` under the lab's state directory.
    pub fn under(dir: &Path, id: &str) -> Self {
        let base = dir.join(format!("dhcp-{id}"));
        Self {
            hosts_dir: base.join("hosts"),
            leases: base.join("leases"),
            pid: base.join("dnsmasq.pid"),
            log: base.join("dnsmasq.log"),
        }
    }
}

/// dnsmasq's arguments: DHCP only, fixed addresses only, option 121 on isolated networks.
pub fn dnsmasq_args(net: &DhcpNetwork, files: &DnsmasqFiles) -> Vec<String> {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--port=0".to_owned(),
        "--no-hosts".to_owned(),
        "--no-resolv".to_owned(),
        "--bind-interfaces".to_owned(),
        format!("--interface={}", interface(&net.id)),
        "--except-interface=lo".to_owned(),
        "--user=root".to_owned(),
        "--dhcp-authoritative".to_owned(),
        "--log-dhcp".to_owned(),
        format!(
            "--dhcp-range={},static,{},{LEASE_TIME}",
            net.cidr.network(),
            net.cidr.netmask()
        ),
        format!("--dhcp-hostsdir={}", files.hosts_dir.display()),
        format!("--dhcp-leasefile={}", files.leases.display()),
        format!("--pid-file={}", files.pid.display()),
        format!("--log-facility={}", files.log.display()),
        format!("--dhcp-option=3,{}", net.gateway),
    ];
    if net.isolated {
        // RFC 3442 clients ignore option 3 when 121 is present: the default route goes in too.
        args.push(format!(
            "--dhcp-option=121,{METADATA_IPV4}/32,{},0.0.0.0/0,{}",
            net.dhcp_ip, net.gateway
        ));
    }
    args
}

/// The longest interval, in seconds, between the unsolicited router advertisements on a
/// routed IPv6 network: Neutron's L3 agent writes `MaxRtrAdvInterval` into radvd's
/// configuration (`neutron/agent/linux/ra.py`) from its `max_rtr_adv_interval` option, 100 s
/// by default (dnsmasq's own default being 600 s).
pub const RA_INTERVAL_SECS: u32 = 100;

/// The router lifetime, in seconds, of the router advertisements on a routed IPv6 network:
/// Neutron's template sets none, so radvd sends its default, 3 × MaxRtrAdvInterval (RFC 4861
/// §6.2.1), i.e. 300 s for [`RA_INTERVAL_SECS`].
pub const ROUTER_LIFETIME_SECS: u32 = 3 * RA_INTERVAL_SECS;

// A default router outlives the interval between its advertisements (else guests lose their
// default route between two), and dnsmasq takes intervals of 4 to 1800 s and lifetimes up to
// the RA field's 9000 s (RFC 4861 §6.2.1).
const _: () = assert!(
    ROUTER_LIFETIME_SECS > RA_INTERVAL_SECS
        && 4 <= RA_INTERVAL_SECS
        && RA_INTERVAL_SECS <= 1800
        && ROUTER_LIFETIME_SECS <= 9000
);

/// Who sends an IPv6 network's router advertisements: a guest takes the sender (its
/// link-local address) as its default router unless the router lifetime is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertiser {
    /// A routed network's router, from its `qr-` interface in its `qrouter-` namespace (where
    /// Neutron's L3 agent runs radvd), every [`RA_INTERVAL_SECS`] at most, with
    /// [`ROUTER_LIFETIME_SECS`]: the guests' default router.
    Router,
    /// An isolated network's DHCP port, with a router lifetime of 0: it is no router.
    DhcpPort,
}

impl Advertiser {
    /// The interface the advertisements leave from, in the advertiser's namespace.
    pub fn interface(self, network_id: &str) -> String {
        match self {
            Self::Router => router::interface(network_id),
            Self::DhcpPort => interface(network_id),
        }
    }

    /// The router lifetime the advertisements carry, in seconds.
    pub fn router_lifetime(self) -> u32 {
        match self {
            Self::Router => ROUTER_LIFETIME_SECS,
            Self::DhcpPort => 0,
        }
    }

    /// The longest interval between unsolicited advertisements, in seconds; 0 is dnsmasq's
    /// default (600 s), enough for a port that is no router.
    pub fn interval(self) -> u32 {
        match self {
            Self::Router => RA_INTERVAL_SECS,
            Self::DhcpPort => 0,
        }
    }
}

/// dnsmasq's arguments on an IPv6 network: router advertisements only (`ra-only`: the prefix
/// with the autonomous flag, so guests make their EUI-64 address, the one the registry gives
/// the port), sent by `advertiser` at its interval with its router lifetime.
pub fn ra_args(
    network_id: &str,
    prefix: Ipv6Net,
    advertiser: Advertiser,
    files: &DnsmasqFiles,
) -> Vec<String> {
    let inside = advertiser.interface(network_id);
    let interval = advertiser.interval();
    let lifetime = advertiser.router_lifetime();
    vec![
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--port=0".to_owned(),
        "--no-hosts".to_owned(),
        "--no-resolv".to_owned(),
        "--bind-interfaces".to_owned(),
        format!("--interface={inside}"),
        "--except-interface=lo".to_owned(),
        "--user=root".to_owned(),
        "--enable-ra".to_owned(),
        format!(
            "--dhcp-range={},ra-only,{},{LEASE_TIME}",
            prefix.network(),
            prefix.prefix_len()
        ),
        format!("--ra-param={inside},{interval},{lifetime}"),
        format!("--dhcp-leasefile={}", files.leases.display()),
        format!("--pid-file={}", files.pid.display()),
        format!("--log-facility={}", files.log.display()),
    ]
}

/// Creates the DHCP namespace with its port on the network's bridge, holding `address` (the
/// DHCP port's, or the lab's on a network without DHCP); an IPv6 one is usable at once
/// (`nodad`, as Neutron adds its ports' addresses). An isolated network's port also holds the
/// metadata address of its family (`169.254.169.254/32`, or `fe80::a9fe:a9fe/64` `nodad`).
pub fn create(
    bridge_ns: &str,
    bridge: &str,
    ns: &str,
    network_id: &str,
    address: IpNet,
    isolated: bool,
) -> anyhow::Result<()> {
    netns::create(ns)?;
    let inside = interface(network_id);
    bridge::add_veth(bridge_ns, bridge, &bridge_end(network_id), ns, &inside)?;
    let address = address.to_string();
    let mut add = vec!["addr", "add", address.as_str(), "dev", inside.as_str()];
    if address.contains(':') {
        add.push("nodad");
    }
    netns::ip(ns, &add)?;
    if isolated {
        let metadata = if address.contains(':') {
            format!("{METADATA_IPV6}/64")
        } else {
            format!("{METADATA_IPV4}/32")
        };
        let mut add = vec!["addr", "add", metadata.as_str(), "dev", inside.as_str()];
        if address.contains(':') {
            add.push("nodad");
        }
        netns::ip(ns, &add)?;
    }
    netns::ip(ns, &["link", "set", &inside, "up"])?;
    Ok(())
}

/// Starts dnsmasq in the DHCP namespace.
pub fn start(ns: &str, net: &DhcpNetwork, files: &DnsmasqFiles) -> anyhow::Result<Daemon> {
    std::fs::create_dir_all(&files.hosts_dir)?;
    spawn(&daemon_name(ns), ns, dnsmasq_args(net, files), files)
}

/// Starts dnsmasq sending router advertisements for `prefix` from `advertiser` in `ns` (the
/// router's namespace, or the DHCP namespace).
pub fn start_ra(
    ns: &str,
    network_id: &str,
    prefix: Ipv6Net,
    advertiser: Advertiser,
    files: &DnsmasqFiles,
) -> anyhow::Result<Daemon> {
    std::fs::create_dir_all(&files.hosts_dir)?;
    let args = ra_args(network_id, prefix, advertiser, files);
    let name = match advertiser {
        Advertiser::Router => format!("dnsmasq in {ns} on {}", advertiser.interface(network_id)),
        Advertiser::DhcpPort => daemon_name(ns),
    };
    spawn(&name, ns, args, files)
}

fn spawn(name: &str, ns: &str, args: Vec<String>, files: &DnsmasqFiles) -> anyhow::Result<Daemon> {
    let mut cmd = netns::exec(ns, "dnsmasq");
    cmd.args(args);
    let log = files.log.with_extension("stderr");
    Daemon::spawn(name, &mut cmd, &log)
}

/// Gives a port its fixed address (dnsmasq reads new files in the hosts directory by itself).
pub fn add_host(
    files: &DnsmasqFiles,
    port_id: &str,
    mac: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    atomic::write(
        &files.hosts_dir.join(port_id),
        format!("{mac},{ip}\n").as_bytes(),
        0o644,
    )
}

/// Takes a deleted port's fixed address away: removes its file from the hosts directory, and
/// syncs the directory so the removal survives a crash. dnsmasq forgets the entry only on
/// SIGHUP (it reads new and changed files by itself, never removals). A port without an
/// entry (an IPv6 network's, or removed already) is fine.
pub fn remove_host(files: &DnsmasqFiles, port_id: &str) -> anyhow::Result<()> {
    let path = files.hosts_dir.join(port_id);
    match std::fs::remove_file(&path) {
        Ok(()) => std::fs::File::open(&files.hosts_dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("failed to sync {}", files.hosts_dir.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("failed to remove {}", path.display())),
    }
}

/// The name of the dnsmasq daemon of a network's DHCP namespace `ns` (in the lab's state).
pub fn daemon_name(ns: &str) -> String {
    format!("dnsmasq in {ns}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(isolated: bool) -> DhcpNetwork {
        DhcpNetwork {
            id: "0123456789abcdef".into(),
            cidr: "198.18.20.0/24".parse().unwrap(),
            gateway: "198.18.20.1".parse().unwrap(),
            dhcp_ip: "198.18.20.2".parse().unwrap(),
            isolated,
        }
    }

    #[test]
    fn option_121_only_on_isolated_networks_with_the_default_route() {
        let files = DnsmasqFiles::under(Path::new("/run/x"), "n1");
        let isolated = dnsmasq_args(&net(true), &files);
        assert!(isolated.contains(
            &"--dhcp-option=121,169.254.169.254/32,198.18.20.2,0.0.0.0/0,198.18.20.1".to_owned()
        ));
        let routed = dnsmasq_args(&net(false), &files);
        assert!(!routed.iter().any(|a| a.starts_with("--dhcp-option=121")));
        for args in [isolated, routed] {
            assert!(args.contains(&"--dhcp-option=3,198.18.20.1".to_owned()));
            assert!(args.contains(&"--dhcp-range=198.18.20.0,static,255.255.255.0,12h".to_owned()));
            assert!(args.contains(&"--port=0".to_owned()));
            assert!(args.contains(&"--interface=tap0123456789a".to_owned()));
            assert!(args.contains(&"--pid-file=/run/x/dhcp-n1/dnsmasq.pid".to_owned()));
        }
    }

    /// An isolated IPv6 network's advertisements come from its DHCP port, which is no router
    /// (lifetime 0); a routed one's from the router's interface, as the default router.
    #[test]
    fn ipv6_router_advertisements_name_the_router_as_default_router_only_when_routed() {
        let files = DnsmasqFiles::under(Path::new("/run/x"), "n1");
        let args = |advertiser| {
            ra_args(
                "0123456789abcdef",
                "fdc6:1200:0:41::/64".parse().unwrap(),
                advertiser,
                &files,
            )
        };
        let isolated = args(Advertiser::DhcpPort);
        assert!(isolated.contains(&"--interface=tap0123456789a".to_owned()));
        assert!(isolated.contains(&"--ra-param=tap0123456789a,0,0".to_owned()));
        let routed = args(Advertiser::Router);
        assert!(routed.contains(&"--interface=qr-0123456789a".to_owned()));
        // As Neutron's radvd: at least every 100 s, the router for 300 s.
        assert!(routed.contains(&"--ra-param=qr-0123456789a,100,300".to_owned()));
        for args in [isolated, routed] {
            assert!(args.contains(&"--enable-ra".to_owned()));
            assert!(args.contains(&"--dhcp-range=fdc6:1200:0:41::,ra-only,64,12h".to_owned()));
            assert!(!args.iter().any(|a| a.starts_with("--dhcp-option")));
            assert_eq!(
                args.iter().filter(|a| a.starts_with("--ra-param")).count(),
                1
            );
        }
    }

    /// The router is the default router for Neutron's radvd lifetime (3 × its 100 s
    /// interval), past its next advertisement; the DHCP port never is, at dnsmasq's interval.
    #[test]
    fn the_router_lifetime_outlasts_the_advertisement_interval() {
        assert_eq!(
            (
                Advertiser::Router.interval(),
                Advertiser::Router.router_lifetime()
            ),
            (100, 300)
        );
        assert!(Advertiser::Router.router_lifetime() > Advertiser::Router.interval());
        assert_eq!(Advertiser::DhcpPort.router_lifetime(), 0);
        assert_eq!(Advertiser::DhcpPort.interval(), 0);
    }

    #[test]
    fn hosts_are_one_file_per_port() {
        let dir = tempfile::tempdir().unwrap();
        let files = DnsmasqFiles::under(dir.path(), "n1");
        std::fs::create_dir_all(&files.hosts_dir).unwrap();
        add_host(
            &files,
            "port-1",
            "fa:16:3e:00:00:01",
            "198.18.20.5".parse().unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(files.hosts_dir.join("port-1")).unwrap();
        assert_eq!(text, "fa:16:3e:00:00:01,198.18.20.5\n");
    }

    /// A deleted port's entry goes, the others stay; a port given its address afterwards has
    /// an entry of its own MAC alone (dnsmasq's entry with several MACs would let the deleted
    /// port's guest, if it still runs, take the address back at its next renewal).
    #[test]
    fn a_deleted_ports_host_entry_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = DnsmasqFiles::under(dir.path(), "n1");
        std::fs::create_dir_all(&files.hosts_dir).unwrap();
        let ip: Ipv4Addr = "198.18.20.5".parse().unwrap();
        let read = |port: &str| std::fs::read_to_string(files.hosts_dir.join(port)).unwrap();
        add_host(&files, "port-1", "fa:16:3e:00:00:01", ip).unwrap();
        add_host(
            &files,
            "port-2",
            "fa:16:3e:00:00:02",
            "198.18.20.6".parse().unwrap(),
        )
        .unwrap();
        remove_host(&files, "port-1").unwrap();
        assert!(!files.hosts_dir.join("port-1").exists());
        // Gone already: fine.
        remove_host(&files, "port-1").unwrap();
        add_host(&files, "port-3", "fa:16:3e:00:00:03", ip).unwrap();
        assert_eq!(read("port-3"), "fa:16:3e:00:00:03,198.18.20.5\n");
        assert_eq!(read("port-2"), "fa:16:3e:00:00:02,198.18.20.6\n");
        let mut left: Vec<String> = std::fs::read_dir(&files.hosts_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["port-2", "port-3"]);
    }
}
