//! `instance create` once its write succeeded: whatever the registry does next, the command
//! succeeds (a failure would have the user retry and register the instance twice).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::store::{
    Change, Feed, NewNetwork, NewRouter, PasswordSet, Record, Router, StoreError, StoreResult,
    Wakeups,
};

/// A registry that fails every call once an instance was created, as a lost connection would.
struct FailsAfterWrite {
    inner: Arc<dyn Store>,
    written: AtomicBool,
}

impl FailsAfterWrite {
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
        self.inner.create_router(new)
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
    fn create_port(&self, new: &NewPort) -> StoreResult<Port> {
        self.check()?;
        self.inner.create_port(new)
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

fn create_args(name: &str, json: bool) -> InstanceCreate {
    InstanceCreate {
        name: name.to_owned(),
        network: "net1".to_owned(),
        ip: Vec::new(),
        mac: None,
        hostname: None,
        project: "admin".to_owned(),
        availability_zone: None,
        launch_index: 0,
        key_files: Vec::new(),
        key_names: Vec::new(),
        user_data: None,
        meta: Vec::new(),
        admin_pass: None,
        admin_pass_file: None,
        uuid: None,
        output: Output { json },
    }
}

#[test]
fn create_succeeds_once_its_write_did_whatever_the_registry_does_next() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.sqlite");
    let db = db.to_str().unwrap();
    let args = [
        "metaboot-server",
        "--db",
        db,
        "network",
        "create",
        "net1",
        "--cidr",
    ];
    crate::cli::run(crate::Cli::try_parse_from(args.iter().chain(&["198.18.0.0/24"])).unwrap())
        .unwrap();
    let inner = crate::store::open(db).unwrap();
    for (name, json) in [("table", false), ("json", true)] {
        let store = FailsAfterWrite {
            inner: Arc::clone(&inner),
            written: AtomicBool::new(false),
        };
        create(&store, create_args(name, json)).unwrap();
        assert!(store.written.load(Ordering::SeqCst));
        assert_eq!(inner.instance(name).unwrap().name, name);
    }
}
