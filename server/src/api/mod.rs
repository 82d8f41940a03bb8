//! The metadata REST API (the role of nova-api-metadata, docs/protocol.md §1): identifies the
//! instance behind a request, then answers from the OpenStack or the EC2 tree.

mod cache;
pub mod ec2;
pub mod identify;
mod listener;
#[cfg(test)]
mod meta_data_budget;
mod metadata;
mod network_data;
pub mod openstack;
mod password;
pub mod path;
mod random_seed;
mod rendering;
pub mod token;
pub mod tree;
pub mod vendor;
mod view;

pub use cache::{MAX_CACHED_INSTANCES, ViewCache};
pub use identify::Identify;
pub use listener::{ApiArgs, ApiHandler, serve};
pub use metadata::{Api, MetadataRequest};
pub use random_seed::RANDOM_SEED_BYTES;
pub use rendering::{DEFAULT_AVAILABILITY_ZONE, DEFAULT_DHCP_DOMAIN, Rendering};
pub use token::Tokens;
pub use vendor::VendorDocs;
pub use view::InstanceView;

pub use crate::http::Answer;
