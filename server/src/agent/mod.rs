//! The metadata agent (the role of neutron-metadata-agent, docs/protocol.md §2.3–2.4): finds the
//! guest's port from the proxy's headers, then asks the API with signed instance headers.

mod forwarded;
mod listener;
pub mod lookup;
mod relay;

pub use forwarded::{ForwardedError, guest_address};
pub use listener::{AgentArgs, AgentHandler, ApiTarget, HttpApi, Question, serve};
pub use lookup::{Owner, Scope};
pub use relay::{Agent, Resolved};

#[cfg(test)]
mod tests;
