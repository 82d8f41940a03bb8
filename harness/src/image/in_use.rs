//! Which images and run directories a harness process uses: each holds a shared `flock` on
//! every one it opened, until it exits, and pruning removes only what it can lock exclusively,
//! so one run never deletes the image or the run directory of another that is still going.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

/// The shared locks this process holds (released when it exits).
static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// A shared lock on a directory, released when dropped unless [`Held::keep`] keeps it.
#[derive(Debug)]
pub struct Held(Flock<File>);

impl Held {
    /// Keeps the lock until this process exits.
    pub fn keep(self) {
        HELD.lock().unwrap_or_else(|p| p.into_inner()).push(self.0);
    }
}

/// Locks `dir` shared, for this process's use: take it before reading what is inside, then
/// [`Held::keep`] it. Fails when `dir` is gone or being removed by a prune (the caller then
/// treats it as absent).
pub fn hold(dir: &Path) -> anyhow::Result<Held> {
    let file = File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
    Flock::lock(file, FlockArg::LockSharedNonblock)
        .map(Held)
        .map_err(|(_, err)| {
            anyhow::anyhow!("{} is being removed (by a prune): {err}", dir.display())
        })
}

/// Removes `path` unless a process holds it (see [`hold`]); whether it was removed. Best
/// effort: a failed removal only costs disk space.
pub fn remove_unless_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // Held exclusively while it goes: a run that opens it meanwhile fails to hold it.
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        return false;
    };
    std::fs::remove_dir_all(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_process_holds_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let used = dir.path().join("tiny-used");
        let unused = dir.path().join("tiny-unused");
        for image in [&used, &unused] {
            std::fs::create_dir_all(image.join("sub")).unwrap();
            std::fs::write(image.join("sub/initrd.img"), b"x").unwrap();
        }
        hold(&used).unwrap().keep();
        // Another open file (as another process would have) cannot lock it exclusively.
        assert!(!remove_unless_held(&used));
        assert!(used.join("sub/initrd.img").is_file());
        assert!(remove_unless_held(&unused));
        assert!(!unused.exists());
        assert!(hold(&unused).is_err(), "gone");
        assert!(!remove_unless_held(&unused));
        // A lock not kept is released with its guard.
        let released = dir.path().join("tiny-released");
        std::fs::create_dir(&released).unwrap();
        drop(hold(&released).unwrap());
        assert!(remove_unless_held(&released));
    }
}
