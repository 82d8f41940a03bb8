//! Bringing an older PostgreSQL registry up to date while other sessions use it: a server's
//! snapshot read (REPEATABLE READ, `server/src/store/postgres/mod.rs`) and other openers.

use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{self, StoreError};

use crate::dual_stack::{POSTGRES_SCHEMA_1, ROWS_1};
use crate::host::TO_SCHEMA_2;
use crate::isolation::default_to_repeatable_read;
use crate::servers::OPENERS;

/// How long the snapshot read beside an upgrade holds the table it read first before it
/// reads the other.
pub const READ_PAUSE: Duration = Duration::from_secs(2);

/// A snapshot read (as a server's) of `ports`, then, after `{pause}` seconds, of `networks`:
/// the tables an upgrade from version 1 alters, in the other order.
const SNAPSHOT_READ_ACROSS_TWO_TABLES: &str = "
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SELECT count(*) FROM ports;
SELECT pg_sleep({pause});
SELECT count(*) FROM networks;
";

/// A snapshot read of `networks` left open (a transaction idle in psql, a stuck reader).
const SNAPSHOT_READ_LEFT_OPEN: &str = "
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SELECT count(*) FROM networks;
SELECT pg_sleep(600) AS snapshot_read_left_open;
";

/// Ends the session of [`SNAPSHOT_READ_LEFT_OPEN`].
const END_THE_READ_LEFT_OPEN: &str = "
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE query LIKE '%snapshot_read_left_open%' AND pid <> pg_backend_pid();
";

/// Fails unless the registry records version 3 exactly once: it was brought up to date once.
const UPGRADED_ONCE: &str = "
DO $$ BEGIN
    IF (SELECT count(*) FROM schema_version WHERE version = 3) <> 1 THEN
        RAISE EXCEPTION 'schema version 3 recorded % times',
            (SELECT count(*) FROM schema_version WHERE version = 3);
    END IF;
END $$;
";

/// Makes database `name` a registry of schema version 1, or 2 with `two`.
fn make_old(server: &PgServer, name: &str, two: bool) {
    server.psql(name, POSTGRES_SCHEMA_1).unwrap();
    server.psql(name, ROWS_1).unwrap();
    if two {
        server.psql(name, TO_SCHEMA_2).unwrap();
    }
}

/// An open upgrading a version-1 registry while a server's snapshot read holds `ports` and
/// then asks for `networks` (which the upgrade alters first): neither is aborted as a
/// deadlock; the upgrade gives way and is done once the read ends.
pub fn an_upgrade_beside_a_snapshot_read_aborts_neither(server: &PgServer, name: &str) {
    make_old(server, name, false);
    let url = server.url(name);
    let read =
        SNAPSHOT_READ_ACROSS_TWO_TABLES.replace("{pause}", &READ_PAUSE.as_secs_f64().to_string());
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| server.psql(name, &read));
        // The read holds `ports` by now, and waits in `pg_sleep`.
        std::thread::sleep(READ_PAUSE / 4);
        let opened = store::open(&url);
        let read = reader.join().unwrap();
        if let Err(err) = &read {
            panic!("the snapshot read beside an upgrade failed: {err:#}");
        }
        match opened {
            Ok(store) => assert_eq!(store.network("old").unwrap().name, "old"),
            Err(err) => panic!("the upgrade beside a snapshot read failed: {err}"),
        }
    });
    server.psql(name, UPGRADED_ONCE).unwrap();
}

/// An open upgrading a version-2 registry while a snapshot read of it is left open: the
/// open neither hangs nor holds up every other session behind its table locks; it gives up
/// in a bounded time, says what to do, and changes nothing. Once the read ends, an open
/// upgrades it.
pub fn an_upgrade_a_read_left_open_holds_up_gives_up_and_says_to_retry(
    server: &PgServer,
    name: &str,
) {
    make_old(server, name, true);
    let url = server.url(name);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| server.psql(name, SNAPSHOT_READ_LEFT_OPEN));
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let opened = store::open(&url);
        let took = started.elapsed();
        server.psql(name, END_THE_READ_LEFT_OPEN).unwrap();
        assert!(reader.join().unwrap().is_err(), "the read was ended");
        match opened {
            Err(StoreError::Backend(msg)) => {
                assert!(
                    msg.contains("schema version 2")
                        && msg.contains("in use by another session")
                        && msg.contains("pg_stat_activity")
                        && msg.contains("nothing was changed")
                        && msg.contains("try again"),
                    "{msg}"
                );
            }
            Err(other) => panic!("expected a backend error, got {other:?}"),
            Ok(_) => panic!("upgraded beside a read that holds the table"),
        }
        assert!(took < Duration::from_secs(30), "the open took {took:?}");
    });
    let store = store::open(&url).unwrap();
    assert_eq!(store.network("old").unwrap().host, None);
    server.psql(name, UPGRADED_ONCE).unwrap();
}

/// Several servers opening one version-1 registry at once, in a database whose sessions
/// default to REPEATABLE READ (`default_transaction_isolation`, set by its administrator):
/// every open succeeds and the schema is brought up to date once, the later openers finding
/// it done under the schema lock.
pub fn concurrent_opens_of_an_old_registry_upgrade_it_once(server: &PgServer, name: &str) {
    default_to_repeatable_read(server, name);
    make_old(server, name, false);
    let url = server.url(name);
    let opened: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..OPENERS)
            .map(|_| scope.spawn(|| store::open(&url).map(drop).map_err(|err| err.to_string())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for outcome in &opened {
        assert!(outcome.is_ok(), "{opened:?}");
    }
    server.psql(name, UPGRADED_ONCE).unwrap();
}
