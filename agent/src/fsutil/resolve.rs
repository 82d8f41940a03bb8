//! In-root path resolution, race-free: a path is walked one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from directory descriptors already held, the way
//! chroot(2) or openat2's `RESOLVE_IN_ROOT` resolve it:
//! - a symlink is read through a descriptor of the link itself, and resolved inside the root:
//!   an absolute target restarts at the root, `..` never climbs above it;
//! - only root's symlinks (or the agent's own, when it runs as another user) are followed:
//!   a link a guest user planted is refused, whatever it points at;
//! - at most [`MAX_SYMLINKS`] links are followed per path;
//! - a missing directory is created (mode [`NEW_DIR_MODE`]) only along the path asked for,
//!   never inside a symlink's target (as `mkdir -p` will not create through a dangling link);
//!   the walk keeps the directories it made ([`Walker::take_created`]), so that a caller can
//!   give them an owner without touching one that was there before;
//! - under staging, a staged name is seen as its newest staged write (`staging.rs`).
//!
//! A run of plain names (no `..`, none of them staged) is first tried in one
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call: a path with no symlink on it resolves
//! the same either way, and the kernel refuses one that has any, which is then walked component
//! by component as above. A name the call finds missing is missing for the walk too (the
//! kernel stops at the first link, so none came before it): unless directories may be created
//! on the way, that is the answer, without a walk. A guest agent run resolves a few hundred
//! paths, a few dozen of them missing: one system call each instead of two per component (an
//! `openat` and a `close`).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};

use super::dir::Dir;
use super::error::Refused;
use super::owner::{is_agents, kind, kind_name, only_root_adds, only_system_adds};
use super::staging::Staging;

/// Most symlinks followed while resolving one path (Linux's own limit, MAXSYMLINKS).
pub const MAX_SYMLINKS: usize = 40;
/// Mode of a directory created on the way to a path.
pub const NEW_DIR_MODE: u32 = 0o755;

/// How every directory on the way is opened: never through a final symlink.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// How a run of names is resolved in one call: below the directory it starts from, through
/// no symlink at all (the walk judges each link itself).
const ONE_CALL: ResolveFlag = ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS);

/// Cleared when the kernel has no `openat2` (before Linux 5.6, or a seccomp filter that
/// refuses it): every path is then walked component by component.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// What one `openat2` call made of a run of names.
#[derive(Debug)]
enum Run {
    Opened(OwnedFd),
    /// A name on the way does not exist, with no symlink before it (the kernel refuses the
    /// first link it meets): walking the names one by one would stop at the same one.
    Missing,
    /// The names must be walked one by one: a symlink on the way, no `openat2`, another error.
    Walk,
}

/// Opens the names `run` below `dir` in one call, as [`DIR_FLAGS`] (`flags` for the last,
/// with `mode` when it creates); see [`Run`] for what else it can say.
fn open_run(dir: BorrowedFd<'_>, run: &Path, flags: OFlag, mode: Mode) -> Run {
    if !OPENAT2.load(Ordering::Relaxed) {
        return Run::Walk;
    }
    let mut how = OpenHow::new().flags(flags).resolve(ONE_CALL);
    if flags.intersects(OFlag::O_CREAT | OFlag::O_TMPFILE) {
        how = how.mode(mode);
    }
    match openat2(dir, run, how) {
        Ok(fd) => Run::Opened(fd),
        Err(Errno::ENOENT) => Run::Missing,
        Err(Errno::ENOSYS) => {
            OPENAT2.store(false, Ordering::Relaxed);
            Run::Walk
        }
        Err(_) => Run::Walk,
    }
}

/// One component still to walk.
struct Step {
    name: OsString,
    /// Missing directories may be created here (not inside a symlink's target).
    creatable: bool,
    /// This walk's `mkdirat` just made `name`: the directory opened next is judged as
    /// [`Dir::create_dir`] judges it (see [`Walker::take_created`]).
    made: bool,
}

fn steps(path: &Path, creatable: bool) -> VecDeque<Step> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .map(|name| Step {
            name,
            creatable,
            made: false,
        })
        .collect()
}

/// True when a symlink owned by `uid` may be followed.
fn trusted(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// A walk in progress from the root's descriptor.
pub(crate) struct Walker<'r> {
    root: BorrowedFd<'r>,
    /// The root's host path, for messages.
    root_path: &'r Path,
    /// The directories entered below the root, innermost last; an entry entered in one call
    /// is named by its whole run of components (`var/lib/metaboot`).
    stack: Vec<(OsString, OwnedFd)>,
    links: usize,
    staging: Option<&'r Arc<Staging>>,
    /// The directories this walk created, outermost first.
    created: Vec<Dir>,
    /// Set while a final link of root's is followed ([`Walker::through_roots_links`]): that
    /// link, for messages. Every directory a name is then looked up in must be one only root
    /// may add entries to, and names are walked one by one so that each is judged.
    judging: Option<PathBuf>,
}

impl<'r> Walker<'r> {
    /// A walk starting at the root; `staging` is the root's, if it stages its writes.
    pub(crate) fn new(
        root: BorrowedFd<'r>,
        root_path: &'r Path,
        staging: Option<&'r Arc<Staging>>,
    ) -> Self {
        Walker {
            root,
            root_path,
            stack: Vec::new(),
            links: 0,
            staging,
            created: Vec::new(),
            judging: None,
        }
    }

    /// The name to open for `name` in the current directory: its newest staged temp file,
    /// or itself.
    fn seen(&self, name: &OsStr) -> OsString {
        self.staging
            .and_then(|staging| staging.redirect(self.current(), name))
            .unwrap_or_else(|| name.to_owned())
    }

    /// The directory reached so far.
    pub(crate) fn current(&self) -> BorrowedFd<'_> {
        self.stack.last().map_or(self.root, |(_, fd)| fd.as_fd())
    }

    /// The host path of the directory reached so far, or of `name` inside it (for messages).
    pub(crate) fn shown(&self, name: Option<&OsStr>) -> PathBuf {
        let mut path = self.root_path.to_owned();
        path.extend(self.stack.iter().map(|(n, _)| n));
        path.extend(name);
        path
    }

    /// The directories this walk created so far, outermost first, each held open: one its
    /// `mkdirat` made and then opened as the agent's own ([`is_agents`]), as
    /// [`Dir::create_dir`] judges it. A directory someone else made first, or put in place of
    /// ours before it was opened, is not one of them.
    pub(crate) fn take_created(&mut self) -> Vec<Dir> {
        std::mem::take(&mut self.created)
    }

    /// The directory reached, as a handle.
    pub(crate) fn into_dir(mut self) -> io::Result<Dir> {
        let path = self.shown(None);
        let fd = match self.stack.pop() {
            Some((_, fd)) => fd,
            None => self.root.try_clone_to_owned()?,
        };
        Ok(Dir::new(fd, path, self.staging.cloned()))
    }

    /// Opens `path` (from the root, plain names only, none staged) in one call with `flags`
    /// (plus `O_NOFOLLOW | O_CLOEXEC`): `Some` with the file, or with `NotFound` when a name on
    /// the way is missing and no directory may be created (`create_parents` false); `None`
    /// when it must be walked instead (see [`Walker::open_final`]), which also decides what
    /// any other failure means.
    pub(crate) fn open_whole(
        &self,
        path: &Path,
        flags: OFlag,
        mode: Mode,
        create_parents: bool,
    ) -> Option<io::Result<OwnedFd>> {
        if !self.stack.is_empty() {
            return None;
        }
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => names.push(name),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        let staged = self
            .staging
            .is_some_and(|staging| staging.stages_any(names.iter().copied()));
        if names.is_empty() || staged {
            return None;
        }
        let run: PathBuf = names.into_iter().collect();
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match open_run(self.current(), &run, flags, mode) {
            Run::Opened(fd) => Some(Ok(fd)),
            Run::Missing if !create_parents => Some(Err(Errno::ENOENT.into())),
            Run::Missing | Run::Walk => None,
        }
    }

    /// Walks every component of `path` as a directory, creating missing ones when `create`.
    pub(crate) fn walk(&mut self, path: &Path, create: bool) -> io::Result<()> {
        self.walk_steps(steps(path, create))
    }

    /// Walks to the parent of `path`'s last component and returns that component, which must
    /// be a name (not `..`, not the root itself).
    pub(crate) fn walk_parent(&mut self, path: &Path, create: bool) -> io::Result<OsString> {
        let mut all = steps(path, create);
        let name = match all.pop_back() {
            Some(step) if step.name != ".." => step.name,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} does not name a file", path.display()),
                ));
            }
        };
        self.walk_steps(all)?;
        Ok(name)
    }

    /// The leading plain names of `todo` (two or more, none staged, none just made: that one
    /// is judged when it is opened) that one call may open.
    fn run_len(&self, todo: &VecDeque<Step>) -> usize {
        if self.judging.is_some() {
            return 0;
        }
        let run = todo
            .iter()
            .take_while(|step| step.name != ".." && !step.made)
            .count();
        if run < 2 {
            return 0;
        }
        let staged = self.staging.is_some_and(|staging| {
            staging.stages_any(todo.iter().take(run).map(|step| step.name.as_os_str()))
        });
        if staged { 0 } else { run }
    }

    /// Enters the leading names of `todo` in one call when they make a run: `Some(true)` when
    /// it did, `Some(false)` when the call could not, `None` when there was no run to try;
    /// `NotFound` when a name of the run is missing and none of them may be created.
    fn enter_run(&mut self, todo: &mut VecDeque<Step>) -> io::Result<Option<bool>> {
        let run = self.run_len(todo);
        if run == 0 {
            return Ok(None);
        }
        let path: PathBuf = todo.iter().take(run).map(|step| &step.name).collect();
        match open_run(self.current(), &path, DIR_FLAGS, Mode::empty()) {
            Run::Opened(fd) => {
                todo.drain(..run);
                self.stack.push((path.into_os_string(), fd));
                Ok(Some(true))
            }
            Run::Missing if todo.iter().take(run).all(|step| !step.creatable) => {
                Err(Errno::ENOENT.into())
            }
            Run::Missing | Run::Walk => Ok(Some(false)),
        }
    }

    /// Leaves the innermost directory (`..`; never above the root). An entry entered in one
    /// call is left by entering all but its last component again.
    fn leave(&mut self) -> io::Result<()> {
        let Some((name, _)) = self.stack.pop() else {
            return Ok(());
        };
        match Path::new(&name).parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.walk(parent, false),
            _ => Ok(()),
        }
    }

    fn walk_steps(&mut self, mut todo: VecDeque<Step>) -> io::Result<()> {
        // Once one call could not do it (a link or a missing name on the way), the rest of
        // this walk goes name by name: trying every shorter run again would cost more calls.
        let mut one_call = true;
        while !todo.is_empty() {
            if one_call {
                match self.enter_run(&mut todo)? {
                    Some(true) => continue,
                    Some(false) => one_call = false,
                    None => {}
                }
            }
            let Some(step) = todo.pop_front() else {
                break;
            };
            if step.name == ".." {
                self.leave()?;
                continue;
            }
            self.judge_current()?;
            let seen = self.seen(&step.name);
            match openat(self.current(), seen.as_os_str(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    if step.made && is_agents(&fstat(&fd)?) {
                        let path = self.shown(Some(&step.name));
                        let held = Dir::new(fd.try_clone()?, path, self.staging.cloned());
                        self.created.push(held);
                    }
                    self.stack.push((step.name, fd));
                }
                Err(Errno::ENOENT) if step.creatable => {
                    let made = match mkdirat(
                        self.current(),
                        step.name.as_os_str(),
                        Mode::from_bits_truncate(NEW_DIR_MODE),
                    ) {
                        Ok(()) => true,
                        // Someone else's directory (or link) is as good: open it on the retry.
                        Err(Errno::EEXIST) => false,
                        Err(errno) => return Err(errno.into()),
                    };
                    todo.push_front(Step {
                        name: step.name,
                        creatable: false,
                        made,
                    });
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let target = self.follow(&seen, &step.name)?;
                    for step in target.into_iter().rev() {
                        todo.push_front(step);
                    }
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    /// The target of symlink `name` in the current directory (read from entry `seen`, which is
    /// `name` or its staged temp), as steps to walk (the walk restarts at the root for an
    /// absolute target). Refuses what is not a trusted symlink: one owned by someone else,
    /// or one with more than one hard link.
    fn follow(&mut self, seen: &OsStr, name: &OsStr) -> io::Result<VecDeque<Step>> {
        // The link itself, so that its owner and its target are read from the same inode.
        let link = openat(
            self.current(),
            seen,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let stat = fstat(&link)?;
        if kind(&stat) != SFlag::S_IFLNK {
            return Err(Errno::ENOTDIR.into());
        }
        if let Some(refused) = self.untrusted(&stat, name) {
            return Err(refused.into());
        }
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(Refused::TooManySymlinks {
                path: self.shown(Some(name)),
                limit: MAX_SYMLINKS,
            }
            .into());
        }
        let target = PathBuf::from(readlinkat(&link, "")?);
        if target.is_absolute() {
            self.stack.clear();
        }
        Ok(steps(&target, false))
    }

    /// Why symlink `name` of the current directory, of status `stat`, is never followed;
    /// `None` when it may be.
    fn untrusted(&self, stat: &FileStat, name: &OsStr) -> Option<Refused> {
        let path = self.shown(Some(name));
        if !trusted(stat.st_uid) {
            return Some(Refused::ForeignSymlink {
                path,
                uid: stat.st_uid,
            });
        }
        // Root's own symlink, hard-linked by a user into a directory of theirs (the kernel
        // allows it where `fs.protected_hardlinks` is 0, its default without systemd), would
        // lead a path in that user's area anywhere.
        (stat.st_nlink > 1).then_some(Refused::LinkedSymlink {
            path,
            links: stat.st_nlink,
        })
    }

    /// Opens `name` in the current directory with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`).
    /// A symlink there is followed inside the root when `follow`, refused otherwise. A staged
    /// name is read from its staged write, and published before anything else opens it.
    pub(crate) fn open_final(
        &mut self,
        mut name: OsString,
        flags: OFlag,
        mode: Mode,
        follow: bool,
    ) -> io::Result<OwnedFd> {
        let read_only =
            flags & (OFlag::O_ACCMODE | OFlag::O_CREAT | OFlag::O_TRUNC) == OFlag::O_RDONLY;
        loop {
            if !read_only && let Some(staging) = self.staging {
                staging.settle(self.current(), &name);
            }
            let seen = self.seen(&name);
            let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(self.current(), seen.as_os_str(), flags, mode) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ELOOP) if follow => name = self.enter_link_parent(&seen, &name)?,
                Err(Errno::ELOOP) => {
                    return Err(Refused::Symlink(self.shown(Some(&name))).into());
                }
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// Opens `path` (from the root) with `flags` as root's configuration: its file, found as
    /// a write of it lands ([`Walker::through_roots_links`], refusing other links), in a
    /// directory only root or a system account may add entries to; one in any other directory
    /// is refused ([`Refused::InOpenDir`]), since it may be a user's.
    pub(crate) fn open_roots(&mut self, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let name = self.walk_parent(path, false)?;
        let name = self.through_roots_links(name, true)?;
        let fd = self.open_final(name.clone(), flags, Mode::empty(), false)?;
        if !only_system_adds(&fstat(self.current())?) {
            return Err(Refused::InOpenDir(self.shown(Some(&name))).into());
        }
        Ok(fd)
    }

    /// The entry `name` of the current directory (a symlink followed inside the root when
    /// `follow`); `None` when it does not exist.
    pub(crate) fn stat_final(
        &mut self,
        mut name: OsString,
        follow: bool,
    ) -> io::Result<Option<FileStat>> {
        loop {
            let seen = self.seen(&name);
            let stat = match fstatat(
                self.current(),
                seen.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => return Ok(None),
                Err(errno) => return Err(errno.into()),
            };
            if !(follow && kind(&stat) == SFlag::S_IFLNK) {
                return Ok(Some(stat));
            }
            name = match self.enter_link_parent(&seen, &name) {
                Ok(name) => name,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
        }
    }

    /// Follows `name`, an entry of the current directory, while it is a symlink only root
    /// could have put there: root's own, with one link, in a directory only root may add
    /// entries to ([`only_root_adds`]). Returns the name the chain ends at, where open(2) of
    /// the path (what cloud-init writes with) lands. Any other link is that name itself, for
    /// the caller to replace, or, when `refuse_others`, refused (as [`Walker::untrusted`]
    /// says, or [`Refused::InOpenDir`] for root's own in a directory users may add to): a
    /// write that cloud-init would make through it neither follows nor replaces it.
    ///
    /// Once a link was followed, every directory a name is looked up in on the way (the one
    /// the chain ends in included) must be one only root or a system account may add entries
    /// to ([`only_system_adds`]), or the path is refused ([`Refused::LinkIntoOpenDir`]): root's
    /// link to `/tmp/app.conf` would otherwise hand a root's write, or an append, the file a
    /// user planted there. And the chain must end at a regular file or at nothing, or it is
    /// refused ([`Refused::LinkToNonFile`]): a write through systemd's mask (a link to
    /// `/dev/null`), or a swap file's link to a partition, would replace the device node.
    pub(crate) fn through_roots_links(
        &mut self,
        name: OsString,
        refuse_others: bool,
    ) -> io::Result<OsString> {
        let followed = self.through_links_judged(name, refuse_others);
        self.judging = None;
        followed
    }

    fn through_links_judged(
        &mut self,
        mut name: OsString,
        refuse_others: bool,
    ) -> io::Result<OsString> {
        loop {
            self.judge_current()?;
            let seen = self.seen(&name);
            let flags = AtFlags::AT_SYMLINK_NOFOLLOW;
            let stat = match fstatat(self.current(), seen.as_os_str(), flags) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => return Ok(name),
                Err(errno) => return Err(errno.into()),
            };
            let link = kind(&stat) == SFlag::S_IFLNK;
            if let Some(followed) = &self.judging
                && !link
                && kind(&stat) != SFlag::S_IFREG
            {
                return Err(Refused::LinkToNonFile {
                    link: followed.clone(),
                    target: self.shown(Some(&name)),
                    what: kind_name(&stat),
                }
                .into());
            }
            let untrusted = link.then(|| self.untrusted(&stat, &name)).flatten();
            if !link || untrusted.is_some() || !only_root_adds(&fstat(self.current())?) {
                if link && refuse_others {
                    let path = self.shown(Some(&name));
                    return Err(untrusted.unwrap_or(Refused::InOpenDir(path)).into());
                }
                return Ok(name);
            }
            let shown = self.shown(Some(&name));
            if self.judging.is_none() {
                self.judging = Some(shown.clone());
            }
            name = self.enter_link_parent(&seen, &name).map_err(|err| {
                if err.kind() != io::ErrorKind::NotFound {
                    return err;
                }
                let why = "is a symlink into a directory missing from the root: make that \
                           directory, or point the link elsewhere";
                io::Error::new(err.kind(), format!("{} {why}", shown.display()))
            })?;
        }
    }

    /// While a final link is followed ([`Walker::judging`]), refuses a current directory
    /// others than root and the system accounts may add entries to ([`only_system_adds`]: a
    /// daemon's directory, such as systemd-resolved's, is the image's, not a user's).
    fn judge_current(&self) -> io::Result<()> {
        let Some(link) = &self.judging else {
            return Ok(());
        };
        if only_system_adds(&fstat(self.current())?) {
            return Ok(());
        }
        Err(Refused::LinkIntoOpenDir {
            link: link.clone(),
            dir: self.shown(None),
        }
        .into())
    }

    /// Follows symlink `name` (read from entry `seen`): walks to its target's parent and
    /// returns the target's last component (`.` when the target is a directory such as `/`
    /// or `..`).
    fn enter_link_parent(&mut self, seen: &OsStr, name: &OsStr) -> io::Result<OsString> {
        let mut target = self.follow(seen, name)?;
        let last = match target.pop_back() {
            Some(step) if step.name != ".." => step.name,
            Some(step) => {
                target.push_back(step);
                OsString::from(".")
            }
            None => OsString::from("."),
        };
        self.walk_steps(target)?;
        Ok(last)
    }
}

#[cfg(test)]
mod tests;
