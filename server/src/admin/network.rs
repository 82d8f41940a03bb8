//! `network create|list|show|delete`.

use clap::Subcommand;

use super::output::{self, Output};
use crate::store::{Network, NewNetwork, Store, validate};

/// `metaboot-server network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with one subnet.
    Create {
        name: String,
        /// The subnet, e.g. 198.18.0.0/24.
        #[arg(long)]
        cidr: String,
        /// The router's address on it (default: the first host address).
        #[arg(long)]
        gateway: Option<String>,
        /// The DHCP port's address (default: the second host address).
        #[arg(long = "dhcp-ip")]
        dhcp_ip: Option<String>,
        #[arg(long, default_value = "admin")]
        project: String,
        /// No router: metadata is served from the DHCP namespace.
        #[arg(long)]
        isolated: bool,
        #[arg(long)]
        mtu: Option<u32>,
        /// No DHCP: ports get static addresses, carried to guests in network_data.json
        /// (`ipv4` with address, netmask and routes) and applied by their guest agent.
        #[arg(long = "no-dhcp", conflicts_with_all = ["dhcp_ip", "isolated"])]
        no_dhcp: bool,
        #[command(flatten)]
        output: Output,
    },
    /// List networks.
    List(Output),
    /// Show one network (by id or unique name).
    Show {
        network: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a network (refused while ports are on it; detached from its routers).
    Delete { network: String },
}

/// Runs one `network` command against `store`.
pub fn run(store: &dyn Store, cmd: NetworkCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Create {
            name,
            cidr,
            gateway,
            dhcp_ip,
            project,
            isolated,
            mtu,
            no_dhcp,
            output,
        } => {
            let new = NewNetwork {
                name,
                project,
                cidr: validate::parse_cidr(&cidr)?,
                gateway: gateway
                    .map(|ip| validate::parse_ip("--gateway", &ip))
                    .transpose()?,
                dhcp_ip: dhcp_ip
                    .map(|ip| validate::parse_ip("--dhcp-ip", &ip))
                    .transpose()?,
                isolated,
                mtu,
                no_dhcp,
            };
            let network = store.create_network(&new)?;
            show(&network, output)
        }
        NetworkCommand::List(output) => {
            let networks = store.networks()?;
            if output.json {
                return output::json(&networks);
            }
            let rows: Vec<Vec<String>> = networks
                .iter()
                .map(|n| {
                    vec![
                        n.id.clone(),
                        n.name.clone(),
                        n.project.clone(),
                        n.cidr.to_string(),
                        output::or_dash(n.gateway),
                        output::or_dash(n.dhcp_ip),
                        if n.isolated { "isolated" } else { "routed" }.to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "NAME", "PROJECT", "CIDR", "GATEWAY", "DHCP", "MODE"],
                &rows,
            )
        }
        NetworkCommand::Show { network, output } => show(&store.network(&network)?, output),
        NetworkCommand::Delete { network } => {
            let network = store.network(&network)?;
            store.delete_network(&network.id)?;
            output::line(&format!(
                "deleted network {} ({})",
                network.name, network.id
            ))
        }
    }
}

fn show(network: &Network, output: Output) -> anyhow::Result<()> {
    if output.json {
        return output::json(network);
    }
    output::fields(&[
        ("id", network.id.clone()),
        ("name", network.name.clone()),
        ("project", network.project.clone()),
        ("cidr", network.cidr.to_string()),
        ("gateway", output::or_dash(network.gateway)),
        (
            "dhcp_ip",
            network.dhcp_ip.map_or_else(
                || "none (no DHCP: static ports)".to_owned(),
                |ip| ip.to_string(),
            ),
        ),
        (
            "mode",
            if network.isolated {
                "isolated (metadata from the DHCP namespace)"
            } else {
                "routed (metadata from the router namespace)"
            }
            .to_owned(),
        ),
        ("mtu", output::or_dash(network.mtu)),
        ("created", network.created.clone()),
    ])
}
