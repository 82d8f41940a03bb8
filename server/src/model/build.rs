//! Building the read model from a store snapshot, and applying a batch of changes to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::record::{self, InstanceRecord, Interner, RecordError, parse_id};
use super::user_data::{Codec, DICTIONARY_BYTES, Packer};
use crate::store::{
    Batch, ChangeKind, Instance, Network, Port, Record, Router, StoreResult, is_learned_placeholder,
};

/// Instances with user data read before the dictionary is made from theirs.
pub const DICTIONARY_SAMPLES: usize = 64;
/// Instances held back at most, raw, while the dictionary waits for samples: past it the
/// dictionary is made from the samples there are. Instances without user data are no
/// samples, so a fleet with little or none would otherwise be held until the snapshot ends
/// (a million instances: about 1 GB, twice the memory budget).
pub const DICTIONARY_WAIT_INSTANCES: usize = 4096;
// The wait for samples can end by their count.
const _: () = assert!(DICTIONARY_WAIT_INSTANCES >= DICTIONARY_SAMPLES);

/// A network and its slot in the address index.
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    pub record: Arc<Network>,
    pub slot: u32,
}

/// The model's maps. Their keys are ids and addresses the registry holds, not what a guest
/// sends (a guest's request only looks keys up), so a fast hash with a per-process seed serves
/// them; SipHash was most of a lookup's cost.
pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The registry in memory: what every guest request is answered from.
#[derive(Debug, Default)]
pub struct Model {
    /// The newest change this model reflects.
    pub seq: i64,
    /// The dictionary user data is compressed with (`None` until there are samples).
    pub codec: Option<Arc<Codec>>,
    pub networks: Map<Uuid, NetworkEntry>,
    next_slot: u32,
    /// Router id → the ids of the networks attached to it (parsed once, here).
    pub routers: Map<Uuid, Box<[Uuid]>>,
    pub instances: Map<Uuid, Arc<InstanceRecord>>,
    /// (network slot, IPv4 address) → owner, as one 64-bit key.
    v4: Map<u64, Arc<InstanceRecord>>,
    /// (network slot, IPv6 address) → owner.
    v6: Map<(u32, u128), Arc<InstanceRecord>>,
    /// (network slot, MAC) → owner: a guest calling from its link-local address is found by
    /// the MAC inside it (docs/protocol.md §2.3 step 2). Only ports on networks with an IPv6
    /// subnet: metadata over IPv6 is served on those alone, and a million IPv4-only ports
    /// would spend tens of MiB on entries nobody can ask for.
    macs: Map<(u32, u64), Arc<InstanceRecord>>,
    /// Passwords this server stored and serves before the change log brings them: kept over
    /// a record of a batch read before the write, and only such a batch.
    posted: Map<Uuid, Posted>,
}

/// A password this server stored, for the instance it knew as `ec2_id`, in change `change`.
#[derive(Debug)]
struct Posted {
    ec2_id: i64,
    password: String,
    change: i64,
}

/// An address on a network, as the index keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    V4(u64),
    V6((u32, u128)),
}

fn key(slot: u32, ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => Key::V4(u64::from(slot) << 32 | u64::from(u32::from(v4))),
        IpAddr::V6(v6) => Key::V6((slot, u128::from(v6))),
    }
}

/// A MAC on a network, as the MAC index keys it.
fn mac_key(slot: u32, mac: [u8; 6]) -> (u32, u64) {
    let [a, b, c, d, e, f] = mac;
    (slot, u64::from_be_bytes([0, 0, a, b, c, d, e, f]))
}

impl Model {
    /// The owner of `ip` on the network with this id: by the MAC inside it for an EUI-64
    /// link-local address (what a guest calls `fe80::a9fe:a9fe` from), else by the port's
    /// fixed address.
    pub fn owner(&self, network: &Uuid, ip: IpAddr) -> Option<&Arc<InstanceRecord>> {
        let slot = self.networks.get(network)?.slot;
        if let IpAddr::V6(v6) = ip
            && v6.is_unicast_link_local()
        {
            let mac = metaboot_proto::eui64::mac_of_link_local(v6)?;
            return self.macs.get(&mac_key(slot, mac));
        }
        match key(slot, ip) {
            Key::V4(k) => self.v4.get(&k),
            Key::V6(k) => self.v6.get(&k),
        }
    }

    /// The owner of the port with `mac` on a host network or a network with an IPv6 subnet
    /// (the ports the MAC index holds).
    pub fn owner_by_mac(&self, network: &Uuid, mac: [u8; 6]) -> Option<&Arc<InstanceRecord>> {
        let slot = self.networks.get(network)?.slot;
        self.macs.get(&mac_key(slot, mac))
    }

    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    fn put_network(&mut self, network: Network) -> Result<(), RecordError> {
        let id = parse_id("network id", &network.id)?;
        let record = Arc::new(network);
        match self.networks.get_mut(&id) {
            // A network's subnets are fixed when it is made (the registry has no way to add
            // one), so which of its ports the MAC index holds never changes here.
            Some(entry) => entry.record = record,
            None => {
                let slot = self.next_slot;
                self.next_slot += 1;
                self.networks.insert(id, NetworkEntry { record, slot });
            }
        }
        Ok(())
    }

    fn put_router(&mut self, router: &Router) -> Result<(), RecordError> {
        let id = parse_id("router id", &router.id)?;
        // An id that is not a uuid names no network a port can be on: skipped.
        let networks = router
            .networks
            .iter()
            .filter_map(|network| Uuid::parse_str(network).ok())
            .collect();
        self.routers.insert(id, networks);
        Ok(())
    }

    /// Adds an instance (none with its uuid may be in the model) and indexes its addresses.
    fn insert(&mut self, record: InstanceRecord) {
        let record = Arc::new(record);
        for port in record.ports.iter() {
            let Some(entry) = self.networks.get(&port.network) else {
                tracing::warn!(instance = %record.uuid, network = %port.network, "a port on a network the registry does not have: not served");
                continue;
            };
            // A learned address's placeholder identifies nobody: its guest is found by MAC.
            for ip in port.ips().filter(|ip| !is_learned_placeholder(*ip)) {
                match key(entry.slot, ip) {
                    Key::V4(k) => self.v4.insert(k, record.clone()),
                    Key::V6(k) => self.v6.insert(k, record.clone()),
                };
            }
            if entry.record.ipv6_subnet().is_some() || entry.record.host.is_some() {
                self.macs
                    .insert(mac_key(entry.slot, port.mac), record.clone());
            }
        }
        self.instances.insert(record.uuid, record);
    }

    /// Removes an instance and its addresses (those still pointing at it).
    fn remove(&mut self, uuid: &Uuid) -> Option<Arc<InstanceRecord>> {
        let record = self.instances.remove(uuid)?;
        for port in record.ports.iter() {
            let Some(entry) = self.networks.get(&port.network) else {
                continue;
            };
            let owned = |held: &Arc<InstanceRecord>| Arc::ptr_eq(held, &record);
            for ip in port.ips() {
                match key(entry.slot, ip) {
                    Key::V4(k) => {
                        if self.v4.get(&k).is_some_and(owned) {
                            self.v4.remove(&k);
                        }
                    }
                    Key::V6(k) => {
                        if self.v6.get(&k).is_some_and(owned) {
                            self.v6.remove(&k);
                        }
                    }
                }
            }
            let mac = mac_key(entry.slot, port.mac);
            if self.macs.get(&mac).is_some_and(owned) {
                self.macs.remove(&mac);
            }
        }
        Some(record)
    }

    /// Replaces an instance's record (same uuid), its addresses included.
    pub fn replace(&mut self, record: InstanceRecord) {
        self.remove(&record.uuid);
        self.insert(record);
    }

    /// How many addresses and MACs the indexes hold, for tests of what they let go.
    #[cfg(test)]
    pub fn indexed(&self) -> usize {
        self.v4.len() + self.v6.len() + self.macs.len()
    }

    /// Serves `password`, which this server just stored for the instance with this uuid and
    /// `ec2_id` in change `change`, until a batch through that change brings it or what came
    /// after it (`instance clear-password`). A model already through `change` holds what the
    /// registry held after the write, a password cleared since included: it is left as it is.
    pub fn posted(&mut self, uuid: Uuid, ec2_id: i64, password: &str, change: i64) {
        if change <= self.seq || !self.set_password(uuid, ec2_id, password) {
            return;
        }
        let password = password.to_owned();
        self.posted.insert(
            uuid,
            Posted {
                ec2_id,
                password,
                change,
            },
        );
    }

    /// Takes over the passwords `old` served as posted here whose change this model is not
    /// through (a reload's snapshot read before them).
    pub fn take_posted(&mut self, old: &mut Model) {
        for (uuid, posted) in std::mem::take(&mut old.posted) {
            self.posted(uuid, posted.ec2_id, &posted.password, posted.change);
        }
    }

    /// Gives the instance's record `password`, when it is the instance `ec2_id` names and has
    /// none; true when it did.
    fn set_password(&mut self, uuid: Uuid, ec2_id: i64, password: &str) -> bool {
        let Some(record) = self.instances.get(&uuid) else {
            return false;
        };
        if record.ec2_id != ec2_id || !record.password().is_none_or(str::is_empty) {
            return false;
        }
        let updated = record.with_password(password);
        self.replace(updated);
        true
    }

    /// Applies records built from a batch (see [`prepare`]), all or nothing as seen by
    /// readers (the caller holds the write lock).
    pub fn apply(&mut self, prepared: Prepared) {
        // Every changed instance leaves first: before its network (an instance deleted with
        // its network in one batch is found in the indexes by that network's slot), and so
        // that an address that moved between two of them in this batch ends up with its new
        // owner whatever the order.
        for uuid in &prepared.instances_changed {
            self.remove(uuid);
        }
        for (id, network) in prepared.networks {
            match network {
                Some(network) => {
                    if let Err(err) = self.put_network(network) {
                        tracing::warn!(error = %err, "a network the model cannot keep");
                    }
                }
                None => {
                    self.networks.remove(&id);
                }
            }
        }
        for (id, router) in prepared.routers {
            match router {
                Some(router) => {
                    if let Err(err) = self.put_router(&router) {
                        tracing::warn!(error = %err, "a router the model cannot keep");
                    }
                }
                None => {
                    self.routers.remove(&id);
                }
            }
        }
        for mut record in prepared.instances {
            // A record read before a password this server stored a moment ago must not take it
            // away again; one read after its change (through it) says what the registry holds
            // now, a password cleared since included.
            if record.password().is_none_or(str::is_empty)
                && let Some(posted) = self.posted.get(&record.uuid)
                && posted.ec2_id == record.ec2_id
                && prepared.through < posted.change
            {
                record = record.with_password(&posted.password);
            }
            self.insert(record);
        }
        self.posted
            .retain(|_, posted| posted.change > prepared.through);
        self.seq = prepared.through;
    }
}

/// A batch turned into model records outside the write lock.
#[derive(Debug, Default)]
pub struct Prepared {
    through: i64,
    networks: Vec<(Uuid, Option<Network>)>,
    routers: Vec<(Uuid, Option<Router>)>,
    /// Every instance the batch touched (removed first).
    instances_changed: Vec<Uuid>,
    /// Those that exist, as they are now.
    instances: Vec<InstanceRecord>,
}

/// Builds the records of a batch.
pub fn prepare(
    mut batch: Batch,
    codec: Option<Arc<Codec>>,
    interner: &mut Interner,
) -> Result<Prepared, RecordError> {
    let mut prepared = Prepared {
        through: batch.through,
        ..Prepared::default()
    };
    let mut networks: HashMap<String, Network> = std::mem::take(&mut batch.networks)
        .into_iter()
        .map(|network| (network.id.clone(), network))
        .collect();
    for id in batch.changed(ChangeKind::Network) {
        prepared
            .networks
            .push((parse_id("network id", id)?, networks.remove(id)));
    }
    let mut routers: HashMap<String, Router> = std::mem::take(&mut batch.routers)
        .into_iter()
        .map(|router| (router.id.clone(), router))
        .collect();
    for id in batch.changed(ChangeKind::Router) {
        prepared
            .routers
            .push((parse_id("router id", id)?, routers.remove(id)));
    }
    for id in batch.changed(ChangeKind::Instance) {
        prepared
            .instances_changed
            .push(parse_id("instance uuid", id)?);
    }
    let mut packer = Packer::new(codec);
    for (instance, ports) in &batch.instances {
        let record = record::record(instance, ports, interner, &mut packer)?;
        prepared.instances_changed.push(record.uuid);
        prepared.instances.push(record);
    }
    Ok(prepared)
}

/// Builds a model from the records of one snapshot, in the order the store hands them over.
pub struct Builder<'i> {
    model: Model,
    interner: &'i mut Interner,
    /// Instances held back until the dictionary is made (`None` once it is).
    waiting: Option<Vec<(Instance, Vec<Port>)>>,
    waiting_bytes: usize,
    waiting_samples: usize,
    packer: Packer,
    /// Records the model could not keep (logged, counted).
    pub skipped: usize,
}

impl<'i> Builder<'i> {
    pub fn new(interner: &'i mut Interner) -> Self {
        Self {
            model: Model::default(),
            interner,
            waiting: Some(Vec::new()),
            waiting_bytes: 0,
            waiting_samples: 0,
            packer: Packer::new(None),
            skipped: 0,
        }
    }

    fn skip(&mut self, err: &RecordError) {
        self.skipped += 1;
        tracing::warn!(error = %err, "a registry record the model cannot keep: not served");
    }

    /// Takes one record of the snapshot.
    pub fn add(&mut self, record: Record) -> StoreResult<()> {
        match record {
            // Every record read so far goes: the snapshot is read again from its start.
            Record::Start => {
                self.model = Model::default();
                self.waiting = Some(Vec::new());
                self.waiting_bytes = 0;
                self.waiting_samples = 0;
                self.packer = Packer::new(None);
                self.skipped = 0;
            }
            Record::Network(network) => {
                if let Err(err) = self.model.put_network(network) {
                    self.skip(&err);
                }
            }
            Record::Router(router) => {
                if let Err(err) = self.model.put_router(&router) {
                    self.skip(&err);
                }
            }
            Record::Instance(instance, ports) => match &mut self.waiting {
                Some(waiting) => {
                    if let Some(data) = &instance.user_data {
                        self.waiting_samples += 1;
                        // Larger than the whole dictionary: no part of it (`Codec::from_samples`).
                        if data.len() <= DICTIONARY_BYTES {
                            self.waiting_bytes += data.len();
                        }
                    }
                    waiting.push((instance, ports));
                    if self.waiting_samples >= DICTIONARY_SAMPLES
                        || self.waiting_bytes >= DICTIONARY_BYTES
                        || waiting.len() >= DICTIONARY_WAIT_INSTANCES
                    {
                        self.make_dictionary();
                    }
                }
                None => self.keep(&instance, &ports),
            },
        }
        Ok(())
    }

    /// Makes the dictionary from the instances held back, then keeps them.
    fn make_dictionary(&mut self) {
        let waiting = self.waiting.take().unwrap_or_default();
        let codec = Codec::from_samples(
            waiting
                .iter()
                .filter_map(|(instance, _)| instance.user_data.as_deref()),
        )
        .map(Arc::new);
        self.packer = Packer::new(codec.clone());
        self.model.codec = codec;
        for (instance, ports) in &waiting {
            self.keep(instance, ports);
        }
    }

    fn keep(&mut self, instance: &Instance, ports: &[Port]) {
        match record::record(instance, ports, self.interner, &mut self.packer) {
            Ok(record) => self.model.insert(record),
            Err(err) => self.skip(&err),
        }
    }

    /// The model, reflecting change `seq`.
    pub fn finish(mut self, seq: i64) -> Model {
        if self.waiting.is_some() {
            self.make_dictionary();
        }
        self.model.seq = seq;
        self.model
    }
}

#[cfg(test)]
mod tests;
