//! metaboot-server: the instance-metadata chain (namespace proxy → agent → API) and the
//! registry it answers from.

pub mod admin;
pub mod agent;
pub mod all;
pub mod api;
pub mod cli;
pub mod configdrive;
pub mod follow;
pub mod http;
pub mod leases;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod store;
pub mod user_file;

pub use cli::{Cli, run};
