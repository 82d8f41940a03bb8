//! Where built images go: the image directory's files, the links to the newest image of each
//! kind (`tiny`, `debian-metaboot`, …), and pruning old images.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use nix::fcntl::{Flock, FlockArg};

use super::cpio::Archive;

/// The sizes of the files [`write_image`] wrote, which the manifest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The kernel's.
    pub kernel_bytes: u64,
    /// The gzipped initramfs's.
    pub initrd_bytes: u64,
}

/// Writes `vmlinuz` and the gzipped `initrd.img` into `dir` (synced by [`sync_staged`]).
pub fn write_image(dir: &Path, archive: &Archive, vmlinuz: &Path) -> anyhow::Result<Written> {
    let kernel_bytes =
        fs::copy(vmlinuz, dir.join(super::KERNEL)).context("failed to copy the kernel")?;
    let initrd = dir.join(super::INITRD);
    let file = fs::File::create(&initrd).context("failed to create the initrd")?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    archive
        .write_to(&mut gz)
        .context("failed to write the initrd")?;
    let file = gz
        .finish()
        .context("failed to write the initrd")?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("failed to write the initrd")?;
    let initrd_bytes = file.metadata().context("failed to stat the initrd")?.len();
    Ok(Written {
        kernel_bytes,
        initrd_bytes,
    })
}

/// Makes the finished image in `staging` durable before the rename that publishes it under
/// its final name: every regular file in it synced, then the directory itself; how many files.
/// Without it a power loss can leave a short kernel or disk under a complete manifest, reused
/// by every later run. One sync per file: images are built rarely.
pub fn sync_staged(staging: &Path) -> anyhow::Result<usize> {
    let failed = || format!("failed to sync the image in {}", staging.display());
    let mut synced = 0;
    for entry in fs::read_dir(staging).with_context(failed)? {
        let entry = entry.with_context(failed)?;
        if !entry.file_type().with_context(failed)?.is_file() {
            continue;
        }
        // Read-only is enough for fsync (a finished disk is mode 0444).
        fs::File::open(entry.path())
            .and_then(|file| file.sync_all())
            .with_context(|| format!("failed to sync {}", entry.path().display()))?;
        synced += 1;
    }
    fs::File::open(staging)
        .and_then(|dir| dir.sync_all())
        .with_context(failed)?;
    Ok(synced)
}

/// Points `<out>/tiny` at `dir` (atomically: a new symlink renamed over the old one).
pub fn link_latest(out: &Path, dir: &Path) -> anyhow::Result<()> {
    link_named(out, "tiny", dir)
}

/// Points `<out>/<link>` at `dir` (atomically: a new symlink renamed over the old one).
pub fn link_named(out: &Path, link: &str, dir: &Path) -> anyhow::Result<()> {
    let name = dir.file_name().context("an image directory has a name")?;
    let tmp = out.join(format!(".link.{link}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).context("failed to link the newest image")?;
    fs::rename(&tmp, out.join(link)).context("failed to link the newest image")
}

/// Marks image `dir` as used now: pruning keeps the images used last, not only those built
/// last (a run reusing an older image keeps it from a build that prunes meanwhile). Best
/// effort: a failure only lets the image age.
pub fn mark_used(dir: &Path) {
    if let Ok(file) = fs::File::open(dir) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Moves `dir`, an image directory under its final name that is not a complete image (a prune
/// cut short, a file deleted by hand), to `aside` and removes it there, so that a build can
/// rename a new image into its place; whether `dir` is gone. `complete` is asked again under
/// an exclusive lock on `dir`: a concurrent build's complete image stays. One a run holds
/// ([`in_use`](super::in_use)) stays too, and the build stops at once: its image could not be
/// renamed into that place, so the work would be thrown away. Named as a scratch path
/// (`aside`), what a removal cut short leaves goes with the next build's
/// [`remove_dead`](super::leftovers::remove_dead).
pub fn set_aside_incomplete(
    dir: &Path,
    aside: &Path,
    complete: impl Fn(&Path) -> bool,
) -> anyhow::Result<bool> {
    let Ok(file) = fs::File::open(dir) else {
        return Ok(fs::symlink_metadata(dir).is_err());
    };
    let _lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((file, _)) => return held_elsewhere(dir, file, &complete),
    };
    if complete(dir) {
        return Ok(false);
    }
    eprintln!(
        "warning: {} is not a complete image: building it anew",
        dir.display()
    );
    let _ = fs::remove_dir_all(aside);
    match fs::rename(dir, aside) {
        Ok(()) => {}
        // Set aside by a concurrent build meanwhile.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(err) => {
            return Err(err).with_context(|| {
                format!(
                    "failed to move the incomplete image {} aside (remove it)",
                    dir.display()
                )
            });
        }
    }
    if let Err(err) = fs::remove_dir_all(aside) {
        eprintln!("warning: failed to remove {}: {err}", aside.display());
    }
    Ok(true)
}

/// [`set_aside_incomplete`] when another process locks `dir` (opened as `file`): runs hold
/// images shared, for as long as they go; a concurrent build's look or a prune holds one
/// exclusively, only while it sets it aside or removes it. Waits for a shared lock, which only
/// those keep from, then looks again: gone or replaced meanwhile, it is what that process left
/// (whether nothing is there); still there and complete, it stays; still there and incomplete,
/// a run holds it, and the build stops saying so.
fn held_elsewhere(
    dir: &Path,
    file: fs::File,
    complete: impl Fn(&Path) -> bool,
) -> anyhow::Result<bool> {
    let shared = lock_shared(dir, file, EXCLUSIVE_HOLDER_WAIT)?;
    let opened = shared
        .metadata()
        .with_context(|| format!("failed to stat {}", dir.display()))?;
    let same = fs::symlink_metadata(dir)
        .is_ok_and(|now| (now.dev(), now.ino()) == (opened.dev(), opened.ino()));
    if !same {
        return Ok(fs::symlink_metadata(dir).is_err());
    }
    if complete(dir) {
        return Ok(false);
    }
    bail!(
        "{} is not a complete image, and a run still uses it: build again once that run ends \
         (or stop it)",
        dir.display()
    )
}

/// How long a build waits for another process's exclusive lock on an image directory (a
/// concurrent build's look, or a prune removing it: each holds it for moments) before it
/// stops: a process stopped while holding it (Ctrl-Z) would otherwise hold the build for ever.
pub const EXCLUSIVE_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a build waiting for that lock tries again, and looks for a Ctrl-C.
pub const EXCLUSIVE_HOLDER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A shared lock on `dir` (opened as `file`), waiting out another process's exclusive one for at
/// most `wait` ([`EXCLUSIVE_HOLDER_WAIT`]), or until a Ctrl-C ([`crate::step::interrupted`]).
fn lock_shared(
    dir: &Path,
    file: fs::File,
    wait: std::time::Duration,
) -> anyhow::Result<Flock<fs::File>> {
    let deadline = std::time::Instant::now() + wait;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(shared) => return Ok(shared),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => file = back,
            Err((_, err)) => bail!("failed to lock {}: {err}", dir.display()),
        }
        if crate::step::interrupted() {
            bail!(
                "interrupted while waiting for another build's lock on {}",
                dir.display()
            );
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "another process has held {} for {wait:?} (a build or prune \
                 stopped while it held it?): end it, then build again",
                dir.display()
            );
        }
        std::thread::sleep(EXCLUSIVE_HOLDER_POLL);
    }
}

/// Tiny images kept in the output directory (the newest; every agent rebuild makes a new one).
pub const MAX_CACHED_IMAGES: usize = 3;

/// Removes all but the `keep` newest `tiny-*` images, never `current`.
pub fn prune(out: &Path, current: &Path, keep: usize) {
    prune_prefixed(out, "tiny-", current, keep);
}

/// Removes all but the `keep` newest entries of `dir` whose names start with `prefix`, never
/// `current` nor one a running harness holds ([`in_use`](super::in_use)); also used for the
/// run directories.
pub fn prune_prefixed(out: &Path, prefix: &str, current: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    let mut images: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    images.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in images.into_iter().skip(keep) {
        if path != current {
            super::in_use::remove_unless_held(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of a staged image is synced (a disk made read-only too), then the directory;
    /// a staging directory that is gone says which.
    #[test]
    fn a_staged_image_is_synced_file_by_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("image");
        fs::create_dir_all(staging.join("sub")).unwrap();
        for name in [super::super::KERNEL, super::super::INITRD, "disk.qcow2"] {
            fs::write(staging.join(name), b"x").unwrap();
        }
        fs::set_permissions(
            staging.join("disk.qcow2"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        std::os::unix::fs::symlink("vmlinuz", staging.join("link")).unwrap();
        assert_eq!(sync_staged(&staging).unwrap(), 3);
        let gone = dir.path().join("gone");
        let err = format!("{:#}", sync_staged(&gone).unwrap_err());
        assert!(err.contains(&gone.display().to_string()), "{err}");
    }

    #[test]
    fn prune_keeps_the_newest_images_and_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::time::SystemTime::now();
        for i in 0..5u64 {
            let image = dir.path().join(format!("tiny-{i}"));
            fs::create_dir(&image).unwrap();
            let when = base - std::time::Duration::from_secs(100 * (5 - i));
            fs::File::open(&image).unwrap().set_modified(when).unwrap();
        }
        fs::create_dir(dir.path().join("other")).unwrap();
        let current = dir.path().join("tiny-0");
        prune(dir.path(), &current, MAX_CACHED_IMAGES);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other", "tiny-0", "tiny-2", "tiny-3", "tiny-4"]);
    }

    /// An image another run still uses is kept, however old.
    #[test]
    fn prune_keeps_an_image_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::time::SystemTime::now();
        for i in 0..3u64 {
            let image = dir.path().join(format!("tiny-{i}"));
            fs::create_dir(&image).unwrap();
            let when = base - std::time::Duration::from_secs(100 * (3 - i));
            fs::File::open(&image).unwrap().set_modified(when).unwrap();
        }
        super::super::in_use::hold(&dir.path().join("tiny-0"))
            .unwrap()
            .keep();
        prune(dir.path(), &dir.path().join("tiny-2"), 1);
        assert!(dir.path().join("tiny-0").exists(), "in use");
        assert!(!dir.path().join("tiny-1").exists());
        assert!(dir.path().join("tiny-2").exists());
    }

    /// An exclusive holder that never lets go (a build stopped with Ctrl-Z) stops the wait at
    /// its bound, saying so, instead of holding the build for ever.
    #[test]
    fn a_holder_that_never_lets_go_stops_the_wait_at_its_bound() {
        assert!(EXCLUSIVE_HOLDER_WAIT >= std::time::Duration::from_secs(10));
        assert!(EXCLUSIVE_HOLDER_POLL * 10 <= std::time::Duration::from_secs(2));
        let out = tempfile::tempdir().unwrap();
        let _held = Flock::lock(
            fs::File::open(out.path()).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let wait = std::time::Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = lock_shared(out.path(), fs::File::open(out.path()).unwrap(), wait)
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() >= wait);
        assert!(err.contains("another process has held"), "{err}");
    }

    /// A concurrent build that holds the damaged image exclusively while it sets it aside is
    /// waited for, not taken for a run: the image is gone, and the build goes on.
    #[test]
    fn a_concurrent_build_setting_the_image_aside_is_waited_for() {
        use std::sync::mpsc;
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("tiny-damaged");
        fs::create_dir(&dir).unwrap();
        let other = Flock::lock(
            fs::File::open(&dir).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let (done, finished) = mpsc::channel();
        let (path, aside) = (dir.clone(), out.path().join(".tiny-aside.1"));
        std::thread::spawn(move || {
            let gone = set_aside_incomplete(&path, &aside, |_| false).map_err(|e| e.to_string());
            let _ = done.send(gone);
        });
        /// Long enough for the thread to reach its lock.
        const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);
        /// Long enough for a loaded machine, far shorter than forever.
        const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
        std::thread::sleep(SETTLE);
        assert!(finished.try_recv().is_err(), "waits for the other build");
        fs::rename(&dir, out.path().join(".tiny-other-aside.2")).unwrap();
        drop(other);
        let gone = finished.recv_timeout(WAIT).expect("stopped waiting");
        assert_eq!(gone, Ok(true));
    }

    /// An image a run reuses is kept by the next prune, however long ago it was built.
    #[test]
    fn an_image_used_last_is_kept_like_one_built_last() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::time::SystemTime::now();
        for i in 0..4u64 {
            let image = dir.path().join(format!("tiny-{i}"));
            fs::create_dir(&image).unwrap();
            let when = base - std::time::Duration::from_secs(100 * (4 - i));
            fs::File::open(&image).unwrap().set_modified(when).unwrap();
        }
        mark_used(&dir.path().join("tiny-0"));
        prune(dir.path(), &dir.path().join("tiny-3"), 2);
        assert!(dir.path().join("tiny-0").exists());
        assert!(dir.path().join("tiny-3").exists());
        assert!(!dir.path().join("tiny-1").exists());
    }
}
