//! `AuthorizedKeysFile`: an image whose sshd reads keys outside `~/.ssh/authorized_keys` gets
//! them where it reads them (cloud-init's `extract_authorized_keys`), found through the
//! configuration's `Include` lines; a path on which a user could plant a symlink, or that
//! others may write, is passed over for sshd's default file.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};

use support::*;

/// A guest whose sshd reads `pattern` first, then the default file (Debian's layout: the line
/// in a drop-in the main file includes).
fn guest_reading(pattern: &str) -> Guest {
    let guest = Guest::with_debian();
    std::fs::create_dir_all(guest.path("/etc/ssh/sshd_config.d")).unwrap();
    std::fs::write(
        guest.path("/etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
    )
    .unwrap();
    std::fs::write(
        guest.path("/etc/ssh/sshd_config.d/60-keys.conf"),
        format!("AuthorizedKeysFile {pattern} .ssh/authorized_keys\n"),
    )
    .unwrap();
    guest
}

#[test]
fn keys_go_to_the_file_sshd_reads() {
    let guest = guest_reading("/etc/ssh/authorized_keys/%u");
    guest.user_data(
        "#cloud-config\nusers:\n  - default\n  - name: cloudy\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICloudyKey c@h\"]\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.read("/etc/ssh/authorized_keys/debian"),
        format!("{META_KEY}\n")
    );
    assert!(
        guest
            .read("/etc/ssh/authorized_keys/cloudy")
            .contains("CloudyKey")
    );
    assert!(
        guest
            .read("/etc/ssh/authorized_keys/root")
            .contains(META_KEY)
    );
    for home in ["/home/debian", "/home/cloudy", "/root"] {
        assert!(
            !guest.path(&format!("{home}/.ssh/authorized_keys")).exists(),
            "{home}"
        );
    }
    let dir = std::fs::metadata(guest.path("/etc/ssh/authorized_keys")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o755);
    let file = std::fs::metadata(guest.path("/etc/ssh/authorized_keys/debian")).unwrap();
    assert_eq!(file.mode() & 0o7777, 0o600);
    if nix::unistd::geteuid().is_root() {
        assert_eq!((dir.uid(), file.uid(), file.gid()), (0, DEBIAN, DEBIAN));
    }
    // The console's fingerprints are those of that file.
    assert!(
        stderr.contains("Authorized keys from /etc/ssh/authorized_keys/debian for user debian"),
        "{stderr}"
    );
}

#[test]
fn a_file_of_several_users_is_not_one_users() {
    // A shared file (no %u, outside the home) is the administrator's: keys go home.
    let guest = guest_reading("/etc/ssh/authorized_keys_all");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.read("/home/debian/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    assert!(!guest.path("/etc/ssh/authorized_keys_all").exists());
}

#[test]
fn a_symlink_on_the_way_is_passed_over() {
    if !require_root() {
        return;
    }
    // The user controls its home: a link it plants there leads nowhere.
    let guest = guest_reading("%h/keys/%u");
    let link = guest.path("/home/debian/keys");
    symlink("/etc", &link).unwrap();
    lchown(&link, Some(DEBIAN), Some(DEBIAN)).unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !guest.path("/etc/debian").exists(),
        "nothing through the link"
    );
    assert_eq!(
        guest.read("/home/debian/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("/etc")
    );
}

/// A guest whose sshd reads `/srv/keys/%u` first, a directory everyone may write.
fn guest_with_an_open_keys_dir() -> Guest {
    let guest = guest_reading("/srv/keys/%u");
    std::fs::create_dir_all(guest.path("/srv/keys")).unwrap();
    std::fs::set_permissions(
        guest.path("/srv/keys"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    guest
}

#[test]
fn a_directory_others_may_write_is_passed_over_unless_strict_modes_is_off() {
    let guest = guest_with_an_open_keys_dir();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(!guest.path("/srv/keys/debian").exists());
    assert!(guest.path("/home/debian/.ssh/authorized_keys").exists());

    let guest = guest_with_an_open_keys_dir();
    guest.append("/etc/ssh/sshd_config", "StrictModes no");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/srv/keys/debian"), format!("{META_KEY}\n"));
    assert!(!guest.path("/home/debian/.ssh/authorized_keys").exists());
}

#[test]
fn an_existing_file_keeps_its_keys_mode_and_owner() {
    let guest = guest_reading("/etc/ssh/authorized_keys/%u");
    std::fs::create_dir_all(guest.path("/etc/ssh/authorized_keys")).unwrap();
    let file = guest.path("/etc/ssh/authorized_keys/debian");
    std::fs::write(
        &file,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldKey admin@site\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.read("/etc/ssh/authorized_keys/debian"),
        format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldKey admin@site\n{META_KEY}\n")
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
}
