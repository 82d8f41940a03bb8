//! A registry whose every call fails once an instance, a port or a router was created: what a
//! command that wrote must survive (an error after its write would have the user run it again
//! and register a second instance, port or router).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::{
    Change, Feed, Instance, Network, NewInstance, NewNetwork, NewPort, NewRouter, PasswordSet,
    Port, Record, Router, Store, StoreError, StoreResult, Wakeups,
};

/// A registry that fails every call once an instance, a port or a router was created, as a
/// lost connection would.
pub struct FailsAfterWrite {
    pub inner: Arc<dyn Store>,
    pub written: AtomicBool,
}

impl FailsAfterWrite {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FailsAfterWrite {
            inner,
            written: AtomicBool::new(false),
        }
    }

    /// Whether a write succeeded.
    pub fn written(&self) -> bool {
        self.written.load(Ordering::SeqCst)
    }

    fn check(&self) -> StoreResult<()> {
        if self.written.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(
                "connection lost after the write".to_owned(),
            ));
        }
        Ok(())
    }
}

impl Store for FailsAfterWrite {
    fn create_network(&self, new: &NewNetwork) -> StoreResult<Network> {
        self.check()?;
        self.inner.create_network(new)
    }
    fn networks(&self) -> StoreResult<Vec<Network>> {
        self.check()?;
        self.inner.networks()
    }
    fn network(&self, id_or_name: &str) -> StoreResult<Network> {
        self.check()?;
        self.inner.network(id_or_name)
    }
    fn delete_network(&self, id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_network(id)
    }
    fn create_router(&self, new: &NewRouter) -> StoreResult<Router> {
        self.check()?;
        let created = self.inner.create_router(new)?;
        self.written.store(true, Ordering::SeqCst);
        Ok(created)
    }
    fn routers(&self) -> StoreResult<Vec<Router>> {
        self.check()?;
        self.inner.routers()
    }
    fn router(&self, id_or_name: &str) -> StoreResult<Router> {
        self.check()?;
        self.inner.router(id_or_name)
    }
    fn add_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.add_router_network(router_id, network_id)
    }
    fn remove_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.remove_router_network(router_id, network_id)
    }
    fn delete_router(&self, id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_router(id)
    }
    fn create_instance(&self, new: &NewInstance, port: &NewPort) -> StoreResult<(Instance, Port)> {
        self.check()?;
        let created = self.inner.create_instance(new, port)?;
        self.written.store(true, Ordering::SeqCst);
        Ok(created)
    }
    fn create_instances(&self, batch: &[(NewInstance, NewPort)]) -> StoreResult<usize> {
        self.check()?;
        self.inner.create_instances(batch)
    }
    fn instances(&self) -> StoreResult<Vec<Instance>> {
        self.check()?;
        self.inner.instances()
    }
    fn instance(&self, id_or_name: &str) -> StoreResult<Instance> {
        self.check()?;
        self.inner.instance(id_or_name)
    }
    fn instance_by_uuid(&self, uuid: &str) -> StoreResult<Option<Instance>> {
        self.check()?;
        self.inner.instance_by_uuid(uuid)
    }
    fn delete_instance(&self, uuid: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_instance(uuid)
    }
    fn set_password(
        &self,
        uuid: &str,
        ec2_id: Option<i64>,
        password: &str,
    ) -> StoreResult<PasswordSet> {
        self.check()?;
        self.inner.set_password(uuid, ec2_id, password)
    }
    fn clear_password(&self, uuid: &str) -> StoreResult<bool> {
        self.check()?;
        self.inner.clear_password(uuid)
    }
    fn create_port(&self, new: &NewPort) -> StoreResult<Port> {
        self.check()?;
        let created = self.inner.create_port(new)?;
        self.written.store(true, Ordering::SeqCst);
        Ok(created)
    }
    fn ports(&self) -> StoreResult<Vec<Port>> {
        self.check()?;
        self.inner.ports()
    }
    fn port(&self, id: &str) -> StoreResult<Port> {
        self.check()?;
        self.inner.port(id)
    }
    fn delete_port(&self, id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_port(id)
    }
    fn instance_ports(&self, uuid: &str) -> StoreResult<Vec<(Port, Network)>> {
        self.check()?;
        self.inner.instance_ports(uuid)
    }
    fn find_ports(&self, ip: IpAddr, network_ids: &[String]) -> StoreResult<Vec<Port>> {
        self.check()?;
        self.inner.find_ports(ip, network_ids)
    }
    fn find_ports_behind_router(&self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>> {
        self.check()?;
        self.inner.find_ports_behind_router(ip, router_id)
    }
    fn find_ports_by_ip(&self, ip: IpAddr) -> StoreResult<Vec<Port>> {
        self.check()?;
        self.inner.find_ports_by_ip(ip)
    }
    fn last_change(&self) -> StoreResult<i64> {
        self.check()?;
        self.inner.last_change()
    }
    fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>> {
        self.check()?;
        self.inner.changes_since(seq)
    }
    fn snapshot(&self, visit: &mut dyn FnMut(Record) -> StoreResult<()>) -> StoreResult<i64> {
        self.check()?;
        self.inner.snapshot(visit)
    }
    fn changes_after(&self, seq: i64, max: usize) -> StoreResult<Feed> {
        self.check()?;
        self.inner.changes_after(seq, max)
    }
    fn listen(&self) -> StoreResult<Option<Box<dyn Wakeups>>> {
        self.check()?;
        self.inner.listen()
    }
}
