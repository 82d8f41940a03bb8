//! Races with a guest user who changes their files while the agent writes their keys, made to
//! happen at one chosen system call (`testutil::pausing`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;

use super::*;
use crate::testutil::{pausing, require_root};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 one@host";
const OLD: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABOld old@host";
/// Another user of the guest, who owns none of bob's files.
const MALLORY: u32 = 2000;

fn bob() -> User {
    User {
        name: "bob".into(),
        uid: 1000,
        gid: 1000,
        home: "/home/bob".into(),
        shell: "/bin/sh".into(),
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A root with bob's home (0755) and `~/.ssh` (0700), both his.
fn root_with_home() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let ssh = root.host_path("/home/bob/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    chown(ssh.parent().unwrap(), Some(1000), Some(1000)).unwrap();
    chown(&ssh, Some(1000), Some(1000)).unwrap();
    set_mode(&ssh, 0o700);
    (dir, root)
}

/// Bob's sshd reads `~/.ssh/authorized_keys2` first; while the agent reads it, bob puts a file
/// of Mallory's that anyone may write in its place. The keys file written keeps the mode and
/// owner of the file read, not of the one found there afterwards.
#[test]
fn a_keys_file_swapped_while_it_is_read_gives_the_new_one_nothing() {
    if !require_root() {
        return;
    }
    let (_dir, root) = root_with_home();
    let keys = root.host_path("/home/bob/.ssh/authorized_keys2");
    fs::write(&keys, format!("{OLD}\n")).unwrap();
    chown(&keys, Some(1000), Some(1000)).unwrap();
    set_mode(&keys, 0o640);
    let settings = KeysFiles {
        patterns: vec![".ssh/authorized_keys2".into(), DEFAULT_KEYS_FILE.into()],
        strict: true,
    };
    let mut swapped = false;
    let written = pausing(
        libc::SYS_read,
        |call| {
            if !swapped && call.fd_path(0).as_deref() == Some(keys.as_path()) {
                let planted = keys.with_file_name("planted");
                fs::write(&planted, "").unwrap();
                chown(&planted, Some(MALLORY), Some(MALLORY)).unwrap();
                set_mode(&planted, 0o666);
                fs::rename(&planted, &keys).unwrap();
                swapped = true;
            }
        },
        || write_user_keys(&root, &settings, &bob(), &[KEY.to_owned()]),
    );
    let Some(written) = written else {
        return;
    };
    assert!(swapped, "the keys file was read");
    assert_eq!(written.unwrap(), keys);
    assert_eq!(
        fs::read_to_string(&keys).unwrap(),
        format!("{OLD}\n{KEY}\n")
    );
    let meta = fs::metadata(&keys).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 1000, 1000),
        "the mode and owner of the file read"
    );
}

/// Bob's sshd reads `/srv/keys/%u/keys` first, in a directory anyone may write (StrictModes
/// off lets it be used). At the agent's call of `syscall` on `/srv/keys` for which `plants`
/// says so, Mallory puts her own `/srv/keys/bob` there (taking away what is there): her
/// directory must be left hers and unused, and the keys go home.
fn mallory_plants_the_keys_directory(syscall: libc::c_long, plants: impl Fn(&Path) -> bool) {
    if !require_root() {
        return;
    }
    let (_dir, root) = root_with_home();
    let open = root.host_path("/srv/keys");
    fs::create_dir_all(&open).unwrap();
    set_mode(&open, 0o777);
    let theirs = open.join("bob");
    let settings = KeysFiles {
        patterns: vec!["/srv/keys/%u/keys".into(), DEFAULT_KEYS_FILE.into()],
        strict: false,
    };
    let written = pausing(
        syscall,
        |call| {
            if call.fd_path(0).as_deref() == Some(open.as_path()) && plants(&theirs) {
                if theirs.exists() {
                    fs::remove_dir(&theirs).unwrap();
                }
                fs::create_dir(&theirs).unwrap();
                chown(&theirs, Some(MALLORY), Some(MALLORY)).unwrap();
                set_mode(&theirs, 0o755);
            }
        },
        || write_user_keys(&root, &settings, &bob(), &[KEY.to_owned()]),
    );
    let Some(written) = written else {
        return;
    };
    let meta = fs::metadata(&theirs).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o755, MALLORY, MALLORY),
        "Mallory's directory is hers"
    );
    assert!(!theirs.join("keys").exists());
    let home = root.host_path("/home/bob/.ssh/authorized_keys");
    assert_eq!(written.unwrap(), home);
    assert_eq!(fs::read_to_string(&home).unwrap(), format!("{KEY}\n"));
}

/// While the agent makes `/srv/keys/bob`, Mallory makes it first.
#[test]
fn a_directory_someone_made_meanwhile_is_not_chowned() {
    mallory_plants_the_keys_directory(libc::SYS_mkdirat, |theirs| !theirs.exists());
}

/// A moment later: the agent made `/srv/keys/bob`, and before it opens it Mallory takes it away
/// and puts hers in its place. The agent's `mkdirat` succeeded, yet the directory it opens is
/// hers: not chowned, not used.
#[test]
fn a_directory_swapped_in_after_it_was_made_is_not_chowned() {
    mallory_plants_the_keys_directory(libc::SYS_openat, |theirs| {
        fs::metadata(theirs).is_ok_and(|made| made.uid() == 0)
    });
}
