//! The store contract: one suite of checks, run against a SQLite file and a real PostgreSQL.
//!
//! A plain `main` (harness = false) runs every case on a fresh SQLite file, then starts one
//! PostgreSQL server, runs every case on a fresh database, restarts the server under a live
//! store, and stops it. Without PostgreSQL the PostgreSQL half fails when `CI=true` and is
//! skipped with a reason otherwise. `cargo test … -- WORD` runs only cases whose name has WORD.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{
    self, ChangeKind, KeyPair, MAX_PASSWORD_BYTES, MAX_USER_DATA_BYTES, Network, NewInstance,
    NewNetwork, NewPort, NewRouter, PasswordSet, Port, Store, StoreError,
};

/// Threads racing to set one password.
const PASSWORD_RACERS: usize = 50;
/// Threads creating instances on one network at once.
const ALLOCATION_RACERS: usize = 12;
/// Stores opening one new registry at once.
const OPENERS: usize = 6;

type Case = fn(&dyn Store);

/// Every case, by name.
const CASES: &[(&str, Case)] = &[
    (
        "network_create_list_show_delete",
        network_create_list_show_delete,
    ),
    ("network_bad_input_is_refused", network_bad_input_is_refused),
    (
        "names_resolve_by_id_or_unique_name",
        names_resolve_by_id_or_unique_name,
    ),
    ("router_create_attach_delete", router_create_attach_delete),
    ("instance_create_show_delete", instance_create_show_delete),
    (
        "overlapping_ips_on_two_networks",
        overlapping_ips_on_two_networks,
    ),
    ("ip_rules_within_a_network", ip_rules_within_a_network),
    ("mac_is_unique_and_normalised", mac_is_unique_and_normalised),
    ("user_data_limit", user_data_limit),
    (
        "password_limit_and_write_once",
        password_limit_and_write_once,
    ),
    ("password_race_has_one_winner", password_race_has_one_winner),
    ("allocation_fills_lowest_free", allocation_fills_lowest_free),
    ("allocation_under_concurrency", allocation_under_concurrency),
    ("full_network_refuses_cleanly", full_network_refuses_cleanly),
    (
        "network_with_ports_cannot_be_deleted",
        network_with_ports_cannot_be_deleted,
    ),
    ("ports_create_list_delete", ports_create_list_delete),
    (
        "change_log_follows_every_write",
        change_log_follows_every_write,
    ),
    ("refused_writes_leave_nothing", refused_writes_leave_nothing),
];

static UUIDS: AtomicU32 = AtomicU32::new(1);

/// A fresh, valid instance uuid.
fn uuid() -> String {
    format!(
        "00000000-0000-4000-8000-{:012x}",
        UUIDS.fetch_add(1, Ordering::Relaxed)
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IPs are literals")
}

fn network(store: &dyn Store, name: &str, cidr: &str) -> Network {
    store
        .create_network(&NewNetwork {
            name: name.to_owned(),
            project: "p1".to_owned(),
            cidr: cidr.parse().expect("test CIDRs are literals"),
            ..NewNetwork::default()
        })
        .expect("create network")
}

fn new_instance(name: &str) -> NewInstance {
    NewInstance {
        uuid: uuid(),
        project: "p1".to_owned(),
        name: name.to_owned(),
        hostname: name.to_owned(),
        ..NewInstance::default()
    }
}

fn port_on(network: &Network) -> NewPort {
    NewPort {
        network_id: network.id.clone(),
        ..NewPort::default()
    }
}

fn port_at(network: &Network, address: &str) -> NewPort {
    NewPort {
        network_id: network.id.clone(),
        ip: Some(ip(address)),
        ..NewPort::default()
    }
}

fn instance(store: &dyn Store, name: &str, port: &NewPort) -> Port {
    store
        .create_instance(&new_instance(name), port)
        .expect("create instance")
        .1
}

#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[track_caller]
fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Everything the store holds, to compare before and after a refused write.
fn snapshot(store: &dyn Store) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{}",
        store.networks().unwrap(),
        store.routers().unwrap(),
        store.instances().unwrap(),
        store.ports().unwrap(),
        store.last_change().unwrap()
    )
}

fn network_create_list_show_delete(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    assert_eq!(net.gateway, Some(ip("198.18.0.1")));
    assert_eq!(net.dhcp_ip, Some(ip("198.18.0.2")));
    assert!(!net.isolated);
    assert_eq!(net.project, "p1");

    let isolated = store
        .create_network(&NewNetwork {
            name: "iso".into(),
            project: "p2".into(),
            cidr: "198.18.1.0/24".parse().unwrap(),
            gateway: Some(ip("198.18.1.254")),
            dhcp_ip: Some(ip("198.18.1.10")),
            isolated: true,
            mtu: Some(1450),
        })
        .unwrap();
    assert_eq!(isolated.gateway, Some(ip("198.18.1.254")));
    assert_eq!(isolated.dhcp_ip, Some(ip("198.18.1.10")));

    assert_eq!(
        store.networks().unwrap(),
        vec![net.clone(), isolated.clone()]
    );
    assert_eq!(store.network(&net.id).unwrap(), net);
    assert_eq!(store.network("iso").unwrap(), isolated);
    assert_eq!(store.network("iso").unwrap().mtu, Some(1450));

    store.delete_network(&net.id).unwrap();
    not_found(store.network(&net.id));
    not_found(store.delete_network(&net.id));
    assert_eq!(store.networks().unwrap(), vec![isolated]);
}

fn network_bad_input_is_refused(store: &dyn Store) {
    let before = snapshot(store);
    let new = |cidr: &str| NewNetwork {
        name: "bad".into(),
        project: "p1".into(),
        cidr: cidr.parse().unwrap(),
        ..NewNetwork::default()
    };
    let msg = invalid(store.create_network(&new("198.18.0.5/24")));
    assert!(msg.contains("198.18.0.0/24"), "{msg}");
    invalid(store.create_network(&new("198.18.0.0/30")));
    let msg = invalid(store.create_network(&NewNetwork {
        gateway: Some(ip("198.18.9.1")),
        ..new("198.18.0.0/24")
    }));
    assert!(msg.contains("outside"), "{msg}");
    invalid(store.create_network(&NewNetwork {
        dhcp_ip: Some(ip("198.18.0.255")),
        ..new("198.18.0.0/24")
    }));
    invalid(store.create_network(&NewNetwork {
        gateway: Some(ip("198.18.0.7")),
        dhcp_ip: Some(ip("198.18.0.7")),
        ..new("198.18.0.0/24")
    }));
    invalid(store.create_network(&NewNetwork {
        name: " ".into(),
        ..new("198.18.0.0/24")
    }));
    invalid(store.create_network(&NewNetwork {
        mtu: Some(10),
        ..new("198.18.0.0/24")
    }));
    assert_eq!(snapshot(store), before);
}

fn names_resolve_by_id_or_unique_name(store: &dyn Store) {
    let a = network(store, "twin", "198.18.0.0/24");
    let b = network(store, "twin", "198.18.1.0/24");
    let unique = network(store, "solo", "198.18.2.0/24");
    match store.network("twin") {
        Err(StoreError::Ambiguous { ids, .. }) => {
            assert!(ids.contains(&a.id) && ids.contains(&b.id), "{ids}");
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert_eq!(store.network(&a.id).unwrap(), a);
    assert_eq!(store.network("solo").unwrap(), unique);
    not_found(store.network("nothing"));

    let first = store
        .create_instance(&new_instance("web"), &port_on(&unique))
        .unwrap()
        .0;
    let second = store
        .create_instance(&new_instance("web"), &port_on(&unique))
        .unwrap()
        .0;
    assert!(matches!(
        store.instance("web"),
        Err(StoreError::Ambiguous { .. })
    ));
    assert_eq!(store.instance(&first.uuid).unwrap().uuid, first.uuid);
    assert_eq!(store.instance(&second.uuid).unwrap().uuid, second.uuid);
    not_found(store.instance("db"));

    store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![],
        })
        .unwrap();
    store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![],
        })
        .unwrap();
    assert!(matches!(
        store.router("r"),
        Err(StoreError::Ambiguous { .. })
    ));
}

fn router_create_attach_delete(store: &dyn Store) {
    let a = network(store, "a", "198.18.0.0/24");
    let b = network(store, "b", "198.18.1.0/24");
    let overlapping = network(store, "c", "198.18.0.0/23");
    let isolated = store
        .create_network(&NewNetwork {
            name: "iso".into(),
            project: "p1".into(),
            cidr: "198.18.4.0/24".parse().unwrap(),
            isolated: true,
            ..NewNetwork::default()
        })
        .unwrap();

    let router = store
        .create_router(&NewRouter {
            name: "r1".into(),
            project: "p1".into(),
            networks: vec![a.id.clone(), "a".into()],
        })
        .unwrap();
    assert_eq!(router.networks, vec![a.id.clone()]);

    store.add_router_network(&router.id, &b.id).unwrap();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(store.router("r1").unwrap().networks, expected);

    conflict(store.add_router_network(&router.id, &b.id));
    let msg = conflict(store.add_router_network(&router.id, &overlapping.id));
    assert!(msg.contains("overlaps"), "{msg}");
    invalid(store.add_router_network(&router.id, &isolated.id));
    not_found(store.add_router_network(&router.id, "no-such-network"));
    not_found(store.add_router_network("no-such-router", &a.id));
    let msg = conflict(store.create_router(&NewRouter {
        name: "r2".into(),
        project: "p1".into(),
        networks: vec![a.id.clone(), overlapping.id.clone()],
    }));
    assert!(msg.contains("overlaps"), "{msg}");

    assert_eq!(store.routers().unwrap().len(), 1);

    // Deleting a network detaches it from its routers.
    store.delete_network(&b.id).unwrap();
    assert_eq!(
        store.router(&router.id).unwrap().networks,
        vec![a.id.clone()]
    );

    store.delete_router("r1").unwrap();
    not_found(store.router(&router.id));
    assert!(store.routers().unwrap().is_empty());
    // The network outlives its router.
    assert_eq!(store.network(&a.id).unwrap(), a);
}

fn instance_create_show_delete(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let mut meta = BTreeMap::new();
    meta.insert("role".to_owned(), "web".to_owned());
    let new = NewInstance {
        uuid: uuid().to_uppercase(),
        project: "p1".into(),
        name: "web 1".into(),
        hostname: "web-1".into(),
        availability_zone: Some("nova".into()),
        launch_index: 2,
        key_pairs: vec![KeyPair {
            name: "mykey".into(),
            kind: "ssh".into(),
            data: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4x test@example".into(),
        }],
        user_data: Some(b"#!/bin/sh\necho hi\n\x00\xff".to_vec()),
        meta,
        admin_pass: Some("secret".into()),
    };
    let (created, port) = store.create_instance(&new, &port_on(&net)).unwrap();
    assert_eq!(created.uuid, new.uuid.to_lowercase());
    assert_eq!(port.instance_id, created.uuid);
    assert_eq!(port.network_id, net.id);
    assert_eq!(port.project, "p1");
    assert_eq!(port.ip, ip("198.18.0.3"));
    assert!(port.mac.starts_with("fa:16:3e:"), "{}", port.mac);

    let shown = store.instance(&created.uuid).unwrap();
    assert_eq!(shown, created);
    assert_eq!(store.instance("web 1").unwrap(), created);
    assert_eq!(
        store.instance_by_uuid(&created.uuid).unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.instance_by_uuid(&uuid()).unwrap(), None);
    assert_eq!(shown.user_data, new.user_data);
    assert_eq!(shown.key_pairs, new.key_pairs);
    assert_eq!(shown.meta, new.meta);
    assert_eq!(shown.admin_pass.as_deref(), Some("secret"));
    assert_eq!(shown.password, None);
    assert_eq!(shown.launch_index, 2);
    assert_eq!(shown.availability_zone.as_deref(), Some("nova"));

    let other = store
        .create_instance(&new_instance("db"), &port_on(&net))
        .unwrap()
        .0;
    assert!(other.ec2_id > created.ec2_id, "ec2 ids grow");
    let mut uuids: Vec<String> = store
        .instances()
        .unwrap()
        .into_iter()
        .map(|i| i.uuid)
        .collect();
    uuids.sort();
    let mut expected = vec![created.uuid.clone(), other.uuid.clone()];
    expected.sort();
    assert_eq!(uuids, expected);

    // The same uuid twice is refused.
    let again = NewInstance {
        uuid: created.uuid.clone(),
        ..new_instance("copy")
    };
    conflict(store.create_instance(&again, &port_on(&net)));

    // Deleting an instance deletes its ports.
    store.delete_instance(&created.uuid).unwrap();
    assert_eq!(store.instance_by_uuid(&created.uuid).unwrap(), None);
    not_found(store.port(&port.id));
    assert!(store.instance_ports(&created.uuid).unwrap().is_empty());
    assert!(store.find_ports_by_ip(port.ip).unwrap().is_empty());
    not_found(store.delete_instance(&created.uuid));
    // ec2 ids are never reused.
    let third = store
        .create_instance(&new_instance("third"), &port_on(&net))
        .unwrap()
        .0;
    assert!(third.ec2_id > other.ec2_id);
}

fn overlapping_ips_on_two_networks(store: &dyn Store) {
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

fn ip_rules_within_a_network(store: &dyn Store) {
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

fn mac_is_unique_and_normalised(store: &dyn Store) {
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

fn user_data_limit(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let largest = NewInstance {
        user_data: Some(vec![b'x'; MAX_USER_DATA_BYTES]),
        ..new_instance("big")
    };
    let (created, _) = store.create_instance(&largest, &port_on(&net)).unwrap();
    assert_eq!(
        store
            .instance(&created.uuid)
            .unwrap()
            .user_data
            .map(|d| d.len()),
        Some(MAX_USER_DATA_BYTES)
    );
    let before = snapshot(store);
    let too_large = NewInstance {
        user_data: Some(vec![b'x'; MAX_USER_DATA_BYTES + 1]),
        ..new_instance("too-big")
    };
    let msg = invalid(store.create_instance(&too_large, &port_on(&net)));
    assert!(msg.contains("65536") && msg.contains("65535"), "{msg}");
    assert_eq!(snapshot(store), before);
}

fn password_limit_and_write_once(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let a = store
        .create_instance(&new_instance("a"), &port_on(&net))
        .unwrap()
        .0;
    let b = store
        .create_instance(&new_instance("b"), &port_on(&net))
        .unwrap()
        .0;

    invalid(store.set_password(&a.uuid, &"p".repeat(MAX_PASSWORD_BYTES + 1)));
    assert_eq!(store.instance(&a.uuid).unwrap().password, None);
    let largest = "p".repeat(MAX_PASSWORD_BYTES);
    assert_eq!(
        store.set_password(&a.uuid, &largest).unwrap(),
        PasswordSet::Stored
    );
    assert_eq!(
        store.instance(&a.uuid).unwrap().password,
        Some(largest.clone())
    );
    assert_eq!(
        store.set_password(&a.uuid, "other").unwrap(),
        PasswordSet::AlreadySet
    );
    assert_eq!(store.instance(&a.uuid).unwrap().password, Some(largest));
    assert_eq!(
        store.set_password(&uuid(), "x").unwrap(),
        PasswordSet::NoInstance
    );
    // An empty password does not count as set (nova's reset blanks it).
    assert_eq!(
        store.set_password(&b.uuid, "").unwrap(),
        PasswordSet::Stored
    );
    assert_eq!(
        store.set_password(&b.uuid, "real").unwrap(),
        PasswordSet::Stored
    );
    assert_eq!(
        store.set_password(&b.uuid, "again").unwrap(),
        PasswordSet::AlreadySet
    );

    let admin = NewInstance {
        admin_pass: Some("a".repeat(MAX_PASSWORD_BYTES + 1)),
        ..new_instance("admin")
    };
    invalid(store.create_instance(&admin, &port_on(&net)));
}

fn password_race_has_one_winner(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let target = store
        .create_instance(&new_instance("race"), &port_on(&net))
        .unwrap()
        .0;
    let outcomes: Vec<(usize, PasswordSet)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PASSWORD_RACERS)
            .map(|i| {
                let uuid = target.uuid.clone();
                scope.spawn(move || (i, store.set_password(&uuid, &format!("pw-{i}")).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == PasswordSet::Stored)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, PasswordSet::Stored | PasswordSet::AlreadySet))
    );
    assert_eq!(
        store.instance(&target.uuid).unwrap().password,
        Some(format!("pw-{}", winners[0]))
    );
}

fn allocation_fills_lowest_free(store: &dyn Store) {
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

fn allocation_under_concurrency(store: &dyn Store) {
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

fn full_network_refuses_cleanly(store: &dyn Store) {
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

fn network_with_ports_cannot_be_deleted(store: &dyn Store) {
    let net = network(store, "busy", "198.18.0.0/24");
    let (web, port) = store
        .create_instance(&new_instance("web"), &port_on(&net))
        .unwrap();
    let before = snapshot(store);
    let msg = conflict(store.delete_network("busy"));
    assert!(msg.contains(&port.id) && msg.contains("web"), "{msg}");
    assert_eq!(snapshot(store), before);
    store.delete_instance(&web.uuid).unwrap();

    // Many ports: the message names the first five and counts the rest.
    let crowded = network(store, "crowded", "198.18.1.0/24");
    for i in 0..7 {
        instance(store, &format!("vm{i}"), &port_on(&crowded));
    }
    let msg = conflict(store.delete_network("crowded"));
    assert!(
        msg.contains("7 port(s)") && msg.contains("and 2 more"),
        "{msg}"
    );
    assert!(msg.contains("vm4") && !msg.contains("vm5"), "{msg}");

    store.delete_network("busy").unwrap();
    assert_eq!(store.networks().unwrap(), vec![crowded]);
}

fn ports_create_list_delete(store: &dyn Store) {
    let a = network(store, "a", "198.18.0.0/24");
    let b = network(store, "b", "198.18.1.0/24");
    let (vm, first) = store
        .create_instance(&new_instance("vm"), &port_on(&a))
        .unwrap();
    let second = store
        .create_port(&NewPort {
            network_id: "b".into(),
            instance_id: "vm".into(),
            ip: Some(ip("198.18.1.50")),
            mac: None,
        })
        .unwrap();
    assert_eq!(second.instance_id, vm.uuid);
    assert_eq!(second.project, vm.project);
    assert_eq!(store.port(&second.id).unwrap(), second);
    assert_eq!(store.ports().unwrap(), vec![first.clone(), second.clone()]);

    let ports = store.instance_ports(&vm.uuid).unwrap();
    assert_eq!(
        ports,
        vec![(first.clone(), a.clone()), (second.clone(), b.clone())]
    );

    not_found(store.create_port(&NewPort {
        network_id: a.id.clone(),
        instance_id: uuid(),
        ..NewPort::default()
    }));
    conflict(store.create_port(&NewPort {
        network_id: b.id.clone(),
        instance_id: vm.uuid.clone(),
        ip: Some(ip("198.18.1.50")),
        mac: None,
    }));

    store.delete_port(&second.id).unwrap();
    not_found(store.port(&second.id));
    not_found(store.delete_port(&second.id));
    assert_eq!(store.instance_ports(&vm.uuid).unwrap(), vec![(first, a)]);
}

fn change_log_follows_every_write(store: &dyn Store) {
    assert_eq!(store.last_change().unwrap(), 0);
    assert!(store.changes_since(0).unwrap().is_empty());

    let net = network(store, "net1", "198.18.0.0/24");
    let after_network = store.last_change().unwrap();
    assert!(after_network > 0);
    let changes = store.changes_since(0).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Network);
    assert_eq!(changes[0].id, net.id);
    assert_eq!(changes[0].seq, after_network);

    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![],
        })
        .unwrap();
    store.add_router_network(&router.id, &net.id).unwrap();
    let (vm, port) = store
        .create_instance(&new_instance("vm"), &port_on(&net))
        .unwrap();
    store.set_password(&vm.uuid, "pw").unwrap();
    store.delete_instance(&vm.uuid).unwrap();
    store.delete_router(&router.id).unwrap();

    let changes = store.changes_since(after_network).unwrap();
    let seen: Vec<(ChangeKind, &str)> = changes.iter().map(|c| (c.kind, c.id.as_str())).collect();
    for expected in [
        (ChangeKind::Router, router.id.as_str()),
        (ChangeKind::Instance, vm.uuid.as_str()),
        (ChangeKind::Port, port.id.as_str()),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} missing from {seen:?}"
        );
    }
    // Router create, attach and delete each logged.
    assert_eq!(
        seen.iter()
            .filter(|c| **c == (ChangeKind::Router, router.id.as_str()))
            .count(),
        3
    );
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), store.last_change().unwrap());
    assert!(
        store
            .changes_since(store.last_change().unwrap())
            .unwrap()
            .is_empty()
    );

    // A refused write logs nothing; a write-once refusal neither.
    let last = store.last_change().unwrap();
    invalid(store.create_network(&NewNetwork {
        name: String::new(),
        project: "p1".into(),
        cidr: "198.18.1.0/24".parse().unwrap(),
        ..NewNetwork::default()
    }));
    assert_eq!(store.last_change().unwrap(), last);
    let (other, _) = store
        .create_instance(&new_instance("other"), &port_on(&net))
        .unwrap();
    store.set_password(&other.uuid, "pw").unwrap();
    let last = store.last_change().unwrap();
    assert_eq!(
        store.set_password(&other.uuid, "pw2").unwrap(),
        PasswordSet::AlreadySet
    );
    assert_eq!(store.last_change().unwrap(), last);
}

fn refused_writes_leave_nothing(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    instance(store, "taken", &port_at(&net, "198.18.0.9"));
    let before = snapshot(store);
    let refused = new_instance("ghost");
    conflict(store.create_instance(&refused, &port_at(&net, "198.18.0.9")));
    // No instance without its port.
    assert_eq!(store.instance_by_uuid(&refused.uuid).unwrap(), None);
    not_found(store.instance("ghost"));
    invalid(store.create_instance(
        &NewInstance {
            hostname: "bad_host".into(),
            ..new_instance("ghost")
        },
        &port_on(&net),
    ));
    invalid(store.create_instance(
        &NewInstance {
            uuid: "not-a-uuid".into(),
            ..new_instance("ghost")
        },
        &port_on(&net),
    ));
    assert_eq!(snapshot(store), before);
}

/// Restarting PostgreSQL under a live store: the next call reconnects; while it is down,
/// calls fail fast with a backend error.
fn postgres_restart(server: &mut PgServer, url: &str) {
    let store = store::open(url).unwrap();
    let net = network(&*store, "net1", "198.18.0.0/24");
    // Several pooled connections, all of which the restart kills.
    std::thread::scope(|scope| {
        for i in 0..4 {
            let store = &store;
            let net = &net;
            scope.spawn(move || instance(&**store, &format!("vm{i}"), &port_on(net)));
        }
    });

    server.restart().unwrap();
    assert_eq!(store.networks().unwrap(), vec![net.clone()]);
    assert_eq!(store.instances().unwrap().len(), 4);

    server.restart().unwrap();
    let port = instance(&*store, "after-restart", &port_on(&net));
    assert_eq!(port.ip, ip("198.18.0.7"));

    server.stop().unwrap();
    let started = Instant::now();
    match store.networks() {
        Err(err @ StoreError::Backend(_)) => assert!(!err.is_user_error()),
        other => panic!("expected a backend error while PostgreSQL is down, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    server.start_again().unwrap();
    assert_eq!(store.networks().unwrap(), vec![net]);
}

/// Several processes opening a new registry at once (schema creation must not race).
fn concurrent_open(url: &str) {
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..OPENERS)
            .map(|i| {
                scope.spawn(move || {
                    let store = store::open(url).unwrap();
                    network(&*store, &format!("n{i}"), "198.18.0.0/24").name
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(names.len(), OPENERS);
    assert_eq!(store::open(url).unwrap().networks().unwrap().len(), OPENERS);
}

/// Runs one case, catching its panic; true when it passed.
fn run_case(backend: &str, name: &str, body: impl FnOnce()) -> bool {
    let started = Instant::now();
    let passed = panic::catch_unwind(AssertUnwindSafe(body)).is_ok();
    let verdict = if passed { "ok" } else { "FAILED" };
    println!(
        "test {backend}::{name} ... {verdict} ({} ms)",
        started.elapsed().as_millis()
    );
    passed
}

fn main() -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let selected: Vec<(usize, &str, Case)> = CASES
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .map(|(i, (name, case))| (i, *name, *case))
        .collect();
    let mut failed: Vec<String> = Vec::new();

    for (_, name, case) in &selected {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let passed = run_case("sqlite", name, || {
            let store = store::open(path.to_str().expect("temp paths are UTF-8")).unwrap();
            case(&*store);
        });
        if !passed {
            failed.push(format!("sqlite::{name}"));
        }
    }
    let want_open = filter
        .as_ref()
        .is_none_or(|f| "concurrent_open".contains(f.as_str()));
    if want_open {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let url = format!("sqlite:{}", path.display());
        if !run_case("sqlite", "concurrent_open", || concurrent_open(&url)) {
            failed.push("sqlite::concurrent_open".to_owned());
        }
    }

    let want_restart = filter
        .as_ref()
        .is_none_or(|f| "postgres_restart".contains(f.as_str()));
    if !selected.is_empty() || want_restart || want_open {
        match PgServer::start() {
            Ok(mut server) => {
                for (index, name, case) in &selected {
                    let passed = run_case("postgres", name, || {
                        let url = server.create_database(&format!("case_{index}")).unwrap();
                        let store = store::open(&url).unwrap();
                        case(&*store);
                    });
                    if !passed {
                        failed.push(format!("postgres::{name}"));
                    }
                }
                if want_open {
                    let url = server.create_database("concurrent_open").unwrap();
                    if !run_case("postgres", "concurrent_open", || concurrent_open(&url)) {
                        failed.push("postgres::concurrent_open".to_owned());
                    }
                }
                if want_restart {
                    let url = server.create_database("restart").unwrap();
                    if !run_case("postgres", "postgres_restart", || {
                        postgres_restart(&mut server, &url);
                    }) {
                        failed.push("postgres::postgres_restart".to_owned());
                        println!("server log: {}", server.log_path().display());
                    }
                }
            }
            Err(err) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                println!("PostgreSQL is required in CI: {err:#}");
                failed.push("postgres (server did not start)".to_owned());
            }
            Err(err) => {
                println!("skipping the PostgreSQL half of the store contract: {err:#}");
            }
        }
    }

    if failed.is_empty() {
        println!("\nstore contract: ok");
        ExitCode::SUCCESS
    } else {
        println!("\nstore contract failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
