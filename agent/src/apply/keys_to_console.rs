//! The instance's SSH host keys on the console, once per instance, last in the final stage
//! (cloud-init's `keys_to_console`): a console log (`openstack console log show`, a serial
//! log) then carries the keys a first SSH connection can be checked against, in the block
//! cloud-init prints and tools cut out of it:
//!
//! ```text
//! -----BEGIN SSH HOST KEY KEYS-----
//! ssh-ed25519 AAAA… root@host
//! -----END SSH HOST KEY KEYS-----
//! ```
//!
//! One line per `/etc/ssh/ssh_host_*key.pub`, in name order, whose key type is not in
//! `ssh_key_console_blacklist` (default `ssh-dss`); nothing when `ssh: {emit_keys_to_console:
//! false}` (cloud-init's `util.is_false`: `false`, or the text `false`, `0`, `off`, `no`).
//! cloud-init's fingerprint block (`ssh-keygen -l` of each key) is not printed: the keys
//! themselves are what a `known_hosts` line needs, and `ssh-keygen -lf` gives their
//! fingerprints.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::instance_host_keys::SSH_DIR;
use crate::fsutil::PathError;
use crate::root::Root;

/// The block's first line, as cloud-init prints it.
pub const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
/// The block's last line.
pub const END: &str = "-----END SSH HOST KEY KEYS-----";
/// Key types left out unless `ssh_key_console_blacklist` says otherwise (cloud-init's default).
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

/// The public key lines to print: the first line of each host key's `.pub` file, in name
/// order, unless its type is in `left_out` ([`DEFAULT_LEFT_OUT`] when `None`). Unreadable or
/// oversized files are reported in `warnings` and left out.
pub fn lines(
    root: &Root,
    left_out: Option<&[String]>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, PathError> {
    let shown = root.host_path(SSH_DIR);
    let Some(dir) = root
        .dir_optional(SSH_DIR)
        .map_err(PathError::fail("open directory", &shown))?
    else {
        return Ok(Vec::new());
    };
    let entries = dir
        .entries()
        .map_err(PathError::fail("list directory", &shown))?;
    let mut out = Vec::new();
    for (name, _) in entries.iter().filter(|(name, _)| is_public_key_name(name)) {
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
        let key_type = line.split_whitespace().next().unwrap_or_default();
        let listed = match left_out {
            Some(types) => types.iter().any(|listed| listed == key_type),
            None => DEFAULT_LEFT_OUT.contains(&key_type),
        };
        if !key_type.is_empty() && !listed {
            out.push(crate::log::escape_controls(line).into_owned());
        }
    }
    Ok(out)
}

/// cloud-init's `util.is_false`: `false`, or the text `false`, `0`, `off` or `no` (any case).
pub fn is_false(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(flag) => !flag,
        serde_json::Value::String(text) => ["false", "0", "off", "no"]
            .iter()
            .any(|word| text.eq_ignore_ascii_case(word)),
        _ => false,
    }
}

/// The block for `lines` (none: no block).
pub fn block(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("{BEGIN}\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
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

    #[test]
    fn the_block_is_cloud_inits_or_nothing() {
        assert_eq!(block(&[]), "");
        assert_eq!(
            block(&["ssh-ed25519 AAAA root@h".to_owned()]),
            "-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA root@h\n\
             -----END SSH HOST KEY KEYS-----\n"
        );
    }

    #[test]
    fn false_is_read_as_cloud_init_reads_it() {
        use serde_json::json;
        for value in [
            json!(false),
            json!("false"),
            json!("Off"),
            json!("no"),
            json!("0"),
        ] {
            assert!(is_false(&value), "{value}");
        }
        for value in [json!(true), json!("yes"), json!(0), json!(null), json!("")] {
            assert!(!is_false(&value), "{value}");
        }
    }

    #[test]
    fn a_public_key_is_at_most_the_limit_and_dsa_is_left_out() {
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
        std::fs::write(ssh.join("ssh_host_dsa_key.pub"), "ssh-dss AAAA root@h\n").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut warnings = Vec::new();
        let printed = lines(&root, None, &mut warnings).unwrap();
        assert_eq!(printed, ["ssh-ed25519 AAAA root@h"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("ssh_host_rsa_key.pub: not printed: larger than a public key"),
            "{warnings:?}"
        );
    }
}
