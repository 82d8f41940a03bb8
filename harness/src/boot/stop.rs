//! The stop signals of one `boot`: while a [`StopHandler`] lives, Ctrl-C, SIGTERM and SIGHUP
//! set [`STOP`] instead of ending the process; once the last one is dropped the handlers that
//! were there before are back and [`STOP`] is clear. A process that calls `boot` and goes on
//! (the test binary of `tests/tests/lab.rs`) is then stopped by those signals again, and its
//! next `boot` is not taken for stopped by a signal the last one heard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Set by a stop signal while a [`StopHandler`] lives; each step of a boot looks at it.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

/// The handlers installed for the boots in progress in this process (boots of test threads may
/// overlap): how many hold them, and the actions that were there before the first.
struct Installed {
    holders: usize,
    previous: Vec<(Signal, SigAction)>,
}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    holders: 0,
    previous: Vec::new(),
});

/// Makes the stop signals ([`crate::process::stop_signals`]) set [`STOP`] until dropped.
#[derive(Debug)]
pub struct StopHandler(());

impl StopHandler {
    /// Installs the handler (the first holder clears [`STOP`] and saves the actions it
    /// replaces). On an error, the actions it replaced are put back.
    pub fn install() -> anyhow::Result<Self> {
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        if installed.holders == 0 {
            STOP.store(false, Ordering::SeqCst);
            let action = SigAction::new(
                SigHandler::Handler(request_stop),
                SaFlags::empty(),
                SigSet::empty(),
            );
            for signal in crate::process::stop_signals() {
                // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
                match unsafe { sigaction(signal, &action) } {
                    Ok(previous) => installed.previous.push((signal, previous)),
                    Err(err) => {
                        restore(&mut installed.previous);
                        return Err(err).context(format!(
                            "failed to install a handler for {signal}: boot could not stop \
                             cleanly on it; run it again"
                        ));
                    }
                }
            }
        }
        installed.holders += 1;
        Ok(Self(()))
    }
}

impl Drop for StopHandler {
    fn drop(&mut self) {
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        installed.holders -= 1;
        if installed.holders == 0 {
            restore(&mut installed.previous);
            STOP.store(false, Ordering::SeqCst);
        }
    }
}

/// Puts back the actions in `previous`, newest first, and empties it.
fn restore(previous: &mut Vec<(Signal, SigAction)>) {
    while let Some((signal, action)) = previous.pop() {
        // SAFETY: `action` is what sigaction(2) returned for `signal`: the process's own
        // disposition from before, valid as it was then.
        if let Err(err) = unsafe { sigaction(signal, &action) } {
            eprintln!(
                "warning: failed to restore the handler of {signal} after boot: {err}; \
                 that signal may not stop this process"
            );
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The handler of `signal` now (`sa_sigaction`: a function's address, SIG_DFL or SIG_IGN).
    pub fn handler_of(signal: Signal) -> libc::sighandler_t {
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: with a null new action sigaction(2) only writes the current one into `old`,
        // which points at memory of that type.
        let rc = unsafe { libc::sigaction(signal as i32, std::ptr::null(), old.as_mut_ptr()) };
        assert_eq!(rc, 0, "sigaction({signal}) failed");
        // SAFETY: all zeroes is a valid `sigaction`, and the successful call filled it.
        unsafe { old.assume_init() }.sa_sigaction
    }

    /// Held by the tests that look at the process's signal dispositions, which the threads of
    /// the test binary share.
    pub static DISPOSITIONS: Mutex<()> = Mutex::new(());

    /// The stop handler's address as sigaction(2) reports it.
    pub fn stop_handler() -> libc::sighandler_t {
        request_stop as extern "C" fn(i32) as libc::sighandler_t
    }

    /// While a guard lives the stop signals set STOP; when the last of two overlapping guards
    /// drops, each signal's earlier disposition is back and STOP is clear.
    #[test]
    fn the_earlier_handlers_are_back_when_the_last_guard_drops() {
        let _alone = DISPOSITIONS.lock().unwrap_or_else(PoisonError::into_inner);
        let signals = crate::process::stop_signals();
        let before: Vec<_> = signals.iter().map(|s| handler_of(*s)).collect();
        assert!(before.iter().all(|h| *h != stop_handler()));
        let first = StopHandler::install().unwrap();
        let second = StopHandler::install().unwrap();
        for signal in &signals {
            assert_eq!(handler_of(*signal), stop_handler(), "{signal}");
        }
        STOP.store(true, Ordering::SeqCst);
        drop(first);
        assert_eq!(
            handler_of(Signal::SIGINT),
            stop_handler(),
            "a boot still runs"
        );
        assert!(STOP.load(Ordering::SeqCst), "a boot still runs");
        drop(second);
        let after: Vec<_> = signals.iter().map(|s| handler_of(*s)).collect();
        assert_eq!(after, before);
        assert!(!STOP.load(Ordering::SeqCst));
    }
}
