//! Config drives (docs/protocol.md §9.6): an instance's documents laid out as nova's
//! `metadata_for_config_drive` lays them out (openstack/nova `nova/api/metadata/base.py`), then
//! written into an ISO 9660 or vfat image labelled `config-2` as nova's `ConfigDriveBuilder`
//! does (`nova/virt/configdrive.py`, see [`image`]).
//!
//! Every document is rendered by the API's own code from the same registry records, so each
//! is byte for byte what the metadata service answers for the instance, except `random_seed`
//! (fresh bytes on every rendering, as nova) and `admin_pass` in `meta_data.json`, which only a
//! config drive carries.

mod file;
pub mod image;
mod interrupt;

use bytes::Bytes;
use metaboot_proto::{Ec2Version, OpenStackVersion};

use crate::api::ec2;
use crate::api::openstack::{self, META_DATA, NETWORK_DATA, USER_DATA, VENDOR_DATA, VENDOR_DATA2};
use crate::api::tree::Node;
use crate::api::{InstanceView, Rendering};

pub use file::DriveFile;
pub use image::{DriveFormat, ImageError, build};

/// The EC2 versions nova leaves off a config drive by default (`[api]
/// config_drive_skip_versions`): every one but the newest, which stays with `latest`.
pub const EC2_SKIPPED_VERSIONS: [Ec2Version; 8] = [
    Ec2Version::V1_0,
    Ec2Version::V2007_01_19,
    Ec2Version::V2007_03_01,
    Ec2Version::V2007_08_29,
    Ec2Version::V2007_10_10,
    Ec2Version::V2007_12_15,
    Ec2Version::V2008_02_01,
    Ec2Version::V2008_09_01,
];

/// The name of `latest` in both trees.
pub const LATEST: &str = "latest";

/// Every file of the instance's config drive, in nova's order: the EC2 tree (`ec2/<version>/`
/// `meta-data.json` and `user-data`) for the versions nova keeps, then the OpenStack tree
/// (`openstack/<version>/…`) for every version and `latest`.
pub fn contents(view: &InstanceView, rendering: &Rendering) -> Vec<DriveFile> {
    let mut files = Vec::new();
    let mut add = |path: String, data: Bytes| files.push(DriveFile { path, data });

    let ec2_versions = Ec2Version::ALL
        .into_iter()
        .filter(|v| !EC2_SKIPPED_VERSIONS.contains(v))
        .map(|v| (v.name(), v))
        .chain([(LATEST, Ec2Version::LATEST)]);
    for (name, version) in ec2_versions {
        // No request address on a drive: `local-ipv4` is the first fixed IPv4 or empty.
        let tree = ec2::tree(view, version, rendering, "");
        if let Some(Node::Leaf(user_data)) = tree.find(&["user-data".into()]) {
            add(format!("ec2/{name}/user-data"), user_data.clone());
        }
        if let Some(meta) = tree.find(&["meta-data".into()]) {
            let mut json = node_json(meta);
            // An int in nova's dict, so `json.dumps` writes a number (the API answers `0`).
            json[ec2::AMI_LAUNCH_INDEX] = view.instance.launch_index.into();
            add(
                format!("ec2/{name}/meta-data.json"),
                Bytes::from(json.to_string()),
            );
        }
    }

    let openstack_versions = OpenStackVersion::ALL
        .into_iter()
        .map(|v| (v.date(), v))
        .chain([(LATEST, OpenStackVersion::LATEST)]);
    for (name, version) in openstack_versions {
        use OpenStackVersion as V;
        let dir = format!("openstack/{name}");
        // As nova's libvirt driver adds it only `if admin_pass`: an empty one is none.
        let admin_pass = view
            .instance
            .admin_pass
            .clone()
            .filter(|pass| !pass.is_empty());
        let meta = openstack::render_meta_data_with(view, version, rendering, admin_pass);
        add(format!("{dir}/{META_DATA}"), meta.body());
        if let Some(user_data) = view.user_data() {
            add(format!("{dir}/{USER_DATA}"), user_data.clone());
        }
        if version >= V::Havana {
            add(
                format!("{dir}/{VENDOR_DATA}"),
                rendering.vendor.vendor_data.clone(),
            );
        }
        if version >= V::Liberty {
            add(format!("{dir}/{NETWORK_DATA}"), view.network_data());
        }
        if version >= V::NewtonTwo {
            add(
                format!("{dir}/{VENDOR_DATA2}"),
                rendering.vendor.vendor_data2.clone(),
            );
        }
    }
    files
}

/// An EC2 tree node as nova's `meta-data.json` holds it: directories as objects (a directory
/// listed by another name, the public-keys `0=<name>`, with it as `_name`: nova means to
/// delete it, but its `del data['public-keys']['0']['_name']` looks outside `meta-data` and the
/// KeyError is swallowed), lists as arrays, values as strings (the caller makes
/// `ami-launch-index` the number it is in nova).
fn node_json(node: &Node) -> serde_json::Value {
    match node {
        Node::Dir { entries, name } => serde_json::Value::Object(
            name.iter()
                .map(|name| {
                    (
                        "_name".to_owned(),
                        serde_json::Value::from(name.to_string()),
                    )
                })
                .chain(
                    entries
                        .iter()
                        .map(|(key, child)| (key.to_string(), node_json(child))),
                )
                .collect(),
        ),
        Node::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| serde_json::Value::String(item.clone()))
                .collect(),
        ),
        Node::Leaf(value) => serde_json::Value::String(String::from_utf8_lossy(value).into()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
