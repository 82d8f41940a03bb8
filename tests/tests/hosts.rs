//! Many hosts, one PostgreSQL (root): two `metaboot-server all`, two network nodes, each
//! seeing only its own routers' namespaces (a private /run/netns in its own mount namespace,
//! as each node has its own), with a guest behind each router. An instance created with the
//! CLI is served on the other node within the bound; with PostgreSQL stopped both keep
//! answering every known instance from memory, a write fails with one line and `/metrics`
//! says the store is down; when PostgreSQL is back both catch up without a restart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_proto::METADATA_IPV4;
use metaboot_tests::chain::{Chain, free_port, run_to_exit};
use metaboot_tests::netns::{Netns, veth};
use metaboot_tests::prerequisite::{require, require_command, require_root};
use metaboot_tests::{guest, registry};

/// The bound for PostgreSQL (p99), with a margin for a loaded 2-core machine.
const PROPAGATION: Duration = Duration::from_millis(200);
/// How long the nodes run without PostgreSQL.
const OUTAGE: Duration = Duration::from_secs(2);
/// Longest a node may take to notice PostgreSQL again and catch up.
const RECOVERY: Duration = Duration::from_secs(10);

/// A guest namespace behind a router namespace with Neutron's REDIRECT of :80 to :9697.
fn router_path(guest: &Netns, guest_cidr: &str, router: &Netns, router_cidr: &str) {
    veth(guest, "eth0", guest_cidr, router, "qr-test", router_cidr).unwrap();
    let gateway = router_cidr.split('/').next().unwrap();
    guest
        .exec("ip", &["route", "add", "default", "via", gateway])
        .unwrap();
    router
        .redirect_metadata("iptables", "qr-test", &format!("{METADATA_IPV4}/32"))
        .unwrap();
}

/// What the guest in `netns` is served (something must answer).
fn served(netns: &Netns) -> Option<String> {
    netns.served_uuid().unwrap_or_else(|err| panic!("{err}"))
}

/// Waits until `netns` is served `want`; how long that took.
fn until_served(netns: &Netns, want: Option<&str>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if netns
            .served_uuid()
            .is_ok_and(|seen| seen.as_deref() == want)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} never served {want:?}",
            netns.name
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = guest::get(None, addr, "/metrics", &[]).unwrap().text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}:\n{text}"))
}

/// Starts `all` as network node `node`: in a mount namespace of its own whose /run/netns
/// holds only `namespaces` (the node's routers), with a runtime directory of its own (where
/// `all` keeps its lock on the registry, as each host has its own /run/metaboot), over the
/// registry at `url`.
fn start_node(chain: &mut Chain, node: &str, url: &str, namespaces: &[&str], metrics: SocketAddr) {
    let binary = chain.server.display().to_string();
    let secret = chain.secret_file.display().to_string();
    let seen = chain.path().join(format!("{node}-netns"));
    std::fs::create_dir_all(&seen).unwrap();
    let binds: String = namespaces
        .iter()
        .map(|ns| {
            format!(
                "touch /run/netns/{ns} && mount --bind {seen}/all/{ns} /run/netns/{ns} && ",
                seen = seen.display()
            )
        })
        .collect();
    let script = format!(
        "mkdir -p {seen}/all && mount --rbind /run/netns {seen}/all && \
         mount -t tmpfs tmpfs /run/netns && {binds}\
         RUNTIME_DIRECTORY={seen}/run exec {binary} --db '{url}' all --shared-secret-file {secret} --metrics-listen {metrics}",
        seen = seen.display()
    );
    chain
        .start_shell_role(
            node,
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ],
            || std::net::TcpStream::connect(metrics).is_ok(),
        )
        .unwrap();
}

#[test]
fn two_nodes_on_one_postgresql_serve_each_others_writes_and_survive_its_outage() {
    if !require_root() || !require_command("iptables") || !require_command("unshare") {
        return;
    }
    let server = PgServer::start();
    if !require(
        "PostgreSQL",
        server.as_ref().err().map(|err| format!("{err:#}")),
    ) {
        return;
    }
    let mut server = server.unwrap();
    let url = server.create_database("hosts").unwrap();
    let mut chain = Chain::with_database(&url).unwrap();
    let net_a = registry::created(
        &chain,
        &["network", "create", "net-a", "--cidr", "198.18.0.0/24"],
        "id",
    );
    let net_b = registry::created(
        &chain,
        &["network", "create", "net-b", "--cidr", "198.18.2.0/24"],
        "id",
    );
    let router_a = registry::created(
        &chain,
        &["router", "create", "ra", "--network", &net_a],
        "id",
    );
    let router_b = registry::created(
        &chain,
        &["router", "create", "rb", "--network", &net_b],
        "id",
    );
    let first = registry::instance(&chain, "first", "net-a", "198.18.0.10");

    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = format!(
        "{}-{}",
        std::process::id() % 100_000,
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (qr_a, qr_b) = (format!("qrouter-{router_a}"), format!("qrouter-{router_b}"));
    let ns_a = Netns::create(&qr_a).unwrap();
    let ns_b = Netns::create(&qr_b).unwrap();
    let guest_a = Netns::create(&format!("mbh-{tag}-a")).unwrap();
    let guest_b = Netns::create(&format!("mbh-{tag}-b")).unwrap();
    router_path(&guest_a, "198.18.0.10/24", &ns_a, "198.18.0.1/24");
    router_path(&guest_b, "198.18.2.10/24", &ns_b, "198.18.2.1/24");

    let metrics_a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics_b = SocketAddr::from(([127, 0, 0, 1], free_port()));
    start_node(&mut chain, "node-a", &url, &[&qr_a], metrics_a);
    start_node(&mut chain, "node-b", &url, &[&qr_b], metrics_b);
    until_served(&guest_a, Some(&first), Duration::from_secs(10));
    // Node B does not see router A's namespace (and so does not fight node A for it).
    until_served(&guest_b, None, Duration::from_secs(10));

    // Written with the CLI (as on node A), served on node B within the bound, many times.
    let mut waits = Vec::new();
    let mut on_b: Option<String> = None;
    for round in 0..10 {
        if let Some(old) = on_b.take() {
            chain.run(&["instance", "delete", &old]).unwrap();
            waits.push(until_served(&guest_b, None, Duration::from_secs(5)));
        }
        let uuid = registry::instance(&chain, &format!("b{round}"), "net-b", "198.18.2.10");
        waits.push(until_served(&guest_b, Some(&uuid), Duration::from_secs(5)));
        on_b = Some(uuid);
    }
    waits.sort();
    let worst = *waits.last().unwrap();
    eprintln!(
        "propagation to node B over {} writes: median {:?}, max {worst:?}",
        waits.len(),
        waits[waits.len() / 2]
    );
    assert!(worst <= PROPAGATION, "{waits:?}");
    let on_b = on_b.unwrap();

    // PostgreSQL stops: both nodes answer every known instance from memory, say so in
    // /metrics, and a write fails with one line.
    let pids = chain.pids();
    server.stop().unwrap();
    let until = Instant::now() + OUTAGE;
    while Instant::now() < until {
        assert_eq!(served(&guest_a).as_deref(), Some(first.as_str()));
        assert_eq!(served(&guest_b).as_deref(), Some(on_b.as_str()));
        std::thread::sleep(Duration::from_millis(50));
    }
    for metrics in [metrics_a, metrics_b] {
        assert_eq!(metric(metrics, "metaboot_store_up"), 0);
    }
    let mut write = chain.cli();
    write.args([
        "instance",
        "create",
        "during",
        "--network",
        "net-a",
        "--ip",
        "198.18.0.11",
    ]);
    let refused = run_to_exit(&mut write).unwrap();
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    assert!(refused.stderr.contains("PostgreSQL"), "{refused:?}");

    // PostgreSQL is back: both catch up without a restart and lose nothing.
    server.start_again().unwrap();
    let deadline = Instant::now() + RECOVERY;
    while metric(metrics_a, "metaboot_store_up") == 0 || metric(metrics_b, "metaboot_store_up") == 0
    {
        assert!(
            Instant::now() < deadline,
            "a node never saw PostgreSQL again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    chain.run(&["instance", "delete", &first]).unwrap();
    let moved = registry::instance(&chain, "moved", "net-a", "198.18.0.10");
    until_served(&guest_a, Some(&moved), RECOVERY);
    assert_eq!(served(&guest_b).as_deref(), Some(on_b.as_str()));
    assert_eq!(chain.pids(), pids, "a node restarted");
}
