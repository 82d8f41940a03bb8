//! The host keys a guest printed on its console (cloud-init's and metaboot's `keys_to_console`:
//! the `-----BEGIN SSH HOST KEY KEYS-----` block) against the keys its sshd offers: what a user
//! checks a first SSH connection against, from the instance's console log, instead of trusting
//! whatever key answers.

use std::path::Path;
use std::time::Duration;

use super::checks::polled;
use super::host_keys::{key_of, keyscan, offered_keys};
use crate::check::CheckResult;
use crate::check::ssh::SshTarget;

/// The first line of the block.
pub const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
/// Its last line.
pub const END: &str = "-----END SSH HOST KEY KEYS-----";
/// How long the block may take to reach the console log after the provisioner's verdict (the
/// serial console is copied to the log as it comes).
pub const CONSOLE_KEYS_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys of the last host key block in `console`; `None` when it has no complete block.
pub fn console_keys(console: &str) -> Option<Vec<(String, String)>> {
    let lines: Vec<&str> = console.lines().collect();
    let begin = lines.iter().rposition(|line| line.contains(BEGIN))?;
    let end = begin + lines[begin..].iter().position(|line| line.contains(END))?;
    Some(
        lines[begin + 1..end]
            .iter()
            .filter_map(|l| key_of(l))
            .collect(),
    )
}

/// `Ok` when every key of `offered` is in the console's last host key block, else which are not.
pub fn shown_on_console(offered: &[(String, String)], console: &str) -> Result<String, String> {
    let shown = console_keys(console).ok_or_else(|| format!("no {BEGIN} block on the console"))?;
    let missing: Vec<&str> = offered
        .iter()
        .filter(|key| !shown.contains(key))
        .map(|(kind, _)| kind.as_str())
        .collect();
    if missing.is_empty() {
        Ok(format!(
            "the {} keys sshd offers are the console's",
            offered.len()
        ))
    } else {
        Err(format!(
            "sshd offers {} keys the console did not show: {}",
            missing.len(),
            missing.join(", ")
        ))
    }
}

/// Every key the guest's sshd offers is one its console showed (read from `serial_log`, polled
/// for [`CONSOLE_KEYS_TIMEOUT`]).
pub fn check_console_host_keys(
    target: &SshTarget,
    serial_log: &Path,
) -> anyhow::Result<CheckResult> {
    let offered = offered_keys(&keyscan(target)?);
    if offered.is_empty() {
        return Ok(CheckResult::fail("", "ssh-keyscan saw no host key"));
    }
    let compare = || {
        let console = std::fs::read_to_string(serial_log).unwrap_or_default();
        shown_on_console(&offered, &console)
            .map_err(|why| format!("{why} ({})", serial_log.display()))
    };
    Ok(polled(CONSOLE_KEYS_TIMEOUT, compare))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, blob: &str) -> (String, String) {
        (kind.to_owned(), blob.to_owned())
    }

    #[test]
    fn the_last_block_is_read_whatever_precedes_each_line() {
        let console = "[  1.000] boot\n\
             -----BEGIN SSH HOST KEY KEYS-----\n\
             ssh-ed25519 AAAAold root@old\n\
             -----END SSH HOST KEY KEYS-----\n\
             [ 30.100] metaboot[412]: -----BEGIN SSH HOST KEY KEYS-----\n\
             [ 30.100] metaboot[412]: ecdsa-sha2-nistp256 AAAAecdsa root@g\n\
             ssh-ed25519 AAAAnew root@g\n\
             ssh-rsa AAAArsa\n\
             [ 30.101] metaboot[412]: -----END SSH HOST KEY KEYS-----\n";
        assert_eq!(
            console_keys(console).unwrap(),
            [
                key("ecdsa-sha2-nistp256", "AAAAecdsa"),
                key("ssh-ed25519", "AAAAnew"),
                key("ssh-rsa", "AAAArsa"),
            ]
        );
        assert_eq!(console_keys("no block\n"), None);
        assert_eq!(console_keys(&format!("{BEGIN}\nssh-rsa AAAA\n")), None);
    }

    #[test]
    fn a_key_the_console_did_not_show_fails_the_check() {
        let console = format!("{BEGIN}\nssh-ed25519 AAAAone root@g\nssh-rsa AAAArsa\n{END}\n");
        let offered = [key("ssh-ed25519", "AAAAone"), key("ssh-rsa", "AAAArsa")];
        assert_eq!(
            shown_on_console(&offered, &console),
            Ok("the 2 keys sshd offers are the console's".to_owned())
        );
        let other = [key("ssh-ed25519", "AAAAother"), key("ssh-rsa", "AAAArsa")];
        assert_eq!(
            shown_on_console(&other, &console),
            Err("sshd offers 1 keys the console did not show: ssh-ed25519".to_owned())
        );
        assert!(shown_on_console(&offered, "").is_err());
        // The console is copied to the log as it comes: seconds, not minutes, behind it.
        const { assert!(CONSOLE_KEYS_TIMEOUT.as_secs() >= 5 && CONSOLE_KEYS_TIMEOUT.as_secs() <= 60) };
    }
}
