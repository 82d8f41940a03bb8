//! Deadline-based polling: wait for a condition instead of sleeping a guessed time.

use std::thread;
use std::time::{Duration, Instant};

/// How often the polling helpers re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `ready` every [`POLL_INTERVAL`] until it returns true or `deadline` passes.
///
/// Returns whether the condition became true. The deadline is for the whole wait, not per attempt.
pub fn wait_until(deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Calls `attempt` until it succeeds or `deadline` passes, waiting `interval` between attempts.
///
/// Returns the first success, or the last error when the deadline passed.
pub fn wait_until_ok<T, E>(
    deadline: Instant,
    interval: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(err) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(err);
                }
                thread::sleep(interval.min(deadline - now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn wait_until_returns_as_soon_as_the_condition_holds() {
        let calls = Cell::new(0);
        let start = Instant::now();
        let ok = wait_until(start + Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        });
        assert!(ok);
        assert_eq!(calls.get(), 3);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn wait_until_gives_up_at_the_deadline() {
        let start = Instant::now();
        assert!(!wait_until(start + Duration::from_millis(120), || false));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(120));
        assert!(waited < Duration::from_secs(1));
    }

    #[test]
    fn wait_until_ok_returns_the_last_error_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(60);
        let result: Result<(), u32> = wait_until_ok(deadline, Duration::from_millis(10), || Err(7));
        assert_eq!(result, Err(7));
        let mut n = 0;
        let ok: Result<u32, u32> = wait_until_ok(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n < 3 { Err(n) } else { Ok(n) }
            },
        );
        assert_eq!(ok, Ok(3));
    }
}
