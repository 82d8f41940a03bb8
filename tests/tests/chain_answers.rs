//! What the three-process chain answers for names and unknowns (no root): meta_data.json's
//! `hostname` as nova 23 and later derive it from an instance's name, and what a flood of 404s
//! costs the registry (at most one read each; none for a known guest's missing paths).

use std::net::{IpAddr, SocketAddr};

use metaboot_tests::chain::{Chain, Scope, free_port};
use metaboot_tests::{guest, registry};

const META_DATA: &str = "/openstack/latest/meta_data.json";

#[test]
fn meta_data_hostname_is_derived_as_nova_derives_it() {
    let mut chain = Chain::new().unwrap();
    let (_, router) = registry::routed_network(&chain, "127.11.0.0/24");
    const UUID: &str = "0b6c2f5e-1d3a-4c5b-8e7f-9a0b1c2d3e4f";
    let cases: [(&str, u8, &[&str], String); 4] = [
        // nova ≥ 23 turns dots into dashes: cloud-init then sets web-prod-01, not "web".
        ("web.prod.01", 10, &[], "web-prod-01".to_owned()),
        ("Café Olé", 11, &[], "café-olé".to_owned()),
        // Nothing usable: nova's Server-<uuid>, not one "server" for every such instance.
        ("☃ !!!", 12, &["--uuid", UUID], format!("Server-{UUID}")),
        // A host name given explicitly is kept.
        ("db.prod", 13, &["--hostname", "db-1"], "db-1".to_owned()),
    ];
    for (name, last, extra, _) in &cases {
        let ip = format!("127.11.0.{last}");
        let mut args = vec!["instance", "create", name, "--network", "net", "--ip", &ip];
        args.extend_from_slice(extra);
        chain.registry(&args).unwrap();
    }
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    for (name, last, _, want) in &cases {
        let from = Some(IpAddr::from([127, 11, 0, *last]));
        let md = guest::get(from, proxy, META_DATA, &[]).unwrap().json();
        assert_eq!(md["name"], *name);
        assert_eq!(md["hostname"], format!("{want}.novalocal"), "{name}");
        let ec2 = guest::get(from, proxy, "/latest/meta-data/local-hostname", &[]).unwrap();
        assert_eq!(ec2.text(), format!("{want}.novalocal"), "{name}");
    }
}

/// `metaboot_registry_reads_total` of the role serving metrics at `addr`.
fn registry_reads(addr: SocketAddr) -> u64 {
    let text = guest::get(None, addr, "/metrics", &[]).unwrap().text();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("metaboot_registry_reads_total{")
                .and_then(|rest| rest.split_once("} "))
                .map(|(_, count)| count.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no registry read count:\n{text}"))
}

#[test]
fn a_flood_of_404s_costs_at_most_one_registry_read_each() {
    const FLOOD: u64 = 200;
    const THREADS: u64 = 4;
    let mut chain = Chain::new().unwrap();
    let (_, router) = registry::routed_network(&chain, "127.12.0.0/24");
    chain
        .registry(&[
            "instance",
            "create",
            "known",
            "--network",
            "net",
            "--ip",
            "127.12.0.10",
        ])
        .unwrap();
    let agent_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Lookups cached for longer than the test runs: every read counted is one the flood cost.
    chain.agent_flags = vec![
        "--metrics-listen".into(),
        agent_metrics.to_string(),
        "--cache-ttl".into(),
        "600".into(),
    ];
    chain.api_flags = vec!["--metrics-listen".into(), api_metrics.to_string()];
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let (known, unknown) = (
        IpAddr::from([127, 12, 0, 10]),
        IpAddr::from([127, 12, 0, 99]),
    );
    let get = |from: IpAddr, path: &str| guest::get(Some(from), proxy, path, &[]).unwrap().status;
    let (agent_before, api_before) = (registry_reads(agent_metrics), registry_reads(api_metrics));

    // An unknown guest behind the router, from several connections at once: one lookup each,
    // the router's networks included, and the API is never asked.
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..FLOOD / THREADS {
                    assert_eq!(get(unknown, META_DATA), 404);
                }
            });
        }
    });
    let agent_reads = registry_reads(agent_metrics) - agent_before;
    assert!(
        agent_reads <= FLOOD,
        "{FLOOD} unknown-guest requests cost {agent_reads} reads"
    );
    assert_eq!(registry_reads(api_metrics), api_before);

    // A known guest asking for paths that do not exist: its lookup is cached and the API's 404
    // is about the path, so no request costs a read after the first.
    assert_eq!(get(known, META_DATA), 200);
    let (agent_after, api_after) = (registry_reads(agent_metrics), registry_reads(api_metrics));
    for _ in 0..FLOOD {
        assert_eq!(get(known, "/openstack/latest/no-such-file"), 404);
        assert_eq!(get(known, "/latest/meta-data/no-such-key"), 404);
    }
    assert_eq!(
        registry_reads(agent_metrics),
        agent_after,
        "the agent read the registry again"
    );
    assert_eq!(
        registry_reads(api_metrics),
        api_after,
        "the API read the registry again"
    );
}

#[test]
fn a_cached_guest_the_api_does_not_know_is_looked_up_once_more_per_request() {
    const REQUESTS: u64 = 20;
    let mut chain = Chain::new().unwrap();
    let (_, router) = registry::routed_network(&chain, "127.13.0.0/24");
    chain
        .registry(&[
            "instance",
            "create",
            "gone",
            "--network",
            "net",
            "--ip",
            "127.13.0.10",
        ])
        .unwrap();
    // The API answers from another registry, where that instance does not exist: to the agent,
    // whose cached lookup names it, the API always says "unknown instance".
    let elsewhere = chain.path().join("elsewhere.sqlite");
    let binary = metaboot_tests::chain::server_binary().unwrap();
    let (api_addr, secret) = (chain.api_addr, chain.secret_file.clone());
    chain
        .start_shell_role(
            "api-elsewhere",
            &[
                binary.to_str().unwrap(),
                "--db",
                elsewhere.to_str().unwrap(),
                "api",
                "--listen",
                &api_addr.to_string(),
                "--shared-secret-file",
                secret.to_str().unwrap(),
            ],
            move || std::net::TcpStream::connect(api_addr).is_ok(),
        )
        .unwrap();
    let agent_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    chain.agent_flags = vec![
        "--metrics-listen".into(),
        agent_metrics.to_string(),
        "--cache-ttl".into(),
        "600".into(),
    ];
    chain.start_agent().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let guest = Some(IpAddr::from([127, 13, 0, 10]));
    for request in 1..=REQUESTS {
        let reply = guest::get(guest, proxy, META_DATA, &[]).unwrap();
        assert_eq!(reply.status, 404, "{}", reply.text());
        assert!(
            reply.header("x-instance-unknown").is_none(),
            "the API's mark reached the guest"
        );
        // The first lookup is fresh: no second one. Each later request finds the cached owner,
        // hears that the API does not know it, and looks the guest up once more: one read.
        assert_eq!(
            registry_reads(agent_metrics),
            request,
            "after {request} requests"
        );
    }
}
