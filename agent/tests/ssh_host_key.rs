//! The ed25519 SSH host key `metaboot run` makes when the image has sshd and no key
//! (`agent/src/apply/ssh_host_key.rs`): OpenSSH reads it back, it is made once, a half key is
//! made anew, a planted symlink is replaced and never written through.

mod support;

use std::os::unix::fs::symlink;
use std::process::Command;

use support::*;

const PRIVATE: &str = "/etc/ssh/ssh_host_ed25519_key";
const PUBLIC: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// A guest whose image has OpenSSH's server configuration and no host keys.
fn guest_with_sshd() -> Guest {
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
    std::fs::write(
        guest.path("/etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    )
    .unwrap();
    guest
}

fn run_done(guest: &Guest) {
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "run failed: {stderr}\n{:#}", guest.status());
    assert_eq!(guest.status()["status"], "done");
}

/// `ssh-keygen -y`: the public key OpenSSH derives from the private key file.
fn openssh_public_of(guest: &Guest) -> Option<String> {
    if !testutil::require_tool("ssh-keygen") {
        return None;
    }
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(guest.path(PRIVATE))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -y refused the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn an_image_with_sshd_gets_an_ed25519_host_key_that_openssh_reads() {
    let guest = guest_with_sshd();
    run_done(&guest);
    assert_eq!(
        guest.step("ssh-host-keys"),
        ("ok".into(), format!("ed25519: {PRIVATE}"))
    );
    let public = guest.read(PUBLIC);
    assert!(
        public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
        "{public}"
    );
    assert!(public.ends_with(" root@test\n"), "{public}");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
    let (private_mode, public_mode) = (guest.mode_owner(PRIVATE), guest.mode_owner(PUBLIC));
    assert_eq!(
        private_mode.0, 0o600,
        "sshd refuses a private key others can read"
    );
    assert_eq!(public_mode.0, 0o644);
    if let Some(derived) = openssh_public_of(&guest) {
        let words = |line: &str| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(&derived), words(&public));
    }

    // The next boot keeps the key.
    let private = guest.read(PRIVATE);
    run_done(&guest);
    assert_eq!(guest.step("ssh-host-keys").0, "skipped");
    assert_eq!(guest.read(PRIVATE), private);
    assert_eq!(guest.read(PUBLIC), public);
}

#[test]
fn two_instances_get_two_keys() {
    let (one, two) = (guest_with_sshd(), guest_with_sshd());
    run_done(&one);
    run_done(&two);
    assert_ne!(one.read(PUBLIC), two.read(PUBLIC));
}

#[test]
fn no_sshd_no_host_key() {
    let guest = Guest::new();
    run_done(&guest);
    assert_eq!(
        guest.step("ssh-host-keys"),
        ("skipped".into(), "no /etc/ssh/sshd_config".into())
    );
    assert!(!guest.path(PRIVATE).exists());
}

#[test]
fn a_private_key_without_its_public_half_is_made_anew() {
    let guest = guest_with_sshd();
    std::fs::write(guest.path(PRIVATE), "left by a boot cut short\n").unwrap();
    run_done(&guest);
    assert_eq!(guest.step("ssh-host-keys").0, "ok");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
    if let Some(derived) = openssh_public_of(&guest) {
        assert!(guest.read(PUBLIC).starts_with(derived.trim_end()));
    }
}

#[test]
fn a_symlink_planted_at_the_key_is_replaced_not_written_through() {
    let guest = guest_with_sshd();
    let shadow = guest.read("/etc/shadow");
    symlink("/etc/shadow", guest.path(PRIVATE)).unwrap();
    symlink("../shadow", guest.path(PUBLIC)).unwrap();
    run_done(&guest);
    assert_eq!(guest.read("/etc/shadow"), shadow);
    let meta = std::fs::symlink_metadata(guest.path(PRIVATE)).unwrap();
    assert!(meta.is_file(), "the key is a file of its own");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
}
