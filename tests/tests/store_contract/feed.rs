//! What a server's read model is built from: a snapshot of every record with the change it
//! reflects, batches of what changed after it (records as they are now, deletions as absent
//! records), gaps, and bulk registration.

use metaboot_server::store::{ChangeKind, Feed, NewPort, NewRouter, Record, Store, StoreError};

use crate::support::{conflict, network, new_instance, port_at, port_on};

/// Every record of a snapshot and the sequence number it reflects.
fn snapshot(store: &dyn Store) -> (Vec<Record>, i64) {
    let mut records = Vec::new();
    let seq = store
        .snapshot(&mut |record| {
            // A (re)start of the snapshot: what came before is dropped.
            match record {
                Record::Start => records.clear(),
                record => records.push(record),
            }
            Ok(())
        })
        .unwrap();
    (records, seq)
}

/// The batch after `seq` (panics on anything else).
#[track_caller]
fn batch(store: &dyn Store, seq: i64) -> metaboot_server::store::Batch {
    match store.changes_after(seq, 1000).unwrap() {
        Feed::Batch(batch) => batch,
        other => panic!("expected a batch after {seq}, got {other:?}"),
    }
}

pub fn snapshot_holds_every_record_and_its_change(store: &dyn Store) {
    let (empty, seq) = snapshot(store);
    assert!(empty.is_empty());
    assert_eq!(seq, 0);
    let net = network(store, "net1", "198.18.0.0/24");
    let other = network(store, "net2", "198.18.1.0/24");
    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![net.id.clone(), other.id.clone()],
        })
        .unwrap();
    let (vm, first) = store
        .create_instance(&new_instance("vm"), &port_at(&net, "198.18.0.10"))
        .unwrap();
    let second = store
        .create_port(&NewPort {
            instance_id: vm.uuid.clone(),
            ..port_at(&other, "198.18.1.10")
        })
        .unwrap();
    let (bare, bare_port) = store
        .create_instance(&new_instance("bare"), &port_on(&net))
        .unwrap();
    store.set_password(&vm.uuid, None, "pw").unwrap();

    let (records, seq) = snapshot(store);
    assert_eq!(seq, store.last_change().unwrap());
    let kinds: Vec<&str> = records
        .iter()
        .map(|record| match record {
            Record::Network(_) => "network",
            Record::Router(_) => "router",
            Record::Instance(..) => "instance",
            Record::Start => "start",
        })
        .collect();
    assert_eq!(
        kinds,
        ["network", "network", "router", "instance", "instance"]
    );
    assert_eq!(records[0], Record::Network(net.clone()));
    let Record::Router(seen_router) = &records[2] else {
        unreachable!()
    };
    assert_eq!(seen_router.id, router.id);
    assert_eq!(seen_router.networks.len(), 2);
    let Record::Instance(seen_vm, vm_ports) = &records[3] else {
        unreachable!()
    };
    assert_eq!(seen_vm.uuid, vm.uuid);
    assert_eq!(seen_vm.password.as_deref(), Some("pw"));
    assert_eq!(seen_vm.user_data, vm.user_data);
    assert_eq!(vm_ports, &vec![first, second]);
    assert_eq!(
        records[4],
        Record::Instance(store.instance(&bare.uuid).unwrap(), vec![bare_port])
    );
}

pub fn changes_after_hand_over_the_records_as_they_are(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let (gone, _) = store
        .create_instance(&new_instance("gone"), &port_at(&net, "198.18.0.10"))
        .unwrap();
    let (kept, _) = store
        .create_instance(&new_instance("kept"), &port_at(&net, "198.18.0.11"))
        .unwrap();
    let (_, seq) = snapshot(store);
    assert_eq!(store.changes_after(seq, 1000).unwrap(), Feed::UpToDate);

    // The address of a deleted instance taken by a new one, a port added to another, a
    // password stored, a router made: one batch, read in one snapshot.
    store.delete_instance(&gone.uuid).unwrap();
    let (moved, moved_port) = store
        .create_instance(&new_instance("moved"), &port_at(&net, "198.18.0.10"))
        .unwrap();
    let extra = store
        .create_port(&NewPort {
            instance_id: kept.uuid.clone(),
            ..port_at(&net, "198.18.0.12")
        })
        .unwrap();
    store.set_password(&kept.uuid, None, "pw").unwrap();
    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![net.id.clone()],
        })
        .unwrap();
    let batch = batch(store, seq);
    assert_eq!(batch.through, store.last_change().unwrap());
    assert_eq!(batch.changes, store.changes_since(seq).unwrap());
    let changed: Vec<&str> = batch.changed(ChangeKind::Instance).collect();
    assert_eq!(changed, [&gone.uuid, &moved.uuid, &kept.uuid]);
    // The deleted instance is absent; the others come with all their ports, as they are now.
    let uuids: Vec<&str> = batch
        .instances
        .iter()
        .map(|(i, _)| i.uuid.as_str())
        .collect();
    assert_eq!(uuids, [&kept.uuid, &moved.uuid]);
    let (kept_now, kept_ports) = &batch.instances[0];
    assert_eq!(kept_now.password.as_deref(), Some("pw"));
    assert_eq!(kept_ports.len(), 2);
    assert_eq!(kept_ports[1], extra);
    assert_eq!(batch.instances[1].1, vec![moved_port]);
    assert_eq!(batch.routers.len(), 1);
    assert_eq!(batch.routers[0].networks, vec![net.id.clone()]);
    assert!(batch.networks.is_empty());

    // Deleting a port alone logs its instance too: the owner comes with the ports it has left.
    let seq = batch.through;
    store.delete_port(&extra.id).unwrap();
    let after = self::batch(store, seq);
    assert!(after.changed(ChangeKind::Port).any(|id| id == extra.id));
    assert!(
        after
            .changed(ChangeKind::Instance)
            .any(|id| id == kept.uuid)
    );
    assert_eq!(after.instances.len(), 1);
    assert_eq!(after.instances[0].1.len(), 1);

    // A deleted router and network are absent from their lists.
    let seq = after.through;
    store.remove_router_network(&router.id, &net.id).unwrap();
    store.delete_router(&router.id).unwrap();
    let lonely = network(store, "lonely", "198.18.9.0/24");
    store.delete_network(&lonely.id).unwrap();
    let deleted = self::batch(store, seq);
    assert!(deleted.routers.is_empty() && deleted.networks.is_empty());
    assert!(
        deleted
            .changed(ChangeKind::Router)
            .any(|id| id == router.id)
    );
    assert!(
        deleted
            .changed(ChangeKind::Network)
            .any(|id| id == lonely.id)
    );
}

pub fn a_reset_store_or_a_flood_is_not_a_batch(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let last = store.last_change().unwrap();
    // A server that saw a newer change than the store holds: the store was reset.
    assert_eq!(store.changes_after(last + 5, 1000).unwrap(), Feed::Gap);
    for i in 0..3 {
        store
            .create_instance(&new_instance(&format!("vm{i}")), &port_on(&net))
            .unwrap();
    }
    // Six changes after `last`: more than a batch of five may hold.
    assert_eq!(store.changes_after(last, 5).unwrap(), Feed::TooMany);
    assert!(matches!(
        store.changes_after(last, 6).unwrap(),
        Feed::Batch(_)
    ));
}

pub fn bulk_registration_is_all_or_nothing(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let batch: Vec<_> = (0..50)
        .map(|i| {
            (
                new_instance(&format!("bulk{i}")),
                port_at(&net, &format!("198.18.0.{}", 10 + i)),
            )
        })
        .collect();
    assert_eq!(store.create_instances(&batch).unwrap(), 50);
    assert_eq!(store.instances().unwrap().len(), 50);
    let by_ip = store
        .find_ports_by_ip("198.18.0.59".parse().unwrap())
        .unwrap();
    assert_eq!(by_ip.len(), 1);
    // One address taken in a second batch: nothing of it is written.
    let last = store.last_change().unwrap();
    let clash = vec![
        (new_instance("fresh"), port_at(&net, "198.18.0.100")),
        (new_instance("clash"), port_at(&net, "198.18.0.10")),
    ];
    conflict(store.create_instances(&clash));
    assert_eq!(store.instances().unwrap().len(), 50);
    assert_eq!(store.last_change().unwrap(), last);
    // Bad input is refused before anything is written.
    let mut bad = new_instance("bad");
    bad.uuid = "not-a-uuid".into();
    assert!(matches!(
        store.create_instances(&[(bad, port_on(&net))]),
        Err(StoreError::Invalid(_))
    ));
}

pub fn listeners_hear_every_commit(store: &dyn Store) {
    use std::time::{Duration, Instant};
    let Some(mut wakeups) = store.listen().unwrap() else {
        // SQLite: servers poll its change log (a WAL read of microseconds).
        assert!(store.reads_in_place());
        return;
    };
    assert!(!wakeups.wait(Duration::from_millis(20)).unwrap());
    let net = network(store, "net1", "198.18.0.0/24");
    let started = Instant::now();
    assert!(wakeups.wait(Duration::from_secs(5)).unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Several commits before the next wait: a wake, and then quiet once the notifications of
    // all three are in (on a loaded machine they may arrive over a few waits, never more).
    for i in 0..3 {
        store
            .create_instance(&new_instance(&format!("vm{i}")), &port_on(&net))
            .unwrap();
    }
    assert!(wakeups.wait(Duration::from_secs(5)).unwrap());
    let mut late = 0;
    while wakeups.wait(Duration::from_millis(200)).unwrap() {
        late += 1;
        assert!(
            late < 3,
            "three commits woke the listener more than three times"
        );
    }
    // A refused write notifies nobody (its transaction rolled back).
    conflict(store.create_instance(&new_instance("clash"), &port_at(&net, "198.18.0.1")));
    assert!(!wakeups.wait(Duration::from_millis(300)).unwrap());
}
