//! Keeping one proxy listener per router namespace (`qrouter-<id>`, `[::]:9697`, both families) and
//! per address of each isolated network's DHCP namespace (`qdhcp-<id>`, the metadata addresses on
//! port 80, each on a network with a subnet of its family; the IPv6 one bound on the interface
//! holding it), following the registry. A missing namespace is logged once and looked for at every
//! pass (a `stat`, no bind until it appears); a namespace that was deleted and made again is
//! noticed (its inode changes) and served anew, and so is an IPv6 address whose interface was
//! replaced inside the same namespace (a DHCP port plugged again has a new index). An address
//! another server holds when `all` starts stops it with an error; one taken later is logged and
//! retried. A listener whose serving ends by itself (its task could not watch the socket) is
//! logged, counted (`metaboot_listeners_ended_total`) and bound again, after the backoff of
//! `crate::retry` when it keeps ending.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::host::HostBridges;
use super::host_pass::{HostPasses, HostServing, MakeHandler};
use crate::follow::ChangeListener;
use crate::http::ServerLimits;
use crate::http::listen::{link_local_holders, netns_path, tcp_listeners_in};
use crate::metrics::Metrics;
use crate::model::ReadModel;
use crate::proxy::{Forward, ProxyScope};
use crate::retry::Backoff;
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

impl Placement {
    /// How a log line names its listener, bound on `bound`: `router ID's proxy (netns
    /// qrouter-ID, 169.254.169.254:80)`.
    pub fn describe(&self, bound: SocketAddr) -> String {
        let (kind, id) = match &self.scope {
            ProxyScope::Router(id) => ("router", id),
            ProxyScope::Network(id) => ("network", id),
        };
        format!("{kind} {id}'s proxy (netns {}, {bound})", self.netns)
    }
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

/// The network namespaces listeners are bound in: the host's named ones ([`NamedNetns`]), or
/// whatever a test binds in.
pub trait Namespaces: Send + Sync + 'static {
    /// What identifies namespace `name` now (its inode); `None` when it is missing. Another
    /// value than at the bind means it was deleted and made again.
    fn identity(&self, name: &str) -> Option<u64>;

    /// One listener on `listen` inside namespace `name`, as `count` handles (one per worker).
    fn bind(
        &self,
        name: &str,
        listen: SocketAddr,
        count: usize,
    ) -> std::io::Result<Vec<TcpListener>>;
}

/// The named namespaces of `ip netns` (`/run/netns`).
pub struct NamedNetns;

impl Namespaces for NamedNetns {
    fn identity(&self, name: &str) -> Option<u64> {
        let path = netns_path(name).ok()?;
        std::fs::metadata(path).ok().map(|meta| meta.ino())
    }

    fn bind(
        &self,
        name: &str,
        listen: SocketAddr,
        count: usize,
    ) -> std::io::Result<Vec<TcpListener>> {
        tcp_listeners_in(Some(name), listen, count)
    }
}

/// Whether a listener's serving ended by itself: one of its tasks returned (each serves until
/// aborted, so one that returned could not serve; `runtime::Workers::serve_tcp` logs why).
fn has_ended(tasks: &[JoinHandle<()>]) -> bool {
    tasks.iter().any(JoinHandle::is_finished)
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
    pub make_handler: Arc<MakeHandler<F>>,
    pub limits: ServerLimits,
    pub router_listen: SocketAddr,
    /// Never empty (`Settings::resolve` refuses an empty list).
    pub isolated_listen: Vec<SocketAddr>,
    pub wake: Arc<Notify>,
    /// Where the namespace proxies are bound ([`NamedNetns`]).
    pub namespaces: Arc<dyn Namespaces>,
    /// The proxies' metrics: listeners that ended are counted there.
    pub metrics: Arc<Metrics>,
}

impl<F: Forward> Supervisor<F> {
    /// Runs until the task is dropped, serving the host networks `hosts` too, on a thread of
    /// their own (`host_pass.rs`): their passes block (`ip`, the leases) and must not hold up
    /// the namespaces' nor a stop. Fails only at start, when every namespace's address is
    /// held by another server (a second `all` over the same registry that the lock of
    /// `registry_lock.rs` lets by: one in another network namespace of this host, or over
    /// another spelling of a PostgreSQL host), which would otherwise serve nothing. One
    /// namespace's address held (a haproxy left in one router) is logged and retried, as
    /// while running: the others are served meanwhile. Fails too when the host bridges'
    /// thread is gone (it panicked): `all` exits 1, and its unit starts it again.
    pub async fn run(self, hosts: HostBridges) -> anyhow::Result<()> {
        let mut running: HashMap<Placement, Running> = HashMap::new();
        let mut failing: HashMap<Placement, String> = HashMap::new();
        let mut ended: Backoff<Placement> = Backoff::default();
        let mut first = true;
        // Dropped when `all` stops: takes the metadata address off the host bridges, once the
        // pass under way is over.
        let serving = HostServing {
            model: self.model.clone(),
            workers: self.workers.clone(),
            limits: self.limits,
            make_handler: self.make_handler.clone(),
            forward: self.forward.clone(),
        };
        let mut hosts = HostPasses::start(hosts, serving)?;
        loop {
            let wanted = placements(&self.model, self.router_listen, &self.isolated_listen);
            let in_use = self
                .reconcile(&wanted, &mut running, &mut failing, &mut ended, first)
                .await;
            if let Some(placement) = in_use {
                anyhow::bail!(
                    "failed to listen on {} in namespace {}: address already in use: \
                     another server listens there; stop it first",
                    placement.listen,
                    placement.netns
                );
            }
            hosts.ask()?;
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

    /// Starts and stops listeners to match `wanted`; one whose serving ended is dropped and
    /// bound again once `ended` says its wait is over. With `stop_if_in_use` (at start),
    /// returns a placement whose address another server holds when every placement's address
    /// is held.
    async fn reconcile(
        &self,
        wanted: &HashSet<Placement>,
        running: &mut HashMap<Placement, Running>,
        failing: &mut HashMap<Placement, String>,
        ended: &mut Backoff<Placement>,
        stop_if_in_use: bool,
    ) -> Option<Placement> {
        let now = Instant::now();
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
        let mut stopped_by_itself: Vec<Placement> = Vec::new();
        running.retain(|placement, listener| {
            let current = self.namespaces.identity(&placement.netns);
            let in_place = wanted.contains(placement)
                && current.is_some()
                && current == listener.inode
                && !moved.contains(placement);
            let serving = !has_ended(&listener.tasks);
            if in_place && serving {
                // Served since an earlier pass: a later end starts its backoff over.
                ended.succeeded(placement);
                return true;
            }
            listener.tasks.iter().for_each(JoinHandle::abort);
            if in_place {
                stopped_by_itself.push(placement.clone());
            } else {
                tracing::info!(netns = %placement.netns, listen = %placement.listen, "stopped serving");
            }
            false
        });
        for placement in stopped_by_itself {
            self.metrics.listener_ended();
            let wait = ended.failed(placement.clone(), now);
            tracing::error!(
                netns = %placement.netns,
                listen = %placement.listen,
                times = ended.failures(&placement),
                "this namespace's listener stopped serving (the error before says why): binding it again in {wait:?}"
            );
        }
        ended.retain(|placement| wanted.contains(placement));
        failing.retain(|placement, _| wanted.contains(placement));
        let mut in_use: Vec<(Placement, String)> = Vec::new();
        for placement in wanted {
            if running.contains_key(placement) || !ended.is_due(placement, now) {
                continue;
            }
            let inode = self.namespaces.identity(&placement.netns);
            let (netns, listen) = (placement.netns.clone(), placement.listen);
            let count = self.workers.count();
            let namespaces = self.namespaces.clone();
            let bound = if inode.is_none() {
                // Missing (another host's router, one not made yet): looked for at every pass
                // and at every wake, and bound at once when it appears, but no thread enters it
                // meanwhile (`tcp_listeners_in` starts one per attempt).
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("network namespace {netns} does not exist"),
                ))
            } else {
                tokio::task::spawn_blocking(move || namespaces.bind(&netns, listen, count))
                    .await
                    .unwrap_or_else(|err| Err(std::io::Error::other(err.to_string())))
            };
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
                    let tasks = self.workers.serve_tcp(
                        listeners,
                        &placement.describe(bound),
                        self.limits,
                        &handler,
                    );
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
                            "cannot serve namespace {} yet ({}); retrying every {:?}",
                            placement.netns,
                            waiting_hint(&err, &placement.netns, placement.listen),
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

/// What to do about a namespace whose listener cannot be bound yet, by the error: the
/// namespace missing, its address on no interface there, or this process not allowed in.
fn waiting_hint(err: &std::io::Error, netns: &str, listen: SocketAddr) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            format!("create it, e.g. `ip netns add {netns}`, and its address")
        }
        std::io::ErrorKind::AddrNotAvailable => format!(
            "no interface there holds {}: put it on the namespace's guest-facing interface \
             (`ip netns exec {netns} ip -brief address`)",
            listen.ip()
        ),
        std::io::ErrorKind::PermissionDenied => {
            "entering a namespace needs root (CAP_SYS_ADMIN): run `all` as root".to_owned()
        }
        _ => "the error says why".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;

    use super::*;
    use crate::http::Body;
    use crate::http::response::{Reply, TEXT_PLAIN};
    use crate::leases::HostLeases;
    use crate::proxy::ProxyHandler;
    use crate::store::{NewNetwork, NewRouter, Subnet};

    /// The hint fits the error: `ip netns add` only for a namespace that is missing.
    #[test]
    fn a_namespace_waiting_gets_the_hint_of_its_error() {
        use std::io::{Error, ErrorKind};
        let listen = metaboot_proto::METADATA_IPV4_LISTEN;
        let hint = |kind: ErrorKind| waiting_hint(&Error::from(kind), "qdhcp-n1", listen);
        assert!(hint(ErrorKind::NotFound).contains("ip netns add qdhcp-n1"));
        for kind in [
            ErrorKind::AddrNotAvailable,
            ErrorKind::PermissionDenied,
            ErrorKind::Other,
        ] {
            assert!(!hint(kind).contains("ip netns add"), "{kind:?}");
        }
        assert!(
            hint(ErrorKind::AddrNotAvailable).contains("no interface there holds 169.254.169.254")
        );
        assert!(hint(ErrorKind::PermissionDenied).contains("needs root"));
    }

    /// Binds in this process's namespace. The first bind hands over a "listener" on a regular
    /// file, which no worker can watch (epoll refuses regular files): its serving ends at once,
    /// as when `TcpAcceptor::new` fails on a real socket.
    #[derive(Default)]
    struct EndsFirst {
        binds: AtomicUsize,
        bound: Mutex<Option<SocketAddr>>,
    }

    impl Namespaces for EndsFirst {
        fn identity(&self, _: &str) -> Option<u64> {
            Some(1)
        }

        fn bind(
            &self,
            _: &str,
            listen: SocketAddr,
            count: usize,
        ) -> std::io::Result<Vec<TcpListener>> {
            if self.binds.fetch_add(1, Ordering::SeqCst) == 0 {
                let file = OwnedFd::from(tempfile::tempfile()?);
                return Ok(vec![TcpListener::from(file)]);
            }
            let listeners = crate::http::listen::tcp_listeners(listen, count)?;
            *self.bound.lock().unwrap() = listeners.first().and_then(|l| l.local_addr().ok());
            Ok(listeners)
        }
    }

    /// Binds in this process's namespace, once the namespace is `present`; counts the binds
    /// tried.
    #[derive(Default)]
    struct Appears {
        present: std::sync::atomic::AtomicBool,
        binds: AtomicUsize,
        bound: Mutex<Option<SocketAddr>>,
    }

    impl Namespaces for Appears {
        fn identity(&self, _: &str) -> Option<u64> {
            self.present.load(Ordering::SeqCst).then_some(1)
        }

        fn bind(
            &self,
            name: &str,
            listen: SocketAddr,
            count: usize,
        ) -> std::io::Result<Vec<TcpListener>> {
            self.binds.fetch_add(1, Ordering::SeqCst);
            if !self.present.load(Ordering::SeqCst) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("network namespace {name} not found"),
                ));
            }
            let listeners = crate::http::listen::tcp_listeners(listen, count)?;
            *self.bound.lock().unwrap() = listeners.first().and_then(|l| l.local_addr().ok());
            Ok(listeners)
        }
    }

    /// Answers every request `200 served`.
    #[derive(Clone)]
    struct Answers;

    impl Forward for Answers {
        async fn forward(&self, _: Request<Full<Bytes>>) -> Response<Body> {
            Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"served"))
        }
    }

    /// A registry with one router (on one network) in `dir`, and its supervisor binding
    /// through `namespaces`.
    fn router_supervisor(
        dir: &std::path::Path,
        namespaces: Arc<dyn Namespaces>,
        metrics: &Arc<Metrics>,
    ) -> Supervisor<Answers> {
        let store = crate::store::open(dir.join("r.sqlite").to_str().unwrap()).unwrap();
        let network = store
            .create_network(&NewNetwork {
                name: "n".into(),
                project: "p".into(),
                cidr: "198.18.1.0/24".parse().unwrap(),
                ..NewNetwork::default()
            })
            .unwrap();
        store
            .create_router(&NewRouter {
                name: "r".into(),
                project: "p".into(),
                networks: vec![network.id],
            })
            .unwrap();
        store
            .create_network(&NewNetwork {
                name: "lan".into(),
                project: "p".into(),
                cidr: "198.18.30.0/24".parse().unwrap(),
                host: Some(crate::store::HostBridge::Bridge("lo".into())),
                ..NewNetwork::default()
            })
            .unwrap();
        let handler_metrics = metrics.clone();
        Supervisor {
            model: Arc::new(ReadModel::load(store.as_ref()).unwrap()),
            registry: "test".into(),
            workers: Workers::start(1).unwrap(),
            forward: Answers,
            make_handler: Arc::new(move |scope, forward| {
                ProxyHandler::new(scope, forward, None, handler_metrics.clone())
            }),
            limits: ServerLimits::default(),
            router_listen: "127.0.0.1:0".parse().unwrap(),
            isolated_listen: crate::all::DEFAULT_ISOLATED_LISTEN.to_vec(),
            wake: Arc::new(Notify::new()),
            namespaces,
            metrics: metrics.clone(),
        }
    }

    /// An `ip` in `dir` that writes down how it was called (one line per call) and, until the
    /// file `release` exists there, hangs: as one stuck behind the kernel's routing lock.
    fn hanging_ip(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let (script, calls) = (dir.join("ip"), dir.join("ip-calls"));
        let release = dir.join("release");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n",
                calls.display(),
                release.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (script, calls)
    }

    /// What a guest gets from the router's listener once `namespaces` bound it again, which
    /// must be within `within`.
    /// `work`'s output, the supervisor running meanwhile (its end a failure of the test).
    async fn while_supervising<F: Forward, T>(
        supervisor: Supervisor<F>,
        hosts: HostBridges,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::select! {
            stopped = supervisor.run(hosts) => panic!("the supervisor stopped: {stopped:?}"),
            done = work => done,
        }
    }

    /// `answer` is the test handler's 200.
    fn assert_served(answer: &str) {
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("served"),
            "{answer}"
        );
    }

    async fn ask_once_bound_again(namespaces: &EndsFirst, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let addr = loop {
            if let Some(addr) = *namespaces.bound.lock().unwrap() {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "the listener that ended was not bound again within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /openstack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_listener_whose_serving_ended_is_noticed_counted_and_served_again() {
        let dir = tempfile::tempdir().unwrap();
        let namespaces = Arc::new(EndsFirst::default());
        let metrics = Metrics::new("proxy");
        let supervisor = router_supervisor(dir.path(), namespaces.clone(), &metrics);
        // The host network's `ip` cannot run: it waits out its backoff.
        let hosts = HostBridges::new(
            Arc::new(HostLeases::new(dir.path().join("leases"))),
            RECONCILE_INTERVAL,
            metrics.clone(),
        )
        .serving("127.0.0.1:0".parse().unwrap(), dir.path().join("no-ip"));
        let guest = ask_once_bound_again(&namespaces, Duration::from_secs(10));
        let answer = while_supervising(supervisor, hosts, guest).await;
        assert_served(&answer);
        assert_eq!(namespaces.binds.load(Ordering::SeqCst), 2);
        assert_eq!(metrics.listeners_ended(), 1);
        let text = crate::metrics::render(&[metrics], None);
        assert!(
            text.contains("metaboot_listeners_ended_total{role=\"proxy\"} 1\n"),
            "{text}"
        );
    }

    /// A namespace that is missing is looked for at every pass but not bound (no thread
    /// tries to enter it), and is served at once when it appears and the supervisor wakes.
    #[tokio::test]
    async fn a_missing_namespace_is_not_bound_until_it_appears_then_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let namespaces = Arc::new(Appears::default());
        let metrics = Metrics::new("proxy");
        let supervisor = router_supervisor(dir.path(), namespaces.clone(), &metrics);
        let wake = supervisor.wake.clone();
        let hosts = HostBridges::new(
            Arc::new(HostLeases::new(dir.path().join("leases"))),
            RECONCILE_INTERVAL,
            metrics.clone(),
        )
        .serving("127.0.0.1:0".parse().unwrap(), dir.path().join("no-ip"));
        let appears = async {
            // A few passes with the namespace missing.
            tokio::time::sleep(RECONCILE_INTERVAL * 5 / 2).await;
            let tried = namespaces.binds.load(Ordering::SeqCst);
            namespaces.present.store(true, Ordering::SeqCst);
            let appeared = Instant::now();
            wake.notify_one();
            loop {
                if namespaces.bound.lock().unwrap().is_some() {
                    break (tried, appeared.elapsed());
                }
                assert!(
                    appeared.elapsed() < Duration::from_secs(10),
                    "never bound once it appeared"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (tried, took) = while_supervising(supervisor, hosts, appears).await;
        assert_eq!(tried, 0, "binds tried while the namespace was missing");
        assert!(
            took < RECONCILE_INTERVAL / 2,
            "bound {took:?} after it appeared"
        );
        assert_eq!(namespaces.binds.load(Ordering::SeqCst), 1);
    }

    /// A host pass that blocks (its `ip` hangs, up to a bound longer than the test waits)
    /// holds up neither the namespaces' reconcile nor the supervisor: the router's listener
    /// whose serving ended is bound again after its backoff while the pass still hangs. At
    /// the stop the pass is let finish, and the address it put on the bridge is taken off.
    #[tokio::test]
    async fn a_host_pass_that_blocks_does_not_hold_up_the_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let namespaces = Arc::new(EndsFirst::default());
        let metrics = Metrics::new("proxy");
        let supervisor = router_supervisor(dir.path(), namespaces.clone(), &metrics);
        let (ip, calls) = hanging_ip(dir.path());
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let hosts = HostBridges::new(
            Arc::new(HostLeases::new(dir.path().join("leases"))),
            RECONCILE_INTERVAL,
            metrics.clone(),
        )
        .serving(listen, ip)
        .bounding_ip(Duration::from_secs(30));
        let put_on = format!("addr replace {}/32 dev lo label lo:mb", listen.ip());
        let guest = async {
            let answer = ask_once_bound_again(&namespaces, Duration::from_secs(10)).await;
            let under_way = std::fs::read_to_string(&calls).unwrap_or_default();
            assert_eq!(under_way, format!("{put_on}\n"), "no host pass hung");
            std::fs::write(dir.path().join("release"), "").unwrap();
            answer
        };
        let answer = while_supervising(supervisor, hosts, guest).await;
        assert_served(&answer);
        let taken_off = format!("addr del {}/32 dev lo", listen.ip());
        let made = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(
            made,
            format!("{put_on}\n{taken_off}\n"),
            "not taken off at the stop"
        );
    }

    /// When every namespace's address is held by another server at start (a second `all` the
    /// registry lock lets by), the supervisor stops at once, naming one, rather than serve
    /// nothing.
    #[tokio::test]
    async fn every_namespace_address_held_at_start_stops_the_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new("proxy");
        let namespaces = Arc::new(Appears::default());
        namespaces.present.store(true, Ordering::SeqCst);
        let mut supervisor = router_supervisor(dir.path(), namespaces.clone(), &metrics);
        let other_server = TcpListener::bind("127.0.0.1:0").unwrap();
        supervisor.router_listen = other_server.local_addr().unwrap();
        let hosts = HostBridges::new(
            Arc::new(HostLeases::new(dir.path().join("leases"))),
            RECONCILE_INTERVAL,
            metrics.clone(),
        )
        .serving("127.0.0.1:0".parse().unwrap(), dir.path().join("no-ip"));
        let within = RECONCILE_INTERVAL * 5;
        let err = tokio::time::timeout(within, supervisor.run(hosts))
            .await
            .unwrap_or_else(|_| panic!("still running {within:?} with every address held"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "failed to listen on {} in namespace qrouter-",
                other_server.local_addr().unwrap()
            )) && text
                .ends_with("address already in use: another server listens there; stop it first"),
            "{text}"
        );
        assert_eq!(namespaces.binds.load(Ordering::SeqCst), 1);
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_FAILED);
    }

    /// A host pass that panics (here: making the host network's handler) ends the supervisor
    /// with an error within a pass or two, so `all` exits 1 and its unit starts it again,
    /// instead of serving on without host networks.
    #[tokio::test]
    async fn a_host_pass_that_panics_stops_the_supervisor() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new("proxy");
        let mut supervisor = router_supervisor(dir.path(), Arc::new(Appears::default()), &metrics);
        let handler_metrics = metrics.clone();
        supervisor.make_handler = Arc::new(move |scope, forward| {
            assert!(
                !matches!(scope, ProxyScope::Network(_)),
                "a host pass that panics"
            );
            ProxyHandler::new(scope, forward, None, handler_metrics.clone())
        });
        let ip = dir.path().join("ip");
        std::fs::write(&ip, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hosts = HostBridges::new(
            Arc::new(HostLeases::new(dir.path().join("leases"))),
            RECONCILE_INTERVAL,
            metrics.clone(),
        )
        .serving("127.0.0.1:0".parse().unwrap(), ip);
        let within = RECONCILE_INTERVAL * 5;
        let err = tokio::time::timeout(within, supervisor.run(hosts))
            .await
            .unwrap_or_else(|_| panic!("still running {within:?} after its host pass panicked"))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the thread serving the host bridges (host-bridges) is gone"),
            "{err:#}"
        );
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_FAILED);
    }

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
