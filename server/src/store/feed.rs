//! What the store hands a server's read model: every record at once from one consistent
//! snapshot ([`Record`], `Store::snapshot`), then what changed after a change-log sequence
//! number ([`Feed`], `Store::changes_after`), read in one snapshot too, so a batch never mixes
//! two states of the registry.

use std::time::Duration;

use super::error::StoreResult;
use super::model::{Change, ChangeKind, Instance, Network, Port, Router};
use super::rows::LoggedChange;

/// Most changes a read model applies as one batch, at the least (`model::batch_limit` allows
/// more for a large registry); past its limit the caller is told to build from a snapshot
/// instead (cheaper than fetching that many records one by one).
pub const MAX_CHANGES_PER_BATCH: usize = 10_000;

/// The PostgreSQL channel every write transaction notifies, with the newest change's sequence
/// number as the payload (sent at commit).
pub const CHANGE_CHANNEL: &str = "metaboot_changes";

/// One record of a snapshot. Networks come first, then routers, then instances (each with its
/// ports, oldest first), so a reader can check references as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The snapshot starts (again, after a connection lost part way: every record before this
    /// one is to be forgotten, or the reader would mix two snapshots).
    Start,
    Network(Network),
    Router(Router),
    Instance(Instance, Vec<Port>),
}

/// What changed after a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// Nothing after it.
    UpToDate,
    /// The change log no longer holds every change after it (pruned past it), or the store
    /// was reset (its newest change is older) or replaced (a SQLite file or a PostgreSQL
    /// database made again): build from a snapshot.
    Gap,
    /// More changes than the caller's limit: build from a snapshot.
    TooMany,
    /// A change of a kind this metaboot does not know (a newer one logged it): what it
    /// touched cannot be told, so build from a snapshot.
    Unknown(LoggedChange),
    /// The changes, with the records they touched as they are now.
    Batch(Batch),
}

/// Changes after a sequence number and the records they touched, all read in one snapshot.
/// A changed record missing from its list was deleted. Every port change is logged with its
/// instance's, and an instance comes with all its ports: applying `instances` covers ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The newest change this batch covers.
    pub through: i64,
    /// The changes, oldest first.
    pub changes: Vec<Change>,
    /// Changed networks that exist.
    pub networks: Vec<Network>,
    /// Changed routers that exist, with their networks.
    pub routers: Vec<Router>,
    /// Changed instances that exist (and owners of changed ports), each with its ports.
    pub instances: Vec<(Instance, Vec<Port>)>,
}

impl Batch {
    /// Ids of the changed records of one kind, each once.
    pub fn changed(&self, kind: ChangeKind) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.changes
            .iter()
            .filter(move |change| change.kind == kind && seen.insert(change.id.as_str()))
            .map(|change| change.id.as_str())
    }
}

/// A connection that hears about new changes as they are committed (PostgreSQL's
/// `LISTEN`), so a server need not poll fast.
pub trait Wakeups: Send {
    /// Waits up to `timeout` for a notification; true when one came (all pending ones are
    /// consumed). An error means the connection is gone: open a new one later.
    fn wait(&mut self, timeout: Duration) -> StoreResult<bool>;
}
