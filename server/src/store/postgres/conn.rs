//! One PostgreSQL connection or transaction as the store sees it: prepared-statement cache
//! and error mapping (constraint violations, lost connections).

use std::collections::HashMap;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{GenericClient, Row, Statement};

use super::grants::read_write_grants_to_fill;
use super::locks;
use super::pool::error_text;
use crate::store::constraint::Constraint;
use crate::store::error::{StoreError, StoreResult};

/// Statements on one connection or transaction. `lost` records that the connection broke,
/// so the backend can drop it and retry on a fresh one.
pub struct PgSql<'a, C: GenericClient> {
    pub client: &'a mut C,
    pub statements: &'a mut HashMap<String, Statement>,
    pub target: &'a str,
    pub lost: bool,
}

/// True when `err` means the connection is gone (server restarted or unreachable), as
/// opposed to a statement that failed on a live connection.
pub fn is_connection_error(err: &::postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        None => std::error::Error::source(err)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// The constraint an error of class 23 (integrity constraint violation: unique, foreign key,
/// not null, check) hit, as SQLite's `SQLITE_CONSTRAINT` covers them all; `None` for any
/// other error. A constraint the rules should have caught first (a race with another
/// process): still a clear refusal.
fn constraint(code: &SqlState, name: Option<&str>) -> Option<Constraint> {
    if !code.code().starts_with("23") {
        return None;
    }
    Some(match name {
        Some("ports_network_ip" | "ports_network_second_ip") => Constraint::PortIp,
        Some("ports_mac") => Constraint::PortMac,
        Some("instances_uuid") => Constraint::InstanceUuid,
        _ if *code == SqlState::FOREIGN_KEY_VIOLATION => Constraint::ForeignKey,
        _ => Constraint::Other,
    })
}

/// PostgreSQL refused the role a privilege on the registry's tables (a role granted SELECT
/// only, writing): a configuration refusal, as the same refusal at open is (`upgrade.rs`),
/// with the grants to run. Inside the failed transaction the catalog cannot be read to name
/// the role and the schema: the user fills them in.
fn not_permitted(target: &str, err: &::postgres::Error) -> StoreError {
    StoreError::NotPermitted(format!(
        "{target}: {}; this role may not read and write the registry's tables: have the \
         database's owner run `{}` in that database (ROLE: the role --db connects as; public: \
         the registry's schema), then run this again",
        error_text(err),
        read_write_grants_to_fill()
    ))
}

impl<C: GenericClient> PgSql<'_, C> {
    /// Takes the transaction-scoped advisory lock `key` (released at commit or rollback),
    /// waiting for another writer at most [`locks::WRITE_LOCK_WAIT`].
    pub fn lock_writes(&mut self, key: i64) -> StoreResult<()> {
        locks::take(self.client, &[key]).map_err(|err| {
            locks::held_too_long(&err, self.target).unwrap_or_else(|| self.fail(&err))
        })
    }

    pub fn fail(&mut self, err: &::postgres::Error) -> StoreError {
        if let Some(db) = err.as_db_error()
            && let Some(constraint) = constraint(db.code(), db.constraint())
        {
            return constraint.refusal(db.message());
        }
        if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            return not_permitted(self.target, err);
        }
        if is_connection_error(err) {
            self.lost = true;
            return StoreError::Backend(format!(
                "lost the connection to {}: {}",
                self.target,
                error_text(err)
            ));
        }
        StoreError::Backend(format!("{}: {}", self.target, error_text(err)))
    }

    fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        match self.client.prepare(sql) {
            Ok(statement) => {
                self.statements.insert(sql.to_owned(), statement.clone());
                Ok(statement)
            }
            Err(err) => Err(self.fail(&err)),
        }
    }

    /// Runs a query (prepared once per connection).
    pub fn query_text(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let statement = self.prepared(sql)?;
        match self.client.query(&statement, params) {
            Ok(rows) => Ok(rows),
            Err(err) => Err(self.fail(&err)),
        }
    }

    /// Runs a query and hands each row to `visit` as it arrives from the server.
    pub fn each_row(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        visit: &mut dyn FnMut(&Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        use ::postgres::fallible_iterator::FallibleIterator as _;
        let statement = self.prepared(sql)?;
        let streamed: Result<StoreResult<()>, ::postgres::Error> = (|| {
            let mut rows = self.client.query_raw(&statement, params.iter().copied())?;
            while let Some(row) = rows.next()? {
                if let Err(err) = visit(&row) {
                    return Ok(Err(err));
                }
            }
            Ok(Ok(()))
        })();
        match streamed {
            Ok(visited) => visited,
            Err(err) => Err(self.fail(&err)),
        }
    }

    /// Runs a statement that returns no rows (prepared once per connection).
    pub fn execute_text(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let statement = self.prepared(sql)?;
        match self.client.execute(&statement, params) {
            Ok(count) => Ok(count),
            Err(err) => Err(self.fail(&err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integrity_violation_is_a_refusal_as_on_sqlite() {
        let cases = [
            (
                SqlState::UNIQUE_VIOLATION,
                Some("ports_mac"),
                Constraint::PortMac,
            ),
            (
                SqlState::UNIQUE_VIOLATION,
                Some("ports_network_ip"),
                Constraint::PortIp,
            ),
            (
                SqlState::UNIQUE_VIOLATION,
                Some("ports_network_second_ip"),
                Constraint::PortIp,
            ),
            (
                SqlState::UNIQUE_VIOLATION,
                Some("instances_uuid"),
                Constraint::InstanceUuid,
            ),
            (
                SqlState::UNIQUE_VIOLATION,
                Some("networks_id_key"),
                Constraint::Other,
            ),
            (
                SqlState::FOREIGN_KEY_VIOLATION,
                Some("ports_network_id_fkey"),
                Constraint::ForeignKey,
            ),
            (SqlState::NOT_NULL_VIOLATION, None, Constraint::Other),
            (SqlState::CHECK_VIOLATION, Some("c"), Constraint::Other),
        ];
        for (code, name, expected) in cases {
            assert_eq!(constraint(&code, name), Some(expected), "{code:?} {name:?}");
            assert!(expected.refusal("detail").is_user_error());
        }
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::ADMIN_SHUTDOWN,
        ] {
            assert_eq!(constraint(&code, None), None, "{code:?}");
        }
    }
}
