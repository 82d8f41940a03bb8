//! Directories a user made in a place anyone may write to (`/tmp`, `/var/tmp`, `/dev/shm`):
//! a file the agent writes below one, as root, can be renamed away and replaced by that user
//! (they own the directory), and a script `runcmd` then runs as root would be theirs. A user
//! who logged in before this boot (or before the image was snapshotted) can make
//! `/var/tmp/setup` ahead of a `write_files` entry for `/var/tmp/setup/install.sh`. Such a
//! directory is refused, as systemd refuses an "unsafe path transition" and as the kernel's
//! `fs.protected_regular` refuses creating a file in someone else's sticky directory.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat};

use super::dir::Dir;
use super::error::Refused;

/// The mode bits of a directory anyone may add entries to: sticky (`+t`) and world-writable.
const STICKY_OPEN: u32 = 0o1002;

/// Whether a directory of mode `mode` is sticky and world-writable, like `/tmp`.
fn sticky_open(mode: u32) -> bool {
    mode & STICKY_OPEN == STICKY_OPEN
}

/// Whether a directory owned by `uid` is a user's: neither root's, nor the agent's own (a test
/// run as a normal user), nor `owner`'s (the user the file is written for).
fn a_users(uid: u32, owner: Option<u32>) -> bool {
    uid != 0 && uid != nix::unistd::geteuid().as_raw() && Some(uid) != owner
}

fn same(a: &FileStat, b: &FileStat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// Refuses `dir` when it, or a directory above it below `root`, is a user's (see [`a_users`])
/// and sits in a sticky, world-writable directory.
pub fn refuse_user_dir_in_sticky(
    dir: &Dir,
    root: BorrowedFd<'_>,
    owner: Option<u32>,
) -> io::Result<()> {
    let root_stat = fstat(root)?;
    let mut current: OwnedFd = dir.fd().try_clone_to_owned()?;
    let mut stat = fstat(&current)?;
    // The `..` of `/` is `/` itself: the climb ends at the host's root at the latest.
    for above in dir.path().ancestors() {
        if same(&stat, &root_stat) {
            break;
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let parent = openat(current.as_fd(), "..", flags, Mode::empty())?;
        let parent_stat = fstat(&parent)?;
        if a_users(stat.st_uid, owner) && sticky_open(parent_stat.st_mode) {
            return Err(Refused::UserDirInSticky {
                path: above.to_owned(),
                uid: stat.st_uid,
            }
            .into());
        }
        if same(&parent_stat, &stat) {
            break;
        }
        current = parent;
        stat = parent_stat;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, chown};

    use super::*;
    use crate::root::Root;
    use crate::testutil::require_root;

    /// A root with a world-writable sticky `/var/tmp`.
    fn root_with_tmp() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("var/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn a_users_directory_in_a_sticky_one_is_refused_at_any_depth() {
        if !require_root() {
            return;
        }
        let (host, root) = root_with_tmp();
        std::fs::create_dir_all(host.path().join("var/tmp/setup/sub")).unwrap();
        chown(host.path().join("var/tmp/setup"), Some(1000), Some(1000)).unwrap();
        for path in ["/var/tmp/setup/install.sh", "/var/tmp/setup/sub/install.sh"] {
            let (dir, _) = root.parent(path, false).unwrap();
            let err = root.refuse_user_dir_in_sticky(&dir, None).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{path}");
            let said = err.to_string();
            assert!(
                said.contains("var/tmp/setup belongs to uid 1000") && !said.contains("sub"),
                "{said}"
            );
            // The user the file is for may own it.
            root.refuse_user_dir_in_sticky(&dir, Some(1000)).unwrap();
        }
    }

    #[test]
    fn root_s_directories_and_users_homes_are_used() {
        if !require_root() {
            return;
        }
        let (host, root) = root_with_tmp();
        std::fs::create_dir_all(host.path().join("var/tmp/mine")).unwrap();
        std::fs::create_dir_all(host.path().join("home/alice/bin")).unwrap();
        chown(host.path().join("home/alice"), Some(1000), Some(1000)).unwrap();
        chown(host.path().join("home/alice/bin"), Some(1000), Some(1000)).unwrap();
        for path in ["/var/tmp/mine/x", "/var/tmp/x", "/home/alice/bin/x", "/x"] {
            let (dir, _) = root.parent(path, false).unwrap();
            root.refuse_user_dir_in_sticky(&dir, None).unwrap();
        }
    }

    #[test]
    fn only_sticky_world_writable_modes_count() {
        assert!(sticky_open(0o41777));
        assert!(sticky_open(0o1733));
        assert!(!sticky_open(0o777), "not sticky");
        assert!(!sticky_open(0o1775), "not world-writable");
    }
}
