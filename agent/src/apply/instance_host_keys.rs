//! The instance's own SSH host keys, once per instance (cloud-init's `cc_ssh`): the image's
//! host keys are deleted (`ssh_deletekeys`, true unless set false), so that no two instances
//! of one image share a host key, and the keys user data gives (`ssh_keys`) are written. The
//! ed25519 key is then made by the `ssh-host-keys` step when it is missing
//! ([`super::ssh_host_key`]), with the other types `ssh_genkeytypes` names
//! ([`super::ssh_genkeytypes`]); by default other types are the image's to make (the
//! debian-metaboot image makes its ECDSA and RSA keys once sshd has started,
//! `images/debian/ssh-host-keys-later.service`).
//!
//! Deleting goes by name, as cloud-init's `/etc/ssh/ssh_host_*key*` glob does: each such entry
//! that is a file or a symlink is unlinked (a symlink itself, never what it points at); a
//! directory of that name is left and reported.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use serde_json::{Map, Value};

use super::ssh_host_key::openssh;
use crate::fsutil::{Dir, PathError, WriteOptions};
use crate::root::Root;

/// The directory holding sshd's host keys.
pub const SSH_DIR: &str = "/etc/ssh";
/// The key types `ssh_keys` may name, as cloud-init 22.4 accepts them (`<type>_private`,
/// `<type>_public`, `<type>_certificate`).
pub const KEY_TYPES: [&str; 4] = ["rsa", "dsa", "ecdsa", "ed25519"];
/// The longest key or certificate `ssh_keys` may give (an RSA 16384-bit private key is ≈ 12
/// KiB); a longer value is refused, not written.
pub const MAX_GIVEN_KEY_BYTES: usize = 64 * 1024;
/// A private key's mode, as ssh-keygen makes it (sshd refuses a key others can read).
const PRIVATE_MODE: u32 = 0o600;
/// A public key's mode.
const PUBLIC_MODE: u32 = 0o644;

/// True for a name cloud-init's `ssh_host_*key*` matches.
pub fn is_host_key_name(name: &OsStr) -> bool {
    name.as_bytes()
        .strip_prefix(b"ssh_host_")
        .is_some_and(|rest| rest.windows(3).any(|w| w == b"key"))
}

/// [`SSH_DIR`] and the names in it that `wanted` takes, in name order; `None` when there is no
/// such directory.
pub fn ssh_dir_names(
    root: &Root,
    wanted: fn(&OsStr) -> bool,
) -> Result<Option<(Dir, Vec<OsString>)>, PathError> {
    let shown = root.host_path(SSH_DIR);
    let Some(dir) = root
        .dir_optional(SSH_DIR)
        .map_err(PathError::fail("open directory", &shown))?
    else {
        return Ok(None);
    };
    let entries = dir
        .entries()
        .map_err(PathError::fail("list directory", &shown))?;
    let names = entries
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| wanted(name))
        .collect();
    Ok(Some((dir, names)))
}

/// Deletes every host key file of [`SSH_DIR`] (files and symlinks named `ssh_host_*key*`);
/// returns the names deleted. A directory of such a name is left, with a warning.
pub fn delete_image_keys(
    root: &Root,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, PathError> {
    let Some((dir, names)) = ssh_dir_names(root, is_host_key_name)? else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    for name in &names {
        let path = dir.child_path(name);
        match dir.remove_file(name) {
            Ok(true) => deleted.push(name.to_string_lossy().into_owned()),
            Ok(false) => {}
            Err(err) if err.kind() == std::io::ErrorKind::IsADirectory => warnings.push(format!(
                "{} is a directory, not a host key: left in place",
                path.display()
            )),
            Err(err) => return Err(PathError::fail("delete", path)(err)),
        }
    }
    Ok(deleted)
}

/// Where an `ssh_keys` entry goes: the file under [`SSH_DIR`] and its mode, or why it is not
/// written.
fn target(key: &str) -> Result<(String, u32), String> {
    let Some((key_type, half)) = key.rsplit_once('_') else {
        return Err(format!("skipped unrecognized ssh_keys entry `{key}`"));
    };
    if !KEY_TYPES.contains(&key_type) {
        let why = if key_type.ends_with("-sk") {
            "unsupported"
        } else {
            "unrecognized"
        };
        return Err(format!("skipped {why} ssh_keys entry `{key}`"));
    }
    let base = format!("{SSH_DIR}/ssh_host_{key_type}_key");
    match half {
        "private" => Ok((base, PRIVATE_MODE)),
        "public" => Ok((format!("{base}.pub"), PUBLIC_MODE)),
        "certificate" => Err(format!(
            "skipped ssh_keys entry `{key}`: host certificates are not written (sshd's \
             HostCertificate is not configured by metaboot)"
        )),
        _ => Err(format!("skipped unrecognized ssh_keys entry `{key}`")),
    }
}

/// Writes the host keys `ssh_keys` gives, each atomically with ssh-keygen's modes, public
/// halves before private ones (a run cut short never leaves a private key whose public half
/// is the image's). A private key given without its public half gets one read from the
/// private key file when it is in OpenSSH's format (as cloud-init runs `ssh-keygen -y`),
/// ending in `comment`. Entries that cannot be written are reported in `warnings`.
pub fn write_given(
    root: &Root,
    given: &Map<String, Value>,
    comment: impl Fn() -> String,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, PathError> {
    // (path, mode, contents): public halves, then private ones.
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (key, value) in given {
        let Some(value) = usable(key, value, warnings) else {
            continue;
        };
        match target(key) {
            Ok((path, PRIVATE_MODE)) => last.push((path, PRIVATE_MODE, with_newline(value))),
            Ok((path, mode)) => first.push((path, mode, with_newline(value))),
            Err(warning) => warnings.push(warning),
        }
        let Some(key_type) = key.strip_suffix("_private") else {
            continue;
        };
        if !KEY_TYPES.contains(&key_type) || given.contains_key(&format!("{key_type}_public")) {
            continue;
        }
        let public = format!("{SSH_DIR}/ssh_host_{key_type}_key.pub");
        match openssh::public_line_of_private(value, &comment()) {
            Some(line) => first.push((public, PUBLIC_MODE, line)),
            None => warnings.push(format!(
                "ssh_keys gives `{key}` without `{key_type}_public`, and it is not in \
                 OpenSSH's key format: no {public} written"
            )),
        }
    }
    let mut written = Vec::new();
    for (path, mode, contents) in first.into_iter().chain(last) {
        root.write_atomic(&path, contents.as_bytes(), &WriteOptions::exact(mode, None))?;
        written.push(path);
    }
    Ok(written)
}

/// An entry's text, or `None` (with a warning) when it is not a string or is too long.
fn usable<'a>(key: &str, value: &'a Value, warnings: &mut Vec<String>) -> Option<&'a str> {
    let Some(text) = value.as_str() else {
        warnings.push(format!("skipped ssh_keys entry `{key}`: not a string"));
        return None;
    };
    if text.len() > MAX_GIVEN_KEY_BYTES {
        warnings.push(format!(
            "skipped ssh_keys entry `{key}`: {} bytes, more than the {MAX_GIVEN_KEY_BYTES} a \
             host key may have",
            text.len()
        ));
        return None;
    }
    Some(text)
}

/// A key file ends in a newline (ssh-keygen refuses a private key file without one).
fn with_newline(value: &str) -> String {
    if value.ends_with('\n') {
        value.to_owned()
    } else {
        format!("{value}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_cloud_inits_glob_matches() {
        for name in [
            "ssh_host_rsa_key",
            "ssh_host_rsa_key.pub",
            "ssh_host_ed25519_key-cert.pub",
            "ssh_host_key",
            "ssh_host_mykeys",
        ] {
            assert!(is_host_key_name(OsStr::new(name)), "{name}");
        }
        for name in [
            "sshd_config",
            "ssh_config",
            "moduli",
            "ssh_host_",
            "host_rsa_key",
        ] {
            assert!(!is_host_key_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn ssh_keys_entries_map_to_files_like_cloud_init() {
        assert_eq!(
            target("rsa_private"),
            Ok(("/etc/ssh/ssh_host_rsa_key".into(), 0o600))
        );
        assert_eq!(
            target("ed25519_public"),
            Ok(("/etc/ssh/ssh_host_ed25519_key.pub".into(), 0o644))
        );
        assert!(
            target("ecdsa_certificate")
                .unwrap_err()
                .contains("not written")
        );
        assert!(
            target("ed25519-sk_private")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            target("../../etc_private")
                .unwrap_err()
                .contains("unrecognized")
        );
        assert!(target("rsa").unwrap_err().contains("unrecognized"));
    }

    #[test]
    fn a_given_key_longer_than_the_limit_is_refused_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let given = serde_json::json!({
            "rsa_private": "x".repeat(MAX_GIVEN_KEY_BYTES + 1),
            "rsa_public": "ssh-rsa AAAA c",
            "ecdsa_public": "y".repeat(MAX_GIVEN_KEY_BYTES - 1),
            "dsa_private": ["not", "a", "string"],
        });
        let Value::Object(given) = given else {
            unreachable!()
        };
        let mut warnings = Vec::new();
        let written = write_given(&root, &given, || "root@test".into(), &mut warnings).unwrap();
        assert_eq!(
            written,
            [
                "/etc/ssh/ssh_host_ecdsa_key.pub",
                "/etc/ssh/ssh_host_rsa_key.pub"
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("dsa_private`: not a string"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("rsa_private"), "{warnings:?}");
        assert!(!dir.path().join("etc/ssh/ssh_host_rsa_key").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/ssh_host_rsa_key.pub")).unwrap(),
            "ssh-rsa AAAA c\n"
        );
    }
}
