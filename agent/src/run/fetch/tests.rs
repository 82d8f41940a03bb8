//! What the fetch phase takes for a definite refusal of a drive's document.

use std::io;
use std::path::Path;

use super::definite_refusal;
use crate::fsutil::PathError;
use crate::source::config_drive::ConfigDriveError;
use crate::source::drive::{self, DriveError};

/// A config drive's document refused for what the drive holds (a loop of symlinks, a directory
/// in the file's place, a symlink of another user on an ISO mounted elsewhere) is refused at
/// every boot: a definite refusal, the instance taken up without it, not held back for ever.
/// A read error of the medium may pass.
#[test]
fn a_drive_document_refused_for_what_the_drive_holds_is_definite() {
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path();
    std::os::unix::fs::symlink("b", drive.join("a")).unwrap();
    std::os::unix::fs::symlink("a", drive.join("b")).unwrap();
    std::fs::create_dir(drive.join("user_data")).unwrap();
    let mut refused = vec!["a", "user_data"];
    if nix::unistd::geteuid().is_root() {
        std::fs::write(drive.join("doc"), "#cloud-config\n").unwrap();
        std::os::unix::fs::symlink("doc", drive.join("theirs")).unwrap();
        std::os::unix::fs::lchown(drive.join("theirs"), Some(1000), Some(1000)).unwrap();
        refused.push("theirs");
    }
    for name in refused {
        let err = drive::read(drive, Path::new(name), 100).expect_err(name);
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
