//! `ssh_genkeytypes`: the host key types made when missing. metaboot makes the ed25519 key
//! itself ([`super::ssh_host_key`]) and by default no other (every OpenSSH client since 6.5
//! takes it; an image may make the others later, as the Debian images do after the first
//! logins). A user data that names other types gets them before sshd starts, as cloud-init
//! makes them: `ssh-keygen -t TYPE -N "" -f /etc/ssh/ssh_host_TYPE_key`, its output on the
//! console unless `ssh_quiet_keygen`. As in cloud-init, a user data that gives `ssh_keys` has
//! none generated (but metaboot's ed25519 key, without which sshd would not start).
//!
//! ssh-keygen writes into a new directory of its own (mode 0700, a random name under the
//! temporary directory); both halves are then written into the root as the run's other files
//! (atomically, the public half first), so a run cut short leaves no torn key.

use std::path::{Path, PathBuf};

use crate::apply::ssh_host_key;
use crate::apply::tool::{self, ToolError};
use crate::fsutil::PathError;
use crate::root::Root;
use crate::userdata::cloud_config::{CloudConfig, is_true};

/// The types cloud-init 22.4 makes (`GENERATE_KEY_NAMES`), and so the names it takes.
pub const KEY_TYPES: [&str; 4] = ["rsa", "dsa", "ecdsa", "ed25519"];
/// The types metaboot makes when user data does not say.
pub const DEFAULT_TYPES: [&str; 1] = ["ed25519"];

/// The private key of `kind` (`/etc/ssh/ssh_host_<kind>_key`; the public half adds `.pub`).
pub fn key_path(kind: &str) -> String {
    format!("/etc/ssh/ssh_host_{kind}_key")
}

/// The types to make, in order: `ssh_genkeytypes` (a lone string is a list of one), or
/// [`DEFAULT_TYPES`]; none but ed25519 when `ssh_keys` gives keys. A type cloud-init does not
/// know is a warning, as its ssh-keygen's "unknown key type" is.
pub fn wanted(config: &CloudConfig, warnings: &mut Vec<String>) -> Vec<String> {
    let asked: Vec<String> = match &config.ssh_genkeytypes {
        Some(types) => types.to_vec(),
        None => return DEFAULT_TYPES.map(str::to_owned).to_vec(),
    };
    if config
        .ssh_keys
        .as_ref()
        .is_some_and(|keys| !keys.is_empty())
    {
        if asked.iter().any(|kind| kind != "ed25519") {
            warnings.push(
                "ssh_genkeytypes: no host keys are generated when ssh_keys gives them (as \
                 cloud-init); the ed25519 key is made only when missing"
                    .to_owned(),
            );
        }
        return DEFAULT_TYPES.map(str::to_owned).to_vec();
    }
    let mut types = Vec::new();
    for kind in asked {
        if !KEY_TYPES.contains(&kind.as_str()) {
            warnings.push(format!(
                "ssh_genkeytypes: unknown key type {kind:?} skipped"
            ));
        } else if !types.contains(&kind) {
            types.push(kind);
        }
    }
    types
}

/// `ssh_quiet_keygen`: ssh-keygen's output kept off the console.
pub fn quiet(config: &CloudConfig) -> bool {
    config.ssh_quiet_keygen.as_ref().is_some_and(is_true)
}

/// Failures making a key with ssh-keygen.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("ssh-keygen is not installed: the {0} host key is not made")]
    NoSshKeygen(String),
    #[error("cannot make the {kind} host key")]
    Keygen {
        kind: String,
        #[source]
        source: ToolError,
    },
    #[error("cannot make a directory for ssh-keygen in {}", .path.display())]
    TempDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the {kind} host key ssh-keygen made")]
    Read {
        kind: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] PathError),
}

/// Makes the `kind` host key with ssh-keygen when its private half is missing or empty (as
/// cloud-init, which looks at the private file only); true when made. `comment`, asked only
/// when a key is made, ends the public line.
pub fn make(
    root: &Root,
    kind: &str,
    comment: impl FnOnce() -> String,
    quiet: bool,
) -> Result<bool, KeygenError> {
    let private = key_path(kind);
    if root.is_nonempty_file(&private) {
        return Ok(false);
    }
    let comment = comment();
    let dir = KeygenDir::new()?;
    let file = dir.0.join("key");
    let file_arg = file.to_string_lossy();
    let args = ["-t", kind, "-N", "", "-C", &comment, "-f", &file_arg];
    let said = match tool::output("ssh-keygen", &args) {
        Ok(Some(said)) => said,
        Ok(None) => return Err(KeygenError::NoSshKeygen(kind.to_owned())),
        Err(source) => {
            return Err(KeygenError::Keygen {
                kind: kind.to_owned(),
                source,
            });
        }
    };
    if !quiet {
        eprint!("{}", String::from_utf8_lossy(&said));
    }
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| KeygenError::Read {
            kind: kind.to_owned(),
            source,
        })
    };
    let public = read(&file.with_extension("pub"))?;
    let secret = read(&file)?;
    ssh_host_key::write_pair(root, &private, &public, secret)?;
    Ok(true)
}

/// A new directory only this process uses (mode 0700, a random name: nothing another user
/// planted there is written through), removed with what is in it when dropped.
struct KeygenDir(PathBuf);

impl KeygenDir {
    fn new() -> Result<Self, KeygenError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        let base = std::env::temp_dir();
        let fail = |source| KeygenError::TempDir {
            path: base.clone(),
            source,
        };
        getrandom::fill(&mut random).map_err(|e| fail(std::io::Error::other(e.to_string())))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = base.join(format!("metaboot-keygen-{name}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(fail)?;
        Ok(Self(path))
    }
}

impl Drop for KeygenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_types_asked_default_and_refused() {
        let mut warnings = Vec::new();
        assert_eq!(
            wanted(&CloudConfig::from_json(json!({})), &mut warnings),
            ["ed25519"]
        );
        assert_eq!(
            wanted(
                &CloudConfig::from_json(
                    json!({"ssh_genkeytypes": ["rsa", "ecdsa", "rsa", "ecdsa-sk"]})
                ),
                &mut warnings
            ),
            ["rsa", "ecdsa"]
        );
        assert_eq!(
            warnings,
            ["ssh_genkeytypes: unknown key type \"ecdsa-sk\" skipped"]
        );
        warnings.clear();
        assert_eq!(
            wanted(
                &CloudConfig::from_json(json!({"ssh_genkeytypes": "ecdsa"})),
                &mut warnings
            ),
            ["ecdsa"]
        );
        assert!(
            wanted(
                &CloudConfig::from_json(json!({"ssh_genkeytypes": []})),
                &mut warnings
            )
            .is_empty(),
            "an empty list makes none, as in cloud-init"
        );
        assert!(warnings.is_empty());
        let given = CloudConfig::from_json(json!({"ssh_genkeytypes": ["rsa"],
                                  "ssh_keys": {"rsa_private": "x", "rsa_public": "y"}}));
        assert_eq!(wanted(&given, &mut warnings), ["ed25519"]);
        assert!(warnings[0].contains("ssh_keys"), "{warnings:?}");
        assert!(quiet(&CloudConfig::from_json(
            json!({"ssh_quiet_keygen": true})
        )));
        assert!(!quiet(&CloudConfig::from_json(json!({}))));
        assert_eq!(key_path("rsa"), "/etc/ssh/ssh_host_rsa_key");
        assert_eq!(KEY_TYPES.len(), 4);
    }

    #[test]
    fn a_key_made_by_ssh_keygen_lands_in_the_root_with_its_modes() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::testutil::require_tool("ssh-keygen") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(make(&root, "ecdsa", || "root@keys".into(), true).unwrap());
        let private = dir.path().join("etc/ssh/ssh_host_ecdsa_key");
        let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
        assert!(public.starts_with("ecdsa-sha2-nistp256 "), "{public}");
        assert!(public.trim_end().ends_with(" root@keys"), "{public}");
        let text = std::fs::read_to_string(&private).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), ssh_host_key::PRIVATE_KEY_MODE);
        assert_eq!(
            mode(&private.with_extension("pub")),
            ssh_host_key::PUBLIC_KEY_MODE
        );
        // There: not made again.
        assert!(!make(&root, "ecdsa", || "root@keys".into(), true).unwrap());
        assert_eq!(std::fs::read_to_string(&private).unwrap(), text);
        // ssh-keygen's refusal carries its words.
        let err = make(&root, "nonsense", || "c".into(), true).unwrap_err();
        assert!(
            crate::log::chain(&err).contains("cannot make the nonsense host key"),
            "{err}"
        );
        assert!(!dir.path().join("etc/ssh/ssh_host_nonsense_key").exists());
    }
}
