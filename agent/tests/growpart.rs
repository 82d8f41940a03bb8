//! The root partition and its file system grown on a real disk, as on a cloud whose flavour
//! disk is larger than the image: a loop device partitioned as Debian's cloud images (GPT)
//! and as older images (MBR), an ext4 file system mounted from it, the disk enlarged under it,
//! then the `growpart` and `resizefs` code the steps run, checked with sfdisk and e2fsck.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use metaboot::apply::growpart::{self, Growth, partition};
use metaboot::apply::resizefs::{self, Resized};
use support::require_root;
use support::testutil::{require_tool, run};

const MIB: u64 = 1 << 20;
/// The image's size, and the disk's once the cloud enlarged it.
const IMAGE_BYTES: u64 = 64 * MIB;
const DISK_BYTES: u64 = 160 * MIB;

/// A loop device over a disk image, its partitions scanned; detached (and unmounted) on drop.
struct LoopDisk {
    dev: String,
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
        LoopDisk { dev, mounted: None }
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

    fn unmount(&mut self) {
        if let Some(at) = self.mounted.take() {
            run(Command::new("umount").arg(&at));
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        if let Some(at) = self.mounted.take() {
            let _ = Command::new("umount").arg("-l").arg(&at).status();
        }
        let _ = Command::new("partx")
            .arg("--delete")
            .arg(&self.dev)
            .status();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn prerequisites() -> bool {
    require_root()
        && ["sfdisk", "losetup", "mkfs.ext4", "e2fsck"]
            .iter()
            .all(|tool| require_tool(tool))
}

fn sfdisk(image: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk refused {script}");
}

/// Whether this process may grow a mounted file system (`CAP_SYS_RESOURCE`, bit 24 of the
/// effective set): some containers and sandboxes drop it, root or not.
fn may_resize() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(eff, 16).unwrap() & (1 << 24) != 0
}

/// The file system at `mnt`, on partition `name`, grown to it: true when it grew. Without
/// `CAP_SYS_RESOURCE` the kernel refuses, and the error must say what is missing (the QEMU
/// Debian guests check the growth itself, from outside).
fn resize_or_not_permitted(mnt: &Path, name: &str) -> bool {
    let resized = resizefs::resize(mnt, sys());
    if !may_resize() {
        let err = resized.unwrap_err();
        assert!(
            metaboot::log::chain(&err).contains(
                "(growing a mounted file system takes CAP_SYS_RESOURCE): Operation not permitted"
            ),
            "{}",
            metaboot::log::chain(&err)
        );
        eprintln!("note: no CAP_SYS_RESOURCE here: the file system's growth is not checked");
        return false;
    }
    let resized = resized.unwrap();
    let Resized::Grew { what, from, to } = resized.clone() else {
        panic!("not resized: {resized:?}");
    };
    assert_eq!(what, format!("ext4 on {name}"));
    assert!(from < IMAGE_BYTES && to > 140 * MIB, "{resized:?}");
    true
}

fn sys() -> &'static Path {
    Path::new(partition::SYS_DEV_BLOCK)
}

/// An image partitioned by `script` whose partition `n` holds a mounted ext4 file system
/// with a file in it; the disk enlarged to [`DISK_BYTES`]; then both steps' code, twice.
fn grows(script: &str, n: u32) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(IMAGE_BYTES)
        .unwrap();
    sfdisk(&image, script);
    let mut disk = LoopDisk::attach(&image, true);
    let node = disk.partition(n);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&node));
    let mnt = dir.path().join("mnt");
    disk.mount(&node, &mnt);
    fs::write(mnt.join("kept"), "the instance's data").unwrap();
    let dev = partition::device_of(&mnt).unwrap();
    let Growth::Fills { .. } = growpart::grow_device(sys(), Path::new("/dev"), dev).unwrap() else {
        panic!("the image's partition already fills the image");
    };

    // The cloud enlarges the disk under the running system.
    fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(DISK_BYTES)
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
    if !resize_or_not_permitted(&mnt, &name) {
        return;
    }
    let df = run(Command::new("df").args(["-B1", "--output=size"]).arg(&mnt));
    let df: u64 = df.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(df > 140 * MIB, "df says {df}");

    // The next boot: nothing to do, nothing written.
    assert_eq!(
        growpart::grow_device(sys(), Path::new("/dev"), dev).unwrap(),
        Growth::Fills {
            partition: name.clone()
        }
    );
    assert_eq!(
        resizefs::resize(&mnt, sys()).unwrap(),
        Resized::Fills(format!("ext4 on {name}"))
    );
    assert_eq!(
        fs::read_to_string(mnt.join("kept")).unwrap(),
        "the instance's data"
    );

    disk.unmount();
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&node));
    let verify = run(Command::new("sfdisk").arg("--verify").arg(&image));
    assert!(!verify.contains("not on the end"), "{verify}");
}

#[test]
fn a_gpt_root_grows_with_its_ext4_file_system() {
    if !prerequisites() {
        return;
    }
    // Debian's cloud image layout: BIOS boot partition 14 before the root, 1.
    grows(
        "label: gpt\nunit: sectors\n\
         1 : start=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
         14 : start=2048, size=6144, type=21686148-6449-6E6F-744E-656564454649\n",
        1,
    );
}

#[test]
fn an_mbr_root_grows_with_its_ext4_file_system() {
    if !prerequisites() {
        return;
    }
    grows(
        "label: dos\nstart=2048, size=8192\nstart=10240, type=83\n",
        2,
    );
}

#[test]
fn a_file_system_on_a_whole_disk_is_no_partition() {
    if !prerequisites() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(IMAGE_BYTES)
        .unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let mut disk = LoopDisk::attach(&image, false);
    let mnt = dir.path().join("mnt");
    let dev = disk.dev.clone();
    disk.mount(&dev, &mnt);
    let growth = growpart::grow_device(
        sys(),
        Path::new("/dev"),
        partition::device_of(&mnt).unwrap(),
    )
    .unwrap();
    let name = dev.trim_start_matches("/dev/");
    assert_eq!(
        growth,
        Growth::NotPartition(format!(
            "{name} is a whole disk or a mapped device, not a partition"
        ))
    );
    // The file system still grows to a larger disk.
    fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(DISK_BYTES)
        .unwrap();
    run(Command::new("losetup").arg("--set-capacity").arg(&dev));
    let name = name.to_owned();
    resize_or_not_permitted(&mnt, &name);
}
