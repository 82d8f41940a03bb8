//! Atomic file replacement inside an open directory: a temp file created there (`O_EXCL |
//! O_NOFOLLOW`), owner and mode set on its descriptor, then renamed over the old entry
//! (`renameat`). The old file's mode and owner are kept unless the caller sets them; a symlink
//! at the final name is replaced, never followed; any other old entry than a file or a
//! symlink (a device node, a FIFO, a directory) is refused.
//!
//! When the directory belongs to a staged root (`staging.rs`, what `metaboot run` uses), the
//! complete temp file is staged and renamed at the next publish, after one sync for all of
//! them. Otherwise it is synced, renamed, and the directory synced, at once.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::renameat;
use nix::sys::stat::{FileStat, SFlag};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::dir::Dir;
use super::dir::set_owner_mode;
use super::error::PathError;
use super::error::Refused;
use super::owner::{Owner, kind, kind_name};
use super::staging::dir_id;

/// Mode of a file created when neither the caller nor an old file says otherwise.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// The bits of an old file's mode its replacement keeps: the permissions, never setuid,
/// setgid or sticky. The old file is whatever holds the name when it is replaced: in a user's
/// directory that may be a hard link to a setuid program, and the new content theirs.
pub const KEPT_MODE_BITS: u32 = 0o777;

/// How a file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Mode to set; `None` keeps the old file's permissions ([`KEPT_MODE_BITS`]), or
    /// [`DEFAULT_FILE_MODE`] for a new file.
    pub mode: Option<u32>,
    /// Mode for a new file when `mode` is `None`.
    pub new_file_mode: Option<u32>,
    /// Owner to set (only when running as root); `None` keeps the old file's owner.
    pub owner: Option<Owner>,
}

impl WriteOptions {
    /// Keep the old mode and owner; a new file gets `mode`.
    pub fn keep_or(mode: u32) -> Self {
        WriteOptions {
            new_file_mode: Some(mode),
            ..Self::default()
        }
    }

    /// Keep the mode ([`KEPT_MODE_BITS`]) and owner of `old`, the status of the file replaced
    /// as taken from the descriptor it was read from: a second look by name, when the file is
    /// written, could find another file put there since.
    pub fn keep_from(old: &FileStat) -> Self {
        Self::exact(
            old.st_mode & KEPT_MODE_BITS,
            Some(Owner {
                uid: old.st_uid,
                gid: old.st_gid,
            }),
        )
    }

    /// Set exactly this mode and owner.
    pub fn exact(mode: u32, owner: Option<Owner>) -> Self {
        WriteOptions {
            mode: Some(mode),
            new_file_mode: None,
            owner,
        }
    }
}

/// When a write reaches its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Staged when the root is (renamed at the next publish), else at once and synced.
    InTurn,
    /// Renamed at once, without a sync when the root is staged (its next sync covers it).
    Now,
}

impl Dir {
    /// Replaces entry `name` with `contents` atomically: readers see the old file or the new
    /// one, never a torn one, and a crash or a full disk leaves the old file in place. On a
    /// staged root the new file is in place at the next publish; until then the run's own
    /// reads of `name` see it.
    pub fn write_atomic(
        &self,
        name: &OsStr,
        contents: &[u8],
        options: &WriteOptions,
    ) -> Result<(), PathError> {
        self.write_atomic_as(name, &self.child_path(name), contents, options)
    }

    /// [`Dir::write_atomic`], naming the file `shown` in errors (the path as asked for, which
    /// may differ from the directory's once a symlink was resolved).
    pub(crate) fn write_atomic_as(
        &self,
        name: &OsStr,
        shown: &Path,
        contents: &[u8],
        options: &WriteOptions,
    ) -> Result<(), PathError> {
        self.replace(name, shown, contents, options, When::InTurn)
    }

    /// [`Dir::write_atomic_as`], renamed at once so that other processes see it now (a staged
    /// root publishes what it staged for `name` first, and syncs it later).
    pub(crate) fn write_atomic_now(
        &self,
        name: &OsStr,
        shown: &Path,
        contents: &[u8],
        options: &WriteOptions,
    ) -> Result<(), PathError> {
        self.replace(name, shown, contents, options, When::Now)
    }

    fn replace(
        &self,
        name: &OsStr,
        shown: &Path,
        contents: &[u8],
        options: &WriteOptions,
        when: When,
    ) -> Result<(), PathError> {
        if when == When::Now {
            self.settle(name);
        }
        let old = self.entry(name).ok().flatten();
        if let Some(stat) = &old
            && !matches!(kind(stat), SFlag::S_IFREG | SFlag::S_IFLNK)
        {
            // A device node, a FIFO or a directory is not a file's old version: renaming over
            // it would unlink `/dev/null` (or refuse, for a directory, at publish time).
            let what = kind_name(stat);
            let refused = Refused::NotReplaced {
                path: self.child_path(name),
                what,
            };
            return Err(PathError::fail("replace", shown)(refused.into()));
        }
        let old = old.filter(|stat| kind(stat) == SFlag::S_IFREG);
        let mode = options
            .mode
            .or_else(|| old.as_ref().map(|stat| stat.st_mode & KEPT_MODE_BITS))
            .or(options.new_file_mode)
            .unwrap_or(DEFAULT_FILE_MODE);
        let owner = options.owner.or_else(|| {
            old.as_ref().map(|stat| Owner {
                uid: stat.st_uid,
                gid: stat.st_gid,
            })
        });
        let temp = temp_name(name);
        // The directory's identity, asked once for the sweep and the staging.
        let staged_in = match self.staging() {
            Some(staging) => {
                let id = dir_id(self.fd()).map_err(PathError::fail("stage", shown))?;
                staging.sweep(self.fd(), id);
                Some((staging, id))
            }
            None => None,
        };
        let durable = staged_in.is_none();
        let staging = staged_in.filter(|_| when == When::InTurn);
        let result = self
            .write_temp(&temp, shown, contents, mode, owner, durable)
            .and_then(|()| match staging {
                Some((staging, id)) => staging
                    .stage(
                        self.fd(),
                        id,
                        self.path(),
                        temp.clone(),
                        name,
                        shown.to_owned(),
                    )
                    .map_err(PathError::fail("stage", shown)),
                None => renameat(self.fd(), temp.as_os_str(), self.fd(), name)
                    .map_err(|errno| PathError::fail("rename into place", shown)(errno.into())),
            });
        if result.is_err() {
            // Best effort: the temp file is ours and useless now; the old file was never touched.
            let _ = unlinkat(self.fd(), temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return result;
        }
        if durable {
            self.sync()
                .map_err(PathError::fail("sync directory", self.path()))?;
        }
        Ok(())
    }

    fn write_temp(
        &self,
        temp: &OsStr,
        shown: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
        durable: bool,
    ) -> Result<(), PathError> {
        let temp_shown = shown.with_file_name(temp);
        let mut file = self
            .create_new(temp, 0o600)
            .map_err(PathError::fail("create", &temp_shown))?;
        file.write_all(contents)
            .map_err(PathError::fail("write", &temp_shown))?;
        set_owner_mode(file.as_fd(), owner, mode)
            .map_err(PathError::fail("set owner and mode of", &temp_shown))?;
        if durable {
            file.sync_all()
                .map_err(PathError::fail("sync", &temp_shown))?;
        }
        Ok(())
    }
}

/// The longest name of a directory entry (Linux's `NAME_MAX`, in bytes): a temp file name
/// stays within it, whatever the length of the name it stands for.
pub const NAME_MAX: usize = 255;

/// A temp file name next to `name`, unique in this process (`.NAME.metaboot-PID-N.tmp`). `N`
/// is a counter in its high 32 bits and random in its low ones: a user who owns the directory
/// (their home, `~/.ssh`) and sees the PID cannot create the next names first and make the
/// write fail (the temp file is created with `O_EXCL`). A `name` too long for that to fit in
/// [`NAME_MAX`] is cut (at a character's end, when it is text): `PID-N` keeps it unique, and
/// the sweep of a killed run's temp files still knows it.
pub(crate) fn temp_name(name: &OsStr) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Without randomness (no getrandom, no /dev/urandom) the name is still unique.
    let random = getrandom::u32().unwrap_or(0);
    let n = (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) | u64::from(random);
    let suffix = format!(".metaboot-{}-{n}.tmp", std::process::id());
    let bytes = name.as_bytes();
    let mut cut = bytes.len().min(NAME_MAX - 1 - suffix.len());
    if let Ok(text) = std::str::from_utf8(bytes) {
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    let mut temp = std::ffi::OsString::from(".");
    temp.push(OsStr::from_bytes(&bytes[..cut]));
    temp.push(suffix);
    temp
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::root::Root;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn creates_new_file_with_default_mode_and_parents() {
        let (dir, root) = root();
        root.write_atomic("/a/b/file", b"hello", &WriteOptions::default())
            .unwrap();
        let path = dir.path().join("a/b/file");
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(
            fs::metadata(dir.path().join("a")).unwrap().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn keeps_mode_and_owner_of_the_old_file() {
        let (dir, root) = root();
        let path = dir.path().join("shadow");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        if crate::testutil::require_root() {
            std::os::unix::fs::chown(&path, Some(1234), Some(42)).unwrap();
        }
        root.write_atomic("/shadow", b"new", &WriteOptions::keep_or(0o600))
            .unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        if crate::testutil::require_root() {
            assert_eq!((meta.uid(), meta.gid()), (1234, 42));
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn setuid_setgid_and_sticky_bits_are_not_kept() {
        let (dir, root) = root();
        let path = dir.path().join("keys");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o7755)).unwrap();
        root.write_atomic("/keys", b"new", &WriteOptions::keep_or(0o600))
            .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn temp_names_differ_in_a_part_no_one_can_guess() {
        let names: Vec<String> = (0..4)
            .map(|_| temp_name(OsStr::new("keys")).into_string().unwrap())
            .collect();
        let pid = std::process::id();
        for name in &names {
            assert!(
                super::super::staging::is_temp_name(OsStr::new(name)),
                "{name}"
            );
            assert!(
                name.starts_with(&format!(".keys.metaboot-{pid}-")),
                "{name}"
            );
        }
        let low = |name: &str| {
            let n: u64 = name
                .rsplit('-')
                .next()
                .unwrap()
                .trim_end_matches(".tmp")
                .parse()
                .unwrap();
            n & 0xffff_ffff
        };
        // Four random 32-bit parts, all equal, would be one chance in 2^96.
        assert!(
            names.iter().any(|name| low(name) != low(&names[0])),
            "{names:?}"
        );
    }

    /// A file whose name has [`NAME_MAX`] bytes is written: its temp file's name is cut to
    /// fit, still unique and still one the sweep removes.
    #[test]
    fn a_name_of_name_max_bytes_is_written() {
        let (dir, root) = root();
        let long = "é".repeat(NAME_MAX / 2) + "x";
        assert_eq!(long.len(), NAME_MAX);
        root.write_atomic(&long, b"long", &WriteOptions::default())
            .unwrap();
        assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"long");
        let names: Vec<String> = (0..2)
            .map(|_| temp_name(OsStr::new(&long)).into_string().unwrap())
            .collect();
        assert_ne!(names[0], names[1]);
        for name in &names {
            assert!(name.len() <= NAME_MAX, "{}", name.len());
            assert!(name.starts_with(&format!(".{}", "é".repeat(100))), "{name}");
            assert!(
                super::super::staging::is_temp_name(OsStr::new(name)),
                "{name}"
            );
        }
        assert_eq!(NAME_MAX, 255);
    }

    #[test]
    fn exact_options_override_mode_and_owner() {
        let (dir, root) = root();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        let owner = Owner { uid: 7, gid: 8 };
        root.write_atomic("f", b"x", &WriteOptions::exact(0o4750, Some(owner)))
            .unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o4750, "set-uid survives the chown");
        if crate::testutil::require_root() {
            assert_eq!((meta.uid(), meta.gid()), (7, 8));
        }
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let (dir, root) = root();
        let target = dir.path().join("target");
        fs::write(&target, "target").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // The directory's own write (`Root::write_atomic` first resolves root's links).
        let held = root.dir("/", false).unwrap();
        held.write_atomic(OsStr::new("link"), b"new", &WriteOptions::default())
            .unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "target");
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
    }

    /// Environment variable that turns the test binary, re-executed, into the child of
    /// `a_full_disk_leaves_the_old_file_and_no_temp_file`.
    const FSIZE_CHILD: &str = "METABOOT_TEST_FSIZE_CHILD";

    /// Child half: with RLIMIT_FSIZE at 4 KiB, writing 64 KiB fails like a full disk.
    #[test]
    fn fsize_limited_child() {
        let Some(dir) = std::env::var_os(FSIZE_CHILD) else {
            return;
        };
        let limit = libc::rlimit {
            rlim_cur: 4096,
            rlim_max: 4096,
        };
        // SAFETY: plain syscalls on a process that exists only for this test; SIGXFSZ is
        // ignored so the oversized write returns EFBIG instead of killing the process, and the
        // rlimit pointer is valid for the call.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let err = Root::open(dir)
            .unwrap()
            .write_atomic("hosts", &vec![b'x'; 64 * 1024], &WriteOptions::default())
            .unwrap_err();
        println!("CHILD-ERROR: {err}: {}", err.source);
    }

    #[test]
    fn a_full_disk_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fsutil::atomic::tests::fsize_limited_child",
                "--nocapture",
            ])
            .env(FSIZE_CHILD, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        assert!(stdout.contains("CHILD-ERROR: Failed to write"), "{stdout}");
        assert!(stdout.contains("File too large"), "{stdout}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1 localhost\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("hosts")]);
    }

    #[test]
    fn a_parent_that_is_a_file_fails_cleanly() {
        let (dir, root) = root();
        fs::write(dir.path().join("etc"), "not a dir").unwrap();
        let err = root
            .write_atomic("/etc/hostname", b"x", &WriteOptions::default())
            .unwrap_err();
        assert_eq!(err.op, "create directory");
        assert_eq!(
            fs::read_to_string(dir.path().join("etc")).unwrap(),
            "not a dir"
        );
    }

    #[test]
    fn a_parent_symlink_out_of_the_root_is_resolved_inside_it() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let err = root
            .write_atomic("/out/x", b"x", &WriteOptions::default())
            .unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound, "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // Inside the root, the same link's target is where the file goes.
        let inside = dir.path().join(outside.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        root.write_atomic("/out/x", b"in", &WriteOptions::default())
            .unwrap();
        assert_eq!(fs::read_to_string(inside.join("x")).unwrap(), "in");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
