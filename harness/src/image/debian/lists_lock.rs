//! apt's lock on its package lists (`<lists>/lock`), held while the root's packages are
//! resolved ([`super::closure`]): `apt-get update` (apt-daily's too) holds it while it
//! replaces the lists, so the two simulations read one set of lists, never one from before an
//! update and one from after.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

/// The name of apt's lock file in its lists directory (`apt-get update` locks it with
/// `fcntl`).
pub const LOCK_FILE: &str = "lock";

/// How long a build waits for an `apt-get update` to release the lists: one on a slow mirror
/// takes minutes.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a build waiting for the lists tries the lock again, and looks for a Ctrl-C.
pub const POLL: Duration = Duration::from_millis(200);

/// The lists locked against `apt-get update`, until dropped (an open file description lock:
/// it conflicts with apt's `fcntl` lock, and goes with the file).
#[derive(Debug)]
pub struct ListsLock {
    _file: File,
}

/// Locks the lists in `lists` as `apt-get update` does (a write lock on [`LOCK_FILE`]),
/// waiting while an update holds them, up to `timeout`, or until `interrupted` (a Ctrl-C: see
/// [`crate::step::interrupted`]) says to stop.
pub fn lock(
    lists: &Path,
    timeout: Duration,
    interrupted: impl Fn() -> bool,
) -> anyhow::Result<ListsLock> {
    let path = lists.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "failed to open apt's lock {}: run `apt-get update`",
                path.display()
            )
        })?;
    let request = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let deadline = Instant::now() + timeout;
    let mut waiting = false;
    loop {
        match fcntl(&file, FcntlArg::F_OFD_SETLK(&request)) {
            Ok(_) => return Ok(ListsLock { _file: file }),
            Err(Errno::EAGAIN | Errno::EACCES) => {}
            Err(err) => bail!("failed to lock {}: {err}", path.display()),
        }
        if interrupted() {
            bail!(
                "interrupted while waiting for apt to update its package lists (it holds {})",
                path.display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "apt's package lists stayed locked for {timeout:?} (an `apt-get update` holds \
                 {}): build again once it has ended",
                path.display()
            );
        }
        if !waiting {
            eprintln!(
                "waiting for apt to finish updating its package lists (it holds {})",
                path.display()
            );
            waiting = true;
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough for a loaded machine, far shorter than forever.
    const WAIT: Duration = Duration::from_secs(20);

    /// An update can take minutes; a build looks for its end (and a Ctrl-C) often.
    #[test]
    fn the_wait_outlasts_an_update_and_polls_often() {
        assert!(WAIT_TIMEOUT >= Duration::from_secs(300));
        assert!(POLL * 10 <= Duration::from_secs(5));
    }

    /// While another holds the lock (as `apt-get update` would), a build waits: it stops on
    /// Ctrl-C or at its deadline, saying why, and takes the lock once it is released.
    #[test]
    fn a_build_waits_for_an_update_of_the_lists() {
        let lists = tempfile::tempdir().unwrap();
        let update = lock(lists.path(), WAIT, || false).unwrap();

        let err = lock(lists.path(), WAIT, || true).unwrap_err().to_string();
        assert!(
            err.contains("interrupted") && err.contains(LOCK_FILE),
            "{err}"
        );
        let began = Instant::now();
        let err = lock(lists.path(), POLL, || false).unwrap_err().to_string();
        assert!(err.contains("stayed locked"), "{err}");
        assert!(began.elapsed() >= POLL);

        drop(update);
        lock(lists.path(), WAIT, || false).unwrap();
    }
}
