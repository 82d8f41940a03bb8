//! The registry's rules, once for both backends: validation, name resolution, address
//! allocation, referential checks and the change log, on top of a backend's `Sql`.

use std::borrow::Cow;
use std::net::IpAddr;

use super::contract::{CHANGE_LOG_KEPT, Store};
use super::error::{StoreError, StoreResult};
use super::feed::{Batch, Feed, Record, Wakeups};
use super::fixed_ips::{describe_port, fixed_ips};
use super::model::{
    Change, ChangeKind, Instance, Network, NewInstance, NewNetwork, NewPort, NewRouter,
    PasswordSet, Port, Router,
};
use super::sql::{Backend, Sql};
use super::taken::Taken;
use super::{allocate, clock, host, subnets, validate};

/// How many ports a "network still has ports" refusal names before it says "and N more".
const MAX_PORTS_NAMED: usize = 5;

/// A `Store` made of the shared rules and one backend.
pub struct Registry<B> {
    backend: B,
    /// Newest changes the change log keeps (`CHANGE_LOG_KEPT` unless set).
    change_log_kept: i64,
}

impl<B: Backend> Registry<B> {
    /// Wraps an opened backend (schema already in place).
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            change_log_kept: CHANGE_LOG_KEPT,
        }
    }

    /// Keeps only the newest `kept` changes in the change log (at least 1, so the newest
    /// sequence number survives).
    pub fn keeping_changes(mut self, kept: i64) -> Self {
        self.change_log_kept = kept.max(1);
        self
    }

    /// One write transaction; it also drops the changes older than the newest kept ones, so
    /// the change log stays bounded.
    fn write<T>(&self, mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.backend.write(|sql| {
            let done = op(sql)?;
            let last = sql.last_change()?;
            if last > self.change_log_kept {
                sql.prune_changes_through(last - self.change_log_kept)?;
            }
            sql.announce(last)?;
            Ok(done)
        })
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// One record by id, else by unique name.
fn resolve<T>(
    kind: &'static str,
    key: &str,
    by_id: Option<T>,
    named: impl FnOnce() -> StoreResult<Vec<T>>,
    id: impl Fn(&T) -> &str,
) -> StoreResult<T> {
    if let Some(record) = by_id {
        return Ok(record);
    }
    let mut matches = named()?;
    match matches.len() {
        0 => Err(StoreError::NotFound {
            kind,
            key: key.to_owned(),
        }),
        1 => Ok(matches.remove(0)),
        _ => Err(StoreError::Ambiguous {
            kind,
            name: key.to_owned(),
            ids: matches.iter().map(&id).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The id a lookup key stands for: a UUID in any form `validate::uuid` takes (either case,
/// without hyphens, in braces, as a `urn:uuid:`) is stored hyphenated in lower case, as nova
/// and neutron take one in any of them; `None` for a key no record can have (a NUL byte,
/// which no stored id or name holds and PostgreSQL refuses in a query).
fn lookup_id(key: &str) -> Option<Cow<'_, str>> {
    if key.contains('\0') {
        return None;
    }
    Some(match uuid::Uuid::parse_str(key) {
        Ok(id) => {
            let stored = id.hyphenated().to_string();
            if stored == key {
                Cow::Borrowed(key)
            } else {
                Cow::Owned(stored)
            }
        }
        Err(_) => Cow::Borrowed(key),
    })
}

fn not_found(kind: &'static str, key: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        key: key.to_owned(),
    }
}

fn network(sql: &mut dyn Sql, key: &str) -> StoreResult<Network> {
    let id = lookup_id(key).ok_or_else(|| not_found("network", key))?;
    let by_id = sql.network(&id)?;
    resolve("network", key, by_id, || sql.networks_named(key), |n| &n.id)
}

fn router(sql: &mut dyn Sql, key: &str) -> StoreResult<Router> {
    let id = lookup_id(key).ok_or_else(|| not_found("router", key))?;
    let by_id = sql.router(&id)?;
    resolve("router", key, by_id, || sql.routers_named(key), |r| &r.id)
}

/// Neutron's `RouterInUse` (409, "Router … still has ports"): a router is deleted only once
/// its interfaces are removed, so deleting it never takes a network's metadata path away
/// unseen. The refusal names the attached networks and the command that detaches them.
fn refuse_router_in_use(sql: &mut dyn Sql, router: &Router) -> StoreResult<()> {
    if router.networks.is_empty() {
        return Ok(());
    }
    let mut named = Vec::new();
    for id in &router.networks {
        named.push(match sql.network(id)? {
            Some(network) => format!("{} ({})", network.name, network.cidrs()),
            None => id.clone(),
        });
    }
    Err(StoreError::Conflict(format!(
        "router {} still has {} network(s) attached: {}; detach each first with \
         `metaboot-server router remove-network {} NETWORK`, then delete the router",
        router.name,
        named.len(),
        named.join(", "),
        router.id
    )))
}

/// Neutron's `NetworkInUse` (409): a network with a router interface is deleted only once the
/// interface is removed, so deleting it never takes a router's network away unseen. The
/// refusal names the routers and the command that detaches the network.
fn refuse_network_in_use(sql: &mut dyn Sql, network: &Network) -> StoreResult<()> {
    let routers = sql.routers_of_network(&network.id)?;
    if routers.is_empty() {
        return Ok(());
    }
    let mut named = Vec::new();
    for id in &routers {
        named.push(match sql.router(id)? {
            Some(router) => format!("{} ({})", router.name, router.id),
            None => id.clone(),
        });
    }
    Err(StoreError::Conflict(format!(
        "network {} is still attached to {} router(s): {}; detach it from each first with \
         `metaboot-server router remove-network ROUTER {}`, then delete the network",
        network.name,
        named.len(),
        named.join(", "),
        network.id
    )))
}

fn instance(sql: &mut dyn Sql, key: &str) -> StoreResult<Instance> {
    let id = lookup_id(key).ok_or_else(|| not_found("instance", key))?;
    let by_id = sql.instance(&id)?;
    resolve(
        "instance",
        key,
        by_id,
        || sql.instances_named(key),
        |i| &i.uuid,
    )
}

fn port(sql: &mut dyn Sql, key: &str) -> StoreResult<Port> {
    let id = lookup_id(key).ok_or_else(|| not_found("port", key))?;
    sql.port(&id)?.ok_or_else(|| not_found("port", key))
}

fn overlaps(a: ipnet::IpNet, b: ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuses attaching `network` to a router that already has `attached`: isolated networks
/// have no router, and one router cannot route two overlapping subnets (the agent finds a
/// port by IP among a router's networks, which must give one answer).
fn check_attachable(network: &Network, attached: &[Network]) -> StoreResult<()> {
    if let Some(host) = &network.host {
        return Err(StoreError::Invalid(format!(
            "network {} is served on the {}: it has no router; make a network without \
             --libvirt-network or --bridge to put it behind one",
            network.name,
            host.describe()
        )));
    }
    if network.isolated {
        return Err(StoreError::Invalid(format!(
            "network {} is isolated (served from its DHCP namespace): create it without \
             --isolated to put it behind a router",
            network.name
        )));
    }
    for other in attached {
        if other.id == network.id {
            return Err(StoreError::Conflict(format!(
                "network {} is already attached to this router",
                network.name
            )));
        }
        let overlapping = network.subnets().any(|mine| {
            other
                .subnets()
                .any(|theirs| overlaps(mine.cidr, theirs.cidr))
        });
        if overlapping {
            return Err(StoreError::Conflict(format!(
                "network {} ({}) overlaps network {} ({}) already on this router: a router \
                 cannot route overlapping subnets; use another router",
                network.name,
                network.cidrs(),
                other.name,
                other.cidrs()
            )));
        }
    }
    Ok(())
}

/// What a new port belongs to.
struct Owner<'a> {
    uuid: &'a str,
    project: &'a str,
}

/// Creates a port on a network (id or name), checking or allocating its MAC and its address
/// on each subnet (around what `taken` knows, which then holds the port's addresses), and
/// logs it.
fn add_port(
    sql: &mut dyn Sql,
    taken: &mut Taken,
    network_key: &str,
    ips: &[IpAddr],
    mac: Option<&str>,
    owner: &Owner<'_>,
    created: &str,
) -> StoreResult<Port> {
    let network = network(sql, network_key)?;
    if let Some(host) = &network.host {
        // Checked before a MAC is made up: there the MAC is how the instance is known.
        host::host_port_ip(sql, taken, &network, host, ips, mac).map(drop)?;
    }
    let mac = match mac {
        Some(mac) => {
            if let Some(other) = sql.port_with_mac(mac)? {
                let other = describe_port(sql, &other)?;
                return Err(StoreError::Conflict(format!(
                    "MAC {mac} is already used by {other}: pick another MAC or omit it to get \
                     a free one"
                )));
            }
            mac.to_owned()
        }
        None => allocate::free_mac(|candidate| Ok(sql.port_with_mac(candidate)?.is_some()))?,
    };
    let (ip, second_ip) = match &network.host {
        Some(host) => (
            host::host_port_ip(sql, taken, &network, host, ips, Some(&mac))?,
            None,
        ),
        None => fixed_ips(sql, taken, &network, ips, &mac)?,
    };
    let port = Port {
        id: new_id(),
        network_id: network.id,
        mac,
        ip,
        second_ip,
        instance_id: owner.uuid.to_owned(),
        project: owner.project.to_owned(),
        created: created.to_owned(),
    };
    sql.insert_port(&port)?;
    taken.hold(&port);
    sql.log_change(ChangeKind::Port, &port.id)?;
    Ok(port)
}

impl<B: Backend> Store for Registry<B> {
    fn reads_in_place(&self) -> bool {
        self.backend.reads_in_place()
    }

    fn create_network(&self, new: &NewNetwork) -> StoreResult<Network> {
        let filled = match &new.host {
            Some(bridge) => host::filled_host_network(new, bridge)?,
            None => subnets::filled_network(new)?,
        };
        let network = Network {
            id: new_id(),
            name: filled.name,
            project: filled.project,
            cidr: filled.cidr,
            gateway: filled.gateway,
            dhcp_ip: filled.dhcp_ip,
            second_subnet: filled.second_subnet,
            ipv6_address_mode: filled.ipv6_address_mode,
            isolated: filled.isolated,
            mtu: filled.mtu,
            created: clock::now(),
            host: filled.host,
        };
        self.write(|sql| {
            if let Some(host) = &network.host {
                host::check_bridge_free(sql, host)?;
            }
            sql.insert_network(&network)?;
            sql.log_change(ChangeKind::Network, &network.id)
        })?;
        Ok(network)
    }

    fn networks(&self) -> StoreResult<Vec<Network>> {
        self.backend.read(|sql| sql.networks())
    }

    fn network(&self, id_or_name: &str) -> StoreResult<Network> {
        self.backend.read(|sql| network(sql, id_or_name))
    }

    fn delete_network(&self, id: &str) -> StoreResult<()> {
        self.write(|sql| {
            let network = network(sql, id)?;
            // The oldest few ports, counted only when there are some: a network's ports are
            // never read whole (there may be a million).
            let oldest = sql.network_ports_oldest(&network.id, MAX_PORTS_NAMED)?;
            if !oldest.is_empty() {
                let count = sql.network_port_count(&network.id)?;
                let mut named = Vec::new();
                for port in &oldest {
                    named.push(describe_port(sql, port)?);
                }
                let more = count.saturating_sub(MAX_PORTS_NAMED);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                return Err(StoreError::Conflict(format!(
                    "network {} still has {count} port(s): {}{more}; delete those instances or \
                     ports first",
                    network.name,
                    named.join(", ")
                )));
            }
            refuse_network_in_use(sql, &network)?;
            sql.delete_network(&network.id)?;
            sql.log_change(ChangeKind::Network, &network.id)
        })
    }

    fn create_router(&self, new: &NewRouter) -> StoreResult<Router> {
        validate::name("router", &new.name)?;
        validate::project(&new.project)?;
        let id = new_id();
        let created = clock::now();
        self.write(|sql| {
            let mut attached: Vec<Network> = Vec::new();
            for key in &new.networks {
                let network = network(sql, key)?;
                // Naming a network twice is harmless: attach it once.
                if attached.iter().any(|other| other.id == network.id) {
                    continue;
                }
                check_attachable(&network, &attached)?;
                attached.push(network);
            }
            let mut networks: Vec<String> = attached.into_iter().map(|n| n.id).collect();
            networks.sort();
            let router = Router {
                id: id.clone(),
                name: new.name.clone(),
                project: new.project.clone(),
                networks,
                created: created.clone(),
            };
            sql.insert_router(&router)?;
            sql.log_change(ChangeKind::Router, &router.id)?;
            Ok(router)
        })
    }

    fn routers(&self) -> StoreResult<Vec<Router>> {
        self.backend.read(|sql| sql.routers())
    }

    fn router(&self, id_or_name: &str) -> StoreResult<Router> {
        self.backend.read(|sql| router(sql, id_or_name))
    }

    fn add_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.write(|sql| {
            let router = router(sql, router_id)?;
            let network = network(sql, network_id)?;
            let mut attached = Vec::new();
            for id in &router.networks {
                attached.extend(sql.network(id)?);
            }
            check_attachable(&network, &attached)?;
            sql.attach_network(&router.id, &network.id)?;
            sql.log_change(ChangeKind::Router, &router.id)
        })
    }

    fn remove_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.write(|sql| {
            let router = router(sql, router_id)?;
            let network = network(sql, network_id)?;
            if !sql.detach_router_network(&router.id, &network.id)? {
                return Err(StoreError::Invalid(format!(
                    "network {} is not attached to router {}: nothing to remove (`router show \
                     {}` lists its networks)",
                    network.name, router.name, router.id
                )));
            }
            sql.log_change(ChangeKind::Router, &router.id)
        })
    }

    fn delete_router(&self, id: &str) -> StoreResult<()> {
        self.write(|sql| {
            let router = router(sql, id)?;
            refuse_router_in_use(sql, &router)?;
            sql.delete_router(&router.id)?;
            sql.log_change(ChangeKind::Router, &router.id)
        })
    }

    fn create_instance(
        &self,
        new: &NewInstance,
        first_port: &NewPort,
    ) -> StoreResult<(Instance, Port)> {
        let checked = CheckedInstance::new(new, first_port)?;
        let (ec2_id, port) = self.write(|sql| checked.insert(sql, &mut Taken::default()))?;
        Ok(checked.into_record(ec2_id, port))
    }

    fn create_instances(&self, batch: &[(NewInstance, NewPort)]) -> StoreResult<usize> {
        let checked = batch
            .iter()
            .map(|(new, port)| CheckedInstance::new(new, port))
            .collect::<StoreResult<Vec<_>>>()?;
        self.write(|sql| {
            // Each network's taken addresses are read once for the whole batch, not once per
            // instance (a bulk registration of thousands on a network of a million ports).
            let mut taken = Taken::default();
            for instance in &checked {
                instance.insert(sql, &mut taken)?;
            }
            Ok(checked.len())
        })
    }

    fn instances(&self) -> StoreResult<Vec<Instance>> {
        self.backend.read(|sql| sql.instances())
    }

    fn instance(&self, id_or_name: &str) -> StoreResult<Instance> {
        self.backend.read(|sql| instance(sql, id_or_name))
    }

    fn instance_by_uuid(&self, uuid: &str) -> StoreResult<Option<Instance>> {
        self.backend.read(|sql| sql.instance(uuid))
    }

    fn delete_instance(&self, uuid: &str) -> StoreResult<()> {
        self.write(|sql| {
            let instance = instance(sql, uuid)?;
            for port in sql.instance_ports(&instance.uuid)? {
                sql.delete_port(&port.id)?;
                sql.log_change(ChangeKind::Port, &port.id)?;
            }
            sql.delete_instance(&instance.uuid)?;
            sql.log_change(ChangeKind::Instance, &instance.uuid)
        })
    }

    fn set_password(
        &self,
        uuid: &str,
        ec2_id: Option<i64>,
        password: &str,
    ) -> StoreResult<PasswordSet> {
        validate::password("password", password)?;
        self.write(|sql| {
            if sql.set_password_if_unset(uuid, ec2_id, password)? {
                sql.log_change(ChangeKind::Instance, uuid)?;
                // Under the write lock: the newest change is this one.
                let change = sql.last_change()?;
                return Ok(PasswordSet::Stored { change });
            }
            match sql.instance(uuid)? {
                Some(instance) if ec2_id.is_none_or(|ec2_id| ec2_id == instance.ec2_id) => {
                    Ok(PasswordSet::AlreadySet)
                }
                _ => Ok(PasswordSet::NoInstance),
            }
        })
    }

    fn clear_password(&self, uuid: &str) -> StoreResult<bool> {
        self.write(|sql| {
            let instance = instance(sql, uuid)?;
            if !sql.clear_password(&instance.uuid)? {
                return Ok(false);
            }
            sql.log_change(ChangeKind::Instance, &instance.uuid)?;
            Ok(true)
        })
    }

    fn create_port(&self, new: &NewPort) -> StoreResult<Port> {
        let mac = new.mac.as_deref().map(validate::mac).transpose()?;
        let created = clock::now();
        self.write(|sql| {
            let instance = instance(sql, &new.instance_id)?;
            let owner = Owner {
                uuid: &instance.uuid,
                project: &instance.project,
            };
            let ips: Vec<IpAddr> = new.ip.into_iter().chain(new.second_ip).collect();
            let port = add_port(
                sql,
                &mut Taken::default(),
                &new.network_id,
                &ips,
                mac.as_deref(),
                &owner,
                &created,
            )?;
            // The instance's network_data.json changed.
            sql.log_change(ChangeKind::Instance, &instance.uuid)?;
            Ok(port)
        })
    }

    fn ports(&self) -> StoreResult<Vec<Port>> {
        self.backend.read(|sql| sql.ports())
    }

    fn port(&self, id: &str) -> StoreResult<Port> {
        self.backend.read(|sql| port(sql, id))
    }

    fn delete_port(&self, id: &str) -> StoreResult<()> {
        self.write(|sql| {
            let port = port(sql, id)?;
            sql.delete_port(&port.id)?;
            sql.log_change(ChangeKind::Port, &port.id)?;
            sql.log_change(ChangeKind::Instance, &port.instance_id)
        })
    }

    fn instance_ports(&self, uuid: &str) -> StoreResult<Vec<(Port, Network)>> {
        self.backend.read(|sql| {
            let mut out = Vec::new();
            for port in sql.instance_ports(uuid)? {
                let network = sql.network(&port.network_id)?.ok_or_else(|| {
                    StoreError::Backend(format!(
                        "port {} refers to network {} which does not exist",
                        port.id, port.network_id
                    ))
                })?;
                out.push((port, network));
            }
            Ok(out)
        })
    }

    fn find_ports(&self, ip: IpAddr, network_ids: &[String]) -> StoreResult<Vec<Port>> {
        if network_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend
            .read(|sql| sql.ports_with_ip(ip, Some(network_ids)))
    }

    fn find_ports_behind_router(&self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>> {
        self.backend
            .read(|sql| sql.ports_behind_router(ip, router_id))
    }

    fn find_ports_by_ip(&self, ip: IpAddr) -> StoreResult<Vec<Port>> {
        self.backend.read(|sql| sql.ports_with_ip(ip, None))
    }

    fn last_change(&self) -> StoreResult<i64> {
        self.backend.read(|sql| sql.last_change())
    }

    fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>> {
        self.backend.read(|sql| sql.changes_since(seq))
    }

    fn snapshot(&self, visit: &mut dyn FnMut(Record) -> StoreResult<()>) -> StoreResult<i64> {
        self.backend.read_snapshot(|sql| {
            // Each attempt (a retry on a new connection is one) starts the reader afresh.
            visit(Record::Start)?;
            let seq = sql.last_change()?;
            for network in sql.networks()? {
                visit(Record::Network(network))?;
            }
            for router in sql.routers()? {
                visit(Record::Router(router))?;
            }
            sql.instances_with_ports(None, &mut |instance, ports| {
                visit(Record::Instance(instance, ports))
            })?;
            Ok(seq)
        })
    }

    fn changes_after(&self, seq: i64, max: usize) -> StoreResult<Feed> {
        if self.backend.follow_replacement()? {
            return Ok(Feed::Gap);
        }
        let feed = self.backend.read_snapshot(|sql| {
            let last = sql.last_change()?;
            if last == seq {
                return Ok(Feed::UpToDate);
            }
            if last < seq || sql.oldest_change()? > seq + 1 {
                return Ok(Feed::Gap);
            }
            let logged = sql.changes_limited(seq, max.saturating_add(1))?;
            if logged.len() > max {
                return Ok(Feed::TooMany);
            }
            let mut changes = Vec::with_capacity(logged.len());
            for row in logged {
                match row.known() {
                    Ok(change) => changes.push(change),
                    Err(unknown) => return Ok(Feed::Unknown(unknown)),
                }
            }
            let kinds = |kind| changes.iter().any(|change: &Change| change.kind == kind);
            let networks = if kinds(ChangeKind::Network) {
                sql.changed_networks(seq)?
            } else {
                Vec::new()
            };
            let routers = if kinds(ChangeKind::Router) {
                sql.changed_routers(seq)?
            } else {
                Vec::new()
            };
            let mut instances = Vec::new();
            if kinds(ChangeKind::Instance) || kinds(ChangeKind::Port) {
                sql.instances_with_ports(Some(seq), &mut |instance, ports| {
                    instances.push((instance, ports));
                    Ok(())
                })?;
            }
            Ok(Feed::Batch(Batch {
                through: last,
                changes,
                networks,
                routers,
                instances,
            }))
        });
        // The read may have met the replacement itself (PostgreSQL: its connection was lost
        // and the new one reached a database made again), and then read, or failed to read,
        // another registry's log after this one's sequence number.
        if self.backend.follow_replacement()? {
            return Ok(Feed::Gap);
        }
        feed
    }

    fn listen(&self) -> StoreResult<Option<Box<dyn Wakeups>>> {
        self.backend.listen()
    }
}

/// An instance and its first port, checked and ready to insert (by `create_instance` or
/// `create_instances`).
struct CheckedInstance {
    new: NewInstance,
    mac: Option<String>,
    network_key: String,
    ips: Vec<IpAddr>,
    created: String,
}

impl CheckedInstance {
    fn new(new: &NewInstance, first_port: &NewPort) -> StoreResult<Self> {
        let uuid = validate::new_instance(new)?;
        let mac = first_port.mac.as_deref().map(validate::mac).transpose()?;
        Ok(Self {
            new: NewInstance {
                uuid,
                ..new.clone()
            },
            mac,
            network_key: first_port.network_id.clone(),
            ips: first_port
                .ip
                .into_iter()
                .chain(first_port.second_ip)
                .collect(),
            created: clock::now(),
        })
    }

    /// Inserts the instance and its port (its addresses allocated around `taken`) and logs
    /// both: (ec2_id, port).
    fn insert(&self, sql: &mut dyn Sql, taken: &mut Taken) -> StoreResult<(i64, Port)> {
        let uuid = &self.new.uuid;
        if sql.instance(uuid)?.is_some() {
            return Err(StoreError::Conflict(format!(
                "instance {uuid} already exists: omit --uuid to get a new one"
            )));
        }
        let ec2_id = sql.insert_instance(&self.new, &self.created)?;
        let owner = Owner {
            uuid,
            project: &self.new.project,
        };
        let port = add_port(
            sql,
            taken,
            &self.network_key,
            &self.ips,
            self.mac.as_deref(),
            &owner,
            &self.created,
        )?;
        sql.log_change(ChangeKind::Instance, uuid)?;
        Ok((ec2_id, port))
    }

    fn into_record(self, ec2_id: i64, port: Port) -> (Instance, Port) {
        let new = self.new;
        let instance = Instance {
            uuid: new.uuid,
            ec2_id,
            project: new.project,
            name: new.name,
            hostname: new.hostname,
            availability_zone: new.availability_zone,
            launch_index: new.launch_index,
            key_pairs: new.key_pairs,
            user_data: new.user_data,
            meta: new.meta,
            admin_pass: new.admin_pass,
            password: None,
            created: self.created,
        };
        (instance, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_in_any_form_validate_takes_is_looked_up_as_stored() {
        let stored = "0123abcd-0123-4567-89ab-0123456789ab";
        for key in [
            stored,
            "0123ABCD-0123-4567-89AB-0123456789AB",
            "0123abcd0123456789ab0123456789ab",
            "{0123abcd-0123-4567-89ab-0123456789ab}",
            "urn:uuid:0123abcd-0123-4567-89ab-0123456789ab",
        ] {
            assert_eq!(validate::uuid(key).unwrap(), stored, "{key}");
            assert_eq!(lookup_id(key).as_deref(), Some(stored), "{key}");
        }
        assert_eq!(lookup_id("web").as_deref(), Some("web"));
        assert_eq!(lookup_id("we\0b"), None);
    }
}
