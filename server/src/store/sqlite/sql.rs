//! SQLite statements: one `Sql` method per statement, and row decoding.

use std::net::IpAddr;
use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, ToSql};

use super::BUSY_TIMEOUT;
use crate::store::sql::Sql;
use crate::store::{Change, ChangeKind, Instance, Network, NewInstance, Port, Router};
use crate::store::{StoreError, StoreResult};

const NETWORK_COLUMNS: &str =
    "SELECT id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, created FROM networks";
const ROUTER_COLUMNS: &str = "SELECT id, name, project, created FROM routers";
const INSTANCE_COLUMNS: &str = "SELECT ec2_id, uuid, project, name, hostname, availability_zone, \
     launch_index, key_pairs, user_data, meta, admin_pass, password, created FROM instances";
const PORT_COLUMNS: &str =
    "SELECT id, network_id, mac, ip, instance_id, project, created FROM ports";

/// The API's hot path: one instance by uuid (unique index).
pub(super) const INSTANCE_BY_UUID: &str = "SELECT ec2_id, uuid, project, name, hostname, \
     availability_zone, launch_index, key_pairs, user_data, meta, admin_pass, password, created \
     FROM instances WHERE uuid = ?1";
/// The agent's hot path without networks: ports by IP (index `ports_ip`).
pub(super) const PORTS_BY_IP: &str = "SELECT id, network_id, mac, ip, instance_id, project, created FROM ports WHERE ip = ?1 \
     ORDER BY seq";

/// The agent's hot path on the router path: ports by IP on a router's networks (indexes
/// `ports_ip` and the `router_networks` key).
pub(super) const PORTS_BEHIND_ROUTER: &str = "SELECT p.id, p.network_id, p.mac, p.ip, \
     p.instance_id, p.project, p.created FROM ports p \
     JOIN router_networks r ON r.network_id = p.network_id \
     WHERE p.ip = ?1 AND r.router_id = ?2 ORDER BY p.seq";

fn backend_error(err: &rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Backend(format!(
            "the registry is locked by another writer for more than {} s: try again ({err})",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(ErrorCode::ConstraintViolation) => conflict(&err.to_string()),
        _ => StoreError::Backend(err.to_string()),
    }
}

/// A constraint the rules should have caught first (a race with another process): still a
/// clear refusal rather than a backend failure.
fn conflict(message: &str) -> StoreError {
    let what = if message.contains("ports.network_id, ports.ip") {
        "that IP is already used on that network: pick another address or omit the IP"
    } else if message.contains("ports.mac") {
        "that MAC is already used by another port: pick another MAC or omit it"
    } else if message.contains("instances.uuid") {
        "an instance with that uuid already exists: omit --uuid to get a new one"
    } else {
        "the change conflicts with an existing record"
    };
    StoreError::Conflict(format!("{what} ({message})"))
}

pub(super) fn map<T>(result: rusqlite::Result<T>) -> StoreResult<T> {
    result.map_err(|err| backend_error(&err))
}

/// Column `index` parsed from text (addresses, CIDRs).
fn parsed<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(err)))
}

fn parsed_opt<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match row.get::<_, Option<String>>(index)? {
        None => Ok(None),
        Some(_) => parsed(row, index).map(Some),
    }
}

/// Column `index` decoded from JSON text (key pairs, meta).
fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(err)))
}

fn network_row(row: &Row<'_>) -> rusqlite::Result<Network> {
    Ok(Network {
        id: row.get(0)?,
        name: row.get(1)?,
        project: row.get(2)?,
        cidr: parsed(row, 3)?,
        gateway: parsed_opt(row, 4)?,
        dhcp_ip: parsed_opt(row, 5)?,
        isolated: row.get(6)?,
        mtu: row.get(7)?,
        created: row.get(8)?,
    })
}

fn instance_row(row: &Row<'_>) -> rusqlite::Result<Instance> {
    Ok(Instance {
        ec2_id: row.get(0)?,
        uuid: row.get(1)?,
        project: row.get(2)?,
        name: row.get(3)?,
        hostname: row.get(4)?,
        availability_zone: row.get(5)?,
        launch_index: row.get(6)?,
        key_pairs: json(row, 7)?,
        user_data: row.get(8)?,
        meta: json(row, 9)?,
        admin_pass: row.get(10)?,
        password: row.get(11)?,
        created: row.get(12)?,
    })
}

fn port_row(row: &Row<'_>) -> rusqlite::Result<Port> {
    Ok(Port {
        id: row.get(0)?,
        network_id: row.get(1)?,
        mac: row.get(2)?,
        ip: parsed(row, 3)?,
        instance_id: row.get(4)?,
        project: row.get(5)?,
        created: row.get(6)?,
    })
}

fn to_json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

/// Statements on one connection (inside a transaction).
pub(super) struct SqliteSql<'a> {
    pub(super) conn: &'a Connection,
}

impl SqliteSql<'_> {
    fn all<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut statement = map(self.conn.prepare_cached(sql))?;
        let rows = map(statement.query_map(params, row))?;
        map(rows.collect())
    }

    fn one<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let mut statement = map(self.conn.prepare_cached(sql))?;
        map(statement.query_row(params, row).optional())
    }

    fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> StoreResult<usize> {
        let mut statement = map(self.conn.prepare_cached(sql))?;
        map(statement.execute(params))
    }

    fn router_networks(&self, router_id: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT network_id FROM router_networks WHERE router_id = ?1 ORDER BY network_id",
            &[&router_id],
            |row| row.get(0),
        )
    }

    /// Routers from rows of (id, name, project, created), with their networks.
    fn routers_from(&self, sql: &str, params: &[&dyn ToSql]) -> StoreResult<Vec<Router>> {
        let mut routers = self.all(sql, params, |row| {
            Ok(Router {
                id: row.get(0)?,
                name: row.get(1)?,
                project: row.get(2)?,
                networks: Vec::new(),
                created: row.get(3)?,
            })
        })?;
        for router in &mut routers {
            router.networks = self.router_networks(&router.id)?;
        }
        Ok(routers)
    }
}

impl Sql for SqliteSql<'_> {
    fn network(&mut self, id: &str) -> StoreResult<Option<Network>> {
        self.one(
            &format!("{NETWORK_COLUMNS} WHERE id = ?1"),
            &[&id],
            network_row,
        )
    }

    fn networks_named(&mut self, name: &str) -> StoreResult<Vec<Network>> {
        self.all(
            &format!("{NETWORK_COLUMNS} WHERE name = ?1 ORDER BY seq"),
            &[&name],
            network_row,
        )
    }

    fn networks(&mut self) -> StoreResult<Vec<Network>> {
        self.all(&format!("{NETWORK_COLUMNS} ORDER BY seq"), &[], network_row)
    }

    fn insert_network(&mut self, network: &Network) -> StoreResult<()> {
        self.execute(
            "INSERT INTO networks (id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, \
             created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[
                &network.id,
                &network.name,
                &network.project,
                &network.cidr.to_string(),
                &network.gateway.map(|ip| ip.to_string()),
                &network.dhcp_ip.map(|ip| ip.to_string()),
                &network.isolated,
                &network.mtu,
                &network.created,
            ],
        )
        .map(drop)
    }

    fn delete_network(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM networks WHERE id = ?1", &[&id])
            .map(drop)
    }

    fn router(&mut self, id: &str) -> StoreResult<Option<Router>> {
        Ok(self
            .routers_from(&format!("{ROUTER_COLUMNS} WHERE id = ?1"), &[&id])?
            .pop())
    }

    fn routers_named(&mut self, name: &str) -> StoreResult<Vec<Router>> {
        self.routers_from(
            &format!("{ROUTER_COLUMNS} WHERE name = ?1 ORDER BY seq"),
            &[&name],
        )
    }

    fn routers(&mut self) -> StoreResult<Vec<Router>> {
        self.routers_from(&format!("{ROUTER_COLUMNS} ORDER BY seq"), &[])
    }

    fn routers_of_network(&mut self, network_id: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT router_id FROM router_networks WHERE network_id = ?1 ORDER BY router_id",
            &[&network_id],
            |row| row.get(0),
        )
    }

    fn insert_router(&mut self, router: &Router) -> StoreResult<()> {
        self.execute(
            "INSERT INTO routers (id, name, project, created) VALUES (?1, ?2, ?3, ?4)",
            &[&router.id, &router.name, &router.project, &router.created],
        )?;
        for network_id in &router.networks {
            self.attach_network(&router.id, network_id)?;
        }
        Ok(())
    }

    fn attach_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO router_networks (router_id, network_id) VALUES (?1, ?2)",
            &[&router_id, &network_id],
        )
        .map(drop)
    }

    fn detach_network(&mut self, network_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM router_networks WHERE network_id = ?1",
            &[&network_id],
        )
        .map(drop)
    }

    fn delete_router(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM router_networks WHERE router_id = ?1", &[&id])?;
        self.execute("DELETE FROM routers WHERE id = ?1", &[&id])
            .map(drop)
    }

    fn instance(&mut self, uuid: &str) -> StoreResult<Option<Instance>> {
        self.one(INSTANCE_BY_UUID, &[&uuid], instance_row)
    }

    fn instances_named(&mut self, name: &str) -> StoreResult<Vec<Instance>> {
        self.all(
            &format!("{INSTANCE_COLUMNS} WHERE name = ?1 ORDER BY ec2_id"),
            &[&name],
            instance_row,
        )
    }

    fn instances(&mut self) -> StoreResult<Vec<Instance>> {
        self.all(
            &format!("{INSTANCE_COLUMNS} ORDER BY ec2_id"),
            &[],
            instance_row,
        )
    }

    fn insert_instance(&mut self, new: &NewInstance, created: &str) -> StoreResult<i64> {
        self.execute(
            "INSERT INTO instances (uuid, project, name, hostname, availability_zone, \
             launch_index, key_pairs, user_data, meta, admin_pass, password, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)",
            &[
                &new.uuid,
                &new.project,
                &new.name,
                &new.hostname,
                &new.availability_zone,
                &new.launch_index,
                &to_json(&new.key_pairs)?,
                &new.user_data,
                &to_json(&new.meta)?,
                &new.admin_pass,
                &created,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn delete_instance(&mut self, uuid: &str) -> StoreResult<()> {
        self.execute("DELETE FROM instances WHERE uuid = ?1", &[&uuid])
            .map(drop)
    }

    fn set_password_if_unset(&mut self, uuid: &str, password: &str) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE instances SET password = ?1 \
             WHERE uuid = ?2 AND (password IS NULL OR password = '')",
            &[&password, &uuid],
        )?;
        Ok(changed == 1)
    }

    fn port(&mut self, id: &str) -> StoreResult<Option<Port>> {
        self.one(&format!("{PORT_COLUMNS} WHERE id = ?1"), &[&id], port_row)
    }

    fn ports(&mut self) -> StoreResult<Vec<Port>> {
        self.all(&format!("{PORT_COLUMNS} ORDER BY seq"), &[], port_row)
    }

    fn network_ports(&mut self, network_id: &str) -> StoreResult<Vec<Port>> {
        self.all(
            &format!("{PORT_COLUMNS} WHERE network_id = ?1 ORDER BY seq"),
            &[&network_id],
            port_row,
        )
    }

    fn instance_ports(&mut self, uuid: &str) -> StoreResult<Vec<Port>> {
        self.all(
            &format!("{PORT_COLUMNS} WHERE instance_id = ?1 ORDER BY seq"),
            &[&uuid],
            port_row,
        )
    }

    fn port_with_mac(&mut self, mac: &str) -> StoreResult<Option<Port>> {
        self.one(&format!("{PORT_COLUMNS} WHERE mac = ?1"), &[&mac], port_row)
    }

    fn ports_with_ip(
        &mut self,
        ip: IpAddr,
        network_ids: Option<&[String]>,
    ) -> StoreResult<Vec<Port>> {
        let ip = ip.to_string();
        let Some(network_ids) = network_ids else {
            return self.all(PORTS_BY_IP, &[&ip], port_row);
        };
        if network_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = ports_on_networks_sql(network_ids.len());
        let mut params: Vec<&dyn ToSql> = vec![&ip];
        params.extend(network_ids.iter().map(|id| id as &dyn ToSql));
        self.all(&sql, &params, port_row)
    }

    fn ports_behind_router(&mut self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>> {
        self.all(
            PORTS_BEHIND_ROUTER,
            &[&ip.to_string(), &router_id],
            port_row,
        )
    }

    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.execute(
            "INSERT INTO ports (id, network_id, mac, ip, instance_id, project, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                &port.id,
                &port.network_id,
                &port.mac,
                &port.ip.to_string(),
                &port.instance_id,
                &port.project,
                &port.created,
            ],
        )
        .map(drop)
    }

    fn delete_port(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM ports WHERE id = ?1", &[&id])
            .map(drop)
    }

    fn log_change(&mut self, kind: ChangeKind, id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO changes (kind, id) VALUES (?1, ?2)",
            &[&kind.as_str(), &id],
        )
        .map(drop)
    }

    fn last_change(&mut self) -> StoreResult<i64> {
        let seq = self.one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[], |row| {
            row.get(0)
        })?;
        Ok(seq.unwrap_or(0))
    }

    fn prune_changes_through(&mut self, seq: i64) -> StoreResult<()> {
        self.execute("DELETE FROM changes WHERE seq <= ?1", &[&seq])
            .map(drop)
    }

    fn changes_since(&mut self, seq: i64) -> StoreResult<Vec<Change>> {
        let rows = self.all(
            "SELECT seq, kind, id FROM changes WHERE seq > ?1 ORDER BY seq",
            &[&seq],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?)),
        )?;
        rows.into_iter()
            .map(|(seq, kind, id)| {
                let kind = ChangeKind::parse(&kind).ok_or_else(|| {
                    StoreError::Backend(format!("change {seq} has an unknown kind {kind:?}"))
                })?;
                Ok(Change { seq, kind, id })
            })
            .collect()
    }
}

/// The agent's hot path: ports by IP on some networks (unique index `ports_network_ip`).
pub(super) fn ports_on_networks_sql(networks: usize) -> String {
    let placeholders: Vec<String> = (0..networks).map(|i| format!("?{}", i + 2)).collect();
    format!(
        "{PORT_COLUMNS} WHERE ip = ?1 AND network_id IN ({}) ORDER BY seq",
        placeholders.join(", ")
    )
}
