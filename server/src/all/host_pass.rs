//! `all`'s host pass on a thread of its own. [`HostBridges::reconcile`] blocks: it runs `ip`
//! (each call up to `host::IP_COMMAND_TIMEOUT`), reads the leases directory and the host's
//! interface addresses. On the control task that would hold up everything else the task does
//! meanwhile: the namespaces' reconcile (`supervisor.rs`), a stop. Here the supervisor only
//! asks for a pass; a pass asked for while one waits to begin is the same pass.
//!
//! The thread owns the [`HostBridges`]: dropping [`HostPasses`] (a stop drops the supervisor's
//! future) ends the thread after the pass under way, and the thread drops the bridges, which
//! takes the metadata address off each, before that drop returns. A pass is never cut in
//! two, so an address put on a bridge is always one `HostBridges` knows to take off.
//!
//! Only a panic ends the thread early; then [`HostPasses::ask`] fails, and the supervisor with
//! it: `all` exits 1 and its unit starts it again (`Restart=on-failure`), as when the pass ran
//! on the control task and its panic ended the process.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use anyhow::Context as _;

use super::host::HostBridges;
use crate::http::ServerLimits;
use crate::model::ReadModel;
use crate::proxy::{Forward, ProxyHandler, ProxyScope};
use crate::runtime::Workers;

/// Name of the thread that runs the host passes (shown by `ps -T`, `top -H`).
pub const HOST_PASS_THREAD: &str = "host-bridges";

/// Makes a proxy's handler for a scope, shared by the control task and the host pass.
pub type MakeHandler<F> = dyn Fn(ProxyScope, F) -> ProxyHandler<F> + Send + Sync;

/// What a host pass serves with: the registry as the read model holds it, the workers, the
/// listeners' limits and how a network's handler is made.
pub struct HostServing<F: Forward> {
    pub model: Arc<ReadModel>,
    pub workers: Workers,
    pub limits: ServerLimits,
    pub make_handler: Arc<MakeHandler<F>>,
    pub forward: F,
}

/// The thread running [`HostBridges::reconcile`] when asked.
pub struct HostPasses {
    /// Dropped to end the thread.
    asks: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HostPasses {
    /// Starts the thread, which owns `hosts` from now on; no pass runs before the first
    /// [`HostPasses::ask`].
    pub fn start<F: Forward>(hosts: HostBridges, serving: HostServing<F>) -> anyhow::Result<Self> {
        // One pass waiting at most: asks while it waits are that pass.
        let (asks, asked) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(HOST_PASS_THREAD.to_owned())
            .spawn(move || passes(hosts, &serving, &asked))
            .context("failed to start the thread that serves the host bridges")?;
        Ok(Self {
            asks: Some(asks),
            thread: Some(thread),
        })
    }

    /// Asks for a pass, without waiting for it: one waiting to begin already is this one.
    /// Fails when the thread is gone (it panicked): the host networks are no longer served.
    pub fn ask(&mut self) -> anyhow::Result<()> {
        let gone = self.thread.as_ref().is_none_or(JoinHandle::is_finished);
        let sent = match &self.asks {
            Some(asks) if !gone => asks.try_send(()),
            _ => Err(TrySendError::Disconnected(())),
        };
        match sent {
            Ok(()) | Err(TrySendError::Full(())) => Ok(()),
            Err(TrySendError::Disconnected(())) => anyhow::bail!(
                "the thread serving the host bridges ({HOST_PASS_THREAD}) is gone: it panicked \
                 (the message before says where), and host networks are no longer served; \
                 stopping so that metaboot-server is started again (its unit restarts it)"
            ),
        }
    }
}

/// The thread: a pass per ask, until the asking side is dropped; then `hosts` is dropped here,
/// taking the metadata address off the bridges.
fn passes<F: Forward>(mut hosts: HostBridges, serving: &HostServing<F>, asked: &Receiver<()>) {
    while asked.recv().is_ok() {
        hosts.reconcile(
            &serving.model,
            &serving.workers,
            serving.limits,
            &*serving.make_handler,
            &serving.forward,
        );
    }
    drop(hosts);
}

impl Drop for HostPasses {
    /// Ends the thread after the pass under way and waits until it has taken the metadata
    /// address off the bridges.
    fn drop(&mut self) {
        self.asks.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
