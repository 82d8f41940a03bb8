//! The instance's ed25519 SSH host key, made in-process when OpenSSH is installed and the key is
//! missing: an image ships no host keys (every instance must have its own), and sshd cannot
//! start without one. cloud-init runs `ssh-keygen` for each key type; making the key here costs
//! microseconds where an `ssh-keygen` run (loading OpenSSL) costs a fraction of a second of the
//! boot under emulation, before sshd can start. Other key types (ECDSA, RSA) are made by
//! ssh-keygen when `ssh_genkeytypes` names them (`ssh_genkeytypes.rs`), else left to the image
//! (the Debian images make them after the first logins, `images/debian/`).
//!
//! The key is `SHA-512(seed)`'s clamped first half times the ed25519 base point (RFC 8032,
//! 5.1.5), with a seed from the kernel's random source, in OpenSSH's file formats
//! ([`openssh`]). The public half is written first and the private half last, each atomically:
//! a run cut short leaves no torn key. A private key without its public half is someone's key
//! (`ssh_keys` may give one in a format whose public line cannot be read, and known_hosts may
//! pin it): it is kept, its public half written from it when it is in OpenSSH's format; only a
//! file that is no key at all is replaced.

pub mod openssh;

use curve25519_dalek::EdwardsPoint;
use sha2::{Digest, Sha512};

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use openssh::KeyPair;

/// The private key, under the root (sshd's default `HostKey` for ed25519).
pub const PRIVATE_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";
/// The public key, beside it.
pub const PUBLIC_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";
/// OpenSSH's server configuration: its presence is the sign that sshd is installed.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// The private key's mode, as ssh-keygen makes it (sshd refuses a key others can read).
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// The public key's mode.
pub const PUBLIC_KEY_MODE: u32 = 0o644;

/// Failures making the host key.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("no random bytes from the kernel for the SSH host key")]
    Random(#[source] getrandom::Error),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// What [`ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum HostKey {
    /// No `sshd_config` in the root: no OpenSSH server to make a key for.
    NoSshd,
    /// Both halves are there, regular files with content.
    Present,
    /// Made now.
    Made,
    /// The private half was there alone: its public half was written from it.
    PublicWritten,
}

/// How every PEM-armoured key file starts (OpenSSH's, PKCS#1, PKCS#8, SEC1).
const PEM_START: &str = "-----BEGIN ";

/// The key pair of a 32-byte seed (RFC 8032, 5.1.5).
pub fn key_pair(seed: [u8; 32]) -> KeyPair {
    let digest = Sha512::digest(seed);
    let mut scalar = [0u8; 32];
    scalar.copy_from_slice(&digest[..32]);
    let public = EdwardsPoint::mul_base_clamped(scalar).compress().to_bytes();
    scalar.fill(0);
    KeyPair { seed, public }
}

/// Makes the ed25519 host key when sshd is installed and the private half is missing (or empty,
/// or a symlink: sshd would read whatever it points at as its key, or no key file at all); a
/// private key alone is kept, its public half written from it when it is in OpenSSH's format.
/// `comment`, asked only when a public line is written, ends it (`root@<hostname>`, as
/// ssh-keygen writes it).
pub fn ensure(root: &Root, comment: impl FnOnce() -> String) -> Result<HostKey, HostKeyError> {
    if !root.exists(SSHD_CONFIG) {
        return Ok(HostKey::NoSshd);
    }
    if root.is_nonempty_file(PRIVATE_KEY) {
        if root.is_nonempty_file(PUBLIC_KEY) {
            return Ok(HostKey::Present);
        }
        let private = root
            .read_optional_string(PRIVATE_KEY)
            .map_err(PathError::fail("read", root.host_path(PRIVATE_KEY)))?
            .unwrap_or_default();
        if private.starts_with(PEM_START) {
            let Some(public) = openssh::public_line_of_private(&private, &comment()) else {
                // sshd needs the private half only.
                return Ok(HostKey::Present);
            };
            root.write_atomic(
                PUBLIC_KEY,
                public.as_bytes(),
                &WriteOptions::exact(PUBLIC_KEY_MODE, None),
            )?;
            return Ok(HostKey::PublicWritten);
        }
    }
    let mut random = [0u8; 36];
    getrandom::fill(&mut random).map_err(HostKeyError::Random)?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&random[..32]);
    let check = u32::from_be_bytes([random[32], random[33], random[34], random[35]]);
    random.fill(0);
    let mut pair = key_pair(seed);
    seed.fill(0);

    let comment = comment();
    let public = openssh::public_line(&pair, &comment);
    let private = openssh::private_file(&pair, &comment, check);
    pair.seed.fill(0);
    write_pair(root, PRIVATE_KEY, public.as_bytes(), private.into_bytes())?;
    Ok(HostKey::Made)
}

/// Writes a host key pair, private half at `private_path`, public half beside it (`.pub`): the
/// public half first, then the private one, each atomically with exactly its mode, owned by root
/// (a run cut short leaves no private key without its public half). `private` is zeroed.
pub fn write_pair(
    root: &Root,
    private_path: &str,
    public: &[u8],
    mut private: Vec<u8>,
) -> Result<(), PathError> {
    let result = (|| {
        root.write_atomic(
            format!("{private_path}.pub"),
            public,
            &WriteOptions::exact(PUBLIC_KEY_MODE, None),
        )?;
        root.write_atomic(
            private_path,
            &private,
            &WriteOptions::exact(PRIVATE_KEY_MODE, None),
        )
    })();
    private.fill(0);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn the_public_key_of_rfc_8032_test_vectors() {
        // RFC 8032, 7.1, TEST 1, 2 and 3: secret key → public key.
        for (secret, public) in [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            ),
        ] {
            assert_eq!(hex(&key_pair(unhex(secret)).public), public);
        }
    }
}
