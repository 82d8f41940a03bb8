//! The three-process chain on loopback (no root): ns-proxy (TCP) → agent (Unix socket) → API,
//! each a real `metaboot-server` process. Guests are played from distinct 127.0.0.0/8
//! addresses, so each is a different port in the registry.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use metaboot_tests::chain::{Chain, SECRET, Scope};
use metaboot_tests::guest::{self, Reply};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKD8AT/olhGf1Bd+7RQTBj5v/r1DvKKFbPsG52AG4gZU guest@chain";
const USER_DATA: &str = "#cloud-config\nhostname: alpha\n";

/// Two tenants with the same CIDR and the same guest address behind two routers.
struct World {
    chain: Chain,
    router_a: SocketAddr,
    router_b: SocketAddr,
    network_a: SocketAddr,
    a: String,
    b: String,
    c: String,
    net_a: String,
}

fn guest_ip(last: u8) -> IpAddr {
    IpAddr::from([127, 10, 0, last])
}

fn world() -> World {
    world_with(&[])
}

/// The world, its agent started with `agent_flags`.
fn world_with(agent_flags: &[&str]) -> World {
    let mut chain = Chain::new().unwrap();
    chain.agent_flags = agent_flags.iter().map(|f| (*f).to_owned()).collect();
    let key = chain.path().join("id_ed25519.pub");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let user_data = chain.path().join("user-data");
    std::fs::write(&user_data, USER_DATA).unwrap();
    let id = |v: serde_json::Value, field: &str| {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {v}"))
            .to_owned()
    };
    let net_a = id(
        chain
            .registry(&[
                "network",
                "create",
                "net-a",
                "--cidr",
                "127.10.0.0/24",
                "--project",
                "pa",
            ])
            .unwrap(),
        "id",
    );
    let net_b = id(
        chain
            .registry(&[
                "network",
                "create",
                "net-b",
                "--cidr",
                "127.10.0.0/24",
                "--project",
                "pb",
            ])
            .unwrap(),
        "id",
    );
    let r_a = id(
        chain
            .registry(&[
                "router",
                "create",
                "r-a",
                "--network",
                &net_a,
                "--project",
                "pa",
            ])
            .unwrap(),
        "id",
    );
    let r_b = id(
        chain
            .registry(&[
                "router",
                "create",
                "r-b",
                "--network",
                &net_b,
                "--project",
                "pb",
            ])
            .unwrap(),
        "id",
    );
    let a = id(
        chain
            .registry(&[
                "instance",
                "create",
                "alpha",
                "--network",
                "net-a",
                "--ip",
                "127.10.0.10",
                "--project",
                "pa",
                "--key-file",
                key.to_str().unwrap(),
                "--user-data",
                user_data.to_str().unwrap(),
                "--meta",
                "role=web",
            ])
            .unwrap(),
        "uuid",
    );
    let b = id(
        chain
            .registry(&[
                "instance",
                "create",
                "bravo",
                "--network",
                "net-b",
                "--ip",
                "127.10.0.10",
                "--project",
                "pb",
            ])
            .unwrap(),
        "uuid",
    );
    let c = id(
        chain
            .registry(&[
                "instance",
                "create",
                "charlie",
                "--network",
                "net-a",
                "--ip",
                "127.10.0.11",
                "--project",
                "pa",
            ])
            .unwrap(),
        "uuid",
    );
    chain.start().unwrap();
    let router_a = chain.start_proxy(&Scope::Router(r_a), &[]).unwrap();
    let router_b = chain.start_proxy(&Scope::Router(r_b), &[]).unwrap();
    let network_a = chain
        .start_proxy(&Scope::Network(net_a.clone()), &[])
        .unwrap();
    World {
        chain,
        router_a,
        router_b,
        network_a,
        a,
        b,
        c,
        net_a,
    }
}

fn get(from: u8, proxy: SocketAddr, path: &str) -> Reply {
    guest::get(Some(guest_ip(from)), proxy, path, &[]).unwrap()
}

fn uuid_via(from: u8, proxy: SocketAddr, headers: &[(&str, &str)]) -> (u16, String) {
    let reply = guest::get(
        Some(guest_ip(from)),
        proxy,
        "/openstack/latest/meta_data.json",
        headers,
    )
    .unwrap();
    if reply.status != 200 {
        return (reply.status, reply.text());
    }
    (
        reply.status,
        reply.json()["uuid"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn each_guest_gets_its_own_metadata_through_router_and_network_proxies() {
    let w = world();
    // Router path: the same address behind two routers is two instances.
    assert_eq!(uuid_via(10, w.router_a, &[]), (200, w.a.clone()));
    assert_eq!(uuid_via(10, w.router_b, &[]), (200, w.b.clone()));
    assert_eq!(uuid_via(11, w.router_a, &[]), (200, w.c.clone()));
    assert_eq!(uuid_via(11, w.router_b, &[]).0, 404);
    // Network path.
    assert_eq!(uuid_via(10, w.network_a, &[]), (200, w.a.clone()));
    assert_eq!(uuid_via(12, w.network_a, &[]).0, 404);

    let md = get(10, w.router_a, "/openstack/latest/meta_data.json");
    assert_eq!(md.header("content-type"), Some("application/json"));
    let md = md.json();
    assert_eq!(md["hostname"], "alpha.novalocal");
    assert_eq!(md["project_id"], "pa");
    assert_eq!(md["meta"]["role"], "web");
    assert_eq!(md["public_keys"]["id_ed25519"], KEY);
    let user_data = get(10, w.router_a, "/openstack/latest/user_data");
    assert_eq!(
        (user_data.status, user_data.text().as_str()),
        (200, USER_DATA)
    );
    assert_eq!(
        get(10, w.router_b, "/openstack/latest/user_data").status,
        404
    );
    // The EC2 tree through the chain.
    assert_eq!(
        get(10, w.router_a, "/latest/meta-data/hostname").text(),
        "alpha.novalocal"
    );
    assert_eq!(
        get(10, w.router_a, "/latest/meta-data/local-ipv4").text(),
        "127.10.0.10"
    );
    assert_eq!(
        get(
            10,
            w.router_a,
            "/latest/meta-data/public-keys/0/openssh-key"
        )
        .text(),
        KEY
    );
    assert_eq!(
        get(10, w.router_a, "/2009-04-04/user-data").text(),
        USER_DATA
    );
    assert_eq!(
        get(10, w.router_a, "/").text().lines().last(),
        Some("latest")
    );
    let nd = get(10, w.network_a, "/openstack/latest/network_data.json").json();
    assert_eq!(nd["networks"][0]["network_id"], w.net_a.as_str());
    // HEAD: headers only.
    let head = guest::send(
        Some(guest_ip(10)),
        w.router_a,
        "HEAD",
        "/openstack/latest/user_data",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(USER_DATA.len().to_string().as_str())
    );
    // The password endpoint through the chain: set once.
    let post = |body: &[u8]| {
        guest::send(
            Some(guest_ip(10)),
            w.router_a,
            "POST",
            "/openstack/latest/password",
            &[],
            body,
        )
        .unwrap()
        .status
    };
    assert_eq!(post(b"ZW5jcnlwdGVk"), 200);
    assert_eq!(post(b"b3RoZXI="), 409);
    assert_eq!(
        get(10, w.router_a, "/openstack/latest/password").text(),
        "ZW5jcnlwdGVk"
    );
    assert_eq!(get(11, w.router_a, "/openstack/latest/password").text(), "");
}

/// A proxy given several `--listen` addresses serves guests on each (a DHCP namespace's
/// `169.254.169.254:80` and `[fe80::a9fe:a9fe]:80`, here two loopback ports).
#[test]
fn a_proxy_serves_guests_on_every_address_it_listens_on() {
    let mut w = world();
    let second = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    let first = w
        .chain
        .start_proxy(
            &Scope::Network(w.net_a.clone()),
            &["--listen", &second.to_string()],
        )
        .unwrap();
    for proxy in [first, second] {
        assert_eq!(uuid_via(10, proxy, &[]), (200, w.a.clone()), "via {proxy}");
        assert_eq!(uuid_via(11, proxy, &[]), (200, w.c.clone()), "via {proxy}");
    }
}

#[test]
fn with_api_pipelining_off_every_guest_still_gets_its_own_metadata() {
    let w = world_with(&["--api-pipelining", "off"]);
    let asked: Vec<_> = (0..8)
        .map(|n| {
            let (router_a, router_b) = (w.router_a, w.router_b);
            std::thread::spawn(move || {
                let router = if n % 2 == 0 { router_a } else { router_b };
                uuid_via(10, router, &[])
            })
        })
        .collect();
    for (n, thread) in asked.into_iter().enumerate() {
        let expected = if n % 2 == 0 { &w.a } else { &w.b };
        assert_eq!(thread.join().unwrap(), (200, expected.clone()));
    }
    let md = get(10, w.router_a, "/openstack/latest/meta_data.json").json();
    assert_eq!(md["hostname"], "alpha.novalocal");
}

#[test]
fn forged_identity_headers_never_reach_another_instance() {
    let w = world();
    let forged_signature = metaboot_proto::sign(SECRET.as_bytes(), &w.c);
    let attacks: Vec<Vec<(&str, &str)>> = vec![
        vec![("X-Instance-ID", &w.c)],
        vec![
            ("X-Instance-ID", &w.c),
            ("X-Tenant-ID", "pa"),
            ("X-Instance-ID-Signature", &forged_signature),
        ],
        vec![("X-Neutron-Router-ID", "r-b")],
        vec![("X-Neutron-Network-ID", &w.net_a)],
        vec![("X-Forwarded-For", "127.10.0.11")],
        vec![
            ("x-forwarded-for", "127.10.0.11"),
            ("X-FORWARDED-FOR", "127.10.0.11"),
        ],
        vec![
            ("X-OVN-Network-ID", &w.net_a),
            ("X-Metadata-Provider", "lb"),
        ],
        vec![("X-Instance-ID ", &w.c)],
        vec![
            ("X-Instance-ID", &w.c),
            ("X-Instance-ID", &w.b),
            ("X-Tenant-ID", "pb"),
        ],
    ];
    for headers in &attacks {
        let (status, uuid) = uuid_via(10, w.router_a, headers);
        // Either the request is refused as malformed, or the guest gets its own data.
        assert!(
            status == 400 || (status == 200 && uuid == w.a),
            "{headers:?} gave {status} {uuid}"
        );
        let (status, uuid) = uuid_via(10, w.router_b, headers);
        assert!(
            status == 400 || (status == 200 && uuid == w.b),
            "{headers:?} via r-b gave {status} {uuid}"
        );
    }
}

#[test]
fn the_agent_trusts_only_the_last_forwarded_address() {
    // Operators who keep Neutron's haproxy in front of the agent: haproxy appends the real
    // address after whatever the guest sent.
    let w = world();
    let raw = format!(
        "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         X-Forwarded-For: 127.10.0.11, 127.10.0.10\r\nX-Neutron-Network-ID: {}\r\n\r\n",
        w.net_a
    );
    let mut stream = std::os::unix::net::UnixStream::connect(&w.chain.agent_socket).unwrap();
    use std::io::{Read, Write};
    stream.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let reply = guest::parse(&bytes).unwrap();
    assert_eq!(reply.json()["uuid"], w.a.as_str());
    // Both scope headers, or neither: 400.
    for extra in [
        format!(
            "X-Neutron-Network-ID: {}\r\nX-Neutron-Router-ID: r\r\n",
            w.net_a
        ),
        String::new(),
    ] {
        let raw = format!(
            "GET /latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 127.10.0.10\r\n{extra}\r\n"
        );
        let mut stream = std::os::unix::net::UnixStream::connect(&w.chain.agent_socket).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        assert_eq!(guest::parse(&bytes).unwrap().status, 400, "{extra:?}");
    }
}

fn status_within(from: u8, proxy: SocketAddr, limit: Duration) -> u16 {
    let started = Instant::now();
    let status = get(from, proxy, "/openstack/latest/meta_data.json").status;
    assert!(
        started.elapsed() < limit,
        "answer took {:?}",
        started.elapsed()
    );
    status
}

fn wait_for_status(from: u8, proxy: SocketAddr, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = get(from, proxy, "/openstack/latest/meta_data.json").status;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status}, wanted {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_chain_survives_restarts_of_api_and_agent() {
    let mut w = world();
    assert_eq!(status_within(10, w.router_a, Duration::from_secs(2)), 200);
    // API down: 503 at once, no hang.
    w.chain.stop_api();
    assert_eq!(status_within(10, w.router_a, Duration::from_secs(1)), 503);
    assert_eq!(status_within(11, w.router_a, Duration::from_secs(1)), 503);
    // API back: the agent recovers by itself.
    w.chain.start_api().unwrap();
    wait_for_status(10, w.router_a, 200, Duration::from_secs(5));
    // Agent down: the proxy answers 503 at once.
    w.chain.stop_agent();
    assert_eq!(status_within(10, w.router_a, Duration::from_secs(1)), 503);
    // Agent back: the proxy recovers without a restart.
    w.chain.start_agent().unwrap();
    wait_for_status(10, w.router_a, 200, Duration::from_secs(5));
    assert_eq!(uuid_via(10, w.router_b, &[]), (200, w.b.clone()));
}

#[test]
fn registry_changes_reach_the_running_chain() {
    let w = world();
    assert_eq!(uuid_via(11, w.router_a, &[]), (200, w.c.clone()));
    w.chain.run(&["instance", "delete", &w.c]).unwrap();
    // Well within the caches' TTLs, the deleted instance is gone.
    wait_for_status(11, w.router_a, 404, Duration::from_secs(2));
    let d = w
        .chain
        .registry(&[
            "instance",
            "create",
            "delta",
            "--network",
            "net-a",
            "--ip",
            "127.10.0.11",
            "--project",
            "pa",
        ])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, uuid) = uuid_via(11, w.router_a, &[]);
        if status == 200 {
            assert_eq!(
                uuid,
                d["uuid"].as_str().unwrap(),
                "the address now belongs to delta"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delta not served: {status} {uuid}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_proxy_rate_limit_answers_429() {
    let mut w = world();
    let router = w.chain.registry(&["router", "show", "r-a"]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let limited = w
        .chain
        .start_proxy(
            &Scope::Router(router),
            &["--rate-limit", "3", "--rate-window", "60"],
        )
        .unwrap();
    let statuses: Vec<u16> = (0..5).map(|_| get(10, limited, "/latest").status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Another guest has its own budget.
    assert_eq!(get(11, limited, "/latest").status, 200);
}

#[test]
fn each_role_serves_prometheus_metrics() {
    let mut w = world();
    let api_metrics = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    w.chain.api_flags = vec!["--metrics-listen".into(), api_metrics.to_string()];
    w.chain.start_api().unwrap();
    let proxy_metrics = SocketAddr::from(([127, 0, 0, 1], metaboot_tests::chain::free_port()));
    let router = w.chain.registry(&["router", "show", "r-a"]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = w
        .chain
        .start_proxy(
            &Scope::Router(router),
            &["--metrics-listen", &proxy_metrics.to_string()],
        )
        .unwrap();
    assert_eq!(
        get(10, proxy, "/openstack/latest/meta_data.json").status,
        200
    );
    assert_eq!(
        get(12, proxy, "/openstack/latest/meta_data.json").status,
        404
    );
    let forged = [("X-Instance-ID", "x")];
    let _ = guest::get(Some(guest_ip(10)), proxy, "/latest", &forged).unwrap();
    let scrape = |addr| guest::get(None, addr, "/metrics", &[]).unwrap().text();
    let proxy_text = scrape(proxy_metrics);
    assert!(
        proxy_text.contains("metaboot_requests_total{role=\"proxy\",status=\"200\"} 2"),
        "{proxy_text}"
    );
    assert!(
        proxy_text.contains("metaboot_requests_total{role=\"proxy\",status=\"404\"} 1"),
        "{proxy_text}"
    );
    assert!(
        proxy_text.contains("metaboot_upstream_latency_seconds_count{role=\"proxy\"} 3"),
        "{proxy_text}"
    );
    let api_text = scrape(api_metrics);
    assert!(
        api_text.contains("metaboot_requests_total{role=\"api\",status=\"200\"} 2"),
        "{api_text}"
    );
    assert!(
        api_text.contains("metaboot_cache_hits_total{role=\"api\"} 1"),
        "{api_text}"
    );
}
