//! Atomic file replacement: temp file in the same directory, fsync, rename, fsync the directory;
//! the old file's mode and owner are kept unless the caller sets them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Owner, can_chown};

/// Mode of a file created when neither the caller nor an old file says otherwise.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// How a file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Mode to set; `None` keeps the old file's mode, or [`DEFAULT_FILE_MODE`] for a new file.
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

    /// Set exactly this mode and owner.
    pub fn exact(mode: u32, owner: Option<Owner>) -> Self {
        WriteOptions {
            mode: Some(mode),
            new_file_mode: None,
            owner,
        }
    }
}

/// A failed atomic write; the old file is untouched.
#[derive(Debug, thiserror::Error)]
#[error("Failed to {op} {}", path.display())]
pub struct AtomicWriteError {
    /// What was being done ("write", "rename", …).
    pub op: &'static str,
    /// The file concerned.
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Replaces `path` with `contents` atomically: readers see the old file or the new one, never a
/// torn one, and a crash or a full disk leaves the old file in place. Missing parent
/// directories are created (mode 0755). A symlink at `path` is replaced, not followed.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    options: &WriteOptions,
) -> Result<(), AtomicWriteError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(fail("create directory", dir))?;
    let old = fs::symlink_metadata(path)
        .ok()
        .filter(|meta| meta.file_type().is_file());
    let mode = options
        .mode
        .or_else(|| old.as_ref().map(|meta| meta.mode() & 0o7777))
        .or(options.new_file_mode)
        .unwrap_or(DEFAULT_FILE_MODE);
    let owner = options.owner.or_else(|| {
        old.as_ref().map(|meta| Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    });

    let temp = temp_path(dir, path);
    let result = write_temp(&temp, contents, mode, owner)
        .and_then(|()| fs::rename(&temp, path).map_err(fail("rename into place", path)));
    if result.is_err() {
        // Best effort: the temp file is ours and useless now; the old file was never touched.
        let _ = fs::remove_file(&temp);
        return result;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("sync directory", dir))
}

fn write_temp(
    temp: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), AtomicWriteError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(fail("create", temp))?;
    file.write_all(contents).map_err(fail("write", temp))?;
    if let Some(owner) = owner
        && can_chown()
    {
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
            .map_err(fail("change owner of", temp))?;
    }
    // After chown: chown clears set-uid bits, so the mode goes last.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail("change mode of", temp))?;
    file.sync_all().map_err(fail("sync", temp))
}

fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.metaboot-{}-{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_new_file_with_default_mode_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        write_atomic(&path, b"hello", &WriteOptions::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    }

    #[test]
    fn keeps_mode_and_owner_of_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shadow");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        if can_chown() {
            std::os::unix::fs::chown(&path, Some(1234), Some(42)).unwrap();
        }
        write_atomic(&path, b"new", &WriteOptions::keep_or(0o600)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        if can_chown() {
            assert_eq!((meta.uid(), meta.gid()), (1234, 42));
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn exact_options_override_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        let owner = Owner { uid: 7, gid: 8 };
        write_atomic(&path, b"x", &WriteOptions::exact(0o4750, Some(owner))).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o4750, "set-uid survives the chown");
        if can_chown() {
            assert_eq!((meta.uid(), meta.gid()), (7, 8));
        }
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "target").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new", &WriteOptions::default()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "target");
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
    }

    /// Environment variable that turns the test binary, re-executed, into the child of
    /// `a_full_disk_leaves_the_old_file_and_no_temp_file`.
    const FSIZE_CHILD: &str = "METABOOT_TEST_FSIZE_CHILD";

    /// Child half: with RLIMIT_FSIZE at 4 KiB, writing 64 KiB fails like a full disk.
    #[test]
    fn fsize_limited_child() {
        let Some(path) = std::env::var_os(FSIZE_CHILD) else {
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
        let err = write_atomic(
            Path::new(&path),
            &vec![b'x'; 64 * 1024],
            &WriteOptions::default(),
        )
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
            .env(FSIZE_CHILD, &path)
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
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("etc"), "not a dir").unwrap();
        let err = write_atomic(
            &dir.path().join("etc/hostname"),
            b"x",
            &WriteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.op, "create directory");
        assert_eq!(
            fs::read_to_string(dir.path().join("etc")).unwrap(),
            "not a dir"
        );
    }
}
