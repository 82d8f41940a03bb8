//! The SQLite driver: runs the shared statements on one connection (inside a transaction),
//! binds [`Param`]s, reads columns, and maps SQLite's errors to clear ones.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Row, ToSql};

use super::conn::map;
use crate::store::driver::Driver;
use crate::store::error::{StoreError, StoreResult};
use crate::store::model::Port;
use crate::store::rows::{Columns, FromRow, Param, Value};
use crate::store::statements::{Statement, port_select};

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Text(text) | Param::TextOrNull(Some(text)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
            }
            Param::Int(value) | Param::IntOrNull(Some(value)) => {
                ToSqlOutput::Borrowed(ValueRef::Integer(value))
            }
            Param::Flag(flag) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(flag))),
            Param::BytesOrNull(Some(bytes)) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            Param::TextOrNull(None) | Param::IntOrNull(None) | Param::BytesOrNull(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

/// One SQLite row as the shared decoding reads it.
struct SqliteRow<'r, 's>(&'r Row<'s>);

impl Columns for SqliteRow<'_, '_> {
    fn value(&self, index: usize) -> StoreResult<Value> {
        Ok(match map(self.0.get_ref(index))? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(value) => Value::Int(value),
            ValueRef::Text(text) => Value::Text(
                String::from_utf8(text.to_vec())
                    .map_err(|err| StoreError::Backend(format!("column {index}: {err}")))?,
            ),
            ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
            ValueRef::Real(_) => {
                return Err(StoreError::Backend(format!(
                    "column {index} of a registry row holds a real number"
                )));
            }
        })
    }
}

/// Statements on one connection (inside a transaction).
pub(super) struct SqliteSql<'a> {
    pub(super) conn: &'a Connection,
}

impl SqliteSql<'_> {
    fn rows<T: FromRow>(&self, sql: &str, params: &[&dyn ToSql]) -> StoreResult<Vec<T>> {
        let mut statement = map(self.conn.prepare_cached(sql))?;
        let mut rows = map(statement.query(params))?;
        let mut found = Vec::new();
        while let Some(next) = map(rows.next())? {
            found.push(T::from_row(&SqliteRow(next))?);
        }
        Ok(found)
    }
}

fn bound<'p>(params: &'p [Param<'_>]) -> Vec<&'p dyn ToSql> {
    params.iter().map(|param| param as &dyn ToSql).collect()
}

impl Driver for SqliteSql<'_> {
    fn execute(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<u64> {
        let mut prepared = map(self.conn.prepare_cached(sql.sqlite))?;
        let changed = map(prepared.execute(bound(params).as_slice()))?;
        Ok(changed as u64)
    }

    fn query<T: FromRow>(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<Vec<T>> {
        self.rows(sql.sqlite, &bound(params))
    }

    fn query_each(
        &mut self,
        sql: Statement,
        params: &[Param<'_>],
        visit: &mut dyn FnMut(&dyn Columns) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let mut statement = map(self.conn.prepare_cached(sql.sqlite))?;
        let mut rows = map(statement.query(bound(params).as_slice()))?;
        while let Some(next) = map(rows.next())? {
            visit(&SqliteRow(next))?;
        }
        Ok(())
    }

    fn ports_on_networks(&mut self, ip: &str, network_ids: &[String]) -> StoreResult<Vec<Port>> {
        let mut params: Vec<&dyn ToSql> = vec![&ip];
        params.extend(network_ids.iter().map(|id| id as &dyn ToSql));
        self.rows(&ports_on_networks_sql(network_ids.len()), &params)
    }
}

/// Ports by IP on some networks, on either subnet (unique indexes `ports_network_ip` and
/// `ports_network_second_ip`).
pub(super) fn ports_on_networks_sql(networks: usize) -> String {
    let placeholders: Vec<String> = (0..networks).map(|i| format!("?{}", i + 2)).collect();
    format!(
        "{} WHERE (ip = ?1 OR second_ip = ?1) AND network_id IN ({}) ORDER BY seq",
        port_select!(),
        placeholders.join(", ")
    )
}
