//! What a port lookup finds (docs/protocol.md §2.8): (guest IP, router or network) →
//! (instance, project), answered from the read model, and the signed headers naming it, kept
//! per instance record so a request costs no HMAC, hex encoding or header allocation.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use http::HeaderValue;
use uuid::Uuid;

use crate::model::InstanceRecord;
use crate::model::record::id_text;

/// Most owners kept signed at once (a boot storm's guests fit); past it the cache starts over.
pub const MAX_SIGNED_OWNERS: usize = 4096;

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
/// and signed once per instance record, see [`OwnerCache`]).
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
    record: Arc<InstanceRecord>,
    owner: Arc<Owner>,
}

/// Owners signed once per record of the read model: an entry is good while the model still
/// holds the very record it was built from (a change to the instance replaces the record), so
/// there is no TTL and no invalidation to miss.
pub struct OwnerCache {
    secret: Arc<[u8]>,
    entries: RwLock<HashMap<Uuid, Entry>>,
}

impl OwnerCache {
    /// A cache signing with `secret`.
    pub fn new(secret: Arc<[u8]>) -> Self {
        Self {
            secret,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The owner of `record`, signed: cached, or built and kept.
    pub fn owner(&self, record: &Arc<InstanceRecord>) -> Arc<Owner> {
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            // The entry holds its record, so the address cannot be reused while compared.
            if let Some(entry) = entries
                .get(&record.uuid)
                .filter(|entry| Arc::ptr_eq(&entry.record, record))
            {
                return entry.owner.clone();
            }
        }
        let owner = Arc::new(Owner::new(
            &id_text(&record.uuid),
            &record.project,
            &self.secret,
        ));
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_SIGNED_OWNERS && !entries.contains_key(&record.uuid) {
            entries.clear();
        }
        entries.insert(
            record.uuid,
            Entry {
                record: record.clone(),
                owner: owner.clone(),
            },
        );
        owner
    }

    /// Owners kept now.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"secret";

    fn record(n: u128, project: &str) -> Arc<InstanceRecord> {
        Arc::new(InstanceRecord {
            uuid: Uuid::from_u128(n),
            ec2_id: 1,
            project: project.into(),
            name: "vm".into(),
            hostname: None,
            availability_zone: None,
            launch_index: 0,
            key_pairs: Arc::new([]),
            user_data: None,
            extra: None,
            ports: Box::new([]),
        })
    }

    #[test]
    fn an_owner_is_signed_once_per_record() {
        let cache = OwnerCache::new(SECRET.into());
        let first = record(1, "p");
        let owner = cache.owner(&first);
        assert!(Arc::ptr_eq(&owner, &cache.owner(&first)));
        assert_eq!(owner.instance_id, "00000000-0000-0000-0000-000000000001");
        let signature = owner.signed.signature.to_str().unwrap();
        assert!(metaboot_proto::verify(
            SECRET,
            &owner.instance_id,
            signature
        ));
        assert_eq!(owner.signed.tenant_id, "p");
        // The model replaced the record (the instance moved to another project): signed anew.
        let moved = record(1, "q");
        let again = cache.owner(&moved);
        assert!(!Arc::ptr_eq(&owner, &again));
        assert_eq!(again.signed.tenant_id, "q");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_holds_at_most_max_signed_owners() {
        let cache = OwnerCache::new(SECRET.into());
        let records: Vec<_> = (0..=MAX_SIGNED_OWNERS as u128)
            .map(|n| record(n, "p"))
            .collect();
        for record in &records {
            cache.owner(record);
            assert!(cache.len() <= MAX_SIGNED_OWNERS);
        }
        assert!(!cache.is_empty());
    }
}
