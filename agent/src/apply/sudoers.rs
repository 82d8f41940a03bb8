//! The image's `/etc/sudoers` made to read the directory metaboot writes its sudo rules into:
//! sudo reads a file of `/etc/sudoers.d` only when sudoers has an `#includedir` (or
//! `@includedir`) line naming it, which a minimal or hand-made sudoers may lack. As cloud-init's
//! `ensure_sudo_dir`, the line is appended when none names the directory (through a symlink
//! only root could have made, the link kept), and a missing sudoers is made from the vendor's
//! (`/usr/etc/sudoers`) or from that line alone (docs/protocol.md §5.4).

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use nix::sys::stat::FileStat;

use crate::fsutil::dir::read_whole;
use crate::fsutil::owner::is_agents;
use crate::fsutil::{Dir, PathError, Refused, WriteOptions, only_root_adds};
use crate::root::Root;

/// The main sudoers file, under the root.
pub const SUDOERS: &str = "/etc/sudoers";
/// The vendor's sudoers, where a distribution keeps it in /usr (openSUSE): a missing
/// [`SUDOERS`] starts from it, as cloud-init starts from it, so its rules (root's) stay.
pub const VENDOR_SUDOERS: &str = "/usr/etc/sudoers";
/// The mode of a sudoers file metaboot creates (sudo's and cloud-init's); one that exists
/// keeps its own mode and owner.
pub const SUDOERS_MODE: u32 = 0o440;
/// The comment above the line metaboot adds.
const ADDED: &str = "# Added by metaboot: the sudo rules of user data are read from here.";

/// Whether sudoers text `text` includes `dir`: a line `#includedir DIR` or `@includedir DIR`
/// (blanks around it ignored, as cloud-init reads it).
pub fn includes(text: &[u8], dir: &Path) -> bool {
    String::from_utf8_lossy(text).lines().any(|line| {
        let line = line.trim();
        ["#includedir", "@includedir"].iter().any(|word| {
            line.strip_prefix(word).is_some_and(|rest| {
                rest.starts_with(char::is_whitespace) && Path::new(rest.trim()) == dir
            })
        })
    })
}

/// Makes [`SUDOERS`] include `dir`, replacing it atomically with its bytes, mode and owner kept
/// and the line appended; true when it was changed. The path is resolved once: the file read
/// is the one replaced, in a directory only root may add entries to (through root's symlinks,
/// as `Root::parent_created` follows them), and it must be root's, with one link
/// ([`read_roots`]); anything else is refused with nothing written.
pub fn ensure_included(root: &Root, dir: &Path) -> Result<bool, PathError> {
    let shown = root.host_path(SUDOERS);
    let (held, name, _) = root
        .parent_created(Path::new(SUDOERS))
        .map_err(PathError::fail("create directory", &shown))?;
    let (mut text, options) =
        match read_roots(&held, &name).map_err(PathError::fail("read", &shown))? {
            Some((text, stat)) => (text, WriteOptions::keep_from(&stat)),
            None => {
                let vendor = root
                    .read_optional(VENDOR_SUDOERS)
                    .map_err(PathError::fail("read", root.host_path(VENDOR_SUDOERS)))?;
                (
                    vendor.unwrap_or_default(),
                    WriteOptions::keep_or(SUDOERS_MODE),
                )
            }
        };
    if includes(&text, dir) {
        return Ok(false);
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(format!("\n{ADDED}\n#includedir {}\n", dir.display()).as_bytes());
    held.write_atomic_as(&name, &shown, &text, &options)?;
    Ok(true)
}

/// Reads sudoers, entry `name` of `dir`, with the status of the descriptor read (what the
/// rewrite keeps); `None` when missing. Refused: a directory others than root may add entries
/// to, a file with more than one link (a hard link a user swapped in where
/// `fs.protected_hardlinks` is 0), a file not root's: rules a user wrote would become root's,
/// or root's file that user's, which sudo refuses to read (sudo broken for everyone).
fn read_roots(dir: &Dir, name: &OsStr) -> io::Result<Option<(Vec<u8>, FileStat)>> {
    if !only_root_adds(&dir.stat()?) {
        return Err(Refused::InOpenDir(dir.child_path(name)).into());
    }
    let Some((mut file, stat)) = dir.open_unshared(name)? else {
        return Ok(None);
    };
    if stat.st_uid != 0 && !is_agents(&stat) {
        return Err(Refused::NotRoots {
            path: dir.child_path(name),
            uid: stat.st_uid,
        }
        .into());
    }
    Ok(Some((read_whole(&mut file, &stat)?, stat)))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const DIR: &str = "/etc/sudoers.d";

    fn image() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/sudoers.d")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn include_lines_are_found_as_cloud_init_finds_them() {
        let dir = Path::new(DIR);
        for yes in [
            "#includedir /etc/sudoers.d\n",
            "Defaults env_reset\n  @includedir\t/etc/sudoers.d/ \n",
            "#includedir /etc//sudoers.d",
        ] {
            assert!(includes(yes.as_bytes(), dir), "{yes:?}");
        }
        for no in [
            "",
            "## #includedir /etc/sudoers.d\n",
            "#includedir /etc/sudoers.d.old\n",
            "#includedir/etc/sudoers.d\n",
            "#include /etc/sudoers.d\n",
        ] {
            assert!(!includes(no.as_bytes(), dir), "{no:?}");
        }
    }

    /// A sudoers without the line gets it appended, its bytes, mode and owner kept; a second
    /// run adds nothing.
    #[test]
    fn the_line_is_appended_to_a_sudoers_that_lacks_it() {
        let (dir, root) = image();
        let path = dir.path().join("etc/sudoers");
        let old: &[u8] = b"root ALL=(ALL:ALL) ALL\n# caf\xe9";
        fs::write(&path, old).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(ensure_included(&root, Path::new(DIR)).unwrap());
        let mut want = old.to_vec();
        want.extend_from_slice(format!("\n\n{ADDED}\n#includedir {DIR}\n").as_bytes());
        assert_eq!(fs::read(&path).unwrap(), want);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        assert!(!ensure_included(&root, Path::new(DIR)).unwrap());
        assert_eq!(fs::read(&path).unwrap(), want);
    }

    #[test]
    fn a_sudoers_that_has_the_line_is_left_as_it_is() {
        let (dir, root) = image();
        let path = dir.path().join("etc/sudoers");
        fs::write(&path, "@includedir /etc/sudoers.d\n").unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        assert!(!ensure_included(&root, Path::new(DIR)).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().ino(), before, "not rewritten");
    }

    /// A sudoers the image ships as root's symlink is appended to through it, as cloud-init's
    /// `append_file` opens it: the target gets the line, the link stays.
    #[test]
    fn a_sudoers_symlink_of_roots_is_written_through() {
        let (dir, root) = image();
        let real = dir.path().join("etc/sudoers.d/../sudoers.real");
        fs::write(&real, "root ALL=(ALL) ALL\n").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o440)).unwrap();
        std::os::unix::fs::symlink("sudoers.real", dir.path().join("etc/sudoers")).unwrap();
        assert!(ensure_included(&root, Path::new(DIR)).unwrap());
        let link = fs::symlink_metadata(dir.path().join("etc/sudoers")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(
            fs::read_to_string(&real).unwrap(),
            format!("root ALL=(ALL) ALL\n\n{ADDED}\n#includedir {DIR}\n")
        );
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o7777, 0o440);
    }

    /// A sudoers a user may have put in place is refused, nothing written: root's link into a
    /// sticky `/tmp` where a user planted their rules, a user's file, a hard link (to a user's
    /// file, swapped in where `fs.protected_hardlinks` is 0).
    #[test]
    fn a_sudoers_a_user_may_have_made_is_refused() {
        if !crate::testutil::require_root() {
            return;
        }
        const BOBS: &str = "bob ALL=(ALL) NOPASSWD: ALL\n";
        let users = |dir: &Path, path: &str| {
            let path = dir.join(path);
            fs::write(&path, BOBS).unwrap();
            std::os::unix::fs::chown(&path, Some(1000), Some(1000)).unwrap();
        };
        /// Why it is refused, and what makes the case after the user's file is in place.
        type Case = (&'static str, fn(&Path));
        let cases: [Case; 3] = [
            ("a directory users may add entries to", |dir| {
                std::os::unix::fs::symlink("/tmp/sudoers", dir.join("etc/sudoers")).unwrap();
            }),
            ("not by root", |_| {}),
            ("2 hard links", |dir| {
                fs::create_dir(dir.join("home")).unwrap();
                fs::hard_link(dir.join("etc/sudoers"), dir.join("home/bobs")).unwrap();
            }),
        ];
        for (why, make) in cases {
            let (dir, root) = image();
            fs::create_dir(dir.path().join("tmp")).unwrap();
            let sticky = fs::Permissions::from_mode(0o1777);
            fs::set_permissions(dir.path().join("tmp"), sticky).unwrap();
            let planted = if why.contains("users may add") {
                "tmp/sudoers"
            } else {
                "etc/sudoers"
            };
            users(dir.path(), planted);
            make(dir.path());
            if why.contains("hard links") {
                std::os::unix::fs::chown(dir.path().join(planted), Some(0), Some(0)).unwrap();
            }
            let err = ensure_included(&root, Path::new(DIR)).unwrap_err();
            let err = crate::log::chain(&err);
            assert!(err.contains(why), "{why}: {err}");
            assert_eq!(fs::read_to_string(dir.path().join(planted)).unwrap(), BOBS);
            let names: Vec<_> = fs::read_dir(dir.path().join("etc")).unwrap().collect();
            assert_eq!(names.len(), 2, "{why}: nothing written");
        }
    }

    /// The vendor's sudoers is read only as root's: never a file a user may have put there
    /// (in a directory users may add entries to, or where root's link leads into one, as
    /// `/tmp`, where a user planted their rules); refused, nothing written.
    #[test]
    fn a_vendor_sudoers_a_user_may_have_made_is_refused() {
        if !crate::testutil::require_root() {
            return;
        }
        const BOBS: &str = "bob ALL=(ALL) NOPASSWD: ALL\n";
        for (open, why) in [
            ("tmp", "a directory users may add entries to"),
            ("usr/etc", "is in a directory users may add entries to"),
        ] {
            let (dir, root) = image();
            fs::create_dir_all(dir.path().join("usr/etc")).unwrap();
            fs::create_dir_all(dir.path().join(open)).unwrap();
            let sticky = fs::Permissions::from_mode(0o1777);
            fs::set_permissions(dir.path().join(open), sticky).unwrap();
            let planted = dir.path().join(open).join("sudoers");
            fs::write(&planted, BOBS).unwrap();
            std::os::unix::fs::chown(&planted, Some(1000), Some(1000)).unwrap();
            if open == "tmp" {
                let link = dir.path().join("usr/etc/sudoers");
                std::os::unix::fs::symlink("../../tmp/sudoers", link).unwrap();
            }
            let err = ensure_included(&root, Path::new(DIR)).unwrap_err();
            let err = crate::log::chain(&err);
            let vendor = dir.path().join("usr/etc/sudoers");
            assert!(err.contains(&vendor.display().to_string()), "{err}");
            assert!(err.contains(why), "{why}: {err}");
            assert!(!dir.path().join("etc/sudoers").exists(), "{open}");
        }
    }

    /// A missing sudoers is made, mode 0440, from the vendor's when there is one.
    #[test]
    fn a_missing_sudoers_is_made_from_the_vendor_s_or_the_line_alone() {
        let (dir, root) = image();
        let path = dir.path().join("etc/sudoers");
        assert!(ensure_included(&root, Path::new(DIR)).unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("\n{ADDED}\n#includedir {DIR}\n")
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, SUDOERS_MODE);
        assert_eq!(SUDOERS_MODE, 0o440);

        let (dir, root) = image();
        fs::create_dir_all(dir.path().join("usr/etc")).unwrap();
        fs::write(dir.path().join("usr/etc/sudoers"), "root ALL=(ALL) ALL\n").unwrap();
        assert!(ensure_included(&root, Path::new(DIR)).unwrap());
        assert_eq!(
            fs::read_to_string(dir.path().join("etc/sudoers")).unwrap(),
            format!("root ALL=(ALL) ALL\n\n{ADDED}\n#includedir {DIR}\n")
        );
    }
}
