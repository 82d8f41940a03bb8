//! The chain as a guest reaches it (root): guests in their own namespaces call
//! http://169.254.169.254/ — through a router namespace with Neutron's iptables REDIRECT of
//! port 80 to 9697, and through a DHCP namespace holding 169.254.169.254/32 — served by
//! `metaboot-server all` and by a separate `ns-proxy --netns`; the same over IPv6 in `ipv6.rs`.

mod ipv6;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metaboot_proto::{METADATA_IPV4, METADATA_IPV4_LISTEN, ROUTER_PROXY_PORT};
use metaboot_tests::chain::Chain;
use metaboot_tests::guest;
use metaboot_tests::netns::{Netns, veth};
use metaboot_tests::prerequisite::{require_command, require_root};

/// The metadata address as a host route (`169.254.169.254/32`).
fn metadata_host_route() -> String {
    format!("{METADATA_IPV4}/32")
}

struct Lab {
    chain: Chain,
    router_id: String,
    guest_routed: Netns,
    guest_isolated: Netns,
    uuid_routed: String,
    uuid_isolated: String,
    _router: Netns,
    dhcp: Netns,
}

fn lab() -> Lab {
    let chain = Chain::new().unwrap();
    let id = |v: serde_json::Value, field: &str| v[field].as_str().unwrap().to_owned();
    let routed = id(
        chain
            .registry(&[
                "network",
                "create",
                "routed",
                "--cidr",
                "198.18.0.0/24",
                "--gateway",
                "198.18.0.1",
            ])
            .unwrap(),
        "id",
    );
    let isolated = id(
        chain
            .registry(&[
                "network",
                "create",
                "isolated",
                "--cidr",
                "198.18.1.0/24",
                "--dhcp-ip",
                "198.18.1.2",
                "--isolated",
            ])
            .unwrap(),
        "id",
    );
    let router_id = id(
        chain
            .registry(&["router", "create", "r1", "--network", &routed])
            .unwrap(),
        "id",
    );
    let uuid_routed = id(
        chain
            .registry(&[
                "instance",
                "create",
                "web",
                "--network",
                "routed",
                "--ip",
                "198.18.0.10",
            ])
            .unwrap(),
        "uuid",
    );
    let uuid_isolated = id(
        chain
            .registry(&[
                "instance",
                "create",
                "db",
                "--network",
                "isolated",
                "--ip",
                "198.18.1.10",
            ])
            .unwrap(),
        "uuid",
    );

    static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = format!(
        "{}-{}",
        std::process::id() % 100_000,
        LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let router = Netns::create(&format!("qrouter-{router_id}")).unwrap();
    let dhcp = Netns::create(&format!("qdhcp-{isolated}")).unwrap();
    let guest_routed = Netns::create(&format!("mbt-{tag}-g1")).unwrap();
    let guest_isolated = Netns::create(&format!("mbt-{tag}-g2")).unwrap();
    router_path(
        &guest_routed,
        "198.18.0.10/24",
        &router,
        "qr-test",
        "198.18.0.1/24",
    );
    // Isolated path: the DHCP port holds 169.254.169.254/32; the guest has the /32 route
    // (what DHCP option 121 gives it).
    veth(
        &guest_isolated,
        "eth0",
        "198.18.1.10/24",
        &dhcp,
        "tap-test",
        "198.18.1.2/24",
    )
    .unwrap();
    dhcp.exec(
        "ip",
        &["addr", "add", &metadata_host_route(), "dev", "tap-test"],
    )
    .unwrap();
    guest_isolated
        .exec(
            "ip",
            &["route", "add", &metadata_host_route(), "via", "198.18.1.2"],
        )
        .unwrap();
    Lab {
        chain,
        router_id,
        guest_routed,
        guest_isolated,
        uuid_routed,
        uuid_isolated,
        _router: router,
        dhcp,
    }
}

/// Starts `metaboot-server all` over the chain's registry, from a configuration file.
fn start_all(chain: &mut Chain) {
    let db = chain.db.display().to_string();
    let secret = chain.secret_file.display().to_string();
    let config = chain.path().join("metaboot.toml");
    std::fs::write(
        &config,
        format!("db = \"{db}\"\nshared_secret_file = \"{secret}\"\n"),
    )
    .unwrap();
    chain
        .start_role(
            "all",
            &["all", "--config", config.to_str().unwrap()],
            || true,
        )
        .unwrap();
}

/// The router path: the guest's default route is the router, which redirects metadata
/// (169.254.169.254:80) to the proxy's port 9697, as Neutron's L3 agent does.
fn router_path(
    guest: &Netns,
    guest_cidr: &str,
    router: &Netns,
    router_if: &str,
    router_cidr: &str,
) {
    veth(guest, "eth0", guest_cidr, router, router_if, router_cidr).unwrap();
    let gateway = router_cidr.split('/').next().unwrap();
    guest
        .exec("ip", &["route", "add", "default", "via", gateway])
        .unwrap();
    router
        .redirect_metadata("iptables", router_if, &metadata_host_route())
        .unwrap();
}

/// Starts `ns-proxy` for the chain's agent, listening on `listen` inside `netns`, for the
/// router or network `scope` names (`["--router-id", ID]` or `["--network-id", ID]`).
fn start_ns_proxy(chain: &mut Chain, listen: &str, scope: &[String; 2], netns: &str) {
    let socket = chain.agent_socket.display().to_string();
    let args = [
        "ns-proxy", "--socket", &socket, "--listen", listen, &scope[0], &scope[1], "--netns", netns,
    ];
    chain.start_role("ns-proxy", &args, || true).unwrap();
}

/// The uuid a guest in `netns` reads from meta_data.json, waiting until it is served.
fn uuid_from(netns: &Netns, within: Duration) -> String {
    uuid_at(netns, METADATA_IPV4_LISTEN, within)
}

/// [`uuid_from`], asking the proxy at `to`.
fn uuid_at(netns: &Netns, to: SocketAddr, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let reply = netns
            .within(|| guest::get(None, to, "/openstack/latest/meta_data.json", &[]))
            .unwrap();
        match reply {
            Ok(reply) if reply.status == 200 => {
                return reply.json()["uuid"].as_str().unwrap().to_owned();
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "metadata not served in {}: {other:?}",
                    netns.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn all_serves_router_and_isolated_namespaces() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    start_all(&mut lab.chain);
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(10)),
        lab.uuid_routed
    );
    assert_eq!(
        uuid_from(&lab.guest_isolated, Duration::from_secs(10)),
        lab.uuid_isolated
    );
    let to = METADATA_IPV4_LISTEN;
    let hostname = lab
        .guest_routed
        .within(|| {
            guest::get(
                None,
                to,
                "/latest/meta-data/hostname",
                &[("X-Instance-ID", &lab.uuid_isolated)],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(hostname.text(), "web.novalocal");
}

/// One namespace's metadata address held by another server when `all` starts (a haproxy of
/// Neutron's left behind): the other namespaces are served at once, and that one as soon as
/// its address is free, without a restart.
#[test]
fn all_serves_the_other_namespaces_while_one_address_is_held() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    let held = lab
        .dhcp
        .within(|| std::net::TcpListener::bind(METADATA_IPV4_LISTEN))
        .unwrap()
        .unwrap();
    start_all(&mut lab.chain);
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(10)),
        lab.uuid_routed
    );
    drop(held);
    assert_eq!(
        uuid_from(&lab.guest_isolated, Duration::from_secs(10)),
        lab.uuid_isolated
    );
}

#[test]
fn ns_proxy_binds_inside_a_namespace_it_does_not_run_in() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    lab.chain.start().unwrap();
    let netns = format!("qrouter-{}", lab.router_id);
    let router = ["--router-id".to_owned(), lab.router_id.clone()];
    let listen = format!("0.0.0.0:{ROUTER_PROXY_PORT}");
    start_ns_proxy(&mut lab.chain, &listen, &router, &netns);
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(10)),
        lab.uuid_routed
    );
}

#[test]
fn ns_proxy_listens_again_in_its_namespace_made_again() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    lab.chain.start().unwrap();
    let netns = lab.dhcp.name.clone();
    let network = ["--network-id", netns.strip_prefix("qdhcp-").unwrap()].map(str::to_owned);
    let listen = METADATA_IPV4_LISTEN.to_string();
    start_ns_proxy(&mut lab.chain, &listen, &network, &netns);
    assert_eq!(
        uuid_from(&lab.guest_isolated, Duration::from_secs(10)),
        lab.uuid_isolated
    );
    // The DHCP agent deletes the namespace and makes it again (a resync): a new port, the
    // metadata address on it, the guest behind it. The proxy's listener follows the name.
    let dhcp = Netns::create(&netns).unwrap();
    let guest = Netns::create(&format!("mbt-{}-again", std::process::id() % 100_000)).unwrap();
    veth(
        &guest,
        "eth0",
        "198.18.1.10/24",
        &dhcp,
        "tap-again",
        "198.18.1.2/24",
    )
    .unwrap();
    dhcp.exec(
        "ip",
        &["addr", "add", &metadata_host_route(), "dev", "tap-again"],
    )
    .unwrap();
    guest
        .exec(
            "ip",
            &["route", "add", &metadata_host_route(), "via", "198.18.1.2"],
        )
        .unwrap();
    assert_eq!(
        uuid_from(&guest, Duration::from_secs(20)),
        lab.uuid_isolated
    );
}

/// The metadata address added to the DHCP port only after the proxy started (as Neutron adds
/// it, or as DAD ends for fe80::a9fe:a9fe): the proxy starts, serves its other address
/// meanwhile, and the metadata address as soon as the port holds it, without a restart.
#[test]
fn ns_proxy_serves_an_address_once_its_port_holds_it() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    lab.chain.start().unwrap();
    lab.dhcp
        .exec(
            "ip",
            &["addr", "del", &metadata_host_route(), "dev", "tap-test"],
        )
        .unwrap();
    let netns = lab.dhcp.name.clone();
    let network = ["--network-id", netns.strip_prefix("qdhcp-").unwrap()].map(str::to_owned);
    // The DHCP port's own address, held from the start, and the metadata address, not yet.
    let port: SocketAddr = "198.18.1.2:80".parse().unwrap();
    let listen = format!("{port},{METADATA_IPV4_LISTEN}");
    start_ns_proxy(&mut lab.chain, &listen, &network, &netns);
    assert_eq!(
        uuid_at(&lab.guest_isolated, port, Duration::from_secs(10)),
        lab.uuid_isolated,
        "the address held at start is served meanwhile"
    );
    lab.dhcp
        .exec(
            "ip",
            &["addr", "add", &metadata_host_route(), "dev", "tap-test"],
        )
        .unwrap();
    assert_eq!(
        uuid_from(&lab.guest_isolated, Duration::from_secs(10)),
        lab.uuid_isolated
    );
}

#[test]
fn all_follows_routers_and_isolated_networks_as_they_come_and_go() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    start_all(&mut lab.chain);
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(10)),
        lab.uuid_routed
    );

    // A second router, registered while `all` runs, over a namespace made afterwards.
    let id = |v: serde_json::Value, field: &str| v[field].as_str().unwrap().to_owned();
    let routed2 = id(
        lab.chain
            .registry(&["network", "create", "routed2", "--cidr", "198.18.2.0/24"])
            .unwrap(),
        "id",
    );
    let router2 = id(
        lab.chain
            .registry(&["router", "create", "r2", "--network", &routed2])
            .unwrap(),
        "id",
    );
    let uuid2 = id(
        lab.chain
            .registry(&[
                "instance",
                "create",
                "app",
                "--network",
                "routed2",
                "--ip",
                "198.18.2.10",
            ])
            .unwrap(),
        "uuid",
    );
    let tag = format!("{}-{}", std::process::id() % 100_000, "r2");
    let router_ns = Netns::create(&format!("qrouter-{router2}")).unwrap();
    let guest = Netns::create(&format!("mbt-{tag}-g3")).unwrap();
    router_path(
        &guest,
        "198.18.2.10/24",
        &router_ns,
        "qr-test2",
        "198.18.2.1/24",
    );
    assert_eq!(uuid_from(&guest, Duration::from_secs(10)), uuid2);

    // Removed from the registry: its listener goes (connections are refused).
    lab.chain.run(&["instance", "delete", &uuid2]).unwrap();
    lab.chain
        .run(&["router", "remove-network", &router2, &routed2])
        .unwrap();
    lab.chain.run(&["router", "delete", &router2]).unwrap();
    let to = METADATA_IPV4_LISTEN;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = guest
            .within(|| guest::get(None, to, "/", &[]).is_err())
            .unwrap();
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed router's listener is still up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The other router is still served.
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(5)),
        lab.uuid_routed
    );
}

/// How long a held connection must stay open to count as admitted: a refused one is closed
/// as soon as the server accepts it.
const ADMITTED_AFTER: Duration = Duration::from_secs(1);

/// [`hold`], until the server admits the connection; returns it and how many were refused
/// first. The guest's previous connection may still hold its place for a moment after the
/// guest closed it (the server sees the close asynchronously): a connection refused then is
/// tried again.
fn hold_admitted(from: std::net::IpAddr) -> (std::net::TcpStream, usize) {
    use std::io::{ErrorKind, Read as _};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let mut stream = hold(from);
        stream.set_read_timeout(Some(ADMITTED_AFTER)).unwrap();
        match stream.read(&mut [0u8; 1]) {
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                stream.set_read_timeout(None).unwrap();
                return (stream, refused);
            }
            // Closed at once (EOF, or a reset over the unread half head): refused.
            Ok(0) | Err(_) => refused += 1,
            Ok(_) => panic!("a half request head was answered"),
        }
        assert!(Instant::now() < deadline, "no connection admitted in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends half a request head from `from` (inside the caller's namespace) and keeps the
/// connection.
fn hold(from: std::net::IpAddr) -> std::net::TcpStream {
    use std::io::Write as _;
    let to = METADATA_IPV4_LISTEN;
    let mut stream = guest::connect(Some(from), to).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    stream
}

#[test]
fn all_caps_connections_per_guest_and_a_second_all_cannot_take_its_namespaces() {
    if !require_root() || !require_command("iptables") {
        return;
    }
    let mut lab = lab();
    let metrics = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    let db = lab.chain.db.display().to_string();
    let secret = lab.chain.secret_file.display().to_string();
    let config = lab.chain.path().join("capped.toml");
    std::fs::write(
        &config,
        format!(
            "db = \"{db}\"\nshared_secret_file = \"{secret}\"\n\
             [proxy]\nmax_connections_per_guest = 2\n[metrics]\nlisten = \"{metrics}\"\n"
        ),
    )
    .unwrap();
    lab.chain
        .start_role(
            "all",
            &["all", "--config", config.to_str().unwrap()],
            || true,
        )
        .unwrap();
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(10)),
        lab.uuid_routed
    );
    // A neighbour behind the same router: a second address in the guest's namespace.
    lab.guest_routed
        .exec("ip", &["addr", "add", "198.18.0.11/24", "dev", "eth0"])
        .unwrap();
    let (guest_ip, neighbour) = (
        std::net::IpAddr::from([198, 18, 0, 10]),
        std::net::IpAddr::from([198, 18, 0, 11]),
    );
    let to = METADATA_IPV4_LISTEN;
    let (held, third, neighbour_status) = lab
        .guest_routed
        .within(|| {
            let (first, refused_before) = hold_admitted(guest_ip);
            let (second, refused_between) = hold_admitted(guest_ip);
            let held = ([first, second], refused_before + refused_between);
            // The guest's third connection is closed at once (an admitted one would wait
            // out the 10 s head timeout).
            let mut third = hold(guest_ip);
            let started = Instant::now();
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut third, &mut rest);
            let third = (started.elapsed(), rest);
            // The neighbour is served at once (no instance has its address: 404).
            let started = Instant::now();
            let status = guest::get(Some(neighbour), to, "/openstack/latest/meta_data.json", &[])
                .unwrap()
                .status;
            (held, third, (status, started.elapsed()))
        })
        .unwrap();
    assert!(
        third.0 < Duration::from_secs(2),
        "the third connection was held {:?}",
        third.0
    );
    assert!(third.1.is_empty(), "the third connection was answered");
    assert_eq!(neighbour_status.0, 404);
    assert!(
        neighbour_status.1 < Duration::from_secs(1),
        "{:?}",
        neighbour_status.1
    );
    let text = guest::get(None, metrics, "/metrics", &[]).unwrap().text();
    let refusals = 1 + held.1;
    assert!(
        text.contains(&format!(
            "metaboot_rejections_total{{role=\"proxy\",reason=\"guest_connection_cap\"}} \
             {refusals}\n"
        )),
        "{text}"
    );
    drop(held);

    // A second `all` over the same registry in the same network namespace is refused at
    // start (its lock, `server/src/all/registry_lock.rs`): exit 2, one line naming the
    // registry and the first's pid, and the first keeps serving.
    let plain = lab.chain.path().join("second.toml");
    std::fs::write(
        &plain,
        format!("db = \"{db}\"\nshared_secret_file = \"{secret}\"\n"),
    )
    .unwrap();
    let mut second = lab.chain.cli();
    second.args(["all", "--config", plain.to_str().unwrap()]);
    let refused = metaboot_tests::chain::run_to_exit(&mut second).unwrap();
    assert_eq!(refused.code, Some(2), "{refused:?}");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{refused:?}");
    let first = lab.chain.pid("all").unwrap();
    assert!(
        lines[0].starts_with(&format!(
            "error: another metaboot-server all (pid {first}) already serves the registry {db} "
        )),
        "{refused:?}"
    );
    assert_eq!(
        uuid_from(&lab.guest_routed, Duration::from_secs(5)),
        lab.uuid_routed
    );
    assert_eq!(
        uuid_from(&lab.guest_isolated, Duration::from_secs(5)),
        lab.uuid_isolated
    );
}
