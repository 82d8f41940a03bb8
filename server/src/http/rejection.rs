//! Why a request or a connection was refused: one fixed label per reason, counted in `/metrics`
//! (`metaboot_rejections_total{role, reason}`) and named in logs. Every role's refusals are
//! variants of [`Rejection`]; a new refusal is one line in the list below.

use http::StatusCode;

/// Declares the enum, its list and its labels from one table, so a variant cannot lack a label
/// or be missing from [`Rejection::ALL`] (which sizes the metrics' counters).
macro_rules! rejections {
    ($($(#[doc = $doc:literal])+ $variant:ident => $label:literal,)+) => {
        /// Why a request or a connection was refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Rejection {
            /// Every reason, in declaration order (`reason as usize` is its index).
            pub const ALL: &[Rejection] = &[$(Self::$variant,)+];

            /// The label in `/metrics` and in logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }
    };
}

rejections! {
    // Any role.
    /// A 400 with no more specific reason.
    BadRequest => "bad_request",
    /// A 403 with no more specific reason.
    Forbidden => "forbidden",
    /// A 404 with no more specific reason.
    NotFound => "not_found",
    /// A 409 with no more specific reason.
    Conflict => "conflict",
    /// Any other refusal without a more specific reason.
    Refused => "refused",
    /// The registry did not answer (503).
    StoreUnavailable => "store_unavailable",
    /// A path that cannot be served or forwarded.
    BadPath => "bad_path",
    /// A body too large, too slow or malformed.
    BadBody => "bad_body",
    /// An unsupported method.
    BadMethod => "bad_method",
    // The request head, refused by the connection loop before any role sees it (`h1/`).
    /// Not HTTP/1.x, or framing that cannot be trusted (400).
    RequestHeadMalformed => "request_head_malformed",
    /// Not complete within the head timeout (408).
    RequestHeadTimeout => "request_head_timeout",
    /// Over the listener's head size or header count (431); `head_too_large` is a head that
    /// would be over the next hop's.
    RequestHeadTooLarge => "request_head_too_large",
    /// Something this server does not do, such as a transfer coding other than chunked (501).
    NotImplemented => "not_implemented",
    /// The client has no IP address (a Unix socket peer where one is needed).
    NoAddress => "no_address",
    // Connections.
    /// The listener serves `max_connections` already: the connection is closed at once.
    ConnectionCap => "connection_cap",
    /// The guest address holds `max_connections_per_guest` already: closed at once.
    GuestConnectionCap => "guest_connection_cap",
    // The next hop.
    /// Nothing listens upstream (503).
    UpstreamUnreachable => "upstream_unreachable",
    /// The upstream did not answer in time (504).
    UpstreamTimeout => "upstream_timeout",
    /// The upstream connection broke or its answer was malformed or too large (502).
    UpstreamFailed => "upstream_failed",
    /// The request's head, with the headers this hop adds, is over what the next hop takes
    /// (431): not sent.
    HeadTooLarge => "head_too_large",
    // The namespace proxy.
    /// The guest is past its rate limit (429).
    RateLimited => "rate_limited",
    /// A session token request relayed by a proxy inside the guest (an SSRF).
    TokenForwarded => "token_forwarded",
    // The agent and the API: the proxy's and the agent's headers.
    /// A required header is missing.
    MissingHeader => "missing_header",
    /// A header that must appear once appears several times.
    RepeatedHeader => "repeated_header",
    /// A header that is empty or not text.
    BadHeader => "bad_header",
    /// `X-Forwarded-For` is missing or does not end with an address.
    BadForwardedFor => "bad_forwarded_for",
    /// Neither a router nor a network header.
    NoScope => "no_scope",
    /// Both a router and a network header.
    BothScopes => "both_scopes",
    /// No port has the guest's address in its scope.
    NoPort => "no_port",
    /// Several ports have the guest's address in its scope.
    AmbiguousPort => "ambiguous_port",
    /// A host network's DHCP leases, bridge or neighbor table cannot be read now (503: the
    /// guest asks again, where a 404 would fail its datasource for the boot).
    HostNetworkUnreadable => "host_network_unreadable",
    /// The instance-id signature does not match.
    BadSignature => "bad_signature",
    /// The API does not know the instance.
    UnknownInstance => "unknown_instance",
    /// The instance belongs to another project than the agent said.
    TenantMismatch => "tenant_mismatch",
    // The API's password endpoint.
    /// The password is set already (write-once).
    PasswordAlreadySet => "password_already_set",
    /// The password is not text.
    PasswordNotText => "password_not_text",
    /// The password holds a NUL byte (no registry column can store it).
    PasswordHasNul => "password_has_nul",
    /// The password is over the size limit.
    PasswordTooLarge => "password_too_large",
    // IMDSv2-style session tokens.
    /// Tokens are required and the request has none.
    TokenMissing => "token_missing",
    /// The token is not one of this deployment for this instance.
    TokenInvalid => "token_invalid",
    /// The token has expired.
    TokenExpired => "token_expired",
    /// A token was asked for with another method than PUT.
    TokenBadMethod => "token_bad_method",
    /// A token was asked for without a valid lifetime.
    TokenBadTtl => "token_bad_ttl",
}

impl Rejection {
    /// The reason of a refusal known only by its status.
    pub fn of_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::SERVICE_UNAVAILABLE => Self::StoreUnavailable,
            _ => Self::Refused,
        }
    }

    /// This reason's place in [`Rejection::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_reason_has_its_place_and_a_label_of_its_own() {
        for (place, reason) in Rejection::ALL.iter().enumerate() {
            assert_eq!(reason.index(), place, "{reason:?}");
            let label = reason.as_str();
            assert!(
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label:?} is not a Prometheus-friendly label"
            );
        }
        let labels: HashSet<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels.len(),
            Rejection::ALL.len(),
            "two reasons share a label"
        );
    }

    #[test]
    fn the_labels_metrics_and_tests_rely_on() {
        assert_eq!(
            Rejection::GuestConnectionCap.as_str(),
            "guest_connection_cap"
        );
        assert_eq!(Rejection::ConnectionCap.as_str(), "connection_cap");
        assert_eq!(Rejection::RateLimited.as_str(), "rate_limited");
        assert_eq!(
            Rejection::of_status(StatusCode::NOT_FOUND),
            Rejection::NotFound
        );
        assert_eq!(
            Rejection::of_status(StatusCode::IM_A_TEAPOT),
            Rejection::Refused
        );
    }
}
