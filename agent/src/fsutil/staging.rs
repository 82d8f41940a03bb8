//! Staged replacements: durability for a whole run at a constant number of syncs.
//!
//! Under staging, an atomic write puts its complete temp file next to the target at once and
//! records (directory, temp name, final name); nothing is renamed yet. A *publish* makes every
//! staged write visible: one `syncfs(2)` per file system holding temp files (their data and
//! inodes reach the disk), then the renames, in the order the writes were made. The run's
//! *commit* is its last publish. A run without scripts syncs once, however many files it
//! writes; each script (which must see the files in place) adds at most one publish, and so
//! does every [`MAX_STAGED_DIRS`] directories written.
//!
//! What a crash leaves:
//! - before a publish: every target is the old file (the temp files are left over);
//! - between two renames (SIGKILL): each target is old or new, and the new ones are exactly
//!   the writes made before some point of the run, in order, as if the run had been killed
//!   there (`/etc/passwd` is written after shadow and group, so a user never exists without
//!   them; a step's semaphore after the step's files, except a user-script step's, which
//!   comes before its scripts run; `status.json` last);
//! - power loss: the temp files' data was synced before any rename, so a renamed file is never
//!   empty or torn; renames reach the disk in the order they were made on journaling file
//!   systems (ext4, XFS, btrfs keep metadata operations in order), so the same prefix rule
//!   holds.
//!
//! No sync follows the last renames. They reach the disk with the file system's next journal
//! commit (ext4 commits every 5 s by default, XFS pushes its log within 30 s, and any later
//! `sync`, a clean shutdown included, writes them), not before the run exits. A `syncfs` after
//! them would be a second journal commit and device flush on every boot, on the guest's
//! critical path (on the bench's loop disk, half of what the run waits on the disk), and would
//! buy only this: a power loss in those seconds after a finished run leaves the run as a power
//! loss during its renames leaves it, which the rules above already make safe:
//! - every file is old or new, never empty or torn: its data was synced before its rename;
//! - the on-disk state is a prefix of the run's writes: journal commits keep the renames'
//!   order, and the run stages `instance-id` before any step's files, a step's semaphore
//!   after its files, and `status.json` (`done`) after everything;
//! - the next boot redoes what did not persist: a step whose semaphore is missing runs again
//!   (per-instance and per-once steps already rerun after a SIGKILL between two renames, which
//!   leaves the same state; per-boot steps run every boot anyway), an `instance-id` that did
//!   not persist makes the instance new again, and `status.json` still says `running` (renamed
//!   at the start, before the first sync) or the previous boot's result until the new run
//!   ends.
//!
//! What happened outside the disk before the commit (a script's network calls, the password
//! post-back's POST) was never covered by a sync after the renames either: a power loss or a
//! SIGKILL before the commit loses the record of it in both schemes.
//!
//! A killed run leaves its temp files behind (`.NAME.metaboot-PID-N.tmp`, a long NAME cut to
//! fit `NAME_MAX`, see `atomic.rs`): the next run removes those of every directory it writes
//! into, the first time it writes there ([`Staging::sweep`]), so they never pile up nor clash
//! with a later run of the same PID.
//!
//! Until a write is published, the run still reads what it wrote: a read, a status or an open
//! of a staged name is answered from its newest temp file ([`Staging::redirect`]). Anything
//! that changes a staged name in another way, lists a directory holding staged files, or runs
//! a program first publishes ([`Staging::settle`], [`Staging::settle_dir`], and the scripts).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::error::PathError;

/// Most directories with staged files at once: each is held open until the next publish, so
/// a run writing into more directories publishes (and syncs) once per this many.
pub const MAX_STAGED_DIRS: usize = 256;

/// A directory's identity: (device, inode).
pub type DirId = (u64, u64);

/// The staged writes of one run (shared by every handle of its root).
#[derive(Debug, Default)]
pub struct Staging {
    inner: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Directories holding staged files, each opened once.
    dirs: Vec<StagedDir>,
    /// The staged writes, in the order they were made.
    entries: Vec<Entry>,
    /// Indexes into `entries` by final name (several directories may hold the same name).
    by_name: HashMap<OsString, Vec<usize>>,
    /// Where the open group of writes starts ([`Staging::begin_group`]).
    group: Option<usize>,
    /// The open group's number, given to each of its writes; kept across a publish.
    group_number: Option<u64>,
    /// Groups opened so far in the run.
    groups: u64,
    /// Totals of the run.
    totals: Totals,
    /// Writes that could not be made durable or renamed, for the run's report.
    failures: Vec<PathError>,
    /// Directories already cleared of earlier runs' temp files.
    swept: HashSet<DirId>,
}

#[derive(Debug)]
struct StagedDir {
    id: DirId,
    fd: OwnedFd,
    /// For messages.
    path: PathBuf,
}

#[derive(Debug)]
struct Entry {
    /// Index into `dirs`.
    dir: usize,
    temp: OsString,
    name: OsString,
    /// The target as the caller named it (for messages).
    shown: PathBuf,
    /// The group ([`Staging::begin_group`]) the write belongs to: when one of its renames
    /// fails, its later ones are not made.
    group: Option<u64>,
}

/// What a run's staging did: files renamed into place, publishes, and syncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files renamed into place.
    pub files: u64,
    /// Publishes that renamed something.
    pub publishes: u64,
    /// `syncfs(2)` calls.
    pub syncs: u64,
}

/// The outcome of a run's commit.
#[derive(Debug, Default)]
pub struct Committed {
    /// The run's totals.
    pub totals: Totals,
    /// Every write that did not reach its place (its old file is kept), with the sync that
    /// failed when that was why.
    pub failures: Vec<PathError>,
}

/// The identity of directory `fd`, as [`Staging::sweep`] and [`Staging::stage`] take it.
pub fn dir_id(fd: BorrowedFd<'_>) -> io::Result<DirId> {
    let stat = fstat(fd)?;
    Ok((stat.st_dev, stat.st_ino))
}

impl Staging {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves consistent data (every change is one push or
        // one drain): go on with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The temp file holding the newest staged write of `name` in directory `dir`, if any.
    pub fn redirect(&self, dir: BorrowedFd<'_>, name: &OsStr) -> Option<OsString> {
        let pending = self.lock();
        let indexes = pending.by_name.get(name)?;
        let id = dir_id(dir).ok()?;
        indexes
            .iter()
            .rev()
            .map(|&i| &pending.entries[i])
            .find(|entry| pending.dirs[entry.dir].id == id)
            .map(|entry| entry.temp.clone())
    }

    /// True when any of `names` is the final name of a staged write, in whatever directory:
    /// a path through such a name must be walked name by name to be seen as staged.
    pub fn stages_any<'n>(&self, mut names: impl Iterator<Item = &'n OsStr>) -> bool {
        let pending = self.lock();
        !pending.by_name.is_empty() && names.any(|name| pending.by_name.contains_key(name))
    }

    /// Publishes when `name` in `dir` is staged: before it is changed other than by staging.
    pub fn settle(&self, dir: BorrowedFd<'_>, name: &OsStr) {
        if self.redirect(dir, name).is_some() {
            self.publish();
        }
    }

    /// Publishes when directory `dir` holds staged files: before it is listed.
    pub fn settle_dir(&self, dir: BorrowedFd<'_>) {
        let Ok(id) = dir_id(dir) else {
            return;
        };
        let staged = {
            let pending = self.lock();
            pending
                .entries
                .iter()
                .any(|entry| pending.dirs[entry.dir].id == id)
        };
        if staged {
            self.publish();
        }
    }

    /// Removes, the first time this run writes into `dir`, the temp files a killed run left
    /// there (names of the form `.NAME.metaboot-PID-N.tmp`; the run lock keeps any other run
    /// out, so none is in use). Only names of that form go, and `unlinkat` never follows a
    /// link: an entry a user planted under such a name in their own directory is theirs to
    /// lose. `id` is the directory's ([`dir_id`]). Returns how many were removed.
    pub fn sweep(&self, dir: BorrowedFd<'_>, id: DirId) -> usize {
        if !self.lock().swept.insert(id) {
            return 0;
        }
        // A descriptor of its own: reading a directory moves the shared offset.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let Ok(fd) = openat(dir, ".", flags, Mode::empty()) else {
            return 0;
        };
        let Ok(mut listing) = nix::dir::Dir::from_fd(fd) else {
            return 0;
        };
        let stale: Vec<OsString> = listing
            .iter()
            .filter_map(Result::ok)
            .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_owned())
            .filter(|name| is_temp_name(name))
            .collect();
        let pending = self.lock();
        let ours = |name: &OsString| {
            pending
                .entries
                .iter()
                .any(|entry| &entry.temp == name && pending.dirs[entry.dir].id == id)
        };
        stale
            .iter()
            .filter(|name| !ours(name))
            .filter(|name| unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok())
            .count()
    }

    /// Records that `temp`, a complete file (or symlink) in `dir` (identity `id`, from
    /// [`dir_id`]), replaces `name` at the next publish. A write replacing the previous staged
    /// write of the same name, with nothing staged in between, takes its place (the older temp
    /// file is removed).
    pub fn stage(
        &self,
        dir: BorrowedFd<'_>,
        id: DirId,
        dir_path: &std::path::Path,
        temp: OsString,
        name: &OsStr,
        shown: PathBuf,
    ) -> io::Result<()> {
        let full = {
            let pending = self.lock();
            pending.dirs.len() >= MAX_STAGED_DIRS && !pending.dirs.iter().any(|d| d.id == id)
        };
        if full {
            self.publish();
        }
        let mut pending = self.lock();
        let at = match pending.dirs.iter().position(|d| d.id == id) {
            Some(at) => at,
            None => {
                let fd = dir.try_clone_to_owned()?;
                pending.dirs.push(StagedDir {
                    id,
                    fd,
                    path: dir_path.to_owned(),
                });
                pending.dirs.len() - 1
            }
        };
        let floor = pending.group.unwrap_or(0);
        let last = pending.entries.len().checked_sub(1);
        if let Some(last) = last.filter(|&last| last >= floor)
            && pending.entries[last].dir == at
            && pending.entries[last].name == name
        {
            let old = std::mem::replace(&mut pending.entries[last].temp, temp);
            // Best effort: a left-over temp file is garbage, never a target.
            let _ = unlinkat(
                &pending.dirs[at].fd,
                old.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            pending.entries[last].shown = shown;
            return Ok(());
        }
        let index = pending.entries.len();
        let group = pending.group_number;
        pending.entries.push(Entry {
            dir: at,
            temp,
            name: name.to_owned(),
            shown,
            group,
        });
        pending
            .by_name
            .entry(name.to_owned())
            .or_default()
            .push(index);
        Ok(())
    }

    /// Opens a group of writes that is staged whole or not at all ([`Staging::abandon_group`]).
    pub fn begin_group(&self) {
        let mut pending = self.lock();
        pending.group = Some(pending.entries.len());
        pending.groups += 1;
        pending.group_number = Some(pending.groups);
    }

    /// Closes the open group, keeping its writes.
    pub fn end_group(&self) {
        let mut pending = self.lock();
        pending.group = None;
        pending.group_number = None;
    }

    /// Drops every write staged since [`Staging::begin_group`] (their temp files are removed;
    /// the targets stay as they were).
    pub fn abandon_group(&self) {
        let mut pending = self.lock();
        pending.group_number = None;
        let Some(start) = pending.group.take() else {
            return;
        };
        let dropped: Vec<Entry> = pending.entries.drain(start..).collect();
        for entry in dropped {
            let _ = unlinkat(
                &pending.dirs[entry.dir].fd,
                entry.temp.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            if let Some(indexes) = pending.by_name.get_mut(&entry.name) {
                indexes.retain(|&i| i < start);
                if indexes.is_empty() {
                    pending.by_name.remove(&entry.name);
                }
            }
        }
    }

    /// Makes every staged write visible: one `syncfs` per file system holding temp files,
    /// then the renames in the order the writes were made. A write that cannot be synced or
    /// renamed keeps its old file and is kept for [`Staging::commit`]'s report, and so do the
    /// later writes of its group (a group's earlier ones stay placed: its writer orders them so
    /// that a prefix is safe, as a crash between two renames leaves one).
    pub fn publish(&self) {
        let mut pending = self.lock();
        if pending.entries.is_empty() {
            return;
        }
        pending.group = None;
        let entries = std::mem::take(&mut pending.entries);
        let dirs = std::mem::take(&mut pending.dirs);
        pending.by_name.clear();
        let mut synced: Vec<u64> = Vec::new();
        let mut failed_sync = None;
        for entry in &entries {
            let dir = &dirs[entry.dir];
            if synced.contains(&dir.id.0) {
                continue;
            }
            synced.push(dir.id.0);
            pending.totals.syncs += 1;
            if let Err(errno) = nix::unistd::syncfs(&dir.fd) {
                failed_sync = Some((dir.path.clone(), errno));
                break;
            }
        }
        if let Some((path, errno)) = failed_sync {
            // The data may not be on disk: renaming now could leave a torn file after a power
            // loss. Every target keeps its old file.
            for entry in &entries {
                let dir = &dirs[entry.dir];
                let _ = unlinkat(&dir.fd, entry.temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
            pending
                .failures
                .push(PathError::fail("sync the file system of", path)(
                    errno.into(),
                ));
            return;
        }
        let mut renamed = 0;
        // Groups with a rename that failed, and the file that failed: their later writes are
        // not made (passwd is not renamed when shadow could not be).
        let mut broken: HashMap<u64, PathBuf> = HashMap::new();
        for entry in &entries {
            let dir = &dirs[entry.dir];
            if let Some(failed) = entry.group.and_then(|group| broken.get(&group)) {
                let _ = unlinkat(&dir.fd, entry.temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                let why = io::Error::other(format!(
                    "not placed: it is written together with {}, which could not be",
                    failed.display()
                ));
                pending
                    .failures
                    .push(PathError::fail("rename into place", entry.shown.clone())(
                        why,
                    ));
                continue;
            }
            match renameat(
                &dir.fd,
                entry.temp.as_os_str(),
                &dir.fd,
                entry.name.as_os_str(),
            ) {
                Ok(()) => renamed += 1,
                Err(errno) => {
                    let _ = unlinkat(&dir.fd, entry.temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                    if let Some(group) = entry.group {
                        broken.insert(group, entry.shown.clone());
                    }
                    pending
                        .failures
                        .push(PathError::fail("rename into place", entry.shown.clone())(
                            errno.into(),
                        ));
                }
            }
        }
        pending.totals.files += renamed;
        pending.totals.publishes += 1;
    }

    /// Ends the run's writes: publishes what is staged (its renames reach the disk with the
    /// file system's next journal commit: see the module's documentation for why no sync
    /// follows them). Returns the totals and every failure.
    pub fn commit(&self) -> Committed {
        self.publish();
        let mut pending = self.lock();
        Committed {
            totals: pending.totals,
            failures: std::mem::take(&mut pending.failures),
        }
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        self.lock().totals
    }
}

/// True for the name of a temp file of an atomic write: `.NAME.metaboot-PID-N.tmp`.
pub fn is_temp_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
    else {
        return false;
    };
    let Some((stem, numbers)) = rest.rsplit_once(".metaboot-") else {
        return false;
    };
    let Some((pid, n)) = numbers.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !stem.is_empty() && digits(pid) && digits(n)
}

impl Drop for Staging {
    /// Writes never published (a run that ended without its commit) leave their targets as
    /// they were; their temp files go.
    fn drop(&mut self) {
        let pending = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        for entry in &pending.entries {
            let _ = unlinkat(
                &pending.dirs[entry.dir].fd,
                entry.temp.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests;
