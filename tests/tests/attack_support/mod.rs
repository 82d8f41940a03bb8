//! The world the attack suites play in: two tenants whose networks overlap (same CIDR, same
//! guest address behind two routers), three instances each carrying a secret marker in its user
//! data, metadata and name, and the real three-process chain serving them.
//!
//! Every attack checks the same thing: an answer either refuses (4xx) or carries the asking
//! guest's own data, and no body ever holds another instance's uuid or marker.

// Each attack binary uses part of this module.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use metaboot_proto::METADATA_IPV4;
use metaboot_tests::chain::{Chain, Scope};
use metaboot_tests::guest::{self, Reply};

/// The guests' address range: both tenants use the same CIDR.
pub const CIDR: &str = "127.20.0.0/24";

/// An instance of the world and what only it may see.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: &'static str,
    pub uuid: String,
    pub project: &'static str,
    /// Its address (last octet of 127.20.0.x).
    pub last: u8,
    /// A string only this instance's documents contain (user data, metadata, key).
    pub marker: String,
}

impl Instance {
    pub fn ip(&self) -> IpAddr {
        guest_ip(self.last)
    }
}

/// The world.
pub struct World {
    pub chain: Chain,
    /// Router of tenant A (net-a: alpha .10, charlie .11).
    pub router_a: SocketAddr,
    /// Router of tenant B (net-b: bravo .10).
    pub router_b: SocketAddr,
    /// DHCP-namespace proxy of net-a.
    pub network_a: SocketAddr,
    pub router_a_id: String,
    pub router_b_id: String,
    pub net_a: String,
    pub net_b: String,
    pub alpha: Instance,
    pub bravo: Instance,
    pub charlie: Instance,
}

/// 127.20.0.`last`.
pub fn guest_ip(last: u8) -> IpAddr {
    IpAddr::from([127, 20, 0, last])
}

/// A field of a registry command's JSON output.
pub fn field(value: &serde_json::Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
        .to_owned()
}

/// Registers an instance with a marker in its user data, metadata and key comment.
pub fn create_instance(
    chain: &Chain,
    name: &'static str,
    network: &str,
    project: &'static str,
    last: u8,
) -> Instance {
    let marker = format!("MARKER-{name}-{}", std::process::id());
    let user_data = chain.path().join(format!("{name}.user-data"));
    std::fs::write(
        &user_data,
        format!("#cloud-config\nhostname: {name}\n# {marker}\n"),
    )
    .unwrap();
    let key = chain.path().join(format!("{name}.pub"));
    std::fs::write(
        &key,
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKD8AT/olhGf1Bd+7RQTBj5v/r1DvKKFbPsG52AG4gZU {marker}\n"
        ),
    )
    .unwrap();
    let ip = guest_ip(last).to_string();
    let meta = format!("secret={marker}");
    let created = chain
        .registry(&[
            "instance",
            "create",
            name,
            "--network",
            network,
            "--ip",
            &ip,
            "--project",
            project,
            "--key-file",
            key.to_str().unwrap(),
            "--user-data",
            user_data.to_str().unwrap(),
            "--meta",
            &meta,
        ])
        .unwrap();
    Instance {
        name,
        uuid: field(&created, "uuid"),
        project,
        last,
        marker,
    }
}

/// Two tenants, overlapping networks, three instances; the registry only (no process yet).
pub fn registry() -> (Chain, [String; 4], [Instance; 3]) {
    let chain = Chain::new().unwrap();
    let network = |name: &str, project: &str| {
        field(
            &chain
                .registry(&[
                    "network",
                    "create",
                    name,
                    "--cidr",
                    CIDR,
                    "--project",
                    project,
                ])
                .unwrap(),
            "id",
        )
    };
    let net_a = network("net-a", "pa");
    let net_b = network("net-b", "pb");
    let router = |name: &str, net: &str, project: &str| {
        field(
            &chain
                .registry(&[
                    "router",
                    "create",
                    name,
                    "--network",
                    net,
                    "--project",
                    project,
                ])
                .unwrap(),
            "id",
        )
    };
    let router_a_id = router("r-a", &net_a, "pa");
    let router_b_id = router("r-b", &net_b, "pb");
    let alpha = create_instance(&chain, "alpha", &net_a, "pa", 10);
    let bravo = create_instance(&chain, "bravo", &net_b, "pb", 10);
    let charlie = create_instance(&chain, "charlie", &net_a, "pa", 11);
    (
        chain,
        [net_a, net_b, router_a_id, router_b_id],
        [alpha, bravo, charlie],
    )
}

/// The world with API, agent and three proxies running; `api_flags` and `agent_flags` are
/// passed to those roles.
pub fn world_with(api_flags: &[&str], agent_flags: &[&str]) -> World {
    let (mut chain, [net_a, net_b, router_a_id, router_b_id], [alpha, bravo, charlie]) = registry();
    chain.api_flags = api_flags.iter().map(|s| (*s).to_owned()).collect();
    chain.agent_flags = agent_flags.iter().map(|s| (*s).to_owned()).collect();
    chain.start().unwrap();
    let router_a = chain
        .start_proxy(&Scope::Router(router_a_id.clone()), &[])
        .unwrap();
    let router_b = chain
        .start_proxy(&Scope::Router(router_b_id.clone()), &[])
        .unwrap();
    let network_a = chain
        .start_proxy(&Scope::Network(net_a.clone()), &[])
        .unwrap();
    World {
        chain,
        router_a,
        router_b,
        network_a,
        router_a_id,
        router_b_id,
        net_a,
        net_b,
        alpha,
        bravo,
        charlie,
    }
}

/// The world with default flags.
pub fn world() -> World {
    world_with(&[], &[])
}

impl World {
    pub fn instances(&self) -> [&Instance; 3] {
        [&self.alpha, &self.bravo, &self.charlie]
    }

    /// Every instance but `me`.
    pub fn others(&self, me: &Instance) -> Vec<&Instance> {
        self.instances()
            .into_iter()
            .filter(|other| other.uuid != me.uuid)
            .collect()
    }
}

/// Panics when `reply` holds anything of `others`.
pub fn assert_no_leak(reply: &Reply, others: &[&Instance], context: &str) {
    let text = String::from_utf8_lossy(&reply.body);
    for other in others {
        assert!(
            !text.contains(&other.uuid) && !text.contains(&other.marker),
            "{context}: {} leaked to another guest: {} {text}",
            other.name,
            reply.status
        );
    }
}

/// Checks an answer to `me` for `/openstack/latest/meta_data.json`: a refusal (400, 404) or
/// `me`'s own document, and nothing of the others.
pub fn assert_own_or_refused(reply: &Reply, me: &Instance, others: &[&Instance], context: &str) {
    assert_no_leak(reply, others, context);
    match reply.status {
        200 => assert_eq!(
            reply.json()["uuid"].as_str(),
            Some(me.uuid.as_str()),
            "{context}: 200 with another document"
        ),
        400 | 404 => {}
        other => panic!("{context}: unexpected status {other}: {}", reply.text()),
    }
}

/// `GET path` from `me` through `proxy` with raw extra header lines (each without CRLF).
pub fn get_raw(me: &Instance, proxy: SocketAddr, path: &str, lines: &[String]) -> Reply {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {METADATA_IPV4}\r\nConnection: close\r\n");
    for line in lines {
        raw.push_str(line);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    guest::exchange(Some(me.ip()), proxy, raw.as_bytes())
        .unwrap_or_else(|err| panic!("{path} {lines:?}: {err}"))
}
