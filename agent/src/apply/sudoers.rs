//! The image's `/etc/sudoers` made to read the directory metaboot writes its sudo rules into:
//! sudo reads a file of `/etc/sudoers.d` only when sudoers has an `#includedir` (or
//! `@includedir`) line naming it, which a minimal or hand-made sudoers may lack. As cloud-init's
//! `ensure_sudo_dir`, the line is appended when none names the directory (through a symlink
//! only root could have made, the link kept), and a missing sudoers is made from the vendor's
//! (`/usr/etc/sudoers`) or from that line alone (docs/protocol.md §5.4).

use std::path::Path;

use crate::fsutil::{PathError, WriteOptions};
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

/// Makes [`SUDOERS`] include `dir`, replacing it atomically with its bytes kept and the line
/// appended; true when it was changed.
pub fn ensure_included(root: &Root, dir: &Path) -> Result<bool, PathError> {
    let read = |path: &str| {
        root.read_optional(path)
            .map_err(PathError::fail("read", root.host_path(path)))
    };
    let mut text = match read(SUDOERS)? {
        Some(text) => text,
        None => read(VENDOR_SUDOERS)?.unwrap_or_default(),
    };
    if includes(&text, dir) {
        return Ok(false);
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(format!("\n{ADDED}\n#includedir {}\n", dir.display()).as_bytes());
    // Through a symlink of root's, as cloud-init's append: the link stays.
    let shown = root.host_path(SUDOERS);
    let (dir, name, _) = root
        .parent_created(Path::new(SUDOERS))
        .map_err(PathError::fail("create directory", &shown))?;
    dir.write_atomic_as(&name, &shown, &text, &WriteOptions::keep_or(SUDOERS_MODE))?;
    Ok(true)
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
