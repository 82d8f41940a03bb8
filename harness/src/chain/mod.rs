//! The metadata chain as real processes, the one fixture of the end-to-end tests and the bench:
//! `metaboot-server api` (TCP), `metaboot-server agent` (Unix socket) and any number of
//! `metaboot-server ns-proxy` listeners on loopback, over a registry (a SQLite file in the
//! chain's directory, or a URL) and a shared secret private to its owner. Each role leads its
//! own process group and is killed when the chain is dropped; their logs are printed when a
//! test panics.
//!
//! It lives in the harness because both users already stand on it (the tests crate and the
//! bench crate depend on the harness, never the other way round) and because it runs the server
//! only as a program: the harness gets a chain without linking the server crate, and neither
//! the bench (a tool) depends on the test crate nor the tests on the bench.

mod port;
mod server;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

pub use port::{PORTS, free_port};
pub use server::{LOG_TAIL_LINES, START_TIMEOUT, Server};

use crate::workspace;

/// The secret a chain's agent and API share.
pub const SECRET: &str = "metaboot-chain-fixture-secret";
/// The secret's file name in a chain's directory.
pub const SECRET_FILE: &str = "secret";
/// Attempts at a proxy port another process took between the check and the bind.
const PROXY_PORT_ATTEMPTS: usize = 5;

/// The `metaboot-server` executable (dev profile), built once per process.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = BINARY.get() {
        return Ok(path.clone());
    }
    let path = workspace::build(workspace::SERVER).context("failed to build metaboot-server")?;
    Ok(BINARY.get_or_init(|| path).clone())
}

/// Writes a new file only its owner may read (mode 0600 from the start, never wider), e.g. a
/// secret: the servers refuse a secret file its group or others may read.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?
        .write_all(bytes)
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Writes [`SECRET`] to `<dir>/`[`SECRET_FILE`] (private to its owner) and returns its path.
pub fn write_secret(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(SECRET_FILE);
    write_private(&path, format!("{SECRET}\n").as_bytes())?;
    Ok(path)
}

/// Which namespace a proxy plays.
#[derive(Debug, Clone)]
pub enum Scope {
    /// A router's namespace (`--router-id`).
    Router(String),
    /// A network's DHCP namespace (`--network-id`).
    Network(String),
}

/// The chain.
#[derive(Debug)]
pub struct Chain {
    /// The `metaboot-server` it runs.
    pub server: PathBuf,
    /// The SQLite registry (unless [`Chain::db_url`] names another).
    pub db: PathBuf,
    /// The shared secret's file.
    pub secret_file: PathBuf,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the agent listens.
    pub agent_socket: PathBuf,
    /// Extra flags for the API (e.g. --vendor-data).
    pub api_flags: Vec<String>,
    /// Extra flags for the agent (e.g. --cache-ttl).
    pub agent_flags: Vec<String>,
    /// The registry as a URL (e.g. `postgres://…`) instead of the SQLite file `db`.
    pub db_url: Option<String>,
    /// Pass the registry in `METABOOT_DB` instead of `--db` (keeps a password out of argv).
    pub db_in_env: bool,
    dir: PathBuf,
    api: Option<Server>,
    agent: Option<Server>,
    proxies: Vec<Server>,
    /// The temporary directory `dir` is when the chain made it; removed after the roles die.
    temp: Option<tempfile::TempDir>,
}

impl Chain {
    /// A chain of the dev-profile server in a temporary directory: a registry with nothing in
    /// it, and no process yet.
    pub fn new() -> anyhow::Result<Self> {
        let temp = tempfile::tempdir().context("failed to create the chain's directory")?;
        let mut chain = Self::in_dir(&server_binary()?, temp.path())?;
        chain.temp = Some(temp);
        Ok(chain)
    }

    /// A chain whose roles and registry commands use the registry at `url` (e.g. a
    /// PostgreSQL database) instead of a SQLite file.
    pub fn with_database(url: &str) -> anyhow::Result<Self> {
        let mut chain = Self::new()?;
        chain.db_url = Some(url.to_owned());
        Ok(chain)
    }

    /// A chain of `server` keeping its files (registry, secret, socket, logs) in `dir`, an
    /// existing directory the caller owns and may keep.
    pub fn in_dir(server: &Path, dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            server: server.to_owned(),
            db: dir.join("registry.sqlite"),
            secret_file: write_secret(dir)?,
            api_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            agent_socket: dir.join("agent.sock"),
            api_flags: Vec::new(),
            agent_flags: Vec::new(),
            db_url: None,
            db_in_env: false,
            dir: dir.to_owned(),
            api: None,
            agent: None,
            proxies: Vec::new(),
            temp: None,
        })
    }

    /// A registry command: `metaboot-server --db DB …` (or `METABOOT_DB=DB metaboot-server …`).
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(&self.server);
        let db = match &self.db_url {
            Some(url) => std::ffi::OsString::from(url),
            None => self.db.clone().into_os_string(),
        };
        if self.db_in_env {
            cmd.env("METABOOT_DB", db);
        } else {
            cmd.env_remove("METABOOT_DB").arg("--db").arg(db);
        }
        cmd
    }

    /// Runs a registry command with `--json` and returns its output.
    pub fn registry(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let stdout = self.run(&with_json)?;
        serde_json::from_slice(&stdout)
            .with_context(|| format!("metaboot-server {} did not print JSON", args.join(" ")))
    }

    /// Runs a registry command (e.g. a `delete`), failing with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = self
            .cli()
            .args(args)
            .output()
            .context("failed to run metaboot-server")?;
        if !out.status.success() {
            bail!(
                "metaboot-server {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// Starts `metaboot-server ARGS` (with the chain's registry) as the role `name` and waits
    /// until `ready` says it serves.
    fn spawn(
        &self,
        name: &str,
        args: &[String],
        ready: impl FnMut() -> bool,
    ) -> anyhow::Result<Server> {
        let mut cmd = self.cli();
        cmd.args(args);
        self.spawn_command(name, &mut cmd, ready)
    }

    /// Starts `cmd` as the role `name`, its log in the chain's directory, and waits until
    /// `ready` says it serves.
    fn spawn_command(
        &self,
        name: &str,
        cmd: &mut Command,
        ready: impl FnMut() -> bool,
    ) -> anyhow::Result<Server> {
        let mut server = Server::spawn(name, cmd, &self.dir)?;
        server.wait_ready(ready)?;
        Ok(server)
    }

    /// Starts (or restarts) the API on its fixed address.
    pub fn start_api(&mut self) -> anyhow::Result<()> {
        self.stop_api();
        let mut args = strings(&[
            "api",
            "--listen",
            &self.api_addr.to_string(),
            "--shared-secret-file",
            &self.secret_file.display().to_string(),
        ]);
        args.extend(self.api_flags.iter().cloned());
        let addr = self.api_addr;
        self.api = Some(self.spawn("api", &args, || TcpStream::connect(addr).is_ok())?);
        Ok(())
    }

    /// Kills the API.
    pub fn stop_api(&mut self) {
        if let Some(mut role) = self.api.take() {
            let _ = role.process.kill();
        }
    }

    /// Starts (or restarts) the agent on its socket, pointed at the API.
    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        self.stop_agent();
        let mut args = strings(&[
            "agent",
            "--socket",
            &self.agent_socket.display().to_string(),
            "--api",
            &format!("http://{}", self.api_addr),
            "--shared-secret-file",
            &self.secret_file.display().to_string(),
            "--api-timeout",
            "3",
        ]);
        args.extend(self.agent_flags.iter().cloned());
        let socket = self.agent_socket.clone();
        let agent = self.spawn("agent", &args, || UnixStream::connect(&socket).is_ok())?;
        self.agent = Some(agent);
        Ok(())
    }

    /// Kills the agent.
    pub fn stop_agent(&mut self) {
        if let Some(mut role) = self.agent.take() {
            let _ = role.process.kill();
        }
    }

    /// Starts a namespace proxy on a free loopback port and returns its address.
    pub fn start_proxy(&mut self, scope: &Scope, extra: &[&str]) -> anyhow::Result<SocketAddr> {
        // Another process may take the port between the check and the bind: try a few.
        let mut last = None;
        for _ in 0..PROXY_PORT_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            match self.start_proxy_at(addr, scope, extra) {
                Ok(addr) => return Ok(addr),
                Err(err) if format!("{err:#}").contains("Address already in use") => {
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no port for the proxy")))
    }

    /// Starts a namespace proxy on `addr` (a guest may already be knocking there).
    pub fn start_proxy_at(
        &mut self,
        addr: SocketAddr,
        scope: &Scope,
        extra: &[&str],
    ) -> anyhow::Result<SocketAddr> {
        let (flag, id) = match scope {
            Scope::Router(id) => ("--router-id", id),
            Scope::Network(id) => ("--network-id", id),
        };
        let mut args = strings(&[
            "ns-proxy",
            "--socket",
            &self.agent_socket.display().to_string(),
            "--listen",
            &addr.to_string(),
            flag,
            id,
            "--agent-timeout",
            "5",
        ]);
        args.extend(strings(extra));
        let name = format!("proxy-{}", self.proxies.len());
        let proxy = self.spawn(&name, &args, || TcpStream::connect(addr).is_ok())?;
        self.proxies.push(proxy);
        Ok(addr)
    }

    /// Starts any other `metaboot-server` command as a role of the chain (killed with it),
    /// and waits until `ready` says it serves.
    pub fn start_role(
        &mut self,
        name: &str,
        args: &[&str],
        ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let role = self.spawn(name, &strings(args), ready)?;
        self.proxies.push(role);
        Ok(())
    }

    /// Starts any command (`argv[0]` the program, e.g. a shell that sets the umask and execs
    /// `metaboot-server`) as a role of the chain, and waits until `ready` says it serves.
    pub fn start_shell_role(
        &mut self,
        name: &str,
        argv: &[&str],
        ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let (program, args) = argv.split_first().context("an empty command")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        let role = self.spawn_command(name, &mut cmd, ready)?;
        self.proxies.push(role);
        Ok(())
    }

    /// Starts API and agent.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.start_api()?;
        self.start_agent()
    }

    fn roles(&self) -> impl Iterator<Item = &Server> {
        self.api.iter().chain(&self.agent).chain(&self.proxies)
    }

    /// The name and PID of every running role (API, agent, then proxies and other roles).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.roles()
            .map(|role| (role.name.clone(), role.pid()))
            .collect()
    }

    /// The PID of the role `name` (`api`, `agent`, `proxy-0`, …), if it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.roles().find(|role| role.name == name).map(Server::pid)
    }

    /// The logs of every role, for failure reports.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for role in self.roles() {
            out.push_str(&format!(
                "----- {} ({})\n{}\n",
                role.name,
                role.log.display(),
                role.log_tail()
            ));
        }
        out
    }

    /// The directory the chain keeps its files in.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_secret_is_private_to_its_owner_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_secret(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(SECRET_FILE));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{SECRET}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = write_secret(dir.path()).unwrap_err();
        assert!(
            format!("{again:#}").contains("failed to create"),
            "{again:#}"
        );
    }
}
