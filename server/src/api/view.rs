//! One instance as the API renders it: the record, its ports, and the documents rendered from
//! them once (per version) and then served from memory until the cache drops the view.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use metaboot_proto::{Ec2Version, OpenStackVersion};

use super::network_data;
use super::random_seed::{self, RANDOM_SEED_TEXT_LEN};
use super::tree::Node;
use crate::store::{Instance, Network, Port};

/// A rendered `meta_data.json`: either complete, or split around a fresh `random_seed`.
#[derive(Debug)]
pub enum MetaDataDoc {
    Fixed(Bytes),
    Seeded { rest: Bytes },
}

impl MetaDataDoc {
    /// The body for one request: a seeded document gets new random bytes every time.
    pub fn body(&self) -> Bytes {
        match self {
            Self::Fixed(body) => body.clone(),
            Self::Seeded { rest } => {
                const HEAD: &[u8] = b"{\"random_seed\":\"";
                let mut seed = [0u8; RANDOM_SEED_TEXT_LEN];
                random_seed::fill(&mut seed);
                let mut out =
                    BytesMut::with_capacity(HEAD.len() + RANDOM_SEED_TEXT_LEN + 2 + rest.len());
                out.extend_from_slice(HEAD);
                out.extend_from_slice(&seed);
                out.extend_from_slice(b"\",");
                // `rest` is the document without its opening brace.
                out.extend_from_slice(rest);
                out.freeze()
            }
        }
    }
}

/// An instance with everything the API serves for it.
#[derive(Debug)]
pub struct InstanceView {
    /// The record, without its user data: that is in [`InstanceView::user_data`].
    pub instance: Instance,
    pub ports: Vec<(Port, Network)>,
    /// Moved out of `instance` once, so every EC2 tree, answer and drive file holds a cheap
    /// clone of these bytes rather than a copy of its own.
    user_data: Option<Bytes>,
    meta_data: [OnceLock<MetaDataDoc>; OpenStackVersion::ALL.len()],
    network_data: OnceLock<Bytes>,
    ec2: [OnceLock<Node>; Ec2Version::ALL.len()],
}

impl InstanceView {
    pub fn new(mut instance: Instance, ports: Vec<(Port, Network)>) -> Self {
        let user_data = instance.user_data.take().map(Bytes::from);
        Self {
            instance,
            ports,
            user_data,
            meta_data: Default::default(),
            network_data: OnceLock::new(),
            ec2: Default::default(),
        }
    }

    /// The instance's user data, shared: a clone is a reference count, not a copy.
    pub fn user_data(&self) -> Option<&Bytes> {
        self.user_data.as_ref()
    }

    /// The first fixed IPv4 address of the instance (EC2 `local-ipv4`); a learned address's
    /// placeholder is none.
    pub fn first_ipv4(&self) -> Option<IpAddr> {
        self.ports
            .iter()
            .filter(|(port, _)| !port.ip_learned())
            .flat_map(|(port, _)| port.ips())
            .find(IpAddr::is_ipv4)
    }

    /// `meta_data.json` of a version, rendered by `render` the first time it is asked for.
    pub fn meta_data(
        &self,
        version: OpenStackVersion,
        render: impl FnOnce() -> MetaDataDoc,
    ) -> Bytes {
        self.meta_data[version as usize].get_or_init(render).body()
    }

    pub fn network_data(&self) -> Bytes {
        self.network_data
            .get_or_init(|| network_data::render(&self.ports))
            .clone()
    }

    /// The EC2 tree of a version, built by `build` the first time. `local-ipv4` falls back to
    /// the request address when the instance has no fixed IPv4 address, so that tree is built
    /// per request.
    pub fn ec2(&self, version: Ec2Version, build: impl FnOnce() -> Node) -> Cow<'_, Node> {
        if self.first_ipv4().is_none() {
            return Cow::Owned(build());
        }
        Cow::Borrowed(self.ec2[version as usize].get_or_init(build))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ec2;
    use crate::api::rendering::Rendering;

    /// A guest walking every EC2 version must not make the cached view hold one copy of its
    /// user data per version tree.
    #[test]
    fn every_ec2_tree_shares_the_view_s_user_data() {
        let view = crate::configdrive::tests::view(None, Some(b"#cloud-config\n"));
        let shared = view.user_data().unwrap().as_ptr();
        for version in Ec2Version::ALL {
            let tree = ec2::tree(&view, version, &Rendering::default(), "");
            let Some(Node::Leaf(data)) = tree.find(&["user-data".into()]) else {
                panic!("{version:?}: no user-data");
            };
            assert_eq!(data, "#cloud-config\n");
            assert_eq!(data.as_ptr(), shared, "{version:?}: a copy");
        }
    }
}
