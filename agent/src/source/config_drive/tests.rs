//! Config drive tests on real filesystem images (mkfs.vfat, xorriso) and a loop mount.

use std::fs;
use std::process::Command;

use super::*;
use crate::testutil::{require_tool, run};

fn tree(dir: &Path) {
    let latest = dir.join("openstack/latest");
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

fn vfat_image(dir: &Path, label: &str, fat32: bool) -> PathBuf {
    let img = dir.join(format!("{label}-{fat32}.img"));
    let mut mkfs = Command::new("mkfs.vfat");
    if fat32 {
        mkfs.args(["-F", "32"]);
    }
    run(mkfs
        .args(["-n", label, "-C"])
        .arg(&img)
        .arg(if fat32 { "40000" } else { "2048" }));
    img
}

fn head(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(PROBE_BYTES as u64)
        .read_to_end(&mut data)
        .unwrap();
    data
}

#[test]
fn probes_vfat_labels() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for fat32 in [false, true] {
        let (fs, label) = probe_label(&head(&vfat_image(dir.path(), "config-2", fat32))).unwrap();
        assert_eq!(fs, FsType::Vfat);
        assert!(label.eq_ignore_ascii_case(CONFIG_DRIVE_LABEL), "{label}");
    }
}

#[test]
fn probes_iso9660_labels() {
    if !require_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    tree(&content);
    let img = dir.path().join("cd.iso");
    run(Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "config-2", "-o",
        ])
        .arg(&img)
        .arg(&content));
    assert_eq!(
        probe_label(&head(&img)),
        Some((FsType::Iso9660, "config-2".to_owned()))
    );
}

#[test]
fn other_data_has_no_label() {
    assert_eq!(probe_label(&[0u8; PROBE_BYTES]), None);
    assert_eq!(probe_label(b"short"), None);
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
        dir.path().join("openstack/latest/vendor_data.json"),
        vec![b' '; MAX_METADATA_BYTES as usize + 1],
    )
    .unwrap();
    assert!(matches!(
        drive.vendor_data(),
        Err(SourceError::TooLarge { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ConfigDrive::from_dir(empty.path()).meta_data(),
        Err(SourceError::MissingMetaData(_))
    ));
}

// Mounting a real `config-2` device needs a kernel with iso9660 or vfat, which the test hosts
// lack (see /proc/filesystems); the QEMU scenario `router/config-drive` (harness) boots a guest
// with a config drive and checks the hostname, key and admin_pass it carries.

/// Detection reads labels from `<root>/dev/<name>` for every `<root>/sys/class/block/<name>`:
/// regular image files play the devices, so no loop device is needed.
#[test]
fn finds_the_labelled_device_among_others_and_probes_a_bounded_number() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    fs::create_dir_all(root.host_path("/dev")).unwrap();
    let add = |name: &str, image: Option<&Path>| {
        fs::create_dir_all(root.host_path(SYS_CLASS_BLOCK).join(name)).unwrap();
        match image {
            Some(image) => fs::copy(image, root.host_path("/dev").join(name))
                .map(|_| ())
                .unwrap(),
            None => fs::write(root.host_path("/dev").join(name), [0u8; 512]).unwrap(),
        }
    };
    let other = vfat_image(dir.path(), "SCRATCH", false);
    let drive = vfat_image(dir.path(), "config-2", false);
    add("vda", None);
    add("vdb", Some(&other));
    assert_eq!(find(&root), None);
    add("vdc", Some(&drive));
    assert_eq!(
        find(&root),
        Some((root.host_path("/dev/vdc"), FsType::Vfat))
    );

    // Past the bound, a config drive is not looked at.
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    fs::create_dir_all(root.host_path("/dev")).unwrap();
    for i in 0..MAX_PROBED_DEVICES {
        fs::create_dir_all(root.host_path(SYS_CLASS_BLOCK).join(format!("a{i:04}"))).unwrap();
    }
    fs::create_dir_all(root.host_path(SYS_CLASS_BLOCK).join("zz")).unwrap();
    fs::copy(&drive, root.host_path("/dev/zz")).unwrap();
    assert_eq!(find(&root), None);
}
