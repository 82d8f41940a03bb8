//! Which registry a new connection reached: a database dropped and made again under the same
//! name (a lab reset while servers run) is another registry, whose change log does not
//! continue the one a server followed; so is a standby promoted after a failover, whose
//! history may lack the last commits of the primary it replaces. Its reader must start over
//! from a snapshot (`Backend::follow_replacement`, `store/sql.rs`).
//!
//! The identity is the cluster's system identifier, the database's OID and the timeline the
//! server writes on, read on every new connection (`pool.rs`: the pool's and the `LISTEN`
//! one) in at most two statements. It needs no schema change, and a role that may only read
//! the registry can read it. Anything that replaces the database ends every connection to it
//! first (`DROP DATABASE` waits for them, or ends them `WITH (FORCE)`), so the replacement
//! always meets a new connection. A cluster made again with `initdb` may give a database made
//! the same way the same OID, which its system identifier tells apart.
//!
//! A standby made from the primary (`pg_basebackup`) keeps both, and the change log: with
//! asynchronous replication it may lack the primary's last commits when it is promoted, its
//! change-log sequence resuming past them (sequences are logged ahead), so a follower that
//! applied them would see no gap and keep records the new primary never had. Promotion starts
//! a new timeline, which the WAL position's file name tells at once (the control file's
//! checkpoint tells it only after the next checkpoint); a server restarted, or recovered from
//! a crash, keeps its timeline. A hot standby, still in recovery, has no WAL position to
//! write at: a connection to one reads no timeline, which matches any (what a follower read
//! from a standby, its promotion keeps). A promotion of a synchronous standby, which lost
//! nothing, reloads too: one whole read, never a wrong model.
//!
//! A random id kept in the schema would also tell a dump of another registry restored into
//! the same database, but such a restore keeps the connections, so a check on connect would
//! not see it; that would take a read on every poll, and a schema version to add the id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use ::postgres::Client;

/// The database's OID, whether this role may read the cluster's control data, and whether it
/// may read the timeline the server writes on (a primary's; a standby in recovery has none,
/// nor has a server older than PostgreSQL 10, without `pg_current_wal_lsn`).
const DATABASE_READ: &str = "SELECT oid::bigint, \
     pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE'), \
     COALESCE(pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(\
     'pg_catalog.pg_current_wal_lsn()'), 'EXECUTE') \
     AND pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(\
     'pg_catalog.pg_walfile_name(pg_catalog.pg_lsn)'), 'EXECUTE'), false) \
     AND NOT pg_catalog.pg_is_in_recovery() \
     FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()";
/// The cluster's system identifier, chosen at random by `initdb`.
const CLUSTER: &str = "(SELECT system_identifier FROM pg_catalog.pg_control_system())";
/// The timeline the server writes on: the first 8 hex digits of the current WAL file's name.
const TIMELINE: &str = "('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(\
     pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::bigint";
/// What a column stands for when the role may not read it.
const UNKNOWN: &str = "NULL::bigint";

/// The statement reading the system identifier and the timeline, each only when it may be
/// read (else `NULL`); none when neither may.
fn control_read(cluster: bool, timeline: bool) -> Option<String> {
    let column = |readable: bool, expression: &'static str| {
        if readable { expression } else { UNKNOWN }
    };
    (cluster || timeline).then(|| {
        format!(
            "SELECT {}, {}",
            column(cluster, CLUSTER),
            column(timeline, TIMELINE)
        )
    })
}

/// One registry database, on one history of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryId {
    /// The cluster's system identifier; `None` where the role may not read it (a hosted
    /// PostgreSQL may revoke it): the OID alone then.
    cluster: Option<i64>,
    database: i64,
    /// The timeline the server writes on; `None` on a hot standby, or where the role may not
    /// read it.
    timeline: Option<i64>,
}

/// How a new connection's registry stands to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sighting {
    /// The same registry.
    Same,
    /// Another database (dropped and made again, or another cluster).
    MadeAgain,
    /// The same database on another timeline: a standby promoted, or a point-in-time
    /// recovery.
    Promoted,
}

impl RegistryId {
    fn compared_to(self, known: RegistryId) -> Sighting {
        if (self.cluster, self.database) != (known.cluster, known.database) {
            return Sighting::MadeAgain;
        }
        match (self.timeline, known.timeline) {
            (Some(found), Some(before)) if found != before => Sighting::Promoted,
            _ => Sighting::Same,
        }
    }

    /// This sighting, keeping the timeline known before when this one has none.
    fn or_timeline_of(self, known: RegistryId) -> RegistryId {
        RegistryId {
            timeline: self.timeline.or(known.timeline),
            ..self
        }
    }
}

/// The identity of the database `client` is connected to.
pub fn registry_id(client: &mut Client) -> Result<RegistryId, ::postgres::Error> {
    let row = client.query_one(DATABASE_READ, &[])?;
    let database: i64 = row.try_get(0)?;
    let may_read_cluster: bool = row.try_get(1)?;
    let may_read_timeline: bool = row.try_get(2)?;
    let read = |client: &mut Client, timeline: bool| match control_read(may_read_cluster, timeline)
    {
        Some(statement) => {
            let row = client.query_one(&statement, &[])?;
            Ok::<_, ::postgres::Error>((row.try_get(0)?, row.try_get(1)?))
        }
        None => Ok((None, None)),
    };
    // A server whose WAL functions fail though the role may run them (a managed or forked
    // PostgreSQL) reads no timeline, as a hot standby: the connection stays usable (the
    // statement ran in no transaction), and only a promotion goes unseen.
    let (cluster, timeline) = match read(client, may_read_timeline) {
        Err(err) if may_read_timeline => {
            tracing::debug!(error = %err, "the registry's timeline cannot be read");
            read(client, false)?
        }
        other => other?,
    };
    Ok(RegistryId {
        cluster,
        database,
        timeline,
    })
}

/// The registry this backend's connections reach, and whether it changed since its change
/// log's reader last asked.
#[derive(Debug, Default)]
pub struct Identity {
    /// The identity the newest connection saw (the first one's, until it changes), with the
    /// last timeline any connection read.
    seen: Mutex<Option<RegistryId>>,
    /// Set when a connection saw another registry, until the change log's reader learns it.
    replaced: AtomicBool,
}

impl Identity {
    /// Records what a new connection to `target` found.
    pub fn saw(&self, found: RegistryId, target: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(known) = *seen else {
            *seen = Some(found);
            return;
        };
        match found.compared_to(known) {
            Sighting::Same => *seen = Some(found.or_timeline_of(known)),
            Sighting::MadeAgain => {
                *seen = Some(found);
                self.replaced.store(true, Ordering::SeqCst);
                tracing::warn!(
                    registry = %target,
                    "the registry database was replaced (dropped and made again): now serving \
                     the new one"
                );
            }
            Sighting::Promoted => {
                *seen = Some(found);
                self.replaced.store(true, Ordering::SeqCst);
                tracing::warn!(
                    registry = %target,
                    timeline = found.timeline,
                    before = known.timeline,
                    "the registry's PostgreSQL is on another timeline (a standby promoted, or \
                     a point-in-time recovery): it may lack the last changes this server \
                     followed, so the registry is read anew"
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
        on_timeline(cluster, database, Some(1))
    }

    fn on_timeline(cluster: Option<i64>, database: i64, timeline: Option<i64>) -> RegistryId {
        RegistryId {
            cluster,
            database,
            timeline,
        }
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

    #[test]
    fn a_standby_promoted_is_another_registry_and_a_restart_is_not() {
        let identity = Identity::default();
        identity.saw(on_timeline(Some(7), 16_384, Some(1)), "t");
        // Restarted, or reconnected: the same timeline.
        identity.saw(on_timeline(Some(7), 16_384, Some(1)), "t");
        assert!(!identity.take_replaced());
        // A hot standby (or a role that may not read the timeline) matches any.
        identity.saw(on_timeline(Some(7), 16_384, None), "t");
        assert!(!identity.take_replaced());
        // The standby promoted: the same cluster and OID, the next timeline, compared with
        // the one the primary's connections read.
        identity.saw(on_timeline(Some(7), 16_384, Some(2)), "t");
        assert!(identity.take_replaced());
        identity.saw(on_timeline(Some(7), 16_384, Some(2)), "t");
        assert!(!identity.take_replaced());
        // A follower that started on a hot standby keeps what it read when it is promoted.
        let from_standby = Identity::default();
        from_standby.saw(on_timeline(Some(7), 16_384, None), "t");
        from_standby.saw(on_timeline(Some(7), 16_384, Some(3)), "t");
        assert!(!from_standby.take_replaced());
        from_standby.saw(on_timeline(Some(7), 16_384, Some(4)), "t");
        assert!(from_standby.take_replaced());
    }

    #[test]
    fn the_control_data_is_read_in_one_statement_and_only_what_the_role_may() {
        assert_eq!(control_read(false, false), None);
        let both = control_read(true, true).unwrap();
        assert_eq!(both, format!("SELECT {CLUSTER}, {TIMELINE}"));
        let cluster = control_read(true, false).unwrap();
        assert!(cluster.contains("pg_control_system") && !cluster.contains("pg_walfile_name"));
        assert!(cluster.ends_with(UNKNOWN), "{cluster}");
        let timeline = control_read(false, true).unwrap();
        assert!(timeline.contains("pg_walfile_name") && !timeline.contains("pg_control"));
        // The functions read are those whose privilege is checked first.
        assert!(DATABASE_READ.contains("pg_control_system()"));
        assert!(DATABASE_READ.contains("pg_current_wal_lsn()"));
        assert!(DATABASE_READ.contains("pg_walfile_name(pg_catalog.pg_lsn)"));
        assert!(DATABASE_READ.contains("NOT pg_catalog.pg_is_in_recovery()"));
    }
}
