//! `disk_setup` and `fs_setup` on real disks: loop devices over image files, partitioned and
//! formatted by the code the `disk-setup` step runs (sfdisk, mkfs, wipefs), then read back
//! with sfdisk and blkid as a user would check them; each run twice, as a second boot of the
//! same instance would (it must change nothing).

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use metaboot::apply::disk_setup::{self, Made, Partitioned};
use serde_json::{Value, json};
use support::require_root;
use support::testutil::{require_tool, run};

const MIB: u64 = 1 << 20;

/// A loop device over an image file of `bytes`, its partitions scanned; detached on drop.
struct LoopDisk {
    dev: String,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    fn new(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        fs::File::create(&image).unwrap().set_len(bytes).unwrap();
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&image))
        .trim()
        .to_owned();
        LoopDisk { dev, _dir: dir }
    }

    /// Partition `n`'s node, once the kernel made it.
    fn part(&self, n: u32) -> String {
        let node = disk_setup::partition_node(&self.dev, n);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&node).exists() {
            assert!(Instant::now() < deadline, "{node} never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// The partition types sfdisk reads back (`None`: no table).
    fn types(&self) -> Option<Vec<String>> {
        disk_setup::probe::table(&self.dev)
            .unwrap()
            .map(|table| table.types)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn prerequisites() -> bool {
    require_root()
        && [
            "losetup",
            "sfdisk",
            "lsblk",
            "blkid",
            "wipefs",
            "blockdev",
            "mkfs.ext4",
            "mkswap",
        ]
        .iter()
        .all(|tool| require_tool(tool))
}

/// `blkid`'s (type, label, UUID) of `device`.
fn probed(device: &str) -> Option<(String, Option<String>, String)> {
    let out = Command::new("blkid")
        .args(["-c", "/dev/null", "-o", "export", device])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some((value("TYPE")?, value("LABEL"), value("UUID")?))
}

fn disk(layout: &Value, table: &str, overwrite: bool) -> disk_setup::DiskRequest {
    let value = json!({"d": {"layout": layout, "table_type": table, "overwrite": overwrite}});
    disk_setup::disks(&value, &mut Vec::new())
        .unwrap()
        .remove(0)
}

fn file_system(entry: &Value) -> disk_setup::FsRequest {
    disk_setup::file_systems(&json!([entry]), &mut Vec::new())
        .unwrap()
        .remove(0)
}

#[test]
fn an_mbr_disk_gets_swap_and_a_labelled_ext4_and_a_second_run_changes_nothing() {
    if !prerequisites() {
        return;
    }
    let loop_disk = LoopDisk::new(64 * MIB);
    let dev = loop_disk.dev.clone();
    let request = disk(&json!([[25, 82], 75]), "mbr", false);
    assert_eq!(
        disk_setup::partition(&dev, &request).unwrap(),
        Partitioned::Made(2)
    );
    assert_eq!(loop_disk.types().unwrap(), ["82", "83"]);
    let swap = file_system(&json!({"device": "d.1", "filesystem": "swap", "label": "swap"}));
    let data =
        file_system(&json!({"device": "d", "partition": 2, "filesystem": "ext4", "label": "data"}));
    let (p1, p2) = (loop_disk.part(1), loop_disk.part(2));
    assert_eq!(
        disk_setup::make(&dev, &swap).unwrap(),
        Made::Made(p1.clone())
    );
    assert_eq!(
        disk_setup::make(&dev, &data).unwrap(),
        Made::Made(p2.clone())
    );
    let (kind, label, swap_uuid) = probed(&p1).unwrap();
    assert_eq!((kind.as_str(), label.as_deref()), ("swap", Some("swap")));
    let (kind, label, data_uuid) = probed(&p2).unwrap();
    assert_eq!((kind.as_str(), label.as_deref()), ("ext4", Some("data")));

    // The next boot of the instance (or a rerun): the table and both file systems stay.
    assert_eq!(
        disk_setup::partition(&dev, &request).unwrap(),
        Partitioned::Matches
    );
    assert_eq!(
        disk_setup::make(&dev, &swap).unwrap(),
        Made::Found(p1.clone())
    );
    assert_eq!(
        disk_setup::make(&dev, &data).unwrap(),
        Made::Found(p2.clone())
    );
    assert_eq!(probed(&p1).unwrap().2, swap_uuid);
    assert_eq!(probed(&p2).unwrap().2, data_uuid);

    // Another layout on a disk in use is left alone without overwrite.
    let other = disk(&json!([40, 40, 20]), "mbr", false);
    let Partitioned::InUse(held) = disk_setup::partition(&dev, &other).unwrap() else {
        panic!("partitioned a disk in use");
    };
    assert_eq!(held, "it holds 2 partitions");
    assert_eq!(probed(&p2).unwrap().2, data_uuid);
}

#[test]
fn a_gpt_disk_gets_one_partition_and_auto_finds_it() {
    if !prerequisites() {
        return;
    }
    let loop_disk = LoopDisk::new(48 * MIB);
    let dev = loop_disk.dev.clone();
    let request = disk(&json!(true), "gpt", false);
    assert_eq!(
        disk_setup::partition(&dev, &request).unwrap(),
        Partitioned::Made(1)
    );
    assert_eq!(
        loop_disk.types().unwrap(),
        ["0FC63DAF-8483-4772-8E79-3D69D8477DE4"]
    );
    let auto = file_system(
        &json!({"device": dev, "partition": "auto", "filesystem": "ext4", "label": "logs"}),
    );
    let p1 = loop_disk.part(1);
    assert_eq!(
        disk_setup::make(&dev, &auto).unwrap(),
        Made::Made(p1.clone())
    );
    assert_eq!(
        disk_setup::make(&dev, &auto).unwrap(),
        Made::Found(p1.clone())
    );
    // Another label: no partition is free for it.
    let other = file_system(
        &json!({"device": dev, "partition": "auto", "filesystem": "ext4", "label": "other"}),
    );
    assert_eq!(disk_setup::make(&dev, &other).unwrap(), Made::NoRoom);
    assert_eq!(probed(&p1).unwrap().1.as_deref(), Some("logs"));
}

#[test]
fn a_formatted_disk_is_kept_unless_overwrite_and_remove_wipes_it() {
    if !prerequisites() {
        return;
    }
    let loop_disk = LoopDisk::new(48 * MIB);
    let dev = loop_disk.dev.clone();
    // As nova hands over an ephemeral disk: a file system on the whole disk.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "ephemeral0"])
        .arg(&dev));
    let (_, _, uuid) = probed(&dev).unwrap();
    let request = disk(&json!([50, 50]), "mbr", false);
    assert_eq!(
        disk_setup::partition(&dev, &request).unwrap(),
        Partitioned::InUse("it holds ext4".to_owned())
    );
    assert_eq!(probed(&dev).unwrap().2, uuid);
    assert_eq!(loop_disk.types(), None);

    // The same file system asked for on the whole disk is found, not made again.
    let whole = file_system(
        &json!({"device": dev, "partition": "none", "filesystem": "ext4", "label": "ephemeral0"}),
    );
    assert_eq!(
        disk_setup::make(&dev, &whole).unwrap(),
        Made::Found(dev.clone())
    );
    assert_eq!(probed(&dev).unwrap().2, uuid);

    let overwrite = disk(&json!([50, 50]), "mbr", true);
    assert_eq!(
        disk_setup::partition(&dev, &overwrite).unwrap(),
        Partitioned::Made(2)
    );
    assert_eq!(loop_disk.types().unwrap(), ["83", "83"]);
    // The old file system's signature went with it.
    assert_eq!(probed(&dev), None);
    let (p1, p2) = (loop_disk.part(1), loop_disk.part(2));
    // A file system made by a command of the user's.
    let by_cmd = file_system(&json!({
        "device": dev, "partition": 1, "label": "cmd", "filesystem": "ext4",
        "cmd": "mkfs -t %(filesystem)s -q -L %(label)s %(device)s",
    }));
    assert_eq!(
        disk_setup::make(&dev, &by_cmd).unwrap(),
        Made::Made(p1.clone())
    );
    assert_eq!(probed(&p1).unwrap().1.as_deref(), Some("cmd"));
    // `any`: the first partition with no file system.
    let any = file_system(&json!({"device": dev, "filesystem": "swap"}));
    assert_eq!(
        disk_setup::make(&dev, &any).unwrap(),
        Made::Made(p2.clone())
    );

    let remove = disk(&json!("remove"), "mbr", false);
    assert_eq!(
        disk_setup::partition(&dev, &remove).unwrap(),
        Partitioned::Removed
    );
    assert_eq!(loop_disk.types(), None);
    assert_eq!(probed(&dev), None);
}

#[test]
fn what_cannot_be_done_says_why_and_changes_nothing() {
    if !prerequisites() {
        return;
    }
    let loop_disk = LoopDisk::new(32 * MIB);
    let dev = loop_disk.dev.clone();
    let request = disk(&json!(true), "mbr", false);
    disk_setup::partition(&dev, &request).unwrap();
    let p1 = loop_disk.part(1);
    // A partition is no disk.
    let err = disk_setup::partition(&p1, &request)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is no disk (lsblk says part)"), "{err}");
    // A partition that does not exist.
    let third = file_system(&json!({"device": dev, "partition": 3, "filesystem": "ext4"}));
    let err = disk_setup::make(&dev, &third).unwrap_err().to_string();
    assert!(err.contains("p3 does not exist: partition"), "{err}");
    // A device that does not exist.
    let err = disk_setup::partition("/dev/metaboot-no-such-disk", &request)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/metaboot-no-such-disk does not exist"),
        "{err}"
    );
    // A file system type no mkfs makes.
    let odd = file_system(&json!({"device": dev, "partition": 1, "filesystem": "metabootfs"}));
    assert_eq!(
        disk_setup::make(&dev, &odd).unwrap(),
        Made::NoTool("metabootfs".to_owned())
    );
    assert_eq!(probed(&p1), None);
}
