//! IMDSv2-style session tokens (optional hardening, off by default; docs/protocol.md §9.1):
//! `PUT /latest/api/token` with `X-metadata-token-ttl-seconds` returns a token bound to the
//! instance, and with `--require-token` every other request needs it in `X-metadata-token`.
//!
//! Tokens are stateless: `v1.<expiry>.<hex HMAC-SHA256(instance id, expiry)>`, keyed by a key
//! derived from the shared secret, so every API replica accepts the tokens of every other one.
//! The expiry is wall-clock UNIX time for the same reason (replicas share no monotonic clock).
//! The namespace proxy refuses a token PUT that carries `X-Forwarded-For`: a request relayed
//! by a proxy inside the guest (an SSRF) cannot get a token.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::names;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::path::Segment;
use crate::http::{Answer, Rejection};

/// The path a token is asked for at (after normalisation).
pub const TOKEN_PATH: [&str; 3] = ["latest", "api", "token"];
/// Shortest lifetime a token may be given, in seconds.
pub const MIN_TTL_SECS: u64 = 1;
/// Longest lifetime a token may be given, in seconds (six hours, as EC2 and Firecracker).
pub const MAX_TTL_SECS: u64 = 21_600;
/// Longest token accepted; longer values are refused before any work is done.
pub const MAX_TOKEN_BYTES: usize = 100;
/// The format version written at the front of every token.
const TOKEN_VERSION: &str = "v1";
/// What the token key is derived from the shared secret with (domain separation: a token MAC
/// can never be confused with an instance-id signature).
const KEY_LABEL: &str = "metaboot metadata session token key v1";

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    key: Vec<u8>,
    required: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Seconds since the UNIX epoch (0 if the clock is before it, which only makes tokens expire).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Tokens keyed from `secret` (the agent–API shared secret); not required until
    /// [`Tokens::require`].
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: metaboot_proto::sign(secret, KEY_LABEL).into_bytes(),
            required: false,
        }
    }

    /// Tokens keyed from fresh random bytes (source-IP mode has no shared secret: replicas
    /// then do not accept each other's tokens).
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self::new(&bytes)
    }

    /// Every request but the token PUT must carry a valid token.
    pub fn require(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// True when requests need a token.
    pub fn required(&self) -> bool {
        self.required
    }

    fn mac(&self, instance_id: &str, expiry: u64) -> String {
        metaboot_proto::sign(&self.key, &format!("{instance_id}\n{expiry}"))
    }

    /// A token for `instance_id` valid for `ttl` seconds from `now`.
    pub fn issue_at(&self, instance_id: &str, ttl: u64, now: u64) -> String {
        let expiry = now.saturating_add(ttl);
        format!("{TOKEN_VERSION}.{expiry}.{}", self.mac(instance_id, expiry))
    }

    /// Checks `token` for `instance_id` at `now`.
    pub fn check_at(&self, token: &str, instance_id: &str, now: u64) -> Result<(), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let mut parts = token.splitn(3, '.');
        let (Some(TOKEN_VERSION), Some(expiry), Some(mac)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        // Only the spelling the token was made with: digits, no sign, no leading zero.
        let canonical = expiry
            .parse::<u64>()
            .ok()
            .filter(|value| value.to_string() == expiry);
        let Some(expiry) = canonical else {
            return Err(TokenError::Invalid);
        };
        if !metaboot_proto::verify(&self.key, &format!("{instance_id}\n{expiry}"), mac) {
            return Err(TokenError::Invalid);
        }
        if now >= expiry {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Answers `PUT /latest/api/token` for an identified instance.
    pub fn answer_put(&self, method: &Method, headers: &HeaderMap, instance_id: &str) -> Answer {
        if method != Method::PUT {
            return Answer::refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "Use PUT to get a session token.".to_owned(),
                Rejection::TokenBadMethod,
            );
        }
        match ttl(headers) {
            Ok(ttl) => Answer::text(Bytes::from(self.issue_at(instance_id, ttl, unix_now()))),
            Err(reason) => Answer::refused(StatusCode::BAD_REQUEST, reason, Rejection::TokenBadTtl),
        }
    }

    /// With tokens required: `None` when the request carries a valid token for
    /// `instance_id`, else the 401 to answer.
    pub fn refusal(&self, headers: &HeaderMap, instance_id: &str) -> Option<Answer> {
        if !self.required {
            return None;
        }
        let mut values = headers.get_all(names::METADATA_TOKEN).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Some(Answer::refused(
                StatusCode::UNAUTHORIZED,
                "A session token is required: PUT /latest/api/token with X-metadata-token-ttl-seconds, then send it in X-metadata-token.".to_owned(),
                Rejection::TokenMissing,
            ));
        };
        let checked = value
            .to_str()
            .map_err(|_| TokenError::Invalid)
            .and_then(|token| self.check_at(token.trim(), instance_id, unix_now()));
        match checked {
            Ok(()) => None,
            Err(err) => Some(Answer::refused(
                StatusCode::UNAUTHORIZED,
                err.reason().to_owned(),
                err.rejection(),
            )),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this deployment for this instance.
    #[error("invalid session token")]
    Invalid,
    /// Was valid, is past its expiry.
    #[error("expired session token")]
    Expired,
}

impl TokenError {
    fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "The session token is not valid: PUT /latest/api/token for a new one.",
            Self::Expired => "The session token has expired: PUT /latest/api/token for a new one.",
        }
    }

    fn rejection(self) -> Rejection {
        match self {
            Self::Invalid => Rejection::TokenInvalid,
            Self::Expired => Rejection::TokenExpired,
        }
    }
}

/// The lifetime a PUT asks for: exactly one `X-metadata-token-ttl-seconds` of
/// [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
fn ttl(headers: &HeaderMap) -> Result<u64, String> {
    let mut values = headers.get_all(names::METADATA_TOKEN_TTL).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(
            "Exactly one X-metadata-token-ttl-seconds header is required to get a token."
                .to_owned(),
        );
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|ttl| (MIN_TTL_SECS..=MAX_TTL_SECS).contains(ttl))
        .ok_or_else(|| {
            format!(
                "X-metadata-token-ttl-seconds must be a whole number of seconds from {MIN_TTL_SECS} to {MAX_TTL_SECS}."
            )
        })
}

/// True when normalised path segments name the token endpoint.
pub fn is_token_path(segments: &[Segment<'_>]) -> bool {
    segments.iter().map(|segment| &**segment).eq(TOKEN_PATH)
}

/// What a relayed token PUT ([`is_forwarded_token_request`]) is told, with 403.
pub const FORWARDED_TOKEN_REFUSAL: &str = "A session token request must not carry X-Forwarded-For.";

/// The namespace proxy's SSRF defence: a token PUT that carries `X-Forwarded-For` (or
/// `Forwarded`) came through a proxy inside the guest and must not get a token. Checked on the
/// guest's own headers, before the proxy replaces them.
pub fn is_forwarded_token_request(method: &Method, raw_path: &str, headers: &HeaderMap) -> bool {
    is_token_put(method, raw_path)
        && (headers.contains_key(names::FORWARDED_FOR)
            || headers.contains_key(http::header::FORWARDED))
}

/// The agent's side of the same defence, for a proxy in front of it that adds its own
/// `X-Forwarded-For` line and keeps the guest's (Neutron's haproxy, `option forwardfor`,
/// docs/protocol.md §3): a token PUT whose `X-Forwarded-For` names more than one address (two
/// lines, or a list), or that carries `Forwarded`, passed a proxy inside the guest first.
/// `raw_path` may carry a query, as the agent receives it.
pub fn is_relayed_token_request(method: &Method, raw_path: &str, headers: &HeaderMap) -> bool {
    is_token_put(
        method,
        raw_path.split_once('?').map_or(raw_path, |(path, _)| path),
    ) && (headers.contains_key(http::header::FORWARDED) || forwarded_hops(headers) > 1)
}

/// A PUT on the token endpoint, its path as the guest wrote it (no query); the method is
/// compared first, so any other request costs nothing more.
fn is_token_put(method: &Method, raw_path: &str) -> bool {
    *method == Method::PUT
        && super::path::segments(raw_path).is_ok_and(|segments| is_token_path(&segments))
}

/// How many addresses the `X-Forwarded-For` lines name together.
fn forwarded_hops(headers: &HeaderMap) -> usize {
    headers
        .get_all(names::FORWARDED_FOR)
        .iter()
        .map(|line| line.as_bytes().split(|&byte| byte == b',').count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use metaboot_proto::headers;

    const NOW: u64 = 1_800_000_000;

    fn with(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_token_is_bound_to_its_instance_and_expires() {
        let tokens = Tokens::new(b"secret");
        let token = tokens.issue_at("i-1", 60, NOW);
        assert!(token.len() <= MAX_TOKEN_BYTES, "{token}");
        assert_eq!(tokens.check_at(&token, "i-1", NOW), Ok(()));
        assert_eq!(tokens.check_at(&token, "i-1", NOW + 59), Ok(()));
        assert_eq!(
            tokens.check_at(&token, "i-1", NOW + 60),
            Err(TokenError::Expired)
        );
        assert_eq!(
            tokens.check_at(&token, "i-2", NOW),
            Err(TokenError::Invalid)
        );
        // Another replica with the same secret agrees; another secret does not.
        assert_eq!(Tokens::new(b"secret").check_at(&token, "i-1", NOW), Ok(()));
        assert_eq!(
            Tokens::new(b"other").check_at(&token, "i-1", NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tampered_and_oversized_tokens_are_invalid() {
        let tokens = Tokens::new(b"secret");
        let token = tokens.issue_at("i-1", 60, NOW);
        let (head, mac) = token.rsplit_once('.').unwrap();
        let later = token.replace(&(NOW + 60).to_string(), &(NOW + 6000).to_string());
        for bad in [
            String::new(),
            "v1".to_owned(),
            "v1..".to_owned(),
            format!("v2{}", &token[2..]),
            format!("{head}.{}", mac.to_uppercase()),
            later,
            format!("{token}0"),
            "x".repeat(MAX_TOKEN_BYTES + 1),
            // The same expiry spelt otherwise: only the token as issued is one.
            token.replace(&(NOW + 60).to_string(), &format!("+{}", NOW + 60)),
            token.replace(&(NOW + 60).to_string(), &format!("0{}", NOW + 60)),
        ] {
            assert_eq!(
                tokens.check_at(&bad, "i-1", NOW),
                Err(TokenError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn ttl_bounds_are_enforced() {
        let ttl_of = |values: &[&str]| ttl(&with(headers::METADATA_TOKEN_TTL, values));
        assert_eq!(ttl_of(&["1"]), Ok(MIN_TTL_SECS));
        assert_eq!(ttl_of(&["21600"]), Ok(MAX_TTL_SECS));
        assert_eq!(ttl_of(&[" 60 "]), Ok(60));
        for bad in [
            "0",
            "21601",
            "-1",
            "1.5",
            "",
            "sixty",
            "99999999999999999999",
        ] {
            assert!(ttl_of(&[bad]).is_err(), "{bad}");
        }
        assert!(ttl_of(&[]).is_err());
        assert!(ttl_of(&["60", "60"]).is_err());
    }

    #[test]
    fn put_answers_a_token_and_other_methods_405() {
        let tokens = Tokens::new(b"secret").require(true);
        let answer = tokens.answer_put(
            &Method::PUT,
            &with(headers::METADATA_TOKEN_TTL, &["60"]),
            "i-1",
        );
        assert_eq!(answer.status, StatusCode::OK);
        let token = answer.reason().to_owned();
        assert!(
            tokens
                .refusal(&with(headers::METADATA_TOKEN, &[&token]), "i-1")
                .is_none()
        );
        let get = tokens.answer_put(&Method::GET, &HeaderMap::new(), "i-1");
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        let no_ttl = tokens.answer_put(&Method::PUT, &HeaderMap::new(), "i-1");
        assert_eq!(no_ttl.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn required_tokens_refuse_with_401() {
        let tokens = Tokens::new(b"secret");
        assert!(tokens.refusal(&HeaderMap::new(), "i-1").is_none(), "off");
        let tokens = tokens.require(true);
        let missing = tokens.refusal(&HeaderMap::new(), "i-1").unwrap();
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert!(missing.reason().contains("PUT /latest/api/token"));
        let bad = tokens
            .refusal(&with(headers::METADATA_TOKEN, &["v1.1.ab"]), "i-1")
            .unwrap();
        assert_eq!(bad.rejection(), Some(Rejection::TokenInvalid));
        let good = tokens.issue_at("i-1", 60, unix_now());
        let twice = tokens
            .refusal(&with(headers::METADATA_TOKEN, &[&good, &good]), "i-1")
            .unwrap();
        assert_eq!(twice.status, StatusCode::UNAUTHORIZED);
        let expired = tokens.issue_at("i-1", 1, unix_now() - 10);
        let refused = tokens
            .refusal(&with(headers::METADATA_TOKEN, &[&expired]), "i-1")
            .unwrap();
        assert_eq!(refused.rejection(), Some(Rejection::TokenExpired));
    }

    #[test]
    fn forwarded_token_puts_are_recognised_on_any_spelling_of_the_path() {
        let forwarded = with(headers::FORWARDED_FOR, &["10.0.0.1"]);
        for path in [
            "/latest/api/token",
            "//latest/api/token/",
            "/latest/./api/x/../token",
            "/latest/api/%74oken",
        ] {
            assert!(
                is_forwarded_token_request(&Method::PUT, path, &forwarded),
                "{path}"
            );
        }
        assert!(!is_forwarded_token_request(
            &Method::PUT,
            "/latest/api/token",
            &HeaderMap::new()
        ));
        assert!(!is_forwarded_token_request(
            &Method::GET,
            "/latest/api/token",
            &forwarded
        ));
        assert!(!is_forwarded_token_request(
            &Method::PUT,
            "/latest/meta-data",
            &forwarded
        ));
        let rfc7239 = with("forwarded", &["for=10.0.0.1"]);
        assert!(is_forwarded_token_request(
            &Method::PUT,
            "/latest/api/token",
            &rfc7239
        ));
    }
}
