//! Who is asking (docs/protocol.md §2.6): in proxy mode the agent's signed headers, never the peer
//! address; in source-IP mode the peer address alone.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::http::names;
use http::{HeaderMap, HeaderValue, StatusCode};
use metaboot_proto::signature::SIGNATURE_HEX_LEN;

use crate::http::{Answer, Rejection};

/// Most verified signatures kept at once (a boot storm's guests fit); past it the cache starts
/// over.
pub const MAX_VERIFIED_SIGNATURES: usize = 4096;

/// How the API identifies the instance behind a request.
#[derive(Clone)]
pub enum Identify {
    /// `X-Instance-ID`, `X-Tenant-ID` and `X-Instance-ID-Signature`, signed with this secret.
    Proxy { signatures: Arc<Signatures> },
    /// The TCP peer address is the guest's own (no proxy in front).
    SourceIp,
}

impl Identify {
    /// Proxy mode, checking signatures made with `secret`.
    pub fn proxy(secret: Arc<[u8]>) -> Self {
        Self::Proxy {
            signatures: Arc::new(Signatures::new(secret)),
        }
    }
}

/// Checks `X-Instance-ID-Signature`s, keeping the ones found good: the agent signs the same
/// few instance ids over and over, so a request is a lookup and a constant-time comparison
/// instead of an HMAC. Only a verified signature is kept, so a caller without the secret
/// cannot fill the cache.
pub struct Signatures {
    secret: Arc<[u8]>,
    verified: RwLock<HashMap<Box<str>, [u8; SIGNATURE_HEX_LEN]>>,
}

impl Signatures {
    /// Signatures made with `secret`.
    pub fn new(secret: Arc<[u8]>) -> Self {
        Self {
            secret,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// The shared secret.
    pub fn secret(&self) -> &Arc<[u8]> {
        &self.secret
    }

    /// Whether `signature` is `instance_id`'s (as [`metaboot_proto::verify`] says).
    pub fn verify(&self, instance_id: &str, signature: &str) -> bool {
        {
            let verified = self.verified.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(good) = verified.get(instance_id) {
                return same_bytes(good, signature.as_bytes());
            }
        }
        if !metaboot_proto::verify(&self.secret, instance_id, signature) {
            return false;
        }
        let mut good = [0u8; SIGNATURE_HEX_LEN];
        // Verified, so exactly SIGNATURE_HEX_LEN bytes long.
        good.copy_from_slice(signature.as_bytes());
        let mut verified = self
            .verified
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_VERIFIED_SIGNATURES {
            verified.clear();
        }
        verified.insert(instance_id.into(), good);
        true
    }

    /// Signatures kept now.
    pub fn len(&self) -> usize {
        self.verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compares in time that depends on the lengths only, never on where the bytes differ (a
/// timing difference would let a caller find a signature byte by byte).
fn same_bytes(good: &[u8], given: &[u8]) -> bool {
    if good.len() != given.len() {
        return false;
    }
    let diff = good
        .iter()
        .zip(given)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// The instance a request is for, as its headers claim (signature already checked): the
/// headers' text, not copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub instance_id: &'a str,
    pub tenant_id: &'a str,
    /// `X-Forwarded-For` as the agent sent it (EC2 `local-ipv4` fallback).
    pub address: &'a str,
}

/// What one pass over the request's headers found of a header the claim reads.
#[derive(Clone, Copy, Default)]
struct Seen<'a> {
    /// Its first value.
    first: Option<&'a HeaderValue>,
    /// It came more than once.
    repeated: bool,
}

/// nova's 400 for a header that is not there.
fn missing(shown: &str) -> Answer {
    Answer::refused(
        StatusCode::BAD_REQUEST,
        format!("{shown} header is missing from request."),
        Rejection::MissingHeader,
    )
}

impl<'a> Seen<'a> {
    fn add(&mut self, value: &'a HeaderValue) {
        if self.first.is_some() {
            self.repeated = true;
        } else {
            self.first = Some(value);
        }
    }

    /// Refuses a header that is missing.
    fn present(&self, shown: &str) -> Result<(), Answer> {
        self.first.map(|_| ()).ok_or_else(|| missing(shown))
    }

    /// Exactly one value, as UTF-8 text (a project may be named `équipe`: the registry keeps
    /// it, and the agent sends its bytes): missing and repeated are both refused.
    fn single(self, shown: &str) -> Result<&'a str, Answer> {
        let value = self.first.ok_or_else(|| missing(shown))?;
        if self.repeated {
            return Err(Answer::refused(
                StatusCode::BAD_REQUEST,
                format!("Multiple {shown} headers found within request."),
                Rejection::RepeatedHeader,
            ));
        }
        std::str::from_utf8(value.as_bytes())
            .map(str::trim)
            .map_err(|_| {
                Answer::refused(
                    StatusCode::BAD_REQUEST,
                    format!("{shown} header is not valid text."),
                    Rejection::BadHeader,
                )
            })
    }
}

/// Checks the agent's headers (nova's `_handle_instance_id_request`): 400 for a missing or
/// repeated header (checked in nova's order), 403 for a signature that does not match. The
/// headers are read in one pass (the agent sends a handful), not looked up one name at a time.
pub fn claim<'a>(headers: &'a HeaderMap, signatures: &Signatures) -> Result<Claim<'a>, Answer> {
    let (mut instance, mut signature, mut tenant) =
        (Seen::default(), Seen::default(), Seen::default());
    let mut forwarded: Option<&HeaderValue> = None;
    for (name, value) in headers {
        if *name == names::INSTANCE_ID {
            instance.add(value);
        } else if *name == names::INSTANCE_ID_SIGNATURE {
            signature.add(value);
        } else if *name == names::TENANT_ID {
            tenant.add(value);
        } else if *name == names::FORWARDED_FOR && forwarded.is_none() {
            forwarded = Some(value);
        }
    }
    // nova's order: every header's absence first, then repetitions.
    instance.present("X-Instance-ID")?;
    signature.present("X-Instance-ID-Signature")?;
    tenant.present("X-Tenant-ID")?;
    let instance_id = instance.single("X-Instance-ID")?;
    let signature = signature.single("X-Instance-ID-Signature")?;
    let tenant_id = tenant.single("X-Tenant-ID")?;
    let address = forwarded
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    if !signatures.verify(instance_id, signature) {
        return Err(Answer::refused(
            StatusCode::FORBIDDEN,
            "Invalid proxy request signature.".to_owned(),
            Rejection::BadSignature,
        ));
    }
    Ok(Claim {
        instance_id,
        tenant_id,
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use metaboot_proto::headers;

    const SECRET: &[u8] = b"s3cret";

    fn signatures() -> Signatures {
        Signatures::new(SECRET.into())
    }

    fn signed(instance: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            headers::INSTANCE_ID,
            HeaderValue::from_str(instance).unwrap(),
        );
        h.insert(headers::TENANT_ID, HeaderValue::from_static("p1"));
        h.insert(
            headers::INSTANCE_ID_SIGNATURE,
            HeaderValue::from_str(&metaboot_proto::sign(SECRET, instance)).unwrap(),
        );
        h.insert(
            headers::FORWARDED_FOR,
            HeaderValue::from_static("198.18.0.5"),
        );
        h
    }

    #[test]
    fn accepts_a_good_signature() {
        let headers = signed("i-1");
        let claim = claim(&headers, &signatures()).unwrap();
        assert_eq!(claim.instance_id, "i-1");
        assert_eq!(claim.tenant_id, "p1");
        assert_eq!(claim.address, "198.18.0.5");
    }

    /// A project the registry holds with non-ASCII letters is the guest's, not a bad header.
    #[test]
    fn a_project_named_in_utf_8_is_accepted() {
        let mut headers = signed("i-1");
        headers.insert(
            headers::TENANT_ID,
            HeaderValue::from_str("\u{e9}quipe").unwrap(),
        );
        let accepted = claim(&headers, &signatures()).unwrap();
        assert_eq!(accepted.tenant_id, "\u{e9}quipe");
        headers.insert(
            headers::TENANT_ID,
            HeaderValue::from_bytes(b"\xe9quipe").unwrap(),
        );
        let refused = claim(&headers, &signatures()).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn missing_headers_are_400_in_nova_order() {
        for (name, text) in [
            (headers::INSTANCE_ID, "X-Instance-ID header is missing"),
            (
                headers::INSTANCE_ID_SIGNATURE,
                "X-Instance-ID-Signature header is missing",
            ),
            (headers::TENANT_ID, "X-Tenant-ID header is missing"),
        ] {
            let mut h = signed("i-1");
            h.remove(name);
            let refusal = claim(&h, &signatures()).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
            assert!(refusal.reason().starts_with(text), "{}", refusal.reason());
        }
    }

    /// As nova: a header missing is told before another one repeated.
    #[test]
    fn a_missing_header_is_told_before_a_repeated_one() {
        let mut h = signed("i-1");
        h.append(headers::INSTANCE_ID, HeaderValue::from_static("i-2"));
        h.remove(headers::TENANT_ID);
        let refusal = claim(&h, &signatures()).unwrap_err();
        assert_eq!(
            refusal.reason(),
            "X-Tenant-ID header is missing from request."
        );
    }

    #[test]
    fn repeated_headers_are_400() {
        for name in [
            headers::INSTANCE_ID,
            headers::TENANT_ID,
            headers::INSTANCE_ID_SIGNATURE,
        ] {
            let mut h = signed("i-1");
            h.append(name, HeaderValue::from_static("other"));
            let refusal = claim(&h, &signatures()).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{name}");
        }
    }

    #[test]
    fn bad_signatures_are_403() {
        let good = metaboot_proto::sign(SECRET, "i-1");
        for bad in [
            good.to_uppercase(),
            good[..40].to_owned(),
            String::new(),
            metaboot_proto::sign(b"other", "i-1"),
            metaboot_proto::sign(SECRET, "i-2"),
        ] {
            let mut h = signed("i-1");
            h.insert(
                headers::INSTANCE_ID_SIGNATURE,
                HeaderValue::from_str(&bad).unwrap(),
            );
            assert_eq!(
                claim(&h, &signatures()).unwrap_err().status,
                StatusCode::FORBIDDEN
            );
        }
    }

    #[test]
    fn a_kept_signature_still_refuses_every_other_one() {
        let signatures = signatures();
        let good = metaboot_proto::sign(SECRET, "i-1");
        assert!(signatures.verify("i-1", &good));
        assert_eq!(signatures.len(), 1);
        // Checked against the kept signature now: the same answers as an HMAC gives.
        assert!(signatures.verify("i-1", &good));
        for bad in [
            good.to_uppercase(),
            good[..63].to_owned(),
            format!("{good}0"),
            String::new(),
            metaboot_proto::sign(b"other", "i-1"),
            metaboot_proto::sign(SECRET, "i-2"),
        ] {
            assert!(!signatures.verify("i-1", &bad), "{bad}");
        }
        // A bad signature for another instance is never kept.
        assert!(!signatures.verify("i-2", &good));
        assert_eq!(signatures.len(), 1);
    }

    #[test]
    fn at_most_max_verified_signatures_are_kept() {
        let signatures = signatures();
        for n in 0..=MAX_VERIFIED_SIGNATURES {
            let id = format!("i-{n}");
            assert!(signatures.verify(&id, &metaboot_proto::sign(SECRET, &id)));
            assert!(signatures.len() <= MAX_VERIFIED_SIGNATURES);
        }
        assert!(!signatures.is_empty());
    }
}
