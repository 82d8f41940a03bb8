//! `router create|add-network|remove-network|list|show|delete`.

use std::collections::HashMap;

use clap::Subcommand;

use super::output::{self, Output};
use crate::store::{Network, NewRouter, Router, Store};

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
    /// Detach one network from a router (the network and its instances stay).
    RemoveNetwork { router: String, network: String },
    /// List routers.
    List(Output),
    /// Show one router (by id or unique name).
    Show {
        router: String,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a router without networks (`remove-network` each first, as neutron wants its
    /// interfaces removed).
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
            // Read before the write, and the router made of ids: once the write succeeded the
            // command must too (an error would have the user run it again and make a second
            // router), so nothing after the write reads the registry.
            let networks = networks
                .iter()
                .map(|key| store.network(key))
                .collect::<Result<Vec<_>, _>>()?;
            let router = store.create_router(&NewRouter {
                name,
                project,
                networks: networks.iter().map(|n| n.id.clone()).collect(),
            })?;
            if output.json {
                return output::json(&router);
            }
            fields(&router, &described(networks))
        }
        RouterCommand::AddNetwork { router, network } => {
            let router = store.router(&router)?;
            let network = store.network(&network)?;
            store.add_router_network(&router.id, &network.id)?;
            output::line(&format!(
                "attached network {} ({}) to router {} ({})",
                network.name,
                network.cidrs(),
                router.name,
                router.id
            ))
        }
        RouterCommand::RemoveNetwork { router, network } => {
            let router = store.router(&router)?;
            let network = store.network(&network)?;
            store.remove_router_network(&router.id, &network.id)?;
            output::line(&format!(
                "removed network {} ({}) from router {} ({})",
                network.name,
                network.cidrs(),
                router.name,
                router.id
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

/// Network id → "name (cidrs)", for people.
fn network_names(store: &dyn Store) -> anyhow::Result<HashMap<String, String>> {
    Ok(described(store.networks()?))
}

/// Network id → "name (cidrs)" of these networks: every subnet of a dual-stack one.
fn described(networks: impl IntoIterator<Item = Network>) -> HashMap<String, String> {
    networks
        .into_iter()
        .map(|n| {
            let text = format!("{} ({})", n.name, n.cidrs());
            (n.id, text)
        })
        .collect()
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
    fields(router, &network_names(store)?)
}

/// Prints one router, its networks described by `names`.
fn fields(router: &Router, names: &HashMap<String, String>) -> anyhow::Result<()> {
    output::fields(&[
        ("id", router.id.clone()),
        ("name", router.name.clone()),
        ("project", router.project.clone()),
        ("networks", describe_networks(&router.networks, names)),
        ("created", router.created.clone()),
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
        let program = ["metaboot-server", "--db", db];
        let command = ["network", "create", "net1", "--cidr", "198.18.0.0/24"];
        crate::cli::run(crate::Cli::try_parse_from(program.iter().chain(&command)).unwrap())
            .unwrap();
        let inner = crate::store::open(db).unwrap();
        for json in [false, true] {
            let store = FailsAfterWrite::new(Arc::clone(&inner));
            let create = RouterCommand::Create {
                name: "r1".to_owned(),
                networks: vec!["net1".to_owned()],
                project: "admin".to_owned(),
                output: Output { json },
            };
            run(&store, create).unwrap();
            assert!(store.written());
        }
        let net1 = inner.network("net1").unwrap().id;
        let routers = inner.routers().unwrap();
        assert_eq!(routers.len(), 2, "{routers:?}");
        assert!(
            routers
                .iter()
                .all(|router| router.networks == [net1.clone()]),
            "{routers:?}"
        );
    }
}
