//! Bringing an older PostgreSQL registry up to date while other sessions use it.

use metaboot_harness::postgres::PgServer;
use metaboot_server::store;

use crate::dual_stack::{POSTGRES_SCHEMA_1, ROWS_1};
use crate::host::TO_SCHEMA_2;
use crate::servers::OPENERS;

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

/// Several servers opening one version-1 registry at once, in a database whose sessions
/// default to REPEATABLE READ (`default_transaction_isolation`, set by its administrator):
/// every open succeeds and the schema is brought up to date once, the later openers finding
/// it done under the schema lock.
pub fn concurrent_opens_of_an_old_registry_upgrade_it_once(server: &PgServer, name: &str) {
    server
        .psql(
            "postgres",
            &format!("ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"),
        )
        .unwrap();
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
