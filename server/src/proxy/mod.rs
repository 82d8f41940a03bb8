//! The namespace proxy (the role of neutron-ns-metadata-proxy / haproxy, docs/protocol.md §2.2
//! and §3): takes guests' requests inside a router or DHCP namespace, strips what they must not
//! send, adds who they are and where they came from, and forwards to the agent.

mod addresses;
mod listener;
pub mod namespace;
pub mod rate_limit;
pub mod sanitize;

pub use listener::{Forward, ProxyArgs, ProxyHandler, ToAgent, serve};
pub use rate_limit::RateLimit;
pub use sanitize::{ProxyScope, sanitize, upstream_headers};
