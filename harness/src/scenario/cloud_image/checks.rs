//! What the checks ask a cloud image guest over SSH: the provisioner's verdict (polled until
//! final), a command's output, a password login, and the host keys its sshd offers.

use std::path::Path;
use std::thread;
use std::time::Instant;

use anyhow::bail;

use super::spec::{HOST_KEYS_TIMEOUT, POLL, PROVISION_TIMEOUT};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::image::disk::Provisioner;
use crate::lab::netns;
use crate::process::output_with_timeout;
use crate::wait::wait_until_ok;

/// The host key types a guest's sshd must offer, as `ssh-keyscan` names them.
pub const HOST_KEY_TYPES: [&str; 3] = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"];

/// Polls the provisioner's status until it is final; the check passes when it is done with
/// no errors.
pub(super) fn wait_for_verdict(
    target: &SshTarget,
    key: &Path,
    provisioner: Provisioner,
) -> anyhow::Result<CheckResult> {
    let command = provisioner.status_command();
    let deadline = Instant::now() + PROVISION_TIMEOUT;
    loop {
        // A busy guest may answer slowly (a Python start under TCG): a command that timed out
        // or a dropped connection is asked again, until the deadline.
        let seen = match ssh::with_key(target, key, command) {
            Ok(out) if out.code != 255 => {
                let text = format!("{}{}", out.stdout, out.stderr);
                let status = status_word(&text);
                let finished = !matches!(
                    status.as_deref(),
                    Some("running" | "not started" | "not run") | None
                );
                if finished {
                    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    let shown: String = one_line.chars().take(300).collect();
                    return Ok(CheckResult::from_bool(
                        "",
                        out.code == 0 && status.as_deref() == Some("done") && no_errors(&text),
                        format!("exit {}: {shown}", out.code),
                    ));
                }
                format!("it says {}", status.unwrap_or_else(|| "nothing".into()))
            }
            Ok(out) => format!("ssh failed: {}", out.summary()),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!("no final `{command}` within {PROVISION_TIMEOUT:?}: {seen}");
        }
        thread::sleep(POLL);
    }
}

/// Asks the guest what provisions it: `metaboot` when it is installed (an image that bakes it
/// in), else `cloud-init`; fails when it has neither.
pub(super) fn detect_provisioner(target: &SshTarget, key: &Path) -> anyhow::Result<Provisioner> {
    let out = ssh::with_key(
        target,
        key,
        "if command -v metaboot >/dev/null; then echo metaboot; \
         elif command -v cloud-init >/dev/null; then echo cloud-init; fi",
    )?;
    match out.stdout.trim() {
        "metaboot" => Ok(Provisioner::Metaboot),
        "cloud-init" => Ok(Provisioner::CloudInit),
        _ if !out.success() => bail!(
            "failed to ask the guest what provisions it: {}",
            out.summary()
        ),
        _ => bail!("the guest has neither metaboot nor cloud-init on its PATH"),
    }
}

/// The word after `status:` in `cloud-init status` / `metaboot status` output.
fn status_word(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("status:"))
        .map(|s| s.trim().to_owned())
}

/// Whether a `--long` status lists no errors (cloud-init: `errors: []`; metaboot lists them
/// one per line after `errors:` only when there are some).
fn no_errors(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        !line.starts_with("errors:") || line == "errors: []" || line == "errors: 0"
    })
}

pub(super) fn check_output(
    target: &SshTarget,
    key: &Path,
    command: &str,
    expected: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, command)?;
    let seen = out.stdout.trim();
    Ok(CheckResult::from_bool(
        "",
        out.success() && seen == expected,
        format!(
            "expected {expected:?}, got {}",
            if out.success() {
                format!("{seen:?}")
            } else {
                out.summary()
            }
        ),
    ))
}

pub(super) fn check_password(
    target: &SshTarget,
    askpass: &Path,
    password: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_password(target, askpass, password, "id -un")?;
    Ok(CheckResult::from_bool(
        "",
        out.success() && out.stdout.trim() == target.user,
        format!(
            "{} with the user data's password: {}",
            target.user,
            out.summary()
        ),
    ))
}

/// The host key types `ssh-keyscan` output shows.
fn offered_key_types(keyscan: &str) -> Vec<&str> {
    let mut types: Vec<&str> = keyscan
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().nth(1))
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
        if HOST_KEY_TYPES.iter().all(|t| offered.contains(t)) {
            Ok(detail)
        } else {
            Err(detail)
        }
    };
    Ok(polled(HOST_KEYS_TIMEOUT, scan))
}

/// A check that polls `probe` every [`POLL`] until it passes or `timeout` passes; its detail
/// is what the last probe said.
pub(super) fn polled(
    timeout: std::time::Duration,
    probe: impl FnMut() -> Result<String, String>,
) -> CheckResult {
    let outcome = wait_until_ok(Instant::now() + timeout, POLL, probe);
    let passed = outcome.is_ok();
    let detail = outcome.unwrap_or_else(|why| why);
    CheckResult::from_bool("", passed, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyscan_output_names_the_offered_types() {
        let out = "# 198.18.0.5:22 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\n\
                   198.18.0.5 ssh-ed25519 AAAAC3Nza\n\
                   198.18.0.5 ecdsa-sha2-nistp256 AAAAE2Vj\n";
        assert_eq!(
            offered_key_types(out),
            vec!["ecdsa-sha2-nistp256", "ssh-ed25519"]
        );
        assert!(offered_key_types("").is_empty());
        const { assert!(HOST_KEYS_TIMEOUT.as_secs() >= 60) };
    }

    #[test]
    fn verdicts_are_read_from_either_status() {
        let cloud_init = "status: done\nboot_status_code: enabled-by-generator\n\
            detail:\nDataSourceOpenStackLocal [net,ver=2]\nerrors: []\n";
        assert_eq!(status_word(cloud_init).as_deref(), Some("done"));
        assert!(no_errors(cloud_init));
        let failed = "status: error\nerrors:\n\t('scripts-user', RuntimeError())\n";
        assert_eq!(status_word(failed).as_deref(), Some("error"));
        assert!(!no_errors(failed));
        assert_eq!(status_word("status: running\n").as_deref(), Some("running"));
        assert_eq!(status_word("nothing\n"), None);
    }
}
