//! The change log, and refused writes that must leave nothing behind.

use metaboot_server::store::{
    self, ChangeKind, NewInstance, NewNetwork, NewRouter, PasswordSet, Store,
};

use crate::support::{
    conflict, instance, invalid, network, new_instance, not_found, port_at, port_on, snapshot,
};

pub fn change_log_follows_every_write(store: &dyn Store) {
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
    store.set_password(&vm.uuid, None, "pw").unwrap();
    store.delete_instance(&vm.uuid).unwrap();
    store.remove_router_network(&router.id, &net.id).unwrap();
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
    // Router create, attach, detach and delete each logged.
    assert_eq!(
        seen.iter()
            .filter(|c| **c == (ChangeKind::Router, router.id.as_str()))
            .count(),
        4
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
    store.set_password(&other.uuid, None, "pw").unwrap();
    let last = store.last_change().unwrap();
    assert_eq!(
        store.set_password(&other.uuid, None, "pw2").unwrap(),
        PasswordSet::AlreadySet
    );
    assert_eq!(store.last_change().unwrap(), last);
}

pub fn refused_writes_leave_nothing(store: &dyn Store) {
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

/// Changes the pruning case keeps.
const KEPT: i64 = 3;

/// The change log keeps only the newest changes: it stays bounded, the newest sequence number
/// survives, and what it keeps is exactly the tail.
pub fn change_log_keeps_the_newest(url: &str) {
    let store = store::open_keeping_changes(url, KEPT).unwrap();
    let nets: Vec<_> = (0..8)
        .map(|i| network(&*store, &format!("n{i}"), &format!("198.18.{i}.0/24")))
        .collect();
    let last = store.last_change().unwrap();
    let kept = store.changes_since(0).unwrap();
    assert_eq!(kept.len(), KEPT as usize, "{kept:?}");
    assert_eq!(kept.last().unwrap().seq, last);
    let kept_ids: Vec<&str> = kept.iter().map(|c| c.id.as_str()).collect();
    let newest_ids: Vec<&str> = nets[nets.len() - KEPT as usize..]
        .iter()
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(kept_ids, newest_ids);
    // A refused write prunes nothing and logs nothing; the records themselves are all there.
    invalid(store.create_network(&NewNetwork {
        name: String::new(),
        project: "p1".into(),
        cidr: "198.18.100.0/24".parse().unwrap(),
        ..NewNetwork::default()
    }));
    assert_eq!(store.changes_since(0).unwrap(), kept);
    assert_eq!(store.networks().unwrap().len(), nets.len());
    // A server that saw only the first change finds the ones after it pruned: a gap, never a
    // batch that would miss them. One that saw the oldest kept change's predecessor is fine.
    assert_eq!(store.changes_after(1, 1000).unwrap(), store::Feed::Gap);
    assert!(matches!(
        store.changes_after(kept[0].seq - 1, 1000).unwrap(),
        store::Feed::Batch(_)
    ));
    // A store opened with the default keeps them all (far fewer than CHANGE_LOG_KEPT).
    let default = store::open(url).unwrap();
    network(&*default, "more", "198.18.200.0/24");
    assert_eq!(default.changes_since(0).unwrap().len(), KEPT as usize + 1);
    assert_eq!(default.last_change().unwrap(), last + 1);
}
