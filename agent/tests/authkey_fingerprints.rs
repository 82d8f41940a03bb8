//! `ssh_authkey_fingerprints`, as someone reading a new instance's console log sees it: once
//! per instance, the fingerprints of each user's authorized keys in cloud-init's table, the
//! hash `authkey_hash` names, nothing with `no_ssh_fingerprints`, and never the content of a
//! file a guest user linked in place of `authorized_keys`.

mod support;

use std::os::unix::fs::{lchown, symlink};

use base64::Engine as _;
use sha2::Digest as _;
use support::*;

/// A key given in user data (its blob is base64, as a real key's).
const LAPTOP_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGHtiVz+ZA1NX3VZlv0HGrf3c8c7bNQbWxvKuOPXv+Ri me@laptop";
/// The title of the default user's table.
const TITLE: &str = "Authorized keys from /home/debian/.ssh/authorized_keys for user debian";

/// cloud-init's fingerprint of a key line: the blob's digest in hex pairs.
fn fingerprint(key: &str) -> String {
    let blob = key.split_whitespace().nth(1).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap();
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The console lines of the table titled `title`.
fn table<'a>(log: &'a str, title: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = log.lines().collect();
    let Some(start) = lines.iter().position(|l| l.contains(title)) else {
        return Vec::new();
    };
    lines[start..]
        .iter()
        .take_while(|l| l.starts_with("ci-info: "))
        .copied()
        .collect()
}

#[test]
fn the_default_users_keys_are_on_the_console_once_per_instance() {
    if !require_root() {
        return;
    }
    let guest = Guest::with_debian();
    guest.user_data(format!(
        "#cloud-config\nssh_authorized_keys: ['{LAPTOP_KEY}']\n"
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let shown = table(&log, TITLE);
    assert_eq!(
        shown.len(),
        7,
        "title, 3 head lines, 2 keys, the bottom: {log}"
    );
    assert!(shown[0].starts_with("ci-info: +++"), "{}", shown[0]);
    assert!(shown[2].contains("Fingerprint (sha256)"), "{}", shown[2]);
    let row = |key: &str| {
        shown
            .iter()
            .find(|l| l.contains(&fingerprint(key)))
            .unwrap_or_else(|| panic!("no row for {key}: {log}"))
            .to_string()
    };
    let meta = row(META_KEY);
    assert!(
        meta.contains("| ssh-ed25519 |") && meta.contains("nova@host"),
        "{meta}"
    );
    assert!(row(LAPTOP_KEY).contains("| me@laptop |"));
    assert_eq!(
        guest.step("ssh-authkey-fingerprints"),
        (
            "ok".into(),
            "the authorized keys' fingerprints of debian on the console".into()
        )
    );

    // The same instance boots again: not printed again.
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(table(&log, TITLE).is_empty(), "{log}");
}

#[test]
fn no_ssh_fingerprints_keeps_them_off_and_authkey_hash_picks_the_hash() {
    if !require_root() {
        return;
    }
    let guest = Guest::with_debian();
    guest.user_data("#cloud-config\nno_ssh_fingerprints: 'yes'\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("ci-info: "), "{log}");
    assert_eq!(
        guest.step("ssh-authkey-fingerprints"),
        ("skipped".into(), "no_ssh_fingerprints is true".into())
    );

    let guest = Guest::with_debian();
    guest.user_data("#cloud-config\nauthkey_hash: sha512\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let shown = table(&log, TITLE);
    assert!(shown[2].contains("Fingerprint (sha512)"), "{log}");
    let cells: Vec<&str> = shown[4].split('|').map(str::trim).collect();
    assert_eq!(cells[1], "ssh-ed25519", "{}", shown[4]);
    assert_eq!(cells[2].split(':').count(), 64, "{}", shown[4]);

    // A hash metaboot does not have: `?` in the table (as cloud-init for one Python lacks),
    // and a warning saying which it has.
    let guest = Guest::with_debian();
    guest.user_data("#cloud-config\nauthkey_hash: md5\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let shown = table(&log, TITLE);
    let cells: Vec<&str> = shown[4].split('|').map(str::trim).collect();
    assert_eq!(cells[2], "?", "{log}");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("authkey_hash md5: metaboot has sha256, sha512 only"),
        "{warnings}"
    );
}

#[test]
fn a_user_without_keys_is_said_to_have_none() {
    if !require_root() {
        return;
    }
    let guest = Guest::with_debian();
    guest.meta_data(&serde_json::json!({"uuid": UUID, "hostname": "test.novalocal"}));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("ci-info: no authorized SSH keys fingerprints found for user debian.\n"),
        "{log}"
    );
}

#[test]
fn a_linked_authorized_keys_is_not_read() {
    if !require_root() {
        return;
    }
    let guest = Guest::with_debian();
    // The guest user links its authorized_keys to root's, which holds a key it must not see.
    std::fs::create_dir_all(guest.path("/root/.ssh")).unwrap();
    std::fs::write(
        guest.path("/root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRootOnly root-only-secret\n",
    )
    .unwrap();
    let ssh = guest.path("/home/debian/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    lchown(&ssh, Some(DEBIAN), Some(DEBIAN)).unwrap();
    symlink("/root/.ssh/authorized_keys", ssh.join("authorized_keys")).unwrap();
    lchown(ssh.join("authorized_keys"), Some(DEBIAN), Some(DEBIAN)).unwrap();
    guest.meta_data(&serde_json::json!({"uuid": UUID, "hostname": "test.novalocal"}));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("root-only-secret"), "{log}");
    assert!(table(&log, TITLE).is_empty(), "{log}");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("no fingerprints for debian: ")
            && warnings.contains("is a symlink; not followed"),
        "{warnings}"
    );
}
