//! The chain's header names as `HeaderName` constants: a `&str` name is parsed and
//! hashed anew on every `get`, `insert` or `remove`, a constant skips the parse.

use http::HeaderName;
use metaboot_proto::headers;

/// `X-Forwarded-For`.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static(headers::FORWARDED_FOR);
/// `X-Neutron-Router-ID`.
pub const ROUTER_ID: HeaderName = HeaderName::from_static(headers::ROUTER_ID);
/// `X-Neutron-Network-ID`.
pub const NETWORK_ID: HeaderName = HeaderName::from_static(headers::NETWORK_ID);
/// `X-Instance-ID`.
pub const INSTANCE_ID: HeaderName = HeaderName::from_static(headers::INSTANCE_ID);
/// `X-Tenant-ID`.
pub const TENANT_ID: HeaderName = HeaderName::from_static(headers::TENANT_ID);
/// `X-Instance-ID-Signature`.
pub const INSTANCE_ID_SIGNATURE: HeaderName =
    HeaderName::from_static(headers::INSTANCE_ID_SIGNATURE);
/// The API's mark for the agent that it does not know the instance.
pub const INSTANCE_UNKNOWN: HeaderName = HeaderName::from_static(headers::INSTANCE_UNKNOWN);
/// `X-metadata-token`.
pub const METADATA_TOKEN: HeaderName = HeaderName::from_static(headers::METADATA_TOKEN);
/// `X-metadata-token-ttl-seconds`.
pub const METADATA_TOKEN_TTL: HeaderName = HeaderName::from_static(headers::METADATA_TOKEN_TTL);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_constant_is_the_protocol_name() {
        for (name, text) in [
            (FORWARDED_FOR, headers::FORWARDED_FOR),
            (ROUTER_ID, headers::ROUTER_ID),
            (NETWORK_ID, headers::NETWORK_ID),
            (INSTANCE_ID, headers::INSTANCE_ID),
            (TENANT_ID, headers::TENANT_ID),
            (INSTANCE_ID_SIGNATURE, headers::INSTANCE_ID_SIGNATURE),
            (INSTANCE_UNKNOWN, headers::INSTANCE_UNKNOWN),
            (METADATA_TOKEN, headers::METADATA_TOKEN),
            (METADATA_TOKEN_TTL, headers::METADATA_TOKEN_TTL),
        ] {
            assert_eq!(name.as_str(), text);
        }
    }
}
