//! The EC2-compatible tree (docs/protocol.md §1.9): `/<version>/meta-data/…` and
//! `/<version>/user-data`.

use std::collections::BTreeMap;

use metaboot_proto::Ec2Version;

use super::rendering::Rendering;
use super::tree::Node;
use super::view::InstanceView;

/// The image id every instance reports (metaboot has no image registry).
pub const IMAGE_EC2_ID: &str = "ami-00000001";
/// The flavor name every instance reports.
pub const INSTANCE_TYPE: &str = "m1.small";
/// The security groups every instance reports.
pub const SECURITY_GROUP: &str = "default";
/// The key of the instance's launch index: nova's int `launch_index`, text in the tree (the
/// API's plain-text answer), a number in a config drive's `meta-data.json`.
pub const AMI_LAUNCH_INDEX: &str = "ami-launch-index";

/// Builds the tree of one EC2 version (nova's `get_ec2_metadata`). `address` is the request
/// address, used for `local-ipv4` when the instance has no fixed IPv4 address.
pub fn tree(
    view: &InstanceView,
    version: Ec2Version,
    rendering: &Rendering,
    address: &str,
) -> Node {
    use Ec2Version as V;
    let instance = &view.instance;
    let hostname = rendering.hostname(&instance.hostname);
    let mut md: BTreeMap<String, Node> = BTreeMap::new();
    let mut put = |key: &str, node: Node| {
        md.insert(key.to_owned(), node);
    };
    put("ami-id", Node::leaf(IMAGE_EC2_ID));
    put(
        AMI_LAUNCH_INDEX,
        Node::leaf(instance.launch_index.to_string()),
    );
    put("ami-manifest-path", Node::leaf("FIXME"));
    put(
        "instance-id",
        Node::leaf(format!("i-{:08x}", instance.ec2_id)),
    );
    put("hostname", Node::leaf(hostname.clone()));
    let local_ipv4 = view
        .first_ipv4()
        .map_or_else(|| address.to_owned(), |ip| ip.to_string());
    put("local-ipv4", Node::leaf(local_ipv4));
    put(
        "reservation-id",
        Node::leaf(format!("r-{:08x}", instance.ec2_id)),
    );
    put(
        "security-groups",
        Node::List(vec![SECURITY_GROUP.to_owned()]),
    );
    if !instance.key_pairs.is_empty() {
        // meta-data/public-keys lists `N=<name>`; public-keys/N lists `openssh-key`.
        let keys = instance
            .key_pairs
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let entry = Node::named_dir(
                    BTreeMap::from([("openssh-key".to_owned(), Node::leaf(key.data.clone()))]),
                    Some(format!("{index}={}", key.name)),
                );
                (index.to_string(), entry)
            })
            .collect();
        put("public-keys", Node::dir(keys));
    }
    if version >= V::V2007_01_19 {
        put("local-hostname", Node::leaf(hostname.clone()));
        put("public-hostname", Node::leaf(hostname));
        put("public-ipv4", Node::leaf(""));
    }
    if version >= V::V2007_08_29 {
        put("instance-type", Node::leaf(INSTANCE_TYPE));
    }
    if version >= V::V2007_12_15 {
        put(
            "block-device-mapping",
            Node::dir(BTreeMap::from([
                ("ami".to_owned(), Node::leaf("vda")),
                ("root".to_owned(), Node::leaf("/dev/vda")),
            ])),
        );
    }
    if version >= V::V2008_02_01 {
        let zone = rendering.availability_zone(instance.availability_zone.as_deref());
        put(
            "placement",
            Node::dir(BTreeMap::from([(
                "availability-zone".to_owned(),
                Node::leaf(zone),
            )])),
        );
    }
    if version >= V::V2008_09_01 {
        put("instance-action", Node::leaf("none"));
    }
    let mut root = BTreeMap::from([("meta-data".to_owned(), Node::dir(md))]);
    if let Some(data) = view.user_data() {
        root.insert("user-data".to_owned(), Node::Leaf(data.clone()));
    }
    Node::dir(root)
}
