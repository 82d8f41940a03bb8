//! A throw-away PostgreSQL server for tests: its own data directory in a temp dir, on
//! 127.0.0.1 and a free port, stopped and removed on drop; a hot standby of one, for
//! failovers, in `postgres/standby.rs`.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
//! `postgres` user (Debian's `postgresql` package creates it).

use std::fs;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};

mod standby;

/// Where Debian installs the server binaries, one directory per major version.
pub const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// The user the server runs as when we are root.
pub const POSTGRES_USER: &str = "postgres";
/// Seconds `pg_ctl` waits for the server to start or stop.
pub const PG_CTL_WAIT_SECS: u32 = 60;
/// How long [`PgServer::reload`] waits for the server to have read its configuration again.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`PgServer::reload`] asks the server whether it has.
pub const RELOAD_POLL: Duration = Duration::from_millis(20);
/// Ports tried before giving up when another process grabs the free port first.
pub const START_ATTEMPTS: usize = 3;

/// Distinguishes temp directories of servers started by one process.
static SERVERS: AtomicU32 = AtomicU32::new(0);

/// A running test server.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    /// Removed on drop; holds `data/`, the socket and `server.log`.
    dir: PathBuf,
    port: u16,
    /// Set when we are root: the server runs as this uid/gid.
    run_as: Option<(u32, u32)>,
    running: bool,
}

/// The newest `bin` directory under [`POSTGRES_LIB_DIR`] that has `initdb` and `pg_ctl`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let missing = || {
        anyhow::anyhow!(
            "PostgreSQL is not installed (no initdb under {POSTGRES_LIB_DIR}/*/bin): install \
             it: apt-get install postgresql"
        )
    };
    let entries = fs::read_dir(POSTGRES_LIB_DIR).map_err(|_| missing())?;
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

/// A new empty directory under the system temp dir.
fn make_temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let serial = SERVERS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "metaboot-pg-{}-{serial}-{nanos}",
        std::process::id()
    ));
    fs::create_dir(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

/// Runs `cmd` to completion; on failure the error carries its output.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    if !output.status.success() {
        bail!(
            "failed to {what} ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Refuses a database name that would need quoting.
fn plain_database_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("database name {name:?} must be lower-case letters, digits and '_'");
    }
    Ok(())
}

impl PgServer {
    /// Creates a cluster in a temp dir and starts it on 127.0.0.1 and a free port, with
    /// `trust` authentication for the `postgres` superuser.
    pub fn start() -> anyhow::Result<Self> {
        let bin = find_bin_dir()?;
        let run_as = if geteuid().is_root() {
            let user = User::from_name(POSTGRES_USER)
                .context("failed to look up the postgres user")?
                .with_context(|| {
                    format!(
                        "PostgreSQL refuses to run as root and there is no {POSTGRES_USER} \
                         user: install it: apt-get install postgresql"
                    )
                })?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let dir = make_temp_dir()?;
        let mut server = Self {
            bin,
            dir,
            port: 0,
            run_as,
            running: false,
        };
        // From here on, dropping `server` removes the directory (and stops the server).
        if let Some((uid, gid)) = server.run_as {
            chown(&server.dir, Some(uid), Some(gid))
                .with_context(|| format!("failed to hand {} to postgres", server.dir.display()))?;
        }
        let data = server.data_dir();
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run(&mut initdb, "initialise a PostgreSQL cluster (initdb)")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            // Below the ephemeral range: `start_again` binds it again after a stop, which an
            // outgoing connection of the load could otherwise have taken meanwhile.
            server.port = crate::chain::free_port();
            match server.pg_ctl_start() {
                Ok(()) => {
                    server.running = true;
                    return Ok(server);
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("failed to start PostgreSQL")))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log, for failure reports.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A command from the server's bin dir, run as the postgres user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        // The server's user must be able to read its working directory.
        cmd.current_dir(&self.dir).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups when a root parent sets the uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// [`Self::command`] for a client tool (`psql`, `createdb`, `dropdb`), connected to this
    /// server as its superuser.
    fn client(&self, program: &str) -> Command {
        let mut cmd = self.command(program);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        cmd
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -F",
            self.port,
            self.dir.display()
        );
        self.pg_ctl(&["-o", &options, "start"])
    }

    /// Runs `pg_ctl ACTION…` on our data directory, waiting for it to finish.
    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        // A started server inherits pg_ctl's stdout and stderr and keeps them open: with
        // pipes, reading pg_ctl's output would never end. A file does not wait.
        let output_path = self.dir.join("pg_ctl.out");
        let output = fs::File::create(&output_path)
            .with_context(|| format!("failed to create {}", output_path.display()))?;
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                output
                    .try_clone()
                    .context("failed to share pg_ctl's output file")?,
            )
            .stderr(output);
        let status = cmd
            .status()
            .with_context(|| format!("failed to run pg_ctl {}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "failed to run pg_ctl {} ({status}): {}\nserver log: {}",
                args.join(" "),
                fs::read_to_string(&output_path).unwrap_or_default().trim(),
                fs::read_to_string(self.log_path())
                    .unwrap_or_default()
                    .trim()
            );
        }
        Ok(())
    }

    /// Makes the server read its configuration files (`pg_hba.conf`, `postgresql.conf`) again
    /// and waits until it has: `pg_ctl reload` only sends SIGHUP and returns, so a connection
    /// right after it may still find the old rules. Done when a new session's
    /// `pg_conf_load_time()` (the postmaster's, which reloads `pg_hba.conf` in the same step)
    /// is no longer the one before.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.reload_within(RELOAD_TIMEOUT)
    }

    fn reload_within(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let before = self.conf_load_time(deadline)?;
        self.pg_ctl(&["reload"])?;
        loop {
            let now = self.conf_load_time(deadline)?;
            if now != before {
                return Ok(());
            }
            if Instant::now() + RELOAD_POLL >= deadline {
                bail!(
                    "PostgreSQL did not read its configuration again within {timeout:?} of \
                     `pg_ctl reload` (pg_conf_load_time() still {before}): see its log {}",
                    self.log_path().display()
                );
            }
            std::thread::sleep(RELOAD_POLL);
        }
    }

    /// `pg_conf_load_time()` as a new session reports it, as text; fails at `deadline`.
    fn conf_load_time(&self, deadline: Instant) -> anyhow::Result<String> {
        let mut psql = self.client("psql");
        psql.args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-d",
            "postgres",
            "-c",
            "SELECT pg_conf_load_time()",
        ]);
        let left = deadline.saturating_duration_since(Instant::now());
        let out = crate::process::output_with_timeout(&mut psql, left).with_context(|| {
            format!(
                "PostgreSQL did not answer in time to tell whether it read its configuration \
                 again: see its log {}",
                self.log_path().display()
            )
        })?;
        if !out.status.success() {
            bail!(
                "failed to read pg_conf_load_time() ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        plain_database_name(name)?;
        let mut cmd = self.client("createdb");
        cmd.arg(name);
        run(&mut cmd, &format!("create database {name}"))?;
        Ok(self.url(name))
    }

    /// Drops a database, ending every connection to it first (`dropdb --force`, as `DROP
    /// DATABASE … WITH (FORCE)`): a registry reset under running servers.
    pub fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        plain_database_name(name)?;
        let mut cmd = self.client("dropdb");
        cmd.args(["--force", name]);
        run(&mut cmd, &format!("drop database {name}"))
    }

    /// Creates a login role `user` that must give `password` (scram-sha-256 over TCP, unlike
    /// the trusted superuser) and a database of the same name it owns; returns the database's
    /// URL without the password, e.g. for a test that passes the password another way.
    pub fn create_password_user(&self, user: &str, password: &str) -> anyhow::Result<String> {
        let plain = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !plain(user) || !plain(password) {
            bail!("user and password must be lower-case letters, digits and '_'");
        }
        // First matching line wins: the role's line goes before initdb's `trust` lines.
        let hba = self.data_dir().join("pg_hba.conf");
        let old = fs::read_to_string(&hba)
            .with_context(|| format!("failed to read {}", hba.display()))?;
        fs::write(
            &hba,
            format!("host all {user} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .with_context(|| format!("failed to write {}", hba.display()))?;
        self.reload()?;
        let mut psql = self.client("psql");
        psql.arg("-c").arg(format!(
            "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {user} LOGIN PASSWORD '{password}'"
        ));
        run(&mut psql, &format!("create role {user}"))?;
        let mut createdb = self.client("createdb");
        createdb.args(["-O", user, user]);
        run(&mut createdb, &format!("create database {user}"))?;
        Ok(format!("postgres://{user}@127.0.0.1:{}/{user}", self.port))
    }

    /// Runs `sql` (one or more statements, in one transaction) in database `database` as the
    /// superuser, with `psql`: a test's way to put rows there behind the store's back.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<()> {
        let mut psql = self.client("psql");
        psql.args([
            "-v",
            "ON_ERROR_STOP=1",
            "-1",
            "-q",
            "-d",
            database,
            "-c",
            sql,
        ]);
        run(&mut psql, &format!("run SQL in database {database}"))?;
        Ok(())
    }

    /// The URL of database `database` on this server.
    pub fn url(&self, database: &str) -> String {
        self.url_as(POSTGRES_USER, database)
    }

    /// The URL of database `database` on this server as role `role`, which `trust`
    /// authentication lets in without a password (a role made with `CREATE ROLE … LOGIN`).
    pub fn url_as(&self, role: &str, database: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{database}", self.port)
    }

    /// Restarts the server (fast shutdown: clients are disconnected), same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "fast", "restart"])?;
        self.running = true;
        Ok(())
    }

    /// Stops the server (fast shutdown); [`PgServer::start_again`] brings it back.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.pg_ctl(&["-m", "fast", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if !self.running {
            self.pg_ctl_start()?;
            self.running = true;
        }
        Ok(())
    }

    /// The postmaster's PID from its pid file, if it is (or was) running.
    fn postmaster_pid(data: &Path) -> Option<i32> {
        let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// Whether a process of command line `cmdline` (`/proc/PID/cmdline`: NUL-separated) is a
/// postmaster of data directory `data`, as `pg_ctl -D DATA start` runs it (`postgres -D DATA …`).
fn is_postmaster_of(cmdline: &[u8], data: &Path) -> bool {
    let mut args = cmdline.split(|byte| *byte == 0);
    let is_postgres = args
        .next()
        .and_then(|program| Path::new(std::str::from_utf8(program).ok()?).file_name())
        .is_some_and(|name| name == "postgres");
    let data = data.as_os_str().as_encoded_bytes();
    is_postgres
        && args
            .collect::<Vec<_>>()
            .windows(2)
            .any(|pair| pair[0] == b"-D" && pair[1] == data)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists()
            && self.pg_ctl(&["-m", "immediate", "stop"]).is_err()
            && self.running
        {
            // pg_ctl failed on a server we know we started: kill its postmaster (the PID in
            // our own data directory), so no server outlives the test.
            // The PID file outlives a postmaster that died: its PID may be another process's
            // by now, which is killed only if it is a postmaster of this directory.
            if let Some(pid) = Self::postmaster_pid(&data)
                && let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline"))
                && is_postmaster_of(&cmdline, &data)
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload is polled many times before it is given up, and given the time a busy
    /// machine needs to start a few `psql` sessions.
    #[test]
    fn the_reload_bounds_fit_together() {
        const { assert!(RELOAD_TIMEOUT.as_secs() >= 10) };
        const { assert!(RELOAD_POLL.as_millis() * 100 <= RELOAD_TIMEOUT.as_millis()) };
    }

    /// `psql -c 'SELECT 1'` as `user` into its database, with `password` if any; whether the
    /// server let it in.
    fn logs_in(server: &PgServer, user: &str, password: Option<&str>) -> bool {
        let mut psql = server.command("psql");
        psql.args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
        ])
        .args(["-U", user, "-d", user, "-c", "SELECT 1"])
        .env_remove("PGPASSWORD");
        if let Some(password) = password {
            psql.env("PGPASSWORD", password);
        }
        crate::process::output_with_timeout(&mut psql, Duration::from_secs(30))
            .unwrap()
            .status
            .success()
    }

    /// Needs PostgreSQL (skipped without it, except in CI): `reload` returns only once the
    /// server has read its configuration again, so a password rule added to `pg_hba.conf`
    /// holds for the very next connection; a server that cannot act on the reload (stopped
    /// here) makes it fail in time, saying where the log is.
    #[test]
    fn a_reload_is_waited_for() {
        let server = match PgServer::start() {
            Ok(server) => server,
            Err(err) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "PostgreSQL is required in CI: {err:#}"
                );
                eprintln!("skipped: {err:#}");
                return;
            }
        };
        let postmaster = Pid::from_raw(PgServer::postmaster_pid(&server.data_dir()).unwrap());
        kill(postmaster, Signal::SIGSTOP).unwrap();
        let began = Instant::now();
        let stopped = server.reload_within(Duration::from_secs(2));
        let took = began.elapsed();
        kill(postmaster, Signal::SIGCONT).unwrap();
        let err = format!(
            "{:#}",
            stopped.expect_err("a stopped server did not reload")
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(err.contains("see its log"), "{err}");

        server
            .create_password_user("reload_user", "reload_pw")
            .unwrap();
        assert!(
            !logs_in(&server, "reload_user", None),
            "the trust rule still held after the reload"
        );
        assert!(logs_in(&server, "reload_user", Some("reload_pw")));
        assert!(!logs_in(&server, "reload_user", Some("wrong_pw")));
    }

    /// The PID in a stale `postmaster.pid` is killed only when it is this directory's
    /// postmaster, never a process that took the PID later.
    #[test]
    fn only_a_postmaster_of_the_directory_is_killed() {
        let data = Path::new("/tmp/metaboot-pg-1-0-5/data");
        let postmaster =
            b"/usr/lib/postgresql/15/bin/postgres\0-D\0/tmp/metaboot-pg-1-0-5/data\0-p\0\
                           20001\0-k\0/tmp/metaboot-pg-1-0-5\0-c\0listen_addresses=127.0.0.1\0-F\0";
        assert!(is_postmaster_of(postmaster, data));
        assert!(!is_postmaster_of(postmaster, Path::new("/tmp/other/data")));
        assert!(!is_postmaster_of(
            b"/usr/bin/sleep\0-D\0/tmp/metaboot-pg-1-0-5/data\0",
            data
        ));
        assert!(!is_postmaster_of(b"/usr/sbin/sshd\0-D\0", data));
        assert!(!is_postmaster_of(b"", data));
    }
}
