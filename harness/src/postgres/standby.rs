//! A hot standby of a test server, for failovers: made with `pg_basebackup -R` (streaming
//! from its primary), cut off from it, promoted.

use std::os::unix::fs::chown;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{PgServer, make_temp_dir, run};

/// How long [`PgServer::detach_from_primary`] waits for the standby's WAL receiver to stop.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often it asks.
pub const DETACH_POLL: Duration = Duration::from_millis(50);

impl PgServer {
    /// A hot standby of this server, streaming from it, started in a temp dir of its own on
    /// 127.0.0.1 and a free port; stopped and removed on drop like any [`PgServer`].
    pub fn start_standby(&self) -> anyhow::Result<PgServer> {
        let dir = make_temp_dir()?;
        let mut standby = PgServer {
            bin: self.bin.clone(),
            dir,
            port: 0,
            run_as: self.run_as,
            running: false,
        };
        if let Some((uid, gid)) = standby.run_as {
            chown(&standby.dir, Some(uid), Some(gid))
                .with_context(|| format!("failed to hand {} to postgres", standby.dir.display()))?;
        }
        // The primary's `pg_hba.conf` (initdb's, `trust`) lets replication in from 127.0.0.1.
        let mut backup = self.client("pg_basebackup");
        backup
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast"]);
        run(
            &mut backup,
            "copy the primary for a standby (pg_basebackup)",
        )?;
        standby.port = crate::chain::free_port();
        standby.pg_ctl_start()?;
        standby.running = true;
        Ok(standby)
    }

    /// Cuts a standby off from its primary (an asynchronous standby left behind): what the
    /// primary commits from now on never reaches it. Returns once its WAL receiver stopped.
    pub fn detach_from_primary(&self) -> anyhow::Result<()> {
        // ALTER SYSTEM may not run in a transaction block: not through `psql`'s `-1`.
        let mut psql = self.client("psql");
        psql.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-d",
            "postgres",
            "-c",
            "ALTER SYSTEM SET primary_conninfo = ''",
        ]);
        run(&mut psql, "clear the standby's primary_conninfo")?;
        self.reload()?;
        let deadline = Instant::now() + DETACH_TIMEOUT;
        loop {
            let mut count = self.client("psql");
            count.args([
                "-X",
                "-A",
                "-t",
                "-d",
                "postgres",
                "-c",
                "SELECT count(*) FROM pg_stat_wal_receiver",
            ]);
            let out = count
                .output()
                .context("failed to ask the standby for its WAL receiver")?;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the standby's WAL receiver still ran {DETACH_TIMEOUT:?} after its \
                     primary_conninfo was cleared: see its log {}",
                    self.log_path().display()
                );
            }
            std::thread::sleep(DETACH_POLL);
        }
    }

    /// Promotes a standby to a primary, waiting until it takes writes (`pg_ctl promote`).
    pub fn promote(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["promote"])
    }
}
