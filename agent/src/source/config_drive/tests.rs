//! Config drive tests: nova's layout read from a directory, and the `config-2` device found
//! among others on real filesystem images (see `drive/tests.rs`).

use std::fs;

use super::*;
use crate::source::drive::tests::{add_device, iso_image, vfat_image};
use crate::source::http::MAX_METADATA_BYTES;
use crate::testutil::require_tool;

fn tree(dir: &Path) {
    let latest = dir.join(LATEST);
    fs::create_dir_all(&latest).unwrap();
    fs::write(
        latest.join("meta_data.json"),
        r#"{"uuid": "cd-1", "admin_pass": "s3cret"}"#,
    )
    .unwrap();
    fs::write(
        latest.join("user_data"),
        "#cloud-config\nhostname: fromcd\n",
    )
    .unwrap();
}

#[test]
fn reads_the_openstack_latest_layout() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let mut drive = ConfigDrive::from_dir(dir.path());
    let meta: serde_json::Value = serde_json::from_slice(&drive.meta_data().unwrap()).unwrap();
    assert_eq!(meta["admin_pass"], "s3cret");
    assert!(drive.user_data().unwrap().is_some());
    assert!(
        drive.vendor_data().unwrap().is_none(),
        "absent is None, not an error"
    );
    fs::write(
        dir.path().join(LATEST).join("vendor_data.json"),
        vec![b' '; MAX_METADATA_BYTES as usize + 1],
    )
    .unwrap();
    let err = drive.vendor_data().unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(ConfigDriveError::Drive(DriveError::TooLarge { .. }))
        ),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = ConfigDrive::from_dir(empty.path()).meta_data().unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(ConfigDriveError::MissingMetaData(_))
        ),
        "{err}"
    );
}

/// A drive without `openstack/latest/meta_data.json` cannot be used: `detect` refuses it, so
/// the chooser warns and tries the next datasource.
#[test]
fn a_drive_without_meta_data_is_refused_for_the_next_datasource() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(LATEST)).unwrap();
    fs::write(dir.path().join(LATEST).join("user_data"), "#!/bin/sh\n").unwrap();
    let err = ConfigDrive::from_dir(dir.path()).checked().unwrap_err();
    assert!(
        matches!(&err, ConfigDriveError::MissingMetaData(at) if *at == dir.path().join(LATEST)),
        "{err}"
    );
    tree(dir.path());
    assert!(ConfigDrive::from_dir(dir.path()).checked().is_ok());
}

#[test]
fn finds_the_config_2_device_in_either_case_and_on_either_filesystem() {
    if !require_tool("mkfs.vfat") || !require_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    add_device(&root, "vda", None);
    add_device(&root, "vdb", Some(&vfat_image(dir.path(), "cidata", false)));
    assert_eq!(find(&root), []);
    add_device(
        &root,
        "vdc",
        Some(&vfat_image(dir.path(), "CONFIG-2", false)),
    );
    assert_eq!(find(&root), [(root.host_path("/dev/vdc"), FsType::Vfat)]);
    // A second one: both are candidates, each tried in turn.
    add_device(
        &root,
        "vdd",
        Some(&vfat_image(dir.path(), "config-2", true)),
    );
    assert_eq!(
        find(&root),
        [
            (root.host_path("/dev/vdc"), FsType::Vfat),
            (root.host_path("/dev/vdd"), FsType::Vfat)
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let content = dir.path().join("content");
    tree(&content);
    add_device(
        &root,
        "sr0",
        Some(&iso_image(dir.path(), "config-2", &content)),
    );
    assert_eq!(find(&root), [(root.host_path("/dev/sr0"), FsType::Iso9660)]);
}
