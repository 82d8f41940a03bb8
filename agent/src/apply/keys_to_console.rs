//! The instance's SSH host keys on the console, once per instance, last in the final stage
//! (cloud-init's `keys_to_console`): a console log (`openstack console log show`, a serial
//! log) then carries what a first SSH connection can be checked against, in the two blocks
//! cloud-init prints (a person compares the fingerprint ssh shows; tools cut the keys out for
//! `known_hosts`):
//!
//! ```text
//! #############################################################
//! -----BEGIN SSH HOST KEY FINGERPRINTS-----
//! 256 SHA256:djAsZxOh… root@host (ED25519)
//! -----END SSH HOST KEY FINGERPRINTS-----
//! #############################################################
//! -----BEGIN SSH HOST KEY KEYS-----
//! ssh-ed25519 AAAA… root@host
//! -----END SSH HOST KEY KEYS-----
//! ```
//!
//! One line per `/etc/ssh/ssh_host_*key.pub`, in name order: in the fingerprints (as
//! `ssh-keygen -l` prints them: bits, SHA-256 of the key blob, comment, type) unless its key
//! type is in `ssh_fp_console_blacklist` (default none), in the keys unless it is in
//! `ssh_key_console_blacklist` (default `ssh-dss`); nothing when `ssh: {emit_keys_to_console:
//! false}` (cloud-init's `util.is_false`: `false`, or the text `false`, `0`, `off`, `no`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::instance_host_keys::{SSH_DIR, ssh_dir_names};
use crate::fsutil::PathError;
use crate::root::Root;

/// The keys block's first line, as cloud-init prints it.
pub const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
/// The keys block's last line.
pub const END: &str = "-----END SSH HOST KEY KEYS-----";
/// The fingerprints block's first line.
pub const BEGIN_FINGERPRINTS: &str = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
/// The fingerprints block's last line.
pub const END_FINGERPRINTS: &str = "-----END SSH HOST KEY FINGERPRINTS-----";
/// The line around the fingerprints block.
const RULE: &str = "#############################################################";
/// Key types left out of the keys block unless `ssh_key_console_blacklist` says otherwise
/// (cloud-init's default; none are left out of the fingerprints by default).
pub const DEFAULT_LEFT_OUT: [&str; 1] = ["ssh-dss"];
/// The longest public key line printed (an RSA 16384-bit key's is about 2.8 KiB); a longer
/// file is left out with a warning.
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;

/// True for a name cloud-init's `ssh_host_*key.pub` matches.
pub fn is_public_key_name(name: &OsStr) -> bool {
    name.as_bytes()
        .strip_prefix(b"ssh_host_")
        .is_some_and(|rest| rest.ends_with(b"key.pub"))
}

/// The first line of each host key's `.pub` file, in name order. Unreadable or oversized files
/// are reported in `warnings` and left out.
pub fn public_keys(root: &Root, warnings: &mut Vec<String>) -> Result<Vec<String>, PathError> {
    let Some((dir, names)) = ssh_dir_names(root, is_public_key_name)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in &names {
        let path = dir.child_path(name);
        let bytes = match root.read_optional(std::path::Path::new(SSH_DIR).join(name)) {
            Ok(Some(bytes)) if bytes.len() <= MAX_PUBLIC_KEY_BYTES => Ok(bytes),
            Ok(None) => continue,
            Ok(Some(_)) => Err(std::io::Error::other("larger than a public key")),
            Err(err) => Err(err),
        }
        .unwrap_or_else(|err| {
            warnings.push(format!("{}: not printed: {err}", path.display()));
            Vec::new()
        });
        let text = String::from_utf8_lossy(&bytes);
        let line = text.lines().next().unwrap_or_default().trim();
        if !line.is_empty() {
            out.push(crate::log::escape_controls(line).into_owned());
        }
    }
    Ok(out)
}

/// The key type (first word) of a public key line.
fn key_type(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

/// True when `line`'s key type is in `left_out`.
fn left_out_by(line: &str, left_out: &[impl AsRef<str>]) -> bool {
    left_out
        .iter()
        .any(|listed| listed.as_ref() == key_type(line))
}

/// A big-endian SSH wire string at the front of `bytes`, and what follows it.
fn wire_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = bytes.get(4..)?;
    Some((rest.get(..len)?, &rest[len..]))
}

/// The bit length of an SSH mpint (big-endian, maybe a leading zero byte).
fn mpint_bits(mpint: &[u8]) -> usize {
    let digits: &[u8] = match mpint.iter().position(|&b| b != 0) {
        Some(at) => &mpint[at..],
        None => &[],
    };
    digits.first().map_or(0, |&top| {
        (digits.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    })
}

/// (bits, type) as `ssh-keygen -l` prints them for a key blob, `None` for a type it is not
/// made for here.
fn size_and_kind(blob: &[u8]) -> Option<(usize, &'static str)> {
    let (name, rest) = wire_string(blob)?;
    match name {
        b"ssh-ed25519" => Some((256, "ED25519")),
        b"ecdsa-sha2-nistp256" => Some((256, "ECDSA")),
        b"ecdsa-sha2-nistp384" => Some((384, "ECDSA")),
        b"ecdsa-sha2-nistp521" => Some((521, "ECDSA")),
        // e, then the modulus n.
        b"ssh-rsa" => Some((mpint_bits(wire_string(wire_string(rest)?.1)?.0), "RSA")),
        // p first.
        b"ssh-dss" => Some((mpint_bits(wire_string(rest)?.0), "DSA")),
        _ => None,
    }
}

/// `ssh-keygen -l`'s line for a public key line: `BITS SHA256:<base64 of the blob's SHA-256,
/// unpadded> COMMENT (TYPE)`; `None` when the key cannot be read.
pub fn fingerprint(line: &str) -> Option<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut words = line.split_whitespace();
    let _type = words.next()?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(words.next()?)
        .ok()?;
    let (bits, kind) = size_and_kind(&blob)?;
    let comment: Vec<&str> = words.collect();
    let comment = if comment.is_empty() {
        "no comment".to_owned()
    } else {
        comment.join(" ")
    };
    let digest =
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob));
    Some(format!("{bits} SHA256:{digest} {comment} ({kind})"))
}

/// What the console shows for `keys` (public key lines): the fingerprints of those whose type
/// is not in `fingerprints_left_out`, then the keys of those whose type is not in
/// `keys_left_out`, each block only when it has a line.
pub fn blocks(
    keys: &[String],
    fingerprints_left_out: &[impl AsRef<str>],
    keys_left_out: &[impl AsRef<str>],
) -> String {
    let fingerprints: Vec<String> = keys
        .iter()
        .filter(|line| !left_out_by(line, fingerprints_left_out))
        .filter_map(|line| fingerprint(line))
        .collect();
    let shown: Vec<&String> = keys
        .iter()
        .filter(|line| !left_out_by(line, keys_left_out))
        .collect();
    let mut out = String::new();
    if !fingerprints.is_empty() {
        out.push_str(&format!("{RULE}\n{BEGIN_FINGERPRINTS}\n"));
        for line in &fingerprints {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("{END_FINGERPRINTS}\n{RULE}\n"));
    }
    if !shown.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for line in shown {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_cloud_inits_glob_matches() {
        for name in [
            "ssh_host_rsa_key.pub",
            "ssh_host_ed25519_key.pub",
            "ssh_host_key.pub",
        ] {
            assert!(is_public_key_name(OsStr::new(name)), "{name}");
        }
        for name in [
            "ssh_host_rsa_key",
            "ssh_host_ed25519_key-cert.pub",
            "sshd_config",
            "ssh_host_rsa_key.pub.bak",
            "host_rsa_key.pub",
        ] {
            assert!(!is_public_key_name(OsStr::new(name)), "{name}");
        }
    }

    /// A wire-format key blob of `name` followed by `fields`, as an ssh public key line.
    fn key_line(name: &str, fields: &[&[u8]], comment: &str) -> String {
        use base64::Engine as _;
        let mut blob = Vec::new();
        for part in std::iter::once(name.as_bytes()).chain(fields.iter().copied()) {
            blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
            blob.extend_from_slice(part);
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{name} {b64} {comment}").trim_end().to_owned()
    }

    #[test]
    fn sizes_and_types_are_read_from_the_key_blob() {
        // RSA: e = 65537, n of 1024 bits (leading zero byte, top bit set).
        let mut n = vec![0u8, 0x80];
        n.extend([0x11; 127]);
        let rsa = key_line("ssh-rsa", &[&[1, 0, 1], &n], "root@h");
        assert!(
            fingerprint(&rsa).unwrap().starts_with("1024 SHA256:"),
            "{rsa}"
        );
        assert!(fingerprint(&rsa).unwrap().ends_with(" root@h (RSA)"));
        // 1023 bits: the top byte 0x7f.
        let mut n = vec![0x7f];
        n.extend([0x11; 127]);
        let rsa = key_line("ssh-rsa", &[&[3], &n], "");
        assert!(fingerprint(&rsa).unwrap().starts_with("1023 SHA256:"));
        assert!(fingerprint(&rsa).unwrap().ends_with(" no comment (RSA)"));
        let dsa = key_line(
            "ssh-dss",
            &[&[0x80; 128], &[1; 20], &[2; 128], &[3; 128]],
            "a b",
        );
        assert!(fingerprint(&dsa).unwrap().starts_with("1024 SHA256:"));
        assert!(fingerprint(&dsa).unwrap().ends_with(" a b (DSA)"));
        let ed = key_line("ssh-ed25519", &[&[7; 32]], "root@h");
        assert!(fingerprint(&ed).unwrap().starts_with("256 SHA256:"));
        let p384 = key_line("ecdsa-sha2-nistp384", &[b"nistp384", &[4; 97]], "x");
        assert!(fingerprint(&p384).unwrap().starts_with("384 SHA256:"));
        assert!(fingerprint(&p384).unwrap().ends_with(" x (ECDSA)"));
        for bad in [
            "ssh-ed25519 !!!notbase64 c",
            "ssh-ed25519",
            &key_line("sk-ssh-ed25519@openssh.com", &[&[7; 32], b"ssh:"], "c"),
            "ssh-rsa AAAA c",
        ] {
            assert_eq!(fingerprint(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_blocks_are_cloud_inits_or_nothing() {
        let none: [&str; 0] = [];
        assert_eq!(blocks(&[], &none, &DEFAULT_LEFT_OUT), "");
        let ed = key_line("ssh-ed25519", &[&[7; 32]], "root@h");
        let dsa = key_line(
            "ssh-dss",
            &[&[0x80; 128], &[1; 20], &[2; 128], &[3; 128]],
            "root@h",
        );
        let keys = [dsa.clone(), ed.clone()];
        let printed = blocks(&keys, &none, &DEFAULT_LEFT_OUT);
        let expected = format!(
            "{RULE}\n{BEGIN_FINGERPRINTS}\n{}\n{}\n{END_FINGERPRINTS}\n{RULE}\n{BEGIN}\n{ed}\n{END}\n",
            fingerprint(&dsa).unwrap(),
            fingerprint(&ed).unwrap()
        );
        assert_eq!(printed, expected);
        // Both lists left out everything: nothing at all.
        assert_eq!(
            blocks(
                &keys,
                &["ssh-dss", "ssh-ed25519"],
                &["ssh-dss", "ssh-ed25519"]
            ),
            ""
        );
    }

    #[test]
    fn a_public_key_is_at_most_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("etc/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let long = format!("ssh-rsa {}\n", "A".repeat(MAX_PUBLIC_KEY_BYTES));
        std::fs::write(ssh.join("ssh_host_rsa_key.pub"), long).unwrap();
        std::fs::write(
            ssh.join("ssh_host_ed25519_key.pub"),
            "ssh-ed25519 AAAA root@h\n",
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut warnings = Vec::new();
        let printed = public_keys(&root, &mut warnings).unwrap();
        assert_eq!(printed, ["ssh-ed25519 AAAA root@h"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("ssh_host_rsa_key.pub: not printed: larger than a public key"),
            "{warnings:?}"
        );
    }
}
