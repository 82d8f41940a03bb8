//! Loopback ports for a chain's listeners, from a range the kernel never hands out on its own.

use std::net::TcpListener;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports handed out: below the kernel's ephemeral range (32768 and up), so no outgoing
/// connection of a parallel test (or of the bench's load) takes one between the check and the
/// bind.
pub const PORTS: Range<u16> = 20_000..32_000;

/// A free TCP port on 127.0.0.1 in [`PORTS`] (checked by binding it; a parallel test may still
/// race for it, which [`super::Chain::start_proxy`] retries).
///
/// # Panics
/// When every port of [`PORTS`] is taken: nothing can listen then, and the caller (a test or
/// the bench) stops with this message.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    // Test binaries run at once: each process starts somewhere else in the range.
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        // `n` < `span`, which came from a u16: the conversion cannot fail.
        let port = PORTS.start + u16::try_from(n).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback in {PORTS:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_stay_below_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let ephemeral_start: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        assert!(PORTS.end <= ephemeral_start, "{PORTS:?} overlaps {range}");
        for _ in 0..50 {
            let port = free_port();
            assert!(PORTS.contains(&port), "{port} is outside {PORTS:?}");
        }
    }

    #[test]
    fn consecutive_ports_differ() {
        assert_ne!(free_port(), free_port());
    }
}
