//! Running a role: the tokio runtime, and waiting for SIGINT or SIGTERM.

use std::future::Future;

use anyhow::Context as _;

/// Runs a service on a runtime until it fails or a stop signal arrives. `threads = 1` gives a
/// current-thread runtime (one proxy per namespace stays small).
pub fn run_service<F>(threads: usize, service: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("failed to start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = service => result,
            signal = stop_signal() => {
                tracing::info!(signal, "stopping");
                Ok(())
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM, with the signal's name.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Worker threads for the multi-threaded roles: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}
