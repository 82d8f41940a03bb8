//! PostgreSQL statements: one `Sql` method per statement, prepared once per connection.

use std::net::IpAddr;

use ::postgres::GenericClient;

use super::conn::{PgSql, to_json};
use crate::store::sql::Sql;
use crate::store::{Change, ChangeKind, Instance, Network, NewInstance, Port, Router};
use crate::store::{StoreError, StoreResult};

macro_rules! network_select {
    () => {
        "SELECT id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, created FROM networks"
    };
}
macro_rules! router_select {
    () => {
        "SELECT r.id, r.name, r.project, r.created, \
         COALESCE(array_agg(rn.network_id ORDER BY rn.network_id) \
                  FILTER (WHERE rn.network_id IS NOT NULL), '{}') \
         FROM routers r LEFT JOIN router_networks rn ON rn.router_id = r.id"
    };
}
macro_rules! instance_select {
    () => {
        "SELECT ec2_id, uuid, project, name, hostname, availability_zone, launch_index, \
         key_pairs, user_data, meta, admin_pass, password, created FROM instances"
    };
}
macro_rules! port_select {
    () => {
        "SELECT id, network_id, mac, ip, instance_id, project, created FROM ports"
    };
}

impl<C: GenericClient> Sql for PgSql<'_, C> {
    fn network(&mut self, id: &str) -> StoreResult<Option<Network>> {
        Ok(self
            .networks_where(concat!(network_select!(), " WHERE id = $1"), &[&id])?
            .pop())
    }

    fn networks_named(&mut self, name: &str) -> StoreResult<Vec<Network>> {
        self.networks_where(
            concat!(network_select!(), " WHERE name = $1 ORDER BY seq"),
            &[&name],
        )
    }

    fn networks(&mut self) -> StoreResult<Vec<Network>> {
        self.networks_where(concat!(network_select!(), " ORDER BY seq"), &[])
    }

    fn insert_network(&mut self, network: &Network) -> StoreResult<()> {
        self.execute(
            "INSERT INTO networks (id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, \
             created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &network.id,
                &network.name,
                &network.project,
                &network.cidr.to_string(),
                &network.gateway.map(|ip| ip.to_string()),
                &network.dhcp_ip.map(|ip| ip.to_string()),
                &network.isolated,
                &network.mtu.map(i64::from),
                &network.created,
            ],
        )
        .map(drop)
    }

    fn delete_network(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM networks WHERE id = $1", &[&id])
            .map(drop)
    }

    fn router(&mut self, id: &str) -> StoreResult<Option<Router>> {
        Ok(self
            .routers_where(
                concat!(router_select!(), " WHERE r.id = $1 GROUP BY r.seq"),
                &[&id],
            )?
            .pop())
    }

    fn routers_named(&mut self, name: &str) -> StoreResult<Vec<Router>> {
        self.routers_where(
            concat!(
                router_select!(),
                " WHERE r.name = $1 GROUP BY r.seq ORDER BY r.seq"
            ),
            &[&name],
        )
    }

    fn routers(&mut self) -> StoreResult<Vec<Router>> {
        self.routers_where(
            concat!(router_select!(), " GROUP BY r.seq ORDER BY r.seq"),
            &[],
        )
    }

    fn routers_of_network(&mut self, network_id: &str) -> StoreResult<Vec<String>> {
        let rows = self.query(
            "SELECT router_id FROM router_networks WHERE network_id = $1 ORDER BY router_id",
            &[&network_id],
        )?;
        rows.iter().map(|row| self.get(row, 0)).collect()
    }

    fn insert_router(&mut self, router: &Router) -> StoreResult<()> {
        self.execute(
            "INSERT INTO routers (id, name, project, created) VALUES ($1, $2, $3, $4)",
            &[&router.id, &router.name, &router.project, &router.created],
        )?;
        for network_id in &router.networks {
            self.attach_network(&router.id, network_id)?;
        }
        Ok(())
    }

    fn attach_network(&mut self, router_id: &str, network_id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO router_networks (router_id, network_id) VALUES ($1, $2)",
            &[&router_id, &network_id],
        )
        .map(drop)
    }

    fn detach_network(&mut self, network_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM router_networks WHERE network_id = $1",
            &[&network_id],
        )
        .map(drop)
    }

    fn delete_router(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM router_networks WHERE router_id = $1", &[&id])?;
        self.execute("DELETE FROM routers WHERE id = $1", &[&id])
            .map(drop)
    }

    fn instance(&mut self, uuid: &str) -> StoreResult<Option<Instance>> {
        Ok(self
            .instances_where(concat!(instance_select!(), " WHERE uuid = $1"), &[&uuid])?
            .pop())
    }

    fn instances_named(&mut self, name: &str) -> StoreResult<Vec<Instance>> {
        self.instances_where(
            concat!(instance_select!(), " WHERE name = $1 ORDER BY ec2_id"),
            &[&name],
        )
    }

    fn instances(&mut self) -> StoreResult<Vec<Instance>> {
        self.instances_where(concat!(instance_select!(), " ORDER BY ec2_id"), &[])
    }

    fn insert_instance(&mut self, new: &NewInstance, created: &str) -> StoreResult<i64> {
        let rows = self.query(
            "INSERT INTO instances (uuid, project, name, hostname, availability_zone, \
             launch_index, key_pairs, user_data, meta, admin_pass, password, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11) RETURNING ec2_id",
            &[
                &new.uuid,
                &new.project,
                &new.name,
                &new.hostname,
                &new.availability_zone,
                &i64::from(new.launch_index),
                &to_json(&new.key_pairs)?,
                &new.user_data,
                &to_json(&new.meta)?,
                &new.admin_pass,
                &created,
            ],
        )?;
        match rows.first() {
            Some(row) => self.get(row, 0),
            None => Err(StoreError::Backend(
                "INSERT … RETURNING gave no row".to_owned(),
            )),
        }
    }

    fn delete_instance(&mut self, uuid: &str) -> StoreResult<()> {
        self.execute("DELETE FROM instances WHERE uuid = $1", &[&uuid])
            .map(drop)
    }

    fn set_password_if_unset(&mut self, uuid: &str, password: &str) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE instances SET password = $1 \
             WHERE uuid = $2 AND (password IS NULL OR password = '')",
            &[&password, &uuid],
        )?;
        Ok(changed == 1)
    }

    fn port(&mut self, id: &str) -> StoreResult<Option<Port>> {
        Ok(self
            .ports_where(concat!(port_select!(), " WHERE id = $1"), &[&id])?
            .pop())
    }

    fn ports(&mut self) -> StoreResult<Vec<Port>> {
        self.ports_where(concat!(port_select!(), " ORDER BY seq"), &[])
    }

    fn network_ports(&mut self, network_id: &str) -> StoreResult<Vec<Port>> {
        self.ports_where(
            concat!(port_select!(), " WHERE network_id = $1 ORDER BY seq"),
            &[&network_id],
        )
    }

    fn instance_ports(&mut self, uuid: &str) -> StoreResult<Vec<Port>> {
        self.ports_where(
            concat!(port_select!(), " WHERE instance_id = $1 ORDER BY seq"),
            &[&uuid],
        )
    }

    fn port_with_mac(&mut self, mac: &str) -> StoreResult<Option<Port>> {
        Ok(self
            .ports_where(concat!(port_select!(), " WHERE mac = $1"), &[&mac])?
            .pop())
    }

    fn ports_with_ip(
        &mut self,
        ip: IpAddr,
        network_ids: Option<&[String]>,
    ) -> StoreResult<Vec<Port>> {
        let ip = ip.to_string();
        match network_ids {
            None => self.ports_where(
                concat!(port_select!(), " WHERE ip = $1 ORDER BY seq"),
                &[&ip],
            ),
            Some(network_ids) => self.ports_where(
                concat!(
                    port_select!(),
                    " WHERE ip = $1 AND network_id = ANY($2) ORDER BY seq"
                ),
                &[&ip, &network_ids],
            ),
        }
    }

    fn ports_behind_router(&mut self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>> {
        self.ports_where(
            "SELECT p.id, p.network_id, p.mac, p.ip, p.instance_id, p.project, p.created \
             FROM ports p JOIN router_networks r ON r.network_id = p.network_id \
             WHERE p.ip = $1 AND r.router_id = $2 ORDER BY p.seq",
            &[&ip.to_string(), &router_id],
        )
    }

    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.execute(
            "INSERT INTO ports (id, network_id, mac, ip, instance_id, project, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &port.id,
                &port.network_id,
                &port.mac,
                &port.ip.to_string(),
                &port.instance_id,
                &port.project,
                &port.created,
            ],
        )
        .map(drop)
    }

    fn delete_port(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM ports WHERE id = $1", &[&id])
            .map(drop)
    }

    fn log_change(&mut self, kind: ChangeKind, id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO changes (kind, id) VALUES ($1, $2)",
            &[&kind.as_str(), &id],
        )
        .map(drop)
    }

    fn last_change(&mut self) -> StoreResult<i64> {
        let rows = self.query("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])?;
        match rows.first() {
            Some(row) => self.get(row, 0),
            None => Ok(0),
        }
    }

    fn prune_changes_through(&mut self, seq: i64) -> StoreResult<()> {
        self.execute("DELETE FROM changes WHERE seq <= $1", &[&seq])
            .map(drop)
    }

    fn changes_since(&mut self, seq: i64) -> StoreResult<Vec<Change>> {
        let rows = self.query(
            "SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq",
            &[&seq],
        )?;
        rows.iter()
            .map(|row| {
                let seq: i64 = self.get(row, 0)?;
                let kind: String = self.get(row, 1)?;
                let kind = ChangeKind::parse(&kind).ok_or_else(|| {
                    StoreError::Backend(format!("change {seq} has an unknown kind {kind:?}"))
                })?;
                Ok(Change {
                    seq,
                    kind,
                    id: self.get(row, 2)?,
                })
            })
            .collect()
    }
}
