//! What the rules stand on: one SQL statement per method (`Sql`) and transactions (`Backend`).
//!
//! The rules (validation, allocation, name resolution, the change log) live once, in
//! `registry.rs`, on top of these. `Sql` is written once too (`driver.rs`, with the texts in
//! `statements.rs`); a backend provides its `Driver` (run a statement, read a row) and its
//! transactions.

use std::collections::HashSet;
use std::net::IpAddr;

use super::error::StoreResult;
use super::feed::Wakeups;
use super::model::{Change, ChangeKind, Instance, Network, NewInstance, Port, Router};
use super::rows::LoggedChange;

/// The schema both backends create; a registry with a newer version is refused at open, one
/// with an older version is brought up to this one. Version 2 added dual-stack networks (a
/// second subnet, the IPv6 address mode) and a port's second address; version 3 networks
/// served on a bridge of the host (`--libvirt-network`, `--bridge`).
pub const SCHEMA_VERSION: i64 = 3;

/// Row-level statements of one backend, run inside a read or a write transaction.
pub trait Sql {
    /// The network with this id.
    fn network(&mut self, id: &str) -> StoreResult<Option<Network>>;
    /// Networks with this name, oldest first.
    fn networks_named(&mut self, name: &str) -> StoreResult<Vec<Network>>;
    /// All networks, oldest first.
    fn networks(&mut self) -> StoreResult<Vec<Network>>;
    fn insert_network(&mut self, network: &Network) -> StoreResult<()>;
    fn delete_network(&mut self, id: &str) -> StoreResult<()>;

    /// The router with this id, with its networks.
    fn router(&mut self, id: &str) -> StoreResult<Option<Router>>;
    /// Routers with this name, oldest first.
    fn routers_named(&mut self, name: &str) -> StoreResult<Vec<Router>>;
    /// All routers, oldest first.
    fn routers(&mut self) -> StoreResult<Vec<Router>>;
    /// Ids of the routers this network is attached to.
    fn routers_of_network(&mut self, network_id: &str) -> StoreResult<Vec<String>>;
    /// Inserts the router row and its attachments.
    fn insert_router(&mut self, router: &Router) -> StoreResult<()>;
    fn attach_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<()>;
    /// Removes the network from this router; true when it was attached to it.
    fn detach_router_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<bool>;
    /// Deletes the router and its attachments.
    fn delete_router(&mut self, id: &str) -> StoreResult<()>;

    /// The instance with this uuid.
    fn instance(&mut self, uuid: &str) -> StoreResult<Option<Instance>>;
    /// Instances with this name, oldest first.
    fn instances_named(&mut self, name: &str) -> StoreResult<Vec<Instance>>;
    /// All instances, oldest first.
    fn instances(&mut self) -> StoreResult<Vec<Instance>>;
    /// Inserts the instance (uuid already normalised); returns its ec2_id.
    fn insert_instance(&mut self, new: &NewInstance, created: &str) -> StoreResult<i64>;
    fn delete_instance(&mut self, uuid: &str) -> StoreResult<()>;
    /// Stores the password unless one is set (NULL or empty counts as unset), in one
    /// statement, on the instance `ec2_id` names when given; true when this call stored it.
    fn set_password_if_unset(
        &mut self,
        uuid: &str,
        ec2_id: Option<i64>,
        password: &str,
    ) -> StoreResult<bool>;
    /// Clears the stored password; true when there was one (NULL or empty is none).
    fn clear_password(&mut self, uuid: &str) -> StoreResult<bool>;

    fn port(&mut self, id: &str) -> StoreResult<Option<Port>>;
    /// All ports, oldest first.
    fn ports(&mut self) -> StoreResult<Vec<Port>>;
    /// At most `limit` ports on this network, oldest first.
    fn network_ports_oldest(&mut self, network_id: &str, limit: usize) -> StoreResult<Vec<Port>>;
    /// How many ports this network has, counted by the database.
    fn network_port_count(&mut self, network_id: &str) -> StoreResult<usize>;
    /// The addresses the ports on this network hold (first and second subnet's), read
    /// without the rest of their rows: what allocation must skip.
    fn network_ips(&mut self, network_id: &str) -> StoreResult<HashSet<IpAddr>>;
    /// Ports of this instance, oldest first.
    fn instance_ports(&mut self, uuid: &str) -> StoreResult<Vec<Port>>;
    fn port_with_mac(&mut self, mac: &str) -> StoreResult<Option<Port>>;
    /// Ports with this IP, on these networks only when `network_ids` is given (indexed).
    fn ports_with_ip(
        &mut self,
        ip: IpAddr,
        network_ids: Option<&[String]>,
    ) -> StoreResult<Vec<Port>>;
    /// Ports with this IP on the networks attached to this router: one statement (the agent's
    /// hot path on the router path).
    fn ports_behind_router(&mut self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>>;
    fn insert_port(&mut self, port: &Port) -> StoreResult<()>;
    fn delete_port(&mut self, id: &str) -> StoreResult<()>;

    /// Appends to the change log.
    fn log_change(&mut self, kind: ChangeKind, id: &str) -> StoreResult<()>;
    fn last_change(&mut self) -> StoreResult<i64>;
    fn changes_since(&mut self, seq: i64) -> StoreResult<Vec<Change>>;
    /// The oldest change the log holds (0 when empty).
    fn oldest_change(&mut self) -> StoreResult<i64>;
    /// At most `limit` changes after `seq`, oldest first.
    fn changes_limited(&mut self, seq: i64, limit: usize) -> StoreResult<Vec<LoggedChange>>;
    /// Networks changed after `seq` that exist.
    fn changed_networks(&mut self, seq: i64) -> StoreResult<Vec<Network>>;
    /// Routers changed after `seq` that exist, with their networks.
    fn changed_routers(&mut self, seq: i64) -> StoreResult<Vec<Router>>;
    /// Every instance with its ports (`changed_after` None), or those changed after a
    /// sequence number and the owners of ports changed after it; streamed, oldest first.
    fn instances_with_ports(
        &mut self,
        changed_after: Option<i64>,
        visit: &mut dyn FnMut(Instance, Vec<Port>) -> StoreResult<()>,
    ) -> StoreResult<()>;
    /// Tells waiting servers (PostgreSQL `NOTIFY`, sent at commit) that changes up to `seq`
    /// exist.
    fn announce(&mut self, seq: i64) -> StoreResult<()>;
    /// Deletes the changes up to and including `seq`.
    fn prune_changes_through(&mut self, seq: i64) -> StoreResult<()>;
}

/// How a backend runs statements: reads on any connection, writes in one exclusive
/// transaction that commits only when `op` returns `Ok`.
pub trait Backend: Send + Sync {
    /// True when reads never wait for another process or the network (see
    /// `Store::reads_in_place`).
    fn reads_in_place(&self) -> bool {
        false
    }
    fn read<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T>;
    /// A read that sees one consistent state of the registry across all its statements.
    fn read_snapshot<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.read(op)
    }
    /// Notices that the registry was replaced under the same name (a SQLite file deleted and
    /// made again, a PostgreSQL database dropped and made again) and moves to the new one;
    /// true once after it did. The change log then belongs to another registry: its reader
    /// starts over from a snapshot, and keeps at it until one is read (this is not said
    /// again).
    fn follow_replacement(&self) -> StoreResult<bool> {
        Ok(false)
    }
    /// A connection that hears about committed changes, where the backend has one.
    fn listen(&self) -> StoreResult<Option<Box<dyn Wakeups>>> {
        Ok(None)
    }
    fn write<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T>;
}
