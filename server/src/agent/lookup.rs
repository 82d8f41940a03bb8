//! Port lookups, cached for a few seconds (docs/protocol.md §2.8): (guest IP, router or network) →
//! (instance, project). Dropped at once when the registry changes ports, routers or networks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::store::Change;
use crate::watch::ChangeListener;

/// How long a lookup is trusted (neutron's old `default_ttl=5`).
pub const DEFAULT_LOOKUP_TTL: Duration = Duration::from_secs(5);
/// Most lookups kept at once; past it expired entries go, then everything.
pub const MAX_CACHED_LOOKUPS: usize = 65_536;

/// Where the guest's port is searched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The networks attached to this router.
    Router(String),
    /// This network.
    Network(String),
}

impl Scope {
    pub fn describe(&self) -> String {
        match self {
            Self::Router(id) => format!("router {id}"),
            Self::Network(id) => format!("network {id}"),
        }
    }
}

/// The instance behind a guest address, with the headers that name it to the API (built
/// and signed once per lookup, not per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub instance_id: String,
    pub project: String,
    pub signed: SignedHeaders,
}

/// `X-Instance-ID`, `X-Tenant-ID` and `X-Instance-ID-Signature` for one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub instance_id: HeaderValue,
    pub tenant_id: HeaderValue,
    pub signature: HeaderValue,
}

impl Owner {
    /// The owner of a port, signed with `secret`.
    pub fn new(instance_id: &str, project: &str, secret: &[u8]) -> Self {
        let text = |value: &str| {
            // Instance ids and projects from the registry are plain text; one that is not a
            // valid header value gets an empty one and fails verification at the API.
            HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        Self {
            instance_id: instance_id.to_owned(),
            project: project.to_owned(),
            signed: SignedHeaders {
                instance_id: text(instance_id),
                tenant_id: text(project),
                signature: text(&metaboot_proto::sign(secret, instance_id)),
            },
        }
    }
}

struct Entry {
    at: Instant,
    owner: Owner,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// By scope first, so a lookup borrows the scope instead of cloning it.
    entries: HashMap<Scope, HashMap<IpAddr, Entry>>,
    count: usize,
}

/// The lookup cache.
pub struct LookupCache {
    ttl: Duration,
    inner: RwLock<Inner>,
}

impl LookupCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// A fresh lookup, or the generation to pass to `insert` after a miss.
    pub fn get(&self, ip: IpAddr, scope: &Scope) -> Result<Owner, u64> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match inner.entries.get(scope).and_then(|by_ip| by_ip.get(&ip)) {
            Some(entry) if entry.at.elapsed() < self.ttl => Ok(entry.owner.clone()),
            _ => Err(inner.generation),
        }
    }

    pub fn insert(&self, ip: IpAddr, scope: Scope, owner: Owner, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.generation != generation {
            return;
        }
        if inner.count >= MAX_CACHED_LOOKUPS {
            let ttl = self.ttl;
            for by_ip in inner.entries.values_mut() {
                by_ip.retain(|_, entry| entry.at.elapsed() < ttl);
            }
            inner.entries.retain(|_, by_ip| !by_ip.is_empty());
            inner.count = inner.entries.values().map(HashMap::len).sum();
            if inner.count >= MAX_CACHED_LOOKUPS {
                inner.entries.clear();
                inner.count = 0;
            }
        }
        let entry = Entry {
            at: Instant::now(),
            owner,
        };
        if inner
            .entries
            .entry(scope)
            .or_default()
            .insert(ip, entry)
            .is_none()
        {
            inner.count += 1;
        }
    }

    /// The current generation, for an `insert` after a read of the store.
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Forgets one lookup (the API did not know its instance). The generation stays: this is
    /// no registry change, and other guests' lookups under way may still be kept.
    pub fn forget(&self, ip: IpAddr, scope: &Scope) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(by_ip) = inner.entries.get_mut(scope)
            && by_ip.remove(&ip).is_some()
        {
            inner.count -= 1;
        }
    }

    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        inner.entries.clear();
        inner.count = 0;
    }
}

impl ChangeListener for LookupCache {
    fn changed(&self, _: &[Change]) {
        // Any port, router, network or instance change may move an address: start over.
        self.clear();
    }

    fn lagged(&self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: &str) -> Owner {
        Owner::new(id, "p", b"secret")
    }

    #[test]
    fn entries_expire_and_invalidation_wins_races() {
        let ip: IpAddr = "198.18.0.10".parse().unwrap();
        let scope = Scope::Router("r1".into());
        let cache = LookupCache::new(Duration::from_millis(50));
        let generation = cache.get(ip, &scope).unwrap_err();
        cache.insert(ip, scope.clone(), owner("a"), generation);
        assert_eq!(cache.get(ip, &scope), Ok(owner("a")));
        // Same address behind another router is another entry.
        assert!(cache.get(ip, &Scope::Router("r2".into())).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(ip, &scope).is_err());
        // A lookup that started before a change is not stored after it.
        let generation = cache.get(ip, &scope).unwrap_err();
        cache.clear();
        cache.insert(ip, scope.clone(), owner("stale"), generation);
        assert!(cache.get(ip, &scope).is_err());
    }
}
