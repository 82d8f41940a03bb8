//! The drive's layout, from records built in memory.

use std::collections::BTreeMap;

use super::*;
use crate::store::{Instance, KeyPair};

/// The view of instance `web`, with a key pair, `admin_pass` and `user_data` (also used by
/// other modules' tests).
pub(crate) fn view(admin_pass: Option<&str>, user_data: Option<&[u8]>) -> InstanceView {
    let instance = Instance {
        uuid: "d8e02d56-2648-49a3-bf97-6be8f1204f38".into(),
        ec2_id: 1,
        project: "p1".into(),
        name: "web".into(),
        hostname: "web".into(),
        availability_zone: None,
        launch_index: 0,
        key_pairs: vec![KeyPair {
            name: "k".into(),
            kind: "ssh".into(),
            data: "ssh-ed25519 AAAA k".into(),
        }],
        user_data: user_data.map(<[u8]>::to_vec),
        meta: BTreeMap::new(),
        admin_pass: admin_pass.map(str::to_owned),
        password: None,
        created: "now".into(),
    };
    InstanceView::new(instance, Vec::new())
}

fn file<'a>(files: &'a [DriveFile], path: &str) -> Option<&'a DriveFile> {
    files.iter().find(|f| f.path == path)
}

#[test]
fn nova_layout_ec2_first_then_every_openstack_version() {
    let files = contents(&view(None, Some(b"#!/bin/sh\n")), &Rendering::default());
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths[..4],
        [
            "ec2/2009-04-04/user-data",
            "ec2/2009-04-04/meta-data.json",
            "ec2/latest/user-data",
            "ec2/latest/meta-data.json"
        ]
    );
    assert_eq!(
        paths[4..6],
        [
            "openstack/2012-08-10/meta_data.json",
            "openstack/2012-08-10/user_data"
        ]
    );
    // 10 dated versions and latest; vendor data from Havana, network data from Liberty,
    // vendor data 2 from Newton (two).
    let count = |name: &str| paths.iter().filter(|p| p.ends_with(name)).count();
    assert_eq!(count("/meta_data.json"), 11);
    assert_eq!(count("/vendor_data.json"), 9);
    assert_eq!(count("/network_data.json"), 8);
    assert_eq!(count("/vendor_data2.json"), 6);
    assert!(file(&files, "ec2/2008-09-01/meta-data.json").is_none());
    assert_eq!(
        file(&files, "openstack/latest/user_data").unwrap().data,
        "#!/bin/sh\n"
    );
    assert_eq!(
        file(&files, "openstack/latest/network_data.json")
            .unwrap()
            .data,
        "{}"
    );
}

#[test]
fn admin_pass_is_on_the_drive_and_nothing_without_user_data() {
    let files = contents(&view(Some("pw"), None), &Rendering::default());
    let meta: serde_json::Value = serde_json::from_slice(
        &file(&files, "openstack/latest/meta_data.json")
            .unwrap()
            .data,
    )
    .unwrap();
    assert_eq!(meta["admin_pass"], "pw");
    assert_eq!(meta["hostname"], "web.novalocal");
    assert!(files.iter().all(|f| !f.path.contains("user")));
    let ec2: serde_json::Value =
        serde_json::from_slice(&file(&files, "ec2/latest/meta-data.json").unwrap().data).unwrap();
    assert_eq!(ec2["public-keys"]["0"]["openssh-key"], "ssh-ed25519 AAAA k");
    // As nova leaves it (its delete of `_name` misses).
    assert!(
        ec2["public-keys"]["0"]["_name"]
            .as_str()
            .is_some_and(|name| name.starts_with("0=")),
        "{ec2}"
    );
    assert_eq!(ec2["security-groups"], serde_json::json!(["default"]));
    assert_eq!(ec2["local-ipv4"], "", "no port, no request address");
    let without = contents(&view(None, None), &Rendering::default());
    let meta: serde_json::Value = serde_json::from_slice(
        &file(&without, "openstack/latest/meta_data.json")
            .unwrap()
            .data,
    )
    .unwrap();
    assert!(meta.get("admin_pass").is_none());
    // An empty one is none, as nova's libvirt driver adds it only `if admin_pass`.
    let empty = contents(&view(Some(""), None), &Rendering::default());
    for file in empty.iter().filter(|f| f.path.ends_with("meta_data.json")) {
        let meta: serde_json::Value = serde_json::from_slice(&file.data).unwrap();
        assert!(meta.get("admin_pass").is_none(), "{}", file.path);
    }
}

/// nova's `ami-launch-index` is the int `launch_index`, so its `meta-data.json` has a number
/// (the API's plain-text answer stays `0`).
#[test]
fn ec2_ami_launch_index_is_a_number_as_in_nova() {
    let files = contents(&view(None, None), &Rendering::default());
    for path in ["ec2/2009-04-04/meta-data.json", "ec2/latest/meta-data.json"] {
        let ec2: serde_json::Value =
            serde_json::from_slice(&file(&files, path).unwrap().data).unwrap();
        assert_eq!(
            ec2["ami-launch-index"],
            serde_json::json!(0),
            "{path}: {ec2}"
        );
    }
}

/// An instance registered without a zone is in nova's default zone on the drive too, in the EC2
/// `placement` and in `meta_data.json`, as in nova's, never empty or null.
#[test]
fn an_instance_without_a_zone_is_in_the_default_zone() {
    let files = contents(&view(None, None), &Rendering::default());
    let json = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&file(&files, path).unwrap().data).unwrap()
    };
    for path in ["ec2/2009-04-04/meta-data.json", "ec2/latest/meta-data.json"] {
        assert_eq!(
            json(path)["placement"]["availability-zone"],
            crate::api::DEFAULT_AVAILABILITY_ZONE,
            "{path}"
        );
    }
    for path in [
        "openstack/2012-08-10/meta_data.json",
        "openstack/latest/meta_data.json",
    ] {
        assert_eq!(
            json(path)["availability_zone"],
            crate::api::DEFAULT_AVAILABILITY_ZONE,
            "{path}"
        );
    }
}
