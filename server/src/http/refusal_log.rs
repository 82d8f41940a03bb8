//! The log lines of request heads the connection loop refuses before any role sees them
//! (`h1/connection.rs`: 400, 408, 431, 501), bounded. A client can have heads refused as fast as
//! it opens connections, so each worker thread logs at most [`HEAD_REFUSALS_LOGGED`] of them per
//! [`HEAD_REFUSAL_LOG_WINDOW`]; the others are only counted (`metaboot_rejections_total`, by the
//! roles' [`Handler::refused_head`](crate::http::Handler::refused_head)), and the next line
//! logged says how many were left out. One budget per thread: no lock between the workers, and
//! a flood on one worker leaves the others' lines alone.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::peer::Peer;
use super::rejection::Rejection;

/// The window over which a worker thread's lines of refused heads are bounded.
pub const HEAD_REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(1);
/// Most lines of refused heads a worker thread logs per [`HEAD_REFUSAL_LOG_WINDOW`]: every
/// refusal of a client or two that misbehave, while a flood of them cannot bury the rest of the
/// log.
pub const HEAD_REFUSALS_LOGGED: u32 = 20;

// Room for a few clients' every refusal; at most a hundred lines a second per worker thread.
const _: () = assert!(
    HEAD_REFUSALS_LOGGED >= 10
        && HEAD_REFUSALS_LOGGED as u128 * 1000 <= 100 * HEAD_REFUSAL_LOG_WINDOW.as_millis()
);

/// The lines logged in the current window, and those left out since the last one logged.
#[derive(Debug, Default)]
pub struct LogBudget {
    /// When the current window started; `None` before the first line.
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl LogBudget {
    /// Whether a line may be logged at `now`: `Some` of how many were left out since the last
    /// one logged, or `None` (this one is left out).
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        let window_over = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= HEAD_REFUSAL_LOG_WINDOW);
        if window_over {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < HEAD_REFUSALS_LOGGED {
            self.logged += 1;
            Some(std::mem::take(&mut self.left_out))
        } else {
            self.left_out += 1;
            None
        }
    }
}

thread_local! {
    /// This worker thread's budget of lines of refused heads.
    static HEAD_REFUSALS: RefCell<LogBudget> = RefCell::new(LogBudget::default());
}

/// Logs a head refused with `status` for `rejection` at info, as the roles log the requests
/// they refuse, within this thread's budget.
pub fn head_refused(peer: Peer, status: StatusCode, rejection: Rejection, reason: &str) {
    let Some(left_out) = HEAD_REFUSALS.with_borrow_mut(|budget| budget.take(Instant::now())) else {
        return;
    };
    let status = status.as_u16();
    if left_out == 0 {
        tracing::info!(?peer, status, %rejection, reason, "refused");
    } else {
        tracing::info!(
            ?peer,
            status,
            %rejection,
            reason,
            left_out,
            "refused; {left_out} more request heads refused on this thread since the last such \
             line were not logged (at most {HEAD_REFUSALS_LOGGED} per {HEAD_REFUSAL_LOG_WINDOW:?}): \
             metaboot_rejections_total counts them all"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_budget_is_logged_per_window_and_the_next_line_says_how_many_were_not() {
        let start = Instant::now();
        let mut budget = LogBudget::default();
        for _ in 0..HEAD_REFUSALS_LOGGED {
            assert_eq!(budget.take(start), Some(0));
        }
        let flood = 1000;
        for _ in 0..flood {
            assert_eq!(budget.take(start + HEAD_REFUSAL_LOG_WINDOW / 2), None);
        }
        // The next window: the first line tells of the flood, the next ones are plain again.
        let next = start + HEAD_REFUSAL_LOG_WINDOW;
        assert_eq!(budget.take(next), Some(flood));
        for _ in 1..HEAD_REFUSALS_LOGGED {
            assert_eq!(budget.take(next), Some(0));
        }
        assert_eq!(budget.take(next), None);
        // A quiet window: what was left out is told by the next line, however much later.
        assert_eq!(budget.take(next + 10 * HEAD_REFUSAL_LOG_WINDOW), Some(1));
    }
}
