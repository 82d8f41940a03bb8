//! What the three-process chain answers for names and unknowns (no root): meta_data.json's
//! `hostname` as nova 23 and later derive it from an instance's name, and what a flood of 404s
//! costs the registry: nothing, since every role answers from its read model in memory.

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
fn a_flood_of_404s_costs_no_registry_read() {
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
    chain.agent_flags = vec!["--metrics-listen".into(), agent_metrics.to_string()];
    chain.api_flags = vec!["--metrics-listen".into(), api_metrics.to_string()];
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let (known, unknown) = (
        IpAddr::from([127, 12, 0, 10]),
        IpAddr::from([127, 12, 0, 99]),
    );
    let get = |from: IpAddr, path: &str| guest::get(Some(from), proxy, path, &[]).unwrap().status;
    let (agent_before, api_before) = (registry_reads(agent_metrics), registry_reads(api_metrics));

    // An unknown guest behind the router, from several connections at once: a lookup in
    // memory each, and the API is never asked.
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..FLOOD / THREADS {
                    assert_eq!(get(unknown, META_DATA), 404);
                }
            });
        }
    });
    assert_eq!(
        (agent_before, api_before),
        (0, 0),
        "starting up is no request"
    );
    assert_eq!(
        registry_reads(agent_metrics),
        0,
        "{FLOOD} unknown-guest requests read the registry"
    );
    assert_eq!(registry_reads(api_metrics), 0);

    // A known guest asking for paths that do not exist, and for its documents: no read.
    assert_eq!(get(known, META_DATA), 200);
    let (agent_after, api_after) = (registry_reads(agent_metrics), registry_reads(api_metrics));
    for _ in 0..FLOOD {
        assert_eq!(get(known, "/openstack/latest/no-such-file"), 404);
        assert_eq!(get(known, "/latest/meta-data/no-such-key"), 404);
    }
    assert_eq!(
        (registry_reads(agent_metrics), agent_after),
        (0, 0),
        "the agent read the registry"
    );
    assert_eq!(
        (registry_reads(api_metrics), api_after),
        (0, 0),
        "the API read the registry"
    );
}

#[test]
fn a_guest_the_api_does_not_know_costs_no_read() {
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
    // whose lookup names it, the API always says "unknown instance".
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
    chain.agent_flags = vec!["--metrics-listen".into(), agent_metrics.to_string()];
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
        // The lookup is in memory: the API's "unknown" costs no read, and no second lookup
        // (it would find the same owner).
        assert_eq!(registry_reads(agent_metrics), 0, "after {request} requests");
    }
}
