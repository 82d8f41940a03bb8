//! A pipelined connection to an upstream (RFC 9112 §9.3.2): the GET and HEAD requests of every
//! connection a worker thread serves share it. Requests queued while the thread was busy go out
//! in one write, and their answers, which come back in order, are read in as few reads as they
//! arrive in. Under load a hop then costs a system call per batch instead of two per request
//! (the roles answer pipelined requests together, `h1/connection.rs`).
//!
//! Two tasks drive it: the writer opens the connection (requests queue meanwhile) and sends
//! what was queued, the reader hands each answer to the request that waits for it. Once the
//! connection breaks (the upstream closed it, an answer was
//! malformed, a request timed out) it takes no more requests: the ones not yet written come
//! back unsent, to go out on a new connection; the ones written fail (a request that was
//! written is never sent twice).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Response, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::error::UpstreamError;
use super::stream::{Dialer, ReadHalf, WriteHalf};
use crate::http::h1::{encode_request_head, read_answer};

/// Bytes the read buffer starts with (answers are read on by `h1::read_answer`).
const READ_CHUNK: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<Response<Bytes>, NoAnswer>>;

/// Why a pipelined request got no answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// Not a byte of it was written: it may go out on another connection.
    Unsent(String),
    /// The connection could not be opened: why.
    Unreachable(String),
    /// Written, but no usable answer came back: why.
    Failed(String),
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
}

struct State {
    /// Requests queued and not yet handed to the writer, encoded.
    out: Vec<u8>,
    /// The requests waiting for their answers, in the order they were queued.
    waiting: VecDeque<Waiter>,
    /// The number the next queued request gets.
    next: u64,
    /// Requests numbered below this were handed to the writer.
    handed: u64,
    /// Why the pipeline takes no more requests.
    broken: Option<String>,
    /// It never connected.
    unreachable: bool,
    /// When the connection started or last handed an answer over.
    used: Instant,
}

impl Default for State {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            waiting: VecDeque::new(),
            next: 0,
            handed: 0,
            broken: None,
            unreachable: false,
            used: Instant::now(),
        }
    }
}

struct Waiter {
    number: u64,
    /// The request was HEAD: its answer has no body.
    to_head: bool,
    reply: Reply,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes no more requests, for `why`: the waiting requests numbered from `unsent_from` on
    /// were not written and come back unsent; the others fail.
    fn break_off(&self, state: &mut State, why: &str, unsent_from: u64) {
        if state.broken.is_none() {
            state.broken = Some(why.to_owned());
        }
        state.out.clear();
        let unreachable = state.unreachable;
        for waiter in state.waiting.drain(..) {
            let err = if unreachable {
                NoAnswer::Unreachable(why.to_owned())
            } else if waiter.number >= unsent_from {
                NoAnswer::Unsent(why.to_owned())
            } else {
                NoAnswer::Failed(why.to_owned())
            };
            let _ = waiter.reply.send(Err(err));
        }
        self.queued.notify_one();
        self.broke.notify_one();
    }
}

impl Pipeline {
    /// Starts a connection to `dialer`'s upstream (`describe`) on the current runtime; it takes
    /// requests at once.
    pub fn start(dialer: Arc<Dialer>, describe: Arc<str>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            queued: Notify::new(),
            broke: Notify::new(),
        });
        tokio::spawn(connect(shared.clone(), dialer, describe));
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

    /// Queues `request` (its body is `body`) and waits for its answer, its body read whole.
    /// Does not time out: the caller bounds it and calls [`Pipeline::abandon`] when it gives
    /// up.
    pub async fn exchange(
        &self,
        request: &request::Parts,
        body: &[u8],
    ) -> Result<Response<Bytes>, NoAnswer> {
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(why) = &state.broken {
                return Err(NoAnswer::Unsent(why.clone()));
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
                reply,
            });
            if first {
                self.shared.queued.notify_one();
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(NoAnswer::Failed("the connection ended".to_owned())))
    }

    /// Gives the connection up (a request on it timed out): the requests on it fail, the next
    /// ones go out on a new connection.
    pub fn abandon(&self, why: &str) {
        let mut state = self.shared.lock();
        let handed = state.handed;
        self.shared.break_off(&mut state, why, handed);
    }
}

/// Opens the connection, then starts the reader and becomes the writer.
async fn connect(shared: Arc<Shared>, dialer: Arc<Dialer>, describe: Arc<str>) {
    match dialer.connect(&describe).await {
        Ok(stream) => {
            let (reader, writer) = stream.into_split();
            tokio::spawn(read(shared.clone(), reader));
            write(shared, writer).await;
        }
        Err(err) => {
            let why = match err {
                UpstreamError::Unreachable(why) => why,
                other => other.to_string(),
            };
            let mut state = shared.lock();
            state.unreachable = true;
            let handed = state.handed;
            shared.break_off(&mut state, &why, handed);
        }
    }
}

/// The writer: sends what was queued, in one write per batch.
async fn write(shared: Arc<Shared>, mut stream: WriteHalf) {
    let mut batch = Vec::new();
    loop {
        shared.queued.notified().await;
        let (from, to) = {
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
            (from, state.next)
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
            let mut state = shared.lock();
            let why = format!("request not sent whole: {err}");
            // Not a byte of this batch went out: its requests may go out elsewhere.
            let unsent_from = if written == 0 { from } else { to };
            shared.break_off(&mut state, &why, unsent_from);
            return;
        }
    }
}

/// The reader: hands each answer to the request waiting for it, until the connection breaks.
async fn read(shared: Arc<Shared>, mut stream: ReadHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let why = tokio::select! {
        why = answers(&shared, &mut stream, &mut buf) => why,
        () = shared.broke.notified() => return,
    };
    let mut state = shared.lock();
    let handed = state.handed;
    shared.break_off(&mut state, &why, handed);
}

/// Reads answers until one cannot be read or the connection may not carry more; says why.
async fn answers(shared: &Shared, stream: &mut ReadHalf, buf: &mut BytesMut) -> String {
    loop {
        let to_head = match front(shared, stream, buf).await {
            Ok(to_head) => to_head,
            Err(why) => return why,
        };
        let (head, body) = match read_answer(stream, buf, to_head).await {
            Ok(answer) => answer,
            Err(why) => return why,
        };
        let waiter = {
            let mut state = shared.lock();
            let Some(waiter) = state.waiting.pop_front() else {
                // Its request was abandoned meanwhile.
                return "the connection was given up".to_owned();
            };
            state.used = Instant::now();
            if !head.keep_alive {
                // Taken before the answer is handed over: the next request finds it closed.
                let handed = state.handed;
                shared.break_off(&mut state, "the upstream closes the connection", handed);
            }
            waiter
        };
        let _ = waiter.reply.send(Ok(head.response.map(|()| body)));
        if !head.keep_alive {
            return "the upstream closes the connection".to_owned();
        }
    }
}

/// Waits until an answer's first bytes are read and says whether the request they answer was
/// HEAD; why not when the connection ended first or bytes came that nobody asked for.
async fn front(shared: &Shared, stream: &mut ReadHalf, buf: &mut BytesMut) -> Result<bool, String> {
    while buf.is_empty() {
        buf.reserve(READ_CHUNK);
        match stream.read_buf(buf).await {
            Ok(0) => return Err("the upstream closed the connection without answering".to_owned()),
            Err(err) => return Err(format!("reading the answer: {err}")),
            Ok(_) => {}
        }
    }
    match shared.lock().waiting.front() {
        Some(waiter) => Ok(waiter.to_head),
        None => Err("the upstream sent bytes nobody asked for".to_owned()),
    }
}
