//! The PostgreSQL driver: runs the shared statements (prepared once per connection), binds
//! [`Param`]s and reads columns.

use ::postgres::types::{FromSql, ToSql, Type};
use ::postgres::{GenericClient, Row};

use super::conn::PgSql;
use super::pool::error_text;
use crate::store::driver::Driver;
use crate::store::error::{StoreError, StoreResult};
use crate::store::feed::CHANGE_CHANNEL;
use crate::store::model::Port;
use crate::store::rows::{Columns, FromRow, Param, Value};
use crate::store::statements::{Statement, port_select};

/// Ports by IP (on either subnet) on some networks, the networks as one array parameter.
const PORTS_ON_NETWORKS: &str = concat!(
    port_select!(),
    " WHERE (ip = $1 OR second_ip = $1) AND network_id = ANY($2) ORDER BY seq"
);

/// A parameter as the `postgres` crate binds it: the value inside, which checks its own type.
fn bound<'p>(param: &'p Param<'_>) -> &'p (dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::TextOrNull(text) => text,
        Param::Int(value) => value,
        Param::IntOrNull(value) => value,
        Param::Flag(flag) => flag,
        Param::BytesOrNull(bytes) => bytes,
    }
}

/// One PostgreSQL row as the shared decoding reads it.
struct PgRow<'r> {
    row: &'r Row,
    /// The server, for messages.
    target: &'r str,
}

impl<'r> PgRow<'r> {
    fn get<T: FromSql<'r>>(&self, index: usize) -> StoreResult<Option<T>> {
        self.row
            .try_get(index)
            .map_err(|err| StoreError::Backend(format!("{}: {}", self.target, error_text(&err))))
    }
}

impl Columns for PgRow<'_> {
    fn value(&self, index: usize) -> StoreResult<Value> {
        let Some(column) = self.row.columns().get(index) else {
            return Err(StoreError::Backend(format!(
                "{}: a registry row has no column {index}",
                self.target
            )));
        };
        let ty = column.type_();
        let value = if *ty == Type::TEXT || *ty == Type::VARCHAR {
            self.get::<String>(index)?.map(Value::Text)
        } else if *ty == Type::INT8 {
            self.get::<i64>(index)?.map(Value::Int)
        } else if *ty == Type::BOOL {
            self.get::<bool>(index)?.map(Value::Flag)
        } else if *ty == Type::BYTEA {
            self.get::<Vec<u8>>(index)?.map(Value::Bytes)
        } else {
            return Err(StoreError::Backend(format!(
                "{}: column {index} of a registry row has the unexpected type {ty}",
                self.target
            )));
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

impl<C: GenericClient> PgSql<'_, C> {
    fn decode<T: FromRow>(&self, found: &[Row]) -> StoreResult<Vec<T>> {
        found
            .iter()
            .map(|row| {
                T::from_row(&PgRow {
                    row,
                    target: self.target,
                })
            })
            .collect()
    }
}

impl<C: GenericClient> Driver for PgSql<'_, C> {
    fn execute(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<u64> {
        let params: Vec<_> = params.iter().map(bound).collect();
        self.execute_text(sql.postgres, &params)
    }

    fn query<T: FromRow>(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<Vec<T>> {
        let params: Vec<_> = params.iter().map(bound).collect();
        let found = self.query_text(sql.postgres, &params)?;
        self.decode(&found)
    }

    fn query_each(
        &mut self,
        sql: Statement,
        params: &[Param<'_>],
        visit: &mut dyn FnMut(&dyn Columns) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let params: Vec<_> = params.iter().map(bound).collect();
        let target = self.target;
        self.each_row(sql.postgres, &params, &mut |row| {
            visit(&PgRow { row, target })
        })
    }

    fn announce(&mut self, seq: i64) -> StoreResult<()> {
        self.execute_text(
            "SELECT pg_notify($1, $2)",
            &[&CHANGE_CHANNEL, &seq.to_string()],
        )
        .map(drop)
    }

    fn ports_on_networks(&mut self, ip: &str, network_ids: &[String]) -> StoreResult<Vec<Port>> {
        let found = self.query_text(PORTS_ON_NETWORKS, &[&ip, &network_ids])?;
        self.decode(&found)
    }
}
