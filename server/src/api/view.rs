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
    pub instance: Instance,
    pub ports: Vec<(Port, Network)>,
    meta_data: [OnceLock<MetaDataDoc>; OpenStackVersion::ALL.len()],
    network_data: OnceLock<Bytes>,
    ec2: [OnceLock<Node>; Ec2Version::ALL.len()],
}

impl InstanceView {
    pub fn new(instance: Instance, ports: Vec<(Port, Network)>) -> Self {
        Self {
            instance,
            ports,
            meta_data: Default::default(),
            network_data: OnceLock::new(),
            ec2: Default::default(),
        }
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
