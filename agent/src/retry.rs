//! The one retry driver: capped exponential backoff until a deadline, retrying only transient
//! failures, logging every failed attempt. Fetches, includes and mounts all go through it.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// First wait after a failed attempt; it doubles after each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How long a provisioning pass keeps retrying the metadata service (cloud-init's ds max_wait
/// is one round; 120 s covers a slow network bring-up).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// Errors that know whether trying again can help.
pub trait Transient {
    /// True for connect errors, timeouts, 5xx, 429 and the like; false for 4xx, bad data, limits.
    fn is_transient(&self) -> bool;
}

/// The outcome of a retried operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E: std::error::Error + 'static> {
    /// A failure retrying cannot fix; returned at once.
    #[error(transparent)]
    Permanent(E),
    /// Transient failures until the deadline.
    #[error("Gave up after {attempts} attempts in {elapsed_ms} ms (deadline reached)")]
    Deadline {
        attempts: u32,
        elapsed_ms: u128,
        #[source]
        last: E,
    },
    /// Transient failures in each of the attempts allowed.
    #[error("Gave up after {attempts} attempts")]
    Attempts {
        attempts: u32,
        #[source]
        last: E,
    },
}

impl<E: std::error::Error + 'static> RetryError<E> {
    /// The underlying error of the last attempt.
    pub fn last(&self) -> &E {
        match self {
            RetryError::Permanent(err)
            | RetryError::Deadline { last: err, .. }
            | RetryError::Attempts { last: err, .. } => err,
        }
    }
}

/// Backoff bounds and a deadline shared by every operation of one pass.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// No attempt starts after it, and an attempt is given the time left before it. `None`:
    /// only `attempts` bounds the retries, and each attempt has the time its own timeout
    /// allows.
    deadline: Option<Instant>,
    base: Duration,
    cap: Duration,
    /// At most this many attempts, when set (a deadline still applies).
    attempts: Option<u32>,
}

impl Retry {
    /// Retries until `deadline` with the default backoff.
    pub fn until(deadline: Instant) -> Self {
        Retry {
            deadline: Some(deadline),
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
            attempts: None,
        }
    }

    /// Retries for `budget` from now (a pass's `deadline_secs`). A zero budget is one attempt
    /// with no time bound of its own, so that each request has its full timeout (cloud-init's
    /// `max_wait: -1`, one round), not a run whose every request is given nothing.
    pub fn for_budget(budget: Duration) -> Self {
        let now = Instant::now();
        if budget.is_zero() {
            Retry::until(now).attempts_only(1)
        } else {
            Retry::until(now + budget)
        }
    }

    /// Same bounds, at most `attempts` attempts (at least one).
    pub fn with_attempts(self, attempts: u32) -> Self {
        Retry {
            attempts: Some(attempts.max(1)),
            ..self
        }
    }

    /// Same backoff, no deadline: at most `attempts` attempts (at least one), each with the
    /// time its own timeout allows.
    pub fn attempts_only(self, attempts: u32) -> Self {
        Retry {
            deadline: None,
            attempts: Some(attempts.max(1)),
            ..self
        }
    }

    /// Same backoff, a deadline `budget` from now, whatever this one's (an operation with a
    /// budget of its own), and no cap on attempts.
    pub fn afresh(self, budget: Duration) -> Self {
        Retry {
            deadline: Some(Instant::now() + budget),
            attempts: None,
            ..self
        }
    }

    /// Same deadline, other backoff bounds.
    pub fn with_backoff(self, base: Duration, cap: Duration) -> Self {
        Retry { base, cap, ..self }
    }

    /// Time left before the deadline (zero once past it; [`Duration::MAX`] without one).
    pub fn remaining(&self) -> Duration {
        self.deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        })
    }

    /// The wait after the `attempt`-th failure (1-based): base · 2^(attempt−1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Runs `op` until it succeeds, fails permanently, or the deadline passes (or the attempts
    /// run out). `op` gets the time left ([`Retry::remaining`], at least 1 ms), to bound its own
    /// timeouts. At least one attempt is always made.
    pub fn run<T, E>(
        &self,
        what: &str,
        mut op: impl FnMut(Duration) -> Result<T, E>,
    ) -> Result<T, RetryError<E>>
    where
        E: std::error::Error + Transient + Display + 'static,
    {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match op(self.remaining().max(Duration::from_millis(1))) {
                Ok(value) => {
                    if attempt > 1 {
                        tracing::info!(what, attempt, "succeeded after retrying");
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            // The whole chain: a wrapper ("none of the metadata URLs answered") keeps what
            // went wrong (a 503, a refused connection) in its source.
            let shown = crate::log::chain(&error);
            if !error.is_transient() {
                tracing::warn!(what, attempt, error = %shown, "failed (not retried)");
                return Err(RetryError::Permanent(error));
            }
            if self.attempts.is_some_and(|most| attempt >= most) {
                tracing::warn!(what, attempt, error = %shown, "failed; no attempts left");
                return Err(RetryError::Attempts {
                    attempts: attempt,
                    last: error,
                });
            }
            let remaining = self.remaining();
            if remaining.is_zero() {
                tracing::warn!(what, attempt, error = %shown, "failed; deadline reached");
                return Err(RetryError::Deadline {
                    attempts: attempt,
                    elapsed_ms: start.elapsed().as_millis(),
                    last: error,
                });
            }
            let wait = self.backoff(attempt).min(remaining);
            tracing::warn!(
                what,
                attempt,
                error = %shown,
                retry_in_ms = wait.as_millis() as u64,
                "failed; retrying"
            );
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fake {0}")]
    struct Fake(bool);

    impl Transient for Fake {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    fn fast(deadline: Duration) -> Retry {
        Retry::until(Instant::now() + deadline)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let retry = Retry::until(Instant::now());
        let waits: Vec<u64> = (1..=6).map(|n| retry.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5, 5]);
        assert_eq!(retry.backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let mut calls = 0;
        let got = fast(Duration::from_secs(5)).run("test", |_| {
            calls += 1;
            if calls < 3 {
                Err(Fake(true))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let mut calls = 0;
        let got: Result<(), _> = fast(Duration::from_secs(5)).run("test", |_| {
            calls += 1;
            Err(Fake(false))
        });
        assert!(matches!(got, Err(RetryError::Permanent(Fake(false)))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_deadline_stops_retrying() {
        let start = Instant::now();
        let mut calls = 0;
        let got: Result<(), _> = fast(Duration::from_millis(200)).run("test", |left| {
            calls += 1;
            assert!(left <= Duration::from_millis(200));
            Err(Fake(true))
        });
        let elapsed = start.elapsed();
        let Err(RetryError::Deadline { attempts, .. }) = got else {
            panic!("expected the deadline error");
        };
        assert_eq!(attempts, calls);
        assert!(calls >= 4, "only {calls} attempts");
        assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2));
    }

    #[test]
    fn a_cap_on_attempts_stops_retrying_before_the_deadline() {
        let mut calls = 0;
        let got: Result<(), _> = fast(Duration::from_secs(60))
            .with_attempts(3)
            .run("test", |_| {
                calls += 1;
                Err(Fake(true))
            });
        assert!(matches!(got, Err(RetryError::Attempts { attempts: 3, .. })));
        assert_eq!(calls, 3);
        // Zero attempts still makes one.
        let mut calls = 0;
        let _: Result<(), _> = fast(Duration::from_secs(60))
            .with_attempts(0)
            .run("test", |_| {
                calls += 1;
                Err(Fake(true))
            });
        assert_eq!(calls, 1);
    }

    /// `deadline_secs: 0` is one attempt given all the time its own timeout allows, not one
    /// given 1 ms; an operation with a budget of its own gets it whatever the pass has left.
    #[test]
    fn a_zero_budget_is_one_attempt_with_its_full_time() {
        let mut given = Vec::new();
        let got: Result<(), _> = Retry::for_budget(Duration::ZERO).run("test", |left| {
            given.push(left);
            Err(Fake(true))
        });
        assert!(matches!(got, Err(RetryError::Attempts { attempts: 1, .. })));
        assert_eq!(given, [Duration::MAX]);

        let spent = fast(Duration::ZERO);
        let own = spent.afresh(Duration::from_secs(30));
        assert!(own.remaining() > Duration::from_secs(29));
        let mut calls = 0;
        let _: Result<(), _> = spent.attempts_only(3).run("test", |left| {
            calls += 1;
            assert_eq!(left, Duration::MAX);
            Err(Fake(true))
        });
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_past_deadline_still_makes_one_attempt() {
        let mut calls = 0;
        let got: Result<(), _> = fast(Duration::ZERO).run("test", |_| {
            calls += 1;
            Err(Fake(true))
        });
        assert!(matches!(got, Err(RetryError::Deadline { attempts: 1, .. })));
        assert_eq!(calls, 1);
    }
}
