//! What crosses between the shared SQL and a backend's driver: statement parameters
//! ([`Param`]) and result columns ([`Columns`]), and the decoding of each kind of row, written
//! once for both backends.

use std::net::IpAddr;
use std::str::FromStr;

use super::error::{StoreError, StoreResult};
use super::model::{
    Change, ChangeKind, HostBridge, Instance, Ipv6AddressMode, Network, Port, Router, Subnet,
};

/// One statement parameter, as both backends bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Text(&'a str),
    TextOrNull(Option<&'a str>),
    Int(i64),
    IntOrNull(Option<i64>),
    Flag(bool),
    BytesOrNull(Option<&'a [u8]>),
}

/// One column's value as a backend hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Flag(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Int(_) => "an integer",
            Self::Flag(_) => "a boolean",
            Self::Text(_) => "text",
            Self::Bytes(_) => "bytes",
        }
    }
}

/// One result row, read by column index. A backend provides [`Columns::value`]; the typed
/// reads, and their errors, are the same for both.
pub trait Columns {
    /// Column `index` as the backend holds it.
    fn value(&self, index: usize) -> StoreResult<Value>;

    fn text(&self, index: usize) -> StoreResult<String> {
        self.text_or_null(index)?
            .ok_or_else(|| unexpected(index, "text", &Value::Null))
    }

    fn text_or_null(&self, index: usize) -> StoreResult<Option<String>> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text)),
            other => Err(unexpected(index, "text", &other)),
        }
    }

    fn int(&self, index: usize) -> StoreResult<i64> {
        self.int_or_null(index)?
            .ok_or_else(|| unexpected(index, "an integer", &Value::Null))
    }

    fn int_or_null(&self, index: usize) -> StoreResult<Option<i64>> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(value)),
            other => Err(unexpected(index, "an integer", &other)),
        }
    }

    /// A boolean: PostgreSQL's `BOOLEAN`, or SQLite's integer 0 or 1.
    fn flag(&self, index: usize) -> StoreResult<bool> {
        match self.value(index)? {
            Value::Flag(flag) => Ok(flag),
            Value::Int(value) => Ok(value != 0),
            other => Err(unexpected(index, "a boolean", &other)),
        }
    }

    fn bytes_or_null(&self, index: usize) -> StoreResult<Option<Vec<u8>>> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Bytes(bytes) => Ok(Some(bytes)),
            other => Err(unexpected(index, "bytes", &other)),
        }
    }
}

/// A column of another type than its statement reads.
fn unexpected(index: usize, wanted: &str, found: &Value) -> StoreError {
    StoreError::Backend(format!(
        "column {index} of a registry row holds {}, not {wanted}",
        found.kind()
    ))
}

/// A value the registry holds that this version cannot read.
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

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| corrupt(what, err))
}

/// JSON text of a column stored as JSON (key pairs, meta).
pub fn to_json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

/// A value read from one result row.
pub trait FromRow: Sized {
    fn from_row(row: &dyn Columns) -> StoreResult<Self>;
}

/// A row of `network_select!()`.
impl FromRow for Network {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        let second_subnet = match parse_opt("network CIDR", row.text_or_null(9)?)? {
            Some(cidr) => Some(Subnet {
                cidr,
                gateway: parse_opt("gateway", row.text_or_null(10)?)?,
                dhcp_ip: parse_opt("DHCP address", row.text_or_null(11)?)?,
            }),
            None => None,
        };
        Ok(Network {
            id: row.text(0)?,
            name: row.text(1)?,
            project: row.text(2)?,
            cidr: parse("network CIDR", &row.text(3)?)?,
            gateway: parse_opt("gateway", row.text_or_null(4)?)?,
            dhcp_ip: parse_opt("DHCP address", row.text_or_null(5)?)?,
            second_subnet,
            ipv6_address_mode: row
                .text_or_null(12)?
                .map(|mode| {
                    Ipv6AddressMode::parse(&mode).map_err(|err| corrupt("IPv6 address mode", err))
                })
                .transpose()?,
            isolated: row.flag(6)?,
            mtu: row
                .int_or_null(7)?
                .map(|mtu| to_u32("MTU", mtu))
                .transpose()?,
            created: row.text(8)?,
            host: HostBridge::from_columns(row.text_or_null(13)?, row.text_or_null(14)?),
        })
    }
}

/// A row of `router_select!()`, without its networks.
impl FromRow for Router {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        Ok(Router {
            id: row.text(0)?,
            name: row.text(1)?,
            project: row.text(2)?,
            networks: Vec::new(),
            created: row.text(3)?,
        })
    }
}

/// A row of `instance_select!()`.
impl FromRow for Instance {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        Ok(Instance {
            ec2_id: row.int(0)?,
            uuid: row.text(1)?,
            project: row.text(2)?,
            name: row.text(3)?,
            hostname: row.text(4)?,
            availability_zone: row.text_or_null(5)?,
            launch_index: to_u32("launch index", row.int(6)?)?,
            key_pairs: from_json("key pairs", &row.text(7)?)?,
            user_data: row.bytes_or_null(8)?,
            meta: from_json("meta", &row.text(9)?)?,
            admin_pass: row.text_or_null(10)?,
            password: row.text_or_null(11)?,
            created: row.text(12)?,
        })
    }
}

/// A row of `port_select!()`.
impl FromRow for Port {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        Ok(Port {
            id: row.text(0)?,
            network_id: row.text(1)?,
            mac: row.text(2)?,
            ip: parse("port IP", &row.text(3)?)?,
            second_ip: parse_opt("port IP", row.text_or_null(7)?)?,
            instance_id: row.text(4)?,
            project: row.text(5)?,
            created: row.text(6)?,
        })
    }
}

/// A row's columns from `first` on, read as a row of their own.
struct Tail<'a> {
    row: &'a dyn Columns,
    first: usize,
}

impl Columns for Tail<'_> {
    fn value(&self, index: usize) -> StoreResult<Value> {
        self.row.value(self.first + index)
    }
}

/// Columns of an instance row in `instance_with_port_columns!()`.
const INSTANCE_COLUMNS: usize = 13;

/// A row of `instance_with_port_columns!()`: the instance, and one of its ports unless the
/// port's columns are NULL (an instance without ports).
impl FromRow for (Instance, Option<Port>) {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        let instance = Instance::from_row(row)?;
        let port_row = Tail {
            row,
            first: INSTANCE_COLUMNS,
        };
        let port = match port_row.value(0)? {
            Value::Null => None,
            _ => Some(Port::from_row(&port_row)?),
        };
        Ok((instance, port))
    }
}

/// A row of the change log: sequence number, kind, id.
impl FromRow for Change {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        LoggedChange::from_row(row)?
            .known()
            .map_err(|logged| StoreError::Backend(logged.unknown_kind()))
    }
}

/// A row of the change log as stored, its kind still text: a newer metaboot may log kinds
/// this one does not know, and a reader must be able to say so rather than stall on the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    pub seq: i64,
    pub kind: String,
    pub id: String,
}

impl LoggedChange {
    /// The change, or the row back when its kind is unknown.
    pub fn known(self) -> Result<Change, Self> {
        match ChangeKind::parse(&self.kind) {
            Some(kind) => Ok(Change {
                seq: self.seq,
                kind,
                id: self.id,
            }),
            None => Err(self),
        }
    }

    /// What an unknown kind means, for an error or a log line.
    pub fn unknown_kind(&self) -> String {
        format!(
            "change {} has a kind this metaboot does not know ({:?}): a newer metaboot wrote it; \
             upgrade this server",
            self.seq, self.kind
        )
    }
}

impl FromRow for LoggedChange {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            seq: row.int(0)?,
            kind: row.text(1)?,
            id: row.text(2)?,
        })
    }
}

/// A one-column text row (ids).
impl FromRow for String {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        row.text(0)
    }
}

/// A one-column integer row (counts, sequence numbers).
impl FromRow for i64 {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        row.int(0)
    }
}

/// A one-column address row (a port's address).
impl FromRow for IpAddr {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        parse("port IP", &row.text(0)?)
    }
}

/// A two-column text row (router id, network id).
impl FromRow for (String, String) {
    fn from_row(row: &dyn Columns) -> StoreResult<Self> {
        Ok((row.text(0)?, row.text(1)?))
    }
}
