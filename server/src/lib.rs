//! metaboot-server: the instance-metadata chain (namespace proxy → agent → API) and the
//! registry it answers from.

pub mod admin;
pub mod agent;
pub mod api;
pub mod cli;
pub mod proxy;
pub mod store;

pub use cli::{Cli, run};
