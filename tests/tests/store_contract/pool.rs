//! The PostgreSQL pool under a live store: a caller that panics holding a connection frees
//! it, and writes queued behind the write lock leave the reads a connection
//! (`server/src/store/postgres/slots.rs`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{self, Feed, NewNetwork};

use crate::servers::WRITE_LOCK;
use crate::support::network;

/// How long a test waits for sessions to reach the lock it is about.
const LOCK_SEEN_WITHIN: Duration = Duration::from_secs(10);

/// Waits until at least `sessions` sessions hold (`granted`) or wait for (not `granted`) an
/// advisory lock of database `name`.
fn wait_for_advisory_lock(server: &PgServer, name: &str, granted: bool, sessions: usize) {
    let check = format!(
        "DO $$ BEGIN IF (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND \
         granted = {granted}) < {sessions} THEN RAISE 'not yet'; END IF; END $$"
    );
    let deadline = Instant::now() + LOCK_SEEN_WITHIN;
    while server.psql(name, &check).is_err() {
        assert!(
            Instant::now() < deadline,
            "{sessions} sessions never reached the write lock (granted: {granted})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Callers that panic mid-call (a bug in what a snapshot's reader does with a record), more
/// times than the pool has connections: every later call still gets one at once, as on
/// SQLite (`a_panicking_caller_does_not_break_the_store`).
pub fn a_caller_that_panics_holding_a_connection_frees_it(server: &PgServer, name: &str) {
    let store = store::open(&server.url(name)).unwrap();
    network(&*store, "net1", "198.18.0.0/24");
    for _ in 0..=store::MAX_CONNECTIONS {
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            store.snapshot(&mut |_| panic!("a reader's bug mid-snapshot"))
        }));
        assert!(panicked.is_err());
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..store::MAX_CONNECTIONS)
            .map(|_| scope.spawn(|| store.networks()))
            .collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap().unwrap().len(), 1);
        }
    });
    let took = started.elapsed();
    assert!(took < store::POOL_WAIT / 2, "the reads waited {took:?}");
}

/// How long the writer ahead of
/// [`writes_queued_behind_the_write_lock_leave_the_reads_a_connection`] holds the write lock:
/// past the time a caller waits for a connection.
fn held() -> Duration {
    store::POOL_WAIT + Duration::from_secs(5)
}

/// Another server's bulk write holds the write lock while more writes than may wait queue
/// behind it here (guests' password POSTs): the read model's follower still reads the change
/// log at once, [`store::MAX_WRITERS`] writes wait for the lock and succeed, and the one more
/// is refused after `POOL_WAIT`, saying another writer holds the lock.
pub fn writes_queued_behind_the_write_lock_leave_the_reads_a_connection(
    server: &PgServer,
    name: &str,
) {
    let store = store::open(&server.url(name)).unwrap();
    let seq = store.last_change().unwrap();
    let hold = format!(
        "SELECT pg_advisory_xact_lock({WRITE_LOCK}); SELECT pg_sleep({});",
        held().as_secs()
    );
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| server.psql(name, &hold));
        wait_for_advisory_lock(server, name, true, 1);
        let writes: Vec<_> = (0..store::MAX_CONNECTIONS)
            .map(|i| {
                let store = &store;
                scope.spawn(move || {
                    store.create_network(&NewNetwork {
                        name: format!("net{i}"),
                        project: "p1".to_owned(),
                        cidr: format!("198.18.{i}.0/24").parse().unwrap(),
                        ..NewNetwork::default()
                    })
                })
            })
            .collect();
        wait_for_advisory_lock(server, name, false, store::MAX_WRITERS);
        let started = Instant::now();
        let feed = store.changes_after(seq, 100);
        let took = started.elapsed();
        assert!(
            matches!(feed, Ok(Feed::UpToDate)),
            "the follower's read beside queued writes: {feed:?}"
        );
        assert!(took < store::POOL_WAIT / 2, "the follower waited {took:?}");
        holder.join().unwrap().unwrap();
        let results: Vec<_> = writes.into_iter().map(|w| w.join().unwrap()).collect();
        let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            results.len() - refused.len(),
            store::MAX_WRITERS,
            "{refused:?}"
        );
        for err in refused {
            assert!(err.to_string().contains("write lock"), "{err}");
        }
    });
    assert_eq!(store.networks().unwrap().len(), store::MAX_WRITERS);
}
