//! A database whose administrator made REPEATABLE READ its sessions' default
//! (`default_transaction_isolation`): the registry's writes behave as under PostgreSQL's own
//! default, READ COMMITTED, on which they rely (`server/src/store/postgres/mod.rs`).

use metaboot_harness::postgres::PgServer;
use metaboot_server::store;

use crate::addresses::allocation_under_concurrency;

/// Makes REPEATABLE READ the default of every new session of database `name`.
pub fn default_to_repeatable_read(server: &PgServer, name: &str) {
    server
        .psql(
            "postgres",
            &format!("ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"),
        )
        .unwrap();
}

/// Writes racing for a network's addresses, each waiting for the one before under the write
/// lock, each get the lowest free address once the one before committed, as under READ
/// COMMITTED: none fails for a snapshot taken before its wait.
pub fn racing_writes_under_a_repeatable_read_default_allocate_densely(
    server: &PgServer,
    name: &str,
) {
    default_to_repeatable_read(server, name);
    let store = store::open(&server.url(name)).unwrap();
    allocation_under_concurrency(&*store);
}
