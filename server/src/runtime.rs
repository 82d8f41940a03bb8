//! Running a role: the tokio runtime, and waiting for SIGINT, SIGTERM or SIGHUP.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::http::{ConnectionGate, Handler, ServerLimits, serve_gated};

/// Runs a role's control loop on a single-threaded runtime until it fails or a stop signal
/// arrives. Roles that serve many connections hand their listeners to [`Workers`]; a lone
/// namespace proxy serves on this thread alone and stays small.
pub fn run_service<F>(service: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        // The handlers are in place before the service's first step (`all` puts addresses on
        // host bridges in it), and a signal is seen before the service goes on.
        let mut signals = StopSignals::install();
        tokio::select! {
            biased;
            signal = signals.recv() => {
                tracing::info!(signal, "stopping");
                Ok(())
            }
            result = service => result,
        }
    })
}

/// SIGINT, SIGTERM and SIGHUP (the terminal a role runs in closing: its default action would
/// end the process without taking `all`'s address off the host bridges), handled from
/// [`StopSignals::install`] on. A SIGHUP the process was started ignoring (`nohup`) stays
/// ignored.
pub struct StopSignals {
    /// None when the handlers could not be installed: no stop signal is ever seen.
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers now (inside a runtime), whether or not anyone waits yet.
    pub fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup_ignored = hangup_ignored();
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        let hangup = if hangup_ignored {
            None
        } else {
            signal(SignalKind::hangup()).ok()
        };
        Self { streams, hangup }
    }

    /// Resolves at the next stop signal, with its name.
    pub async fn recv(&mut self) -> &'static str {
        let Some((term, int)) = self.streams.as_mut() else {
            return std::future::pending().await;
        };
        let hangup = async {
            match self.hangup.as_mut() {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hangup => "SIGHUP",
        }
    }
}

/// Whether SIGHUP was ignored when the process started (`nohup`), read once, before the
/// process's own handler replaces that.
fn hangup_ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| signal_ignored(libc::SIGHUP))
}

/// Whether `signal`'s action is to be ignored now (`nohup` ignores SIGHUP; a shell without job
/// control starts a background command with SIGINT ignored).
pub(crate) fn signal_ignored(signal: libc::c_int) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action sigaction(2) only writes the current one into `old`,
    // which points at memory of that type.
    let rc = unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: all zeroes is a valid `sigaction`, and a successful call filled it.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Worker threads for the roles that use [`Workers`]: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Serves one worker's handle of a TCP listener; `what` names the listener when it cannot.
async fn serve_listener<H: Handler>(
    listener: std::net::TcpListener,
    what: Arc<str>,
    gate: Arc<ConnectionGate>,
    limits: ServerLimits,
    handler: H,
) {
    match crate::http::TcpAcceptor::new(listener) {
        Ok(listener) => serve_gated(listener, gate, limits, handler).await,
        Err(err) => tracing::error!(listener = %what, error = %err, "cannot serve a listener"),
    }
}

/// Single-threaded runtimes, one per worker thread, like nginx's worker processes: a
/// connection lives on one thread from accept to close, with no cross-thread wakeups. Shared
/// state (caches, the store) is behind `Arc`s and locks.
#[derive(Clone)]
pub struct Workers {
    handles: Arc<[Handle]>,
}

impl Workers {
    /// Starts `count` worker threads (at least one); they live as long as the process.
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let mut handles = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = sender.send(Err(err));
                            return;
                        }
                    };
                    let _ = sender.send(Ok(runtime.handle().clone()));
                    // Drives the tasks spawned onto this worker, forever.
                    runtime.block_on(std::future::pending::<()>());
                })
                .context("failed to start a worker thread")?;
            let handle = receiver
                .recv()
                .context("a worker thread died while starting")?
                .context("failed to start a worker's runtime")?;
            handles.push(handle);
        }
        Ok(Self {
            handles: handles.into(),
        })
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Serves a TCP listener on every worker, each worker polling its own handle of the same
    /// socket (see `http::listen::tcp_listeners`). The workers share one connection gate, so
    /// the caps count every connection of the listener. `what` names the listener in the log
    /// line of a worker that cannot serve it (which router's or network's proxy, where).
    pub fn serve_tcp<H: Handler>(
        &self,
        listeners: Vec<std::net::TcpListener>,
        what: &str,
        limits: ServerLimits,
        handler: &H,
    ) -> Vec<JoinHandle<()>> {
        let gate = ConnectionGate::new(&limits);
        let what: Arc<str> = Arc::from(what);
        listeners
            .into_iter()
            .zip(self.handles.iter())
            .map(|(listener, worker)| {
                let (handler, gate) = (handler.clone(), gate.clone());
                worker.spawn(serve_listener(
                    listener,
                    what.clone(),
                    gate,
                    limits,
                    handler,
                ))
            })
            .collect()
    }

    /// Serves one Unix socket on every worker (each polls its own copy of the socket), with
    /// one connection gate for all of them.
    pub fn serve_unix<H: Handler>(
        &self,
        listener: &std::os::unix::net::UnixListener,
        limits: ServerLimits,
        handler: &H,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let gate = ConnectionGate::new(&limits);
        self.handles
            .iter()
            .map(|worker| {
                let copy = listener.try_clone().context("failed to share the socket")?;
                let (handler, gate) = (handler.clone(), gate.clone());
                Ok(worker.spawn(async move {
                    match tokio::net::UnixListener::from_std(copy) {
                        Ok(listener) => serve_gated(listener, gate, limits, handler).await,
                        Err(err) => tracing::error!(error = %err, "cannot serve a socket"),
                    }
                }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};

    use super::*;
    use crate::http::response::{Reply, TEXT_PLAIN};
    use crate::http::{Body, Peer, RequestBody};

    #[derive(Clone)]
    struct Ok200;

    impl Handler for Ok200 {
        async fn handle(&self, _: Request<RequestBody>, _: Peer) -> Response<Body> {
            Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"ok"))
        }
    }

    /// The log lines written while it runs, as the server's stderr shows them.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A SIGTERM in the service's first step (before it ever waits) stops the role as one
    /// arriving later does: the handlers were installed before the service started. (Before,
    /// they were installed only when the signal future was first polled, after the service's,
    /// and the signal's default action ended the process: this test's too.)
    #[test]
    fn a_stop_signal_in_the_services_first_step_stops_it_cleanly() {
        let stopped = run_service(async {
            // SAFETY: raise(3) sends a signal to this process; the role handles SIGTERM.
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            std::future::pending::<anyhow::Result<()>>().await
        });
        assert!(stopped.is_ok());
    }

    /// A listener the worker cannot serve (here a regular file, which no poller watches)
    /// is named in the error line: which proxy, in which namespace, on which address.
    #[test]
    fn a_listener_that_cannot_be_served_is_named() {
        let file = tempfile::tempfile().unwrap();
        let listener = std::net::TcpListener::from(std::os::fd::OwnedFd::from(file));
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_target(false)
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let what = "router r1's proxy (netns qrouter-r1, 169.254.169.254:80)";
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(serve_listener(
                listener,
                Arc::from(what),
                ConnectionGate::new(&ServerLimits::default()),
                ServerLimits::default(),
                Ok200,
            ));
        });
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("cannot serve a listener"), "{logs}");
        assert!(logs.contains(&format!("listener={what}")), "{logs}");
    }
}
