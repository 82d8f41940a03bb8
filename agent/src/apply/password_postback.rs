//! The password post-back (nova's `get-password`, docs/protocol.md §9.7): a login password the
//! guest agent makes itself, encrypted for the instance's first SSH key as cloudbase-init does
//! it (RSA PKCS#1 v1.5, then base64), so that only the holder of the private key can read it
//! from the metadata service's `password` endpoint (`nova get-password`, `metaboot-server
//! instance get-password`).

mod rsa;

use base64::Engine as _;
use metaboot_proto::ssh_key::{self, SshKeyError};

pub use rsa::{RsaError, encrypt_pkcs1v15};

/// The most bytes the `password` endpoint stores (nova: 4 × 255): the base64 of the
/// ciphertext must fit, which bounds the key to 6120 bits.
pub const MAX_POSTED_BYTES: usize = 1020;
/// The smallest RSA key used: a smaller modulus does not protect the password.
pub const MIN_RSA_BITS: usize = 1024;

/// Why the password cannot be encrypted (nothing is set then).
#[derive(Debug, thiserror::Error)]
pub enum PostbackError {
    #[error(
        "No SSH key in meta_data.json: the password is encrypted with the instance's first key"
    )]
    NoKey,
    #[error("The instance's first SSH key ({name}) cannot encrypt the password")]
    Key {
        name: String,
        #[source]
        source: SshKeyError,
    },
    #[error(
        "The instance's first SSH key ({name}) is {bits}-bit RSA: use a key of {MIN_RSA_BITS} to 6120 bits (the password endpoint stores {MAX_POSTED_BYTES} bytes of base64)"
    )]
    KeySize { name: String, bits: usize },
    #[error("RSA encryption failed")]
    Encrypt(#[from] RsaError),
}

/// Encrypts `password` for the key pair `name` (an OpenSSH public key line): base64 of the
/// RSA PKCS#1 v1.5 ciphertext, what `nova get-password` decrypts.
pub fn encrypt(name: &str, key_line: &str, password: &str) -> Result<String, PostbackError> {
    let key = ssh_key::rsa_public_key(key_line).map_err(|source| PostbackError::Key {
        name: name.to_owned(),
        source,
    })?;
    let bits = key.bits();
    let encoded_len = base64::encoded_len(key.n.len(), true).unwrap_or(usize::MAX);
    if bits < MIN_RSA_BITS || encoded_len > MAX_POSTED_BYTES {
        return Err(PostbackError::KeySize {
            name: name.to_owned(),
            bits,
        });
    }
    let ciphertext = encrypt_pkcs1v15(&key.n, &key.e, password.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::testutil::{require_tool, run};

    /// A key pair made by ssh-keygen (`-m PEM`, so openssl reads the private half).
    fn keygen(dir: &std::path::Path, args: &[&str]) -> (std::path::PathBuf, String) {
        let key = dir.join("key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "test", "-f"])
            .arg(&key)
            .args(args));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public)
    }

    /// What `nova get-password` does with the private key (novaclient: base64 decode, then
    /// `openssl rsautl -decrypt`, PKCS#1 v1.5) gives the password back.
    #[test]
    fn openssl_decrypts_what_is_posted() {
        if !require_tool("ssh-keygen") || !require_tool("openssl") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keygen(dir.path(), &["-t", "rsa", "-b", "2048", "-m", "PEM"]);
        let posted = encrypt("mykey", &public, "Pa55-word!").unwrap();
        assert_eq!(posted.len(), 344, "2048 bits of ciphertext in base64");
        let blob = dir.path().join("blob");
        std::fs::write(
            &blob,
            base64::engine::general_purpose::STANDARD
                .decode(&posted)
                .unwrap(),
        )
        .unwrap();
        let out = run(Command::new("openssl")
            .args([
                "pkeyutl",
                "-decrypt",
                "-pkeyopt",
                "rsa_padding_mode:pkcs1",
                "-inkey",
            ])
            .arg(&private)
            .arg("-in")
            .arg(&blob));
        assert_eq!(out, "Pa55-word!");
        // Fresh padding each time: the same password never gives the same ciphertext.
        assert_ne!(encrypt("mykey", &public, "Pa55-word!").unwrap(), posted);
    }

    /// The bare RSA operation, held to openssl's raw decryption (no padding): random messages
    /// below the modulus come back unchanged.
    #[test]
    fn openssl_inverts_the_raw_operation() {
        if !require_tool("ssh-keygen") || !require_tool("openssl") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for bits in ["1024", "2048", "3072"] {
            let (private, public) = keygen(dir.path(), &["-t", "rsa", "-b", bits, "-m", "PEM"]);
            let key = ssh_key::rsa_public_key(&public).unwrap();
            for _ in 0..3 {
                let mut message = vec![0u8; key.n.len()];
                getrandom::fill(&mut message[1..]).unwrap();
                let cipher = rsa::raw_encrypt(&key.n, &key.e, &message).unwrap();
                let blob = dir.path().join("raw");
                std::fs::write(&blob, &cipher).unwrap();
                let out = Command::new("openssl")
                    .args([
                        "pkeyutl",
                        "-decrypt",
                        "-pkeyopt",
                        "rsa_padding_mode:none",
                        "-inkey",
                    ])
                    .arg(&private)
                    .arg("-in")
                    .arg(&blob)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(out.stdout, message, "{bits}-bit key");
            }
        }
    }

    #[test]
    fn only_rsa_keys_of_a_usable_size() {
        if !require_tool("ssh-keygen") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (_, ed25519) = keygen(dir.path(), &["-t", "ed25519"]);
        let err = encrypt("ed", &ed25519, "pw").unwrap_err();
        assert!(
            err.to_string().contains("(ed)") && crate::log::chain(&err).contains("ssh-ed25519"),
            "{}",
            crate::log::chain(&err)
        );
        // An 8192-bit modulus (the size is checked before anything else).
        let mut blob = Vec::new();
        for part in [&b"ssh-rsa"[..], &[1, 0, 1], &[0x7f; 1024]] {
            blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
            blob.extend_from_slice(part);
        }
        let big = format!(
            "ssh-rsa {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        let err = encrypt("big", &big, "pw").unwrap_err().to_string();
        assert!(err.contains("8191-bit") && err.contains("1020"), "{err}");
        let (_, fits) = keygen(dir.path(), &["-t", "rsa", "-b", "4096"]);
        assert_eq!(encrypt("k", &fits, "pw").unwrap().len(), 684);
    }
}
