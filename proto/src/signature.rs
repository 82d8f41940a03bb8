//! `X-Instance-ID-Signature` (docs/protocol.md §2.5): lowercase hex HMAC-SHA256 of the instance id,
//! keyed with the shared secret. Any key length works, the empty key included (nova tolerates it).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a signature in hex characters.
pub const SIGNATURE_HEX_LEN: usize = 64;

fn mac(secret: &[u8], instance_id: &str) -> HmacSha256 {
    // Cannot fail: HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(instance_id.as_bytes());
    mac
}

/// Signs an instance id: 64 lowercase hex characters.
pub fn sign(secret: &[u8], instance_id: &str) -> String {
    hex::encode(mac(secret, instance_id).finalize().into_bytes())
}

/// Checks a signature in constant time. Only the exact lowercase hex form `sign` produces is
/// accepted: upper-case hex, a wrong length or stray characters are refused.
pub fn verify(secret: &[u8], instance_id: &str, signature: &str) -> bool {
    if signature.len() != SIGNATURE_HEX_LEN
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    let mut tag = [0u8; SIGNATURE_HEX_LEN / 2];
    if hex::decode_to_slice(signature, &mut tag).is_err() {
        return false;
    }
    mac(secret, instance_id).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors from Python: hmac.new(key, msg, hashlib.sha256).hexdigest()
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "",
            "",
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
        ),
        (
            "",
            "a4b1e8c2-0d3f-4b5a-9c6e-7f8091a2b3c4",
            "369c2220fd27bb5d429446d8319ab4a9c9e59eb66f7c30488db5c667a987333c",
        ),
        (
            "secret",
            "a4b1e8c2-0d3f-4b5a-9c6e-7f8091a2b3c4",
            "d481d707922922a82c86e9ac4cbf1a3001d5f0cb3ca32a1e44b742500c7da937",
        ),
    ];

    #[test]
    fn matches_python_hmac() {
        for (key, msg, hex) in VECTORS {
            assert_eq!(sign(key.as_bytes(), msg), *hex, "key={key:?} msg={msg:?}");
            assert!(verify(key.as_bytes(), msg, hex));
        }
    }

    #[test]
    fn refuses_tampered_truncated_uppercase_and_empty() {
        let good = sign(b"secret", "instance");
        assert!(verify(b"secret", "instance", &good));
        assert!(!verify(b"secret", "instance", &good.to_uppercase()));
        assert!(!verify(b"secret", "instance", &good[..63]));
        assert!(!verify(b"secret", "instance", ""));
        assert!(!verify(b"secret", "other", &good));
        assert!(!verify(b"other", "instance", &good));
        let mut flipped = good.into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert!(!verify(
            b"secret",
            "instance",
            &String::from_utf8(flipped).unwrap()
        ));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(secret in proptest::collection::vec(any::<u8>(), 0..80), id in ".{0,64}") {
            let signature = sign(&secret, &id);
            prop_assert_eq!(signature.len(), SIGNATURE_HEX_LEN);
            prop_assert!(verify(&secret, &id, &signature));
        }

        #[test]
        fn random_signatures_are_refused(secret in proptest::collection::vec(any::<u8>(), 0..32), id in "[a-f0-9-]{36}", forged in "[0-9a-f]{64}") {
            prop_assume!(forged != sign(&secret, &id));
            prop_assert!(!verify(&secret, &id, &forged));
        }
    }
}
