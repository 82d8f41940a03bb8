//! The metadata chain as real processes, started by a test: `metaboot-server api` (TCP),
//! `metaboot-server agent` (Unix socket) and any number of `metaboot-server ns-proxy`
//! listeners on loopback, over a SQLite registry in a temporary directory. Each process leads
//! its own process group and is killed when the chain is dropped; their logs are printed when a
//! test fails.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metaboot_harness::process::ProcessGroup;

/// How long a role may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// The secret the chain's agent and API share.
pub const SECRET: &str = "chain-test-secret";

/// The `metaboot-server` executable, built once per test binary.
pub fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            metaboot_harness::workspace::build(metaboot_harness::workspace::SERVER)
                .expect("failed to build metaboot-server")
        })
        .clone()
}

/// Ports handed out for the chain's listeners: below the kernel's ephemeral range (32768 and
/// up), so no outgoing connection of a parallel test takes one between the check and the bind.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free TCP port on 127.0.0.1, outside the ephemeral range (checked by binding it; a
/// parallel test may still race for it, which `start_proxy` retries).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // Test binaries run at once: start each process somewhere else in the range.
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = TEST_PORTS.start + u16::try_from(n).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback in {TEST_PORTS:?}")
}

/// One running role.
struct Role {
    name: String,
    process: ProcessGroup,
    log: PathBuf,
}

/// Which namespace a proxy plays.
#[derive(Debug, Clone)]
pub enum Scope {
    Router(String),
    Network(String),
}

/// The chain.
pub struct Chain {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub secret_file: PathBuf,
    pub api_addr: SocketAddr,
    pub agent_socket: PathBuf,
    api: Option<Role>,
    agent: Option<Role>,
    proxies: Vec<Role>,
    /// Extra flags for the API (e.g. --vendor-data).
    pub api_flags: Vec<String>,
    /// Extra flags for the agent (e.g. --cache-ttl).
    pub agent_flags: Vec<String>,
    /// The registry as a URL (e.g. `postgres://…`) instead of the SQLite file `db`.
    pub db_url: Option<String>,
    /// Pass the registry in `METABOOT_DB` instead of `--db` (keeps a password out of argv).
    pub db_in_env: bool,
}

impl Chain {
    /// A registry with nothing in it, and no process yet.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("secret");
        // Private to its owner from the start: the roles refuse a secret others may read.
        write_private(&secret_file, format!("{SECRET}\n").as_bytes())?;
        Ok(Self {
            db: dir.path().join("registry.sqlite"),
            agent_socket: dir.path().join("agent.sock"),
            api_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            secret_file,
            dir,
            api: None,
            agent: None,
            proxies: Vec::new(),
            api_flags: Vec::new(),
            agent_flags: Vec::new(),
            db_url: None,
            db_in_env: false,
        })
    }

    /// A chain whose roles and registry commands use the registry at `url` (e.g. a
    /// PostgreSQL database) instead of a SQLite file.
    pub fn with_database(url: &str) -> anyhow::Result<Self> {
        let mut chain = Self::new()?;
        chain.db_url = Some(url.to_owned());
        Ok(chain)
    }

    /// A registry command: `metaboot-server --db DB …` (or `METABOOT_DB=DB metaboot-server …`).
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(server_binary());
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

    fn spawn(&self, name: &str, args: &[String]) -> anyhow::Result<Role> {
        let mut cmd = self.cli();
        cmd.args(args);
        self.spawn_command(name, cmd)
    }

    fn spawn_command(&self, name: &str, mut cmd: Command) -> anyhow::Result<Role> {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let process = ProcessGroup::spawn(name, &mut cmd)?;
        Ok(Role {
            name: name.to_owned(),
            process,
            log,
        })
    }

    fn wait_ready(&self, role: &mut Role, ready: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if ready() {
                return Ok(());
            }
            if let Some(status) = role.process.try_wait()? {
                bail!(
                    "{} exited with {status}:\n{}",
                    role.name,
                    read_log(&role.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{} did not start within {START_TIMEOUT:?}:\n{}",
            role.name,
            read_log(&role.log)
        )
    }

    /// Starts (or restarts) the API on its fixed address.
    pub fn start_api(&mut self) -> anyhow::Result<()> {
        self.stop_api();
        let mut args = vec![
            "api".to_owned(),
            "--listen".to_owned(),
            self.api_addr.to_string(),
            "--shared-secret-file".to_owned(),
            self.secret_file.display().to_string(),
        ];
        args.extend(self.api_flags.iter().cloned());
        let mut role = self.spawn("api", &args)?;
        let addr = self.api_addr;
        self.wait_ready(&mut role, || TcpStream::connect(addr).is_ok())?;
        self.api = Some(role);
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
        let mut args = vec![
            "agent".to_owned(),
            "--socket".to_owned(),
            self.agent_socket.display().to_string(),
            "--api".to_owned(),
            format!("http://{}", self.api_addr),
            "--shared-secret-file".to_owned(),
            self.secret_file.display().to_string(),
            "--api-timeout".to_owned(),
            "3".to_owned(),
        ];
        args.extend(self.agent_flags.iter().cloned());
        let mut role = self.spawn("agent", &args)?;
        let socket = self.agent_socket.clone();
        self.wait_ready(&mut role, || UnixStream::connect(&socket).is_ok())?;
        self.agent = Some(role);
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
        // Another test may take the port between the check and the bind: try a few.
        let mut last = None;
        for _ in 0..5 {
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
        let mut args = vec![
            "ns-proxy".to_owned(),
            "--socket".to_owned(),
            self.agent_socket.display().to_string(),
            "--listen".to_owned(),
            addr.to_string(),
            flag.to_owned(),
            id.clone(),
            "--agent-timeout".to_owned(),
            "5".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut role = self.spawn(&format!("proxy-{}", self.proxies.len()), &args)?;
        self.wait_ready(&mut role, || TcpStream::connect(addr).is_ok())?;
        self.proxies.push(role);
        Ok(addr)
    }

    /// Starts any other `metaboot-server` command as a role of the chain (killed with it),
    /// and waits until `ready` says it serves.
    pub fn start_role(
        &mut self,
        name: &str,
        args: &[&str],
        ready: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let mut role = self.spawn(name, &args)?;
        self.wait_ready(&mut role, ready)?;
        self.proxies.push(role);
        Ok(())
    }

    /// Starts any command (`argv[0]` the program, e.g. a shell that sets the umask and execs
    /// `metaboot-server`) as a role of the chain, and waits until `ready` says it serves.
    pub fn start_shell_role(
        &mut self,
        name: &str,
        argv: &[&str],
        ready: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        let (program, args) = argv.split_first().context("an empty command")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut role = self.spawn_command(name, cmd)?;
        self.wait_ready(&mut role, ready)?;
        self.proxies.push(role);
        Ok(())
    }

    /// Starts API and agent.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.start_api()?;
        self.start_agent()
    }

    /// The name and PID of every running role (API, agent, then proxies and other roles).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.api
            .iter()
            .chain(&self.agent)
            .chain(&self.proxies)
            .map(|role| (role.name.clone(), role.process.pid()))
            .collect()
    }

    /// The logs of every role, for failure reports.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for role in self.api.iter().chain(&self.agent).chain(&self.proxies) {
            out.push_str(&format!(
                "----- {} ({})\n{}\n",
                role.name,
                role.log.display(),
                read_log(&role.log)
            ));
        }
        out
    }

    /// The directory the chain keeps its files in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Writes a new file only its owner may read (mode 0600 from the start), e.g. a secret.
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

/// What a server that must refuse to start did: its exit code and stderr.
#[derive(Debug)]
pub struct Refused {
    pub code: Option<i32>,
    pub stderr: String,
}

/// Runs a server command that must stop by itself within [`START_TIMEOUT`] (it is killed and
/// the test fails otherwise).
pub fn run_to_exit(cmd: &mut Command) -> anyhow::Result<Refused> {
    let out = metaboot_harness::process::output_with_timeout(cmd, START_TIMEOUT)?;
    Ok(Refused {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
