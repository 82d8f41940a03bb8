//! A TCP server the lab runs on a guest network for its checks (the phone-home receiver, the
//! package repository): a thread that enters the network's namespace, listens, and hands each
//! connection to its handler, until the server is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

use crate::lab::netns;

/// How long dropping the server waits for its accept loop to wake.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A listening server in a namespace; stops when dropped.
pub struct NsServer {
    ns: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NsServer {
    /// Listens on `addr` inside namespace `ns` (port 0: a free one, see [`NsServer::addr`]);
    /// `serve` answers each connection, one after the other, on the server's thread. `what`
    /// names the server in errors.
    pub fn start(
        what: &str,
        ns: &str,
        addr: SocketAddr,
        mut serve: impl FnMut(TcpStream) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let path = Path::new(netns::NETNS_DIR).join(ns);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, bound) = std::sync::mpsc::channel();
        let (stopping, name) = (stop.clone(), ns.to_owned());
        let thread = std::thread::spawn(move || {
            let listener = setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("failed to enter network namespace {name}"))
                .and_then(|()| {
                    TcpListener::bind(addr)
                        .with_context(|| format!("failed to listen on {addr} in {name}"))
                })
                .and_then(|listener| {
                    let local = listener
                        .local_addr()
                        .context("the listener has no address")?;
                    Ok((listener, local))
                });
            let listener = match listener {
                Ok((listener, local)) => {
                    let _ = ready.send(Ok(local));
                    listener
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            };
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream);
                }
            }
        });
        let addr = match bound.recv() {
            Ok(Ok(local)) => local,
            Ok(Err(err)) => return Err(err),
            Err(_) => bail!("the {what}'s thread ended before it listened"),
        };
        Ok(Self {
            ns: ns.to_owned(),
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. When that fails (the namespace is gone),
        // the thread is left blocked in accept rather than waited for: it ends with the process.
        let woken = netns::tcp_probe(&self.ns, self.addr, WAKE_TIMEOUT).is_ok();
        if let Some(thread) = self.thread.take()
            && woken
        {
            let _ = thread.join();
        }
    }
}
