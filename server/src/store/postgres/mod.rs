//! The PostgreSQL backend: sync `postgres` connections from a small pool; a call that finds
//! its connection broken (the server restarted) retries once on a fresh one.

mod conn;
mod grants;
mod identity;
mod locks;
mod pool;
mod schema;
mod slots;
mod sql;
mod tls;
mod upgrade;

use std::time::Duration;

use ::postgres::{Client, Config, IsolationLevel};

use super::error::{StoreError, StoreResult};
use super::feed::{CHANGE_CHANNEL, Wakeups};
use super::sql::{Backend, Sql};
use conn::{PgSql, is_connection_error};
use locks::WRITE_LOCK;
pub use locks::WRITE_LOCK_WAIT;
use pool::{Conn, Pool, error_text};
pub use pool::{MAX_CONNECTIONS, MAX_WRITERS, POOL_WAIT, STATEMENT_TIMEOUT};
use slots::Use;

/// Attempts per call: the first may find a connection the server closed while it sat idle.
const ATTEMPTS: usize = 2;

/// A PostgreSQL registry.
pub struct PostgresBackend {
    pool: Pool,
}

/// Why one attempt failed, and whether another attempt may help.
struct Failure {
    error: StoreError,
    /// The connection is broken: drop it (and the idle ones).
    lost: bool,
    /// Nothing was committed, so running the call again is safe.
    retryable: bool,
}

impl PostgresBackend {
    /// Connects (checking the URL and the server now, not on first use; a URL that requires
    /// TLS is refused first, `tls.rs`) and reads the
    /// schema's version, creating the schema or bringing it up to date when it is missing or
    /// older (`upgrade.rs`).
    pub fn open(url: &str) -> StoreResult<Self> {
        tls::refuse_required_tls(url)?;
        let config: Config = url.parse().map_err(|err: ::postgres::Error| {
            StoreError::Invalid(format!(
                "bad PostgreSQL URL: {}; write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                error_text(&err)
            ))
        })?;
        let backend = Self {
            pool: Pool::new(config),
        };
        backend.bring_schema_up_to_date()?;
        Ok(backend)
    }

    /// [`upgrade::bring_up_to_date`] on a pooled connection, tried again on a fresh one when
    /// the first was found broken.
    fn bring_schema_up_to_date(&self) -> StoreResult<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A read of the schema's version, but for the rare upgrade (which waits for the
            // write lock): one at a time, by the opener or the read model's follower.
            let mut conn = self.pool.take(Use::Read)?;
            match upgrade::bring_up_to_date(&mut conn.client, &self.pool.target) {
                Ok(()) => {
                    conn.give_back();
                    return Ok(());
                }
                Err(failure) if failure.lost => {
                    conn.discard();
                    if attempt < ATTEMPTS {
                        continue;
                    }
                    return Err(failure.error);
                }
                Err(failure) => {
                    // Its transaction, if any, rolled back when dropped.
                    conn.give_back();
                    return Err(failure.error);
                }
            }
        }
    }

    /// Runs `op` on a pooled connection, retrying once on a fresh connection when the first
    /// attempt found the connection broken before anything was committed.
    fn run<T>(
        &self,
        mode: Mode,
        mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.pool.take(match mode {
                Mode::Write => Use::Write,
                Mode::Read | Mode::Snapshot => Use::Read,
            })?;
            let outcome = match mode {
                Mode::Write => self.write_once(&mut conn, &mut op),
                Mode::Read => self.read_once(&mut conn, &mut op),
                Mode::Snapshot => self.snapshot_once(&mut conn, &mut op),
            };
            match outcome {
                Ok(value) => {
                    conn.give_back();
                    return Ok(value);
                }
                Err(failure) if failure.lost => {
                    conn.discard();
                    if failure.retryable && attempt < ATTEMPTS {
                        tracing::debug!(error = %failure.error, "retrying on a new connection");
                        continue;
                    }
                    return Err(failure.error);
                }
                Err(failure) => {
                    conn.give_back();
                    return Err(failure.error);
                }
            }
        }
    }

    fn read_once<T>(
        &self,
        conn: &mut Conn,
        op: &mut impl FnMut(&mut dyn Sql) -> StoreResult<T>,
    ) -> Result<T, Failure> {
        let mut sql = PgSql {
            client: &mut conn.client,
            statements: &mut conn.statements,
            target: &self.pool.target,
            lost: false,
        };
        op(&mut sql).map_err(|error| Failure {
            error,
            lost: sql.lost,
            retryable: true,
        })
    }

    /// One read-only REPEATABLE READ transaction: every statement sees the same snapshot.
    fn snapshot_once<T>(
        &self,
        conn: &mut Conn,
        op: &mut impl FnMut(&mut dyn Sql) -> StoreResult<T>,
    ) -> Result<T, Failure> {
        let target = &self.pool.target;
        let broken = |err: &::postgres::Error| Failure {
            error: StoreError::Backend(format!("{target}: {}", error_text(err))),
            lost: is_connection_error(err),
            retryable: true,
        };
        let mut tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|err| broken(&err))?;
        let mut sql = PgSql {
            client: &mut tx,
            statements: &mut conn.statements,
            target,
            lost: false,
        };
        let value = op(&mut sql).map_err(|error| Failure {
            error,
            lost: sql.lost,
            retryable: true,
        })?;
        tx.commit().map_err(|err| broken(&err))?;
        Ok(value)
    }

    fn write_once<T>(
        &self,
        conn: &mut Conn,
        op: &mut impl FnMut(&mut dyn Sql) -> StoreResult<T>,
    ) -> Result<T, Failure> {
        let target = &self.pool.target;
        let broken = |err: &::postgres::Error, committing: bool| Failure {
            error: if committing {
                StoreError::Backend(format!(
                    "lost the connection to {target} while committing: the change may or may \
                     not be stored; check with list ({})",
                    error_text(err)
                ))
            } else {
                StoreError::Backend(format!("{target}: {}", error_text(err)))
            },
            lost: is_connection_error(err),
            retryable: !committing,
        };
        // READ COMMITTED whatever the database's `default_transaction_isolation`: each
        // statement after the write lock sees what the write before committed (the addresses
        // it took, the change log's last number); under REPEATABLE READ the snapshot of the
        // lock's statement, taken before its wait, would hide it.
        let mut tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(|err| broken(&err, false))?;
        let mut sql = PgSql {
            client: &mut tx,
            statements: &mut conn.statements,
            target,
            lost: false,
        };
        let result = match sql.lock_writes(WRITE_LOCK) {
            Ok(()) => op(&mut sql),
            Err(error) => Err(error),
        };
        // On error, dropping the uncommitted transaction rolls it back.
        let value = result.map_err(|error| Failure {
            error,
            lost: sql.lost,
            retryable: true,
        })?;
        tx.commit().map_err(|err| broken(&err, true))?;
        Ok(value)
    }
}

/// How a call runs on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Statement by statement.
    Read,
    /// In one read-only snapshot.
    Snapshot,
    /// In one READ COMMITTED write transaction under [`WRITE_LOCK`].
    Write,
}

impl Backend for PostgresBackend {
    fn read<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.run(Mode::Read, op)
    }

    fn read_snapshot<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.run(Mode::Snapshot, op)
    }

    fn write<T>(&self, op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.run(Mode::Write, op)
    }

    /// True once after a new connection (the pool's or the `LISTEN` one) reached another
    /// database than the one before: dropped and made again, or a standby promoted in its
    /// place (`identity.rs`). The new one may
    /// be empty (made again with `createdb`, no CLI command run on it yet): its schema is made
    /// first, as an open would, so that the snapshot the change log's reader starts over from
    /// can be read. Until that succeeds the replacement stays to be said.
    fn follow_replacement(&self) -> StoreResult<bool> {
        if !self.pool.identity.is_replaced() {
            return Ok(false);
        }
        self.bring_schema_up_to_date()?;
        Ok(self.pool.identity.take_replaced())
    }

    fn listen(&self) -> StoreResult<Option<Box<dyn Wakeups>>> {
        let mut conn = self.pool.connect()?;
        conn.client
            .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
            .map_err(|err| {
                StoreError::Backend(format!(
                    "cannot listen for changes on {}: {}",
                    self.pool.target,
                    error_text(&err)
                ))
            })?;
        Ok(Some(Box::new(Listener {
            client: conn.client,
            target: self.pool.target.clone(),
        })))
    }
}

/// A connection of its own that has run `LISTEN` on [`CHANGE_CHANNEL`].
struct Listener {
    client: Client,
    target: String,
}

impl Wakeups for Listener {
    fn wait(&mut self, timeout: Duration) -> StoreResult<bool> {
        use ::postgres::fallible_iterator::FallibleIterator as _;
        let lost = |err: ::postgres::Error, target: &str| {
            StoreError::Backend(format!(
                "lost the change notifications of {target}: {}",
                error_text(&err)
            ))
        };
        let heard = {
            let mut notifications = self.client.notifications();
            let heard = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(|err| lost(err, &self.target))?
                .is_some();
            if heard {
                // Several commits may have notified: one wake covers them all.
                while notifications
                    .iter()
                    .next()
                    .map_err(|err| lost(err, &self.target))?
                    .is_some()
                {}
            }
            heard
        };
        if self.client.is_closed() {
            return Err(StoreError::Backend(format!(
                "lost the change notifications of {}: the connection closed",
                self.target
            )));
        }
        Ok(heard)
    }
}
