//! Which registry a new connection reached: a database dropped and made again under the same
//! name (a lab reset while servers run) is another registry, whose change log does not
//! continue the one a server followed. Its reader must start over from a snapshot
//! (`Backend::follow_replacement`, `store/sql.rs`).
//!
//! The identity is the cluster's system identifier and the database's OID, read on every new
//! connection (`pool.rs`: the pool's and the `LISTEN` one). It needs no schema change, and a
//! role that may only read the registry can read it. Anything that replaces the database
//! ends every connection to it first (`DROP DATABASE` waits for them, or ends them `WITH
//! (FORCE)`), so the replacement always meets a new connection. A cluster made again with
//! `initdb` may give a database made the same way the same OID, which its system identifier
//! tells apart; a standby promoted after a failover keeps both (and the change log). A random
//! id kept in the schema would also tell a dump of another registry restored into the same
//! database, but such a restore keeps the connections, so a check on connect would not see
//! it; that would take a read on every poll, and a schema version to add the id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use ::postgres::Client;

/// The database's OID, and whether this role may read the cluster's control data.
const DATABASE_READ: &str = "SELECT oid::bigint, \
     pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') \
     FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()";
/// The cluster's system identifier, chosen at random by `initdb`.
const CLUSTER_READ: &str = "SELECT system_identifier FROM pg_catalog.pg_control_system()";

/// One registry database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryId {
    /// The cluster's system identifier; `None` where the role may not read it (a hosted
    /// PostgreSQL may revoke it): the OID alone then.
    cluster: Option<i64>,
    database: i64,
}

/// The identity of the database `client` is connected to.
pub fn registry_id(client: &mut Client) -> Result<RegistryId, ::postgres::Error> {
    let row = client.query_one(DATABASE_READ, &[])?;
    let database: i64 = row.try_get(0)?;
    let may_read_cluster: bool = row.try_get(1)?;
    let cluster = if may_read_cluster {
        Some(client.query_one(CLUSTER_READ, &[])?.try_get(0)?)
    } else {
        None
    };
    Ok(RegistryId { cluster, database })
}

/// The registry this backend's connections reach, and whether it changed since its change
/// log's reader last asked.
#[derive(Debug, Default)]
pub struct Identity {
    /// The identity the newest connection saw (the first one's, until it changes).
    seen: Mutex<Option<RegistryId>>,
    /// Set when a connection saw another registry, until the change log's reader learns it.
    replaced: AtomicBool,
}

impl Identity {
    /// Records what a new connection to `target` found.
    pub fn saw(&self, found: RegistryId, target: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match *seen {
            None => *seen = Some(found),
            Some(known) if known == found => {}
            Some(_) => {
                *seen = Some(found);
                self.replaced.store(true, Ordering::SeqCst);
                tracing::warn!(
                    registry = %target,
                    "the registry database was replaced (dropped and made again): now serving \
                     the new one"
                );
            }
        }
    }

    /// True while a connection's sighting of another registry is not yet taken.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::SeqCst)
    }

    /// True once after a connection saw another registry than the one before.
    pub fn take_replaced(&self) -> bool {
        self.replaced.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cluster: Option<i64>, database: i64) -> RegistryId {
        RegistryId { cluster, database }
    }

    #[test]
    fn another_database_is_said_once_and_the_first_never() {
        let identity = Identity::default();
        identity.saw(id(Some(7), 16_384), "t");
        identity.saw(id(Some(7), 16_384), "t");
        assert!(!identity.take_replaced());
        // Made again: another OID.
        identity.saw(id(Some(7), 16_390), "t");
        assert!(identity.is_replaced());
        assert!(identity.is_replaced(), "asking does not take it");
        assert!(identity.take_replaced());
        assert!(!identity.is_replaced());
        assert!(!identity.take_replaced());
        identity.saw(id(Some(7), 16_390), "t");
        assert!(!identity.take_replaced());
        // A cluster made again with `initdb`: the same OID, another system identifier.
        identity.saw(id(Some(8), 16_390), "t");
        assert!(identity.take_replaced());
    }
}
