//! Config drive tests: nova's layout read from a directory, and the `config-2` device found
//! among others on real filesystem images (see `drive/tests.rs`).

use std::fs;

use super::*;
use crate::source::drive::SYS_CLASS_BLOCK;
use crate::source::drive::tests::{LoopMount, add_device, iso_image, vfat_image};
use crate::source::http::MAX_METADATA_BYTES;
use crate::testutil::require_tool;

/// Where nova's newest documents are, inside a drive.
const LATEST: &str = "openstack/latest";

/// A drive in `dir` whose `openstack/<version>/meta_data.json` names its version, for each of
/// `versions`.
fn versions_tree(dir: &Path, versions: &[&str]) {
    for version in versions {
        let at = dir.join(OPENSTACK).join(version);
        fs::create_dir_all(&at).unwrap();
        fs::write(
            at.join("meta_data.json"),
            format!(r#"{{"uuid": "at-{version}"}}"#),
        )
        .unwrap();
        fs::write(at.join("user_data"), format!("#!/bin/sh\necho {version}\n")).unwrap();
    }
}

/// The uuid of the meta-data `detect` would read from the drive in `dir`, and its user data.
fn read_as_detected(dir: &Path) -> (String, String) {
    let mut drive = ConfigDrive::from_dir(dir).checked().unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&drive.meta_data().unwrap()).unwrap();
    let user = String::from_utf8(drive.user_data().unwrap().unwrap()).unwrap();
    (meta["uuid"].as_str().unwrap().to_owned(), user)
}

/// A drive made by a tool that writes only a dated version (`openstack/2015-10-15/`, no
/// `latest`) is read there, as cloud-init's `ConfigDriveReader` reads it.
#[test]
fn a_drive_with_only_a_dated_version_is_read_there() {
    let dir = tempfile::tempdir().unwrap();
    versions_tree(dir.path(), &["2015-10-15"]);
    assert_eq!(
        read_as_detected(dir.path()),
        (
            "at-2015-10-15".to_owned(),
            "#!/bin/sh\necho 2015-10-15\n".to_owned()
        )
    );
}

/// A drive with `latest` and dated versions (nova writes every version it knows) is read at the
/// newest dated one known (cloud-init's `_find_working_version`: `2018-08-27` here, a date
/// neither knows left aside); with no known date, at `latest`; a drive whose picked version
/// lacks meta_data.json is refused, saying where it was looked for.
#[test]
fn a_drive_with_latest_and_dated_versions_is_read_where_cloud_init_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    versions_tree(
        dir.path(),
        &[
            "2012-08-10",
            "2015-10-15",
            "2018-08-27",
            "2099-01-01",
            "latest",
        ],
    );
    assert_eq!(read_as_detected(dir.path()).0, "at-2018-08-27");

    let dir = tempfile::tempdir().unwrap();
    versions_tree(dir.path(), &["2099-01-01", "latest"]);
    assert_eq!(read_as_detected(dir.path()).0, "at-latest");

    let dir = tempfile::tempdir().unwrap();
    versions_tree(dir.path(), &["latest"]);
    fs::create_dir_all(dir.path().join("openstack/2018-08-27")).unwrap();
    let err = ConfigDrive::from_dir(dir.path()).checked().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Config drive: no meta_data.json in {}",
            dir.path().join("openstack/2018-08-27").display()
        )
    );
}

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

/// A drive whose `meta_data.json` is refused (here a loop of symlinks; a user's symlink on an
/// ISO the system mounted already) says why, not that the file is missing.
#[test]
fn a_drive_whose_meta_data_is_refused_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let latest = dir.path().join(LATEST);
    fs::create_dir_all(&latest).unwrap();
    std::os::unix::fs::symlink("meta_data.json", latest.join("meta_data.json")).unwrap();
    let err = ConfigDrive::from_dir(dir.path()).checked().unwrap_err();
    let shown = crate::log::chain(&err);
    assert!(
        matches!(&err, ConfigDriveError::Drive(_)) && shown.contains("symlinks"),
        "{shown}"
    );
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
    // A second one: both are candidates, each tried in turn, the last attached first (as
    // cloud-init's `find_candidate_devs` sorts them); a labelled partition after the disks.
    add_device(
        &root,
        "vdd",
        Some(&vfat_image(dir.path(), "config-2", true)),
    );
    add_device(
        &root,
        "vde1",
        Some(&vfat_image(dir.path(), "config-2", false)),
    );
    fs::write(
        root.host_path(SYS_CLASS_BLOCK).join("vde1/partition"),
        "1\n",
    )
    .unwrap();
    assert_eq!(
        find(&root),
        [
            (root.host_path("/dev/vdd"), FsType::Vfat),
            (root.host_path("/dev/vdc"), FsType::Vfat),
            (root.host_path("/dev/vde1"), FsType::Vfat),
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

/// With several `config-2` devices, the one whose `uuid` is the machine's DMI system UUID (nova
/// sets it to the instance's) is used whatever its place, compared case-insensitively; without
/// the machine's UUID, the first that opens (as cloud-init); when none is the machine's, the
/// first one, opened again (the next one when it no longer opens). One that fails is passed
/// over; when all fail, the last error.
#[test]
fn the_drive_holding_the_machines_uuid_is_preferred() {
    let candidates: Vec<(PathBuf, FsType)> = ["vdd", "vdc", "vdb"]
        .iter()
        .map(|name| (PathBuf::from(format!("/dev/{name}")), FsType::Vfat))
        .collect();
    // What each device holds: its uuid, or none (it does not open).
    let held = |device: &Path| match device.to_str().unwrap() {
        "/dev/vdd" => None,
        "/dev/vdc" => Some("other-instance"),
        _ => Some("ABCD-1234"),
    };
    let run = |machine: Option<&str>| {
        let mut opened = Vec::new();
        let chosen = pick(
            &candidates,
            machine,
            |device, _| {
                opened.push(device.display().to_string());
                held(device)
                    .map(|uuid| (device.to_path_buf(), uuid.to_owned()))
                    .ok_or_else(|| ConfigDriveError::MissingMetaData(device.to_path_buf()))
            },
            |drive: &mut (PathBuf, String)| Some(drive.1.clone()),
        )
        .unwrap()
        .map(|(device, _)| device.display().to_string());
        (chosen, opened)
    };
    assert_eq!(
        run(Some("abcd-1234")),
        (
            Some("/dev/vdb".to_owned()),
            vec!["/dev/vdd".into(), "/dev/vdc".into(), "/dev/vdb".into()]
        )
    );
    assert_eq!(
        run(None),
        (
            Some("/dev/vdc".to_owned()),
            vec!["/dev/vdd".into(), "/dev/vdc".into()]
        )
    );
    assert_eq!(
        run(Some("nobody")),
        (
            Some("/dev/vdc".to_owned()),
            vec![
                "/dev/vdd".into(),
                "/dev/vdc".into(),
                "/dev/vdb".into(),
                "/dev/vdc".into()
            ]
        )
    );
    // The first one that opened no longer does when opened again: the next one is used.
    let mut opened = Vec::new();
    let chosen = pick(
        &candidates,
        Some("nobody"),
        |device, _| {
            opened.push(device.display().to_string());
            let again = opened.iter().filter(|d| Path::new(d) == device).count() > 1;
            match held(device) {
                Some(uuid) if !(again && device == Path::new("/dev/vdc")) => {
                    Ok((device.to_path_buf(), uuid.to_owned()))
                }
                _ => Err(ConfigDriveError::MissingMetaData(device.to_path_buf())),
            }
        },
        |drive: &mut (PathBuf, String)| Some(drive.1.clone()),
    )
    .unwrap()
    .map(|(device, _)| device.display().to_string());
    assert_eq!(chosen.as_deref(), Some("/dev/vdb"), "{opened:?}");
    let failing = pick(
        &candidates,
        Some("abcd-1234"),
        |device, _| Err::<(), _>(ConfigDriveError::MissingMetaData(device.to_path_buf())),
        |_| None,
    );
    assert!(
        matches!(&failing, Err(ConfigDriveError::MissingMetaData(at)) if at == Path::new("/dev/vdb")),
        "{failing:?}"
    );
}

/// The machine's UUID is read lower-case and trimmed; an empty or missing one is none.
#[test]
fn the_machines_uuid_is_read_from_dmi() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    assert_eq!(openstack::dmi_product_uuid(&root), None);
    let at = root.host_path(openstack::DMI_PRODUCT_UUID);
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    fs::write(&at, "\n").unwrap();
    assert_eq!(openstack::dmi_product_uuid(&root), None);
    fs::write(&at, "ABCD-1234\n").unwrap();
    assert_eq!(
        openstack::dmi_product_uuid(&root).as_deref(),
        Some("abcd-1234")
    );
}

/// A config drive the system mounted read-write already is read as such a mount is: its user
/// data, which a user may write there (`umask=000`), is refused, and not for good (the
/// instance is held back: that mount may change by the next boot).
#[test]
fn a_config_drive_mounted_elsewhere_reads_only_what_root_alone_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let Some(mut device) = LoopMount::attach(dir.path()) else {
        return;
    };
    let elsewhere = dir.path().join("mnt");
    device.mount_device(&elsewhere);
    versions_tree(&elsewhere, &["latest"]);
    for (inside, mode) in [
        ("openstack", 0o755),
        (LATEST, 0o755),
        ("openstack/latest/meta_data.json", 0o644),
        ("openstack/latest/user_data", 0o666),
    ] {
        fs::set_permissions(elsewhere.join(inside), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir_all(dir.path().join("root")).unwrap();
    let root = Root::open(dir.path().join("root")).unwrap();
    let mounted = Mounted::mount(&root, &device.device, FsType::Ext, NAME).unwrap();
    let mut drive = ConfigDrive::from_dir(mounted.dir());
    drive.mounted = Some(mounted);
    let mut drive = drive.checked().unwrap();
    assert!(drive.meta_data().is_ok());
    let err = drive.user_data().unwrap_err();
    let shown = crate::log::chain(err.as_ref());
    assert!(shown.contains("may be written by a user"), "{shown}");
    let refused = err.downcast_ref::<ConfigDriveError>();
    assert!(
        matches!(refused, Some(ConfigDriveError::Drive(drive)) if !drive.is_definite()),
        "{shown}"
    );
}
