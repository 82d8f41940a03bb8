//! What the checks ask a cloud image guest over SSH: the provisioner's verdict (polled until
//! final), a command's output, a password login; and how a check polls.

use std::path::Path;
use std::thread;
use std::time::Instant;

use anyhow::bail;

use super::spec::{POLL, PROVISION_TIMEOUT};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::image::disk::Provisioner;
use crate::wait::wait_until_ok;

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
