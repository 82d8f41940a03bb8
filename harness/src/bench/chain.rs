//! metaboot's servers as the bench runs them, from the release binary: the 3-process chain
//! (ns-proxy → agent → API, each its own process, signature verified by the API) on loopback,
//! and `metaboot-server all` serving a router namespace made for it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::lab::netns;
use crate::process::ProcessGroup;

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The secret the bench's agents and APIs share.
pub const SECRET: &str = "metaboot-bench-shared-secret";
/// Where `all` serves a router namespace (Neutron's `metadata_port`, bound on 0.0.0.0).
pub const ROUTER_PORT: u16 = metaboot_proto::ROUTER_PROXY_PORT;

/// A free TCP port on 127.0.0.1 (bound and released: the bench's processes are the only
/// ones picking ports on loopback here).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port on loopback")?
        .port())
}

/// Connections one guest address may hold on the bench's proxies: wrk plays one guest with
/// `Load::throughput`'s keep-alive connections, where a real guest gets the proxy's default
/// cap (`MAX_CONNECTIONS_PER_GUEST`).
pub const BENCH_CONNECTIONS_PER_GUEST: u32 = 1024;
const _: () = assert!(BENCH_CONNECTIONS_PER_GUEST >= super::load::THROUGHPUT_CONNECTIONS);

/// Writes the shared secret file into `dir`, private to its owner (the servers refuse it
/// otherwise).
pub fn write_secret(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("shared-secret");
    crate::atomic::write(&path, format!("{SECRET}\n").as_bytes(), 0o600)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// One server process with its log.
#[derive(Debug)]
pub struct Server {
    /// What it is, for messages.
    pub name: String,
    /// The process (killed with its group on drop).
    pub process: ProcessGroup,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts `bin ARGS…` with its output in `<dir>/<name>.log`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("failed to share a log file")?)
            .stderr(file);
        let process = ProcessGroup::spawn(name, &mut cmd)?;
        Ok(Self {
            name: name.to_owned(),
            process,
            log,
        })
    }

    /// The process's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until `ready` holds; fails with the log's end if the process exits or
    /// [`START_TIMEOUT`] passes.
    pub fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.process.try_wait()? {
                bail!(
                    "{} exited with {status}:\n{}",
                    self.name,
                    crate::lab::tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{} did not start within {START_TIMEOUT:?}:\n{}",
            self.name,
            crate::lab::tail(&self.log, 30)
        )
    }
}

/// The 3-process chain.
#[derive(Debug)]
pub struct Chain {
    /// `metaboot-server api`.
    pub api: Server,
    /// `metaboot-server agent`.
    pub agent: Server,
    /// `metaboot-server ns-proxy`.
    pub proxy: Server,
    /// Where guests (wrk, the guest agent, cloud-init) connect.
    pub proxy_addr: SocketAddr,
}

impl Chain {
    /// Starts API (TCP, as nova's 8775), agent (Unix socket) and a router-scoped proxy on a
    /// loopback port, over the registry at `db`.
    pub fn start(
        bin: &Path,
        db: &str,
        dir: &Path,
        secret: &Path,
        router_id: &str,
    ) -> anyhow::Result<Self> {
        let api_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let proxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let socket = dir.join("agent.sock");
        let secret = secret.display().to_string();
        let mut api = Server::spawn(
            "api",
            bin,
            &strings(&[
                "--db",
                db,
                "api",
                "--listen",
                &api_addr.to_string(),
                "--shared-secret-file",
                &secret,
            ]),
            dir,
        )?;
        api.wait_ready(|| TcpStream::connect(api_addr).is_ok())?;
        let mut agent = Server::spawn(
            "agent",
            bin,
            &strings(&[
                "--db",
                db,
                "agent",
                "--socket",
                &socket.display().to_string(),
                "--api",
                &format!("http://{api_addr}"),
                "--shared-secret-file",
                &secret,
            ]),
            dir,
        )?;
        agent.wait_ready(|| UnixStream::connect(&socket).is_ok())?;
        let mut proxy = Server::spawn(
            "ns-proxy",
            bin,
            &strings(&[
                "ns-proxy",
                "--socket",
                &socket.display().to_string(),
                "--listen",
                &proxy_addr.to_string(),
                "--router-id",
                router_id,
                "--max-connections-per-guest",
                &BENCH_CONNECTIONS_PER_GUEST.to_string(),
            ]),
            dir,
        )?;
        proxy.wait_ready(|| TcpStream::connect(proxy_addr).is_ok())?;
        Ok(Self {
            api,
            agent,
            proxy,
            proxy_addr,
        })
    }

    /// The PIDs of the three processes.
    pub fn pids(&self) -> [u32; 3] {
        [self.proxy.pid(), self.agent.pid(), self.api.pid()]
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
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
        let mut server = Server::spawn(
            name,
            bin,
            &strings(&[
                "--db",
                db,
                "all",
                "--shared-secret-file",
                &secret.display().to_string(),
                "--router-port",
                &ROUTER_PORT.to_string(),
                "--max-connections-per-guest",
                &BENCH_CONNECTIONS_PER_GUEST.to_string(),
            ]),
            dir,
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], ROUTER_PORT));
        let ns = netns.name.clone();
        server.wait_ready(|| netns::tcp_probe(&ns, addr, Duration::from_millis(200)).is_ok())?;
        Ok(Self {
            server,
            addr,
            netns: netns.name.clone(),
        })
    }
}
