//! Wire formats both sides of metaboot share: the metadata addresses and ports, a port's
//! EUI-64 IPv6 addresses and its MAC read back from them, the OpenStack
//! and EC2 version lists, the header names of the proxy → agent → API protocol, the instance-id
//! signature, the RSA key of an OpenSSH key line (password post-back), percent-decoding, and the documents a guest reads (`meta_data.json`, `network_data.json`, vendor
//! data).

pub mod address;
pub mod eui64;
pub mod headers;
pub mod meta_data;
pub mod network_data;
pub mod percent;
pub mod signature;
pub mod ssh_key;
pub mod vendor_data;
pub mod versions;

pub use address::{
    METADATA_ADDRESSES, METADATA_IPV4, METADATA_IPV4_LISTEN, METADATA_IPV6, METADATA_IPV6_LISTEN,
    METADATA_PORT, METADATA_URL, METADATA_URL_IPV6, METADATA_URLS, ROUTER_PROXY_PORT,
};
pub use meta_data::{Device, KeyPair, MetaData};
pub use network_data::{Link, Network, NetworkData, Route, Service};
pub use signature::{sign, verify};
pub use versions::{Ec2Version, OpenStackVersion};
