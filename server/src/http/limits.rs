//! The limits every listener enforces on what a client may send (every place a guest can send bytes
//! has a limit; docs/protocol.md §9.3). Each role starts from these defaults; `all` and the flags
//! may lower or raise them.

use std::time::Duration;

/// Largest request head (request line + headers) a listener buffers, in bytes. Past it the
/// client gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines in one request; past it the client gets 431. Also the most a listener
/// may be configured with: the parser's header slots are an array of this size.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send a complete request head, also between keep-alive requests
/// (slowloris defence).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to take an answer: a write it does not drain within it (a client that
/// stopped reading) closes the connection, which it would otherwise hold as long as it likes
/// (Neutron's haproxy: `timeout client`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How far off a deadline is when its timeout is too large for a clock reading (a timeout
/// flag takes up to about 1.8e19 s): about 30 years, as tokio's own `timeout` waits.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The deadline `timeout` from now; [`FAR_FUTURE`] from now when that is past what the clock
/// can hold.
pub fn deadline_in(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout).unwrap_or(now + FAR_FUTURE)
}
/// Largest request body, in bytes (the password endpoint needs 1020).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time a client has to send the whole body once its head arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection closed while its client may still be sending (a body refused unread
/// with 413 or cut off with 400, a head refused with 431 or 400, bytes read past the answer
/// that closes it; not after a timeout, 408) is drained after its answer: its writing side
/// shut down, what still comes is read and dropped, then it closes (nginx's lingering close,
/// `http/h1/connection.rs`). Closed at once, the kernel would answer the unread bytes with a
/// reset, and a client that writes its whole request before it reads (curl, Python's
/// requests) would see "connection reset" instead of the answer. nginx waits 5 s for each read
/// (`lingering_timeout`) and 30 s in all (`lingering_time`); guests are on the host's own
/// links, so 5 s in all is plenty.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes read and dropped while a connection is drained before it closes
/// ([`LINGER_TIME`]): a client that never stops sending is cut off there (nginx bounds only the
/// time). Far above any body a client means to send to a metadata service.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Most connections one listener serves at once; further connections are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most connections a listener may be configured to serve at once (`--max-connections`):
/// each holds a file descriptor, so more than this is a typo, and the connection gate's
/// semaphore could not count them all.
pub const MAX_CONFIGURABLE_CONNECTIONS: usize = 1 << 20;
/// Most connections one guest address holds at once on a namespace proxy listener; further
/// ones from that address are closed at once. cloud-init opens one connection at a time (two
/// while it races the metadata addresses); 8 leaves room for a guest's own tools, while a guest
/// that holds connections open (slowloris) can take no more than this from its neighbours.
pub const MAX_CONNECTIONS_PER_GUEST: usize = 8;
/// Largest response body relayed from an upstream, in bytes (user data is at most 48 KiB).
pub const MAX_UPSTREAM_BODY_BYTES: usize = 1024 * 1024;
/// Largest head (status line + headers) of an upstream's answer, in bytes; past it the client
/// gets 502. The roles answer with a handful of short headers; the margin is for a proxy in
/// between.
pub const MAX_UPSTREAM_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in an upstream's answer; past it the client gets 502. Also the size of
/// the parser's header slots, an array on the stack.
pub const MAX_UPSTREAM_HEADERS: usize = 100;
/// Most interim (1xx) answers skipped before an upstream's real answer; past it the client
/// gets 502 instead of the upstream keeping the exchange busy until the timeout.
pub const MAX_UPSTREAM_INTERIM_ANSWERS: usize = 8;
/// Most times a GET or HEAD pipelined to an upstream (`http/client/pipeline.rs`) goes out again
/// after a connection ended that the upstream may have died on it: the upstream closed or reset
/// it without a word, or refused a write, while the request was the first left waiting or before
/// any request on it was answered. Past it the client gets 502, so a request that kills the
/// upstream is not sent on forever. Going out again after an answer that said it closes the
/// connection (`Connection: close`: Apache's `MaxKeepAliveRequests`, HTTP/1.0), or from behind
/// the first in line, does not count (RFC 9112 §9.3.2): the connection answered a request.
/// Going out again from behind a read that timed out counts (`client/pipeline.rs`, `Overdue`).
pub const MAX_UPSTREAM_RESENDS: u32 = 2;
/// Time an upstream has to answer before the client gets 504.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the namespace proxy gives the agent: the agent's own [`UPSTREAM_TIMEOUT`] for the API
/// plus a margin, so that when the API is slow the agent's 504 reaches the guest before the
/// proxy gives up on the agent (and on the other requests its connection to the agent carries).
pub const PROXY_AGENT_TIMEOUT: Duration = Duration::from_secs(12);
/// Time to open a connection to an upstream before the client gets 503.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled upstream connections kept per upstream and worker thread (an idle one lives
/// until the upstream closes it or `UPSTREAM_IDLE_REUSE` passes, `UPSTREAM_POOL_SWEEP`).
pub const UPSTREAM_POOL_IDLE_MAX: usize = 256;
/// How often a worker thread's idle pooled upstream connections are looked over
/// (`http/client/pool.rs`): one the upstream closed is closed on our side within this, instead
/// of staying in CLOSE_WAIT until the thread's next request; one that idled past
/// `UPSTREAM_IDLE_REUSE`, which would never be used again, within this after it passed.
pub const UPSTREAM_POOL_SWEEP: Duration = Duration::from_secs(1);
/// Longest an upstream connection idles and is still reused; past it the next request opens a
/// new one. A request written at the moment the upstream closes an idle connection is lost with
/// it (only a pipelined read goes out again, `MAX_UPSTREAM_RESENDS`), so a connection is given
/// up before the upstream would close it, with room for a round trip: below the shortest idle
/// timeout of common upstreams (gunicorn's `keepalive` 2 s; Apache's `KeepAliveTimeout`, Node's
/// and uvicorn's 5 s; nginx's `keepalive_timeout` 75 s; nova's eventlet `client_socket_timeout`
/// 900 s) and well below the roles' own `HEADER_READ_TIMEOUT`. A connection that idled this long
/// costs one connect to replace.
pub const UPSTREAM_IDLE_REUSE: Duration = Duration::from_millis(1500);
/// Most pipelined requests a connection of the agent or the API handles at once: the requests
/// a client sent without waiting (the chain's own pipelined upstream connections, see
/// `http/client/pipeline.rs`) that are already read are answered together, in order, in one
/// write; the rest wait for the next round.
pub const MAX_PIPELINED_REQUESTS: usize = 64;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Most connections one peer address holds at once (`None`: no cap per address). A
    /// guest-facing listener sets it ([`ServerLimits::guest_facing`]); the agent and the API
    /// behind the chain, whose peers are the chain's own roles, leave it off.
    pub max_connections_per_peer: Option<usize>,
    /// Most pipelined requests of one connection handled at once. A guest-facing listener
    /// takes 1: a guest's requests are answered one after the other, so that a guest cannot
    /// make the chain work on more than one request per connection it holds.
    pub pipelined_at_once: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            body_read_timeout: BODY_READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: None,
            pipelined_at_once: MAX_PIPELINED_REQUESTS,
        }
    }
}

// A guest's cap leaves the listener to hundreds of neighbours, and still fits cloud-init.
const _: () =
    assert!(MAX_CONNECTIONS_PER_GUEST >= 2 && MAX_CONNECTIONS_PER_GUEST * 256 <= MAX_CONNECTIONS);

// The gate's semaphore counts this many permits (tokio's `Semaphore::MAX_PERMITS`).
const _: () = assert!(
    MAX_CONFIGURABLE_CONNECTIONS >= MAX_CONNECTIONS
        && MAX_CONFIGURABLE_CONNECTIONS <= tokio::sync::Semaphore::MAX_PERMITS
);

// A connection drained before it closes holds its place no longer than an idle one does.
const _: () = assert!(
    LINGER_TIME.as_millis() <= HEADER_READ_TIMEOUT.as_millis() && LINGER_BYTES > MAX_BODY_BYTES
);

// The proxy waits longer than the agent it waits for.
const _: () = assert!(PROXY_AGENT_TIMEOUT.as_millis() > UPSTREAM_TIMEOUT.as_millis());

// Each answer is two slices of one vectored write, within Linux's IOV_MAX (1024).
const _: () = assert!(MAX_PIPELINED_REQUESTS >= 2 && 2 * MAX_PIPELINED_REQUESTS <= 1024);

/// Checks a configured `max_connections` (`what` names the flag or key): from 1 to
/// [`MAX_CONFIGURABLE_CONNECTIONS`].
pub fn check_max_connections(what: &str, count: usize) -> Result<(), String> {
    if (1..=MAX_CONFIGURABLE_CONNECTIONS).contains(&count) {
        Ok(())
    } else {
        Err(format!(
            "{what} must be from 1 to {MAX_CONFIGURABLE_CONNECTIONS}, not {count}"
        ))
    }
}

impl ServerLimits {
    /// The limits of a listener guests reach directly (the namespace proxy, and the API when
    /// it identifies guests by their address): at most [`MAX_CONNECTIONS_PER_GUEST`]
    /// connections per guest address, and one request of a connection at a time.
    pub fn guest_facing() -> Self {
        Self {
            max_connections_per_peer: Some(MAX_CONNECTIONS_PER_GUEST),
            pipelined_at_once: 1,
            ..Self::default()
        }
    }

    /// The largest head, in bytes.
    pub fn header_buffer(&self) -> usize {
        self.max_header_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_too_far_for_the_clock_is_far_future_instead() {
        let before = tokio::time::Instant::now();
        let soon = deadline_in(Duration::from_secs(1));
        assert!(soon >= before + Duration::from_secs(1));
        assert!(soon < before + FAR_FUTURE);
        for huge in [Duration::MAX, Duration::from_secs_f64(1.8e19)] {
            let far = deadline_in(huge);
            assert!(far >= before + FAR_FUTURE);
            assert!(far < tokio::time::Instant::now() + 2 * FAR_FUTURE);
        }
    }

    #[test]
    fn a_configured_connection_limit_is_at_least_one_and_at_most_the_ceiling() {
        assert!(check_max_connections("--max-connections", 1).is_ok());
        assert!(check_max_connections("--max-connections", MAX_CONFIGURABLE_CONNECTIONS).is_ok());
        for bad in [0, MAX_CONFIGURABLE_CONNECTIONS + 1, usize::MAX] {
            let err = check_max_connections("max_connections", bad).unwrap_err();
            assert!(
                err.starts_with("max_connections must be from 1 to"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_guest_facing_listener_caps_each_guest_and_answers_one_request_at_a_time() {
        let guest = ServerLimits::guest_facing();
        assert_eq!(
            guest.max_connections_per_peer,
            Some(MAX_CONNECTIONS_PER_GUEST)
        );
        assert_eq!(guest.pipelined_at_once, 1);
        assert_eq!(
            ServerLimits {
                max_connections_per_peer: None,
                pipelined_at_once: MAX_PIPELINED_REQUESTS,
                ..guest
            },
            ServerLimits::default()
        );
    }
}
