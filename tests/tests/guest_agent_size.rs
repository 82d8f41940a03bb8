//! The guest agent as images ship it (static, `guest` profile) stays under its size bound
//! ([`workspace::GUEST_AGENT_MAX_BYTES`], 3 MiB; `agent/README.md` says what takes the space).
//! The binary is the one the other tests build ([`shipped`]): cargo rebuilds nothing for it.

use metaboot_harness::workspace;
use metaboot_tests::guest_agent::shipped;

#[test]
fn the_static_guest_agent_stays_under_its_size_bound() {
    let bin = shipped();
    let size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", bin.display()))
        .len();
    assert!(
        size <= workspace::GUEST_AGENT_MAX_BYTES,
        "{} is {size} bytes, above the {} byte bound: see agent/README.md for what takes the \
         space, and cut there",
        bin.display(),
        workspace::GUEST_AGENT_MAX_BYTES
    );
}
