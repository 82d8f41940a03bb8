//! The authorized keys' fingerprints on a guest's console (cloud-init's
//! `ssh_authkey_fingerprints`, metaboot's `ssh-authkey-fingerprints`): the table for the default
//! user, with a row for the key the lab gave the instance.

use base64::Engine as _;
use sha2::Digest as _;

use super::CheckResult;

/// The check's name.
pub const NAME: &str = "authorized keys' fingerprints on the console";

/// cloud-init's fingerprint of a public key line: the SHA-256 of its blob in hex pairs joined
/// by `:`; `None` when the line has no base64 blob.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    Some(
        hex::encode(sha2::Sha256::digest(bytes))
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Passed when the console shows `user`'s table of `keys_file` (the file sshd reads the user's
/// keys from: `/home/<user>/.ssh/authorized_keys` unless `AuthorizedKeysFile` says otherwise)
/// with a row for `public_key`.
pub fn authkey_fingerprints(
    console: &str,
    user: &str,
    keys_file: &str,
    public_key: &str,
) -> CheckResult {
    let title = format!("Authorized keys from {keys_file} for user {user}");
    let Some(expected) = fingerprint(public_key) else {
        return CheckResult::fail(
            NAME,
            format!("the lab's key has no base64 blob: {public_key}"),
        );
    };
    let (titled, row) = find_row(console, &title, &expected);
    CheckResult::from_bool(
        NAME,
        titled && row,
        format!(
            "expected `{title}` and a row with {expected} in that table: title {}, row {}",
            if titled { "seen" } else { "missing" },
            if row { "seen" } else { "missing" }
        ),
    )
}

/// What starts every table of authorized keys, whichever file and user.
const TABLE_TITLE: &str = "Authorized keys from ";

/// Whether the console shows the table titled `title`, and a row with `fingerprint` inside
/// it: after that title and before the next table's (another user's table, or another file's,
/// does not count).
fn find_row(console: &str, title: &str, fingerprint: &str) -> (bool, bool) {
    let (mut titled, mut inside) = (false, false);
    for line in console.lines() {
        if line.contains(TABLE_TITLE) {
            inside = is_title(line, title);
            titled |= inside;
        } else if inside && line.contains("ci-info: |") && line.contains(fingerprint) {
            return (true, true);
        }
    }
    (titled, false)
}

/// Whether `line` holds `title` whole: cloud-init centres it between `+` runs, so a longer
/// user name (`debian2` for `debian`) does not match.
fn is_title(line: &str, title: &str) -> bool {
    line.match_indices(title).any(|(at, _)| {
        line[at + title.len()..]
            .chars()
            .next()
            .is_none_or(|next| next == '+' || next.is_whitespace())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGHtiVz+ZA1NX3VZlv0HGrf3c8c7bNQbWxvKuOPXv+Ri lab";

    #[test]
    fn the_table_is_found_as_either_agent_prints_it_on_the_console() {
        let fp = fingerprint(KEY).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        // cloud-init writes to the console itself; metaboot's lines come through journald.
        let cloud_init = format!(
            "ci-info: +++Authorized keys from /home/debian/.ssh/authorized_keys for user debian+++\n\
             ci-info: | ssh-ed25519 | {fp} |    -    |  lab  |\n"
        );
        let home = "/home/debian/.ssh/authorized_keys";
        assert!(authkey_fingerprints(&cloud_init, "debian", home, KEY).passed);
        let metaboot = format!(
            "[   20.1] metaboot[301]: ci-info: +++Authorized keys from /home/debian/.ssh/authorized_keys for user debian+++\n\
             [   20.1] metaboot[301]: ci-info: | ssh-ed25519 | {fp} |    -    |  lab  |\n"
        );
        assert!(authkey_fingerprints(&metaboot, "debian", home, KEY).passed);
        let other_user = cloud_init.replace("debian", "ubuntu");
        assert!(!authkey_fingerprints(&other_user, "debian", home, KEY).passed);
        // Keys kept where `AuthorizedKeysFile` says: that file's table.
        let elsewhere = cloud_init.replace(home, "/etc/ssh/authorized_keys/debian");
        assert!(!authkey_fingerprints(&elsewhere, "debian", home, KEY).passed);
        assert!(
            authkey_fingerprints(&elsewhere, "debian", "/etc/ssh/authorized_keys/debian", KEY)
                .passed
        );
        // The row must be in the user's own table: not in the table before it, nor in the
        // next one, nor under a user whose name only starts the same.
        let root_table = format!(
            "ci-info: +++Authorized keys from /root/.ssh/authorized_keys for user root+++\n\
             ci-info: | ssh-ed25519 | {fp} |    -    |  lab  |\n"
        );
        let other_row = "ci-info: | ssh-ed25519 | 00:11 |    -    |  other  |\n";
        let title_only = cloud_init.lines().next().unwrap();
        for console in [
            format!("{root_table}{title_only}\n{other_row}"),
            format!("{title_only}\n{other_row}{root_table}"),
            cloud_init.replace("user debian", "user debian2"),
        ] {
            let failed = authkey_fingerprints(&console, "debian", home, KEY);
            assert!(!failed.passed, "{console}");
        }
        let separate = format!("{root_table}{cloud_init}");
        assert!(authkey_fingerprints(&separate, "debian", home, KEY).passed);
        let no_row = cloud_init.lines().next().unwrap().to_owned();
        let failed = authkey_fingerprints(&no_row, "debian", home, KEY);
        assert!(
            !failed.passed && failed.detail.contains("row missing"),
            "{failed:?}"
        );
    }
}
