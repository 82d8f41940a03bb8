//! What a port lookup finds (docs/protocol.md §2.8): (guest IP, router or network) →
//! (instance, project), answered from the read model, and the signed headers naming it.

use http::HeaderValue;

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
