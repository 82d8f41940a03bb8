//! The chain over IPv6 as a guest reaches it (root): guests on IPv6-only networks, in their own
//! namespaces with their port's MAC, call `http://[fe80::a9fe:a9fe%eth0]/` — through a router
//! namespace whose interface holds the address, with the ip6tables REDIRECT of port 80 to the
//! proxy's `[::]:9697`, and through a DHCP namespace whose port holds it (`nodad`), where the
//! proxy binds it on that interface — served by `metaboot-server all` and by separate
//! `ns-proxy --netns` processes. The agent finds a guest by the MAC in its link-local source,
//! or by its fixed address when it calls from that; `X-Forwarded-For` carries the IPv6 source
//! (the API serves it back as EC2's `local-ipv4` of an instance without IPv4, as nova does).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use metaboot_proto::{METADATA_IPV6, METADATA_PORT, eui64};
use metaboot_tests::chain::Chain;
use metaboot_tests::guest::{self, Reply};
use metaboot_tests::netns::{Netns, guest_veth};
use metaboot_tests::prerequisite::{require_command, require_root};

use super::start_all;

/// How long a guest keeps asking before the test fails (listeners start within a second).
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// A guest namespace: its `eth0` has the port's MAC, so its link-local address is the one the
/// registry's MAC gives.
struct Guest {
    netns: Netns,
    uuid: String,
    /// The port's fixed address.
    fixed: Ipv6Addr,
    link_local: Ipv6Addr,
}

struct Lab6 {
    chain: Chain,
    router_id: String,
    isolated_id: String,
    routed: Guest,
    isolated: Guest,
    /// On the isolated network, with a MAC no port has.
    stranger: Netns,
    _router: Netns,
    /// The isolated network's DHCP namespace.
    dhcp: Netns,
}

/// A namespace without duplicate address detection: addresses are usable at once (as the
/// tests' guests need their link-local address right away), as Neutron adds the metadata
/// address `nodad`.
fn namespace(name: &str) -> Netns {
    let netns = Netns::create(name).unwrap();
    for key in ["all", "default"] {
        netns
            .exec(
                "sysctl",
                &["-q", "-w", &format!("net.ipv6.conf.{key}.accept_dad=0")],
            )
            .unwrap();
    }
    netns
}

/// A veth from `guest`'s `eth0` (with `mac` and `address/64`) to `inside` in `host`.
fn wire(guest: &Netns, mac: &str, address: &str, host: &Netns, inside: &str) {
    guest_veth(guest, mac, host, inside).unwrap();
    guest
        .exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{address}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .unwrap();
    guest.exec("ip", &["link", "set", "eth0", "up"]).unwrap();
    host.exec("ip", &["link", "set", inside, "up"]).unwrap();
}

/// `fe80::a9fe:a9fe/64` on `interface`, as Neutron adds it once DAD is done.
fn hold_metadata_address(netns: &Netns, interface: &str) {
    netns
        .exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{METADATA_IPV6}/64"),
                "dev",
                interface,
                "nodad",
            ],
        )
        .unwrap();
}

/// The isolated network's DHCP port in `dhcp`: a bridge holding the DHCP address and the
/// metadata address.
fn plug_dhcp_port(dhcp: &Netns) {
    dhcp.exec("ip", &["link", "add", "br-six", "type", "bridge"])
        .unwrap();
    dhcp.exec("ip", &["link", "set", "br-six", "up"]).unwrap();
    dhcp.exec(
        "ip",
        &[
            "addr",
            "add",
            "fdc6:1200:0:11::2/64",
            "dev",
            "br-six",
            "nodad",
        ],
    )
    .unwrap();
    hold_metadata_address(dhcp, "br-six");
}

/// The guest's and the stranger's veths joined to the DHCP port's bridge.
fn join_dhcp_port(dhcp: &Netns) {
    for port in ["g-six", "s-six"] {
        dhcp.exec("ip", &["link", "set", port, "master", "br-six"])
            .unwrap();
    }
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    eui64::parse_mac(mac).unwrap()
}

fn lab() -> Lab6 {
    let chain = Chain::new().unwrap();
    let id = |v: serde_json::Value, field: &str| v[field].as_str().unwrap().to_owned();
    let routed_net = id(
        chain
            .registry(&[
                "network",
                "create",
                "six-r",
                "--cidr",
                "fdc6:1200:0:10::/64",
            ])
            .unwrap(),
        "id",
    );
    let isolated_id = id(
        chain
            .registry(&[
                "network",
                "create",
                "six-i",
                "--cidr",
                "fdc6:1200:0:11::/64",
                "--isolated",
                "--ipv6-address-mode",
                "slaac",
            ])
            .unwrap(),
        "id",
    );
    let router_id = id(
        chain
            .registry(&["router", "create", "r6", "--network", &routed_net])
            .unwrap(),
        "id",
    );
    let (routed_mac, isolated_mac) = ("fa:16:3e:00:10:0a", "fa:16:3e:00:11:0a");
    let routed_vm = chain
        .registry(&[
            "instance",
            "create",
            "web6",
            "--network",
            "six-r",
            "--mac",
            routed_mac,
            "--ip",
            "fdc6:1200:0:10::a",
        ])
        .unwrap();
    let isolated_vm = chain
        .registry(&[
            "instance",
            "create",
            "db6",
            "--network",
            "six-i",
            "--mac",
            isolated_mac,
        ])
        .unwrap();
    let fixed = |v: &serde_json::Value| v["ip"].as_str().unwrap().parse::<Ipv6Addr>().unwrap();
    // SLAAC: the address the guest makes from the prefix and its MAC.
    assert_eq!(
        fixed(&isolated_vm),
        eui64::slaac("fdc6:1200:0:11::".parse().unwrap(), mac_bytes(isolated_mac))
    );

    static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = format!(
        "{}-{}",
        std::process::id() % 100_000,
        LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let router = namespace(&format!("qrouter-{router_id}"));
    let dhcp = namespace(&format!("qdhcp-{isolated_id}"));
    let routed_ns = namespace(&format!("mbt6-{tag}-g1"));
    let isolated_ns = namespace(&format!("mbt6-{tag}-g2"));
    let stranger = namespace(&format!("mbt6-{tag}-g3"));

    // Router path: the router's interface holds the gateway and the metadata address; the
    // REDIRECT sends the metadata port to the proxy, as Neutron's L3 agent does with ip6tables.
    wire(
        &routed_ns,
        routed_mac,
        "fdc6:1200:0:10::a",
        &router,
        "qr-six",
    );
    router
        .exec(
            "ip",
            &[
                "addr",
                "add",
                "fdc6:1200:0:10::1/64",
                "dev",
                "qr-six",
                "nodad",
            ],
        )
        .unwrap();
    hold_metadata_address(&router, "qr-six");
    router
        .redirect_metadata("ip6tables", "qr-+", &format!("{METADATA_IPV6}/128"))
        .unwrap();

    // Isolated path: the DHCP namespace's bridge is its port on the network, joining the guest
    // and the stranger.
    plug_dhcp_port(&dhcp);
    let isolated_fixed = fixed(&isolated_vm);
    wire(
        &isolated_ns,
        isolated_mac,
        &isolated_fixed.to_string(),
        &dhcp,
        "g-six",
    );
    wire(
        &stranger,
        "fa:16:3e:00:11:ff",
        "fdc6:1200:0:11::ff",
        &dhcp,
        "s-six",
    );
    join_dhcp_port(&dhcp);

    let guest = |netns: Netns, vm: &serde_json::Value, mac: &str| Guest {
        netns,
        uuid: id(vm.clone(), "uuid"),
        fixed: fixed(vm),
        link_local: eui64::link_local(mac_bytes(mac)),
    };
    Lab6 {
        chain,
        router_id,
        isolated_id,
        routed: guest(routed_ns, &routed_vm, routed_mac),
        isolated: guest(isolated_ns, &isolated_vm, isolated_mac),
        stranger,
        _router: router,
        dhcp,
    }
}

/// `GET path` from inside `netns` to `http://[fe80::a9fe:a9fe%eth0]/`, from `from` (None: the
/// address the kernel picks, the link-local one).
fn ask(netns: &Netns, from: Option<IpAddr>, path: &str) -> std::io::Result<Reply> {
    netns
        .within(|| {
            let index = nix::net::if_::if_nametoindex("eth0").map_err(std::io::Error::from)?;
            let to = SocketAddr::V6(SocketAddrV6::new(METADATA_IPV6, METADATA_PORT, 0, index));
            guest::get(from, to, path, &[])
        })
        .unwrap()
}

/// The answer to `path` once it is 200, waiting for the listeners to come up.
fn served(netns: &Netns, from: Option<IpAddr>, path: &str) -> Reply {
    let deadline = Instant::now() + SERVED_WITHIN;
    loop {
        match ask(netns, from, path) {
            Ok(reply) if reply.status == 200 => return reply,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{path} not served in {} from {from:?}: {other:?}",
                    netns.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Both guests are found by the MAC in their link-local source and by their fixed address;
/// the stranger's MAC finds nobody.
fn check_guests(lab: &Lab6) {
    for guest in [&lab.routed, &lab.isolated] {
        let by_mac = served(&guest.netns, None, "/openstack/latest/meta_data.json");
        assert_eq!(
            by_mac.json()["uuid"],
            guest.uuid.as_str(),
            "{}",
            guest.netns.name
        );
        // X-Forwarded-For carried the guest's link-local address to the API.
        let seen = served(&guest.netns, None, "/latest/meta-data/local-ipv4").text();
        assert_eq!(seen, guest.link_local.to_string());

        let from = Some(IpAddr::V6(guest.fixed));
        let by_address = served(&guest.netns, from, "/openstack/latest/meta_data.json");
        assert_eq!(by_address.json()["uuid"], guest.uuid.as_str());
        let seen = served(&guest.netns, from, "/latest/meta-data/local-ipv4").text();
        assert_eq!(seen, guest.fixed.to_string());
    }
    let refused = ask(&lab.stranger, None, "/openstack/latest/meta_data.json").unwrap();
    assert_eq!(refused.status, 404, "{}", refused.text());
    let stranger = eui64::link_local(mac_bytes("fa:16:3e:00:11:ff"));
    assert!(
        refused.text().contains(&stranger.to_string()),
        "{}",
        refused.text()
    );
}

#[test]
fn all_serves_ipv6_guests_on_both_paths() {
    if !require_root() || !require_command("ip6tables") {
        return;
    }
    let mut lab = lab();
    start_all(&mut lab.chain);
    check_guests(&lab);
    // The DHCP namespace's listener is bound on the interface holding the address.
    let log = lab.chain.logs();
    assert!(
        log.contains(&format!("[{METADATA_IPV6}%")),
        "no scoped listener in the log:\n{log}"
    );

    replug_dhcp_port(&lab.dhcp);
    check_guests(&lab);
}

/// The DHCP port plugged again inside the same namespace (a DHCP agent's resync): a new
/// interface, with a new index, holds the metadata address.
fn replug_dhcp_port(dhcp: &Netns) {
    let index = |name: &str| dhcp.exec("cat", &[&format!("/sys/class/net/{name}/ifindex")]);
    let before = index("br-six").unwrap();
    dhcp.exec("ip", &["link", "del", "br-six"]).unwrap();
    plug_dhcp_port(dhcp);
    assert_ne!(index("br-six").unwrap(), before);
    join_dhcp_port(dhcp);
}

#[test]
fn ns_proxies_serve_ipv6_guests_on_both_paths() {
    if !require_root() || !require_command("ip6tables") {
        return;
    }
    let mut lab = lab();
    lab.chain.start().unwrap();
    let socket = lab.chain.agent_socket.display().to_string();
    let router_ns = format!("qrouter-{}", lab.router_id);
    let dhcp_ns = format!("qdhcp-{}", lab.isolated_id);
    let ipv6_listen = format!("[{METADATA_IPV6}]:{METADATA_PORT}");
    // The router's proxy on its default address, [::]:9697; the DHCP namespace's on the
    // IPv6 metadata address.
    for args in [
        vec!["--router-id", &lab.router_id, "--netns", &router_ns],
        vec![
            "--network-id",
            &lab.isolated_id,
            "--netns",
            &dhcp_ns,
            "--listen",
            &ipv6_listen,
        ],
    ] {
        let mut all = vec!["ns-proxy", "--socket", &socket];
        all.extend(args);
        lab.chain.start_role("ns-proxy", &all, || true).unwrap();
    }
    check_guests(&lab);
    // The DHCP namespace's proxy follows the address to the port's new interface.
    replug_dhcp_port(&lab.dhcp);
    check_guests(&lab);

    // Where nothing holds the address yet, ns-proxy says what to do and keeps running; once
    // an interface holds it, it listens there.
    let bare = namespace(&format!("mbt6-{}-bare", std::process::id() % 100_000));
    let args = [
        "ns-proxy",
        "--socket",
        &socket,
        "--network-id",
        &lab.isolated_id,
        "--netns",
        &bare.name,
        "--listen",
        &ipv6_listen,
    ];
    lab.chain
        .start_role("ns-proxy-bare", &args, || true)
        .unwrap();
    logged(
        &lab.chain,
        &["ip addr add fe80::a9fe:a9fe/64 dev IFACE nodad"],
    );
    let pid = lab.chain.pid("ns-proxy-bare").unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(!stat.contains(") Z "), "it stopped:\n{}", lab.chain.logs());
    bare.exec("ip", &["link", "add", "port", "type", "bridge"])
        .unwrap();
    bare.exec("ip", &["link", "set", "port", "up"]).unwrap();
    hold_metadata_address(&bare, "port");
    logged(&lab.chain, &["proxy listening", &bare.name]);
}

/// Waits until one line of the chain's logs contains each of `texts`, failing after
/// [`SERVED_WITHIN`].
fn logged(chain: &Chain, texts: &[&str]) {
    let deadline = Instant::now() + SERVED_WITHIN;
    loop {
        let logs = chain.logs();
        if logs
            .lines()
            .any(|line| texts.iter().all(|text| line.contains(text)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {texts:?} in the log:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The guest agent in the IPv6-only guest's namespace, with cloud-init's list of metadata
/// URLs: the IPv4 one finds no route, the link-local one (zoned to `eth0`) answers, and the
/// instance is provisioned from it.
#[test]
fn the_guest_agent_takes_the_first_metadata_url_that_answers() {
    if !require_root() || !require_command("ip6tables") {
        return;
    }
    let mut lab = lab();
    start_all(&mut lab.chain);
    // Served before the agent starts, so its run is about the URLs, not the listener.
    served(&lab.isolated.netns, None, "/openstack");
    let agent = metaboot_harness::workspace::build(metaboot_harness::workspace::CargoBinary {
        package: "metaboot",
        bin: "metaboot",
        profile: None,
        target: None,
        static_crt: false,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    metaboot_tests::guest_root::first_boot(
        dir.path(),
        &[],
        "metadata_urls: [http://169.254.169.254, 'http://[fe80::a9fe:a9fe%25eth0]']\n\
         deadline_secs: 20\ndisable_root: false\nmanage_etc_hosts: localhost\n",
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.isolated.netns.name])
        .arg(&agent)
        .arg("run")
        .arg("--root")
        .arg(dir.path())
        .output()
        .unwrap();
    let read = |path: &str| std::fs::read_to_string(dir.path().join(path)).unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.chain.logs()
    );
    let status: serde_json::Value =
        serde_json::from_str(&read("var/lib/metaboot/status.json")).unwrap();
    assert_eq!(status["source"], "metadata-service");
    assert_eq!(status["instance_id"], lab.isolated.uuid.as_str());
    assert_eq!(read("etc/hostname"), "db6\n");
}
