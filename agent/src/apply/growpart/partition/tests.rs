use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

/// A sysfs tree as the kernel shows a virtio disk `vda` (252:0, 3 GiB, 512-byte blocks) with
/// partition `vda1` (252:1) from 4 MiB, 2 GiB long, and a device-mapper volume (253:0).
fn sysfs(root: &Path) -> std::path::PathBuf {
    let disk = root.join("devices/pci0000:00/virtio3/block/vda");
    let part = disk.join("vda1");
    let dm = root.join("devices/virtual/block/dm-0");
    for dir in [&part, &disk.join("queue"), &dm] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(disk.join("dev"), "252:0\n").unwrap();
    fs::write(disk.join("size"), format!("{}\n", 3u64 << 21)).unwrap();
    fs::write(disk.join("queue/logical_block_size"), "512\n").unwrap();
    fs::write(part.join("dev"), "252:1\n").unwrap();
    fs::write(part.join("partition"), "1\n").unwrap();
    fs::write(part.join("start"), "8192\n").unwrap();
    fs::write(part.join("size"), format!("{}\n", 2u64 << 21)).unwrap();
    fs::write(dm.join("size"), "2048\n").unwrap();
    let block = root.join("dev/block");
    fs::create_dir_all(&block).unwrap();
    symlink(&part, block.join("252:1")).unwrap();
    symlink(&disk, block.join("252:0")).unwrap();
    symlink(&dm, block.join("253:0")).unwrap();
    block
}

#[test]
fn a_partition_is_found_with_its_disk() {
    let dir = tempfile::tempdir().unwrap();
    let block = sysfs(dir.path());
    assert_eq!(
        locate(&block, (252, 1)).unwrap(),
        Located::Partition(Partition {
            name: "vda1".into(),
            number: 1,
            start: 4 << 20,
            bytes: 2 << 30,
            disk: Disk {
                name: "vda".into(),
                dev: (252, 0),
                bytes: 3 << 30,
                lba_bytes: 512,
            },
        })
    );
    assert_eq!(device_bytes(&block, (252, 1)).unwrap(), 2 << 30);
}

#[test]
fn what_is_not_a_partition_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let block = sysfs(dir.path());
    assert_eq!(
        locate(&block, (252, 0)).unwrap(),
        Located::Not("vda is a whole disk or a mapped device, not a partition".into())
    );
    assert_eq!(
        locate(&block, (253, 0)).unwrap(),
        Located::Not("dm-0 is a whole disk or a mapped device, not a partition".into())
    );
    assert_eq!(
        locate(&block, (0, 25)).unwrap(),
        Located::Not("device 0:25 is not a block device (a virtual or network file system)".into())
    );
}

#[test]
fn a_garbled_sysfs_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let block = sysfs(dir.path());
    let start = dir
        .path()
        .join("devices/pci0000:00/virtio3/block/vda/vda1/start");
    fs::write(&start, "lots\n").unwrap();
    let err = locate(&block, (252, 1)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("vda/vda1/start holds \"lots\", not a number"),
        "{err}"
    );
}

#[test]
fn a_disk_node_must_be_that_disk() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("vda"), "not a disk").unwrap();
    let disk = Disk {
        name: "vda".into(),
        dev: (252, 0),
        bytes: 3 << 30,
        lba_bytes: 512,
    };
    let err = open_disk(dir.path(), &disk).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}/vda is not the disk 252:0", dir.path().display())
    );
    let err = open_disk(&dir.path().join("none"), &disk).unwrap_err();
    assert!(err.to_string().starts_with("cannot open"), "{err}");
}

#[test]
fn a_file_is_on_the_device_of_its_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let meta = fs::metadata(dir.path()).unwrap();
    let (major, minor) = device_of(dir.path(), Path::new(MOUNTINFO)).unwrap();
    assert_eq!(
        libc::makedev(major as u32, minor as u32),
        std::os::unix::fs::MetadataExt::dev(&meta)
    );
}

#[test]
fn a_btrfs_mount_is_found_by_its_source() {
    // Subvolumes have device numbers of their own, so the mount point decides.
    let mountinfo = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
35 1 0:33 / / rw,relatime shared:1 - btrfs /dev/vda2 rw,space_cache=v2
36 35 0:34 /home /home rw - btrfs /dev/my\\040disk rw
37 1 0:35 / /run rw - tmpfs tmpfs rw
38 35 0:36 / /srv rw - btrfs /dev/vdb1 rw
39 35 0:37 / /srv rw - btrfs /dev/vdc1 rw
";
    let source = |p: &str| mount_source(mountinfo, Path::new(p));
    assert_eq!(source("/").as_deref(), Some("/dev/vda2"));
    assert_eq!(source("/etc/hostname").as_deref(), Some("/dev/vda2"));
    assert_eq!(source("/home/debian").as_deref(), Some("/dev/my disk"));
    assert_eq!(source("/homework").as_deref(), Some("/dev/vda2"));
    // The last mount on a mount point hides the earlier ones.
    assert_eq!(source("/srv").as_deref(), Some("/dev/vdc1"));
    // A virtual file system's source is no device.
    assert_eq!(source("/run/lock"), None);
}
