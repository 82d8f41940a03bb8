//! `Dir`: an open directory under the root. Its operations take one entry name, never follow a
//! symlink there, and change owner and mode on descriptors, never by path. Under staging
//! (`staging.rs`) they see a staged name as its newest staged write.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};

use super::error::Refused;
use super::owner::{Owner, can_chown, is_agents, kind};
use super::staging::Staging;

/// An open directory, its host path (for messages), and the staging of its root, if any.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    staging: Option<Arc<Staging>>,
}

impl Dir {
    pub(crate) fn new(fd: OwnedFd, path: PathBuf, staging: Option<Arc<Staging>>) -> Self {
        Dir { fd, path, staging }
    }

    /// The staging its writes go to (`None`: each write is renamed and synced at once).
    pub(crate) fn staging(&self) -> Option<&Arc<Staging>> {
        self.staging.as_ref()
    }

    /// The name to open for entry `name`: its newest staged temp file, or itself.
    fn seen(&self, name: &OsStr) -> OsString {
        self.staging
            .as_ref()
            .and_then(|staging| staging.redirect(self.fd.as_fd(), name))
            .unwrap_or_else(|| name.to_owned())
    }

    /// Publishes the staged writes before entry `name` is changed other than by staging.
    pub(crate) fn settle(&self, name: &OsStr) {
        if let Some(staging) = &self.staging {
            staging.settle(self.fd.as_fd(), name);
        }
    }

    /// The directory's host path (for messages, and for what needs a path: exec, mount).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of entry `name`.
    pub fn child_path(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory's own status.
    pub fn stat(&self) -> io::Result<FileStat> {
        Ok(fstat(&self.fd)?)
    }

    /// The status of entry `name` itself (a symlink is not followed); `None` when missing.
    pub fn entry(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(
            &self.fd,
            self.seen(name).as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The target of entry `name` when it is a symlink (as written in the link, never
    /// followed); `None` when it is missing or not a symlink.
    pub fn link_target(&self, name: &OsStr) -> io::Result<Option<PathBuf>> {
        match self.entry(name)? {
            Some(stat) if is_link(&stat) => {
                let target = readlinkat(&self.fd, self.seen(name).as_os_str())?;
                Ok(Some(PathBuf::from(target)))
            }
            _ => Ok(None),
        }
    }

    /// Opens directory `name` (a symlink there is refused); `None` when missing.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Option<Dir>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.fd, self.seen(name).as_os_str(), flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir::new(
                fd,
                self.child_path(name),
                self.staging.clone(),
            ))),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP) => Err(Refused::Symlink(self.child_path(name)).into()),
            Err(Errno::ENOTDIR) if self.entry(name)?.is_some_and(|s| is_link(&s)) => {
                Err(Refused::Symlink(self.child_path(name)).into())
            }
            Err(errno) => Err(errno.into()),
        }
    }

    /// Opens directory `name`, creating it with `mode` when missing; returns it and whether it
    /// was created. A symlink there is refused. "Created" is the directory opened, not only the
    /// `mkdirat`: in a directory others may write, one could take ours away and put theirs in
    /// its place before the open; theirs is their user's, where ours is the agent's.
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<(Dir, bool)> {
        self.settle(name);
        let made = match mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(errno) => return Err(errno.into()),
        };
        let dir = self.open_dir(name)?.ok_or(Errno::ENOENT)?;
        let created = made && is_agents(&dir.stat()?);
        Ok((dir, created))
    }

    /// Opens regular file `name` for reading with its status (a symlink there is refused);
    /// `None` when missing.
    pub fn open_file(&self, name: &OsStr) -> io::Result<Option<(File, FileStat)>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(&self.fd, self.seen(name).as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(Refused::Symlink(self.child_path(name)).into()),
            Err(errno) => return Err(errno.into()),
        };
        let stat = fstat(&fd)?;
        if kind(&stat) != SFlag::S_IFREG {
            return Err(Refused::NotAFile(self.child_path(name)).into());
        }
        Ok(Some((File::from(fd), stat)))
    }

    /// Reads regular file `name` (a symlink there is refused); `None` when missing.
    pub fn read(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        let Some((mut file, stat)) = self.open_file(name)? else {
            return Ok(None);
        };
        read_whole(&mut file, &stat).map(Some)
    }

    /// [`Dir::open_file`] for a file about to be replaced by one with its content and more (an
    /// append): a file with more than one link is refused as well, since the new file would
    /// part from its other names and what is read may be a file elsewhere.
    pub fn open_unshared(&self, name: &OsStr) -> io::Result<Option<(File, FileStat)>> {
        let Some((file, stat)) = self.open_file(name)? else {
            return Ok(None);
        };
        if stat.st_nlink > 1 {
            return Err(Refused::HardLinks {
                path: self.child_path(name),
                links: stat.st_nlink,
            }
            .into());
        }
        Ok(Some((file, stat)))
    }

    /// Reads file `name` as [`Dir::open_unshared`] opens it; `None` when missing.
    pub fn read_unshared(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        let Some((mut file, stat)) = self.open_unshared(name)? else {
            return Ok(None);
        };
        read_whole(&mut file, &stat).map(Some)
    }

    /// Creates file `name`, which must not exist (nor be a symlink), with `mode`.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        self.settle(name);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(File::from(openat(
            &self.fd,
            name,
            flags,
            Mode::from_bits_truncate(mode),
        )?))
    }

    /// Gives the directory `owner` (only when running as root), then `mode`.
    pub fn set_owner_mode(&self, owner: Option<Owner>, mode: u32) -> io::Result<()> {
        set_owner_mode(self.fd.as_fd(), owner, mode)
    }

    /// The entries' names with their status (symlinks not followed), in name order; `.` and
    /// `..` left out.
    pub fn entries(&self) -> io::Result<Vec<(OsString, FileStat)>> {
        // Staged temp files are not what a reader of the directory should see.
        if let Some(staging) = &self.staging {
            staging.settle_dir(self.fd.as_fd());
        }
        // A descriptor of its own: reading a directory moves the shared offset.
        let fd = openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_owned();
            if name == "." || name == ".." {
                continue;
            }
            if let Some(stat) = self.entry(&name)? {
                out.push((name, stat));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes entry `name` when it is a file or a symlink (the link itself: `unlinkat` never
    /// follows one); true when it was there. A staged write to `name` is published first, so
    /// the removal is not undone by a later rename. A directory there is refused (`EISDIR`).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<bool> {
        self.settle(name);
        match nix::unistd::unlinkat(
            self.fd.as_fd(),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Flushes the directory's entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        Ok(nix::unistd::fsync(&self.fd)?)
    }
}

/// True for a symlink's status.
pub fn is_link(stat: &FileStat) -> bool {
    kind(stat) == SFlag::S_IFLNK
}

/// Gives an open file or directory `owner` (only when running as root), then `mode`: chown
/// clears set-uid bits, so the mode goes last.
pub fn set_owner_mode(fd: BorrowedFd<'_>, owner: Option<Owner>, mode: u32) -> io::Result<()> {
    if let Some(owner) = owner
        && can_chown()
    {
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(owner.uid)),
            Some(nix::unistd::Gid::from_raw(owner.gid)),
        )?;
    }
    fchmod(fd, Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// Room a file read starts with at least: files the kernel makes up as they are read
/// (`/proc/cmdline`, `/proc/mounts`) say they have size 0.
pub const MIN_READ_ROOM: usize = 4096;

/// Largest file metaboot reads, to parse it or to rewrite it whole (an append is a rewrite);
/// past it the read fails saying so. A file a guest user owns (`authorized_keys`, a file
/// `write_files` appends to) may say any size: a sparse file of a terabyte costs its owner
/// nothing, and reading it would take all of the guest's memory on every boot.
pub const MAX_READ_BYTES: usize = 64 * 1024 * 1024;

/// Reads `file` to its end, `stat` (taken when it was opened) saying how much room to make:
/// one read for the content and one that finds the end. std's `read_to_end` on a `File`
/// would ask the kernel for the size and the offset again first (a `statx` and an `lseek`
/// per file read). A file over [`MAX_READ_BYTES`] is an error (`FileTooLarge`), whatever its
/// size said.
pub(crate) fn read_whole(file: &mut File, stat: &FileStat) -> io::Result<Vec<u8>> {
    let too_large = |size: String| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "the file is {size} bytes, over the {MAX_READ_BYTES} bytes metaboot reads: \
                 make it smaller"
            ),
        )
    };
    let size = usize::try_from(stat.st_size).unwrap_or(0);
    if size > MAX_READ_BYTES {
        return Err(too_large(size.to_string()));
    }
    // One byte past the limit tells a file that grew past it.
    let room = |wanted: usize| wanted.min(MAX_READ_BYTES + 1);
    let mut bytes = vec![0; room(size.saturating_add(1).max(MIN_READ_ROOM))];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            if filled > MAX_READ_BYTES {
                return Err(too_large(format!("more than {MAX_READ_BYTES}")));
            }
            // It grew since: more room, as much again.
            bytes.resize(room(bytes.len().saturating_mul(2)), 0);
        }
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_file_over_the_read_limit_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let at_limit = u64::try_from(MAX_READ_BYTES).unwrap();
        for (size, read) in [(at_limit, true), (at_limit + 1, false), (1 << 40, false)] {
            let file = File::create(&path).unwrap();
            file.set_len(size).unwrap();
            let mut file = File::open(&path).unwrap();
            let stat = fstat(&file).unwrap();
            match read_whole(&mut file, &stat) {
                Ok(bytes) => {
                    assert!(read, "{size} bytes read");
                    assert_eq!(bytes.len(), MAX_READ_BYTES);
                }
                Err(err) => {
                    assert!(!read, "{size} bytes: {err}");
                    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
                    assert!(
                        err.to_string().contains(&format!("{size} bytes, over the")),
                        "{err}"
                    );
                }
            }
        }
        // A file that grew past the limit after its size was taken.
        let small = dir.path().join("small");
        std::fs::write(&small, b"x").unwrap();
        let stat = fstat(File::open(&small).unwrap()).unwrap();
        let mut grown = File::open(&path).unwrap();
        let err = read_whole(&mut grown, &stat).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn a_file_is_read_whole_whatever_its_size_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for len in [0, 1, 31, 4096, 100_000] {
            let text: Vec<u8> = (0..len)
                .map(|i| b'a' + u8::try_from(i % 26).unwrap())
                .collect();
            std::fs::write(&path, &text).unwrap();
            let mut file = File::open(&path).unwrap();
            let stat = fstat(&file).unwrap();
            assert_eq!(read_whole(&mut file, &stat).unwrap(), text, "{len} bytes");
        }
        // A file of the kernel's, size 0 but not empty: two reads, not one per doubling.
        let mut cmdline = File::open("/proc/self/cmdline").unwrap();
        let stat = fstat(&cmdline).unwrap();
        assert_eq!(stat.st_size, 0);
        let read = read_whole(&mut cmdline, &stat).unwrap();
        assert_eq!(read, std::fs::read("/proc/self/cmdline").unwrap());
        assert!(!read.is_empty() && read.len() < MIN_READ_ROOM);
        // It grew after its size was taken: the rest is read too.
        std::fs::write(&path, "first\n").unwrap();
        let mut file = File::open(&path).unwrap();
        let stat = fstat(&file).unwrap();
        let mut more = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        more.write_all(&[b'x'; 10_000]).unwrap();
        let read = read_whole(&mut file, &stat).unwrap();
        assert_eq!(read.len(), 6 + 10_000);
        assert!(read.starts_with(b"first\n"));
    }
}
