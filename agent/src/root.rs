//! `Root`: the directory every path the guest agent reads or writes is taken under, held open.
//! Every access resolves its path from that descriptor (see `fsutil::resolve`): no symlink
//! leads out of the root, `..` never climbs above it, and a symlink a guest user planted is
//! never followed.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

use crate::fsutil::atomic::temp_name;
use crate::fsutil::dir::read_whole;
use crate::fsutil::resolve::Walker;
use crate::fsutil::staging::{Committed, Staging, Totals, dir_id};
use crate::fsutil::{Dir, Owner, PathError, Refused, WriteOptions, kind};

/// The root directory: `/` on a guest, a temporary directory in tests.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    host: bool,
    /// Where writes are staged; `None`: each write is renamed and synced at once.
    staging: Option<Arc<Staging>>,
}

impl Root {
    /// Opens the root at `path` (symlinks in `path` itself are the operator's and are
    /// followed). It is the host root when it is the running system's `/`; only then does the
    /// agent call sethostname(2) or write `/dev/urandom`.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(&path, flags, Mode::empty())?;
        let stat = nix::sys::stat::fstat(&fd)?;
        let host = std::fs::metadata("/")
            .is_ok_and(|slash| (slash.dev(), slash.ino()) == (stat.st_dev, stat.st_ino));
        Ok(Root {
            path,
            fd: Arc::new(fd),
            host,
            staging: None,
        })
    }

    /// The same root with its writes staged: each atomic write is a complete temp file at
    /// once, renamed into place with the others at the next [`Root::publish`] or at
    /// [`Root::commit`] (see `fsutil/staging.rs`). Clones share the staging.
    pub fn staged(&self) -> Root {
        Root {
            staging: Some(Arc::new(Staging::default())),
            ..self.clone()
        }
    }

    /// Renames every staged write into place (after one sync of their data), so that other
    /// processes see them: before a script runs. A no-op when nothing is staged.
    pub fn publish(&self) {
        if let Some(staging) = &self.staging {
            staging.publish();
        }
    }

    /// Ends a staged root's writes: publishes, then syncs every file system renamed into.
    /// Returns the run's totals and every write that did not reach its place (an unstaged
    /// root has nothing to commit).
    pub fn commit(&self) -> Committed {
        self.staging
            .as_ref()
            .map(|staging| staging.commit())
            .unwrap_or_default()
    }

    /// What the staging did so far (zeros when the root is not staged).
    pub fn totals(&self) -> Totals {
        self.staging
            .as_ref()
            .map(|staging| staging.totals())
            .unwrap_or_default()
    }

    /// Writes `files` together: on a staged root either all of them are staged or, when one
    /// fails, none (the others' temp files are dropped); in that order, so that a crash
    /// between two renames leaves the earlier ones new and the later ones old. Stops at the
    /// first failure.
    pub fn write_all_or_none(
        &self,
        files: &[(&Path, &[u8], WriteOptions)],
    ) -> Result<(), PathError> {
        if let Some(staging) = &self.staging {
            staging.begin_group();
        }
        let result = files
            .iter()
            .try_for_each(|(path, contents, options)| self.write_atomic(path, contents, options));
        if let Some(staging) = &self.staging {
            if result.is_err() {
                staging.abandon_group();
            } else {
                staging.end_group();
            }
        }
        result
    }

    /// True when this root is the running system's `/`.
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// The root directory itself, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `path` (absolute or relative, both taken from the root), joined
    /// lexically with `..` kept inside the root: for messages, and for what only takes a path
    /// (exec, mount). Never used to read or write.
    pub fn host_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in path.as_ref().components() {
            match component {
                Component::Normal(part) => parts.push(part),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let mut out = self.path.clone();
        out.extend(parts);
        out
    }

    fn walker(&self) -> Walker<'_> {
        Walker::new(self.fd.as_fd(), &self.path, self.staging.as_ref())
    }

    /// The directory at `path`, creating missing directories (mode 0755) when `create`.
    pub fn dir(&self, path: impl AsRef<Path>, create: bool) -> io::Result<Dir> {
        let mut walker = self.walker();
        walker.walk(path.as_ref(), create)?;
        walker.into_dir()
    }

    /// The directory at `path`, `None` when it does not exist.
    pub fn dir_optional(&self, path: impl AsRef<Path>) -> io::Result<Option<Dir>> {
        match self.dir(path, false) {
            Ok(dir) => Ok(Some(dir)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The entries of the directory at `path`, none when it is missing or cannot be read (a
    /// system listing such as `/sys/class/net`, or a directory of scripts that may not exist).
    pub fn entries_or_none(&self, path: impl AsRef<Path>) -> Vec<(OsString, FileStat)> {
        match self.dir_optional(path) {
            Ok(Some(dir)) => dir.entries().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The directory holding `path`'s last component (created when `create`), and that
    /// component.
    pub fn parent(&self, path: impl AsRef<Path>, create: bool) -> io::Result<(Dir, OsString)> {
        let mut walker = self.walker();
        let name = walker.walk_parent(path.as_ref(), create)?;
        Ok((walker.into_dir()?, name))
    }

    /// [`Root::parent`] creating missing directories (mode 0755), with the directories this
    /// call created, outermost first and held open: only ones it made itself, never one that
    /// was there before or that someone else put in place of its own (see
    /// `fsutil::resolve::Walker::take_created`).
    ///
    /// The directory and name are where a write through `path` lands as cloud-init's
    /// `open(path)` lands: a final symlink only root could have made (root's, in a directory
    /// only root may add to; see `fsutil::resolve::Walker::through_roots_links`) is followed,
    /// so the write goes to its target and the link stays. Any other link is the name returned.
    pub fn parent_created(&self, path: impl AsRef<Path>) -> io::Result<(Dir, OsString, Vec<Dir>)> {
        let mut walker = self.walker();
        let name = walker.walk_parent(path.as_ref(), true)?;
        let created = walker.take_created();
        let name = walker.through_roots_links(name, false)?;
        Ok((walker.into_dir()?, name, created))
    }

    /// The directory and name a write of `path` replaces (missing directories created, mode
    /// 0755), as cloud-init's `open(path)` writes it: through a final symlink only root could
    /// have made, as [`Root::parent_created`] follows it (the link kept), to a regular file or
    /// to nothing (a link to a device node is refused). Any other symlink there is refused,
    /// never followed nor replaced, the error naming it.
    pub fn write_target(&self, path: &Path) -> Result<(Dir, OsString), PathError> {
        let shown = self.host_path(path);
        let mut walker = self.walker();
        let name = walker
            .walk_parent(path, true)
            .map_err(PathError::fail("create directory", &shown))?;
        let name = walker
            .through_roots_links(name, true)
            .and_then(|name| Ok((walker.into_dir()?, name)))
            .map_err(PathError::fail("write", &shown))?;
        Ok(name)
    }

    /// Refuses `dir` when it, or a directory above it, is a user's directory in a sticky,
    /// world-writable one such as `/tmp` (one `owner`, the user a file is written for, may
    /// own): see `fsutil/sticky.rs`.
    pub fn refuse_user_dir_in_sticky(&self, dir: &Dir, owner: Option<u32>) -> io::Result<()> {
        crate::fsutil::sticky::refuse_user_dir_in_sticky(dir, self.fd.as_fd(), owner)
    }

    /// Opens `path` with `flags`; a final symlink is followed inside the root when `follow`,
    /// refused otherwise. Missing parent directories are created when `create_parents`.
    pub fn open_file(
        &self,
        path: impl AsRef<Path>,
        flags: OFlag,
        mode: u32,
        follow: bool,
        create_parents: bool,
    ) -> io::Result<File> {
        let mode = Mode::from_bits_truncate(mode);
        let mut walker = self.walker();
        if let Some(opened) = walker.open_whole(path.as_ref(), flags, mode, create_parents) {
            return opened.map(File::from);
        }
        let name = walker.walk_parent(path.as_ref(), create_parents)?;
        let fd = walker.open_final(name, flags, mode, follow)?;
        Ok(File::from(fd))
    }

    /// Reads `path`, root's or the system's own file (configuration, state, `/proc`, `/sys`):
    /// through a final symlink only where a write of it would go ([`Root::write_target`]), in
    /// a directory no user may add entries to; anything else there is refused (see
    /// `fsutil::resolve::Walker::open_roots`). `None` when it does not exist.
    pub fn read_optional(&self, path: impl AsRef<Path>) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
        let mut file = match self.walker().open_roots(path.as_ref(), flags) {
            Ok(fd) => File::from(fd),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let stat = fstat(&file)?;
        if kind(&stat) != SFlag::S_IFREG {
            return Err(Refused::NotAFile(self.host_path(path)).into());
        }
        read_whole(&mut file, &stat).map(Some)
    }

    /// Removes the file or symlink `path` (the link itself, never what it points to); false
    /// when nothing is there.
    pub fn remove_file(&self, path: impl AsRef<Path>) -> io::Result<bool> {
        let path = path.as_ref();
        if !self.exists(path) {
            return Ok(false);
        }
        let (dir, name) = self.parent(path, false)?;
        dir.remove_file(&name)
    }

    /// Reads a text file to edit and write back, `None` when it does not exist. A file that is
    /// not UTF-8 is refused: the replacement characters of a lossy read would be written back
    /// over the bytes they stand for.
    pub fn read_optional_text(&self, path: impl AsRef<Path>) -> io::Result<Option<String>> {
        match self.read_optional(path.as_ref())? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Refused::NotText(self.host_path(path)).into()),
        }
    }

    /// Reads a text file only to look at it, `None` when it does not exist; invalid UTF-8 is
    /// replaced. A file edited and written back is read with [`Root::read_optional_text`].
    pub fn read_optional_string(&self, path: impl AsRef<Path>) -> io::Result<Option<String>> {
        Ok(self
            .read_optional(path)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The status of `path` (a final symlink followed inside the root); `None` when missing.
    pub fn stat(&self, path: impl AsRef<Path>) -> io::Result<Option<FileStat>> {
        let path = path.as_ref();
        let found = if path.file_name().is_none() {
            // The root itself, or a path ending in `..`: a directory.
            self.dir(path, false).and_then(|dir| dir.stat())
        } else {
            let mut walker = self.walker();
            // One call first: a path with no link on it is the file itself, and a missing name
            // with no link before it is missing (a semaphore of a new instance: one call, not
            // three). A final link is opened as itself (`O_PATH | O_NOFOLLOW`) and left to the
            // walk, which judges and follows it.
            match walker.open_whole(path, OFlag::O_PATH, Mode::empty(), false) {
                Some(Ok(fd)) => {
                    let stat = fstat(&fd)?;
                    if kind(&stat) != SFlag::S_IFLNK {
                        return Ok(Some(stat));
                    }
                }
                Some(Err(err)) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Some(Err(err)) => return Err(err),
                None => {}
            }
            match walker.walk_parent(path, false) {
                Ok(name) => return walker.stat_final(name, true),
                Err(err) => Err(err),
            }
        };
        match found {
            Ok(stat) => Ok(Some(stat)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// True when `path` is a regular file with content, not a symlink (of any target).
    pub fn is_nonempty_file(&self, path: impl AsRef<Path>) -> bool {
        let mut walker = self.walker();
        let stat = walker
            .walk_parent(path.as_ref(), false)
            .and_then(|name| walker.stat_final(name, false));
        stat.is_ok_and(|stat| stat.is_some_and(|s| kind(&s) == SFlag::S_IFREG && s.st_size > 0))
    }

    /// The target of `path` when it is itself a symlink (as written in the link; links on the
    /// way to it followed inside the root); `None` when it is missing or not a symlink.
    pub fn link_target(&self, path: impl AsRef<Path>) -> io::Result<Option<PathBuf>> {
        match self.parent(path, false) {
            Ok((dir, name)) => dir.link_target(&name),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// True when `path` exists (after symlinks inside the root).
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.stat(path).is_ok_and(|stat| stat.is_some())
    }

    /// True when `path` is a directory (after symlinks inside the root).
    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        self.stat(path)
            .is_ok_and(|stat| stat.is_some_and(|s| kind(&s) == SFlag::S_IFDIR))
    }

    /// Replaces `path` with `contents` atomically (see [`Dir::write_atomic`]) where
    /// [`Root::write_target`] finds it: through root's symlink, a user's refused.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        contents: &[u8],
        options: &WriteOptions,
    ) -> Result<(), PathError> {
        self.write_placed(path.as_ref(), contents, options, false)
    }

    /// [`Root::write_atomic`], in place at once (`now`: see [`Root::write_atomic_now`]).
    fn write_placed(
        &self,
        path: &Path,
        contents: &[u8],
        options: &WriteOptions,
        now: bool,
    ) -> Result<(), PathError> {
        let shown = self.host_path(path);
        let (dir, name) = self.write_target(path)?;
        if now {
            dir.write_atomic_now(&name, &shown, contents, options)
        } else {
            dir.write_atomic_as(&name, &shown, contents, options)
        }
    }

    /// [`Root::write_atomic`], in place at once so that other processes see it now; on a
    /// staged root it is not synced itself (the run's next sync covers it).
    pub fn write_atomic_now(
        &self,
        path: impl AsRef<Path>,
        contents: &[u8],
        options: &WriteOptions,
    ) -> Result<(), PathError> {
        self.write_placed(path.as_ref(), contents, options, true)
    }

    /// Creates directory `path` (and missing parents, mode 0755) and gives the directory
    /// itself `mode` and `owner`, also when it already existed (as cloud-init does for
    /// `~/.ssh`). A symlink at `path` is refused, never chowned or chmodded through.
    pub fn ensure_dir(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<Owner>,
    ) -> io::Result<Dir> {
        let (parent, name) = self.parent(path, true)?;
        let (dir, _) = parent.create_dir(&name, mode)?;
        dir.set_owner_mode(owner, mode)?;
        Ok(dir)
    }

    /// Points symlink `path` at `target` atomically (a temp link renamed over the old entry;
    /// staged like a file on a staged root).
    pub fn replace_symlink(&self, path: impl AsRef<Path>, target: &Path) -> io::Result<()> {
        let shown = self.host_path(path.as_ref());
        let (dir, name) = self.parent(path, true)?;
        let temp = temp_name(&name);
        nix::unistd::symlinkat(target, dir.fd(), temp.as_os_str())?;
        let placed = match dir.staging() {
            Some(staging) => dir_id(dir.fd())
                .and_then(|id| staging.stage(dir.fd(), id, dir.path(), temp.clone(), &name, shown)),
            None => nix::fcntl::renameat(dir.fd(), temp.as_os_str(), dir.fd(), name.as_os_str())
                .map_err(io::Error::from),
        };
        if placed.is_err() {
            let _ = nix::unistd::unlinkat(
                dir.fd(),
                temp.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        placed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn host_paths_join_absolute_and_relative_paths_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(
            root.host_path("/etc/hostname"),
            dir.path().join("etc/hostname")
        );
        assert_eq!(root.host_path("etc/hosts"), dir.path().join("etc/hosts"));
        assert_eq!(root.host_path("/"), dir.path());
    }

    #[test]
    fn parent_components_never_escape_the_host_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(
            root.host_path("/../../etc/passwd"),
            dir.path().join("etc/passwd")
        );
        assert_eq!(root.host_path("/a/b/../../../c"), dir.path().join("c"));
        assert_eq!(root.host_path("./x/./y"), dir.path().join("x/y"));
    }

    /// A write lands where cloud-init's `open(path)` lands, through root's symlink in root's
    /// directory (the link kept); a user's symlink, or root's in a directory users may add
    /// entries to, is refused, the error naming it, and neither it nor its target changes.
    #[test]
    fn writes_go_through_roots_symlinks_and_refuse_any_other() {
        use std::os::unix::fs::{PermissionsExt, lchown, symlink};
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::create_dir_all(root.host_path("/etc/chrony")).unwrap();
        let link = root.host_path("/etc/chrony.conf");
        symlink("chrony/chrony.conf", &link).unwrap();
        let options = WriteOptions::default();
        root.write_atomic("/etc/chrony.conf", b"new\n", &options)
            .unwrap();
        let target = root.host_path("/etc/chrony/chrony.conf");
        assert_eq!(std::fs::read(&target).unwrap(), b"new\n");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        if !crate::testutil::require_root() {
            return;
        }
        std::fs::write(root.host_path("/etc/shadow"), "secret\n").unwrap();
        std::fs::create_dir_all(root.host_path("/tmp")).unwrap();
        let tmp = std::fs::Permissions::from_mode(0o1777);
        std::fs::set_permissions(root.host_path("/tmp"), tmp).unwrap();
        let users = root.host_path("/tmp/app.conf");
        symlink("/etc/shadow", &users).unwrap();
        lchown(&users, Some(1000), Some(1000)).unwrap();
        let roots = root.host_path("/tmp/roots.conf");
        symlink("/etc/shadow", &roots).unwrap();
        for (path, why) in [
            (&users, "is a symlink owned by uid 1000"),
            (&roots, "is in a directory users may add entries to"),
        ] {
            let inside = path.strip_prefix(dir.path()).unwrap();
            let err = root.write_atomic(inside, b"x", &options).unwrap_err();
            let err = crate::log::chain(&err);
            let said = format!("Failed to write {0}: {0} {why}", path.display());
            assert!(err.starts_with(&said), "{err}");
            assert!(std::fs::symlink_metadata(path).unwrap().is_symlink());
        }
        let shadow = std::fs::read(root.host_path("/etc/shadow")).unwrap();
        assert_eq!(shadow, b"secret\n");
    }

    /// Nodes that are no file's old version, made in the root at `/dev/<name>`: a FIFO, and,
    /// when the test runs as root (mknod needs it), a character and a block device.
    pub(crate) fn device_nodes(root: &Root) -> Vec<(&'static str, &'static str)> {
        use nix::sys::stat::{makedev, mknod};
        std::fs::create_dir_all(root.host_path("/dev")).unwrap();
        let fifo = root.host_path("/dev/fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let mut nodes = vec![("fifo", "named pipe (FIFO)")];
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the device nodes: mknod needs root");
            return nodes;
        }
        let mode = Mode::from_bits_truncate(0o600);
        for (name, kind, what, dev) in [
            ("null", SFlag::S_IFCHR, "character device", makedev(1, 3)),
            ("vdb2", SFlag::S_IFBLK, "block device", makedev(252, 18)),
        ] {
            mknod(&root.host_path(format!("/dev/{name}")), kind, mode, dev).unwrap();
            nodes.push((name, what));
        }
        nodes
    }

    /// Root's link to a device node or a FIFO (systemd masks a file with a link to /dev/null)
    /// is not written through, now or staged: the error names the link and what it points at,
    /// and the node and the link stay. A node at the path itself is not replaced either.
    #[test]
    fn a_write_through_roots_link_to_a_device_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::create_dir_all(root.host_path("/etc")).unwrap();
        let options = WriteOptions::default();
        for (name, what) in device_nodes(&root) {
            let node = root.host_path(format!("/dev/{name}"));
            let link = root.host_path("/etc/app.conf");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("/dev/{name}"), &link).unwrap();
            let staged = root.staged();
            for (root, now) in [(&root, false), (&staged, false), (&staged, true)] {
                let written = if now {
                    root.write_atomic_now("/etc/app.conf", b"x", &options)
                } else {
                    root.write_atomic("/etc/app.conf", b"x", &options)
                };
                let err = crate::log::chain(&written.unwrap_err());
                let said = format!(
                    "{} is root's symlink to {}, a {what}:",
                    link.display(),
                    node.display()
                );
                assert!(err.contains(&said), "{err}");
                assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
                let inside = format!("/dev/{name}");
                let err = root.write_atomic(&inside, b"x", &options).unwrap_err();
                let err = crate::log::chain(&err);
                let said = format!("{} is a {what}, not a regular file", node.display());
                assert!(err.contains(&said), "{err}");
                assert!(root.commit().failures.is_empty());
                let kind = std::fs::symlink_metadata(&node).unwrap().file_type();
                assert!(!kind.is_file() && !kind.is_symlink(), "{name}: {kind:?}");
            }
        }
    }

    #[test]
    fn only_slash_is_the_host() {
        assert!(Root::open("/").unwrap().is_host());
        let dir = tempfile::tempdir().unwrap();
        assert!(!Root::open(dir.path()).unwrap().is_host());
        assert!(Root::open("/nonexistent/metaboot/root").is_err());
    }
}
