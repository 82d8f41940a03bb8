//! One PostgreSQL connection or transaction as the store sees it: prepared-statement cache,
//! error mapping (unique violations, lost connections) and row decoding.

use std::collections::HashMap;
use std::str::FromStr;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{GenericClient, Row, Statement};

use super::pool::error_text;
use crate::store::{Instance, Network, Port, Router, StoreError, StoreResult};

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

/// A unique constraint the rules should have caught first: still a clear refusal.
fn conflict(constraint: Option<&str>, text: &str) -> StoreError {
    let what = match constraint {
        Some("ports_network_ip") => {
            "that IP is already used on that network: pick another address or omit the IP"
        }
        Some("ports_mac") => {
            "that MAC is already used by another port: pick another MAC or omit it"
        }
        Some("instances_uuid") => {
            "an instance with that uuid already exists: omit --uuid to get a new one"
        }
        _ => "the change conflicts with an existing record",
    };
    StoreError::Conflict(format!("{what} ({text})"))
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("bad {what} in the registry: {err}"))
}

fn parse<T: FromStr>(what: &str, text: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|err| corrupt(what, err))
}

fn parse_opt<T: FromStr>(what: &str, text: Option<String>) -> StoreResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    text.map(|text| parse(what, &text)).transpose()
}

fn to_u32(what: &str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|err| corrupt(what, err))
}

pub fn to_json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| corrupt(what, err))
}

impl<C: GenericClient> PgSql<'_, C> {
    /// Takes the transaction-scoped advisory lock `key` (released at commit or rollback).
    pub fn lock_writes(&mut self, key: i64) -> StoreResult<()> {
        self.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .map(drop)
    }

    fn fail(&mut self, err: &::postgres::Error) -> StoreError {
        if let Some(db) = err.as_db_error()
            && *db.code() == SqlState::UNIQUE_VIOLATION
        {
            return conflict(db.constraint(), db.message());
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

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let statement = self.prepared(sql)?;
        match self.client.query(&statement, params) {
            Ok(rows) => Ok(rows),
            Err(err) => Err(self.fail(&err)),
        }
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let statement = self.prepared(sql)?;
        match self.client.execute(&statement, params) {
            Ok(count) => Ok(count),
            Err(err) => Err(self.fail(&err)),
        }
    }

    pub fn get<'r, T: ::postgres::types::FromSql<'r>>(
        &mut self,
        row: &'r Row,
        index: usize,
    ) -> StoreResult<T> {
        match row.try_get(index) {
            Ok(value) => Ok(value),
            Err(err) => Err(self.fail(&err)),
        }
    }

    pub fn networks_where(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Network>> {
        let rows = self.query(sql, params)?;
        rows.iter().map(|row| self.network_row(row)).collect()
    }

    fn network_row(&mut self, row: &Row) -> StoreResult<Network> {
        let cidr: String = self.get(row, 3)?;
        let mtu: Option<i64> = self.get(row, 7)?;
        Ok(Network {
            id: self.get(row, 0)?,
            name: self.get(row, 1)?,
            project: self.get(row, 2)?,
            cidr: parse("network CIDR", &cidr)?,
            gateway: parse_opt("gateway", self.get(row, 4)?)?,
            dhcp_ip: parse_opt("DHCP address", self.get(row, 5)?)?,
            isolated: self.get(row, 6)?,
            mtu: mtu.map(|mtu| to_u32("MTU", mtu)).transpose()?,
            created: self.get(row, 8)?,
        })
    }

    pub fn routers_where(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Router>> {
        let rows = self.query(sql, params)?;
        rows.iter()
            .map(|row| {
                Ok(Router {
                    id: self.get(row, 0)?,
                    name: self.get(row, 1)?,
                    project: self.get(row, 2)?,
                    created: self.get(row, 3)?,
                    networks: self.get(row, 4)?,
                })
            })
            .collect()
    }

    pub fn instances_where(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Instance>> {
        let rows = self.query(sql, params)?;
        rows.iter()
            .map(|row| {
                let launch_index: i64 = self.get(row, 6)?;
                let key_pairs: String = self.get(row, 7)?;
                let meta: String = self.get(row, 9)?;
                Ok(Instance {
                    ec2_id: self.get(row, 0)?,
                    uuid: self.get(row, 1)?,
                    project: self.get(row, 2)?,
                    name: self.get(row, 3)?,
                    hostname: self.get(row, 4)?,
                    availability_zone: self.get(row, 5)?,
                    launch_index: to_u32("launch index", launch_index)?,
                    key_pairs: from_json("key pairs", &key_pairs)?,
                    user_data: self.get(row, 8)?,
                    meta: from_json("meta", &meta)?,
                    admin_pass: self.get(row, 10)?,
                    password: self.get(row, 11)?,
                    created: self.get(row, 12)?,
                })
            })
            .collect()
    }

    pub fn ports_where(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Port>> {
        let rows = self.query(sql, params)?;
        rows.iter()
            .map(|row| {
                let ip: String = self.get(row, 3)?;
                Ok(Port {
                    id: self.get(row, 0)?,
                    network_id: self.get(row, 1)?,
                    mac: self.get(row, 2)?,
                    ip: parse("port IP", &ip)?,
                    instance_id: self.get(row, 4)?,
                    project: self.get(row, 5)?,
                    created: self.get(row, 6)?,
                })
            })
            .collect()
    }
}
