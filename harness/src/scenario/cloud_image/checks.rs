//! What the checks ask a cloud image guest over SSH: the provisioner's verdict (polled until
//! final), a command's output, a password login; and how a check polls.

use std::path::Path;
use std::thread;
use std::time::Instant;

use anyhow::bail;

use super::spec::{MIN_ROOT_SHARE, POLL, PROVISION_TIMEOUT};
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

/// Where the guest's static host table is.
pub(super) const HOSTS_FILE: &str = "/etc/hosts";

/// A command that prints [`HOSTNAME_LISTED`] when a line of `hosts` (a hosts file, e.g.
/// [`HOSTS_FILE`]) names the guest's host name. Read from the file itself: `getent hosts`
/// also answers from nss-myhostname or resolved, which know the host name whatever the file
/// says.
pub(super) fn hostname_in_hosts(hosts: &str) -> String {
    format!(
        "awk -v name=\"$(hostname)\" '{{ sub(/#.*/, \"\"); for (i = 2; i <= NF; i++) \
         if ($i == name) found = 1 }} END {{ if (found) print \"{HOSTNAME_LISTED}\" }}' {hosts}"
    )
}

/// What [`hostname_in_hosts`] prints when the host name is there.
pub(super) const HOSTNAME_LISTED: &str = "listed";

/// Prints the size of the root file system and of the disk its partition is on, in bytes.
const ROOT_AND_DISK: &str = "src=$(findmnt -no SOURCE /) && disk=$(lsblk -no PKNAME \"$src\") && \
    echo \"$(findmnt -bno SIZE /) $(lsblk -bdno SIZE \"/dev/$disk\")\"";

/// Passes when the root file system has at least [`MIN_ROOT_SHARE`] of its disk: it grew
/// into the space the disk has beyond the image (cloud-init's or metaboot's growpart and
/// resizefs).
pub(super) fn check_root_fills(target: &SshTarget, key: &Path) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, ROOT_AND_DISK)?;
    let Some((root, disk)) = root_and_disk(&out.stdout).filter(|_| out.success()) else {
        bail!(
            "cannot read the root's and its disk's sizes: {}",
            out.summary()
        );
    };
    let share = root as f64 / disk as f64;
    Ok(CheckResult::from_bool(
        "",
        share >= MIN_ROOT_SHARE,
        format!(
            "root file system {:.2} GiB on a {:.2} GiB disk ({:.0} %, at least {:.0} % expected)",
            root as f64 / f64::from(1 << 30),
            disk as f64 / f64::from(1 << 30),
            share * 100.0,
            MIN_ROOT_SHARE * 100.0
        ),
    ))
}

/// The two sizes [`ROOT_AND_DISK`] prints.
fn root_and_disk(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next(), words.next()) {
        (Some(Ok(root)), Some(Ok(disk)), None) if disk > 0 => Some((root, disk)),
        _ => None,
    }
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

    /// The host name check reads the file: a name only in a comment, or only as a line's
    /// address field, is not listed.
    #[test]
    fn the_hostname_is_listed_only_by_a_line_of_the_hosts_file() {
        let name = std::process::Command::new("hostname").output().unwrap();
        let name = String::from_utf8(name.stdout).unwrap().trim().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let ask = |content: String| {
            std::fs::write(&hosts, content).unwrap();
            let command = hostname_in_hosts(&hosts.display().to_string());
            let out = std::process::Command::new("sh")
                .args(["-c", &command])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert_eq!(
            ask(format!(
                "127.0.0.1 localhost\n127.0.1.1 {name}.example {name}\n"
            )),
            HOSTNAME_LISTED
        );
        assert_eq!(ask(format!("127.0.1.1\t{name}\n")), HOSTNAME_LISTED);
        assert_eq!(
            ask(format!(
                "127.0.0.1 localhost\n# 127.0.1.1 {name}\n127.0.0.2 x # {name}\n"
            )),
            ""
        );
        assert_eq!(ask(format!("127.0.0.1 {name}-other localhost\n")), "");
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

    #[test]
    fn the_root_and_disk_sizes_are_read_whole_or_not_at_all() {
        assert_eq!(
            root_and_disk("3141533696 3221225472\n"),
            Some((3_141_533_696, 3_221_225_472))
        );
        assert_eq!(root_and_disk("3141533696\n"), None);
        assert_eq!(root_and_disk("3141533696 0\n"), None);
        assert_eq!(root_and_disk("1 2 3\n"), None);
        assert_eq!(root_and_disk("big disk\n"), None);
    }

    #[test]
    fn a_root_that_did_not_grow_is_below_the_share_and_a_grown_one_above() {
        let gib = f64::from(1 << 30);
        assert!(1.95 * gib / (3.0 * gib) < MIN_ROOT_SHARE);
        assert!(2.93 * gib / (3.0 * gib) >= MIN_ROOT_SHARE);
    }
}
