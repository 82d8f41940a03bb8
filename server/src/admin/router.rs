//! `router create|add-network|list|show|delete`.

use std::collections::HashMap;

use clap::Subcommand;

use super::output::{self, Output};
use crate::store::{NewRouter, Router, Store};

/// `metaboot-server router …`.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Create a router, optionally with networks behind it.
    Create {
        name: String,
        /// Attach a network (id or name); repeatable.
        #[arg(long = "network")]
        networks: Vec<String>,
        #[arg(long, default_value = "admin")]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Attach a network to a router.
    AddNetwork { router: String, network: String },
    /// List routers.
    List(Output),
    /// Show one router (by id or unique name).
    Show {
        router: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a router (its networks stay).
    Delete { router: String },
}

/// Runs one `router` command against `store`.
pub fn run(store: &dyn Store, cmd: RouterCommand) -> anyhow::Result<()> {
    match cmd {
        RouterCommand::Create {
            name,
            networks,
            project,
            output,
        } => {
            let router = store.create_router(&NewRouter {
                name,
                project,
                networks,
            })?;
            show(store, &router, output)
        }
        RouterCommand::AddNetwork { router, network } => {
            let router = store.router(&router)?;
            let network = store.network(&network)?;
            store.add_router_network(&router.id, &network.id)?;
            output::line(&format!(
                "attached network {} ({}) to router {} ({})",
                network.name, network.cidr, router.name, router.id
            ))
        }
        RouterCommand::List(output) => {
            let routers = store.routers()?;
            if output.json {
                return output::json(&routers);
            }
            let names = network_names(store)?;
            let rows: Vec<Vec<String>> = routers
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.project.clone(),
                        describe_networks(&r.networks, &names),
                    ]
                })
                .collect();
            output::table(&["ID", "NAME", "PROJECT", "NETWORKS"], &rows)
        }
        RouterCommand::Show { router, output } => show(store, &store.router(&router)?, output),
        RouterCommand::Delete { router } => {
            let router = store.router(&router)?;
            store.delete_router(&router.id)?;
            output::line(&format!("deleted router {} ({})", router.name, router.id))
        }
    }
}

/// Network id → "name (cidr)", for people.
fn network_names(store: &dyn Store) -> anyhow::Result<HashMap<String, String>> {
    Ok(store
        .networks()?
        .into_iter()
        .map(|n| (n.id, format!("{} ({})", n.name, n.cidr)))
        .collect())
}

fn describe_networks(ids: &[String], names: &HashMap<String, String>) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    ids.iter()
        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(store: &dyn Store, router: &Router, output: Output) -> anyhow::Result<()> {
    if output.json {
        return output::json(router);
    }
    let names = network_names(store)?;
    output::fields(&[
        ("id", router.id.clone()),
        ("name", router.name.clone()),
        ("project", router.project.clone()),
        ("networks", describe_networks(&router.networks, &names)),
        ("created", router.created.clone()),
    ])
}
