//! Addresses: overlapping tenant IPs, IP and MAC rules, allocation.

use std::collections::HashSet;
use std::net::IpAddr;

use metaboot_server::store::{NewNetwork, NewPort, NewRouter, Port, Store};

use crate::support::{
    conflict, instance, invalid, ip, network, new_instance, not_found, port_at, port_on, snapshot,
};

/// Threads creating instances on one network at once.
const ALLOCATION_RACERS: usize = 12;
/// Instances registered in one bulk call, most of them without an address.
const BULK_ALLOCATED: usize = 3_000;
/// Every how many instances of the bulk call one goes on a second network.
const BULK_SECOND_NETWORK_EVERY: usize = 20;
/// Every how many instances of the bulk call one is given an address ahead of the others.
const BULK_GIVEN_EVERY: usize = 250;

pub fn overlapping_ips_on_two_networks(store: &dyn Store) {
    let a = network(store, "tenant-a", "198.18.0.0/24");
    let b = network(store, "tenant-b", "198.18.0.0/24");
    let on_a = instance(store, "a", &port_at(&a, "198.18.0.10"));
    let on_b = instance(store, "b", &port_at(&b, "198.18.0.10"));
    let address = ip("198.18.0.10");

    assert_eq!(
        store
            .find_ports(address, std::slice::from_ref(&a.id))
            .unwrap(),
        vec![on_a.clone()]
    );
    assert_eq!(
        store
            .find_ports(address, std::slice::from_ref(&b.id))
            .unwrap(),
        vec![on_b.clone()]
    );
    let both = store
        .find_ports(address, &[a.id.clone(), b.id.clone()])
        .unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(store.find_ports_by_ip(address).unwrap().len(), 2);
    assert!(store.find_ports(address, &[]).unwrap().is_empty());
    assert!(
        store
            .find_ports(ip("198.18.0.11"), std::slice::from_ref(&a.id))
            .unwrap()
            .is_empty()
    );
}

/// The router path's lookup: one read over the networks attached to the router, by id.
pub fn ports_behind_a_router(store: &dyn Store) {
    let a = network(store, "tenant-a", "198.18.0.0/24");
    let a2 = network(store, "tenant-a2", "198.18.1.0/24");
    let b = network(store, "tenant-b", "198.18.0.0/24");
    let router = |name: &str, networks: &[&str]| {
        store
            .create_router(&NewRouter {
                name: name.to_owned(),
                project: "p".to_owned(),
                networks: networks.iter().map(|id| (*id).to_owned()).collect(),
            })
            .unwrap()
            .id
    };
    let r_a = router("r-a", &[&a.id, &a2.id]);
    let r_b = router("r-b", &[&b.id]);
    let empty = router("r-empty", &[]);
    let on_a = instance(store, "a", &port_at(&a, "198.18.0.10"));
    let on_a2 = instance(store, "a2", &port_at(&a2, "198.18.1.10"));
    let on_b = instance(store, "b", &port_at(&b, "198.18.0.10"));
    let behind =
        |address: &str, router: &str| store.find_ports_behind_router(ip(address), router).unwrap();
    assert_eq!(behind("198.18.0.10", &r_a), vec![on_a]);
    assert_eq!(behind("198.18.1.10", &r_a), vec![on_a2.clone()]);
    assert_eq!(behind("198.18.0.10", &r_b), vec![on_b]);
    assert!(behind("198.18.1.10", &r_b).is_empty());
    assert!(behind("198.18.0.10", &empty).is_empty());
    assert!(behind("198.18.0.10", "no-such-router").is_empty());
    // By id only: a router's name finds nothing.
    assert!(behind("198.18.0.10", "r-a").is_empty());
    // A network detached from the router is no longer searched, nor one of a deleted router.
    store.remove_router_network(&r_a, &a.id).unwrap();
    assert!(behind("198.18.0.10", &r_a).is_empty());
    assert_eq!(behind("198.18.1.10", &r_a), vec![on_a2]);
    store.remove_router_network(&r_b, &b.id).unwrap();
    store.delete_router(&r_b).unwrap();
    assert!(behind("198.18.0.10", &r_b).is_empty());
}

pub fn ip_rules_within_a_network(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let first = instance(store, "first", &port_at(&net, "198.18.0.20"));
    let before = snapshot(store);

    let msg = conflict(store.create_instance(&new_instance("dup"), &port_at(&net, "198.18.0.20")));
    assert!(msg.contains(&first.id) && msg.contains("first"), "{msg}");
    let msg = invalid(store.create_instance(&new_instance("out"), &port_at(&net, "198.18.1.5")));
    assert!(
        msg.contains("outside network net1 (198.18.0.0/24)"),
        "{msg}"
    );
    invalid(store.create_instance(&new_instance("netaddr"), &port_at(&net, "198.18.0.0")));
    invalid(store.create_instance(&new_instance("bcast"), &port_at(&net, "198.18.0.255")));
    let msg = conflict(store.create_instance(&new_instance("gw"), &port_at(&net, "198.18.0.1")));
    assert!(msg.contains("gateway"), "{msg}");
    let msg = conflict(store.create_instance(&new_instance("dhcp"), &port_at(&net, "198.18.0.2")));
    assert!(msg.contains("DHCP"), "{msg}");
    invalid(store.create_instance(&new_instance("v6"), &port_at(&net, "fd00::5")));
    not_found(store.create_instance(
        &new_instance("nonet"),
        &NewPort {
            network_id: "missing".into(),
            ..NewPort::default()
        },
    ));
    assert_eq!(snapshot(store), before);
}

pub fn mac_is_unique_and_normalised(store: &dyn Store) {
    let a = network(store, "a", "198.18.0.0/24");
    let b = network(store, "b", "198.18.1.0/24");
    let port = instance(
        store,
        "x",
        &NewPort {
            mac: Some("FA:16:3E:AA:BB:CC".into()),
            ..port_on(&a)
        },
    );
    assert_eq!(port.mac, "fa:16:3e:aa:bb:cc");
    let before = snapshot(store);
    // Unique across networks, whatever the spelling.
    let msg = conflict(store.create_instance(
        &new_instance("y"),
        &NewPort {
            mac: Some("fa-16-3e-aa-bb-cc".into()),
            ..port_on(&b)
        },
    ));
    assert!(msg.contains("fa:16:3e:aa:bb:cc"), "{msg}");
    invalid(store.create_instance(
        &new_instance("m"),
        &NewPort {
            mac: Some("01:00:5e:00:00:01".into()),
            ..port_on(&b)
        },
    ));
    invalid(store.create_instance(
        &new_instance("g"),
        &NewPort {
            mac: Some("garbage".into()),
            ..port_on(&b)
        },
    ));
    assert_eq!(snapshot(store), before);

    // Allocated MACs are distinct.
    let macs: HashSet<String> = (0..20)
        .map(|i| instance(store, &format!("n{i}"), &port_on(&b)).mac)
        .collect();
    assert_eq!(macs.len(), 20);
}

pub fn allocation_fills_lowest_free(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let ips: Vec<IpAddr> = (0..3)
        .map(|i| instance(store, &format!("i{i}"), &port_on(&net)).ip)
        .collect();
    assert_eq!(
        ips,
        vec![ip("198.18.0.3"), ip("198.18.0.4"), ip("198.18.0.5")]
    );

    let middle = store.find_ports_by_ip(ip("198.18.0.4")).unwrap();
    store.delete_instance(&middle[0].instance_id).unwrap();
    assert_eq!(
        instance(store, "refill", &port_on(&net)).ip,
        ip("198.18.0.4")
    );

    instance(store, "fixed", &port_at(&net, "198.18.0.6"));
    assert_eq!(instance(store, "next", &port_on(&net)).ip, ip("198.18.0.7"));

    // Given gateway and DHCP addresses are skipped wherever they are.
    let custom = store
        .create_network(&NewNetwork {
            name: "custom".into(),
            project: "p1".into(),
            cidr: "198.18.1.0/24".parse().unwrap(),
            gateway: Some(ip("198.18.1.2")),
            dhcp_ip: Some(ip("198.18.1.3")),
            ..NewNetwork::default()
        })
        .unwrap();
    let ips: Vec<IpAddr> = (0..2)
        .map(|i| instance(store, &format!("c{i}"), &port_on(&custom)).ip)
        .collect();
    assert_eq!(ips, vec![ip("198.18.1.1"), ip("198.18.1.4")]);
}

pub fn allocation_under_concurrency(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let ports: Vec<Port> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..ALLOCATION_RACERS)
            .map(|i| {
                let port = port_on(&net);
                scope.spawn(move || {
                    store
                        .create_instance(&new_instance(&format!("c{i}")), &port)
                        .unwrap()
                        .1
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<IpAddr> = ports.iter().map(|p| p.ip).collect();
    let macs: HashSet<&str> = ports.iter().map(|p| p.mac.as_str()).collect();
    assert_eq!(ips.len(), ALLOCATION_RACERS);
    assert_eq!(macs.len(), ALLOCATION_RACERS);
    // Dense: exactly the lowest addresses.
    let expected: HashSet<IpAddr> = (3..3 + ALLOCATION_RACERS)
        .map(|i| ip(&format!("198.18.0.{i}")))
        .collect();
    assert_eq!(ips, expected);
}

pub fn full_network_refuses_cleanly(store: &dyn Store) {
    // A /29 has six hosts: gateway, DHCP and four instances.
    let net = network(store, "small", "198.18.0.0/29");
    for i in 0..4 {
        instance(store, &format!("i{i}"), &port_on(&net));
    }
    let before = snapshot(store);
    let msg = conflict(store.create_instance(&new_instance("one-too-many"), &port_on(&net)));
    assert!(msg.contains("no free address"), "{msg}");
    assert_eq!(snapshot(store), before);
}

/// The addresses `entries` get in order: each the one given, or else the lowest address from
/// `first` up (past the gateway and DHCP port) not yet in `taken`.
fn lowest_free_in_order(
    first: &str,
    mut taken: HashSet<IpAddr>,
    entries: &[Option<IpAddr>],
) -> Vec<IpAddr> {
    let first: std::net::Ipv4Addr = first.parse().unwrap();
    let mut hosts = (u32::from(first)..).map(|n| IpAddr::V4(n.into()));
    entries
        .iter()
        .map(|given| {
            let next =
                given.unwrap_or_else(|| hosts.by_ref().find(|ip| !taken.contains(ip)).unwrap());
            taken.insert(next);
            next
        })
        .collect()
}

/// A bulk registration hands out addresses as that many single ones would: the lowest free,
/// in order, none twice, each network on its own.
pub fn bulk_allocation_fills_lowest_free_in_order(store: &dyn Store) {
    let net = network(store, "bulk", "198.18.0.0/20");
    let side = network(store, "side", "198.18.64.0/24");
    // Taken before: given addresses around the hole a deleted instance leaves (.4).
    let mut before = HashSet::new();
    for (n, at) in ["198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.1.7"]
        .iter()
        .enumerate()
    {
        before.insert(instance(store, &format!("before{n}"), &port_at(&net, at)).ip);
    }
    let hole = store.find_ports_by_ip(ip("198.18.0.4")).unwrap();
    store.delete_instance(&hole[0].instance_id).unwrap();
    before.remove(&ip("198.18.0.4"));
    let on_side = instance(store, "side-first", &port_on(&side)).ip;

    // One call: most without an address, some on a second network, some given an address
    // the allocation has not reached yet (which it then skips).
    let mut batch = Vec::new();
    let (mut on_net, mut on_second) = (Vec::new(), Vec::new());
    for i in 0..BULK_ALLOCATED {
        let name = format!("bulk{i}");
        if i % BULK_SECOND_NETWORK_EVERY == 0 {
            batch.push((new_instance(&name), port_on(&side)));
            on_second.push(None);
        } else if i % BULK_GIVEN_EVERY == BULK_GIVEN_EVERY - 1 {
            let ahead = 3 + i + BULK_GIVEN_EVERY / 2;
            let at = format!("198.18.{}.{}", ahead / 256, ahead % 256);
            batch.push((new_instance(&name), port_at(&net, &at)));
            on_net.push(Some(ip(&at)));
        } else {
            batch.push((new_instance(&name), port_on(&net)));
            on_net.push(None);
        }
    }
    assert_eq!(store.create_instances(&batch).unwrap(), BULK_ALLOCATED);

    let ports = store.ports().unwrap();
    let got = |network: &str, skip: usize| -> Vec<IpAddr> {
        ports
            .iter()
            .filter(|port| port.network_id == network)
            .skip(skip)
            .map(|port| port.ip)
            .collect()
    };
    let got_net = got(&net.id, before.len());
    let got_side = got(&side.id, 1);
    assert_eq!(
        got_net.iter().collect::<HashSet<_>>().len(),
        got_net.len(),
        "an address handed out twice"
    );
    assert_eq!(got_net, lowest_free_in_order("198.18.0.3", before, &on_net));
    assert_eq!(
        got_side,
        lowest_free_in_order("198.18.64.3", HashSet::from([on_side]), &on_second)
    );
    assert_eq!(got_net[0], ip("198.18.0.4"), "the hole is refilled first");

    // A batch that does not fit is refused whole.
    let small = network(store, "small", "198.18.80.0/29");
    let before = snapshot(store);
    let too_many: Vec<_> = (0..5)
        .map(|i| (new_instance(&format!("over{i}")), port_on(&small)))
        .collect();
    let msg = conflict(store.create_instances(&too_many));
    assert!(msg.contains("no free address"), "{msg}");
    assert_eq!(snapshot(store), before);
}
