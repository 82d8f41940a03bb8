//! The read model over a real SQLite registry: built from a snapshot, kept current batch by
//! batch, rebuilt when the change log has a gap, and never half-applied to a reader.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{CatchUp, Lookup, ReadModel, batch_limit};
use crate::store::{
    self, MAX_CHANGES_PER_BATCH, NewInstance, NewNetwork, NewPort, NewRouter, Store,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn Store>,
    network: String,
    router: String,
}

/// The world's network `net` (198.18.0.0/24), made in `store`; its id.
fn the_network(store: &dyn Store) -> String {
    store
        .create_network(&NewNetwork {
            name: "net".into(),
            project: "p".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            ..NewNetwork::default()
        })
        .unwrap()
        .id
}

fn world(kept: i64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r.sqlite").display().to_string();
    let store = store::open_keeping_changes(&url, kept).unwrap();
    let network = the_network(store.as_ref());
    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p".into(),
            networks: vec![network.clone()],
        })
        .unwrap()
        .id;
    World {
        _dir: dir,
        url,
        store,
        network,
        router,
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn create(w: &World, n: u32, at: &str) -> String {
    let user_data = format!("#cloud-config\nhostname: vm{n}\n").repeat(4);
    create_with(w, &vm(n, "p", user_data.as_bytes()), Some(ip(at)))
}

/// Instance `vm<n>` of `project` with `user_data` (none when empty).
fn vm(n: u32, project: &str, user_data: &[u8]) -> NewInstance {
    NewInstance {
        uuid: uuid(n),
        project: project.into(),
        name: format!("vm{n}"),
        hostname: format!("vm{n}"),
        user_data: (!user_data.is_empty()).then(|| user_data.to_vec()),
        ..NewInstance::default()
    }
}

/// Creates `new` with a port on the world's network at `at` (a free address when `None`).
fn create_with(w: &World, new: &NewInstance, at: Option<IpAddr>) -> String {
    let port = NewPort {
        network_id: w.network.clone(),
        ip: at,
        ..NewPort::default()
    };
    w.store.create_instance(new, &port).unwrap().0.uuid
}

fn owner(model: &ReadModel, w: &World, at: &str) -> Option<String> {
    match model.behind_router(ip(at), &w.router) {
        Lookup::Found(record) => Some(record.name.to_string()),
        _ => None,
    }
}

#[test]
fn a_model_answers_what_the_store_holds_and_follows_it() {
    let w = world(store::CHANGE_LOG_KEPT);
    for n in 0..100 {
        create(&w, n, &format!("198.18.0.{}", n + 10));
    }
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    assert_eq!(model.instance_count(), 100);
    assert_eq!(model.seq(), w.store.last_change().unwrap());
    assert_eq!(owner(&model, &w, "198.18.0.15").as_deref(), Some("vm5"));
    assert!(matches!(
        model.on_network(ip("198.18.0.15"), &w.network),
        Lookup::Found(_)
    ));
    assert!(matches!(model.by_ip(ip("198.18.0.15")), Lookup::Found(_)));
    assert!(matches!(
        model.behind_router(ip("198.18.0.200"), &w.router),
        Lookup::NoPort
    ));
    // Documents come back as the store has them, user data included (compressed in memory).
    let record = model.instance(&uuid(5)).unwrap();
    let (_, instance, ports) = model.materialize(&record).unwrap().unwrap();
    let stored = w.store.instance(&uuid(5)).unwrap();
    assert_eq!(instance.user_data, stored.user_data);
    assert_eq!(instance.name, stored.name);
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].0.mac,
        w.store.instance_ports(&uuid(5)).unwrap()[0].0.mac
    );

    // An address moved: the old owner deleted, a new instance at its address.
    w.store.delete_instance(&uuid(5)).unwrap();
    create(&w, 500, "198.18.0.15");
    let CatchUp::Applied(changes) = model.catch_up(w.store.as_ref()).unwrap() else {
        panic!("expected a batch");
    };
    assert!(!changes.is_empty());
    assert_eq!(owner(&model, &w, "198.18.0.15").as_deref(), Some("vm500"));
    assert!(model.instance(&uuid(5)).is_none());
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::UpToDate);

    // A password stored by this server is served at once and survives a batch read before it.
    let seen = model.instance(&uuid(6)).map(|record| record.ec2_id);
    // Not for an instance created again under the same uuid since (another ec2 id).
    let later = w.store.last_change().unwrap() + 1;
    model.password_stored(&uuid(6), seen.map(|id| id + 1), "stale", later);
    assert_eq!(model.instance(&uuid(6)).unwrap().password(), None);
    model.password_stored(&uuid(6), seen, "secret", later);
    assert_eq!(model.instance(&uuid(6)).unwrap().password(), Some("secret"));
    create(&w, 501, "198.18.0.250");
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.instance(&uuid(6)).unwrap().password(), Some("secret"));
}

/// nova takes an empty password as unset, and so does the store: a second POST after an
/// empty one is stored, and served at once like the first (docs/protocol.md §1.7).
#[test]
fn a_password_posted_after_an_empty_one_is_served_at_once() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let seen = model.instance(&uuid(1)).map(|record| record.ec2_id);
    for password in ["", "secret"] {
        assert!(matches!(
            w.store.set_password(&uuid(1), None, password).unwrap(),
            store::PasswordSet::Stored { .. }
        ));
        let logged_by = w.store.last_change().unwrap();
        model.password_stored(&uuid(1), seen, password, logged_by);
    }
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), Some("secret"));
    // The change log agrees.
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), Some("secret"));
}

/// A password this server stored is kept over a record of a batch read before its change
/// (the instance's port moved meanwhile), and only such a batch: once the change log is
/// through it, the registry's text is served, and `instance clear-password` clears it here
/// too, so that the guest may post again.
#[test]
fn a_password_stored_here_is_kept_until_the_log_is_through_it_then_cleared_with_the_registry() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let seen = model.instance(&uuid(1)).map(|record| record.ec2_id);
    // The store's write and its change come after this batch's read, as a moment later.
    let port = w
        .store
        .create_port(&NewPort {
            network_id: w.network.clone(),
            instance_id: uuid(1),
            ..NewPort::default()
        })
        .unwrap();
    let after_port = w.store.last_change().unwrap();
    model.password_stored(&uuid(1), seen, "c2VjcmV0", after_port + 1);
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.seq(), after_port);
    assert_eq!(
        model.instance(&uuid(1)).unwrap().password(),
        Some("c2VjcmV0")
    );
    // A reload from a snapshot read before it keeps it too.
    model.reload(w.store.as_ref()).unwrap();
    assert_eq!(
        model.instance(&uuid(1)).unwrap().password(),
        Some("c2VjcmV0")
    );

    // Stored for real, and then cleared: the registry's text, none, is what is served.
    w.store.set_password(&uuid(1), None, "c2VjcmV0").unwrap();
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(
        model.instance(&uuid(1)).unwrap().password(),
        Some("c2VjcmV0")
    );
    assert!(w.store.clear_password(&uuid(1)).unwrap());
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), None);

    // Posted again through this server, then cleared before its catch-up: the batch that
    // brings both says what the registry holds.
    w.store.set_password(&uuid(1), None, "YWdhaW4=").unwrap();
    let logged_by = w.store.last_change().unwrap();
    model.password_stored(&uuid(1), seen, "YWdhaW4=", logged_by);
    assert!(w.store.clear_password(&uuid(1)).unwrap());
    w.store.delete_port(&port.id).unwrap();
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), None);

    // The follower through the clear before the post's answer is recorded here: the model
    // already says what the registry holds.
    w.store.set_password(&uuid(1), None, "dGhpcmQ=").unwrap();
    let logged_by = w.store.last_change().unwrap();
    assert!(w.store.clear_password(&uuid(1)).unwrap());
    model.catch_up(w.store.as_ref()).unwrap();
    model.password_stored(&uuid(1), seen, "dGhpcmQ=", logged_by);
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), None);
}

/// A password another server stored, found by a post answered 409 before this model has its
/// change: served until the change log brings the registry's record, and never over a model
/// already past the read (a clear since is not undone).
#[test]
fn a_password_seen_in_the_registry_is_served_until_the_log_brings_the_record() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let seen = model.instance(&uuid(1)).map(|record| record.ec2_id);
    w.store.set_password(&uuid(1), None, "b3RoZXI=").unwrap();
    let read_at = w.store.last_change().unwrap();
    model.password_stored(&uuid(1), seen, "b3RoZXI=", read_at);
    assert_eq!(
        model.instance(&uuid(1)).unwrap().password(),
        Some("b3RoZXI=")
    );
    assert!(w.store.clear_password(&uuid(1)).unwrap());
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), None);

    w.store.set_password(&uuid(1), None, "bGF0ZQ==").unwrap();
    let read_at = w.store.last_change().unwrap();
    assert!(w.store.clear_password(&uuid(1)).unwrap());
    model.catch_up(w.store.as_ref()).unwrap();
    model.password_stored(&uuid(1), seen, "bGF0ZQ==", read_at);
    assert_eq!(model.instance(&uuid(1)).unwrap().password(), None);
}

#[test]
fn a_gap_in_the_change_log_rebuilds_the_model() {
    let w = world(5);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    // More changes than the log keeps while the model looks away: it cannot apply them one by
    // one, so it reloads and sees everything.
    for n in 2..10 {
        create(&w, n, &format!("198.18.0.{}", n + 10));
    }
    w.store.delete_instance(&uuid(1)).unwrap();
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::Reloaded);
    assert_eq!(model.status().reloads(), 1);
    assert_eq!(model.instance_count(), 8);
    assert!(owner(&model, &w, "198.18.0.10").is_none());
    assert_eq!(owner(&model, &w, "198.18.0.19").as_deref(), Some("vm9"));
    assert_eq!(model.seq(), w.store.last_change().unwrap());
    // A store reset under it (a new, emptier registry at the same place): reload too.
    drop(w.store);
    std::fs::remove_file(&w.url).unwrap();
    let fresh = store::open(&w.url).unwrap();
    assert_eq!(model.catch_up(fresh.as_ref()).unwrap(), CatchUp::Reloaded);
    assert_eq!(model.instance_count(), 0);
}

/// The registry file deleted and made again while a server holds it open (`rm
/// registry.sqlite*`, then another process's `network create`, …): the server's own store
/// handle moves to the new file, its model reloads from it even when the new change log is
/// already longer than the old one, and its writes land in the new file.
#[test]
fn a_registry_file_made_again_under_the_server_is_followed() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let old_seq = model.seq();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", w.url));
    }
    let other = world_at(&w.url);
    for n in 2..8 {
        create_with(
            &other,
            &vm(n, "p", b""),
            Some(ip(&format!("198.18.0.{}", n + 10))),
        );
    }
    assert!(other.store.last_change().unwrap() > old_seq);
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::Reloaded);
    assert_eq!(model.instance_count(), 6);
    assert!(model.instance(&uuid(1)).is_none());
    assert!(model.instance(&uuid(7)).is_some());
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::UpToDate);
    // A write through the server's handle goes to the file the other process sees.
    w.store.delete_instance(&uuid(7)).unwrap();
    assert!(other.store.instance(&uuid(7)).is_err());
}

/// The reload after the registry file was replaced fails (a record of the new file the
/// snapshot cannot read): the next catch-up reloads again, rather than ask the new file's
/// change log what came after the old file's sequence number and mix the two registries.
#[test]
fn a_failed_reload_after_the_registry_file_was_replaced_is_tried_again() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", w.url));
    }
    let other = world_at(&w.url);
    for n in 2..8 {
        create_with(
            &other,
            &vm(n, "p", b""),
            Some(ip(&format!("198.18.0.{}", n + 10))),
        );
    }
    // Longer than the old change log, which the new one would otherwise be taken to continue.
    assert!(other.store.last_change().unwrap() > model.seq());
    let set_meta = |meta: &str| {
        rusqlite::Connection::open(&w.url)
            .unwrap()
            .execute(
                "UPDATE instances SET meta = ?1 WHERE uuid = ?2",
                [meta, uuid(2).as_str()],
            )
            .unwrap();
    };
    set_meta("not json");
    assert!(model.catch_up(w.store.as_ref()).is_err());
    assert!(model.instance(&uuid(1)).is_some(), "the old model stays");
    set_meta("{}");
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::Reloaded);
    assert_eq!(model.instance_count(), 6);
    assert!(model.instance(&uuid(1)).is_none());
    assert_eq!(model.seq(), other.store.last_change().unwrap());
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::UpToDate);
}

/// A second process's world on the registry at `url` (made when missing).
fn world_at(url: &str) -> World {
    let store = store::open(url).unwrap();
    let network = the_network(store.as_ref());
    World {
        _dir: tempfile::tempdir().unwrap(),
        url: url.to_owned(),
        store,
        network,
        router: String::new(),
    }
}

#[test]
fn readers_never_see_half_a_batch() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = Arc::new(ReadModel::load(w.store.as_ref()).unwrap());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Every round moves the guest address from one instance to the next in one write
        // batch (delete + create); a reader must always find exactly one owner.
        let reader = scope.spawn(|| {
            let mut looked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match model.behind_router(ip("198.18.0.10"), &w.router) {
                    Lookup::Found(_) => looked += 1,
                    other => panic!("half a batch seen: {other:?}"),
                }
            }
            looked
        });
        for n in 2..40 {
            w.store.delete_instance(&uuid(n - 1)).unwrap();
            create(&w, n, "198.18.0.10");
            // Both writes in one batch.
            model.catch_up(w.store.as_ref()).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(owner(&model, &w, "198.18.0.10").as_deref(), Some("vm39"));
}

/// `router remove-network` reaches a running server: after its batch, the router's
/// guests on that network are no longer found behind it (the network itself still is).
#[test]
fn a_network_removed_from_its_router_is_followed() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    assert_eq!(owner(&model, &w, "198.18.0.10").as_deref(), Some("vm1"));

    w.store
        .remove_router_network(&w.router, &w.network)
        .unwrap();
    let CatchUp::Applied(_) = model.catch_up(w.store.as_ref()).unwrap() else {
        panic!("expected a batch");
    };
    assert_eq!(owner(&model, &w, "198.18.0.10"), None);
    assert!(matches!(
        model.on_network(ip("198.18.0.10"), &w.network),
        Lookup::Found(_)
    ));
}

#[test]
fn dual_stack_ports_are_found_by_either_address_and_by_the_mac_of_their_link_local_address() {
    let w = world(store::CHANGE_LOG_KEPT);
    let dual = w
        .store
        .create_network(&NewNetwork {
            name: "dual".into(),
            project: "p".into(),
            cidr: "fdc6:1200:0:9::/64".parse().unwrap(),
            second_subnet: Some(store::Subnet {
                cidr: "198.18.9.0/24".parse().unwrap(),
                gateway: None,
                dhcp_ip: None,
            }),
            ipv6_address_mode: Some(store::Ipv6AddressMode::Slaac),
            ..NewNetwork::default()
        })
        .unwrap();
    w.store.add_router_network(&w.router, &dual.id).unwrap();
    let new = NewInstance {
        uuid: uuid(9),
        project: "p".into(),
        name: "vm9".into(),
        hostname: "vm9".into(),
        ..NewInstance::default()
    };
    let port = NewPort {
        network_id: dual.id.clone(),
        mac: Some("fa:16:3e:12:34:56".into()),
        ..NewPort::default()
    };
    let (_, port) = w.store.create_instance(&new, &port).unwrap();
    // IPv4 first; the IPv6 address is the one the guest makes itself (SLAAC).
    assert_eq!(port.ip, ip("198.18.9.3"));
    assert_eq!(
        port.second_ip,
        Some(ip("fdc6:1200:0:9:f816:3eff:fe12:3456"))
    );

    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let found = |at: &str| owner(&model, &w, at);
    assert_eq!(found("198.18.9.3").as_deref(), Some("vm9"));
    assert_eq!(
        found("fdc6:1200:0:9:f816:3eff:fe12:3456").as_deref(),
        Some("vm9")
    );
    // Its link-local address (what it calls fe80::a9fe:a9fe from) carries its MAC.
    assert_eq!(found("fe80::f816:3eff:fe12:3456").as_deref(), Some("vm9"));
    assert!(matches!(
        model.on_network(ip("fe80::f816:3eff:fe12:3456"), &dual.id),
        Lookup::Found(_)
    ));
    assert!(matches!(
        model.by_ip(ip("fe80::f816:3eff:fe12:3456")),
        Lookup::Found(_)
    ));
    // Another MAC, a link-local address that is not EUI-64, or the right MAC on a network
    // the guest is not on: nobody.
    assert_eq!(found("fe80::f816:3eff:fe12:3457"), None);
    assert_eq!(found("fe80::1"), None);
    assert!(matches!(
        model.on_network(ip("fe80::f816:3eff:fe12:3456"), &w.network),
        Lookup::NoPort
    ));

    // Deleted: the MAC index forgets it with the addresses.
    w.store.delete_instance(&uuid(9)).unwrap();
    model.catch_up(w.store.as_ref()).unwrap();
    assert_eq!(found("fe80::f816:3eff:fe12:3456"), None);
    assert_eq!(found("198.18.9.3"), None);
}

#[test]
fn a_host_network_finds_guests_by_the_mac_their_lease_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&dir.path().join("r.sqlite").display().to_string()).unwrap();
    let lan = store
        .create_network(&NewNetwork {
            name: "lan".into(),
            project: "p".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            host: Some(store::HostBridge::LibvirtNetwork("lab".into())),
            ..NewNetwork::default()
        })
        .unwrap()
        .id;
    let create = |name: &str, mac: &str, fixed: Option<&str>| {
        let new = NewInstance {
            uuid: uuid::Uuid::new_v4().to_string(),
            project: "p".into(),
            name: name.into(),
            hostname: name.into(),
            ..NewInstance::default()
        };
        let port = NewPort {
            network_id: lan.clone(),
            mac: Some(mac.into()),
            ip: fixed.map(ip),
            ..NewPort::default()
        };
        store.create_instance(&new, &port).unwrap().0.uuid
    };
    let web = create("web", "52:54:00:00:00:01", None);
    let fixed = create("fixed", "52:54:00:00:00:02", Some("198.18.0.10"));
    let model = ReadModel::load(store.as_ref()).unwrap();
    let found = |ip_text: &str, leased: &[[u8; 6]]| match model.on_host_network(
        ip(ip_text),
        &lan,
        leased,
    ) {
        Lookup::Found(record) => Some(record.uuid.to_string()),
        _ => None,
    };
    let (mac_web, mac_fixed, mac_other) = (
        [0x52, 0x54, 0, 0, 0, 1],
        [0x52, 0x54, 0, 0, 0, 2],
        [0x52, 0x54, 0, 0, 0, 9],
    );
    // By the leased MAC, at any address.
    assert_eq!(found("198.18.0.50", &[mac_web]), Some(web.clone()));
    assert_eq!(found("198.18.0.77", &[mac_web]), Some(web.clone()));
    // A learned port's placeholder is nobody's address.
    let placeholder = store.instance_ports(&web).unwrap()[0].0.ip;
    assert!(store::is_learned_placeholder(placeholder));
    assert_eq!(found(&placeholder.to_string(), &[]), None);
    // No lease: the port fixed at that address.
    assert_eq!(found("198.18.0.10", &[]), Some(fixed.clone()));
    assert_eq!(found("198.18.0.10", &[mac_fixed]), Some(fixed));
    // A lease naming another MAC, unregistered, at the fixed address: nobody.
    assert_eq!(found("198.18.0.10", &[mac_other]), None);
    // Two MACs holding one address: nobody.
    assert!(matches!(
        model.on_host_network(ip("198.18.0.50"), &lan, &[mac_web, mac_fixed]),
        Lookup::Ambiguous(2)
    ));
}

/// Instances created and deleted, each with a key pair of its own, between reloads: the
/// values only deleted instances used are forgotten as batches are applied, so a server's
/// memory follows what the registry holds, not what it ever held.
#[test]
fn deleted_instances_key_pairs_are_forgotten_without_a_reload() {
    let w = world(store::CHANGE_LOG_KEPT);
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    for n in 0..1500 {
        let new = NewInstance {
            key_pairs: vec![metaboot_proto::KeyPair {
                name: format!("key-{n}"),
                kind: "ssh".into(),
                data: format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:043} vm{n}"),
            }],
            ..vm(n, &format!("project-{n}"), b"")
        };
        create_with(&w, &new, Some(ip("198.18.0.10")));
        assert!(matches!(
            model.catch_up(w.store.as_ref()).unwrap(),
            CatchUp::Applied(_)
        ));
        w.store.delete_instance(&uuid(n)).unwrap();
        assert!(matches!(
            model.catch_up(w.store.as_ref()).unwrap(),
            CatchUp::Applied(_)
        ));
    }
    assert_eq!(model.status().reloads(), 0);
    assert_eq!(model.instance_count(), 0);
    let held = model.interner.lock().unwrap().len();
    assert!(held <= 1100, "{held} values held for no instance");
}

/// A record read before a reload (a request on its way) is made whole with the record and the
/// dictionary of the model that replaced it: never its old bytes with the new dictionary.
#[test]
fn a_record_read_before_a_reload_is_materialized_from_the_new_model() {
    let w = world(store::CHANGE_LOG_KEPT);
    for n in 0..100 {
        create(&w, n, &format!("198.18.0.{}", n + 10));
    }
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let before = model.instance(&uuid(99)).unwrap();
    // Other user data for the samples the next dictionary is made from.
    for n in 0..99 {
        w.store.delete_instance(&uuid(n)).unwrap();
    }
    for n in 100..200 {
        let user_data = format!("#!/bin/sh\necho {n} > /tmp/n\n").repeat(8);
        create_with(&w, &vm(n, "p", user_data.as_bytes()), None);
    }
    model.reload(w.store.as_ref()).unwrap();
    let (record, instance, _) = model.materialize(&before).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&record, &before), "the new model's record");
    assert_eq!(
        instance.user_data,
        w.store.instance(&uuid(99)).unwrap().user_data
    );
}

#[test]
fn host_networks_come_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&dir.path().join("r.sqlite").display().to_string()).unwrap();
    let network = |name: &str, host: store::HostBridge| {
        store
            .create_network(&NewNetwork {
                name: name.into(),
                project: "p".into(),
                cidr: "198.18.0.0/24".parse().unwrap(),
                host: Some(host),
                ..NewNetwork::default()
            })
            .unwrap()
    };
    // A libvirt network and a bridge may turn out to be one bridge: the older one is served.
    let older = network("older", store::HostBridge::LibvirtNetwork("lab".into()));
    // The registry's clock counts seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newer: Vec<String> = (0..4)
        .map(|n| {
            network(
                &format!("n{n}"),
                store::HostBridge::Bridge(format!("br{n}")),
            )
            .id
        })
        .collect();
    let model = ReadModel::load(store.as_ref()).unwrap();
    let ids: Vec<String> = model
        .host_networks()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut same_second = newer.clone();
    same_second.sort();
    assert_eq!(ids[0], older.id);
    assert_eq!(ids[1..], same_second[..], "ties come by id");
}

#[test]
fn an_instance_deleted_with_its_network_in_one_batch_leaves_the_indexes() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let lan = w
        .store
        .create_network(&NewNetwork {
            name: "lan".into(),
            project: "p".into(),
            cidr: "198.18.1.0/24".parse().unwrap(),
            second_subnet: Some(store::Subnet {
                cidr: "fdc6:1200:0:1::/64".parse().unwrap(),
                gateway: None,
                dhcp_ip: None,
            }),
            ipv6_address_mode: Some(store::Ipv6AddressMode::Slaac),
            ..NewNetwork::default()
        })
        .unwrap()
        .id;
    let port = NewPort {
        network_id: lan.clone(),
        ..NewPort::default()
    };
    w.store.create_instance(&vm(2, "p", b""), &port).unwrap();
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    let before = model.read().indexed();
    w.store.delete_instance(&uuid(2)).unwrap();
    w.store.delete_network(&lan).unwrap();
    assert!(matches!(
        model.catch_up(w.store.as_ref()).unwrap(),
        CatchUp::Applied(_)
    ));
    assert_eq!(model.instance_count(), 1);
    // vm1's address alone: vm2's IPv4, IPv6 and MAC entries went with it.
    assert_eq!(model.read().indexed(), 1, "{before} before");
}

#[test]
fn a_change_of_a_kind_this_server_does_not_know_rebuilds_the_model() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let model = ReadModel::load(w.store.as_ref()).unwrap();
    // A newer metaboot logs a kind this one does not know, then an instance this one must
    // serve: the model cannot tell what the first touched, so it reloads rather than stall.
    rusqlite::Connection::open(&w.url)
        .unwrap()
        .execute("INSERT INTO changes (kind, id) VALUES ('volume', 'v1')", [])
        .unwrap();
    create(&w, 2, "198.18.0.11");
    assert_eq!(model.catch_up(w.store.as_ref()).unwrap(), CatchUp::Reloaded);
    assert_eq!(owner(&model, &w, "198.18.0.11").as_deref(), Some("vm2"));
    assert_eq!(model.seq(), w.store.last_change().unwrap());
    // Past it, changes are applied one batch at a time again.
    create(&w, 3, "198.18.0.12");
    assert!(matches!(
        model.catch_up(w.store.as_ref()).unwrap(),
        CatchUp::Applied(_)
    ));
    assert_eq!(model.status().reloads(), 1);
}

/// A snapshot read again after its connection was lost part way (the PostgreSQL backend
/// retries on a new connection) starts with `Record::Start`: what the first attempt read is
/// forgotten, never mixed with the second.
#[test]
fn a_snapshot_read_again_forgets_what_the_first_attempt_read() {
    let w = world(store::CHANGE_LOG_KEPT);
    create(&w, 1, "198.18.0.10");
    let mut first = Vec::new();
    w.store
        .snapshot(&mut |record| {
            first.push(record);
            Ok(())
        })
        .unwrap();
    // Between the attempts, vm1 goes and vm2 comes.
    w.store.delete_instance(&uuid(1)).unwrap();
    create(&w, 2, "198.18.0.11");
    let mut interner = super::Interner::default();
    let mut builder = super::Builder::new(&mut interner);
    for record in first {
        builder.add(record).unwrap();
    }
    let seq = w.store.snapshot(&mut |record| builder.add(record)).unwrap();
    let built = builder.finish(seq);
    assert_eq!(built.instance_count(), 1);
    let model = ReadModel {
        model: std::sync::RwLock::new(built),
        interner: std::sync::Mutex::new(interner),
        status: Arc::default(),
        reload_owed: AtomicBool::default(),
    };
    assert_eq!(owner(&model, &w, "198.18.0.10"), None);
    assert_eq!(owner(&model, &w, "198.18.0.11").as_deref(), Some("vm2"));
}

/// A large registry catches up through more changes than a small one before it reloads (a
/// bulk import during a reload must not make the next catch-up a reload again), never past
/// what the change log keeps.
#[test]
fn a_larger_registry_applies_larger_batches_before_it_reloads() {
    assert_eq!(batch_limit(0), MAX_CHANGES_PER_BATCH);
    assert_eq!(batch_limit(100_000), MAX_CHANGES_PER_BATCH);
    assert_eq!(batch_limit(500_000), 50_000);
    assert_eq!(batch_limit(1_000_000), store::CHANGE_LOG_KEPT as usize);
    assert_eq!(batch_limit(usize::MAX), store::CHANGE_LOG_KEPT as usize);
}
