//! Keeping one proxy listener per router namespace (`qrouter-<id>`, `[::]:9697`, both
//! families) and per address of each isolated network's DHCP namespace (`qdhcp-<id>`, the
//! metadata addresses on port 80, each on a network with a subnet of its family; the IPv6
//! one bound on the interface holding it), following the registry. A missing namespace is
//! logged once and retried; a namespace that was deleted and made again is noticed (its inode
//! changes) and served anew, and so is an IPv6 address whose interface was replaced inside the
//! same namespace (a DHCP port plugged again has a new index). An address another server holds
//! when `all` starts stops it with an error; one taken later is logged and retried.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::host::HostBridges;
use crate::follow::ChangeListener;
use crate::http::ServerLimits;
use crate::http::listen::{link_local_holders, netns_path, tcp_listeners_in};
use crate::leases::HostLeases;
use crate::model::ReadModel;
use crate::proxy::{Forward, ProxyHandler, ProxyScope};
use crate::runtime::Workers;
use crate::store::{Change, ChangeKind};

/// How often missing namespaces are retried and replaced ones noticed.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// Prefix of router namespaces (Neutron's L3 agent).
pub const ROUTER_NETNS_PREFIX: &str = "qrouter-";
/// Prefix of DHCP namespaces (Neutron's DHCP agent).
pub const DHCP_NETNS_PREFIX: &str = "qdhcp-";

/// Where one proxy listener lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    pub netns: String,
    pub listen: SocketAddr,
    pub scope: ProxyScope,
}

/// The listeners the registry (as the read model holds it) asks for: one per router, one per
/// isolated network and address of `isolated_listen` of a family the network has a subnet of
/// (no `fe80::a9fe:a9fe` on an IPv4-only network, as Neutron adds it only with an IPv6
/// subnet; no `169.254.169.254` on an IPv6-only one).
pub fn placements(
    model: &ReadModel,
    router_listen: SocketAddr,
    isolated_listen: &[SocketAddr],
) -> HashSet<Placement> {
    let mut wanted = HashSet::new();
    let (routers, isolated) = model.served_namespaces();
    for router in routers {
        wanted.insert(Placement {
            netns: format!("{ROUTER_NETNS_PREFIX}{router}"),
            listen: router_listen,
            scope: ProxyScope::Router(router),
        });
    }
    for network in isolated {
        for listen in isolated_listen {
            if !network.has_family_of(listen.ip()) {
                continue;
            }
            wanted.insert(Placement {
                netns: format!("{DHCP_NETNS_PREFIX}{}", network.id),
                listen: *listen,
                scope: ProxyScope::Network(network.id.clone()),
            });
        }
    }
    wanted
}

struct Running {
    /// One serving task per worker.
    tasks: Vec<JoinHandle<()>>,
    inode: Option<u64>,
    /// A link-local listener's address, bound on the interface of this index.
    link_local: Option<(Ipv6Addr, u32)>,
}

/// The link-local address and interface index a listener is bound on, if it is one.
fn link_local_of(bound: SocketAddr) -> Option<(Ipv6Addr, u32)> {
    match bound {
        SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() != 0 => {
            Some((*v6.ip(), v6.scope_id()))
        }
        _ => None,
    }
}

fn netns_inode(name: &str) -> Option<u64> {
    let path = netns_path(name).ok()?;
    std::fs::metadata(path).ok().map(|meta| meta.ino())
}

/// Wakes the supervisor when routers or networks change.
pub struct Wake(pub Arc<Notify>);

impl ChangeListener for Wake {
    fn changed(&self, changes: &[Change]) {
        if changes
            .iter()
            .any(|c| matches!(c.kind, ChangeKind::Router | ChangeKind::Network))
        {
            self.0.notify_one();
        }
    }

    fn lagged(&self) {
        self.0.notify_one();
    }
}

/// The supervisor of the proxy listeners.
pub struct Supervisor<F: Forward> {
    pub model: Arc<ReadModel>,
    /// The registry's location for logs (password redacted).
    pub registry: String,
    /// Each listener is served on every worker (one socket, a handle per worker).
    pub workers: Workers,
    pub forward: F,
    pub make_handler: Box<dyn Fn(ProxyScope, F) -> ProxyHandler<F> + Send + Sync>,
    pub limits: ServerLimits,
    pub router_listen: SocketAddr,
    /// Never empty (`Settings::resolve` refuses an empty list).
    pub isolated_listen: Vec<SocketAddr>,
    /// Host networks' leases, where their bridges are found too.
    pub leases: Arc<HostLeases>,
    pub wake: Arc<Notify>,
}

impl<F: Forward> Supervisor<F> {
    /// Runs until the task is dropped. Fails only at start, when every namespace's address is
    /// held by another server (a second `all` over the same registry), which would otherwise
    /// serve nothing. One namespace's address held (a haproxy left in one router) is logged
    /// and retried, as while running: the others are served meanwhile.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut running: HashMap<Placement, Running> = HashMap::new();
        let mut failing: HashMap<Placement, String> = HashMap::new();
        let mut first = true;
        // Dropped when `all` stops: takes the metadata address off the host bridges.
        let mut hosts = HostBridges::new(self.leases.clone(), RECONCILE_INTERVAL);
        loop {
            let wanted = placements(&self.model, self.router_listen, &self.isolated_listen);
            let in_use = self
                .reconcile(&wanted, &mut running, &mut failing, first)
                .await;
            if let Some(placement) = in_use {
                anyhow::bail!(
                    "failed to listen on {} in namespace {}: address already in use: \
                     another server listens there; stop it first",
                    placement.listen,
                    placement.netns
                );
            }
            hosts.reconcile(
                &self.model,
                &self.workers,
                self.limits,
                &*self.make_handler,
                &self.forward,
            );
            if first {
                tracing::info!(
                    registry = %self.registry,
                    router_listen = %self.router_listen,
                    isolated_listen = ?self.isolated_listen,
                    "serving every router and isolated network of the registry"
                );
            }
            first = false;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            }
        }
    }

    /// Starts and stops listeners to match `wanted`. With `stop_if_in_use` (at start), returns
    /// a placement whose address another server holds when every placement's address is held.
    async fn reconcile(
        &self,
        wanted: &HashSet<Placement>,
        running: &mut HashMap<Placement, Running>,
        failing: &mut HashMap<Placement, String>,
        stop_if_in_use: bool,
    ) -> Option<Placement> {
        // A link-local listener serves the interface it was bound on: one that is no longer
        // the address's holder (replaced, so with a new index) is bound anew.
        let link_local: Vec<(Placement, u32, (String, Ipv6Addr))> = running
            .iter()
            .filter_map(|(placement, listener)| {
                let (ip, index) = listener.link_local?;
                Some((placement.clone(), index, (placement.netns.clone(), ip)))
            })
            .collect();
        let moved: HashSet<Placement> = if link_local.is_empty() {
            HashSet::new()
        } else {
            let asked: Vec<(String, Ipv6Addr)> = link_local
                .iter()
                .map(|(_, _, asked)| asked.clone())
                .collect();
            let holders = tokio::task::spawn_blocking(move || link_local_holders(&asked))
                .await
                .unwrap_or_default();
            link_local
                .into_iter()
                .zip(holders)
                .filter(|((_, index, _), holder)| *holder != Some(*index))
                .map(|((placement, ..), _)| placement)
                .collect()
        };
        running.retain(|placement, listener| {
            let current = netns_inode(&placement.netns);
            let keep = wanted.contains(placement)
                && current.is_some()
                && current == listener.inode
                && !moved.contains(placement);
            if !keep {
                listener.tasks.iter().for_each(JoinHandle::abort);
                tracing::info!(netns = %placement.netns, listen = %placement.listen, "stopped serving");
            }
            keep
        });
        failing.retain(|placement, _| wanted.contains(placement));
        let mut in_use: Vec<(Placement, String)> = Vec::new();
        for placement in wanted {
            if running.contains_key(placement) {
                continue;
            }
            let inode = netns_inode(&placement.netns);
            let (netns, listen) = (placement.netns.clone(), placement.listen);
            let count = self.workers.count();
            let bound =
                tokio::task::spawn_blocking(move || tcp_listeners_in(Some(&netns), listen, count))
                    .await
                    .unwrap_or_else(|err| Err(std::io::Error::other(err.to_string())));
            match bound {
                Ok(listeners) => {
                    failing.remove(placement);
                    let bound = listeners
                        .first()
                        .and_then(|listener| listener.local_addr().ok())
                        .unwrap_or(placement.listen);
                    tracing::info!(netns = %placement.netns, listen = %bound, scope = ?placement.scope, workers = count, "serving");
                    let handler =
                        (self.make_handler)(placement.scope.clone(), self.forward.clone());
                    let tasks = self.workers.serve_tcp(listeners, self.limits, &handler);
                    running.insert(
                        placement.clone(),
                        Running {
                            tasks,
                            inode,
                            link_local: link_local_of(bound),
                        },
                    );
                }
                Err(err) => {
                    let text = err.to_string();
                    if err.kind() == std::io::ErrorKind::AddrInUse {
                        in_use.push((placement.clone(), text));
                        continue;
                    }
                    if failing.get(placement) != Some(&text) {
                        tracing::warn!(
                            netns = %placement.netns,
                            listen = %placement.listen,
                            error = %text,
                            "cannot serve this namespace yet (create it, e.g. `ip netns add {}`, and its address); retrying every {:?}",
                            placement.netns,
                            RECONCILE_INTERVAL
                        );
                        failing.insert(placement.clone(), text);
                    }
                }
            }
        }
        if stop_if_in_use && !in_use.is_empty() && in_use.len() == wanted.len() {
            // Every namespace's address held: another `all` holds them. Said once, by the caller.
            return in_use.into_iter().next().map(|(placement, _)| placement);
        }
        for (placement, text) in in_use {
            if failing.get(&placement) != Some(&text) {
                tracing::error!(
                    netns = %placement.netns,
                    listen = %placement.listen,
                    "another server listens on this namespace's metadata address (a haproxy \
                     of Neutron's, a second metaboot-server): stop it; retrying every {:?}",
                    RECONCILE_INTERVAL
                );
                failing.insert(placement, text);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewNetwork, NewRouter, Subnet};

    #[test]
    fn each_isolated_network_gets_the_addresses_of_its_families() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
        let isolated = |name: &str, cidr: &str, second: Option<&str>| {
            store
                .create_network(&NewNetwork {
                    name: name.into(),
                    project: "p".into(),
                    cidr: cidr.parse().unwrap(),
                    second_subnet: second.map(|cidr| Subnet {
                        cidr: cidr.parse().unwrap(),
                        gateway: None,
                        dhcp_ip: None,
                    }),
                    isolated: true,
                    ..NewNetwork::default()
                })
                .unwrap()
                .id
        };
        let four = isolated("four", "198.18.1.0/24", None);
        let six = isolated("six", "fdc6:1200:0:1::/64", None);
        let dual = isolated("dual", "198.18.2.0/24", Some("fdc6:1200:0:2::/64"));
        let routed = store
            .create_network(&NewNetwork {
                name: "routed".into(),
                project: "p".into(),
                cidr: "fdc6:1200:0:3::/64".parse().unwrap(),
                ..NewNetwork::default()
            })
            .unwrap();
        let router = store
            .create_router(&NewRouter {
                name: "r".into(),
                project: "p".into(),
                networks: vec![routed.id],
            })
            .unwrap();
        let model = ReadModel::load(store.as_ref()).unwrap();
        let router_listen: SocketAddr = "[::]:9697".parse().unwrap();
        let wanted = placements(&model, router_listen, &crate::all::DEFAULT_ISOLATED_LISTEN);
        let mut got: Vec<(String, String)> = wanted
            .iter()
            .map(|p| (p.netns.clone(), p.listen.to_string()))
            .collect();
        got.sort();
        let mut expected = vec![
            (format!("qdhcp-{four}"), "169.254.169.254:80".to_owned()),
            (format!("qdhcp-{six}"), "[fe80::a9fe:a9fe]:80".to_owned()),
            (format!("qdhcp-{dual}"), "169.254.169.254:80".to_owned()),
            (format!("qdhcp-{dual}"), "[fe80::a9fe:a9fe]:80".to_owned()),
            (format!("qrouter-{}", router.id), "[::]:9697".to_owned()),
        ];
        expected.sort();
        assert_eq!(got, expected);
    }
}
