//! A small pool of PostgreSQL connections: bounded, lazily opened, emptied when the server
//! goes away so the next call reconnects (its bookkeeping: `slots.rs`). Every new connection,
//! the `LISTEN` one too, says which registry it reached (`identity.rs`).

use std::collections::HashMap;
use std::time::Duration;

use ::postgres::{Client, Config, NoTls, Statement};

use super::identity::{Identity, registry_id};
use super::slots::{Lent, Refusal, Shortage, Slots, Use};
use crate::store::error::{StoreError, StoreResult};

/// Most connections one process opens to PostgreSQL; callers beyond that wait.
pub const MAX_CONNECTIONS: usize = 8;
/// Most connections writes hold at once: each waits for the registry's write lock (up to
/// `WRITE_LOCK_WAIT`, `locks.rs`) on its connection, and the rest are the reads' (the read
/// model's follower), which would otherwise wait with them behind another server's bulk write.
pub const MAX_WRITERS: usize = MAX_CONNECTIONS - 1;
const _: () = assert!(MAX_WRITERS >= 1 && MAX_WRITERS < MAX_CONNECTIONS);
/// How long a caller waits for a free connection before giving up.
pub const POOL_WAIT: Duration = Duration::from_secs(10);
/// How long opening a connection may take (when the URL does not say).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single statement may run (a lock wait included) before PostgreSQL cancels it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before a connection's first TCP keepalive probe (the kernel's default is 2
/// hours): a database host gone from the network without closing its connections is found
/// within [`KEEPALIVE_IDLE`] + [`KEEPALIVE_RETRIES`] × [`KEEPALIVE_INTERVAL`], not a query
/// (and the registry follower) blocked for hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Probes unanswered before the connection is dropped.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Longest data sent may stay unacknowledged before the connection is dropped.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection and the statements already prepared on it.
pub struct Conn {
    pub client: Client,
    pub statements: HashMap<String, Statement>,
}

/// The pool; `target` names the server in messages (never the password).
pub struct Pool {
    config: Config,
    pub target: String,
    /// The registry the connections reach.
    pub identity: Identity,
    slots: Slots<Conn>,
}

/// "PostgreSQL at HOST:PORT/DATABASE", for messages.
pub fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            ::postgres::config::Host::Tcp(name) => name.clone(),
            ::postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL at {}:{port}/{database}", hosts.join(","))
}

/// A postgres error with its cause (the crate's own text for server errors is "db error").
pub fn error_text(err: &::postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.to_string().replace('\n', " "),
        None => match std::error::Error::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    }
}

/// The postgres crate's keepalive idle time when the URL sets none.
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

impl Pool {
    /// A pool for `config`; sets a connect timeout when the URL has none.
    pub fn new(mut config: Config) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // The URL's own settings win (`keepalives_idle=…`, `tcp_user_timeout=…`).
        config.keepalives(true);
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVE_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let target = describe(&config);
        Self {
            config,
            target,
            identity: Identity::default(),
            slots: Slots::new(MAX_CONNECTIONS, MAX_WRITERS),
        }
    }

    /// An idle connection, a new one when fewer than [`MAX_CONNECTIONS`] are open, else the
    /// first one given back within [`POOL_WAIT`]; for a write, one of at most [`MAX_WRITERS`].
    /// Give it back or discard it; dropped (its caller panicked), it is closed and no longer
    /// counted.
    pub fn take(&self, purpose: Use) -> StoreResult<Lent<'_, Conn>> {
        self.slots
            .take(
                purpose,
                POOL_WAIT,
                |conn| !conn.client.is_closed(),
                || self.connect(),
            )
            .map_err(|refusal| match refusal {
                Refusal::Open(err) => err,
                Refusal::Busy(Shortage::Connections) => StoreError::Backend(format!(
                    "all {MAX_CONNECTIONS} connections to {} stayed busy for {} s: try again",
                    self.target,
                    POOL_WAIT.as_secs()
                )),
                Refusal::Busy(Shortage::Writers) => StoreError::Backend(format!(
                    "the {MAX_WRITERS} connections writes may use to {} stayed busy for {} s, \
                     waiting for the registry's write lock (held by a long write, such as a \
                     bulk registration, with this server's own writes queued behind it): try \
                     again once it is done",
                    self.target,
                    POOL_WAIT.as_secs()
                )),
            })
    }

    /// A new connection outside the pool's count (the caller keeps it), its registry's
    /// identity recorded.
    pub fn connect(&self) -> StoreResult<Conn> {
        let mut client = self.config.connect(NoTls).map_err(|err| {
            StoreError::Backend(format!(
                "cannot connect to {}: {}; is it running and is the URL right?",
                self.target,
                error_text(&err)
            ))
        })?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                STATEMENT_TIMEOUT.as_millis()
            ))
            .map_err(|err| {
                StoreError::Backend(format!(
                    "cannot set up a connection to {}: {}",
                    self.target,
                    error_text(&err)
                ))
            })?;
        let found = registry_id(&mut client).map_err(|err| {
            StoreError::Backend(format!(
                "cannot read which database {} is: {}; the role must be able to read \
                 pg_catalog.pg_database",
                self.target,
                error_text(&err)
            ))
        })?;
        self.identity.saw(found, &self.target);
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead database host is found in seconds, not the kernel's two hours, unless the URL
    /// says otherwise.
    #[test]
    fn connections_probe_a_silent_peer_within_seconds() {
        let pool = Pool::new("postgresql://u@db.example/registry".parse().unwrap());
        assert!(pool.config.get_keepalives());
        assert_eq!(pool.config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(
            pool.config.get_keepalives_interval(),
            Some(KEEPALIVE_INTERVAL)
        );
        assert_eq!(
            pool.config.get_keepalives_retries(),
            Some(KEEPALIVE_RETRIES)
        );
        assert_eq!(pool.config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let dead_after = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES;
        assert!(dead_after <= Duration::from_secs(60), "{dead_after:?}");
        let own = Pool::new(
            "postgresql://u@db/r?keepalives_idle=300&tcp_user_timeout=9"
                .parse()
                .unwrap(),
        );
        assert_eq!(own.config.get_keepalives_idle(), Duration::from_secs(300));
        assert_eq!(
            own.config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(9))
        );
    }
}
