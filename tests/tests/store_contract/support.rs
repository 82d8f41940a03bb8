//! Helpers shared by the cases: fixtures, error matchers and a snapshot of the registry.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use metaboot_server::store::{Network, NewInstance, NewNetwork, NewPort, Port, Store, StoreError};

static UUIDS: AtomicU32 = AtomicU32::new(1);

/// A fresh, valid instance uuid.
pub fn uuid() -> String {
    format!(
        "00000000-0000-4000-8000-{:012x}",
        UUIDS.fetch_add(1, Ordering::Relaxed)
    )
}

/// An address literal.
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IPs are literals")
}

/// A network in project p1 with default gateway and DHCP address.
pub fn network(store: &dyn Store, name: &str, cidr: &str) -> Network {
    store
        .create_network(&NewNetwork {
            name: name.to_owned(),
            project: "p1".to_owned(),
            cidr: cidr.parse().expect("test CIDRs are literals"),
            ..NewNetwork::default()
        })
        .expect("create network")
}

/// A new instance in project p1, hostname = name, fresh uuid.
pub fn new_instance(name: &str) -> NewInstance {
    NewInstance {
        uuid: uuid(),
        project: "p1".to_owned(),
        name: name.to_owned(),
        hostname: name.to_owned(),
        ..NewInstance::default()
    }
}

/// A port on `network` with an allocated IP and MAC.
pub fn port_on(network: &Network) -> NewPort {
    NewPort {
        network_id: network.id.clone(),
        ..NewPort::default()
    }
}

/// A port on `network` at `address`.
pub fn port_at(network: &Network, address: &str) -> NewPort {
    NewPort {
        network_id: network.id.clone(),
        ip: Some(ip(address)),
        ..NewPort::default()
    }
}

/// Creates an instance with `port`; returns the port.
pub fn instance(store: &dyn Store, name: &str, port: &NewPort) -> Port {
    store
        .create_instance(&new_instance(name), port)
        .expect("create instance")
        .1
}

/// The message of an `Invalid` refusal (panics on anything else).
#[track_caller]
pub fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// The message of a `Conflict` refusal (panics on anything else).
#[track_caller]
pub fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

/// Asserts a `NotFound` refusal.
#[track_caller]
pub fn not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Everything the store holds, to compare before and after a refused write.
pub fn snapshot(store: &dyn Store) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{}",
        store.networks().unwrap(),
        store.routers().unwrap(),
        store.instances().unwrap(),
        store.ports().unwrap(),
        store.last_change().unwrap()
    )
}
