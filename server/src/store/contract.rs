//! The `Store` trait: the registry as every caller sees it, whatever the backend. The store
//! contract suite (`tests/tests/store_contract`) holds both backends to it.

use std::net::IpAddr;

use super::error::StoreResult;
use super::feed::{Feed, MAX_CHANGES_PER_BATCH, Record, Wakeups};
use super::model::{
    Change, Instance, Network, NewInstance, NewNetwork, NewPort, NewRouter, PasswordSet, Port,
    Router,
};

/// The registry of networks, routers, ports and instances.
pub trait Store: Send + Sync {
    /// True when reads never wait for another process or the network, so async code may run
    /// them in place (see [`read`]).
    fn reads_in_place(&self) -> bool {
        false
    }

    // --- networks
    fn create_network(&self, new: &NewNetwork) -> StoreResult<Network>;
    fn networks(&self) -> StoreResult<Vec<Network>>;
    /// By id, or by name when the name is unique.
    fn network(&self, id_or_name: &str) -> StoreResult<Network>;
    /// Refused (Conflict) while ports are on it.
    fn delete_network(&self, id: &str) -> StoreResult<()>;

    // --- routers
    fn create_router(&self, new: &NewRouter) -> StoreResult<Router>;
    fn routers(&self) -> StoreResult<Vec<Router>>;
    fn router(&self, id_or_name: &str) -> StoreResult<Router>;
    fn add_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()>;
    /// Detaches one network from the router (neutron's `router-interface-delete`); refused
    /// (Invalid) when the network is not attached to it. The network and its ports stay.
    fn remove_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()>;
    /// Deletes the router; its networks stay.
    fn delete_router(&self, id: &str) -> StoreResult<()>;

    // --- instances
    /// Creates the instance and its first port in one transaction; allocates the port's IP
    /// (lowest free host address, skipping gateway and DHCP address) and MAC (`fa:16:3e:…`)
    /// when not given.
    fn create_instance(&self, new: &NewInstance, port: &NewPort) -> StoreResult<(Instance, Port)>;
    /// Creates many instances, each with its first port, in one transaction, by the rules of
    /// `create_instance`: all or none (bulk registration, e.g. the bench's fleets). Returns
    /// how many.
    fn create_instances(&self, batch: &[(NewInstance, NewPort)]) -> StoreResult<usize>;
    fn instances(&self) -> StoreResult<Vec<Instance>>;
    /// By uuid, or by name when the name is unique.
    fn instance(&self, id_or_name: &str) -> StoreResult<Instance>;
    /// By uuid only; `None` when absent. The API's hot path.
    fn instance_by_uuid(&self, uuid: &str) -> StoreResult<Option<Instance>>;
    /// Deletes the instance and its ports.
    fn delete_instance(&self, uuid: &str) -> StoreResult<()>;
    /// Write-once: exactly one of any number of concurrent calls gets `Stored`. With `ec2_id`,
    /// only on that instance: one deleted and created again under the same uuid since gets
    /// nothing (`NoInstance`).
    fn set_password(
        &self,
        uuid: &str,
        ec2_id: Option<i64>,
        password: &str,
    ) -> StoreResult<PasswordSet>;

    /// Clears the instance's posted password (nova's `clear-password`), so that its guest may
    /// post one again; true when one was stored. An unknown instance is `NotFound`.
    fn clear_password(&self, uuid: &str) -> StoreResult<bool>;

    // --- ports
    fn create_port(&self, new: &NewPort) -> StoreResult<Port>;
    fn ports(&self) -> StoreResult<Vec<Port>>;
    fn port(&self, id: &str) -> StoreResult<Port>;
    fn delete_port(&self, id: &str) -> StoreResult<()>;
    /// The instance's ports with their networks, oldest port first (network_data.json).
    fn instance_ports(&self, uuid: &str) -> StoreResult<Vec<(Port, Network)>>;

    // --- the agent's hot path
    /// Ports with this IP on any of these networks (indexed; zero, one or several).
    fn find_ports(&self, ip: IpAddr, network_ids: &[String]) -> StoreResult<Vec<Port>>;
    /// Ports with this IP on the networks behind router `router_id` (by id), in one read: the
    /// agent's hot path on the router path.
    fn find_ports_behind_router(&self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>>;
    /// Ports with this IP on any network (the API's source-IP mode).
    fn find_ports_by_ip(&self, ip: IpAddr) -> StoreResult<Vec<Port>>;

    // --- change log
    /// The newest change's sequence number (0 when none).
    fn last_change(&self) -> StoreResult<i64>;
    /// Changes after `seq`, oldest first.
    fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>>;

    // --- what a server's read model is built from
    /// Hands every record to `visit` from one consistent snapshot (networks, routers, then
    /// instances with their ports, streamed) and returns the newest change it reflects.
    fn snapshot(&self, visit: &mut dyn FnMut(Record) -> StoreResult<()>) -> StoreResult<i64>;
    /// What changed after `seq`, with the records touched, read in one snapshot; at most
    /// `max` changes (else [`Feed::TooMany`]). A [`Feed::Gap`] for a replaced registry is
    /// said once: a caller whose reload then fails reloads again rather than ask again (the
    /// read model's `reload_owed`, `model/mod.rs`).
    fn changes_after(&self, seq: i64, max: usize) -> StoreResult<Feed>;
    /// A connection woken by every committed write (PostgreSQL `LISTEN`); `None` where
    /// servers poll (SQLite).
    fn listen(&self) -> StoreResult<Option<Box<dyn Wakeups>>>;
}

/// How many of the newest changes the change log keeps; every write drops the ones before.
/// A server further behind than this has missed changes and builds its read model anew (see
/// `feed::MAX_CHANGES_PER_BATCH`, which must not exceed it).
pub const CHANGE_LOG_KEPT: i64 = 100_000;
// A server within a batch of the newest change finds all of them still in the log.
const _: () = assert!(MAX_CHANGES_PER_BATCH as i64 <= CHANGE_LOG_KEPT);
