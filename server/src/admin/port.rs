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
            let port = store.create_port(&NewPort {
                network_id: network,
                ip,
                second_ip,
                mac,
                instance_id: instance,
            })?;
            show(store, &port, output)
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
        PortCommand::Show { port, output } => show(store, &store.port(&port)?, output),
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

fn show(store: &dyn Store, port: &Port, output: Output) -> anyhow::Result<()> {
    if output.json {
        return output::json(port);
    }
    let names = Names::load(store)?;
    output::fields(&[
        ("id", port.id.clone()),
        (
            "network",
            format!("{} ({})", names.network(&port.network_id), port.network_id),
        ),
        ("ip", ips_text(port)),
        ("mac", port.mac.clone()),
        (
            "instance",
            format!(
                "{} ({})",
                names.instance(&port.instance_id),
                port.instance_id
            ),
        ),
        ("project", port.project.clone()),
        ("created", port.created.clone()),
    ])
}
