//! Planted symlinks: `metaboot run --root TMP` (as root) never follows a symlink out of the root
//! or onto a file it was not asked to touch. A guest user (`debian`, uid 1000, the default
//! user) plants links in the places it controls; the run must leave their targets alone and
//! say which path it refused. Also what else such a user can plant there: a file that says it
//! is a terabyte.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

use support::*;

/// A line of the guest's shadow that must never leave /etc/shadow.
const SHADOW_MARKER: &str = "sys:$6$ShadowMarker0$NeverCopiedAnywhere:19000:0:99999:7:::";

/// A guest whose image has user `debian` (the default user, who plants the links) with a home
/// it owns, and a shadow file holding [`SHADOW_MARKER`].
fn debian_guest() -> Guest {
    let guest = Guest::with_debian();
    guest.append("/etc/shadow", SHADOW_MARKER);
    guest
}

/// Mode, owner and content of a file or directory (not following a final symlink).
fn fingerprint(path: &Path) -> (u32, u32, u32, Option<Vec<u8>>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let content = meta.is_file().then(|| std::fs::read(path).unwrap());
    (meta.mode(), meta.uid(), meta.gid(), content)
}

/// No file under `dir` holds `marker`, except `allowed`; nor does the run's output.
fn assert_nowhere_but(dir: &Path, allowed: Option<&Path>, marker: &str, output: &str) {
    for file in files_under(dir) {
        if Some(file.as_path()) == allowed {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(marker),
            "{} holds {marker:?}",
            file.display()
        );
    }
    assert!(!output.contains(marker), "the output holds {marker:?}");
}

fn assert_symlink(path: &Path, target: &str, uid: u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{} was replaced",
        path.display()
    );
    assert_eq!(meta.uid(), uid, "{} changed owner", path.display());
    assert_eq!(std::fs::read_link(path).unwrap(), Path::new(target));
}

#[test]
fn an_authorized_keys_symlink_to_shadow_is_refused() {
    if !require_root() {
        return;
    }
    let guest = debian_guest();
    let ssh = guest.path("/home/debian/.ssh");
    std::fs::create_dir(&ssh).unwrap();
    lchown(&ssh, Some(DEBIAN), Some(DEBIAN)).unwrap();
    let link = ssh.join("authorized_keys");
    symlink("../../../etc/shadow", &link).unwrap();
    lchown(&link, Some(DEBIAN), Some(DEBIAN)).unwrap();
    let shadow = fingerprint(&guest.path("/etc/shadow"));

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        fingerprint(&guest.path("/etc/shadow")),
        shadow,
        "shadow untouched"
    );
    assert_symlink(&link, "../../../etc/shadow", DEBIAN);
    let shadow_path = guest.path("/etc/shadow");
    assert_nowhere_but(&guest.root, Some(&shadow_path), SHADOW_MARKER, &stderr);
    let (outcome, message) = guest.step("ssh-keys");
    assert_eq!(outcome, "error");
    assert!(
        message.contains(&format!("{} is a symlink", link.display())),
        "{message}"
    );
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n"),
        "root still gets its keys"
    );
}

/// A sparse `authorized_keys` of a terabyte costs its owner nothing; read whole, it would take
/// the guest's memory on every boot. The run refuses it, saying why, and goes on.
#[test]
fn an_authorized_keys_of_a_terabyte_is_refused_and_the_run_goes_on() {
    if !require_root() {
        return;
    }
    const TERABYTE: u64 = 1 << 40;
    let guest = debian_guest();
    let ssh = guest.path("/home/debian/.ssh");
    std::fs::create_dir(&ssh).unwrap();
    lchown(&ssh, Some(DEBIAN), Some(DEBIAN)).unwrap();
    let keys = ssh.join("authorized_keys");
    std::fs::File::create(&keys)
        .unwrap()
        .set_len(TERABYTE)
        .unwrap();
    lchown(&keys, Some(DEBIAN), Some(DEBIAN)).unwrap();

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    let (outcome, message) = guest.step("ssh-keys");
    assert_eq!(outcome, "error");
    assert!(
        message.contains(&format!("{TERABYTE} bytes, over the"))
            && message.contains("make it smaller"),
        "{message}"
    );
    assert_eq!(
        std::fs::metadata(&keys).unwrap().len(),
        TERABYTE,
        "left as it was"
    );
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n"),
        "root still gets its keys"
    );
}

#[test]
fn an_ssh_dir_symlink_to_a_root_owned_directory_is_never_chowned() {
    if !require_root() {
        return;
    }
    let guest = debian_guest();
    // `.ssh -> /etc`, relative so that even a run that followed it stays in the test's root.
    let link = guest.path("/home/debian/.ssh");
    symlink("../../etc", &link).unwrap();
    lchown(&link, Some(DEBIAN), Some(DEBIAN)).unwrap();
    let etc = fingerprint(&guest.path("/etc"));

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        fingerprint(&guest.path("/etc")),
        etc,
        "/etc keeps owner and mode"
    );
    assert!(!guest.path("/etc/authorized_keys").exists());
    assert_symlink(&link, "../../etc", DEBIAN);
    let (outcome, message) = guest.step("ssh-keys");
    assert_eq!(outcome, "error");
    assert!(
        message.contains(&format!("{} is a symlink", link.display())),
        "{message}"
    );
}

#[test]
fn a_home_owned_by_someone_else_is_refused() {
    if !require_root() {
        return;
    }
    let guest = debian_guest();
    lchown(guest.path("/home/debian"), Some(1001), Some(1001)).unwrap();

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    assert!(!guest.path("/home/debian/.ssh").exists());
    let (outcome, message) = guest.step("ssh-keys");
    assert_eq!(outcome, "error");
    assert!(
        message.contains(&format!(
            "{} is owned by uid 1001",
            guest.path("/home/debian").display()
        )),
        "{message}"
    );
}

#[test]
fn append_onto_a_symlink_out_of_the_root_reads_and_writes_nothing_outside() {
    let guest = Guest::new();
    let outside = guest.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let motd = outside.join("motd");
    std::fs::write(&motd, "OUTSIDE-MOTD-MARKER\n").unwrap();
    std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&motd, guest.path("/etc/motd")).unwrap();
    let before = (
        fingerprint(&motd),
        std::fs::metadata(&motd).unwrap().mtime(),
    );
    guest.user_data(
        "#cloud-config\nwrite_files:\n- {path: /etc/motd, append: true, content: \"appended\\n\"}\n\
         - {path: /etc/issue, content: \"written\\n\"}\n",
    );

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        (
            fingerprint(&motd),
            std::fs::metadata(&motd).unwrap().mtime()
        ),
        before
    );
    assert_nowhere_but(&guest.root, None, "OUTSIDE-MOTD-MARKER", &stderr);
    let me = nix::unistd::geteuid().as_raw();
    assert_symlink(&guest.path("/etc/motd"), &motd.display().to_string(), me);
    assert_eq!(
        guest.read("/etc/issue"),
        "written\n",
        "the other entry is written"
    );
    let (outcome, message) = guest.step("write-files");
    assert_eq!(outcome, "error");
    assert!(message.contains("/etc/motd"), "{message}");
    assert!(message.contains("symlink"), "{message}");
}

#[test]
fn write_files_through_a_directory_symlink_writes_nothing_outside() {
    if !require_root() {
        return;
    }
    let guest = Guest::new();
    let outside = guest.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::create_dir_all(guest.path("/var/tmp")).unwrap();
    // Root's own link out of the root: resolved inside the root, where its target is missing.
    symlink(&outside, guest.path("/var/tmp/vt")).unwrap();
    // A user's link to a directory inside the root: never followed by root.
    let user_link = guest.path("/var/tmp/ut");
    symlink("../../etc", &user_link).unwrap();
    lchown(&user_link, Some(DEBIAN), Some(DEBIAN)).unwrap();
    guest.user_data(
        "#cloud-config\nwrite_files:\n- {path: /var/tmp/vt/x, content: through-vt}\n\
         - {path: /var/tmp/ut/x, content: through-ut}\n- {path: /var/tmp/ok, content: fine}\n",
    );

    let (code, stderr) = guest.run();

    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing outside"
    );
    assert!(
        !guest.path("/etc/x").exists(),
        "the user's link was followed"
    );
    assert_eq!(guest.read("/var/tmp/ok"), "fine");
    let (outcome, message) = guest.step("write-files");
    assert_eq!(outcome, "error");
    assert!(message.contains("/var/tmp/vt/x"), "{message}");
    assert!(
        message.contains(&format!(
            "{} is a symlink owned by uid 1000",
            user_link.display()
        )),
        "{message}"
    );
}
