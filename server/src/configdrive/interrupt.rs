//! Ctrl-C, SIGTERM and SIGHUP caught while a config drive is made: the signal is noted, not
//! obeyed at once, so that the build ends on its own path and its working directory (the
//! admin password, the user data) is removed, where the default action would leave it.
//! The handlers are the process's only while a build runs; the earlier ones come back after.
//! Builds in one process take turns ([`BUILDS`]), so that each puts back what was there
//! before it, never another build's handler. A signal the process was started ignoring
//! (`nohup`'s SIGHUP) stays ignored, for the build and for the tools it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// The signals a build catches.
pub const CAUGHT: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Set by the handler; read by the build between its steps.
static NOTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_: nix::libc::c_int) {
    NOTED.store(true, Ordering::SeqCst);
}

/// Held by the build whose handlers are installed.
static BUILDS: Mutex<()> = Mutex::new(());

/// The handlers installed for one build; the earlier ones are put back when dropped.
pub struct Caught {
    earlier: Vec<(Signal, SigAction)>,
    _turn: MutexGuard<'static, ()>,
}

impl Caught {
    /// Installs the handlers (a signal that came before is forgotten), but for the signals
    /// that are ignored.
    pub fn new() -> Self {
        let turn = BUILDS.lock().unwrap_or_else(PoisonError::into_inner);
        NOTED.store(false, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(note),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut earlier = Vec::new();
        for signal in CAUGHT {
            if crate::runtime::signal_ignored(signal as nix::libc::c_int) {
                continue;
            }
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            if let Ok(old) = unsafe { sigaction(signal, &action) } {
                earlier.push((signal, old));
            }
        }
        Caught {
            earlier,
            _turn: turn,
        }
    }

    /// Whether one of [`CAUGHT`] came since the handlers were installed.
    pub fn caught(&self) -> bool {
        NOTED.load(Ordering::SeqCst)
    }
}

impl Drop for Caught {
    fn drop(&mut self) {
        for (signal, old) in &self.earlier {
            // SAFETY: puts back the action that was there before `new`.
            let _ = unsafe { sigaction(*signal, old) };
        }
    }
}
