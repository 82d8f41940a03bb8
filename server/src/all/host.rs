//! Serving host networks (`network create --libvirt-network NAME` or `--bridge BR`) in the
//! server's own namespace: for each, `169.254.169.254/32` is put on its bridge (as Neutron puts
//! it on a DHCP port) and a listener on `169.254.169.254:80` bound to that bridge takes the
//! guests' requests, which reach it through their default route to the host (no option 121,
//! no iptables). The guest is the connection's source address, as on every other path.
//!
//! A bridge that does not exist yet (a libvirt network not started) is logged once and
//! retried; a bridge made again (a new interface index) is served anew. The port is bound
//! before the address is put on the bridge, so a port another server holds leaves the bridge
//! untouched; such a network is logged once and tried again after the backoff of `crate::retry`.
//!
//! The address `all` puts on a bridge carries its label (`BRIDGE:mb`): at start, one a
//! previous run left on a bridge that serves no network now (`all` killed, then the network
//! deleted) is taken off. An address without the label, put there by anyone else, is never
//! touched. (Neutron owns the DHCP port it puts the address on and removes any address it did
//! not ask for, `init_l3` in its `interface.py`; a host bridge is not `all`'s to clean.) A network deleted
//! from the registry, and every network at a clean stop, takes its address off its bridge. A
//! listener whose serving ended by itself is logged, counted and bound again, after the
//! backoff of `retry.rs` when it keeps ending; while it waits, its network keeps its bridge
//! and the bridge its address, so that a stop or the network's deletion still takes the
//! address off, and a second network on that bridge does not take its place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

mod bounded;

use crate::http::ServerLimits;
use crate::http::listen::tcp_listeners_on;
use crate::leases::{HostLeases, chain};
use crate::metrics::Metrics;
use crate::model::ReadModel;
use crate::proxy::{Forward, ProxyHandler, ProxyScope};
use crate::retry::Backoff;
use crate::runtime::Workers;
use crate::store::HostBridge;

/// Where a host network is served: the IPv4 metadata address on port 80.
pub const HOST_LISTEN: SocketAddr = metaboot_proto::METADATA_IPV4_LISTEN;
/// The prefix the metadata address is put on a bridge with: the address alone.
pub const HOST_ADDRESS_PREFIX: u8 = 32;
/// The `ip` command (iproute2) that puts the address on a bridge and takes it off.
pub const IP_COMMAND: &str = "ip";
/// Longest an `ip addr` call may take before it is killed and the attempt counted failed: a
/// stop waits for the host pass under way (`all/host_pass.rs`) to take the address off the
/// bridges (`host/bounded.rs`). `ip` takes milliseconds unless another program holds the
/// kernel's routing lock.
pub const IP_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Suffix of the label `all` gives the address it puts on a bridge (`virbr0:mb`, shown by
/// `ip addr show`): an address with it is `all`'s own.
pub const ADDRESS_LABEL_SUFFIX: &str = ":mb";
/// Longest label the kernel keeps for an address (`IFNAMSIZ` less its NUL); `ip` takes a
/// label only as the device's name, alone or followed by a colon. A bridge whose name leaves
/// no room for the suffix (over 12 bytes) gets the address unlabelled, never swept at start.
pub const MAX_ADDRESS_LABEL_BYTES: usize = 15;
/// While putting the metadata address back on a bridge keeps failing the same way (every
/// pass, once a second), the failure is logged again at most this often; a new error, and
/// the address back, are logged at once.
pub const RESTORE_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// The label of the address `all` puts on `bridge`, when the name leaves room for it.
fn address_label(bridge: &str) -> Option<String> {
    let label = format!("{bridge}{ADDRESS_LABEL_SUFFIX}");
    (label.len() <= MAX_ADDRESS_LABEL_BYTES).then_some(label)
}

/// An interface holding the metadata address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    bridge: String,
    /// Under `all`'s label: `all` put it there.
    ours: bool,
}

impl Holder {
    /// The holder `getifaddrs` names `name`: an IPv4 address comes with its label, the
    /// interface's name alone or followed by a colon (an interface name has none).
    fn named(name: &str) -> Self {
        let bridge = name.split(':').next().unwrap_or(name);
        Self {
            bridge: bridge.to_owned(),
            ours: address_label(bridge).is_some_and(|label| label == name),
        }
    }
}

/// The bridges (each once) holding the address under `all`'s label while `serves` says they
/// serve no network: what a run stopped without cleaning up left there.
fn left_behind(holding: &[Holder], serves: impl Fn(&str) -> bool) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    for holder in holding {
        let bridge = holder.bridge.as_str();
        if holder.ours && !serves(bridge) && !found.contains(&bridge) {
            found.push(bridge);
        }
    }
    found
}

/// A served bridge the metadata address could not be put back on: what failed, and what of
/// it was logged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Restoring {
    /// The last attempt's error.
    error: String,
    /// Failed attempts in a row.
    attempts: u32,
    /// When the failure was last logged.
    logged: Instant,
}

impl Restoring {
    /// Records a failed attempt with `error` at `now` (`was` the bridge's record, if it was
    /// failing already); says whether to log it: the first failure, a new error, or the same
    /// one [`RESTORE_LOG_INTERVAL`] after it was last logged.
    fn failed(was: Option<Self>, error: String, now: Instant) -> (Self, bool) {
        match was {
            Some(was)
                if was.error == error
                    && now.saturating_duration_since(was.logged) < RESTORE_LOG_INTERVAL =>
            {
                let attempts = was.attempts + 1;
                (Self { attempts, ..was }, false)
            }
            was => {
                let attempts = was.map_or(1, |was| was.attempts + 1);
                let logged = now;
                (
                    Self {
                        error,
                        attempts,
                        logged,
                    },
                    true,
                )
            }
        }
    }
}

/// One host network being served, or waiting to be bound again on its bridge.
struct Served {
    bridge: Arc<str>,
    index: u32,
    /// The listener's tasks; none while it waits out its backoff after its serving ended by
    /// itself (the bridge keeps the address meanwhile).
    tasks: Vec<JoinHandle<()>>,
}

impl Served {
    /// Whether its listener is bound, not waiting to be bound again.
    fn listening(&self) -> bool {
        !self.tasks.is_empty()
    }
}

/// The metadata address on the bridges: which address and port, and the `ip` command that
/// puts it on and takes it off.
#[derive(Debug, Clone)]
struct Address {
    listen: SocketAddr,
    ip_command: PathBuf,
    /// How long one `ip` call may take ([`IP_COMMAND_TIMEOUT`]).
    ip_timeout: Duration,
}

impl Address {
    /// `169.254.169.254/32` as `ip` writes it.
    fn cidr(&self) -> String {
        format!("{}/{HOST_ADDRESS_PREFIX}", self.listen.ip())
    }

    /// Runs `ip addr VERB 169.254.169.254/32 dev BRIDGE`, with `label BRIDGE:mb` when it
    /// puts the address on (`replace`).
    fn ip_addr(&self, verb: &str, bridge: &str) -> Result<(), String> {
        let ip = self.ip_command.display();
        let mut command = Command::new(&self.ip_command);
        command.args(["addr", verb, &self.cidr(), "dev", bridge]);
        if verb == "replace"
            && let Some(label) = address_label(bridge)
        {
            command.args(["label", &label]);
        }
        let shown = format!("{ip} addr {verb} {} dev {bridge}", self.cidr());
        let finished = bounded::run(&mut command, self.ip_timeout, &shown)?;
        if finished.success {
            return Ok(());
        }
        Err(format!("{shown}: {}", finished.stderr.trim()))
    }

    /// Takes the address off `bridge`; a bridge already gone took it with it.
    fn remove(&self, bridge: &str) {
        if nix::net::if_::if_nametoindex(bridge).is_err() {
            return;
        }
        match self.ip_addr("del", bridge) {
            Ok(()) => {
                tracing::info!(bridge, address = %self.cidr(), "took the metadata address off the bridge")
            }
            Err(err) => {
                tracing::warn!(bridge, error = %err, "cannot take the metadata address off the bridge")
            }
        }
    }

    /// The interfaces that hold the address now, from one read of the host's interface
    /// addresses; `None` when they cannot be read.
    fn holders(&self) -> Option<Vec<Holder>> {
        let addresses = nix::ifaddrs::getifaddrs().ok()?;
        let wanted = self.listen.ip();
        Some(
            addresses
                .filter(|entry| {
                    entry
                        .address
                        .as_ref()
                        .and_then(|address| address.as_sockaddr_in())
                        .is_some_and(|v4| std::net::IpAddr::V4(v4.ip()) == wanted)
                })
                .map(|entry| Holder::named(&entry.interface_name))
                .collect(),
        )
    }
}

/// The host networks served, their addresses and listeners.
pub struct HostBridges {
    leases: Arc<HostLeases>,
    /// How often the caller reconciles (for the log line of a network waiting).
    retry: Duration,
    served: HashMap<String, Served>,
    /// The last problem logged per network, so a waiting one is logged once.
    failing: HashMap<String, String>,
    /// Networks whose listener failed, waiting before the next attempt.
    retry_after: Backoff<String>,
    /// Listeners that ended are counted there.
    metrics: Arc<Metrics>,
    address: Address,
    /// Whether the first pass took off what an earlier run left behind.
    swept: bool,
    /// Served bridges the address could not be put back on, so a failure that repeats at
    /// every pass is not logged at every pass.
    restoring: HashMap<Arc<str>, Restoring>,
}

impl HostBridges {
    /// Serves the host networks whose leases `leases` reads; `retry` is how often the caller
    /// calls [`HostBridges::reconcile`]; a listener that ends is counted in `metrics`.
    pub fn new(leases: Arc<HostLeases>, retry: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            leases,
            retry,
            served: HashMap::new(),
            failing: HashMap::new(),
            retry_after: Backoff::default(),
            metrics,
            address: Address {
                listen: HOST_LISTEN,
                ip_command: PathBuf::from(IP_COMMAND),
                ip_timeout: IP_COMMAND_TIMEOUT,
            },
            swept: false,
            restoring: HashMap::new(),
        }
    }

    /// Serves `listen` instead of [`HOST_LISTEN`], putting its address on the bridges with
    /// `ip_command` instead of [`IP_COMMAND`].
    pub fn serving(mut self, listen: SocketAddr, ip_command: PathBuf) -> Self {
        self.address = Address {
            listen,
            ip_command,
            ..self.address
        };
        self
    }

    /// Gives each `ip` call `bound` instead of [`IP_COMMAND_TIMEOUT`].
    #[cfg(test)]
    pub fn bounding_ip(mut self, bound: Duration) -> Self {
        self.address.ip_timeout = bound;
        self
    }

    /// Logs `problem` for `network` unless it was the last one logged for it; the next
    /// attempt is in `retry`.
    fn waiting(&mut self, network: &str, host: &HostBridge, problem: String, retry: Duration) {
        if self.failing.get(network) != Some(&problem) {
            tracing::warn!(network, host = %host.describe(), problem = %problem, "cannot serve this host network yet; retrying in {retry:?}");
            self.failing.insert(network.to_owned(), problem);
        }
    }

    /// The bridge of `host` and its interface index, or what is missing.
    fn locate(&self, host: &HostBridge) -> Result<(Arc<str>, u32), String> {
        let bridge = match self.leases.bridge_of(host) {
            Ok(Some(bridge)) => bridge,
            Ok(None) => {
                return Err(format!(
                    "no {}/{}.conf: start the libvirt network (virsh net-start)",
                    self.leases.dir().display(),
                    host.libvirt_network().unwrap_or_default()
                ));
            }
            Err(err) => return Err(chain(&err)),
        };
        match nix::net::if_::if_nametoindex(&*bridge) {
            Ok(index) => Ok((bridge, index)),
            Err(_) => Err(format!("bridge {bridge} does not exist here")),
        }
    }

    /// Serves every host network of the model whose bridge exists, stops serving the others.
    /// It blocks (`ip`, the leases): `all` runs it on a thread of its own (`all/host_pass.rs`).
    /// Not `async`: `Drop` takes off only the addresses `served` knows, so putting an address
    /// on and recording it must not be split.
    pub fn reconcile<F: Forward>(
        &mut self,
        model: &ReadModel,
        workers: &Workers,
        limits: ServerLimits,
        make_handler: &(dyn Fn(ProxyScope, F) -> ProxyHandler<F> + Send + Sync),
        forward: &F,
    ) {
        let mut wanted: HashMap<String, (Arc<str>, u32)> = HashMap::new();
        // The oldest first: of two networks on one bridge, the older one is served.
        let networks = model.host_networks();
        for (id, host) in &networks {
            match self.locate(host) {
                Ok(place) => {
                    wanted.insert(id.clone(), place);
                }
                Err(problem) => self.waiting(id, host, problem, self.retry),
            }
        }
        if !self.swept {
            self.swept = true;
            self.sweep(&wanted);
        }
        let now = Instant::now();
        let mut dropped: Vec<Arc<str>> = Vec::new();
        let mut stopped_by_itself: Vec<(String, Arc<str>)> = Vec::new();
        let retry_after = &mut self.retry_after;
        self.served.retain(|id, served| {
            let in_place = wanted
                .get(id)
                .is_some_and(|(bridge, index)| *bridge == served.bridge && *index == served.index);
            let ended = served.tasks.iter().any(JoinHandle::is_finished);
            if in_place && !ended {
                if served.listening() {
                    // Served since an earlier pass: a later failure starts its backoff over.
                    retry_after.succeeded(id);
                }
                return true;
            }
            served.tasks.iter().for_each(JoinHandle::abort);
            if in_place {
                // Kept, waiting to be bound again: the bridge keeps its address (the network
                // still wants it), and the network its bridge.
                served.tasks.clear();
                stopped_by_itself.push((id.clone(), served.bridge.clone()));
                return true;
            }
            tracing::info!(network = %id, bridge = %served.bridge, "stopped serving host network");
            dropped.push(served.bridge.clone());
            false
        });
        for (id, bridge) in stopped_by_itself {
            self.metrics.listener_ended();
            let wait = self.retry_after.failed(id.clone(), now);
            tracing::error!(
                network = %id,
                bridge = %bridge,
                times = self.retry_after.failures(&id),
                "this host network's listener stopped serving (the error before says why): binding it again in {wait:?}"
            );
        }
        self.failing
            .retain(|id, _| networks.iter().any(|(network, _)| network == id));
        self.retry_after
            .retain(|id| networks.iter().any(|(network, _)| network == id));
        self.restore_addresses();
        for bridge in dropped {
            // Another network served on the same bridge keeps the address.
            if !wanted.values().any(|(other, _)| *other == bridge) {
                self.address.remove(&bridge);
            }
        }
        for (id, host) in &networks {
            let Some((bridge, index)) = wanted.get(id).cloned() else {
                continue;
            };
            if self.served.get(id).is_some_and(Served::listening) {
                continue;
            }
            // The address and its listener on a bridge stand for one network: a second one's
            // guests would be looked up on the first and answered 404. The registry refuses a
            // second network of the same kind and name; a libvirt network and a `--bridge` can
            // still name one bridge. A network waiting to be bound again still holds it.
            let holder = self
                .served
                .iter()
                .find(|(other, served)| *other != id && served.bridge == bridge)
                .map(|(other, _)| other.clone());
            if let Some(other) = holder {
                self.waiting(
                    id,
                    host,
                    format!(
                        "bridge {bridge} already serves network {other}, and a bridge serves \
                         one network: move this network's instances there and delete it \
                         (`network delete`)"
                    ),
                    self.retry,
                );
                continue;
            }
            // Checked after the holder: a network waiting out its backoff still holds its bridge.
            if !self.retry_after.is_due(id, now) {
                continue;
            }
            let count = workers.count();
            let listen = self.address.listen;
            // On the caller's thread (an await here once left an address behind at a stop).
            // The port first, then the address: the listener binds before the bridge holds
            // the address (`tcp_listener_on`'s IP_FREEBIND), so a port another server holds
            // never puts the address on the bridge, nor takes it off again at every attempt.
            let bound = tcp_listeners_on(listen, Some(&bridge), count)
                .map_err(|err| format!("cannot listen on {listen} on bridge {bridge}: {err}"))
                .and_then(|listeners| self.address.ip_addr("replace", &bridge).map(|()| listeners));
            match bound {
                Ok(listeners) => {
                    self.failing.remove(id);
                    tracing::info!(network = %id, host = %host.describe(), bridge = %bridge, listen = %listen, workers = count, "serving host network");
                    let handler = make_handler(ProxyScope::Network(id.clone()), forward.clone());
                    let what = format!("host network {id}'s proxy (bridge {bridge}, {listen})");
                    let tasks = workers.serve_tcp(listeners, &what, limits, &handler);
                    self.served.insert(
                        id.clone(),
                        Served {
                            bridge,
                            index,
                            tasks,
                        },
                    );
                }
                Err(problem) => {
                    let retry = self.retry_after.failed(id.clone(), now);
                    self.waiting(id, host, problem, retry);
                }
            }
        }
    }

    /// At the first pass, before anything is served: takes the address off each bridge that
    /// holds it under `all`'s label and serves no host network of the registry. A run stopped
    /// without cleaning up (kill -9, a crash) left it there, and its network was deleted
    /// meanwhile; a bridge that still serves one keeps it (it is served again at once).
    fn sweep(&self, wanted: &HashMap<String, (Arc<str>, u32)>) {
        let Some(holding) = self.address.holders() else {
            return;
        };
        let serves = |bridge: &str| wanted.values().any(|(served, _)| &**served == bridge);
        for bridge in left_behind(&holding, serves) {
            tracing::info!(bridge, address = %self.address.cidr(), "an earlier run left the metadata address on this bridge, which serves no host network now (deleted while all was stopped)");
            self.address.remove(bridge);
        }
    }

    /// Puts the metadata address back on a served bridge that lost it (an `ip addr flush`, or
    /// systemd-networkd reconfiguring a bridge it manages removes what it did not add): the
    /// listener is still bound, and answers again once the address is back. Tried at every
    /// pass; a failure that repeats is logged once, then when its error changes or every
    /// [`RESTORE_LOG_INTERVAL`], and the address back after failures is logged too.
    fn restore_addresses(&mut self) {
        if self.served.is_empty() {
            self.restoring.clear();
            return;
        }
        let Some(holding) = self.address.holders() else {
            return;
        };
        let mut restored: Vec<Arc<str>> = Vec::new();
        let now = Instant::now();
        for served in self.served.values().filter(|served| served.listening()) {
            let bridge = &served.bridge;
            if holding.iter().any(|holder| *holder.bridge == **bridge) || restored.contains(bridge)
            {
                continue;
            }
            restored.push(bridge.clone());
            let was = self.restoring.remove(bridge);
            match self.address.ip_addr("replace", bridge) {
                Ok(()) => match was {
                    Some(was) => {
                        tracing::warn!(bridge = %bridge, address = %self.address.cidr(), attempts = was.attempts, "put the metadata address back on the bridge after failed attempts")
                    }
                    None => {
                        tracing::warn!(bridge = %bridge, address = %self.address.cidr(), "the metadata address was taken off the bridge (ip addr flush, or a network manager?): put it back")
                    }
                },
                Err(err) => {
                    let (failing, log) = Restoring::failed(was, err, now);
                    if log {
                        tracing::warn!(bridge = %bridge, error = %failing.error, attempts = failing.attempts, "the metadata address was taken off the bridge and cannot be put back; retrying every pass (this is logged again when the error changes, or in {RESTORE_LOG_INTERVAL:?})")
                    }
                    self.restoring.insert(bridge.clone(), failing);
                }
            }
        }
        // A bridge that holds the address again by other hands, or is no longer served.
        let back: Vec<Arc<str>> = self
            .restoring
            .keys()
            .filter(|bridge| !restored.contains(bridge))
            .cloned()
            .collect();
        for bridge in back {
            if let Some(was) = self.restoring.remove(&bridge)
                && holding.iter().any(|holder| *holder.bridge == *bridge)
            {
                tracing::warn!(bridge = %bridge, address = %self.address.cidr(), attempts = was.attempts, "the metadata address is back on the bridge (put there by another hand) after failed attempts to put it back");
            }
        }
    }

    /// The bridges served now (not those waiting to be bound again), for logs and tests.
    pub fn bridges(&self) -> Vec<Arc<str>> {
        self.served
            .values()
            .filter(|served| served.listening())
            .map(|served| served.bridge.clone())
            .collect()
    }
}

impl Drop for HostBridges {
    /// A clean stop takes the metadata address off every bridge served, or waiting to be
    /// served again.
    fn drop(&mut self) {
        let mut done: Vec<Arc<str>> = Vec::new();
        for served in self.served.values() {
            served.tasks.iter().for_each(JoinHandle::abort);
            if !done.contains(&served.bridge) {
                self.address.remove(&served.bridge);
                done.push(served.bridge.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
