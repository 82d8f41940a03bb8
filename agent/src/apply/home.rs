//! A user's home and what the agent puts in it (`~/.ssh`, skeleton files): places the user
//! controls, so stricter than the rest of the root, as cloud-init is for `authorized_keys`.
//! Each entry is opened without following a symlink (a symlink is refused) and must belong to
//! the user or to root; owners and modes are set on the open descriptors, after every check.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::Path;

use nix::sys::stat::{FileStat, SFlag};

use crate::apply::users::User;
use crate::fsutil::{Dir, WriteOptions, check_owner, kind};
use crate::root::Root;

/// Mode of a directory the agent creates on the way to a home, and of a home until the
/// users-groups step gives it useradd's mode from the image's login.defs
/// (`apply/login_defs.rs`; this one when it has none).
pub const HOME_MODE: u32 = 0o755;
/// Mode of `~/.ssh`.
pub const SSH_DIR_MODE: u32 = 0o700;

fn checked(dir: Dir, user: &User) -> io::Result<Dir> {
    let stat = dir.stat()?;
    check_owner(&stat, dir.path().to_owned(), &user.name, user.uid)?;
    Ok(dir)
}

/// Opens `user`'s home (its parents resolved inside the root), creating it (root-owned,
/// [`HOME_MODE`], like missing parents) when missing. Returns it and whether it was created. A
/// home that is a symlink or belongs to someone else is refused.
pub fn open_home(root: &Root, user: &User) -> io::Result<(Dir, bool)> {
    let (parent, name) = root.parent(Path::new(&user.home), true)?;
    let (home, created) = parent.create_dir(&name, HOME_MODE)?;
    Ok((checked(home, user)?, created))
}

/// Opens `user`'s home when it exists, with the checks of [`open_home`]; creates nothing.
pub fn existing_home(root: &Root, user: &User) -> io::Result<Option<Dir>> {
    let (parent, name) = match root.parent(Path::new(&user.home), false) {
        Ok(found) => found,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    parent
        .open_dir(&name)?
        .map(|home| checked(home, user))
        .transpose()
}

/// Opens directory `name` of `user`'s home when it exists, with the checks of
/// [`open_user_dir`]; creates nothing.
pub fn existing_user_dir(home: &Dir, name: &str, user: &User) -> io::Result<Option<Dir>> {
    home.open_dir(OsStr::new(name))?
        .map(|dir| checked(dir, user))
        .transpose()
}

/// Opens (creating it, [`SSH_DIR_MODE`], when missing) directory `name` of `user`'s home; a
/// symlink there, or a directory of someone else, is refused. Owner and mode are left to the
/// caller, once it has checked what lies inside.
pub fn open_user_dir(home: &Dir, name: &str, user: &User) -> io::Result<Dir> {
    let (dir, _) = home.create_dir(OsStr::new(name), SSH_DIR_MODE)?;
    checked(dir, user)
}

/// Opens file `name` of a user's directory for reading, with its status: `None` when missing;
/// a symlink, a file of someone else, or a file with more than one link (a hard link to a file
/// elsewhere) is refused.
pub fn open_user_file(
    dir: &Dir,
    name: &OsStr,
    user: &User,
) -> io::Result<Option<(File, FileStat)>> {
    let Some((file, stat)) = dir.open_unshared(name)? else {
        return Ok(None);
    };
    check_owner(&stat, dir.child_path(name), &user.name, user.uid)?;
    Ok(Some((file, stat)))
}

/// Reads file `name` of a user's directory, opened as [`open_user_file`] opens it; `None` when
/// missing.
pub fn read_user_file(dir: &Dir, name: &str, user: &User) -> io::Result<Option<Vec<u8>>> {
    let Some((mut file, stat)) = open_user_file(dir, OsStr::new(name), user)? else {
        return Ok(None);
    };
    crate::fsutil::dir::read_whole(&mut file, &stat).map(Some)
}

/// Copies the skeleton directory `skel` into a new home: directories and regular files (not
/// symlinks), owned by the user, files keeping their mode, each written whole (atomically);
/// what the home already has is kept.
pub fn copy_skel(skel: &Dir, home: &Dir, user: &User) -> io::Result<()> {
    for (name, stat) in skel.entries()? {
        let kind = kind(&stat);
        if kind == SFlag::S_IFDIR {
            let Some(from) = skel.open_dir(&name)? else {
                continue;
            };
            let (to, _) = home.create_dir(&name, HOME_MODE)?;
            to.set_owner_mode(Some(user.owner()), HOME_MODE)?;
            copy_skel(&from, &to, user)?;
        } else if kind == SFlag::S_IFREG && home.entry(&name)?.is_none() {
            let Some((mut from, stat)) = skel.open_file(&name)? else {
                continue;
            };
            let contents = crate::fsutil::dir::read_whole(&mut from, &stat)?;
            // Whole or not at all: a run cut short leaves no torn `.bashrc`, and the next
            // run copies what is missing.
            home.write_atomic(
                &name,
                &contents,
                &WriteOptions::exact(stat.st_mode & 0o7777, Some(user.owner())),
            )
            .map_err(io::Error::other)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::fsutil::Refused;

    fn user(home: &str) -> User {
        User {
            name: "bob".into(),
            uid: 1000,
            gid: 1000,
            home: home.into(),
            shell: "/bin/sh".into(),
        }
    }

    fn refused(err: &io::Error) -> Option<&Refused> {
        err.get_ref().and_then(|e| e.downcast_ref::<Refused>())
    }

    #[test]
    fn a_hard_linked_file_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/shadow"), "root:secret:::\n").unwrap();
        let (home, created) = open_home(&root, &user("/home/bob")).unwrap();
        assert!(created);
        let ssh = open_user_dir(&home, ".ssh", &user("/home/bob")).unwrap();
        fs::hard_link(
            dir.path().join("etc/shadow"),
            dir.path().join("home/bob/.ssh/authorized_keys"),
        )
        .unwrap();
        let err = read_user_file(&ssh, "authorized_keys", &user("/home/bob")).unwrap_err();
        assert!(
            matches!(refused(&err), Some(Refused::HardLinks { links: 2, .. })),
            "{err}"
        );
    }

    #[test]
    fn a_home_symlink_is_refused_even_to_a_directory_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        symlink("/etc", dir.path().join("home/bob")).unwrap();
        let err = open_home(&root, &user("/home/bob")).unwrap_err();
        assert!(matches!(refused(&err), Some(Refused::Symlink(_))), "{err}");
    }

    #[test]
    fn skeleton_files_are_copied_with_their_mode_and_links_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let skel = dir.path().join("etc/skel");
        fs::create_dir_all(skel.join(".config")).unwrap();
        fs::write(skel.join(".profile"), "# profile\n").unwrap();
        fs::write(skel.join(".config/app"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(skel.join(".profile"), fs::Permissions::from_mode(0o640)).unwrap();
        symlink("/etc/shadow", skel.join(".evil")).unwrap();
        let (home, _) = open_home(&root, &user("/home/bob")).unwrap();
        let skel = root.dir("/etc/skel", false).unwrap();
        copy_skel(&skel, &home, &user("/home/bob")).unwrap();
        let bob = dir.path().join("home/bob");
        assert_eq!(
            fs::read_to_string(bob.join(".profile")).unwrap(),
            "# profile\n"
        );
        assert_eq!(fs::read_to_string(bob.join(".config/app")).unwrap(), "x");
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(bob.join(".profile")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        if crate::testutil::require_root() {
            assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
        }
        assert!(fs::symlink_metadata(bob.join(".evil")).is_err());
    }
}
