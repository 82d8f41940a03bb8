//! Create, list, show and delete of every record; names versus ids.

use std::collections::BTreeMap;

use metaboot_server::store::{
    ChangeKind, KeyPair, NewInstance, NewNetwork, NewPort, NewRouter, Store, StoreError,
};

use crate::support::{
    conflict, instance, invalid, ip, network, new_instance, not_found, port_on, snapshot, uuid,
};

pub fn network_create_list_show_delete(store: &dyn Store) {
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
            ..NewNetwork::default()
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

pub fn network_bad_input_is_refused(store: &dyn Store) {
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

pub fn network_without_dhcp(store: &dyn Store) {
    let new = NewNetwork {
        name: "static".into(),
        project: "p1".into(),
        cidr: "198.18.3.0/24".parse().unwrap(),
        no_dhcp: true,
        ..NewNetwork::default()
    };
    let net = store.create_network(&new).unwrap();
    assert_eq!(net.gateway, Some(ip("198.18.3.1")));
    assert_eq!(net.dhcp_ip, None, "no DHCP port");
    assert_eq!(store.network("static").unwrap(), net);
    // The address a DHCP port would have had is free for an instance.
    let (_, port) = store
        .create_instance(&new_instance("web"), &port_on(&net))
        .unwrap();
    assert_eq!(port.ip, ip("198.18.3.2"));
    assert_eq!(
        store.instance_ports(&port.instance_id).unwrap()[0]
            .1
            .dhcp_ip,
        None
    );

    let before = snapshot(store);
    let msg = invalid(store.create_network(&NewNetwork {
        name: "both".into(),
        dhcp_ip: Some(ip("198.18.4.2")),
        cidr: "198.18.4.0/24".parse().unwrap(),
        ..new.clone()
    }));
    assert!(msg.contains("--no-dhcp"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        name: "iso".into(),
        isolated: true,
        cidr: "198.18.4.0/24".parse().unwrap(),
        ..new
    }));
    assert!(msg.contains("isolated"), "{msg}");
    assert_eq!(snapshot(store), before);
}

pub fn names_resolve_by_id_or_unique_name(store: &dyn Store) {
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
    // An id in upper case is the same id; a key with a NUL byte names nothing (no error from
    // the backend).
    assert_eq!(store.network(&a.id.to_ascii_uppercase()).unwrap(), a);
    not_found(store.network("so\0lo"));
    not_found(store.instance("web\0"));

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
    // The forms `validate::uuid` takes besides the hyphenated one name the same instance.
    let simple = first.uuid.replace('-', "");
    assert_eq!(store.instance(&simple).unwrap().uuid, first.uuid);
    let braced = format!("{{{}}}", first.uuid.to_ascii_uppercase());
    assert_eq!(store.instance(&braced).unwrap().uuid, first.uuid);
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

pub fn router_create_attach_delete(store: &dyn Store) {
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
    // The list carries each router's own networks, as `router` does.
    let bare = store
        .create_router(&NewRouter {
            name: "r3".into(),
            project: "p1".into(),
            networks: Vec::new(),
        })
        .unwrap();
    assert_eq!(
        store.routers().unwrap(),
        vec![store.router("r1").unwrap(), bare.clone()]
    );
    assert!(store.routers().unwrap()[1].networks.is_empty());
    assert_eq!(store.routers().unwrap()[0].networks, expected);
    store.delete_router(&bare.id).unwrap();

    // Neutron's NetworkInUse: refused while a router has it, naming the router and how to
    // detach it, and nothing is written.
    let before = store.last_change().unwrap();
    let msg = conflict(store.delete_network(&b.id));
    assert!(
        msg.contains(&format!(
            "network b is still attached to 1 router(s): r1 ({})",
            router.id
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("router remove-network ROUTER {}", b.id)),
        "{msg}"
    );
    assert_eq!(store.last_change().unwrap(), before);
    assert_eq!(store.network(&b.id).unwrap(), b);
    store.remove_router_network(&router.id, &b.id).unwrap();
    store.delete_network(&b.id).unwrap();
    assert_eq!(
        store.router(&router.id).unwrap().networks,
        vec![a.id.clone()]
    );

    // Neutron's RouterInUse: refused while a network is attached, and nothing is written.
    let before = store.last_change().unwrap();
    let msg = conflict(store.delete_router("r1"));
    assert!(
        msg.contains("router r1 still has 1 network(s) attached: a (198.18.0.0/24)"),
        "{msg}"
    );
    assert!(msg.contains("router remove-network"), "{msg}");
    assert_eq!(store.last_change().unwrap(), before);
    assert_eq!(
        store.router(&router.id).unwrap().networks,
        vec![a.id.clone()]
    );
    store.remove_router_network("r1", "a").unwrap();
    store.delete_router("r1").unwrap();
    not_found(store.router(&router.id));
    assert!(store.routers().unwrap().is_empty());
    // The network outlives its router.
    assert_eq!(store.network(&a.id).unwrap(), a);
}

pub fn router_remove_network_detaches_one(store: &dyn Store) {
    let a = network(store, "a", "198.18.0.0/24");
    let b = network(store, "b", "198.18.1.0/24");
    let router = store
        .create_router(&NewRouter {
            name: "r1".into(),
            project: "p1".into(),
            networks: vec![a.id.clone(), b.id.clone()],
        })
        .unwrap();
    let on_b = instance(store, "vm", &port_on(&b));
    assert_eq!(
        store.find_ports_behind_router(on_b.ip, &router.id).unwrap(),
        vec![on_b.clone()]
    );

    store.remove_router_network("r1", "b").unwrap();
    assert_eq!(store.router("r1").unwrap().networks, vec![a.id.clone()]);
    // Logged, so servers follow it: the agent no longer finds b's ports behind the router.
    let last = store.changes_since(0).unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.id.as_str()),
        (ChangeKind::Router, router.id.as_str())
    );
    assert!(
        store
            .find_ports_behind_router(on_b.ip, &router.id)
            .unwrap()
            .is_empty()
    );
    // The network and its ports stay.
    assert_eq!(store.network("b").unwrap(), b);
    assert_eq!(store.ports().unwrap(), vec![on_b]);

    // A network not on the router is refused, and nothing is written.
    let before = store.last_change().unwrap();
    let msg = invalid(store.remove_router_network(&router.id, &b.id));
    assert!(
        msg.contains("network b is not attached to router r1"),
        "{msg}"
    );
    not_found(store.remove_router_network(&router.id, "no-such-network"));
    not_found(store.remove_router_network("no-such-router", &a.id));
    assert_eq!(store.last_change().unwrap(), before);

    store.remove_router_network(&router.id, &a.id).unwrap();
    assert!(store.router("r1").unwrap().networks.is_empty());
}

pub fn instance_create_show_delete(store: &dyn Store) {
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

pub fn ports_create_list_delete(store: &dyn Store) {
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
            ..NewPort::default()
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
        ..NewPort::default()
    }));

    store.delete_port(&second.id).unwrap();
    not_found(store.port(&second.id));
    not_found(store.delete_port(&second.id));
    assert_eq!(store.instance_ports(&vm.uuid).unwrap(), vec![(first, a)]);
}

pub fn network_with_ports_cannot_be_deleted(store: &dyn Store) {
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
