//! The read model: the registry in memory, what every guest request is answered from (zero
//! store round trips per request). Loaded at start from one consistent snapshot of the store,
//! kept current from the change log by `crate::follow`, swapped whole when the log has a gap.
//!
//! Readers take a read lock for a few hash lookups; a batch of changes is applied under one
//! write lock, so a reader sees the registry before the batch or after it, never half of it.

mod build;
pub mod record;
mod status;
pub mod user_data;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use uuid::Uuid;

pub use build::{DICTIONARY_SAMPLES, Model};
pub use record::{InstanceRecord, PortRecord};
pub use status::ModelStatus;

use crate::store::{
    CHANGE_LOG_KEPT, Change, Feed, HostBridge, Instance, MAX_CHANGES_PER_BATCH, Network, Port,
    Store, StoreError, StoreResult,
};
use build::{Builder, prepare};
use record::{Interner, id_text, mac_text};

/// A model of `n` instances catches up in one batch through up to `n /
/// INSTANCES_PER_BATCHED_CHANGE` changes before it reloads instead.
pub const INSTANCES_PER_BATCHED_CHANGE: usize = 10;

/// The most changes a model of `instances` instances applies as one batch (past it, it
/// reloads): [`MAX_CHANGES_PER_BATCH`], or more for a large registry, up to what the change log
/// keeps. A fixed limit made a large registry reload over and over during a bulk import: the
/// import logged more changes during one reload (seconds, at a million instances) than the
/// limit, so every catch-up was a reload again until the import ended.
pub fn batch_limit(instances: usize) -> usize {
    (instances / INSTANCES_PER_BATCHED_CHANGE)
        .clamp(MAX_CHANGES_PER_BATCH, CHANGE_LOG_KEPT as usize)
}

/// Who holds an address, as a lookup finds it.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<InstanceRecord>),
    /// No port has it.
    NoPort,
    /// This many ports have it (only a registry written around the store's rules).
    Ambiguous(usize),
}

impl Lookup {
    fn of(found: Vec<Arc<InstanceRecord>>) -> Self {
        match found.len() {
            0 => Self::NoPort,
            1 => found.into_iter().next().map_or(Self::NoPort, Self::Found),
            several => Self::Ambiguous(several),
        }
    }
}

/// An isolated network as its DHCP namespace is served: its id, and which families its
/// subnets have (a listener on an address of another family has nobody to serve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedNetwork {
    pub id: String,
    pub ipv4: bool,
    pub ipv6: bool,
}

impl IsolatedNetwork {
    /// Whether its guests can reach `ip` (an address of a family it has a subnet of).
    pub fn has_family_of(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() { self.ipv4 } else { self.ipv6 }
    }
}

/// What one catch-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    UpToDate,
    /// These changes were applied.
    Applied(Vec<Change>),
    /// The model was built anew from a snapshot (a gap in the log, or too many changes).
    Reloaded,
}

/// An instance made whole from the model: its record, the instance, its ports and their
/// networks.
pub type Materialized = (Arc<InstanceRecord>, Instance, Vec<(Port, Network)>);

/// The shared read model.
pub struct ReadModel {
    model: RwLock<Model>,
    interner: Mutex<Interner>,
    status: Arc<ModelStatus>,
    /// Set from the start of a reload until it succeeds. The change log may say once only
    /// that one is needed (a SQLite file or a PostgreSQL database replaced:
    /// `Backend::follow_replacement` in `store/sql.rs`); asked again after a failed reload,
    /// it would hand over the new registry's changes after the old one's sequence number. So
    /// the next catch-up reloads.
    reload_owed: AtomicBool,
}

impl ReadModel {
    /// Loads the model from one snapshot of `store`.
    pub fn load(store: &dyn Store) -> StoreResult<Self> {
        let mut interner = Interner::default();
        let model = build_model(store, &mut interner)?;
        let status = Arc::new(ModelStatus::default());
        status.loaded(model.seq, model.instance_count());
        Ok(Self {
            model: RwLock::new(model),
            interner: Mutex::new(interner),
            status,
            reload_owed: AtomicBool::new(false),
        })
    }

    pub fn status(&self) -> Arc<ModelStatus> {
        self.status.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest change the model reflects.
    pub fn seq(&self) -> i64 {
        self.read().seq
    }

    /// Brings the model up to the store's newest change: a batch applied at once, or a new
    /// model from a snapshot when the change log cannot say what changed.
    pub fn catch_up(&self, store: &dyn Store) -> StoreResult<CatchUp> {
        if self.reload_owed.load(Ordering::SeqCst) {
            self.reload(store)?;
            return Ok(CatchUp::Reloaded);
        }
        let (seq, instances) = {
            let model = self.read();
            (model.seq, model.instance_count())
        };
        let outcome = match store.changes_after(seq, batch_limit(instances))? {
            Feed::UpToDate => CatchUp::UpToDate,
            Feed::Batch(batch) => {
                let changes = batch.changes.clone();
                let codec = self.read().codec.clone();
                let prepared = {
                    let mut interner = self.interner.lock().unwrap_or_else(PoisonError::into_inner);
                    prepare(batch, codec, &mut interner)
                };
                match prepared {
                    Ok(prepared) => {
                        let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
                        if model.seq != seq {
                            // Reloaded meanwhile (only this thread does either): start over.
                            return Ok(CatchUp::UpToDate);
                        }
                        model.apply(prepared);
                        self.status.applied(model.seq, model.instance_count());
                        drop(model);
                        // After the model let go of what the batch replaced or deleted.
                        self.interner
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .prune_if_grown();
                        CatchUp::Applied(changes)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "a change the model cannot apply: reloading");
                        self.reload(store)?;
                        CatchUp::Reloaded
                    }
                }
            }
            Feed::Unknown(change) => {
                tracing::warn!(
                    seq,
                    "{}: reloading the model from a snapshot",
                    change.unknown_kind()
                );
                self.reload(store)?;
                CatchUp::Reloaded
            }
            Feed::Gap | Feed::TooMany => {
                tracing::info!(
                    seq,
                    "the change log cannot bring the model up to date: reloading"
                );
                self.reload(store)?;
                CatchUp::Reloaded
            }
        };
        Ok(outcome)
    }

    /// Whether the next [`ReadModel::catch_up`] is a reload (one failed, or was asked for).
    pub fn owes_reload(&self) -> bool {
        self.reload_owed.load(Ordering::SeqCst)
    }

    /// Makes the next [`ReadModel::catch_up`] a reload: what the model holds can no longer be
    /// trusted to be the change log's up to its `seq`.
    pub fn owe_reload(&self) {
        self.reload_owed.store(true, Ordering::SeqCst);
    }

    /// Builds a new model from a snapshot and swaps it in whole; until that succeeds, every
    /// catch-up starts with it.
    pub fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        self.reload_owed.store(true, Ordering::SeqCst);
        let mut interner = self.interner.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = build_model(store, &mut interner)?;
        let (seq, count) = (fresh.seq, fresh.instance_count());
        let old = {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            let mut old = std::mem::replace(&mut *model, fresh);
            // A password posted here after the snapshot was read: still served.
            model.take_posted(&mut old);
            old
        };
        // The old model is freed after the lock is released.
        drop(old);
        interner.prune();
        self.status.reloaded(seq, count);
        self.reload_owed.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Records a password the registry holds for the instance this server knew as `ec2_id`
    /// (write-once; an empty one counts as unset, as in nova and the store), so the guest's
    /// next GET sees it before the change log brings it: one this server just stored, in
    /// change `change`, or one another write stored that a post answered 409 read from the
    /// registry once its log was at `change` (no batch through less brings a change made
    /// after that read). Served until the change log is through `change`, unless this model
    /// is there already (then it holds what the registry held since). Other servers, and an
    /// instance created again under the same uuid meanwhile, get it from the change log.
    pub fn password_stored(&self, uuid: &str, ec2_id: Option<i64>, password: &str, change: i64) {
        let (Ok(uuid), Some(ec2_id)) = (Uuid::parse_str(uuid), ec2_id) else {
            return;
        };
        self.model
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .posted(uuid, ec2_id, password, change);
    }

    /// The instance with this uuid.
    pub fn instance(&self, uuid: &str) -> Option<Arc<InstanceRecord>> {
        let uuid = Uuid::parse_str(uuid).ok()?;
        self.read().instances.get(&uuid).cloned()
    }

    /// The owner of `ip` on the networks behind router `router_id`.
    pub fn behind_router(&self, ip: IpAddr, router_id: &str) -> Lookup {
        let Ok(router) = Uuid::parse_str(router_id) else {
            return Lookup::NoPort;
        };
        let model = self.read();
        let Some(networks) = model.routers.get(&router) else {
            return Lookup::NoPort;
        };
        let mut owners = networks
            .iter()
            .filter_map(|network| model.owner(network, ip));
        match (owners.next(), owners.count()) {
            (None, _) => Lookup::NoPort,
            (Some(owner), 0) => Lookup::Found(owner.clone()),
            (Some(_), more) => Lookup::Ambiguous(1 + more),
        }
    }

    /// The owner of `ip` on network `network_id`.
    pub fn on_network(&self, ip: IpAddr, network_id: &str) -> Lookup {
        let Ok(network) = Uuid::parse_str(network_id) else {
            return Lookup::NoPort;
        };
        match self.read().owner(&network, ip) {
            Some(owner) => Lookup::Found(owner.clone()),
            None => Lookup::NoPort,
        }
    }

    /// The owners of `ip` on any network (the API's source-IP mode).
    pub fn by_ip(&self, ip: IpAddr) -> Lookup {
        let model = self.read();
        let found = model
            .networks
            .keys()
            .filter_map(|network| model.owner(network, ip).cloned())
            .collect();
        Lookup::of(found)
    }

    /// The bridge a network is served on, when it is a host network.
    pub fn host_of(&self, network_id: &str) -> Option<HostBridge> {
        let network = Uuid::parse_str(network_id).ok()?;
        self.read().networks.get(&network)?.record.host.clone()
    }

    /// Every host network: (id, its bridge as the registry names it), the oldest first (ties
    /// by id), so that of two networks that turn out to share a bridge the older one is served
    /// at every start.
    pub fn host_networks(&self) -> Vec<(String, HostBridge)> {
        let model = self.read();
        let mut networks: Vec<&Network> = model
            .networks
            .values()
            .map(|entry| &*entry.record)
            .filter(|network| network.host.is_some())
            .collect();
        networks.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        networks
            .into_iter()
            .filter_map(|network| Some((network.id.clone(), network.host.clone()?)))
            .collect()
    }

    /// The owner of `ip` on host network `network_id`, given the MACs its DHCP leases say
    /// hold `ip` now: the one MAC's port (none registered: nobody, even if a fixed port has
    /// `ip`: the lease says who is there); with no lease, the port fixed at `ip`; several
    /// MACs: nobody.
    pub fn on_host_network(&self, ip: IpAddr, network_id: &str, leased: &[[u8; 6]]) -> Lookup {
        let Ok(network) = Uuid::parse_str(network_id) else {
            return Lookup::NoPort;
        };
        let model = self.read();
        let found = match leased {
            [] => model.owner(&network, ip),
            [mac] => model.owner_by_mac(&network, *mac),
            several => return Lookup::Ambiguous(several.len()),
        };
        match found {
            Some(owner) => Lookup::Found(owner.clone()),
            None => Lookup::NoPort,
        }
    }

    /// Ids of every router, and every isolated network (whose DHCP namespaces get a
    /// listener) with the families of its subnets.
    pub fn served_namespaces(&self) -> (Vec<String>, Vec<IsolatedNetwork>) {
        let model = self.read();
        let routers = model.routers.keys().map(id_text).collect();
        let isolated = model
            .networks
            .values()
            .filter(|entry| entry.record.isolated)
            .map(|entry| IsolatedNetwork {
                id: entry.record.id.clone(),
                ipv4: entry.record.ipv4_subnet().is_some(),
                ipv6: entry.record.ipv6_subnet().is_some(),
            })
            .collect();
        (routers, isolated)
    }

    /// The instance `record` is, as the store would give it, with its ports and their
    /// networks, for the API's renderers, and the record it was made from: the model's record
    /// of that instance now, whose user data was packed with the dictionary the model has now
    /// (a reload since `record` was read swaps both); `None` when the instance is gone.
    /// `created` is not kept in memory (no document has it): empty.
    pub fn materialize(&self, record: &InstanceRecord) -> StoreResult<Option<Materialized>> {
        let model = self.read();
        let Some(record) = model.instances.get(&record.uuid).cloned() else {
            return Ok(None);
        };
        let user_data = match &record.user_data {
            Some(packed) => Some(
                user_data::unpack(packed, model.codec.as_deref()).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "the user data of instance {} cannot be unpacked",
                        record.uuid
                    ))
                })?,
            ),
            None => None,
        };
        let extra = record.extra.as_deref().cloned().unwrap_or_default();
        let uuid = id_text(&record.uuid);
        let instance = Instance {
            uuid: uuid.clone(),
            ec2_id: record.ec2_id,
            project: record.project.to_string(),
            name: record.name.to_string(),
            hostname: record.hostname().to_owned(),
            availability_zone: record.availability_zone.as_deref().map(str::to_owned),
            launch_index: record.launch_index,
            key_pairs: record.key_pairs.to_vec(),
            user_data,
            meta: extra.meta,
            admin_pass: extra.admin_pass,
            password: extra.password,
            created: String::new(),
        };
        let mut ports = Vec::with_capacity(record.ports.len());
        for port in record.ports.iter() {
            let Some(network) = model.networks.get(&port.network) else {
                continue;
            };
            ports.push((
                Port {
                    id: id_text(&port.id),
                    network_id: network.record.id.clone(),
                    mac: mac_text(&port.mac),
                    ip: port.ip,
                    second_ip: port.second_ip,
                    instance_id: uuid.clone(),
                    project: instance.project.clone(),
                    created: String::new(),
                },
                Network::clone(&network.record),
            ));
        }
        Ok(Some((record, instance, ports)))
    }

    /// Instances in the model.
    pub fn instance_count(&self) -> usize {
        self.read().instance_count()
    }
}

fn build_model(store: &dyn Store, interner: &mut Interner) -> StoreResult<Model> {
    let mut builder = Builder::new(interner);
    let seq = store.snapshot(&mut |record| builder.add(record))?;
    if builder.skipped > 0 {
        tracing::warn!(
            skipped = builder.skipped,
            "registry records the model could not keep"
        );
    }
    Ok(builder.finish(seq))
}

#[cfg(test)]
mod tests;
