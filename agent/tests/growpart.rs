//! The root partition and its file system grown on a real disk, as on a cloud whose flavour
//! disk is larger than the image: a loop device partitioned as Debian's cloud images (GPT)
//! and as older images (MBR), an ext4, XFS or btrfs file system mounted from it, the disk
//! enlarged under it, then the `growpart` and `resizefs` code the steps run, checked with
//! sfdisk, df and e2fsck.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metaboot::apply::growpart::{self, Growth, partition};
use metaboot::apply::resizefs::{self, Resized};
use support::require_root;
use support::testutil::{require_tool, run, sfdisk};

const MIB: u64 = 1 << 20;

/// Held by each test for its whole run. A child process spawned by another test (its tools,
/// from `require_tool` on) holds a copy of each file this process has open (a file in a
/// mounted disk, the mount point `resize` holds while `btrfs` or `xfs_growfs` runs) until it
/// execs; on a loaded host it may not exec before this test closed its file and unmounts,
/// and `umount` finds the mount busy. One test at a time, no other test spawns meanwhile.
static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The lock of [`ONE_TEST_AT_A_TIME`] (one whose test failed still serializes the others).
fn alone() -> MutexGuard<'static, ()> {
    ONE_TEST_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A file system the tests grow: how it is made, the image's size and the disk's once the
/// cloud enlarged it (XFS's smallest is 300 MiB).
#[derive(Clone, Copy)]
enum Kind {
    Ext4,
    Xfs,
    Btrfs,
}

impl Kind {
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
            Kind::Xfs => ("mkfs.xfs", &["-q", "-f"]),
            Kind::Btrfs => ("mkfs.btrfs", &["-q", "-f"]),
        }
    }

    fn image_and_disk(self) -> (u64, u64) {
        match self {
            Kind::Ext4 => (64 * MIB, 160 * MIB),
            Kind::Xfs => (320 * MIB, 480 * MIB),
            // btrfs grows to 256 MiB or more only.
            Kind::Btrfs => (128 * MIB, 384 * MIB),
        }
    }

    /// What the `resizefs` step names it.
    fn what(self, partition: &str, mnt: &Path) -> String {
        match self {
            Kind::Ext4 => format!("ext4 on {partition}"),
            Kind::Xfs => format!("xfs on {partition}"),
            Kind::Btrfs => format!("btrfs at {}", mnt.display()),
        }
    }

    /// Whether this process may grow it mounted: ext4's online grow takes
    /// `CAP_SYS_RESOURCE` (bit 24 of the effective set), which some containers and sandboxes
    /// drop, root or not; XFS's and btrfs's take `CAP_SYS_ADMIN`.
    fn may_grow(self) -> bool {
        if !matches!(self, Kind::Ext4) {
            return true;
        }
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim();
        u64::from_str_radix(eff, 16).unwrap() & (1 << 24) != 0
    }
}

/// A loop device over a disk image, its partitions scanned; detached (and unmounted) on drop.
struct LoopDisk {
    dev: String,
    partitioned: bool,
    mounted: Option<PathBuf>,
}

impl LoopDisk {
    fn attach(image: &Path, partitioned: bool) -> Self {
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(image))
        .trim()
        .to_owned();
        // Where the kernel reads no partition tables itself, partx adds them (BLKPG).
        if partitioned {
            run(Command::new("partx").arg("--update").arg(&dev));
        }
        LoopDisk {
            dev,
            partitioned,
            mounted: None,
        }
    }

    /// The node of partition `n`, once the kernel made it.
    fn partition(&self, n: u32) -> String {
        let node = format!("{}p{n}", self.dev);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&node).exists() {
            assert!(Instant::now() < deadline, "{node} never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    fn mount(&mut self, node: &str, at: &Path) {
        fs::create_dir_all(at).unwrap();
        run(Command::new("mount").arg(node).arg(at));
        self.mounted = Some(at.to_owned());
    }

    /// Unmounts the disk; one that fails leaves it mounted, for the drop to detach lazily.
    fn unmount(&mut self) {
        if let Some(at) = &self.mounted {
            run(Command::new("umount").arg(at));
            self.mounted = None;
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        if let Some(at) = self.mounted.take() {
            let _ = Command::new("umount").arg("-l").arg(&at).status();
        }
        if self.partitioned {
            let _ = Command::new("partx")
                .arg("--delete")
                .arg(&self.dev)
                .status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn prerequisites(kind: Kind) -> bool {
    require_root()
        && ["sfdisk", "losetup", "partx", kind.mkfs().0]
            .iter()
            .all(|tool| require_tool(tool))
}

fn sys() -> &'static Path {
    Path::new(partition::SYS_DEV_BLOCK)
}

fn mountinfo() -> &'static Path {
    Path::new(partition::MOUNTINFO)
}

/// The file system at `mnt` grown to its device: true when it grew. Where the kernel does
/// not let this process grow it (ext4 without `CAP_SYS_RESOURCE`), the error must say what
/// is missing (the QEMU Debian guests check an ext4 root's growth from outside).
fn resize_or_not_permitted(kind: Kind, mnt: &Path, partition: &str, image: u64) -> bool {
    let resized = resizefs::resize(mnt, sys(), Path::new("/dev"));
    if !kind.may_grow() {
        let err = metaboot::log::chain(&resized.unwrap_err());
        assert!(
            err.contains(
                "(growing a mounted file system takes CAP_SYS_RESOURCE): Operation not permitted"
            ),
            "{err}"
        );
        eprintln!("note: no CAP_SYS_RESOURCE here: the ext4 file system's growth is not checked");
        return false;
    }
    let resized = resized.unwrap();
    let Resized::Grew { what, from, to } = resized.clone() else {
        panic!("not resized: {resized:?}");
    };
    assert_eq!(what, kind.what(partition, mnt));
    assert!(from <= image && to > image + 64 * MIB, "{resized:?}");
    true
}

/// An image partitioned by `script` whose partition `n` holds a mounted `kind` file system
/// with a file in it; the disk enlarged; then both steps' code, twice.
fn grows(kind: Kind, script: &str, n: u32) {
    let (image_bytes, disk_bytes) = kind.image_and_disk();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(image_bytes)
        .unwrap();
    sfdisk(&image, script);
    let mut disk = LoopDisk::attach(&image, true);
    let node = disk.partition(n);
    let (mkfs, args) = kind.mkfs();
    run(Command::new(mkfs).args(args).arg(&node));
    let mnt = dir.path().join("mnt");
    disk.mount(&node, &mnt);
    fs::write(mnt.join("kept"), "the instance's data").unwrap();
    let dev = partition::device_of(&mnt, mountinfo()).unwrap();
    let Growth::Fills { .. } = growpart::grow_device(sys(), Path::new("/dev"), dev).unwrap() else {
        panic!("the image's partition already fills the image");
    };

    // The cloud enlarges the disk under the running system.
    fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(disk_bytes)
        .unwrap();
    run(Command::new("losetup").arg("--set-capacity").arg(&disk.dev));

    let growth = growpart::grow_device(sys(), Path::new("/dev"), dev).unwrap();
    let Growth::Grew {
        partition: name,
        grown,
    } = growth.clone()
    else {
        panic!("not grown: {growth:?}");
    };
    assert_eq!(format!("/dev/{name}"), node);
    assert!(grown.to > grown.from + 90 * MIB, "{growth:?}");
    // The kernel has the new size at once: the file system can grow into it.
    assert_eq!(partition::device_bytes(sys(), dev).unwrap(), grown.to);
    if !resize_or_not_permitted(kind, &mnt, &name, image_bytes) {
        return;
    }
    let df = run(Command::new("df").args(["-B1", "--output=size"]).arg(&mnt));
    let df: u64 = df.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(df > image_bytes + 64 * MIB, "df says {df}");

    // The next boot: nothing to do.
    assert_eq!(
        growpart::grow_device(sys(), Path::new("/dev"), dev).unwrap(),
        Growth::Fills {
            partition: name.clone()
        }
    );
    assert_eq!(
        resizefs::resize(&mnt, sys(), Path::new("/dev")).unwrap(),
        Resized::Fills(kind.what(&name, &mnt))
    );
    assert_eq!(
        fs::read_to_string(mnt.join("kept")).unwrap(),
        "the instance's data"
    );

    disk.unmount();
    if matches!(kind, Kind::Ext4) {
        run(Command::new("e2fsck").args(["-f", "-n"]).arg(&node));
    }
    let verify = run(Command::new("sfdisk").arg("--verify").arg(&image));
    assert!(!verify.contains("not on the end"), "{verify}");
}

/// Debian's cloud image layout: BIOS boot partition 14 before the root, 1.
const DEBIAN_GPT: &str = "label: gpt\nunit: sectors\n\
    1 : start=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
    14 : start=2048, size=6144, type=21686148-6449-6E6F-744E-656564454649\n";

/// An older image's layout: a small first partition, the root second, MBR.
const TWO_PRIMARIES: &str = "label: dos\nstart=2048, size=8192\nstart=10240, type=83\n";

#[test]
fn a_gpt_root_grows_with_its_ext4_file_system() {
    let _alone = alone();
    if prerequisites(Kind::Ext4) && require_tool("e2fsck") {
        grows(Kind::Ext4, DEBIAN_GPT, 1);
    }
}

#[test]
fn an_mbr_root_grows_with_its_ext4_file_system() {
    let _alone = alone();
    if prerequisites(Kind::Ext4) && require_tool("e2fsck") {
        grows(Kind::Ext4, TWO_PRIMARIES, 2);
    }
}

#[test]
fn a_gpt_root_grows_with_its_xfs_file_system() {
    let _alone = alone();
    if prerequisites(Kind::Xfs) && require_tool("xfs_growfs") {
        grows(Kind::Xfs, DEBIAN_GPT, 1);
    }
}

#[test]
fn an_mbr_root_grows_with_its_btrfs_file_system() {
    let _alone = alone();
    // btrfs's device number is no disk's: the partition is found by the mount's source.
    if prerequisites(Kind::Btrfs) && require_tool("btrfs") {
        grows(Kind::Btrfs, TWO_PRIMARIES, 2);
    }
}

#[test]
fn a_file_system_on_a_whole_disk_is_no_partition() {
    let _alone = alone();
    if !prerequisites(Kind::Ext4) {
        return;
    }
    let (image_bytes, disk_bytes) = Kind::Ext4.image_and_disk();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(image_bytes)
        .unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let mut disk = LoopDisk::attach(&image, false);
    let mnt = dir.path().join("mnt");
    let dev = disk.dev.clone();
    disk.mount(&dev, &mnt);
    let growth = growpart::grow_device(
        sys(),
        Path::new("/dev"),
        partition::device_of(&mnt, mountinfo()).unwrap(),
    )
    .unwrap();
    let name = dev.trim_start_matches("/dev/").to_owned();
    assert_eq!(
        growth,
        Growth::NotPartition(format!(
            "{name} is a whole disk or a mapped device, not a partition"
        ))
    );
    // A file system that spans its device is left alone without asking the kernel (whose grow
    // would flush the journal, and which this machine may not allow).
    assert_eq!(
        resizefs::resize(&mnt, sys(), Path::new("/dev")).unwrap(),
        Resized::Fills(format!("ext4 on {name}"))
    );
    // The file system still grows to a larger disk.
    fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(disk_bytes)
        .unwrap();
    run(Command::new("losetup").arg("--set-capacity").arg(&dev));
    resize_or_not_permitted(Kind::Ext4, &mnt, &name, image_bytes);
}
