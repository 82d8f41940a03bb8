//! Header names of the proxy → agent → API protocol (docs/protocol.md §2).
//!
//! Lower case, as `http::HeaderName` stores them; HTTP header names are case-insensitive.

/// Set by the namespace proxy to the guest's address; the agent passes it on to the API.
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// Set by a router-hosted proxy: the router whose networks the guest's port is searched in.
pub const ROUTER_ID: &str = "x-neutron-router-id";
/// Set by a network-hosted (DHCP namespace) proxy: the network the guest's port is on.
pub const NETWORK_ID: &str = "x-neutron-network-id";
/// Set by the agent: the instance the request is answered for.
pub const INSTANCE_ID: &str = "x-instance-id";
/// Set by the agent: the project owning that instance.
pub const TENANT_ID: &str = "x-tenant-id";
/// Set by the agent: lowercase hex HMAC-SHA256 of the instance id under the shared secret.
pub const INSTANCE_ID_SIGNATURE: &str = "x-instance-id-signature";
/// Set by OVN's metadata proxy; never trusted from a guest.
pub const OVN_NETWORK_ID: &str = "x-ovn-network-id";
/// Third-party load balancer identification in nova; never trusted from a guest.
pub const METADATA_PROVIDER: &str = "x-metadata-provider";
/// Set by the API on a 404 for an instance it does not know (or of another project), to tell
/// it from a 404 for a path; the agent strips it from what it relays (the 404 itself is
/// relayed as it is), so a guest never sees it.
pub const INSTANCE_UNKNOWN: &str = "x-instance-unknown";
/// IMDSv2-style session token (optional hardening, off by default).
pub const METADATA_TOKEN: &str = "x-metadata-token";
/// Lifetime asked for a session token, in seconds.
pub const METADATA_TOKEN_TTL: &str = "x-metadata-token-ttl-seconds";

/// Prefixes of identity headers a guest must never be able to set: the proxy deletes every
/// header starting with one of these before it adds its own.
pub const GUEST_FORBIDDEN_PREFIXES: &[&str] = &[
    "x-neutron-",
    "x-instance-",
    "x-tenant-",
    "x-ovn-",
    "x-metadata-provider",
    "x-forwarded-",
];

/// True when a guest-sent header with this (any case) name must be dropped by the proxy.
/// Allocation-free: it runs for every header of every request.
pub fn is_guest_forbidden(name: &str) -> bool {
    let name = name.trim().as_bytes();
    GUEST_FORBIDDEN_PREFIXES.iter().any(|prefix| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }) || name.eq_ignore_ascii_case(b"forwarded")
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) a proxy must not forward.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_forbidden_in_any_case() {
        for name in [
            "X-Instance-ID",
            "x-instance-id-signature",
            "X-TENANT-ID",
            "X-Neutron-Router-ID",
            "x-neutron-network-id",
            "X-OVN-Network-ID",
            "X-Metadata-Provider",
            "X-Metadata-Provider-Signature",
            "X-Forwarded-For",
            "Forwarded",
            " X-Instance-ID ",
        ] {
            assert!(is_guest_forbidden(name), "{name} must be dropped");
        }
        for name in [
            "Host",
            "User-Agent",
            "Accept",
            "X-Metadata-Token",
            "Content-Length",
        ] {
            assert!(!is_guest_forbidden(name), "{name} must pass");
        }
    }
}
