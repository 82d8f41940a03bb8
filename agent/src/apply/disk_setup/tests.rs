//! The configuration read as cloud-init reads it, the sfdisk scripts, the choice of a
//! partition. The tools' own runs are in `tests/disk_setup.rs` (loop devices).

use serde_json::json;

use super::layout::{Layout, Part, TableType};
use super::probe::{Block, Table};
use super::*;

fn block(name: &str, kind: &str, fstype: Option<&str>, label: Option<&str>) -> Block {
    Block {
        name: name.to_owned(),
        kind: kind.to_owned(),
        fstype: fstype.map(str::to_owned),
        label: label.map(str::to_owned),
    }
}

#[test]
fn disks_are_read_with_cloud_inits_defaults() {
    let mut warnings = Vec::new();
    let value = json!({
        "/dev/vdb": {"layout": true},
        "data": {"table_type": "gpt", "layout": [50, [50, 82]], "overwrite": true},
        "vdd": {"layout": "remove"},
        "odd": "not a map",
    });
    let disks = disks(&value, &mut warnings).unwrap();
    assert_eq!(
        warnings,
        ["disk_setup: odd: \"not a map\" is not a map, skipped"]
    );
    assert_eq!(disks.len(), 3);
    let by = |name: &str| disks.iter().find(|d| d.name == name).unwrap();
    assert_eq!(by("/dev/vdb").table, TableType::Mbr);
    assert_eq!(by("/dev/vdb").layout, Layout::Whole);
    assert!(!by("/dev/vdb").overwrite);
    assert_eq!(by("vdd").layout, Layout::Remove);
    let data = by("data");
    assert!(data.overwrite);
    assert_eq!(
        data.layout,
        Layout::Parts(vec![
            Part {
                percent: 50.0,
                kind: None
            },
            Part {
                percent: 50.0,
                kind: Some("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F".to_owned())
            },
        ])
    );
    // No layout, false or empty: the disk is left alone.
    for layout in [json!(null), json!(false), json!([]), json!("")] {
        let value = json!({"/dev/vdb": {"layout": layout}});
        assert_eq!(disks_of(&value).unwrap()[0].layout, Layout::Keep);
    }
}

fn disks_of(value: &serde_json::Value) -> Result<Vec<DiskRequest>, String> {
    disks(value, &mut Vec::new())
}

#[test]
fn a_bad_disk_entry_says_what_is_wrong() {
    let cases = [
        (
            json!({"v": {"table_type": "zfs", "layout": true}}),
            "table_type \"zfs\" is neither mbr nor gpt",
        ),
        (
            json!({"v": {"layout": [20, 20, 20, 20, 20]}}),
            "layout has 5 partitions; a dos table takes at most 4",
        ),
        (
            json!({"v": {"layout": [0, 100]}}),
            "partition size 0 is not a percentage (1 to 100)",
        ),
        (
            json!({"v": {"layout": [60, 40, 10]}}),
            "the partitions before the last take 100% of the disk",
        ),
        (
            json!({"v": {"layout": [[50]]}}),
            "is not [percentage, type] (two values)",
        ),
        (
            json!({"v": {"layout": [[50, "zz"], 50]}}),
            "partition type \"zz\" is no MBR type id",
        ),
        (
            json!({"v": {"table_type": "gpt", "layout": [[50, 99], 50]}}),
            "GPT partition type \"99\" is not known",
        ),
        (
            json!({"v": {"layout": true, "overwrite": "yes"}}),
            "overwrite \"yes\" is neither true nor false",
        ),
        (
            json!({"v": {"layout": 7}}),
            "layout 7 is not true, false, remove or a list",
        ),
        (json!(["/dev/vdb"]), "is not a map of devices"),
    ];
    for (value, said) in cases {
        let err = disks_of(&value).unwrap_err();
        assert!(err.contains(said), "{value}: {err}");
    }
    let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_ENTRIES)
        .map(|i| (format!("/dev/d{i}"), json!({"layout": true})))
        .collect();
    assert!(
        disks_of(&serde_json::Value::Object(many))
            .unwrap_err()
            .contains("more than 64")
    );
    let gpt: Vec<serde_json::Value> = (0..=MAX_GPT_PARTITIONS).map(|_| json!(0.5)).collect();
    let err = disks_of(&json!({"v": {"table_type": "gpt", "layout": gpt}})).unwrap_err();
    assert!(err.contains("a gpt table takes at most 128"), "{err}");
}

#[test]
fn partition_types_are_written_as_each_table_takes_them() {
    assert_eq!(TableType::Mbr.partition_type("83").unwrap(), "83");
    assert_eq!(TableType::Mbr.partition_type("0x8E").unwrap(), "8e");
    // sgdisk's codes as cloud-init pads them: 82 → 8200.
    assert_eq!(
        TableType::Gpt.partition_type("82").unwrap(),
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
    );
    assert_eq!(
        TableType::Gpt.partition_type("EF00").unwrap(),
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    );
    assert_eq!(
        TableType::Gpt
            .partition_type("0fc63daf-8483-4772-8e79-3d69d8477de4")
            .unwrap(),
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    );
    assert!(GPT_TYPES.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn the_sfdisk_script_gives_each_partition_its_share_and_the_last_the_rest() {
    let layout = Layout::parse(Some(&json!([25, [25, 82], 50])), TableType::Mbr).unwrap();
    assert_eq!(
        layout.script(TableType::Mbr, 1_000_000),
        "label: dos\nsize=250000\nsize=250000, type=82\ntype=L\n"
    );
    assert_eq!(
        Layout::Whole.script(TableType::Gpt, 1_000_000),
        "label: gpt\ntype=L\n"
    );
    let swap_last = Layout::parse(Some(&json!([50, [50, 82]])), TableType::Gpt).unwrap();
    assert_eq!(
        swap_last.script(TableType::Gpt, 1000),
        "label: gpt\nsize=500\ntype=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n"
    );
}

#[test]
fn a_table_matches_as_cloud_init_judges_it() {
    let dos = |types: &[&str]| Table {
        label: "dos".to_owned(),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
    };
    assert!(Layout::Whole.matches(TableType::Mbr, Some(&dos(&["83", "82"]))));
    assert!(!Layout::Whole.matches(TableType::Mbr, Some(&dos(&[]))));
    assert!(!Layout::Whole.matches(TableType::Mbr, None));
    let two = Layout::parse(Some(&json!([50, [50, 82]])), TableType::Mbr).unwrap();
    assert!(two.matches(TableType::Mbr, Some(&dos(&["83", "82"]))));
    assert!(two.matches(TableType::Mbr, Some(&dos(&["8e", "82"]))));
    assert!(!two.matches(TableType::Mbr, Some(&dos(&["83", "83"]))));
    assert!(!two.matches(TableType::Mbr, Some(&dos(&["83"]))));
    let gpt = Table {
        label: "gpt".to_owned(),
        types: vec!["0FC63DAF-8483-4772-8E79-3D69D8477DE4".to_owned(); 2],
    };
    assert!(!two.matches(TableType::Mbr, Some(&gpt)));
}

#[test]
fn fs_entries_are_read_with_cloud_inits_defaults() {
    let mut warnings = Vec::new();
    let value = json!([
        {"label": "data", "filesystem": "ext4", "device": "ephemeral0.2", "partition": "auto"},
        {"filesystem": "xfs", "device": "/dev/vdc", "partition": 1, "extra_opts": ["-m", "crc=1"]},
        {"filesystem": "swap", "device": "/dev/vdd", "partition": "none", "overwrite": true},
        {"device": "/dev/vde", "cmd": "mkfs -t %(filesystem)s -L %(label)s %(device)s"},
        {"filesystem": "ext4", "device": "/dev/vdf"},
        "odd",
        {"filesystem": "ext4", "device": "/dev/vdg", "partition": null},
    ]);
    let fs = file_systems(&value, &mut warnings).unwrap();
    assert_eq!(
        warnings,
        ["fs_setup entry 6: \"odd\" is not a map, skipped"]
    );
    assert_eq!(fs[0].device, "ephemeral0");
    // `.2` wins over `partition`.
    assert_eq!(fs[0].placement, Placement::Number(2));
    assert_eq!(fs[0].label.as_deref(), Some("data"));
    assert_eq!(fs[1].placement, Placement::Number(1));
    assert_eq!(fs[1].extra_opts, ["-m", "crc=1"]);
    assert_eq!(fs[2].placement, Placement::Whole);
    assert!(fs[2].overwrite);
    assert!(fs[3].cmd.is_some() && fs[3].filesystem.is_none());
    assert_eq!(fs[4].placement, Placement::Any);
    // `partition:` with no value is cloud-init's "None": the whole device, not `any`.
    assert_eq!(fs[5].device, "/dev/vdg");
    assert_eq!(fs[5].placement, Placement::Whole);

    for (value, said) in [
        (
            json!([{"filesystem": "ext4"}]),
            "fs_setup entry 1: it names no device",
        ),
        (
            json!([{"device": "/dev/vdb"}]),
            "names no filesystem and no cmd",
        ),
        (
            json!([{"device": "/dev/vdb", "filesystem": "ext4", "partition": "first"}]),
            "partition \"first\" is not auto, any, none or a number",
        ),
        (
            json!([{"device": "/dev/vdb", "filesystem": "ext4", "extra_opts": 3}]),
            "extra_opts 3 is not a list",
        ),
        (
            json!({"device": "/dev/vdb"}),
            "is not a list of file systems",
        ),
        (
            json!([{"device": "/dev/vdb", "filesystem": "../../tmp/x"}]),
            "filesystem \"../../tmp/x\" is not a file system type",
        ),
    ] {
        let err = file_systems(&value, &mut Vec::new()).unwrap_err();
        assert!(err.contains(said), "{value}: {err}");
    }
}

#[test]
fn aliases_and_partition_nodes() {
    let aliases = crate::apply::mounts::aliases(Some(&json!({"data": "/dev/vdb"}))).unwrap();
    assert_eq!(aliases["data"], "/dev/vdb");
    assert!(crate::apply::mounts::aliases(Some(&json!(["x"]))).is_err());
    assert_eq!(split_number("my_alias.2"), Some(("my_alias", 2)));
    assert_eq!(split_number("/dev/vdb"), None);
    assert_eq!(split_number("host.example"), None);
    assert_eq!(partition_node("/dev/vdb", 1), "/dev/vdb1");
    assert_eq!(partition_node("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
    assert_eq!(partition_node("/dev/loop3", 1), "/dev/loop3p1");
}

fn request(fs: &str, label: Option<&str>, replace: Option<&str>) -> FsRequest {
    FsRequest {
        device: "/dev/vdb".to_owned(),
        placement: Placement::Any,
        label: label.map(str::to_owned),
        filesystem: Some(fs.to_owned()),
        overwrite: false,
        replace_fs: replace.map(str::to_owned),
        extra_opts: Vec::new(),
        cmd: None,
    }
}

fn chosen(blocks: &[Block], request: &FsRequest, by_label: bool) -> String {
    match choose(blocks, "/dev/vdb", request, by_label) {
        Choice::Reuse(d) => format!("reuse {d}"),
        Choice::Make {
            target,
            partition: true,
        } => format!("make partition {target}"),
        Choice::Make {
            target,
            partition: false,
        } => format!("make {target}"),
        Choice::None => "none".to_owned(),
    }
}

#[test]
fn auto_and_any_choose_as_cloud_inits_find_device_node() {
    let blank = [block("/dev/vdb", "disk", None, None)];
    assert_eq!(
        chosen(&blank, &request("ext4", Some("d"), None), true),
        "make /dev/vdb"
    );
    let formatted = [block("/dev/vdb", "disk", Some("ext4"), Some("ephemeral0"))];
    // any: the type is enough; auto: the label too.
    assert_eq!(
        chosen(&formatted, &request("ext4", Some("d"), None), false),
        "reuse /dev/vdb"
    );
    assert_eq!(
        chosen(&formatted, &request("ext4", Some("d"), None), true),
        "none"
    );
    assert_eq!(
        chosen(&formatted, &request("xfs", None, Some("ext4")), false),
        "make /dev/vdb"
    );
    let parts = [
        block("/dev/vdb", "disk", None, None),
        block("/dev/vdb1", "part", Some("ext4"), Some("one")),
        block("/dev/vdb2", "part", None, None),
    ];
    assert_eq!(
        chosen(&parts, &request("ext4", Some("two"), None), true),
        "make partition /dev/vdb2"
    );
    assert_eq!(
        chosen(&parts, &request("ext4", Some("one"), None), true),
        "reuse /dev/vdb1"
    );
    assert_eq!(
        chosen(&parts, &request("xfs", None, None), false),
        "make partition /dev/vdb2"
    );
    let full = [
        block("/dev/vdb", "disk", None, None),
        block("/dev/vdb1", "part", Some("ext4"), None),
    ];
    assert_eq!(chosen(&full, &request("xfs", None, None), false), "none");
    // `replace_fs` on a partition: mkfs is not forced there (what lsblk listed decides).
    assert_eq!(
        chosen(&full, &request("xfs", None, Some("ext4")), false),
        "make partition /dev/vdb1"
    );
}

#[test]
fn a_command_gets_cloud_inits_fields() {
    assert_eq!(
        fill(
            "mkfs -t %(filesystem)s -L %(label)s %(device)s",
            Some("d"),
            Some("ext4"),
            "/dev/vdb1"
        ),
        "mkfs -t ext4 -L d /dev/vdb1"
    );
    assert_eq!(fill("x %(label)s", None, None, "/dev/vdb"), "x None");
    assert_eq!(force_flag("ext4"), Some("-F"));
    assert_eq!(force_flag("xfs"), Some("-f"));
    assert_eq!(force_flag("vfat"), None);
}
