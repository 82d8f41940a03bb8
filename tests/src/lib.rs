//! Helpers for the end-to-end suite in `tests/tests/`: the metadata chain as real processes,
//! a guest's HTTP client that speaks from a chosen address or namespace, registering a test's
//! networks and instances, the guest agent and a guest for it, and the rules for tests that
//! need root.

pub mod chain;
pub mod guest;
pub mod guest_agent;
pub mod guest_root;
pub mod load;
pub mod netns;
pub mod prerequisite;
pub mod registry;

pub use chain::Chain;
