//! Where a Debian build works: scratch directories in the image directory, renamed into place
//! when their product is complete and removed otherwise; the lock one build at a time holds;
//! and the removal of what a killed build left (its loop devices, its scratch directories).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::loopdev;
use crate::image::leftovers::scratch_path;
use crate::image::output;

/// The name of the lock file every Debian build holds in the image directory.
pub const LOCK_FILE: &str = ".debian.lock";

/// Prefix of the scratch directories of Debian builds in the image directory.
pub const SCRATCH_PREFIX: &str = ".debian-";

/// How often a build waiting for another's lock tries it again, and looks for a Ctrl-C.
pub const LOCK_POLL: Duration = Duration::from_millis(200);

/// Holds the image directory's Debian build lock: a second build waits for the first, then
/// finds its images in the cache. Waits until `interrupted` (a Ctrl-C: see
/// [`crate::step::interrupted`]) says to stop, then fails.
pub fn lock(out: &Path, interrupted: impl Fn() -> bool) -> anyhow::Result<Flock<fs::File>> {
    let path = out.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    let mut waiting = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((again, Errno::EWOULDBLOCK)) => file = again,
            Err((_, err)) => bail!("failed to lock {}: {err}", path.display()),
        }
        if interrupted() {
            bail!(
                "interrupted while waiting for another Debian image build (it holds {})",
                path.display()
            );
        }
        if !waiting {
            eprintln!(
                "waiting for another Debian image build to finish (it holds {})",
                path.display()
            );
            waiting = true;
        }
        thread::sleep(LOCK_POLL);
    }
}

/// Removes what a killed build left (under the lock, so no build is running): its loop
/// devices, then its scratch directories.
pub fn clean_leftovers(out: &Path) {
    for device in loopdev::detach_backed_by(&leftover_prefix(out)) {
        eprintln!(
            "detached {}, left by an interrupted image build",
            device.display()
        );
    }
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_scratch = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(SCRATCH_PREFIX) && n != LOCK_FILE);
        if is_scratch {
            WorkDir { path: entry.path() }.remove();
        }
    }
}

/// The path prefix of the files a build's loop devices are backed by: the scratch prefix in
/// `out` as the kernel names it (`losetup` lists backing files canonical: absolute, with no
/// symbolic link), whatever path `out` was given by.
fn leftover_prefix(out: &Path) -> String {
    let out = fs::canonicalize(out).unwrap_or_else(|_| out.to_owned());
    format!("{}/{SCRATCH_PREFIX}", out.display())
}

/// Removes `dir`, a product under its final name in `out` that is not `complete` (its
/// manifest gone or torn: a power loss after the rename, a hand that deleted a file), so that
/// the build that makes it anew can rename its own into place; whether it is gone. Under the
/// lock and the second look of [`output::set_aside_incomplete`], as the tiny image's: an
/// image a run holds stays, and the build stops saying so. Moved aside first, under a scratch name: a removal that stops
/// half-way leaves what the next build's cleanup removes.
pub fn set_aside_incomplete(
    out: &Path,
    dir: &Path,
    complete: impl Fn(&Path) -> bool,
) -> anyhow::Result<bool> {
    let name = dir
        .file_name()
        .map_or_else(|| "product".into(), |n| n.to_string_lossy().into_owned());
    let aside = scratch_path(out, SCRATCH_PREFIX, &format!("incomplete-{name}"));
    output::set_aside_incomplete(dir, &aside, complete)
}

/// A scratch directory in the image directory, removed when dropped (build failed or
/// interrupted); [`WorkDir::commit`] moves its product into place first.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// `<out>/.debian-<what>.<pid>`, empty.
    pub fn create(out: &Path, what: &str) -> anyhow::Result<Self> {
        let what = what.strip_prefix("debian-").unwrap_or(what);
        let path = out.join(format!("{SCRATCH_PREFIX}{what}.{}", std::process::id()));
        let this = Self { path };
        this.remove();
        fs::create_dir_all(&this.path)
            .with_context(|| format!("failed to create {}", this.path.display()))?;
        Ok(this)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames `<scratch>/<product>` to `dest` (atomic: same file system). A product that is
    /// already there (a concurrent build of the same key) is left as it is.
    pub fn commit(&self, product: &str, dest: &Path) -> anyhow::Result<()> {
        let from = self.path.join(product);
        if let Err(err) = fs::rename(&from, dest)
            && !dest.is_dir()
        {
            return Err(err)
                .with_context(|| format!("failed to move the product to {}", dest.display()));
        }
        Ok(())
    }

    /// Removes the directory, unless something is mounted inside it (then it says so and
    /// leaves it: removing would reach into the mounted file system).
    fn remove(&self) {
        if !self.path.exists() {
            return;
        }
        if let Some(mount) = mounted_under(&self.path) {
            eprintln!(
                "warning: {} is mounted; leaving {} (unmount it, then remove the directory)",
                mount.display(),
                self.path.display()
            );
            return;
        }
        if let Err(err) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: failed to remove {}: {err}", self.path.display());
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A mount point at or under `dir` in this process's mount namespace, if any.
fn mounted_under(dir: &Path) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_points(&mountinfo)
        .into_iter()
        .find(|point| point.starts_with(dir))
}

/// The mount points of a `/proc/self/mountinfo` (field 5, octal escapes decoded).
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&digits, 8)
                && digits.len() == 3
            {
                out.push(char::from(byte));
                chars.nth(2);
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_directory_is_removed_unless_committed() {
        let out = tempfile::tempdir().unwrap();
        let work = WorkDir::create(out.path(), "debian-metaboot-abc").unwrap();
        let path = work.path().to_owned();
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(".debian-metaboot-abc.")
        );
        fs::create_dir(path.join("image")).unwrap();
        fs::write(path.join("image/disk.qcow2"), b"x").unwrap();
        fs::write(path.join("disk.raw"), b"scratch").unwrap();
        let dest = out.path().join("debian-metaboot-abc");
        work.commit("image", &dest).unwrap();
        drop(work);
        assert!(!path.exists(), "the scratch directory goes");
        assert_eq!(fs::read(dest.join("disk.qcow2")).unwrap(), b"x");

        // A build that fails (or is interrupted) leaves nothing under the final name.
        let failed = WorkDir::create(out.path(), "debian-cloud-init-def").unwrap();
        fs::create_dir(failed.path().join("image")).unwrap();
        let failed_path = failed.path().to_owned();
        drop(failed);
        assert!(!failed_path.exists());
        assert!(!out.path().join("debian-cloud-init-def").exists());

        // A product under its final name that is not complete is set aside and removed.
        let incomplete = out.path().join("debian-cloud-init-ghi");
        fs::create_dir_all(&incomplete).unwrap();
        fs::write(incomplete.join("disk.qcow2"), b"no manifest").unwrap();
        set_aside_incomplete(out.path(), &incomplete, |_| false).unwrap();
        assert!(!incomplete.exists());
        let left: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("debian-metaboot-abc")]);
        // Nothing there: nothing to do.
        set_aside_incomplete(out.path(), &incomplete, |_| false).unwrap();

        // One a run holds stays, and the build stops at once saying so.
        let held = out.path().join("debian-cloud-init-jkl");
        fs::create_dir_all(&held).unwrap();
        let _run = nix::fcntl::Flock::lock(
            fs::File::open(&held).unwrap(),
            nix::fcntl::FlockArg::LockSharedNonblock,
        )
        .unwrap();
        let err = set_aside_incomplete(out.path(), &held, |_| false).unwrap_err();
        assert!(
            format!("{err:#}").contains("a run still uses it"),
            "{err:#}"
        );
        assert!(held.exists());
        drop(_run);
        fs::remove_dir(&held).unwrap();

        // A killed build's scratch directory is removed by the next build.
        let stale = out.path().join(".debian-rootfs-1.99999");
        fs::create_dir_all(stale.join("x")).unwrap();
        clean_leftovers(out.path());
        assert!(!stale.exists());
        assert!(dest.exists(), "images stay");
    }

    /// A build waiting for another's lock stops on Ctrl-C, and takes the lock once it is
    /// released.
    #[test]
    fn waiting_for_the_lock_stops_on_ctrl_c() {
        use std::sync::mpsc;
        use std::time::Instant;
        /// Long enough for a loaded machine, far shorter than forever.
        const WAIT: Duration = Duration::from_secs(20);
        let out = tempfile::tempdir().unwrap();
        let first = lock(out.path(), || false).unwrap();
        let (done, finished) = mpsc::channel();
        let dir = out.path().to_owned();
        thread::spawn(move || {
            let _ = done.send(lock(&dir, || true).map(drop).map_err(|e| e.to_string()));
        });
        let err = finished
            .recv_timeout(WAIT)
            .expect("stopped waiting")
            .unwrap_err();
        assert!(
            err.contains("interrupted") && err.contains(LOCK_FILE),
            "{err}"
        );

        let (done, finished) = mpsc::channel();
        let dir = out.path().to_owned();
        thread::spawn(move || {
            let _ = done.send(lock(&dir, || false).map(drop).is_ok());
        });
        thread::sleep(LOCK_POLL * 2);
        assert!(
            finished.try_recv().is_err(),
            "waits while the first build runs"
        );
        let released = Instant::now();
        drop(first);
        assert!(finished.recv_timeout(WAIT).unwrap());
        assert!(released.elapsed() < WAIT);
    }

    /// The cache reached through a symbolic link (or a relative path) still finds the loop
    /// devices a killed build left: `losetup` names their files by the canonical path.
    #[test]
    fn leftovers_are_looked_for_under_the_canonical_image_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("images");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("cache-link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let canonical = fs::canonicalize(&real).unwrap();
        let expected = format!("{}/{SCRATCH_PREFIX}", canonical.display());
        assert_eq!(leftover_prefix(&link), expected);
        assert_eq!(leftover_prefix(&link.join("../images")), expected);
        // An image directory that is gone: the path as given.
        let gone = dir.path().join("gone");
        assert_eq!(
            leftover_prefix(&gone),
            format!("{}/{SCRATCH_PREFIX}", gone.display())
        );
    }

    #[test]
    fn mount_points_are_read_with_their_escapes() {
        let info = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
            30 22 0:5 / /var/cache/a\\040b/.debian-x.1/root/proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(info),
            [
                PathBuf::from("/"),
                PathBuf::from("/var/cache/a b/.debian-x.1/root/proc")
            ]
        );
        assert!(mounted_under(Path::new("/proc")).is_some());
        assert!(mounted_under(Path::new("/nonexistent/dir")).is_none());
    }
}
