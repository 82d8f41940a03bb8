//! Whole-registry behaviour: concurrent openers, a PostgreSQL restart under a live store.

use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{self, StoreError};

use crate::support::{instance, ip, network, port_on};

/// Stores opening one new registry at once.
pub const OPENERS: usize = 6;

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
