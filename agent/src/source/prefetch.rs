//! Documents fetched ahead: once the metadata service has answered, the documents a run reads
//! after `meta_data.json` are asked for on a thread (and connection) of their own, one after
//! the other, while the run fetches and applies `meta_data.json`; their round trips through
//! the proxy, the agent and the API overlap that work instead of following it. A run then
//! takes each one where it used to fetch it: the same request, the same retries, the same
//! answer or error, only earlier. cloud-init's OpenStack datasource also reads every document
//! before it applies anything. With one CPU nothing is fetched ahead (`cpus.rs`).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::http::{FetchError, HttpClient};
use crate::cpus::second_cpu;
use crate::retry::RetryError;

/// A document's fetch, as [`HttpClient::get`] returns it.
pub type Fetched = Result<Option<Vec<u8>>, RetryError<FetchError>>;

/// What the fetching thread hands over.
#[derive(Debug, Default)]
struct Arrivals {
    done: Vec<(&'static str, Fetched)>,
    /// The thread has ended (every document fetched, or it stopped).
    ended: bool,
}

#[derive(Debug, Default)]
struct Shared {
    arrivals: Mutex<Arrivals>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Arrivals> {
        // Each change is one push or one flag: the data is whole even after a panic.
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks the fetching thread's end, also when it unwinds.
struct EndMark(Arc<Shared>);

impl Drop for EndMark {
    fn drop(&mut self) {
        self.0.lock().ended = true;
        self.0.arrived.notify_all();
    }
}

/// The documents fetched ahead and not taken yet.
#[derive(Debug, Default)]
pub struct Prefetch {
    /// `(name, limit)` of the documents asked for and not taken.
    documents: Vec<(&'static str, u64)>,
    shared: Arc<Shared>,
}

impl Prefetch {
    /// Starts fetching `base/NAME` (at most LIMIT bytes) for each of `documents`, in order,
    /// when there is a second CPU; otherwise, or when the thread cannot start, every document
    /// is left to [`Prefetch::take`]'s caller.
    pub fn start(client: &HttpClient, base: &str, documents: &[(&'static str, u64)]) -> Self {
        if !second_cpu() {
            return Prefetch::default();
        }
        let shared = Arc::new(Shared::default());
        let (client, base, list) = (client.clone(), base.to_owned(), documents.to_vec());
        let mark = EndMark(shared.clone());
        let started = std::thread::Builder::new()
            .name("fetch ahead".to_owned())
            .spawn(move || {
                for (name, limit) in list {
                    let fetched = client.get(&format!("{base}/{name}"), limit);
                    mark.0.lock().done.push((name, fetched));
                    mark.0.arrived.notify_all();
                }
                drop(mark);
            });
        Prefetch {
            documents: if started.is_ok() {
                documents.to_vec()
            } else {
                Vec::new()
            },
            shared,
        }
    }

    /// The fetch of `name` started with `limit`, waited for; `None` when none was started
    /// (or the thread ended without it): the caller fetches it itself.
    pub fn take(&mut self, name: &str, limit: u64) -> Option<Fetched> {
        let at = self.documents.iter().position(|d| *d == (name, limit))?;
        self.documents.swap_remove(at);
        let mut arrivals = self.shared.lock();
        loop {
            if let Some(at) = arrivals.done.iter().position(|(n, _)| *n == name) {
                return Some(arrivals.done.swap_remove(at).1);
            }
            if arrivals.ended {
                return None;
            }
            arrivals = self
                .shared
                .arrived
                .wait(arrivals)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}
