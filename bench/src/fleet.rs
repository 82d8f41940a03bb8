//! The bench's registries, written through the store library: one loopback network
//! (127.0.0.0/8) behind one router, the bench guest at 127.0.0.1, and bulk instances for the
//! boot storm (the CLI makes one process per instance: far too slow for 100 000).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use metaboot_server::store::{self, KeyPair, NewInstance, NewNetwork, NewPort, NewRouter, Store};

/// The network every bench instance is on: all of loopback, so any 127.x.y.z source address
/// is a guest.
pub const NETWORK_CIDR: &str = "127.0.0.0/8";
/// Its router address (kept out of the guests' way at the top of the range).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 253);
/// Its DHCP port address.
pub const DHCP_IP: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 254);
/// The guest wrk, the guest agent and cloud-init run as: connections from 127.0.0.1.
pub const BENCH_GUEST_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// First address of the storm's instances (127.1.0.1, then upwards).
pub const FLEET_BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// Most instances one fleet may hold: the addresses from [`FLEET_BASE`] up to below the
/// gateway.
pub const MAX_FLEET: usize = 16_000_000;
/// Threads writing instances into PostgreSQL at once (its round trips overlap; SQLite has one
/// writer, so it gets one thread).
pub const POSTGRES_WRITERS: usize = 4;
/// Instances registered per transaction (`Store::create_instances`): a million instances are
/// a few hundred transactions, not a million.
pub const BULK_BATCH: usize = 2_000;

/// A registry ready for the bench: its network, router and (for the chain) guest.
#[derive(Clone)]
pub struct Registry {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The location passed to `metaboot-server --db`.
    pub url: String,
    /// The loopback network.
    pub network_id: String,
    /// The router in front of it (its namespace is `qrouter-<id>`).
    pub router_id: String,
}

/// The user data of every bench instance: a small `#cloud-config` a user would write.
pub fn user_data(hostname: &str) -> String {
    format!(
        "#cloud-config\n\
         hostname: {hostname}\n\
         fqdn: {hostname}.example.org\n\
         manage_etc_hosts: true\n\
         disable_root: false\n\
         ssh_pwauth: true\n\
         ssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchUserDataKey0000000000000000000000 bench@user-data\n\
         chpasswd:\n  expire: false\n  users:\n    - name: root\n      password: bench-password\n      type: text\n\
         write_files:\n  - path: /etc/bench/app.conf\n    content: |\n      listen=0.0.0.0:8080\n      workers=2\n    permissions: '0640'\n  - path: /etc/bench/motd\n    content: provisioned by the bench\n"
    )
}

/// The key pair of every bench instance (meta_data.json `public_keys`, EC2 `public-keys/`).
pub fn key_pair() -> KeyPair {
    KeyPair {
        name: "bench".to_owned(),
        kind: "ssh".to_owned(),
        data: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchMetaDataKey00000000000000000000000 bench@meta-data"
            .to_owned(),
    }
}

/// Opens (creating) a registry at `url` with the loopback network and its router.
pub fn create(url: &str) -> anyhow::Result<Registry> {
    let store = store::open(url).with_context(|| format!("failed to open the registry {url}"))?;
    let network = store
        .create_network(&NewNetwork {
            name: "bench".to_owned(),
            project: "bench".to_owned(),
            cidr: store::validate::parse_cidr(NETWORK_CIDR)?,
            gateway: Some(IpAddr::V4(GATEWAY)),
            dhcp_ip: Some(IpAddr::V4(DHCP_IP)),
            ..NewNetwork::default()
        })
        .context("failed to create the bench network")?;
    let router = store
        .create_router(&NewRouter {
            name: "bench".to_owned(),
            project: "bench".to_owned(),
            networks: vec![network.id.clone()],
        })
        .context("failed to create the bench router")?;
    Ok(Registry {
        store,
        url: url.to_owned(),
        network_id: network.id,
        router_id: router.id,
    })
}

/// A stable instance uuid for fleet member `index` (the bench guest is `usize::MAX`).
fn uuid(index: usize) -> String {
    format!(
        "b0000000-0000-4000-8000-{:012x}",
        index as u64 & 0xffff_ffff_ffff
    )
}

/// A stable MAC for fleet member `index`.
fn mac(index: usize) -> String {
    let n = (index as u64 + 1) & 0xff_ffff;
    format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// The address of fleet member `index`: 127.1.0.1 upwards.
pub fn fleet_ip(index: usize) -> anyhow::Result<Ipv4Addr> {
    if index >= MAX_FLEET {
        bail!(
            "a bench fleet holds at most {MAX_FLEET} instances, not {}",
            index + 1
        );
    }
    let offset = u32::try_from(index).context("fleet index out of range")?;
    Ok(Ipv4Addr::from(u32::from(FLEET_BASE) + offset))
}

fn new_instance(name: &str, uuid: String) -> NewInstance {
    NewInstance {
        uuid,
        project: "bench".to_owned(),
        name: name.to_owned(),
        hostname: name.to_owned(),
        availability_zone: Some("nova".to_owned()),
        launch_index: 0,
        key_pairs: vec![key_pair()],
        user_data: Some(user_data(name).into_bytes()),
        meta: Default::default(),
        admin_pass: None,
    }
}

/// Registers the bench guest at 127.0.0.1 (the address wrk, the guest agent and cloud-init
/// connect from).
pub fn add_bench_guest(registry: &Registry) -> anyhow::Result<String> {
    let (instance, _) = registry
        .store
        .create_instance(
            &new_instance("bench-guest", uuid(0xffff_ffff_ffff)),
            &NewPort {
                network_id: registry.network_id.clone(),
                ip: Some(IpAddr::V4(BENCH_GUEST_IP)),
                mac: Some("fa:16:3e:ff:ff:fe".to_owned()),
                ..NewPort::default()
            },
        )
        .context("failed to register the bench guest")?;
    Ok(instance.uuid)
}

/// Adds fleet members `from..to` (each with its port, user data and key), in transactions of
/// [`BULK_BATCH`], `writers` at once; returns how long it took.
pub fn populate(
    registry: &Registry,
    from: usize,
    to: usize,
    writers: usize,
) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    if from >= to {
        return Ok(started.elapsed());
    }
    fleet_ip(to - 1)?;
    let next = AtomicUsize::new(from);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        crate::interrupt::check()?;
                        let first = next.fetch_add(BULK_BATCH, Ordering::Relaxed);
                        if first >= to {
                            return Ok(());
                        }
                        let batch = (first..to.min(first + BULK_BATCH))
                            .map(|index| {
                                let name = format!("storm-{index}");
                                Ok((
                                    new_instance(&name, uuid(index)),
                                    NewPort {
                                        network_id: registry.network_id.clone(),
                                        ip: Some(IpAddr::V4(fleet_ip(index)?)),
                                        mac: Some(mac(index)),
                                        ..NewPort::default()
                                    },
                                ))
                            })
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        registry.store.create_instances(&batch).with_context(|| {
                            format!(
                                "failed to register instances {first}..{}",
                                first + batch.len()
                            )
                        })?;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a registry writer panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_addresses_macs_and_uuids_are_distinct_and_bounded() {
        assert_eq!(fleet_ip(0).unwrap(), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(fleet_ip(999).unwrap(), Ipv4Addr::new(127, 1, 3, 232));
        assert_eq!(fleet_ip(99_999).unwrap(), Ipv4Addr::new(127, 2, 134, 160));
        assert!(fleet_ip(MAX_FLEET - 1).unwrap() < GATEWAY);
        assert!(fleet_ip(MAX_FLEET).is_err());
        assert_ne!(mac(0), mac(1));
        assert_ne!(uuid(1), uuid(2));
        assert!(store::validate::uuid(&uuid(123_456)).is_ok());
        assert!(store::validate::mac(&mac(99_999)).is_ok());
    }

    #[test]
    fn a_registry_with_the_guest_and_a_small_fleet() {
        let dir = tempfile::tempdir().unwrap();
        let registry = create(&dir.path().join("r.sqlite").display().to_string()).unwrap();
        add_bench_guest(&registry).unwrap();
        populate(&registry, 0, 20, 1).unwrap();
        populate(&registry, 20, 30, 2).unwrap();
        let ports = registry.store.ports().unwrap();
        assert_eq!(ports.len(), 31);
        let found = registry
            .store
            .find_ports(
                IpAddr::V4(fleet_ip(29).unwrap()),
                std::slice::from_ref(&registry.network_id),
            )
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(user_data("x").starts_with("#cloud-config\n"));
    }
}
