//! The row-level statements (`Sql`) once for both backends, on top of what a backend's
//! connection does: run a [`Statement`] with [`Param`]s and read the rows it returns ([`Driver`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::error::{StoreError, StoreResult};
use super::model::{Change, ChangeKind, HostBridge, Instance, Network, NewInstance, Port, Router};
use super::rows::{Columns, FromRow, LoggedChange, Param, to_json};
use super::sql::Sql;
use super::statements::{self as st, Statement};

/// A backend's connection (or transaction) as the shared statements use it.
pub trait Driver {
    /// Runs a statement that returns no rows; how many rows it changed.
    fn execute(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<u64>;

    /// Runs a query; each row read as a `T`.
    fn query<T: FromRow>(&mut self, sql: Statement, params: &[Param<'_>]) -> StoreResult<Vec<T>>;

    /// Runs a query and hands each row to `visit` as it arrives, without collecting them
    /// (a snapshot of a million instances).
    fn query_each(
        &mut self,
        sql: Statement,
        params: &[Param<'_>],
        visit: &mut dyn FnMut(&dyn Columns) -> StoreResult<()>,
    ) -> StoreResult<()>;

    /// Ports with this IP on any of these networks (at least one): the one statement whose
    /// text the dialects write differently (a list parameter against `IN (…)`).
    fn ports_on_networks(&mut self, ip: &str, network_ids: &[String]) -> StoreResult<Vec<Port>>;

    /// Tells other servers that changes up to `seq` will be committed with this transaction
    /// (PostgreSQL's `NOTIFY`); nothing where they poll.
    fn announce(&mut self, _seq: i64) -> StoreResult<()> {
        Ok(())
    }
}

/// Streams instance-with-port rows as (instance, its ports), grouping consecutive rows of one
/// instance.
fn each_instance<D: Driver>(
    driver: &mut D,
    sql: Statement,
    params: &[Param<'_>],
    visit: &mut dyn FnMut(Instance, Vec<Port>) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut current: Option<(Instance, Vec<Port>)> = None;
    driver.query_each(sql, params, &mut |row| {
        let (instance, port) = <(Instance, Option<Port>)>::from_row(row)?;
        match &mut current {
            Some((held, ports)) if held.uuid == instance.uuid => ports.extend(port),
            _ => {
                if let Some((done, ports)) = current.take() {
                    visit(done, ports)?;
                }
                current = Some((instance, port.into_iter().collect()));
            }
        }
        Ok(())
    })?;
    match current {
        Some((done, ports)) => visit(done, ports),
        None => Ok(()),
    }
}

/// The first row of a query, if any.
fn first<D: Driver, T: FromRow>(
    driver: &mut D,
    sql: Statement,
    params: &[Param<'_>],
) -> StoreResult<Option<T>> {
    Ok(driver.query(sql, params)?.into_iter().next())
}

/// Routers with their networks: one more statement per router.
fn with_networks<D: Driver>(driver: &mut D, mut routers: Vec<Router>) -> StoreResult<Vec<Router>> {
    for router in &mut routers {
        router.networks = driver.query(st::ROUTER_NETWORKS, &[Param::Text(&router.id)])?;
    }
    Ok(routers)
}

impl<D: Driver> Sql for D {
    fn network(&mut self, id: &str) -> StoreResult<Option<Network>> {
        first(self, st::NETWORK, &[Param::Text(id)])
    }

    fn networks_named(&mut self, name: &str) -> StoreResult<Vec<Network>> {
        self.query(st::NETWORKS_NAMED, &[Param::Text(name)])
    }

    fn networks(&mut self) -> StoreResult<Vec<Network>> {
        self.query(st::NETWORKS, &[])
    }

    fn insert_network(&mut self, network: &Network) -> StoreResult<()> {
        let cidr = network.cidr.to_string();
        let gateway = network.gateway.map(|ip| ip.to_string());
        let dhcp_ip = network.dhcp_ip.map(|ip| ip.to_string());
        let second = network.second_subnet;
        let second_cidr = second.map(|subnet| subnet.cidr.to_string());
        let second_gateway = second.and_then(|subnet| subnet.gateway.map(|ip| ip.to_string()));
        let second_dhcp_ip = second.and_then(|subnet| subnet.dhcp_ip.map(|ip| ip.to_string()));
        self.execute(
            st::INSERT_NETWORK,
            &[
                Param::Text(&network.id),
                Param::Text(&network.name),
                Param::Text(&network.project),
                Param::Text(&cidr),
                Param::TextOrNull(gateway.as_deref()),
                Param::TextOrNull(dhcp_ip.as_deref()),
                Param::Flag(network.isolated),
                Param::IntOrNull(network.mtu.map(i64::from)),
                Param::Text(&network.created),
                Param::TextOrNull(second_cidr.as_deref()),
                Param::TextOrNull(second_gateway.as_deref()),
                Param::TextOrNull(second_dhcp_ip.as_deref()),
                Param::TextOrNull(network.ipv6_address_mode.map(|mode| mode.as_str())),
                Param::TextOrNull(network.host.as_ref().and_then(HostBridge::libvirt_network)),
                Param::TextOrNull(network.host.as_ref().and_then(HostBridge::bridge)),
            ],
        )
        .map(drop)
    }

    fn delete_network(&mut self, id: &str) -> StoreResult<()> {
        self.execute(st::DELETE_NETWORK, &[Param::Text(id)])
            .map(drop)
    }

    fn router(&mut self, id: &str) -> StoreResult<Option<Router>> {
        let found = self.query(st::ROUTER, &[Param::Text(id)])?;
        Ok(with_networks(self, found)?.pop())
    }

    fn routers_named(&mut self, name: &str) -> StoreResult<Vec<Router>> {
        let found = self.query(st::ROUTERS_NAMED, &[Param::Text(name)])?;
        with_networks(self, found)
    }

    /// Two statements whatever the number of routers: `all` lists them every second.
    fn routers(&mut self) -> StoreResult<Vec<Router>> {
        let mut routers: Vec<Router> = self.query(st::ROUTERS, &[])?;
        let mut attached: HashMap<String, Vec<String>> = HashMap::new();
        for (router_id, network_id) in self.query(st::ALL_ROUTER_NETWORKS, &[])? {
            attached.entry(router_id).or_default().push(network_id);
        }
        for router in &mut routers {
            router.networks = attached.remove(&router.id).unwrap_or_default();
        }
        Ok(routers)
    }

    fn routers_of_network(&mut self, network_id: &str) -> StoreResult<Vec<String>> {
        self.query(st::ROUTERS_OF_NETWORK, &[Param::Text(network_id)])
    }

    fn insert_router(&mut self, router: &Router) -> StoreResult<()> {
        self.execute(
            st::INSERT_ROUTER,
            &[
                Param::Text(&router.id),
                Param::Text(&router.name),
                Param::Text(&router.project),
                Param::Text(&router.created),
            ],
        )?;
        for network_id in &router.networks {
            self.attach_network(&router.id, network_id)?;
        }
        Ok(())
    }

    fn attach_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.execute(
            st::ATTACH_NETWORK,
            &[Param::Text(router_id), Param::Text(network_id)],
        )
        .map(drop)
    }

    fn detach_router_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<bool> {
        let removed = self.execute(
            st::DETACH_ROUTER_NETWORK,
            &[Param::Text(router_id), Param::Text(network_id)],
        )?;
        Ok(removed > 0)
    }

    fn delete_router(&mut self, id: &str) -> StoreResult<()> {
        self.execute(st::DETACH_ROUTER, &[Param::Text(id)])?;
        self.execute(st::DELETE_ROUTER, &[Param::Text(id)])
            .map(drop)
    }

    fn instance(&mut self, uuid: &str) -> StoreResult<Option<Instance>> {
        first(self, st::INSTANCE_BY_UUID, &[Param::Text(uuid)])
    }

    fn instances_named(&mut self, name: &str) -> StoreResult<Vec<Instance>> {
        self.query(st::INSTANCES_NAMED, &[Param::Text(name)])
    }

    fn instances(&mut self) -> StoreResult<Vec<Instance>> {
        self.query(st::INSTANCES, &[])
    }

    fn insert_instance(&mut self, new: &NewInstance, created: &str) -> StoreResult<i64> {
        let key_pairs = to_json(&new.key_pairs)?;
        let meta = to_json(&new.meta)?;
        let ec2_id = first(
            self,
            st::INSERT_INSTANCE,
            &[
                Param::Text(&new.uuid),
                Param::Text(&new.project),
                Param::Text(&new.name),
                Param::Text(&new.hostname),
                Param::TextOrNull(new.availability_zone.as_deref()),
                Param::Int(i64::from(new.launch_index)),
                Param::Text(&key_pairs),
                Param::BytesOrNull(new.user_data.as_deref()),
                Param::Text(&meta),
                Param::TextOrNull(new.admin_pass.as_deref()),
                Param::Text(created),
            ],
        )?;
        ec2_id.ok_or_else(|| {
            super::error::StoreError::Backend("INSERT … RETURNING gave no row".to_owned())
        })
    }

    fn delete_instance(&mut self, uuid: &str) -> StoreResult<()> {
        self.execute(st::DELETE_INSTANCE, &[Param::Text(uuid)])
            .map(drop)
    }

    fn set_password_if_unset(
        &mut self,
        uuid: &str,
        ec2_id: Option<i64>,
        password: &str,
    ) -> StoreResult<bool> {
        let changed = match ec2_id {
            Some(ec2_id) => self.execute(
                st::SET_PASSWORD_OF_IF_UNSET,
                &[Param::Text(password), Param::Text(uuid), Param::Int(ec2_id)],
            )?,
            None => self.execute(
                st::SET_PASSWORD_IF_UNSET,
                &[Param::Text(password), Param::Text(uuid)],
            )?,
        };
        Ok(changed == 1)
    }

    fn clear_password(&mut self, uuid: &str) -> StoreResult<bool> {
        Ok(self.execute(st::CLEAR_PASSWORD, &[Param::Text(uuid)])? == 1)
    }

    fn port(&mut self, id: &str) -> StoreResult<Option<Port>> {
        first(self, st::PORT, &[Param::Text(id)])
    }

    fn ports(&mut self) -> StoreResult<Vec<Port>> {
        self.query(st::PORTS, &[])
    }

    fn network_ports_oldest(&mut self, network_id: &str, limit: usize) -> StoreResult<Vec<Port>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            st::NETWORK_PORTS_OLDEST,
            &[Param::Text(network_id), Param::Int(limit)],
        )
    }

    fn network_port_count(&mut self, network_id: &str) -> StoreResult<usize> {
        let count: i64 =
            first(self, st::NETWORK_PORT_COUNT, &[Param::Text(network_id)])?.unwrap_or(0);
        usize::try_from(count).map_err(|_| {
            StoreError::Backend(format!(
                "the database counted {count} ports on network {network_id}"
            ))
        })
    }

    fn network_ips(&mut self, network_id: &str) -> StoreResult<HashSet<IpAddr>> {
        let mut ips = HashSet::new();
        self.query_each(st::NETWORK_IPS, &[Param::Text(network_id)], &mut |row| {
            ips.insert(IpAddr::from_row(row)?);
            Ok(())
        })?;
        Ok(ips)
    }

    fn instance_ports(&mut self, uuid: &str) -> StoreResult<Vec<Port>> {
        self.query(st::INSTANCE_PORTS, &[Param::Text(uuid)])
    }

    fn port_with_mac(&mut self, mac: &str) -> StoreResult<Option<Port>> {
        first(self, st::PORT_WITH_MAC, &[Param::Text(mac)])
    }

    fn ports_with_ip(
        &mut self,
        ip: IpAddr,
        network_ids: Option<&[String]>,
    ) -> StoreResult<Vec<Port>> {
        let ip = ip.to_string();
        match network_ids {
            None => self.query(st::PORTS_BY_IP, &[Param::Text(&ip)]),
            Some([]) => Ok(Vec::new()),
            Some(network_ids) => self.ports_on_networks(&ip, network_ids),
        }
    }

    fn ports_behind_router(&mut self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>> {
        self.query(
            st::PORTS_BEHIND_ROUTER,
            &[Param::Text(&ip.to_string()), Param::Text(router_id)],
        )
    }

    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.execute(
            st::INSERT_PORT,
            &[
                Param::Text(&port.id),
                Param::Text(&port.network_id),
                Param::Text(&port.mac),
                Param::Text(&port.ip.to_string()),
                Param::Text(&port.instance_id),
                Param::Text(&port.project),
                Param::Text(&port.created),
                Param::TextOrNull(port.second_ip.map(|ip| ip.to_string()).as_deref()),
            ],
        )
        .map(drop)
    }

    fn delete_port(&mut self, id: &str) -> StoreResult<()> {
        self.execute(st::DELETE_PORT, &[Param::Text(id)]).map(drop)
    }

    fn log_change(&mut self, kind: ChangeKind, id: &str) -> StoreResult<()> {
        self.execute(
            st::LOG_CHANGE,
            &[Param::Text(kind.as_str()), Param::Text(id)],
        )
        .map(drop)
    }

    fn last_change(&mut self) -> StoreResult<i64> {
        Ok(first(self, st::LAST_CHANGE, &[])?.unwrap_or(0))
    }

    fn changes_since(&mut self, seq: i64) -> StoreResult<Vec<Change>> {
        self.query(st::CHANGES_SINCE, &[Param::Int(seq)])
    }

    fn oldest_change(&mut self) -> StoreResult<i64> {
        Ok(first(self, st::OLDEST_CHANGE, &[])?.unwrap_or(0))
    }

    fn changes_limited(&mut self, seq: i64, limit: usize) -> StoreResult<Vec<LoggedChange>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            st::CHANGES_AFTER_LIMITED,
            &[Param::Int(seq), Param::Int(limit)],
        )
    }

    fn changed_networks(&mut self, seq: i64) -> StoreResult<Vec<Network>> {
        self.query(st::CHANGED_NETWORKS, &[Param::Int(seq)])
    }

    fn changed_routers(&mut self, seq: i64) -> StoreResult<Vec<Router>> {
        let mut routers: Vec<Router> = self.query(st::CHANGED_ROUTERS, &[Param::Int(seq)])?;
        let mut attached: HashMap<String, Vec<String>> = HashMap::new();
        for (router_id, network_id) in
            self.query::<(String, String)>(st::CHANGED_ROUTER_NETWORKS, &[Param::Int(seq)])?
        {
            attached.entry(router_id).or_default().push(network_id);
        }
        for router in &mut routers {
            router.networks = attached.remove(&router.id).unwrap_or_default();
        }
        Ok(routers)
    }

    fn instances_with_ports(
        &mut self,
        changed_after: Option<i64>,
        visit: &mut dyn FnMut(Instance, Vec<Port>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        match changed_after {
            None => each_instance(self, st::INSTANCES_WITH_PORTS, &[], visit),
            Some(seq) => each_instance(
                self,
                st::CHANGED_INSTANCES_WITH_PORTS,
                &[Param::Int(seq)],
                visit,
            ),
        }
    }

    fn announce(&mut self, seq: i64) -> StoreResult<()> {
        Driver::announce(self, seq)
    }

    fn prune_changes_through(&mut self, seq: i64) -> StoreResult<()> {
        self.execute(st::PRUNE_CHANGES_THROUGH, &[Param::Int(seq)])
            .map(drop)
    }
}
