//! A pipelined connection to an upstream (RFC 9112 §9.3.2): the GET and HEAD requests of every
//! connection a worker thread serves share it. Requests queued while the thread was busy go out
//! in one write, and their answers, which come back in order, are read in as few reads as they
//! arrive in. Under load a hop then costs a system call per batch instead of two per request
//! (the roles answer pipelined requests together, `h1/connection.rs`).
//!
//! Two tasks drive it: the reader opens the connection (requests queue meanwhile), starts the
//! writer, which sends what was queued, and hands each answer to the request that waits for
//! it. Once the connection breaks (the upstream closed it, an answer was malformed, a request
//! timed out) it takes no more requests: a request past its deadline times out; the ones not
//! yet written come back unsent, to go out on a new connection. The ones written and not
//! answered come back to go out again too when the upstream ended the connection (RFC 9112
//! §9.3.2): it said so in an answer (`Connection: close`: Apache after `MaxKeepAliveRequests`,
//! an HTTP/1.0 upstream after each), or closed or reset it without a word, or the answer before
//! theirs could not be read, or one written before them timed out (`Ending::Overdue`: the
//! upstream is slow on it, and they wait behind it only because they share its connection). It
//! only ever holds GET and HEAD requests, which are idempotent (`mod.rs`). A request that timed
//! out, or one whose own answer could not be read, fails. A timeout also stops the writer, in the
//! middle of a write too, and the connection closes; a write the upstream refused stops the
//! writer only, and the reader reads the answers that came before it.
//!
//! What keeps a request the upstream dies on from going out forever is `Ending::Unannounced`:
//! it counts against the request the upstream owed the next answer to, or against every
//! request on the connection when it answered none (`mod.rs` allows each request
//! `MAX_UPSTREAM_RESENDS`). `Ending::Overdue` counts against each written request that goes out
//! again: a request's own deadline would bound how often it can be behind one that times out,
//! but an upstream slow on everything would then be sent every waiting read again at each
//! timeout (a read behind more than `MAX_UPSTREAM_RESENDS` timed-out ones gets 502 before its
//! own deadline, the price of that bound). The other endings need no count: each settles one
//! request (answered or failed) before the others go out again.
//!
//! The reader also keeps the requests' deadlines, with one timer for the whole connection set
//! to the earliest deadline of the requests waiting. A timer per request would mostly be due
//! before every other timer the runtime holds (a hop's upstream timeout is shorter than a
//! connection's head timeout, and the previous request's timer is gone), and tokio wakes its
//! driver for each such new timer: an `eventfd` write and one more `epoll_wait` per request.
//! The connection's timer is only moved later while requests flow, which tokio does without
//! waking anything; it goes off about once per timeout, and fails the connection's requests
//! only when one of them is past its deadline.

use std::collections::VecDeque;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Response, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, Sleep};

use super::error::UpstreamError;
use super::stream::{Dialer, ReadHalf, Stream, WriteHalf};
use crate::http::h1::{encode_request_head, read_answer};

/// Bytes the read buffer starts with (answers are read on by `h1::read_answer`).
const READ_CHUNK: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<Response<Bytes>, NoAnswer>>;

/// Why a pipelined request got no answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// Not a byte of it was written: it may go out on another connection; `counts` when that
    /// is a resend to count (`Ending::Unannounced`).
    Unsent { why: String, counts: bool },
    /// Written, and the upstream ended the connection before its answer: it may go out again
    /// on another connection; `counts` when that is a resend to count (`Ending::Unannounced`).
    Unanswered { why: String, counts: bool },
    /// The connection could not be opened: why.
    Unreachable(String),
    /// Written, but no usable answer came back: why.
    Failed(String),
    /// Its deadline passed first.
    TimedOut,
}

/// How a connection ended: what becomes of the requests still waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The upstream said it closes the connection, in the answer before theirs: they all go out
    /// again.
    Announced,
    /// The upstream closed or reset the connection without a word, refused a write, or sent
    /// bytes nobody asked for: they all go out again, and that counts against the first of them
    /// (the upstream may have died on it), or against each when the connection answered none.
    Unannounced,
    /// The first one's answer could not be read (malformed, too large, cut short): it fails,
    /// the others go out again.
    BadAnswer,
    /// A request waiting on it is past its deadline: it times out (so does any other past its
    /// own), the others go out again; each written one counts (an upstream slow on everything
    /// would otherwise be sent every waiting read again at each timeout, up to their
    /// deadlines), one never written does not.
    Overdue,
    /// Given up here (the connection idled, it never connected, it was abandoned): the ones
    /// written fail, the others go out again.
    GivenUp,
}

/// A handle on a pipelined connection; clones share it.
#[derive(Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: requests were queued, or the pipeline broke.
    queued: Notify,
    /// Wakes the reader when the pipeline broke elsewhere.
    broke: Notify,
    /// Wakes the reader when a request came with a deadline before its timer's.
    hurried: Notify,
}

struct State {
    /// Requests queued and not yet handed to the writer, encoded.
    out: Vec<u8>,
    /// The requests waiting for their answers, in the order they were queued.
    waiting: VecDeque<Waiter>,
    /// The number the next queued request gets.
    next: u64,
    /// Requests numbered below this were handed to the writer (and written, once a write
    /// failed).
    handed: u64,
    /// The connection answered a request.
    answered: bool,
    /// Why the pipeline takes no more requests.
    broken: Option<String>,
    /// It never connected.
    unreachable: bool,
    /// When the connection started or last handed an answer over.
    used: Instant,
    /// When the reader's timer goes off: no waiting request's deadline is earlier. Unset while
    /// no request waits.
    watched: Option<Instant>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            waiting: VecDeque::new(),
            next: 0,
            handed: 0,
            answered: false,
            broken: None,
            unreachable: false,
            used: Instant::now(),
            watched: None,
        }
    }
}

struct Waiter {
    number: u64,
    /// The request was HEAD: its answer has no body.
    to_head: bool,
    /// When its caller stops waiting.
    deadline: Instant,
    reply: Reply,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes no more requests: the ones queued after this come back unsent.
    fn stop_taking(state: &mut State, why: &str) {
        if state.broken.is_none() {
            state.broken = Some(why.to_owned());
        }
        state.out.clear();
    }

    /// Takes no more requests, for `why`, the connection having ended as `ending` says: the
    /// waiting requests past their deadline time out, the others are told what became of them
    /// ([`Ending`]).
    fn break_off(&self, state: &mut State, why: &str, ending: Ending) {
        Self::stop_taking(state, why);
        let (unreachable, handed, answered) = (state.unreachable, state.handed, state.answered);
        let now = Instant::now();
        for (place, waiter) in state.waiting.drain(..).enumerate() {
            let why = why.to_owned();
            let written = waiter.number < handed;
            // Counted against the first in line, or against each when the upstream answered
            // none; a request never written is only suspect then.
            let counts = match ending {
                Ending::Unannounced => !answered || (place == 0 && written),
                Ending::Overdue => written,
                _ => false,
            };
            let err = if waiter.deadline <= now {
                NoAnswer::TimedOut
            } else if unreachable {
                NoAnswer::Unreachable(why)
            } else if !written {
                NoAnswer::Unsent { why, counts }
            } else if ending == Ending::GivenUp || (ending == Ending::BadAnswer && place == 0) {
                NoAnswer::Failed(why)
            } else {
                NoAnswer::Unanswered { why, counts }
            };
            let _ = waiter.reply.send(Err(err));
        }
        self.queued.notify_one();
        self.broke.notify_one();
    }
}

impl Pipeline {
    /// Starts a connection to `dialer`'s upstream (`describe`) on the current runtime; it takes
    /// requests at once, the first with its deadline at `first_deadline`.
    pub fn start(dialer: Arc<Dialer>, describe: Arc<str>, first_deadline: Instant) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                watched: Some(first_deadline),
                ..State::default()
            }),
            queued: Notify::new(),
            broke: Notify::new(),
            hurried: Notify::new(),
        });
        tokio::spawn(read(shared.clone(), dialer, describe, first_deadline));
        Self { shared }
    }

    /// Whether the pipeline takes requests.
    pub fn is_open(&self) -> bool {
        self.shared.lock().broken.is_none()
    }

    /// No request waits on it and none was answered (or it started) longer than `bound` ago.
    pub fn idled_past(&self, bound: Duration) -> bool {
        let state = self.shared.lock();
        state.waiting.is_empty() && state.used.elapsed() > bound
    }

    /// Queues `request` (its body is `body`) and waits for its answer, its body read whole,
    /// until `deadline`. A caller that stops waiting earlier leaves the connection as it is:
    /// the answer, when it comes, is dropped.
    pub async fn exchange(
        &self,
        request: &request::Parts,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Response<Bytes>, NoAnswer> {
        // Only idempotent requests may go out again when the connection ends unanswered.
        debug_assert!(request.method == Method::GET || request.method == Method::HEAD);
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(why) = &state.broken {
                return Err(NoAnswer::Unsent {
                    why: why.clone(),
                    counts: false,
                });
            }
            let first = state.out.is_empty();
            let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
            encode_request_head(
                &mut state.out,
                &request.method,
                target,
                &request.headers,
                body.len(),
            );
            state.out.extend_from_slice(body);
            let number = state.next;
            state.next += 1;
            state.waiting.push_back(Waiter {
                number,
                to_head: request.method == Method::HEAD,
                deadline,
                reply,
            });
            if first {
                self.shared.queued.notify_one();
            }
            if state.watched.is_none_or(|watched| deadline < watched) {
                state.watched = Some(deadline);
                self.shared.hurried.notify_one();
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(NoAnswer::Failed("the connection ended".to_owned())))
    }

    /// Gives the connection up: the requests on it fail, the next ones go out on a new
    /// connection.
    pub fn abandon(&self, why: &str) {
        let mut state = self.shared.lock();
        self.shared.break_off(&mut state, why, Ending::GivenUp);
    }
}

/// The writer: sends what was queued, in one write per batch.
async fn write(shared: Arc<Shared>, mut stream: WriteHalf) {
    let mut batch = Vec::new();
    loop {
        shared.queued.notified().await;
        let from = {
            let mut state = shared.lock();
            if state.broken.is_some() {
                return;
            }
            if state.out.is_empty() {
                continue;
            }
            std::mem::swap(&mut state.out, &mut batch);
            let from = state.handed;
            state.handed = state.next;
            from
        };
        let mut written = 0;
        let sent = loop {
            match stream.write(&batch[written..]).await {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(err) => break Err(err),
            }
            if written == batch.len() {
                break Ok(());
            }
        };
        batch.clear();
        if let Err(err) = sent {
            // The upstream closed or reset the connection. The answers it sent before are
            // still to read: the reader goes on until it sees the end, and tells the requests
            // waiting then (`Ending::Unannounced`).
            let mut state = shared.lock();
            Shared::stop_taking(&mut state, &format!("request not sent whole: {err}"));
            if written == 0 {
                // Not a byte of this batch went out: its requests may go out elsewhere.
                state.handed = from;
            }
            return;
        }
    }
}

/// The reader: opens the connection, starts the writer and hands each answer to the request
/// waiting for it, until the connection breaks; meanwhile it keeps the requests' deadlines, its
/// timer first set to the first request's (`first_deadline`).
async fn read(
    shared: Arc<Shared>,
    dialer: Arc<Dialer>,
    describe: Arc<str>,
    first_deadline: Instant,
) {
    let mut timer = pin!(tokio::time::sleep_until(first_deadline));
    let (why, ending) = tokio::select! {
        connected = dialer.connect(&describe) => match connected {
            Ok(stream) => match relay(&shared, stream, timer.as_mut()).await {
                Some(ended) => ended,
                // Broken elsewhere, its requests told.
                None => return,
            },
            Err(err) => {
                shared.lock().unreachable = true;
                let why = match err {
                    UpstreamError::Unreachable(why) => why,
                    other => other.to_string(),
                };
                (why, Ending::GivenUp)
            }
        },
        why = overdue(&shared, timer.as_mut()) => (why, Ending::Overdue),
    };
    let mut state = shared.lock();
    shared.break_off(&mut state, &why, ending);
}

/// The writer task, stopped when the reader is done with the connection: a writer blocked in a
/// write (the upstream stopped reading and its socket buffer is full) would otherwise hold the
/// connection open until the upstream reads or closes it.
struct WriterTask(tokio::task::JoinHandle<()>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the writer on `stream` and reads answers until the connection breaks: why and how,
/// or `None` when it was broken elsewhere. The writer stops with it.
async fn relay(
    shared: &Arc<Shared>,
    stream: Stream,
    timer: Pin<&mut Sleep>,
) -> Option<(String, Ending)> {
    let (mut reader, writer) = stream.into_split();
    let _writer = WriterTask(tokio::spawn(write(shared.clone(), writer)));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    tokio::select! {
        ended = answers(shared, &mut reader, &mut buf) => Some(ended),
        why = overdue(shared, timer) => Some((why, Ending::Overdue)),
        () = shared.broke.notified() => None,
    }
}

/// Returns once a waiting request is past its deadline, saying so; `timer` goes off at the
/// earliest deadline (`State::watched`).
async fn overdue(shared: &Shared, mut timer: Pin<&mut Sleep>) -> String {
    loop {
        // A request queued meanwhile leaves a permit on `hurried`: no wake-up is lost.
        if shared.lock().watched.is_some() {
            tokio::select! {
                () = timer.as_mut() => {}
                () = shared.hurried.notified() => {}
            }
        } else {
            shared.hurried.notified().await;
        }
        let now = Instant::now();
        let earliest = {
            let mut state = shared.lock();
            let earliest = state.waiting.iter().map(|waiter| waiter.deadline).min();
            if earliest.is_some_and(|deadline| deadline <= now) {
                return "a request on the connection got no answer in time".to_owned();
            }
            state.watched = earliest;
            earliest
        };
        if let Some(deadline) = earliest {
            // Later than before while requests flow: tokio then moves the timer without
            // waking its driver.
            timer.as_mut().reset(deadline);
        }
    }
}

/// Reads answers until one cannot be read or the connection may not carry more; says why and
/// how it ended.
async fn answers(shared: &Shared, stream: &mut ReadHalf, buf: &mut BytesMut) -> (String, Ending) {
    const CLOSES: &str = "the upstream closes the connection";
    loop {
        let to_head = match front(shared, stream, buf).await {
            Ok(to_head) => to_head,
            Err(why) => return (why, Ending::Unannounced),
        };
        let (head, body) = match read_answer(stream, buf, to_head).await {
            Ok(answer) => answer,
            Err(why) => return (why, Ending::BadAnswer),
        };
        let waiter = {
            let mut state = shared.lock();
            let Some(waiter) = state.waiting.pop_front() else {
                // Its request was abandoned meanwhile.
                return ("the connection was given up".to_owned(), Ending::GivenUp);
            };
            state.used = Instant::now();
            state.answered = true;
            if !head.keep_alive {
                // Taken before the answer is handed over: the next request finds it closed.
                shared.break_off(&mut state, CLOSES, Ending::Announced);
            }
            waiter
        };
        let _ = waiter.reply.send(Ok(head.response.map(|()| body)));
        if !head.keep_alive {
            return (CLOSES.to_owned(), Ending::Announced);
        }
    }
}

/// Waits until an answer's first bytes are read and says whether the request they answer was
/// HEAD; why not when the connection ended first or bytes came that nobody asked for (no
/// request written waits).
async fn front(shared: &Shared, stream: &mut ReadHalf, buf: &mut BytesMut) -> Result<bool, String> {
    while buf.is_empty() {
        buf.reserve(READ_CHUNK);
        match stream.read_buf(buf).await {
            Ok(0) => return Err("the upstream closed the connection without answering".to_owned()),
            Err(err) => return Err(format!("reading the answer: {err}")),
            Ok(_) => {}
        }
    }
    let state = shared.lock();
    match state.waiting.front() {
        Some(waiter) if waiter.number < state.handed => Ok(waiter.to_head),
        _ => Err("the upstream sent bytes nobody asked for".to_owned()),
    }
}
