//! What a process needs before the agent runs, done by the agent itself: the binary has no
//! std runtime start-up (`#![no_main]` in `main.rs`). That start-up installs a stack overflow
//! handler whose stack probe (glibc's `pthread_getattr_np`, which parses `/proc/self/maps`
//! with `sscanf`) links glibc's formatted-input and float-parsing code: 109 KB of the static
//! binary. The two things it does that the agent relies on are done here: writing to a closed
//! pipe is an error to handle, not a signal that kills (`SIGPIPE` ignored), and a standard
//! descriptor the parent left closed is `/dev/null`, so that no file the agent opens becomes
//! its standard output. Without the handler a stack overflow ends the process with `SIGSEGV`
//! instead of a message (the agent's recursion is bounded: YAML depth, MIME nesting).
//! Arguments still come from glibc (`std::env::args` reads what `.init_array` saved), and
//! `std::process::exit` still flushes standard output.

use std::os::fd::RawFd;

/// The standard descriptors: input, output, error.
const STANDARD_FDS: [RawFd; 3] = [0, 1, 2];

/// Prepares the process as std's start-up would; call first in `main`.
pub fn prepare() {
    // SAFETY: setting a signal's disposition to ignore, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    for fd in STANDARD_FDS {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1;
        if closed {
            // The lowest free descriptor: `fd` itself, as the lower ones are open.
            // SAFETY: a NUL-terminated path; the descriptor stays open for the process.
            unsafe {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigpipe_is_ignored_after_prepare() {
        prepare();
        // SAFETY: reading the current disposition by setting it to the same value.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        assert_eq!(old, libc::SIG_IGN);
        for fd in STANDARD_FDS {
            // SAFETY: as above.
            assert_ne!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, -1, "fd {fd}");
        }
    }
}
