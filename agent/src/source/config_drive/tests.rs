//! Config drive tests on real filesystem images (mkfs.vfat, xorriso) and a loop mount.

use std::fs;
use std::process::Command;

use super::*;
use crate::testutil::{require_root, require_tool, run};

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
    File::open(path)
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

/// Finds a `config-2` loop device through a root whose sys/dev entries point at it, mounts it
/// read-only, reads it and unmounts it on drop.
#[test]
fn finds_and_mounts_a_labelled_device() {
    if !require_root()
        || !require_tool("mkfs.vfat")
        || !require_tool("mcopy")
        || !require_tool("losetup")
    {
        return;
    }
    // A kernel capability, not something CI can install: containers often run kernels built
    // without FAT. The QEMU end-to-end suite covers the mount in a real guest kernel.
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.split_whitespace().any(|fs| fs == "vfat") {
        eprintln!("skipping: this kernel has no vfat support (see /proc/filesystems)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = vfat_image(dir.path(), "config-2", false);
    let content = dir.path().join("content");
    tree(&content);
    run(Command::new("mcopy")
        .args(["-s", "-i"])
        .arg(&img)
        .arg(content.join("openstack"))
        .arg("::/"));
    let device = run(Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&img));
    let device = PathBuf::from(device.trim());
    let name = device.file_name().unwrap().to_owned();
    let root_dir = dir.path().join("root");
    let root = Root::new(&root_dir);
    fs::create_dir_all(root.join(SYS_CLASS_BLOCK).join(&name)).unwrap();
    fs::create_dir_all(root.join("/dev")).unwrap();
    std::os::unix::fs::symlink(&device, root.join("/dev").join(&name)).unwrap();
    let found = find(&root);
    let result = std::panic::catch_unwind(|| {
        let (dev, fs_type) = found.expect("config-2 device found");
        assert_eq!(fs_type, FsType::Vfat);
        let mut drive = ConfigDrive::mount(&root, &dev, fs_type).unwrap();
        let meta = String::from_utf8(drive.meta_data().unwrap()).unwrap();
        assert!(meta.contains("cd-1"));
        drop(drive);
        assert!(
            !root.join(MOUNT_POINT).join("openstack").exists(),
            "unmounted"
        );
    });
    let _ = Command::new("losetup").arg("-d").arg(&device).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Detection reads labels from `<root>/dev/<name>` for every `<root>/sys/class/block/<name>`:
/// regular image files play the devices, so no loop device is needed.
#[test]
fn finds_the_labelled_device_among_others_and_probes_a_bounded_number() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    fs::create_dir_all(root.join("/dev")).unwrap();
    let add = |name: &str, image: Option<&Path>| {
        fs::create_dir_all(root.join(SYS_CLASS_BLOCK).join(name)).unwrap();
        match image {
            Some(image) => fs::copy(image, root.join("/dev").join(name))
                .map(|_| ())
                .unwrap(),
            None => fs::write(root.join("/dev").join(name), [0u8; 512]).unwrap(),
        }
    };
    let other = vfat_image(dir.path(), "SCRATCH", false);
    let drive = vfat_image(dir.path(), "config-2", false);
    add("vda", None);
    add("vdb", Some(&other));
    assert_eq!(find(&root), None);
    add("vdc", Some(&drive));
    assert_eq!(find(&root), Some((root.join("/dev/vdc"), FsType::Vfat)));

    // Past the bound, a config drive is not looked at.
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    fs::create_dir_all(root.join("/dev")).unwrap();
    for i in 0..MAX_PROBED_DEVICES {
        fs::create_dir_all(root.join(SYS_CLASS_BLOCK).join(format!("a{i:04}"))).unwrap();
    }
    fs::create_dir_all(root.join(SYS_CLASS_BLOCK).join("zz")).unwrap();
    fs::copy(&drive, root.join("/dev/zz")).unwrap();
    assert_eq!(find(&root), None);
}
