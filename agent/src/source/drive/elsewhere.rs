//! A drive the system already mounted read-write (a vfat `CIDATA` in fstab): a read-only mount
//! of its device fails with `EBUSY` (Linux does not mount a block device read-only while its
//! file system is mounted read-write), so it is read where it is mounted, as cloud-init's
//! `mount_cb` reads a device it finds in `/proc/mounts`, and left mounted. Only what root
//! alone may write is read there ([`read`]): that mount's options are someone else's, and
//! `uid=1000` or `umask=000` would let a user write the user data root runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::FileStat;

use super::{DriveError, read_bounded};
use crate::fsutil::{PathError, only_root_adds};
use crate::root::Root;

/// This process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Where the file system of device `major:minor` is mounted whole, in `mountinfo`'s text
/// (fields: id, parent, `major:minor`, root, mount point, …): every mount whose root is the
/// file system's own (not a bind mount of a directory in it), in `mountinfo`'s order.
pub fn mount_points_of(mountinfo: &str, major: u32, minor: u32) -> impl Iterator<Item = PathBuf> {
    let device = format!("{major}:{minor}");
    mountinfo.lines().filter_map(move |line| {
        let mut fields = line.split(' ').skip(2);
        let (dev, root, point) = (fields.next()?, fields.next()?, fields.next()?);
        (dev == device && root == "/").then(|| PathBuf::from(OsString::from_vec(unescape(point))))
    })
}

/// A path of `mountinfo`: the kernel writes a space, tab, newline or backslash in it as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The system's mount table, whose options say who may mount what.
const FSTAB: &str = "/etc/fstab";

/// fstab options that let a user mount the file system (mount(8)): that user could have
/// mounted it as theirs and written the user data root runs, and root's files, when root
/// mounts it again at boot, would not show it.
pub const USER_MOUNT_OPTIONS: [&str; 4] = ["user", "users", "owner", "group"];

/// Whether `fstab`'s text lets users mount a file system at `point`.
pub fn users_may_mount(fstab: &str, point: &Path) -> bool {
    fstab.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(spec), Some(dir), Some(_), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        !spec.starts_with('#')
            && Path::new(&OsString::from_vec(unescape(dir))) == point
            && options
                .split(',')
                .any(|option| USER_MOUNT_OPTIONS.contains(&option))
    })
}

/// Where block device `device` (a host path) is mounted, when it is: the first mount point of
/// its file system ([`mount_points_of`] in [`MOUNTINFO`]) that is that file system now (its
/// device number is the device's): one something else is mounted on top of is passed over
/// for the next; one fstab lets users mount ([`users_may_mount`]) is not read.
pub fn find(device: &Path) -> Option<PathBuf> {
    let rdev = std::fs::metadata(device).ok()?.rdev();
    let mountinfo = std::fs::read_to_string(MOUNTINFO).ok()?;
    let fstab = std::fs::read_to_string(FSTAB).unwrap_or_default();
    mount_points_of(&mountinfo, libc::major(rdev), libc::minor(rdev)).find(|point| {
        let here = std::fs::metadata(point).is_ok_and(|found| found.dev() == rdev);
        if here && users_may_mount(&fstab, point) {
            tracing::warn!(device = %device.display(), dir = %point.display(), "drive mounted where {FSTAB} lets users mount it: not read");
            return false;
        }
        here
    })
}

/// Reads `path` under `drive`, the top of a drive mounted elsewhere, at most `limit` bytes;
/// `None` when it does not exist. It is walked name by name, through no symlink (vfat, what
/// such a drive is, has none), and the top, each directory on the way and the file (checked
/// once opened) must be root's alone ([`roots_alone`]): anything else a user may have
/// written, or put in place.
pub fn read(drive: &Root, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, DriveError> {
    let shown = drive.host_path(path);
    let fail = |err: io::Error| DriveError::from(PathError::fail("read", &shown)(err));
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(fail(io::ErrorKind::InvalidInput.into()));
            }
        }
    }
    let Some((file, dirs)) = names.split_last() else {
        return Err(fail(io::ErrorKind::IsADirectory.into()));
    };
    let mut dir = drive.dir("/", false).map_err(fail)?;
    roots_alone(&dir.stat().map_err(fail)?, dir.path())?;
    for name in dirs {
        let Some(next) = dir.open_dir(name).map_err(fail)? else {
            return Ok(None);
        };
        roots_alone(&next.stat().map_err(fail)?, next.path())?;
        dir = next;
    }
    let Some((opened, stat)) = dir.open_file(file).map_err(fail)? else {
        return Ok(None);
    };
    roots_alone(&stat, &shown)?;
    read_bounded(opened, shown, limit).map(Some)
}

/// Refuses the file or directory `path` of status `stat` unless root alone may write it: root's
/// (or the agent's own, in a test run as a user), and neither its group nor others may write
/// it ([`only_root_adds`], whose rule for a directory's entries is a file's for its content).
fn roots_alone(stat: &FileStat, path: &Path) -> Result<(), DriveError> {
    if only_root_adds(stat) {
        return Ok(());
    }
    Err(DriveError::UsersMayWrite {
        path: path.to_owned(),
        uid: stat.st_uid,
        mode: stat.st_mode & 0o7777,
    })
}
