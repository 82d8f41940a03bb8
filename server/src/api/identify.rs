//! Who is asking (docs/protocol.md §2.6): in proxy mode the agent's signed headers, never the peer
//! address; in source-IP mode the peer address alone.

use http::{HeaderMap, StatusCode};
use metaboot_proto::headers;

use crate::http::{Answer, Rejection};

/// How the API identifies the instance behind a request.
#[derive(Clone)]
pub enum Identify {
    /// `X-Instance-ID`, `X-Tenant-ID` and `X-Instance-ID-Signature`, signed with this secret.
    Proxy { secret: std::sync::Arc<[u8]> },
    /// The TCP peer address is the guest's own (no proxy in front).
    SourceIp,
}

/// The instance a request is for, as its headers claim (signature already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub instance_id: String,
    pub tenant_id: String,
    /// `X-Forwarded-For` as the agent sent it (EC2 `local-ipv4` fallback).
    pub address: String,
}

/// Reads exactly one value of a header: missing and repeated are both refused.
fn single<'a>(headers: &'a HeaderMap, name: &'static str, shown: &str) -> Result<&'a str, Answer> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(Answer::refused(
            StatusCode::BAD_REQUEST,
            format!("{shown} header is missing from request."),
            Rejection::MissingHeader,
        ));
    };
    if values.next().is_some() {
        return Err(Answer::refused(
            StatusCode::BAD_REQUEST,
            format!("Multiple {shown} headers found within request."),
            Rejection::RepeatedHeader,
        ));
    }
    value.to_str().map(str::trim).map_err(|_| {
        Answer::refused(
            StatusCode::BAD_REQUEST,
            format!("{shown} header is not valid text."),
            Rejection::BadHeader,
        )
    })
}

/// Checks the agent's headers (nova's `_handle_instance_id_request`): 400 for a missing or
/// repeated header (checked in nova's order), 403 for a signature that does not match.
pub fn claim(headers: &HeaderMap, secret: &[u8]) -> Result<Claim, Answer> {
    let instance_id = single(headers, headers::INSTANCE_ID, "X-Instance-ID")?;
    let signature = single(
        headers,
        headers::INSTANCE_ID_SIGNATURE,
        "X-Instance-ID-Signature",
    )?;
    let tenant_id = single(headers, headers::TENANT_ID, "X-Tenant-ID")?;
    let address = headers
        .get(headers::FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !metaboot_proto::verify(secret, instance_id, signature) {
        return Err(Answer::refused(
            StatusCode::FORBIDDEN,
            "Invalid proxy request signature.".to_owned(),
            Rejection::BadSignature,
        ));
    }
    Ok(Claim {
        instance_id: instance_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &[u8] = b"s3cret";

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
        let claim = claim(&signed("i-1"), SECRET).unwrap();
        assert_eq!(claim.instance_id, "i-1");
        assert_eq!(claim.tenant_id, "p1");
        assert_eq!(claim.address, "198.18.0.5");
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
            let refusal = claim(&h, SECRET).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
            assert!(refusal.reason().starts_with(text), "{}", refusal.reason());
        }
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
            let refusal = claim(&h, SECRET).unwrap_err();
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
            assert_eq!(claim(&h, SECRET).unwrap_err().status, StatusCode::FORBIDDEN);
        }
    }
}
