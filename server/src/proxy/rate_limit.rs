//! An optional per-guest rate limit (Neutron's `[metadata_rate_limiting]`, off by default):
//! at most `limit` requests per `window` from one address; past it, 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Guests tracked at once; past it, finished windows are dropped (at most once per window),
/// and while every tracked window is still running a new address goes uncounted: memory and
/// the time a request spends under the lock stay bounded when one guest sends from countless
/// addresses (IPv6 without port security), as haproxy's stick table forgets entries when full.
pub const MAX_TRACKED_GUESTS: usize = 65_536;
/// Neutron's default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Fixed-window counters per guest address.
pub struct RateLimit {
    limit: u32,
    window: Duration,
    windows: Mutex<Windows>,
}

/// The running windows, and when finished ones were last dropped.
#[derive(Default)]
struct Windows {
    by_guest: HashMap<IpAddr, (Instant, u32)>,
    swept: Option<Instant>,
}

impl RateLimit {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::default(),
        }
    }

    /// Counts a request; false when the guest is over its limit.
    pub fn allow(&self, guest: IpAddr) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let Windows { by_guest, swept } = &mut *windows;
        if by_guest.len() >= MAX_TRACKED_GUESTS && !by_guest.contains_key(&guest) {
            let window = self.window;
            if swept.is_none_or(|at| now.duration_since(at) >= window) {
                by_guest.retain(|_, (start, _)| now.duration_since(*start) < window);
                *swept = Some(now);
            }
            if by_guest.len() >= MAX_TRACKED_GUESTS {
                return true;
            }
        }
        let (start, count) = by_guest.entry(guest).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_guest_separately_and_resets() {
        let limit = RateLimit::new(3, Duration::from_millis(50));
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        assert!(limit.allow(a) && limit.allow(a) && limit.allow(a));
        assert!(!limit.allow(a));
        assert!(limit.allow(b));
        std::thread::sleep(Duration::from_millis(60));
        assert!(limit.allow(a));
    }

    /// A guest sending from more addresses than are tracked: the table stays at its bound,
    /// the addresses it holds are still limited, and a full table of running windows is
    /// swept once per window, not on every request.
    #[test]
    fn the_table_stays_bounded_when_addresses_are_countless() {
        let limit = RateLimit::new(1, Duration::from_secs(3600));
        let address =
            |n: usize| IpAddr::from(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | n as u128));
        for n in 0..MAX_TRACKED_GUESTS {
            assert!(limit.allow(address(n)));
        }
        assert_eq!(limit.windows.lock().unwrap().swept, None);
        assert!(
            limit.allow(address(MAX_TRACKED_GUESTS)),
            "uncounted: the table is full"
        );
        let swept = limit.windows.lock().unwrap().swept;
        assert!(swept.is_some(), "a full table is swept");
        for n in MAX_TRACKED_GUESTS + 1..MAX_TRACKED_GUESTS + 1000 {
            assert!(limit.allow(address(n)), "uncounted while the table is full");
        }
        assert!(!limit.allow(address(0)), "a tracked guest is still limited");
        let windows = limit.windows.lock().unwrap();
        assert_eq!(windows.by_guest.len(), MAX_TRACKED_GUESTS);
        assert_eq!(windows.swept, swept, "not swept again within the window");
    }
}
