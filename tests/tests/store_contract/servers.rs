//! Whole-registry behaviour: concurrent openers, an open beside a write, a write queued behind
//! a long one, a PostgreSQL restart
//! under a live store, a registry database made again under a live server (filled by another,
//! or left empty).

use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::model::{CatchUp, Lookup, ReadModel};
use metaboot_server::store::{self, StoreError};

use crate::support::{instance, ip, network, new_instance, port_on};

/// Stores opening one new registry at once.
pub const OPENERS: usize = 6;
/// Instances the registry made again registers in one bulk call: its change log then runs
/// past the old registry's.
pub const NEW_INSTANCES: usize = 4;

/// Several processes opening a new registry at once (schema creation must not race).
pub fn concurrent_open(url: &str) {
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

/// How long the write beside [`an_open_beside_a_write_waits_for_it_in_nothing`] holds its
/// first table before it asks for the second.
pub const WRITE_PAUSE: Duration = Duration::from_secs(3);

/// A write that holds one table (`routers`, as `router delete` does) and then asks for
/// another (`networks`), in the modes a write takes them. `{pause}` is in seconds.
const WRITE_ACROSS_TWO_TABLES: &str = "
LOCK TABLE routers IN ROW EXCLUSIVE MODE;
SELECT pg_sleep({pause});
LOCK TABLE networks IN ROW EXCLUSIVE MODE;
";

/// An open of a current registry (a server's start, every CLI command) while another process
/// is in a write across two tables: it reads the schema's version and nothing else, so it
/// neither waits for the write nor deadlocks with it (the DDL of `CREATE INDEX IF NOT
/// EXISTS` takes a SHARE lock on each table in turn: on `networks`, then waiting for
/// `routers`, while the write waits for `networks`).
pub fn an_open_beside_a_write_waits_for_it_in_nothing(server: &PgServer, name: &str) {
    let url = server.url(name);
    drop(store::open(&url).unwrap());
    let write = WRITE_ACROSS_TWO_TABLES.replace("{pause}", &WRITE_PAUSE.as_secs().to_string());
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| server.psql(name, &write));
        // The write holds `routers` by now, and waits in `pg_sleep`.
        std::thread::sleep(WRITE_PAUSE / 3);
        let started = Instant::now();
        let opened = store::open(&url);
        let took = started.elapsed();
        let written = writer.join().unwrap();
        if let Err(err) = &opened {
            panic!("the open beside a write failed: {err}");
        }
        if let Err(err) = written {
            panic!("the write beside an open failed: {err:#}");
        }
        assert!(
            took < WRITE_PAUSE / 3,
            "the open waited {took:?} for the write"
        );
    });
}

/// The advisory lock every write takes first (`server/src/store/postgres/locks.rs`), its key
/// spelt as there.
pub const WRITE_LOCK: i64 = i64::from_be_bytes(*b"mbwrites");

/// How long the writer ahead of [`a_write_queued_behind_a_long_write_waits_for_it`] holds the
/// write lock: past the time one statement may run.
fn held() -> Duration {
    store::STATEMENT_TIMEOUT + Duration::from_secs(2)
}

/// A write queued behind another that holds the registry longer than any one statement may
/// run (a bulk registration) waits for it, up to `WRITE_LOCK_WAIT`, rather than fail at the
/// session's `statement_timeout`.
pub fn a_write_queued_behind_a_long_write_waits_for_it(server: &PgServer, name: &str) {
    assert!(held() < store::WRITE_LOCK_WAIT);
    let store = store::open(&server.url(name)).unwrap();
    let hold = format!(
        "SELECT pg_advisory_xact_lock({WRITE_LOCK}); SELECT pg_sleep({});",
        held().as_secs()
    );
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| server.psql(name, &hold));
        let granted = "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = \
                       'advisory' AND granted) THEN RAISE 'not yet'; END IF; END $$";
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.psql(name, granted).is_err() {
            assert!(Instant::now() < deadline, "the writer never took the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        let created = store.create_network(&store::NewNetwork {
            name: "net1".to_owned(),
            project: "p1".to_owned(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            ..store::NewNetwork::default()
        });
        let waited = started.elapsed();
        writer.join().unwrap().unwrap();
        if let Err(err) = created {
            panic!("the write queued for {waited:?} failed: {err}");
        }
        assert!(waited > store::STATEMENT_TIMEOUT, "{waited:?}");
    });
    assert_eq!(store.networks().unwrap().len(), 1);
}

/// Restarting PostgreSQL under a live store: the next call reconnects; while it is down,
/// calls fail fast with a backend error.
pub fn postgres_restart(server: &mut PgServer, url: &str) {
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

/// The registry's database dropped and made again while a server follows it (a lab reset:
/// `dropdb --force`, `createdb`, then the CLI), and the new change log already past the
/// server's sequence number when the server reconnects: its read model reloads from the new
/// database rather than take the new log for the rest of the old one, and a reload that
/// fails is tried again (the read model's `reload_owed`, `server/src/model/mod.rs`).
pub fn a_database_made_again_under_the_server_is_followed(server: &PgServer, name: &str) {
    let url = server.url(name);
    let store = store::open(&url).unwrap();
    let old_net = network(&*store, "old", "198.18.0.0/24");
    let old_port = instance(&*store, "old-vm", &port_on(&old_net));
    let model = ReadModel::load(&*store).unwrap();
    let old_seq = model.seq();

    server.drop_database(name).unwrap();
    server.create_database(name).unwrap();
    let other = store::open(&url).unwrap();
    let new_net = network(&*other, "new", "198.19.0.0/24");
    let batch: Vec<_> = (0..NEW_INSTANCES)
        .map(|i| (new_instance(&format!("new-vm{i}")), port_on(&new_net)))
        .collect();
    assert_eq!(other.create_instances(&batch).unwrap(), NEW_INSTANCES);
    assert!(other.last_change().unwrap() > old_seq);

    // A record of the new registry the snapshot cannot read: the reload fails.
    let set_meta = |meta: &str| {
        let sql = format!("UPDATE instances SET meta = '{meta}' WHERE name = 'new-vm0'");
        server.psql(name, &sql).unwrap();
    };
    set_meta("not json");
    let outcome = model.catch_up(&*store);
    assert!(outcome.is_err(), "a reload was due, got {outcome:?}");
    assert!(
        model.instance(&old_port.instance_id).is_some(),
        "the old model stays"
    );
    set_meta("{}");
    assert_eq!(model.catch_up(&*store).unwrap(), CatchUp::Reloaded);
    assert_eq!(model.instance_count(), NEW_INSTANCES);
    assert!(model.instance(&old_port.instance_id).is_none());
    for (new, _) in &batch {
        assert!(model.instance(&new.uuid).is_some(), "{} missing", new.name);
    }
    // The old network went with its registry; the new one's ports are found on it.
    assert!(matches!(
        model.on_network(old_port.ip, &old_net.id),
        Lookup::NoPort
    ));
    for port in other.ports().unwrap() {
        match model.on_network(port.ip, &new_net.id) {
            Lookup::Found(owner) => assert_eq!(owner.uuid.to_string(), port.instance_id),
            other => panic!("{} on the new network: {other:?}", port.ip),
        }
    }
    assert_eq!(model.seq(), other.last_change().unwrap());
    assert_eq!(model.catch_up(&*store).unwrap(), CatchUp::UpToDate);
}

/// The registry's database dropped and made again, and nothing else yet (no CLI command has
/// run on it): the server following it makes the schema, as an open would, and loads the
/// new, empty registry rather than fail to read it at every poll.
pub fn an_empty_database_made_again_is_given_the_schema(server: &PgServer, name: &str) {
    let url = server.url(name);
    let store = store::open(&url).unwrap();
    let old_net = network(&*store, "old", "198.18.0.0/24");
    let old_port = instance(&*store, "old-vm", &port_on(&old_net));
    let model = ReadModel::load(&*store).unwrap();

    server.drop_database(name).unwrap();
    server.create_database(name).unwrap();
    match model.catch_up(&*store) {
        Ok(outcome) => assert_eq!(outcome, CatchUp::Reloaded),
        Err(err) => panic!("the empty database made again was not loaded: {err}"),
    }
    assert_eq!(model.instance_count(), 0);
    assert!(model.instance(&old_port.instance_id).is_none());
    assert!(store.networks().unwrap().is_empty());
    // The new registry is written and followed as any other.
    let new_net = network(&*store, "new", "198.19.0.0/24");
    let new_port = instance(&*store, "new-vm", &port_on(&new_net));
    assert!(matches!(
        model.catch_up(&*store).unwrap(),
        CatchUp::Applied(_)
    ));
    assert!(model.instance(&new_port.instance_id).is_some());
}
