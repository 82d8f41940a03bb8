//! What the tables' tests share: disk image files partitioned by sfdisk and read back by it,
//! so every table metaboot writes is checked by the tool administrators use.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::testutil::{require_tool, run, sfdisk};

pub(crate) const MIB: u64 = 1 << 20;

/// A disk image of `bytes` bytes partitioned by the sfdisk `script`; `None` (skipped) without
/// sfdisk outside CI.
pub(crate) fn partitioned(
    bytes: u64,
    script: &str,
) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if !require_tool("sfdisk") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    File::create(&disk).unwrap().set_len(bytes).unwrap();
    sfdisk(&disk, script);
    Some((dir, disk))
}

/// The disk image grown to `bytes` (as a cloud's disk is larger than its image).
pub(crate) fn enlarge(disk: &Path, bytes: u64) {
    File::options()
        .write(true)
        .open(disk)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

/// sfdisk's reading of the table: (partition number, start, size) in sectors, and `lastlba`
/// for a GPT.
pub(crate) fn sfdisk_reads(disk: &Path) -> (Vec<(u32, u64, u64)>, Option<u64>) {
    let json = run(Command::new("sfdisk").arg("--json").arg(disk));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let table = &doc["partitiontable"];
    let name = disk.to_string_lossy().into_owned();
    let parts = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number = node.strip_prefix(&name).unwrap().parse().unwrap();
            (
                number,
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    (parts, table["lastlba"].as_u64())
}

/// sfdisk's check of the table: what it says, and whether it found problems.
pub(crate) fn sfdisk_verify(disk: &Path) -> (bool, String) {
    let out = Command::new("sfdisk")
        .arg("--verify")
        .arg(disk)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && !said.contains("not on the end"),
        said,
    )
}

#[test]
fn growpart_modes_as_cloud_init_names_them() {
    use serde_json::json;
    for on in [
        None,
        Some(json!("auto")),
        Some(json!("growpart")),
        Some(json!("GPART")),
        Some(json!(true)),
    ] {
        assert_eq!(enabled(on.as_ref()), Ok(true), "{on:?}");
    }
    for off in [json!("off"), json!(false), json!("false")] {
        assert_eq!(enabled(Some(&off)), Ok(false), "{off}");
    }
    assert_eq!(
        enabled(Some(&json!("sometimes"))),
        Err("growpart.mode is \"sometimes\": use auto, growpart, gpart, off or false".into())
    );
    assert!(enabled(Some(&json!(3))).is_err());
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(size(2 << 30), "2.0 GiB");
    assert_eq!(size(3 * (1 << 30) / 2), "1.5 GiB");
    assert_eq!(size(512 * MIB), "512.0 MiB");
}

#[test]
fn the_least_growth_is_a_megabyte() {
    assert_eq!(MIN_GROWTH_BYTES, MIB);
}

/// A device the configuration names that this machine lacks (`/dev/vdb1` on a flavour with one
/// disk) is skipped, as cloud-init skips a failed stat, not an error at every boot.
#[test]
fn a_device_that_does_not_exist_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("vdb1");
    let missing = missing.to_str().unwrap();
    match grow(missing) {
        Ok(Growth::NotPartition(why)) => assert!(why.contains("does not exist"), "{why}"),
        other => panic!("{other:?}"),
    }
}
