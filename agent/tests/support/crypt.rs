//! The one check that a shadow hash works where it matters: glibc's crypt(3), which PAM and
//! busybox login call, reproduces it from the password. Shared by the guest agent's tests and
//! the end-to-end suite (`tests/tests/guest_agent.rs` includes this file by path: it needs
//! nothing but std and perl).

use std::process::Command;

/// True when glibc's crypt(3), through perl, gives back `hash` for `password`. Panics when perl
/// is missing: a hash nobody checked is not a passed test.
pub fn crypt_verifies(password: &str, hash: &str) -> bool {
    let out = Command::new("perl")
        .args([
            "-e",
            "print crypt($ARGV[0], $ARGV[1])",
            "--",
            password,
            hash,
        ])
        .output()
        .expect("perl is needed to verify hashes with glibc");
    assert!(out.status.success(), "perl failed: {out:?}");
    String::from_utf8_lossy(&out.stdout) == hash
}
