//! Drive tests on real filesystem images (mkfs.vfat, xorriso): labels are probed from the bytes
//! the tools write; regular image files play the block devices, so no loop device is needed.
//! (Mounting needs a kernel with iso9660 or vfat, which the test hosts lack, see
//! /proc/filesystems; the QEMU scenarios `router/config-drive` and `router/nocloud` mount real
//! drives.)

use std::fs;
use std::process::Command;

use super::*;
use crate::testutil::{require_tool, run};

/// A vfat image labelled `label` (FAT12/16, or FAT32).
pub fn vfat_image(dir: &Path, label: &str, fat32: bool) -> PathBuf {
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

/// An iso9660 image labelled `label` holding `content`, made as `genisoimage -J -R` (what
/// nova and cloud-localds run) would make it.
pub fn iso_image(dir: &Path, label: &str, content: &Path) -> PathBuf {
    let img = dir.join(format!("{label}.iso"));
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V", label, "-o"])
        .arg(&img)
        .arg(content));
    img
}

/// The first [`PROBE_BYTES`] of a file.
pub fn head(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    fs::File::open(path)
        .unwrap()
        .take(PROBE_BYTES as u64)
        .read_to_end(&mut data)
        .unwrap();
    data
}

/// Plays a block device `name` under `root`: `/sys/class/block/<name>` and `/dev/<name>` (a copy
/// of `image`, or 512 zero bytes).
pub fn add_device(root: &Root, name: &str, image: Option<&Path>) {
    fs::create_dir_all(root.host_path(SYS_CLASS_BLOCK).join(name)).unwrap();
    fs::create_dir_all(root.host_path("/dev")).unwrap();
    let dev = root.host_path("/dev").join(name);
    match image {
        Some(image) => fs::copy(image, dev).map(|_| ()).unwrap(),
        None => fs::write(dev, [0u8; 512]).unwrap(),
    }
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
        assert!(label.eq_ignore_ascii_case("config-2"), "{label}");
    }
}

#[test]
fn probes_iso9660_labels() {
    if !require_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    fs::create_dir_all(&content).unwrap();
    fs::write(content.join("meta-data"), "instance-id: x\n").unwrap();
    let img = iso_image(dir.path(), "cidata", &content);
    assert_eq!(
        probe_label(&head(&img)),
        Some((FsType::Iso9660, "cidata".to_owned()))
    );
}

#[test]
fn probes_ext4_xfs_and_swap_labels() {
    let dir = tempfile::tempdir().unwrap();
    for (tool, args, size, expect) in [
        (
            "mkfs.ext4",
            &["-q", "-F", "-L", "ephemeral0"][..],
            8u64 << 20,
            (FsType::Ext, "ephemeral0"),
        ),
        (
            "mkfs.xfs",
            &["-q", "-f", "-L", "scratch"][..],
            300 << 20,
            (FsType::Xfs, "scratch"),
        ),
        (
            "mkswap",
            &["-L", "swappy"][..],
            1 << 20,
            (FsType::Swap, "swappy"),
        ),
    ] {
        if !crate::testutil::require_tool(tool) {
            continue;
        }
        let image = dir.path().join(tool);
        fs::File::create(&image).unwrap().set_len(size).unwrap();
        crate::testutil::run(std::process::Command::new(tool).args(args).arg(&image));
        let probed = probe_label(&head(&image));
        assert_eq!(probed, Some((expect.0, expect.1.to_owned())), "{tool}");
    }
}

/// An ISO made by a user keeps that user's uid on its files (`xorriso -R`, as `genisoimage -R`):
/// it is mounted with every file root's, so that its symlinks are followed (inside the drive)
/// as cloud-init follows them. vfat has no symlinks and is mounted without options.
#[test]
fn an_iso9660_drive_is_mounted_with_every_file_roots() {
    assert_eq!(ISO9660_OWNERS, "uid=0,gid=0");
    assert_eq!(FsType::Iso9660.mount_data(), Some(ISO9660_OWNERS));
    assert_eq!(FsType::Vfat.mount_data(), None);
    if !require_tool("xorriso") || !crate::testutil::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    fs::create_dir_all(content.join("openstack/latest")).unwrap();
    std::os::unix::fs::symlink("latest", content.join("openstack/2018-08-27")).unwrap();
    let link = content.join("openstack/2018-08-27");
    std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
    let img = iso_image(dir.path(), "config-2", &content);
    let listed = run(Command::new("xorriso")
        .args(["-indev"])
        .arg(&img)
        .args(["-lsl", "/openstack/2018-08-27"]));
    assert!(
        listed.contains(" 1000 "),
        "the builder's uid is kept: {listed}"
    );
}

#[test]
fn other_data_has_no_label() {
    assert_eq!(probe_label(&[0u8; PROBE_BYTES]), None);
    assert_eq!(probe_label(b"short"), None);
}

#[test]
fn finds_labelled_devices_among_others_and_probes_a_bounded_number() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let other = vfat_image(dir.path(), "SCRATCH", false);
    let wanted = vfat_image(dir.path(), "WANTED", false);
    add_device(&root, "vda", None);
    add_device(&root, "vdb", Some(&other));
    assert_eq!(find(&root, |label| label == "WANTED"), []);
    add_device(&root, "vdc", Some(&wanted));
    add_device(&root, "vdd", Some(&wanted));
    assert_eq!(
        find(&root, |label| label == "WANTED"),
        [
            (root.host_path("/dev/vdc"), FsType::Vfat),
            (root.host_path("/dev/vdd"), FsType::Vfat)
        ]
    );

    // Past the bound, a drive is not looked at.
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    for i in 0..MAX_PROBED_DEVICES {
        fs::create_dir_all(root.host_path(SYS_CLASS_BLOCK).join(format!("a{i:04}"))).unwrap();
    }
    add_device(&root, "zz", Some(&wanted));
    assert_eq!(find(&root, |label| label == "WANTED"), []);
}

/// The bound counts the devices that may hold a drive, whole disks first: many loop devices
/// and partitions (sorted before `sr0`) do not keep it from being probed.
#[test]
fn loop_devices_and_partitions_do_not_hide_a_drive() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let sys = |name: &str, file: &str, text: &str| {
        let at = root.host_path(SYS_CLASS_BLOCK).join(name);
        fs::create_dir_all(&at).unwrap();
        fs::write(at.join(file), text).unwrap();
    };
    // Unused loop devices (size 0), then partitions: more of both than the bound.
    for i in 0..MAX_PROBED_DEVICES {
        sys(&format!("loop{i}"), "size", "0\n");
    }
    for i in 1..MAX_PROBED_DEVICES - 8 {
        sys(&format!("nvme0n1p{i}"), "partition", &format!("{i}\n"));
    }
    sys("loop999", "size", "4096\n");
    let wanted = vfat_image(dir.path(), "WANTED", false);
    add_device(&root, "sr0", Some(&wanted));
    add_device(&root, "loop999", Some(&wanted));
    add_device(&root, "nvme0n1p7", Some(&wanted));
    assert_eq!(
        find(&root, |label| label == "WANTED"),
        [
            (root.host_path("/dev/sr0"), FsType::Vfat),
            (root.host_path("/dev/nvme0n1p7"), FsType::Vfat),
            (root.host_path("/dev/loop999"), FsType::Vfat),
        ]
    );
}

#[test]
fn reads_are_bounded_and_stay_inside_the_drive() {
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive");
    fs::create_dir_all(&drive).unwrap();
    fs::write(dir.path().join("secret"), "outside").unwrap();
    fs::write(drive.join("doc"), "12345").unwrap();
    std::os::unix::fs::symlink("../secret", drive.join("escape")).unwrap();
    std::os::unix::fs::symlink("/doc", drive.join("absolute")).unwrap();
    assert_eq!(
        read(&drive, Path::new("doc"), 5, Mount::Own)
            .unwrap()
            .unwrap(),
        b"12345"
    );
    assert_eq!(
        read(&drive, Path::new("absolute"), 5, Mount::Own)
            .unwrap()
            .unwrap(),
        b"12345"
    );
    assert_eq!(
        read(&drive, Path::new("missing"), 5, Mount::Own).unwrap(),
        None
    );
    assert!(matches!(
        read(&drive, Path::new("doc"), 4, Mount::Own),
        Err(DriveError::TooLarge { limit: 4, .. })
    ));
    // `..` from the drive's top stays at its top: the file outside is never read.
    assert_eq!(
        read(&drive, Path::new("escape"), 100, Mount::Own).unwrap(),
        None
    );
}

/// On a drive mounted elsewhere, only what root alone may write is read: a file or a directory
/// on the way that group or others may write (`umask=000`), or a user's (`uid=1000`), is
/// refused, the error naming it; and nothing refused there is definite, since that mount may
/// change by the next boot. The agent's own mount reads the same files.
#[test]
fn a_drive_mounted_elsewhere_is_read_only_where_root_alone_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive");
    fs::create_dir_all(drive.join("openstack/latest")).unwrap();
    fs::write(drive.join("user-data"), "#cloud-config\n").unwrap();
    fs::write(drive.join("openstack/latest/user_data"), "#!/bin/sh\n").unwrap();
    for (path, bits) in [
        (drive.clone(), 0o755),
        (drive.join("openstack"), 0o755),
        (drive.join("openstack/latest"), 0o755),
        (drive.join("user-data"), 0o644),
        (drive.join("openstack/latest/user_data"), 0o644),
    ] {
        mode(&path, bits);
    }
    let elsewhere = |inside: &str| read(&drive, Path::new(inside), 100, Mount::Elsewhere);
    assert_eq!(elsewhere("user-data").unwrap().unwrap(), b"#cloud-config\n");
    let nested = elsewhere("openstack/latest/user_data").unwrap().unwrap();
    assert_eq!(nested, b"#!/bin/sh\n");
    assert_eq!(elsewhere("missing").unwrap(), None);
    assert_eq!(elsewhere("openstack/missing/user_data").unwrap(), None);

    let refused = |inside: &str, named: &Path| {
        let err = elsewhere(inside).expect_err(inside);
        let shown = crate::log::chain(&err);
        assert!(!err.is_definite(), "{shown}");
        assert!(
            shown.starts_with(&format!("{} (uid ", named.display())),
            "{shown}"
        );
        assert!(
            shown.contains("only what root alone may write is read"),
            "{shown}"
        );
        shown
    };
    mode(&drive.join("user-data"), 0o666);
    let shown = refused("user-data", &drive.join("user-data"));
    assert!(shown.contains("mode 0666"), "{shown}");
    let own = read(&drive, Path::new("user-data"), 100, Mount::Own).unwrap();
    assert_eq!(own.unwrap(), b"#cloud-config\n", "the agent's own mount");
    mode(&drive.join("user-data"), 0o644);
    mode(&drive.join("openstack/latest"), 0o777);
    refused(
        "openstack/latest/user_data",
        &drive.join("openstack/latest"),
    );
    mode(&drive.join("openstack/latest"), 0o755);
    mode(&drive, 0o775);
    refused("user-data", &drive);
    mode(&drive, 0o755);

    // What would be definite on the agent's own mount is not, there.
    let err = read(&drive, Path::new("user-data"), 4, Mount::Elsewhere).unwrap_err();
    assert!(
        matches!(&err, DriveError::Elsewhere(inner) if matches!(**inner, DriveError::TooLarge { .. }))
    );
    assert!(!err.is_definite());
    std::os::unix::fs::symlink("user-data", drive.join("link")).unwrap();
    let err = elsewhere("link").unwrap_err();
    assert!(crate::log::chain(&err).contains("is a symlink"), "{err}");
    assert!(!err.is_definite());

    if !crate::testutil::require_root() {
        return;
    }
    std::os::unix::fs::chown(drive.join("user-data"), Some(1000), Some(1000)).unwrap();
    let shown = refused("user-data", &drive.join("user-data"));
    assert!(shown.contains("uid 1000"), "{shown}");
}

#[test]
fn mounting_a_file_that_is_no_block_device_fails_with_the_device_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    add_device(&root, "vdb", None);
    let err =
        Mounted::mount(&root, &root.host_path("/dev/vdb"), FsType::Iso9660, "test").unwrap_err();
    let shown = crate::log::chain(&err);
    assert!(
        shown.starts_with(&format!(
            "Failed to mount {} on {}",
            root.host_path("/dev/vdb").display(),
            root.host_path("/run/metaboot/test").display()
        )),
        "{shown}"
    );
    assert!(root.is_dir("/run/metaboot/test"));
}

/// A drive an earlier run left mounted on the directory (killed before it unmounted it): the
/// next run detaches it and takes the directory again, where the read-only file system would
/// refuse the directory's mode and the drive would be unreadable until a reboot.
#[test]
fn a_drive_an_earlier_run_left_mounted_is_detached() {
    if !crate::testutil::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let inside = Path::new(MOUNT_DIR).join("config-drive");
    let target = root.host_path(&inside);
    fs::create_dir_all(&target).unwrap();
    let left = |target: &Path| {
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .unwrap();
    };
    left(&target);
    left(&target);
    let mounted = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|line| line.split(' ').nth(4) == Some(target.to_str().unwrap()))
            .count()
    };
    assert_eq!(mounted(), 2);
    assert_eq!(mount_point(&root, &inside).unwrap(), target);
    assert_eq!(mounted(), 0, "every leftover detached");
    assert!(target.is_dir());
}

/// The mounts of a device's whole file system are found in mountinfo by its number, in order:
/// not a bind mount of a directory in it, not another device's; escaped characters in their
/// paths decoded.
#[test]
fn a_devices_mount_points_are_found_in_mountinfo() {
    let mountinfo = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 8:16 /seed /srv/bound rw shared:2 - vfat /dev/sdb rw
41 22 8:160 / /mnt/other rw shared:3 - vfat /dev/sdk rw
42 22 8:16 / /media/my\\040seed\\134x rw,nosuid shared:4 - vfat /dev/sdb rw,uid=1000
43 22 8:16 / /mnt/second rw shared:5 - vfat /dev/sdb rw
";
    let points =
        |major, minor| elsewhere::mount_points_of(mountinfo, major, minor).collect::<Vec<_>>();
    assert_eq!(
        points(8, 16),
        [
            PathBuf::from("/media/my seed\\x"),
            PathBuf::from("/mnt/second")
        ]
    );
    assert_eq!(points(8, 17), [] as [PathBuf; 0]);
    assert_eq!(points(253, 1), [PathBuf::from("/")]);
}

/// A drive mounted where fstab lets users mount it is not read there: a user could have
/// mounted it as theirs and written the user data, and root's files would not show it.
#[test]
fn a_mount_point_users_may_mount_is_known_from_fstab() {
    let fstab = "\
# LABEL=CIDATA /mnt/commented vfat users 0 0
LABEL=CIDATA /mnt/seed vfat defaults,users 0 0
/dev/sdc /media/my\\040seed vfat noauto,user,noexec 0 0
/dev/sdd /mnt/owned vfat owner 0 0
/dev/sde /mnt/root vfat defaults,nofail 0 0
";
    let may = |point: &str| elsewhere::users_may_mount(fstab, Path::new(point));
    assert!(may("/mnt/seed"));
    assert!(may("/media/my seed"));
    assert!(may("/mnt/owned"));
    assert!(!may("/mnt/root"));
    assert!(!may("/mnt/commented"));
    assert!(!may("/mnt/elsewhere"));
    assert_eq!(
        elsewhere::USER_MOUNT_OPTIONS,
        ["user", "users", "owner", "group"]
    );
}

/// A loop device a test attached, and what it mounted: unmounted (last first) and detached
/// however the test ends.
pub(crate) struct LoopMount {
    pub device: PathBuf,
    targets: Vec<PathBuf>,
}

impl LoopMount {
    /// An 8 MiB ext4 image labelled `CIDATA` in `dir`, on a loop device; `None` (the test
    /// skipped) without root, `losetup` or `mkfs.ext4`. (ext4 plays a drive the system mounted
    /// read-write: the test hosts have no vfat; the kernel's rule is the same.)
    pub fn attach(dir: &Path) -> Option<LoopMount> {
        if !crate::testutil::require_root()
            || !require_tool("losetup")
            || !require_tool("mkfs.ext4")
        {
            return None;
        }
        let image = dir.join("seed.img");
        fs::File::create(&image).unwrap().set_len(8 << 20).unwrap();
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "CIDATA"])
            .arg(&image));
        let attached = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        if !attached.status.success() {
            crate::testutil::missing("a loop device", "cannot be attached here");
            return None;
        }
        let device = PathBuf::from(String::from_utf8_lossy(&attached.stdout).trim());
        Some(LoopMount {
            device,
            targets: Vec::new(),
        })
    }

    /// Mounts the device read-write on `target` (made when missing).
    pub fn mount_device(&mut self, target: &Path) {
        fs::create_dir_all(target).unwrap();
        let device = Some(self.device.as_path());
        nix::mount::mount(device, target, Some("ext4"), MsFlags::empty(), None::<&str>).unwrap();
        self.targets.push(target.to_owned());
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        for target in self.targets.iter().rev() {
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// A drive the system mounted read-write already (a vfat `CIDATA` in fstab): the read-only
/// mount fails with `EBUSY`, so it is read where it is mounted, and left mounted.
#[test]
fn a_drive_mounted_read_write_elsewhere_is_read_there_and_left_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut drive) = LoopMount::attach(dir.path()) else {
        return;
    };
    let elsewhere = dir.path().join("media/seed dir");
    drive.mount_device(&elsewhere);
    fs::write(elsewhere.join("user-data"), "#cloud-config\n").unwrap();

    fs::create_dir_all(dir.path().join("root")).unwrap();
    let root = Root::open(dir.path().join("root")).unwrap();
    let mounted = Mounted::mount(&root, &drive.device, FsType::Ext, "nocloud").unwrap();
    assert_eq!(mounted.dir(), elsewhere);
    assert_eq!(
        read(mounted.dir(), Path::new("user-data"), 100, mounted.whose())
            .unwrap()
            .unwrap(),
        b"#cloud-config\n"
    );
    assert_eq!(mounted.whose(), Mount::Elsewhere);
    // What a user may write there (`umask=000`) is not read.
    let user_data = elsewhere.join("user-data");
    let writable = std::os::unix::fs::PermissionsExt::from_mode(0o666);
    fs::set_permissions(&user_data, writable).unwrap();
    let err = read(mounted.dir(), Path::new("user-data"), 100, mounted.whose()).unwrap_err();
    assert!(
        matches!(&err, DriveError::Elsewhere(inner) if matches!(**inner, DriveError::UsersMayWrite { .. })),
        "{err}"
    );
    drop(mounted);
    assert!(elsewhere.join("user-data").exists(), "left mounted");
}

/// A drive mounted read-write twice, the first mount hidden under another file system: it is
/// read at the second, not left for the `EBUSY` of its read-only mount.
#[test]
fn a_drive_mounted_elsewhere_under_another_mount_is_read_at_its_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut drive) = LoopMount::attach(dir.path()) else {
        return;
    };
    let hidden = dir.path().join("hidden");
    drive.mount_device(&hidden);
    fs::write(hidden.join("user-data"), "#cloud-config\n").unwrap();
    let second = dir.path().join("second");
    drive.mount_device(&second);
    let tmpfs = (Some("tmpfs"), Some("tmpfs"), None::<&str>);
    nix::mount::mount(tmpfs.0, &hidden, tmpfs.1, MsFlags::empty(), tmpfs.2).unwrap();
    drive.targets.push(hidden.clone());

    fs::create_dir_all(dir.path().join("root")).unwrap();
    let root = Root::open(dir.path().join("root")).unwrap();
    let mounted = Mounted::mount(&root, &drive.device, FsType::Ext, "nocloud").unwrap();
    assert_eq!(mounted.dir(), second);
    let read = read(mounted.dir(), Path::new("user-data"), 100, mounted.whose()).unwrap();
    assert_eq!(read.unwrap(), b"#cloud-config\n");
}
