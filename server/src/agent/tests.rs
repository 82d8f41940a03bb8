//! The agent's lookups against the read model of a real SQLite registry: no request costs a
//! registry read, whatever the API answers.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use metaboot_proto::headers;

use super::relay::Agent;
use crate::http::{Answer, Reply};
use crate::model::ReadModel;
use crate::store::{NewInstance, NewNetwork, NewPort, NewRouter, Subnet};

const GUEST: [u8; 4] = [198, 18, 0, 10];
const GUEST_MAC: &str = "fa:16:3e:00:00:0a";
/// The guest's IPv6 link-local address: `fe80::` + the EUI-64 of its MAC.
const GUEST_LINK_LOCAL: &str = "fe80::f816:3eff:fe00:a";

/// A registry with one guest behind a router, the agent over it, and the proxy's headers for
/// that guest.
fn agent() -> (tempfile::TempDir, Arc<Agent>, HeaderMap) {
    agent_on(None)
}

/// [`agent`] with the guest's network dual-stack when `ipv6` names its IPv6 subnet.
fn agent_on(ipv6: Option<&str>) -> (tempfile::TempDir, Arc<Agent>, HeaderMap) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    let network = store
        .create_network(&NewNetwork {
            name: "net".into(),
            project: "p".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            second_subnet: ipv6.map(|cidr| Subnet {
                cidr: cidr.parse().unwrap(),
                gateway: None,
                dhcp_ip: None,
            }),
            ..NewNetwork::default()
        })
        .unwrap();
    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p".into(),
            networks: vec![network.id.clone()],
        })
        .unwrap();
    store
        .create_instance(
            &NewInstance {
                uuid: "00000000-0000-4000-8000-000000000001".into(),
                project: "p".into(),
                name: "vm".into(),
                hostname: "vm".into(),
                ..NewInstance::default()
            },
            &NewPort {
                network_id: network.id,
                ip: Some(IpAddr::from(GUEST)),
                mac: Some(GUEST_MAC.into()),
                ..NewPort::default()
            },
        )
        .unwrap();
    let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
    let agent = Arc::new(Agent::new(model, b"secret".as_slice().into()));
    let mut proxy = HeaderMap::new();
    proxy.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.10"),
    );
    proxy.insert(
        headers::ROUTER_ID,
        HeaderValue::from_str(&router.id).unwrap(),
    );
    (dir, agent, proxy)
}

/// Relays one request whose API answers `status`, marked as an unknown instance or not;
/// returns (final status, the mark reached the guest, times the API was asked).
async fn relay(
    agent: &Agent,
    proxy: &HeaderMap,
    status: StatusCode,
    marked: bool,
) -> (StatusCode, bool, usize) {
    let asked = Cell::new(0);
    let response = agent
        .relay(&Method::GET, "/latest/meta-data/x", proxy, |_| {
            asked.set(asked.get() + 1);
            async move {
                let mut response = Reply::refuse(status, "answer");
                if marked {
                    response
                        .headers_mut()
                        .insert(headers::INSTANCE_UNKNOWN, HeaderValue::from_static("1"));
                }
                Ok::<_, Answer>(response)
            }
        })
        .await;
    let leaked = response.headers().contains_key(headers::INSTANCE_UNKNOWN);
    (response.status(), leaked, asked.get())
}

#[tokio::test]
async fn a_404_for_a_path_costs_no_read() {
    let (_dir, agent, proxy) = agent();
    assert_eq!(
        relay(&agent, &proxy, StatusCode::OK, false).await,
        (StatusCode::OK, false, 1)
    );
    // A flood of 404s for paths: the API asked once each, the registry never.
    for _ in 0..50 {
        let answer = relay(&agent, &proxy, StatusCode::NOT_FOUND, false).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, false, 1));
    }
    assert_eq!(agent.metrics.registry_reads(), 0);
}

#[tokio::test]
async fn an_unknown_instance_from_the_api_is_relayed_without_a_second_lookup() {
    let (_dir, agent, proxy) = agent();
    // The API (in another process, its model behind this one's) does not know the instance:
    // asked once, its 404 relayed, its mark never reaching the guest, no read.
    let answer = relay(&agent, &proxy, StatusCode::NOT_FOUND, true).await;
    assert_eq!(answer, (StatusCode::NOT_FOUND, false, 1));
    assert_eq!(agent.metrics.registry_reads(), 0);
}

#[tokio::test]
async fn an_unknown_guest_costs_no_read() {
    let (_dir, agent, mut proxy) = agent();
    proxy.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.99"),
    );
    for _ in 1..=50 {
        // The agent answers 404 itself: the API is never asked.
        let answer = relay(&agent, &proxy, StatusCode::OK, false).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, false, 0));
    }
    assert_eq!(agent.metrics.registry_reads(), 0);
}

#[test]
fn a_guest_calling_from_its_link_local_address_is_found_by_its_mac() {
    let (_dir, agent, mut proxy) = agent_on(Some("fdc6:1200:0:99::/64"));
    proxy.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static(GUEST_LINK_LOCAL),
    );
    let resolved = agent.resolve(&proxy).unwrap();
    assert_eq!(
        resolved.owner.instance_id,
        "00000000-0000-4000-8000-000000000001"
    );
    // The API is told the address the guest called from, as Neutron's agent forwards it.
    let signed = agent.signed_headers(&resolved);
    assert_eq!(signed[headers::FORWARDED_FOR], GUEST_LINK_LOCAL);
    // Another MAC's link-local address, or one that carries no MAC: nobody's.
    for other in ["fe80::f816:3eff:fe00:b", "fe80::1"] {
        proxy.insert(headers::FORWARDED_FOR, HeaderValue::from_static(other));
        let refused = agent.resolve(&proxy).unwrap_err();
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{other}");
        assert!(refused.reason().contains(other), "{}", refused.reason());
    }
    assert_eq!(agent.metrics.registry_reads(), 0);
}

#[test]
fn a_link_local_caller_on_a_network_without_ipv6_is_nobody() {
    // Metadata over IPv6 is served on networks with an IPv6 subnet only: the MAC of a port on
    // an IPv4-only network is not indexed, and its link-local address finds nobody.
    let (_dir, agent, mut proxy) = agent();
    proxy.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static(GUEST_LINK_LOCAL),
    );
    let refused = agent.resolve(&proxy).unwrap_err();
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(agent.metrics.registry_reads(), 0);
}

/// A token PUT as the agent gets it behind Neutron's haproxy, which appends its own
/// `X-Forwarded-For` line to what the guest sent; returns (status, times the API was asked).
async fn token_put(agent: &Agent, proxy: &HeaderMap, path: &str) -> (StatusCode, usize) {
    let mut headers = proxy.clone();
    headers.insert(
        headers::METADATA_TOKEN_TTL,
        HeaderValue::from_static("21600"),
    );
    let asked = Cell::new(0);
    let response = agent
        .relay(&Method::PUT, path, &headers, |_| {
            asked.set(asked.get() + 1);
            async { Ok::<_, Answer>(Reply::refuse(StatusCode::OK, "token")) }
        })
        .await;
    (response.status(), asked.get())
}

#[tokio::test]
async fn a_token_put_relayed_by_a_proxy_inside_the_guest_is_refused() {
    let (_dir, agent, proxy) = agent();
    // Straight from the guest: one address, the one the proxy in front of the agent wrote.
    assert_eq!(
        token_put(&agent, &proxy, "/latest/api/token").await,
        (StatusCode::OK, 1)
    );
    // Through a proxy in the guest (squid adds a line; haproxy adds its own after it), as a
    // list on one line, or with `Forwarded`: refused before the API is asked, query or not.
    let mut two_lines = HeaderMap::new();
    two_lines.append(headers::FORWARDED_FOR, HeaderValue::from_static("10.0.0.5"));
    two_lines.append(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.10"),
    );
    let mut list = HeaderMap::new();
    list.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("10.0.0.5, 198.18.0.10"),
    );
    let mut forwarded = proxy.clone();
    forwarded.insert(
        http::header::FORWARDED,
        HeaderValue::from_static("for=10.0.0.5"),
    );
    for (relayed, path) in [
        (two_lines, "/latest/api/token"),
        (list, "/latest/api/token?x=1"),
        (forwarded, "/latest//api/token"),
    ] {
        let mut headers = proxy.clone();
        headers.extend(relayed);
        assert_eq!(
            token_put(&agent, &headers, path).await,
            (StatusCode::FORBIDDEN, 0),
            "{headers:?} {path}"
        );
    }
    // Other requests keep the last address as before (docs/protocol.md §2.3).
    let mut two_lines = proxy.clone();
    two_lines.append(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.10"),
    );
    assert_eq!(
        relay(&agent, &two_lines, StatusCode::OK, false).await.0,
        StatusCode::OK
    );
}

/// A guest on host network `lan` whose leases cannot be read (its libvirt dnsmasq
/// configuration is a directory): 503, which cloud-init asks again, never 404, which fails its
/// datasource for the boot.
#[tokio::test]
async fn a_host_network_whose_leases_cannot_be_read_answers_503_not_404() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    let network = store
        .create_network(&NewNetwork {
            name: "lan".into(),
            project: "p".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            host: Some(crate::store::HostBridge::LibvirtNetwork("lan".into())),
            ..NewNetwork::default()
        })
        .unwrap();
    let leases = dir.path().join("leases");
    std::fs::create_dir_all(leases.join("lan.conf")).unwrap();
    let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
    let agent = Agent::new(model, b"secret".as_slice().into())
        .with_leases(Arc::new(crate::leases::HostLeases::new(leases)));
    let mut proxy = HeaderMap::new();
    proxy.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.10"),
    );
    proxy.insert(
        headers::NETWORK_ID,
        HeaderValue::from_str(&network.id).unwrap(),
    );
    let asked = Cell::new(0);
    let response = agent
        .relay(
            &Method::GET,
            "/openstack/latest/meta_data.json",
            &proxy,
            |_| {
                asked.set(asked.get() + 1);
                async { Ok::<_, Answer>(Reply::refuse(StatusCode::OK, "answer")) }
            },
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(asked.get(), 0);
}
