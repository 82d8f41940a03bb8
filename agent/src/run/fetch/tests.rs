//! What the fetch phase takes for a definite refusal of a drive's document.

use std::io;
use std::path::Path;

use super::definite_refusal;
use crate::fsutil::PathError;
use crate::source::config_drive::ConfigDriveError;
use crate::source::drive::{self, DriveError, Mount};

/// A config drive's document refused for what the drive holds (a loop of symlinks, a directory
/// in the file's place) is refused at every boot: a definite refusal, the instance taken up
/// without it, not held back for ever. A read error of the medium may pass, and so may a
/// symlink of another user: an ISO something mounted without `uid=0` before the agent keeps
/// it theirs in the agent's mount too, which the next boot may not.
#[test]
fn a_drive_document_refused_for_what_the_drive_holds_is_definite() {
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path();
    std::os::unix::fs::symlink("b", drive.join("a")).unwrap();
    std::os::unix::fs::symlink("a", drive.join("b")).unwrap();
    std::fs::create_dir(drive.join("user_data")).unwrap();
    for name in ["a", "user_data"] {
        let err = drive::read(drive, Path::new(name), 100, Mount::Own).expect_err(name);
        let err = ConfigDriveError::from(err);
        let shown = crate::log::chain(&err);
        assert!(definite_refusal(&err), "{name}: {shown}");
    }
    let medium = PathError::fail("read", "/run/metaboot/config-drive/x");
    let err = ConfigDriveError::from(DriveError::Io(medium(io::Error::from_raw_os_error(
        libc::EIO,
    ))));
    assert!(!definite_refusal(&err));
}

/// A user's symlink on a drive is refused, but not for good: the instance is held back.
#[test]
fn a_users_symlink_on_a_drive_is_no_definite_refusal() {
    if !crate::testutil::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path();
    std::fs::write(drive.join("doc"), "#cloud-config\n").unwrap();
    std::os::unix::fs::symlink("doc", drive.join("theirs")).unwrap();
    std::os::unix::fs::lchown(drive.join("theirs"), Some(1000), Some(1000)).unwrap();
    let err = drive::read(drive, Path::new("theirs"), 100, Mount::Own).unwrap_err();
    let err = ConfigDriveError::from(err);
    let shown = crate::log::chain(&err);
    assert!(shown.contains("owned by uid 1000"), "{shown}");
    assert!(!definite_refusal(&err), "{shown}");
}
