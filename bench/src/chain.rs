//! metaboot's servers as the bench runs them, from the release binary: the 3-process chain
//! (the harness's chain fixture: ns-proxy → agent → API, each its own process, signature
//! verified by the API) on loopback, and `metaboot-server all` serving a router namespace made
//! for it. Both allow the bench's load more connections per guest than a real guest gets.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use metaboot_harness::chain::{Chain, Scope, Server};
use metaboot_harness::lab::netns;
use metaboot_server::all::registry_lock::RUNTIME_DIR_VAR;

/// Where `all` serves a router namespace (Neutron's `metadata_port`, bound on 0.0.0.0).
pub const ROUTER_PORT: u16 = metaboot_proto::ROUTER_PROXY_PORT;

/// Connections one guest address may hold on the bench's proxies: wrk plays one guest with
/// `Load::throughput`'s keep-alive connections, where a real guest gets the proxy's default
/// cap (`MAX_CONNECTIONS_PER_GUEST`).
pub const BENCH_CONNECTIONS_PER_GUEST: u32 = 1024;
const _: () = assert!(BENCH_CONNECTIONS_PER_GUEST >= crate::load::THROUGHPUT_CONNECTIONS);

/// How long one probe of `all`'s port inside its namespace may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The 3-process chain with the proxy guests connect to.
#[derive(Debug)]
pub struct ThreeProcess {
    /// API, agent and the proxy (`proxy-0`), with their logs in the bench's directory.
    pub chain: Chain,
    /// Where guests (wrk, the guest agent, cloud-init) connect.
    pub proxy_addr: SocketAddr,
}

impl ThreeProcess {
    /// Starts API (TCP, as nova's 8775), agent (Unix socket) and a proxy for `router_id` on a
    /// loopback port, over the registry at `db`, keeping their files in `dir`.
    pub fn start(bin: &Path, db: &str, dir: &Path, router_id: &str) -> anyhow::Result<Self> {
        let mut chain = Chain::in_dir(bin, dir)?;
        chain.db_url = Some(db.to_owned());
        chain.start()?;
        let proxy_addr = chain.start_proxy(
            &Scope::Router(router_id.to_owned()),
            &[
                "--max-connections-per-guest",
                &BENCH_CONNECTIONS_PER_GUEST.to_string(),
            ],
        )?;
        Ok(Self { chain, proxy_addr })
    }

    /// The process groups whose CPU time a request costs, by part; a role not running is an
    /// error (its CPU time would otherwise count as none).
    pub fn parts(&self) -> anyhow::Result<Vec<(&'static str, Vec<u32>)>> {
        [("ns-proxy", "proxy-0"), ("agent", "agent"), ("api", "api")]
            .into_iter()
            .map(|(part, role)| {
                let pid = self.chain.pid(role).with_context(|| {
                    format!("the chain's {role} is not running: its log says why")
                })?;
                Ok((part, vec![pid]))
            })
            .collect()
    }
}

/// A router namespace `qrouter-<id>` with loopback up, deleted on drop: what `all` binds its
/// proxy in, and where the load comes from.
#[derive(Debug)]
pub struct RouterNamespace {
    /// Its name.
    pub name: String,
}

impl RouterNamespace {
    /// Creates the namespace of `router_id`.
    pub fn create(router_id: &str) -> anyhow::Result<Self> {
        let name = format!("qrouter-{router_id}");
        netns::create(&name)?;
        Ok(Self { name })
    }
}

impl Drop for RouterNamespace {
    fn drop(&mut self) {
        if let Err(err) = netns::delete(&self.name) {
            tracing::warn!("{err:#}");
        }
    }
}

/// `metaboot-server all`.
#[derive(Debug)]
pub struct All {
    /// The process.
    pub server: Server,
    /// Where guests connect, inside [`All::netns`].
    pub addr: SocketAddr,
    /// The router namespace it serves.
    pub netns: String,
    /// From spawn to serving: loading the registry into memory is most of it.
    pub ready_after: std::time::Duration,
}

impl All {
    /// Starts `all` over the registry at `db`; it binds 0.0.0.0:9697 inside `netns` (the
    /// registry's only router) and is ready when that accepts connections.
    pub fn start(
        bin: &Path,
        db: &str,
        dir: &Path,
        secret: &Path,
        name: &str,
        netns: &RouterNamespace,
    ) -> anyhow::Result<Self> {
        Self::start_on(bin, db, dir, secret, name, netns, ROUTER_PORT)
    }

    /// [`All::start`] with the router proxy on `port` (a second host in the same namespace).
    pub fn start_on(
        bin: &Path,
        db: &str,
        dir: &Path,
        secret: &Path,
        name: &str,
        netns: &RouterNamespace,
        port: u16,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        // A runtime directory of its own, as each host has: `all` keeps its lock on the
        // registry there, and two hosts of the propagation rows share one registry.
        cmd.env(RUNTIME_DIR_VAR, dir.join(format!("{name}-run")))
            .args(["--db", db, "all", "--shared-secret-file"])
            .arg(secret)
            .args(["--router-port", &port.to_string()])
            .args([
                "--max-connections-per-guest",
                &BENCH_CONNECTIONS_PER_GUEST.to_string(),
            ]);
        let started = std::time::Instant::now();
        let mut server = Server::spawn(name, &mut cmd, dir)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ns = netns.name.clone();
        server.wait_ready(|| netns::tcp_probe(&ns, addr, PROBE_TIMEOUT).is_ok())?;
        Ok(Self {
            server,
            addr,
            netns: netns.name.clone(),
            ready_after: started.elapsed(),
        })
    }
}
