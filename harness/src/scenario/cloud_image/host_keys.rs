//! The host keys a guest's sshd offers, seen from outside with `ssh-keyscan`: every type a
//! built image must offer, and the keys themselves (which the console check compares with what
//! the guest printed).

use super::checks::polled;
use super::spec::HOST_KEYS_TIMEOUT;
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::lab::netns;
use crate::process::output_with_timeout;

/// The host key types a guest's sshd must offer, as `ssh-keyscan` names them.
pub const HOST_KEY_TYPES: [&str; 3] = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"];

/// (key type, base64 blob) of a public key line, wherever on the line it starts (a console
/// line may carry a timestamp or a unit's name in front of it).
pub(super) fn key_of(line: &str) -> Option<(String, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-sha2-"))?;
    let blob = words.get(at + 1)?;
    Some((words[at].to_owned(), (*blob).to_owned()))
}

/// The keys `ssh-keyscan` output shows.
pub fn offered_keys(keyscan: &str) -> Vec<(String, String)> {
    keyscan
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(key_of)
        .collect()
}

/// The host key types `ssh-keyscan` output shows.
fn offered_key_types(keyscan: &str) -> Vec<String> {
    let mut types: Vec<String> = offered_keys(keyscan)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// What `ssh-keyscan` prints for the guest's RSA, ECDSA and ed25519 host keys.
pub(super) fn keyscan(target: &SshTarget) -> anyhow::Result<String> {
    let mut cmd = netns::exec(&target.netns, "ssh-keyscan");
    cmd.args(["-T", "5", "-t", "rsa,ecdsa,ed25519"])
        .arg(target.ip.to_string());
    let out = output_with_timeout(&mut cmd, ssh::SSH_COMMAND_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls the guest's sshd from outside with `ssh-keyscan` until it offers every type of
/// [`HOST_KEY_TYPES`] (an image may make its ECDSA and RSA keys after the first login), or
/// [`HOST_KEYS_TIMEOUT`] passes.
pub(super) fn check_host_keys(target: &SshTarget) -> anyhow::Result<CheckResult> {
    let wanted = HOST_KEY_TYPES.join(", ");
    let scan = || -> Result<String, String> {
        let text = keyscan(target)
            .map_err(|err| format!("ssh-keyscan failed: {err:#} (wanted {wanted})"))?;
        let offered = offered_key_types(&text);
        let detail = format!(
            "sshd offers {} (wanted {wanted})",
            if offered.is_empty() {
                "no host key".to_owned()
            } else {
                offered.join(", ")
            }
        );
        if HOST_KEY_TYPES
            .iter()
            .all(|t| offered.iter().any(|o| o == t))
        {
            Ok(detail)
        } else {
            Err(detail)
        }
    };
    Ok(polled(HOST_KEYS_TIMEOUT, scan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, blob: &str) -> (String, String) {
        (kind.to_owned(), blob.to_owned())
    }

    #[test]
    fn keyscan_output_names_the_offered_keys_and_types() {
        let out = "# 198.18.0.5:22 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\n\
                   198.18.0.5 ssh-ed25519 AAAAC3Nza\n\
                   198.18.0.5 ecdsa-sha2-nistp256 AAAAE2Vj\n";
        assert_eq!(
            offered_keys(out),
            [
                key("ssh-ed25519", "AAAAC3Nza"),
                key("ecdsa-sha2-nistp256", "AAAAE2Vj")
            ]
        );
        assert_eq!(
            offered_key_types(out),
            vec!["ecdsa-sha2-nistp256", "ssh-ed25519"]
        );
        assert!(offered_key_types("").is_empty());
        const { assert!(HOST_KEYS_TIMEOUT.as_secs() >= 60) };
    }
}
