//! `port create|list|show|delete`.

use std::collections::HashMap;
use std::net::IpAddr;

use clap::Subcommand;

use super::output::{self, Output};
use crate::store::{NewPort, Port, Store, validate};

/// `metaboot-server port …`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Add a port (an address on a network) to an instance.
    Create {
        /// Network id or name.
        #[arg(long)]
        network: String,
        /// Instance uuid or name.
        #[arg(long)]
        instance: String,
        /// Its address (default: a free one); on a dual-stack network one per subnet.
        #[arg(long)]
        ip: Vec<String>,
        #[arg(long)]
        mac: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List ports.
    List(Output),
    /// Show one port (by id).
    Show {
        port: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a port.
    Delete { port: String },
}

/// Runs one `port` command against `store`.
pub fn run(store: &dyn Store, cmd: PortCommand) -> anyhow::Result<()> {
    match cmd {
        PortCommand::Create {
            network,
            instance,
            ip,
            mac,
            output,
        } => {
            let (ip, second_ip) = parse_ips(&ip)?;
            // Read before the write, and the port placed by ids: once the write succeeded the
            // command must too (an error would have the user run it again and add a second
            // port), so nothing after the write reads the registry.
            let network = store.network(&network)?;
            let instance = store.instance(&instance)?;
            let port = store.create_port(&NewPort {
                network_id: network.id,
                ip,
                second_ip,
                mac,
                instance_id: instance.uuid,
            })?;
            show(&port, &network.name, &instance.name, output)
        }
        PortCommand::List(output) => {
            let ports = store.ports()?;
            if output.json {
                return output::json(&ports);
            }
            let names = Names::load(store)?;
            let rows: Vec<Vec<String>> = ports
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        names.network(&p.network_id),
                        ips_text(p),
                        p.mac.clone(),
                        names.instance(&p.instance_id),
                    ]
                })
                .collect();
            output::table(&["ID", "NETWORK", "IP", "MAC", "INSTANCE"], &rows)
        }
        PortCommand::Show { port, output } => {
            let port = store.port(&port)?;
            // The names, each read alone (not every instance's record, user data and all); a
            // network or instance gone meanwhile shows its id.
            let network = store
                .network(&port.network_id)
                .map_or_else(|_| port.network_id.clone(), |network| network.name);
            let instance = store
                .instance_by_uuid(&port.instance_id)?
                .map_or_else(|| port.instance_id.clone(), |instance| instance.name);
            show(&port, &network, &instance, output)
        }
        PortCommand::Delete { port } => {
            let port = store.port(&port)?;
            store.delete_port(&port.id)?;
            output::line(&format!("deleted port {} ({})", port.id, ips_text(&port)))
        }
    }
}

/// The addresses of `--ip` (repeatable: one per subnet of a dual-stack network), as the
/// store takes them; the store matches each to the subnet of its family.
pub fn parse_ips(given: &[String]) -> anyhow::Result<(Option<IpAddr>, Option<IpAddr>)> {
    let ips = given
        .iter()
        .map(|ip| validate::parse_ip("--ip", ip))
        .collect::<Result<Vec<_>, _>>()?;
    match ips.as_slice() {
        [] => Ok((None, None)),
        [one] => Ok((Some(*one), None)),
        [first, second] => Ok((Some(*first), Some(*second))),
        _ => Err(crate::store::StoreError::Invalid(format!(
            "{} --ip given: a port has one address per subnet, at most two (IPv4 and IPv6)",
            ips.len()
        ))
        .into()),
    }
}

/// A port's addresses, comma-separated (`leased` for one learned from the DHCP leases).
fn ips_text(port: &Port) -> String {
    port.shown_ips().join(", ")
}

/// Display names of networks and instances, for tables.
struct Names {
    networks: HashMap<String, String>,
    instances: HashMap<String, String>,
}

impl Names {
    fn load(store: &dyn Store) -> anyhow::Result<Self> {
        Ok(Self {
            networks: store
                .networks()?
                .into_iter()
                .map(|n| (n.id, n.name))
                .collect(),
            instances: store
                .instances()?
                .into_iter()
                .map(|i| (i.uuid, i.name))
                .collect(),
        })
    }

    fn network(&self, id: &str) -> String {
        self.networks
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    fn instance(&self, uuid: &str) -> String {
        self.instances
            .get(uuid)
            .cloned()
            .unwrap_or_else(|| uuid.to_owned())
    }
}

/// Prints one port, its network's and instance's names given.
fn show(port: &Port, network: &str, instance: &str, output: Output) -> anyhow::Result<()> {
    if output.json {
        return output::json(port);
    }
    output::fields(&[
        ("id", port.id.clone()),
        ("network", format!("{network} ({})", port.network_id)),
        ("ip", ips_text(port)),
        ("mac", port.mac.clone()),
        ("instance", format!("{instance} ({})", port.instance_id)),
        ("project", port.project.clone()),
        ("created", port.created.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser as _;

    use super::*;
    use crate::admin::fails_after_write::FailsAfterWrite;

    #[test]
    fn create_succeeds_once_its_write_did_whatever_the_registry_does_next() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("registry.sqlite");
        let db = db.to_str().unwrap();
        for command in [
            &["network", "create", "net1", "--cidr", "198.18.0.0/24"][..],
            &["instance", "create", "vm1", "--network", "net1"],
        ] {
            let program = ["metaboot-server", "--db", db];
            let args = program.iter().chain(command);
            crate::cli::run(crate::Cli::try_parse_from(args).unwrap()).unwrap();
        }
        let inner = crate::store::open(db).unwrap();
        for json in [false, true] {
            let store = FailsAfterWrite::new(Arc::clone(&inner));
            let create = PortCommand::Create {
                network: "net1".to_owned(),
                instance: "vm1".to_owned(),
                ip: Vec::new(),
                mac: None,
                output: Output { json },
            };
            run(&store, create).unwrap();
            assert!(store.written());
        }
        let vm1 = inner.instance("vm1").unwrap().uuid;
        let ports = inner.ports().unwrap();
        assert_eq!(ports.len(), 3, "{ports:?}");
        assert!(
            ports.iter().all(|port| port.instance_id == vm1),
            "{ports:?}"
        );
    }
}
