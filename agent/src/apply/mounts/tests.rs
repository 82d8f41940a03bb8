use std::fs;

use serde_json::json;

use super::*;
use crate::source::drive::tests::add_device;
use crate::testutil::require_tool;

/// A root with fstab `text`, `/dev/vdb` (a block device of the system) and systemd running.
fn root_with(text: &str) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    fs::create_dir_all(root.host_path("/etc")).unwrap();
    fs::write(root.host_path(FSTAB), text).unwrap();
    add_device(&root, "vdb", None);
    fs::create_dir_all(root.host_path("/sys/block/vdb")).unwrap();
    fs::create_dir_all(root.host_path(crate::apply::tool::SYSTEMD_RUNNING)).unwrap();
    (dir, root)
}

fn applied(root: &Root, mounts: &serde_json::Value) -> (Option<Applied>, Vec<String>) {
    let mut warnings = Vec::new();
    let config = Config {
        mounts: Some(mounts),
        ..Config::default()
    };
    (apply(root, config, &mut warnings).unwrap(), warnings)
}

#[test]
fn entries_get_their_device_defaults_and_the_mark_and_replace_an_earlier_instances() {
    let old = "/dev/vdb\t/old\tauto\tdefaults,comment=cloudconfig\t0\t2\n";
    let (_dir, root) = root_with(&format!("UUID=r / ext4 defaults 0 1\n{old}"));
    let (done, warnings) = applied(
        &root,
        &json!([
            ["vdb", "/data"],
            ["nas:/export", "/srv/nfs", "nfs", "ro"],
            ["sdz", "/missing", null, null, "0", "0"],
            "not a list",
        ]),
    );
    let done = done.unwrap();
    assert_eq!(done.dropped, 1);
    assert_eq!(
        fs::read_to_string(root.host_path(FSTAB)).unwrap(),
        format!(
            "UUID=r / ext4 defaults 0 1\n\
             /dev/vdb\t/data\tauto\t{SYSTEMD_OPTIONS},comment=cloudconfig\t0\t2\n\
             nas:/export\t/srv/nfs\tnfs\tro,comment=cloudconfig\t0\t2\n\
             sdz\t/missing\tauto\t{SYSTEMD_OPTIONS},comment=cloudconfig\t0\t0\n"
        )
    );
    assert_eq!(
        warnings,
        ["mounts entry 3 is not a list: ignored (\"not a list\")"]
    );
    // The mount points exist; nothing ran under a root that is not /.
    assert!(root.is_dir("/data") && root.is_dir("/srv/nfs"));
    assert!(done.ran.is_empty());
}

#[test]
fn a_null_mount_point_leaves_the_device_out_and_the_defaults_come_from_labels() {
    if !require_tool("mkfs.ext4") || !require_tool("mkswap") {
        return;
    }
    let (dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
    // nova's ephemeral disk (ext4 labelled ephemeral0) and a swap disk.
    let eph = dir.path().join("eph.img");
    let swp = dir.path().join("swap.img");
    fs::write(&eph, vec![0u8; 8 << 20]).unwrap();
    fs::write(&swp, vec![0u8; 1 << 20]).unwrap();
    crate::testutil::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "ephemeral0"])
            .arg(&eph),
    );
    crate::testutil::run(std::process::Command::new("mkswap").arg(&swp));
    for (name, image) in [("vdc", &eph), ("vdd", &swp)] {
        add_device(&root, name, Some(image));
        fs::create_dir_all(root.host_path(format!("/sys/block/{name}"))).unwrap();
    }
    let (done, _) = applied(&root, &json!([]));
    assert_eq!(
        done.unwrap().added,
        [
            format!("/dev/vdc\t/mnt\tauto\t{SYSTEMD_OPTIONS},comment=cloudconfig\t0\t2"),
            "/dev/vdd\tnone\tswap\tsw,comment=cloudconfig\t0\t0".to_owned(),
        ]
    );
    // `[ephemeral0, null]` leaves nova's disk unmounted; the swap default stays.
    let (done, _) = applied(&root, &json!([["ephemeral0", null]]));
    assert_eq!(
        done.unwrap().added,
        ["/dev/vdd\tnone\tswap\tsw,comment=cloudconfig\t0\t0"]
    );
    // A device fstab already has is not added again.
    fs::write(
        root.host_path(FSTAB),
        "/dev/vdc /scratch ext4 defaults 0 0\n",
    )
    .unwrap();
    let (done, _) = applied(&root, &json!([["ephemeral0", null]]));
    assert_eq!(
        done.unwrap().added,
        ["/dev/vdd\tnone\tswap\tsw,comment=cloudconfig\t0\t0"]
    );
}

/// nova's ephemeral disk partitioned by `disk_setup` and its first partition labelled
/// `ephemeral0` by `fs_setup` (cloud-init's documented pattern): the `/mnt` default finds the
/// partition, and `disk_setup`'s `ephemeral0` is the disk holding it.
#[test]
fn a_label_on_a_partition_is_that_partition_and_its_disk() {
    if !require_tool("mkfs.ext4") {
        return;
    }
    let (dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
    fs::remove_dir_all(root.host_path("/sys/block/vdb")).unwrap();
    let part = dir.path().join("part.img");
    fs::write(&part, vec![0u8; 8 << 20]).unwrap();
    crate::testutil::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "ephemeral0"])
            .arg(&part),
    );
    add_device(&root, "vdc", None);
    add_device(&root, "vdc1", Some(&part));
    fs::create_dir_all(root.host_path("/sys/block/vdc/vdc1")).unwrap();
    let (done, _) = applied(&root, &json!([]));
    assert_eq!(
        done.unwrap().added,
        [format!(
            "/dev/vdc1\t/mnt\tauto\t{SYSTEMD_OPTIONS},comment=cloudconfig\t0\t2"
        )]
    );
    let devices = devices::Devices::new(&root);
    assert_eq!(devices.disk("ephemeral0").as_deref(), Some("/dev/vdc"));
    assert_eq!(devices.resolve("ephemeral0").as_deref(), Some("/dev/vdc1"));
}

#[test]
fn nothing_asked_and_no_default_device_leaves_fstab_alone() {
    let (_dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
    fs::remove_dir_all(root.host_path("/sys/block/vdb")).unwrap();
    let (done, _) = applied(&root, &json!(null));
    assert_eq!(done, None);
    assert_eq!(
        fs::read_to_string(root.host_path(FSTAB)).unwrap(),
        "UUID=r / ext4 defaults 0 1\n"
    );
}

#[test]
fn a_swap_file_is_made_as_mkswap_makes_it_and_listed_once() {
    let (_dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
    fs::remove_dir_all(root.host_path("/sys/block/vdb")).unwrap();
    let swap_config = json!({"filename": "/var/swapfile", "size": "1M"});
    let config = Config {
        swap: swap_config.as_object(),
        ..Config::default()
    };
    let mut warnings = Vec::new();
    let done = apply(&root, config, &mut warnings).unwrap().unwrap();
    assert_eq!(
        done.added,
        ["/var/swapfile\tnone\tswap\tsw,comment=cloudconfig\t0\t0"]
    );
    let file = root.host_path("/var/swapfile");
    let meta = fs::metadata(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        (meta.len(), meta.permissions().mode() & 0o777),
        (1 << 20, 0o600)
    );
    if require_tool("blkid") {
        let kind = crate::testutil::run(
            std::process::Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "TYPE"])
                .arg(&file),
        );
        assert_eq!(kind.trim(), "swap");
    }
    // A second instance: the file is not in use here (no /proc/swaps under this root: it is
    // kept as it is) and its marked line is replaced by the same one, not written twice.
    let done = apply(&root, config, &mut warnings).unwrap().unwrap();
    assert_eq!(done.dropped, 1);
    assert_eq!(
        fs::read_to_string(root.host_path(FSTAB)).unwrap(),
        "UUID=r / ext4 defaults 0 1\n/var/swapfile\tnone\tswap\tsw,comment=cloudconfig\t0\t0\n"
    );
    // An instance that asks for another file: the first one's line goes with the mark, so
    // `swapon -a` does not look for a file the user may have deleted.
    let other = json!({"filename": "/var/swap2", "size": "1M"});
    let config = Config {
        swap: other.as_object(),
        ..Config::default()
    };
    apply(&root, config, &mut warnings).unwrap().unwrap();
    assert_eq!(
        fs::read_to_string(root.host_path(FSTAB)).unwrap(),
        "UUID=r / ext4 defaults 0 1\n/var/swap2\tnone\tswap\tsw,comment=cloudconfig\t0\t0\n"
    );
}

#[test]
fn a_swap_file_line_an_older_metaboot_wrote_without_the_mark_is_not_doubled() {
    let (_dir, root) =
        root_with("UUID=r / ext4 defaults 0 1\n/var/swapfile\tnone\tswap\tsw\t0\t0\n");
    fs::remove_dir_all(root.host_path("/sys/block/vdb")).unwrap();
    let swap_config = json!({"filename": "/var/swapfile", "size": "1M"});
    let config = Config {
        swap: swap_config.as_object(),
        ..Config::default()
    };
    let done = apply(&root, config, &mut Vec::new()).unwrap().unwrap();
    assert!(done.added.is_empty());
    assert_eq!(
        fs::read_to_string(root.host_path(FSTAB)).unwrap(),
        "UUID=r / ext4 defaults 0 1\n/var/swapfile\tnone\tswap\tsw\t0\t0\n"
    );
}

/// The swap file is made where cloud-init's `fallocate` makes it: through root's symlink (the
/// link kept; in use, as `/proc/swaps` lists its target, it is kept). A user's symlink there is
/// refused, never followed nor replaced, the error naming it.
#[test]
fn a_swap_file_is_made_through_roots_symlink_and_a_users_refused() {
    let (_dir, root) = root_with("");
    fs::create_dir_all(root.host_path("/proc")).unwrap();
    let swaps = root.host_path("/proc/swaps");
    fs::write(&swaps, "Filename Type Size Used Priority\n").unwrap();
    fs::create_dir_all(root.host_path("/var/swap")).unwrap();
    let link = root.host_path("/swap.img");
    std::os::unix::fs::symlink("var/swap/file", &link).unwrap();
    let request = swap::SwapRequest {
        filename: "/swap.img".into(),
        size: swap::Size::Bytes(1 << 20),
        maxsize: None,
    };
    assert_eq!(
        swap::make(&root, &request).unwrap().as_deref(),
        Some("/swap.img")
    );
    let made = fs::symlink_metadata(root.host_path("/var/swap/file")).unwrap();
    assert!(made.file_type().is_file() && made.len() == 1 << 20);
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    let target = root.host_path("/var/swap/file");
    let line = format!("{} file 1024 0 -2\n", target.display());
    fs::write(&swaps, line).unwrap();
    fs::write(&target, "in use").unwrap();
    swap::make(&root, &request).unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "in use");
    if !crate::testutil::require_root() {
        return;
    }
    let victim = root.host_path("/etc/shadow");
    fs::write(&victim, "root:*:19000::::::\n").unwrap();
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
    let err = format!(
        "{:#}",
        anyhow::Error::from(swap::make(&root, &request).unwrap_err())
    );
    let said = format!("{} is a symlink owned by uid 1000", link.display());
    assert!(err.contains(&said), "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root:*:19000::::::\n");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
}

/// Root's link from the swap file to a partition's node (or a FIFO) is not followed: the node
/// would be removed, and a file of the swap's size made in its place (in memory, on /dev).
/// The error names the link and the node; a node named as the swap file itself is refused too.
#[test]
fn a_swap_file_linked_to_a_device_node_is_refused_and_the_node_kept() {
    let (_dir, root) = root_with("");
    fs::create_dir_all(root.host_path("/proc")).unwrap();
    fs::write(root.host_path("/proc/swaps"), "Filename Type\n").unwrap();
    for (name, what) in crate::root::tests::device_nodes(&root) {
        let node = root.host_path(format!("/dev/{name}"));
        let link = root.host_path("/swap.img");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/dev/{name}"), &link).unwrap();
        for (filename, said) in [
            (
                "/swap.img",
                format!(
                    "{} is root's symlink to {}, a {what}:",
                    link.display(),
                    node.display()
                ),
            ),
            (
                &format!("/dev/{name}"),
                format!("{} is a {what}, not a regular file", node.display()),
            ),
        ] {
            let request = swap::SwapRequest {
                filename: filename.into(),
                size: swap::Size::Bytes(1 << 20),
                maxsize: None,
            };
            let err = anyhow::Error::from(swap::make(&root, &request).unwrap_err());
            let err = format!("{err:#}");
            assert!(err.contains(&said), "{err}");
            let kind = fs::symlink_metadata(&node).unwrap().file_type();
            assert!(!kind.is_file() && !kind.is_symlink(), "{name}: {kind:?}");
        }
    }
}

/// A swap file asked for in a directory a user made in /var/tmp: that user could put a file
/// of theirs in its place, and the kernel would fill it with root's memory.
#[test]
fn a_swap_file_in_a_users_directory_in_var_tmp_is_refused() {
    if !crate::testutil::require_root() {
        return;
    }
    let (_dir, root) = root_with("");
    let tmp = root.host_path("/var/tmp");
    fs::create_dir_all(tmp.join("mine")).unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(tmp.join("mine"), Some(1000), Some(1000)).unwrap();
    let request = swap::SwapRequest {
        filename: "/var/tmp/mine/swap.img".into(),
        size: swap::Size::Bytes(1 << 20),
        maxsize: None,
    };
    let err = swap::make(&root, &request).unwrap_err();
    assert!(
        format!("{:#}", anyhow::Error::from(err)).contains("mine belongs to uid 1000"),
        "the reason is told"
    );
    assert!(!root.exists("/var/tmp/mine/swap.img"));
}

#[test]
fn a_swap_file_over_the_bound_is_refused_before_anything_is_written() {
    let (_dir, root) = root_with("");
    let request = swap::SwapRequest {
        filename: "/swap.img".into(),
        size: swap::Size::Bytes(swap::MAX_SWAP_BYTES + 1),
        maxsize: None,
    };
    let err = swap::make(&root, &request).unwrap_err();
    assert!(err.to_string().contains("over the"), "{err}");
    assert!(!root.exists("/swap.img"));
}

#[test]
fn malformed_configuration_is_named() {
    let (_dir, root) = root_with("");
    let mut warnings = Vec::new();
    for (mounts, defaults, message) in [
        (
            json!("vdb"),
            json!(null),
            "mounts must be a list of entries",
        ),
        (
            json!([]),
            json!(["a"]),
            "mount_default_fields must be a list of 6 fields",
        ),
        (json!([[{"a": 1}, "/x"]]), json!(null), "mounts entry 0:"),
    ] {
        let config = Config {
            mounts: Some(&mounts),
            default_fields: Some(&defaults),
            swap: None,
            device_aliases: None,
        };
        let err = apply(&root, config, &mut warnings).unwrap_err().to_string();
        assert!(err.starts_with(message), "{err}");
    }
    let too_many = json!(vec![json!(["vdb", "/x"]); MAX_MOUNTS + 1]);
    let config = Config {
        mounts: Some(&too_many),
        ..Config::default()
    };
    let err = apply(&root, config, &mut warnings).unwrap_err().to_string();
    assert!(err.contains("at most 64"), "{err}");
}

#[test]
fn an_alias_names_the_disk_and_its_dotted_number_the_partition() {
    let (_dir, root) = root_with("");
    add_device(&root, "vdc", None);
    add_device(&root, "vdc1", None);
    fs::create_dir_all(root.host_path("/sys/block/vdc/vdc1")).unwrap();
    let mounts = json!([["data.1", "/data"]]);
    let aliases = json!({"data": "/dev/vdc"});
    let config = Config {
        mounts: Some(&mounts),
        device_aliases: Some(&aliases),
        ..Config::default()
    };
    let done = apply(&root, config, &mut Vec::new()).unwrap().unwrap();
    assert_eq!(
        done.added,
        [format!(
            "/dev/vdc1\t/data\tauto\t{SYSTEMD_OPTIONS},comment=cloudconfig\t0\t2"
        )]
    );
    let bad = json!(["/dev/vdc"]);
    let config = Config {
        mounts: Some(&mounts),
        device_aliases: Some(&bad),
        ..Config::default()
    };
    let err = apply(&root, config, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("device_aliases [\"/dev/vdc\"] is not a map"),
        "{err}"
    );
}

/// A swap file that cannot be made (too large, a size that is no size) fails the step, but the
/// volumes are still written to fstab, as cloud-init's `handle_swapcfg` only warns; with
/// nothing else asked, the swap's error is the step's.
#[test]
fn a_swap_file_that_cannot_be_made_does_not_keep_the_mounts_out() {
    for swap_config in [
        json!({"filename": "/var/swapfile", "size": "100T"}),
        json!({"filename": "/var/swapfile", "size": "lots"}),
    ] {
        let (_dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
        let mounts = json!([["/dev/vdb", "/data"]]);
        let config = Config {
            mounts: Some(&mounts),
            swap: swap_config.as_object(),
            ..Config::default()
        };
        let done = apply(&root, config, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(done.failed.len(), 1, "{swap_config}: {done:?}");
        assert!(done.failed[0].starts_with("swap: "), "{done:?}");
        let fstab = fs::read_to_string(root.host_path(FSTAB)).unwrap();
        assert!(fstab.contains("/dev/vdb\t/data\t"), "{fstab}");
        assert!(!fstab.contains("swapfile"), "{fstab}");
        assert!(!root.host_path("/var/swapfile").exists());

        // Nothing but the swap asked: its error.
        let (_dir, root) = root_with("UUID=r / ext4 defaults 0 1\n");
        fs::remove_dir_all(root.host_path("/sys/block/vdb")).unwrap();
        let config = Config {
            swap: swap_config.as_object(),
            ..Config::default()
        };
        assert!(
            apply(&root, config, &mut Vec::new()).is_err(),
            "{swap_config}"
        );
    }
}
