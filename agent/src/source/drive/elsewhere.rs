//! A drive the system already mounted read-write (a vfat `CIDATA` in fstab): a read-only mount
//! of its device fails with `EBUSY` (Linux does not mount a block device read-only while its
//! file system is mounted read-write), so it is read where it is mounted, as cloud-init's
//! `mount_cb` reads a device it finds in `/proc/mounts`, and left mounted.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// Where block device `device` (a host path) is mounted, when it is: the first mount point of
/// its file system ([`mount_points_of`] in [`MOUNTINFO`]) that is that file system now (its
/// device number is the device's): one something else is mounted on top of is passed over
/// for the next.
pub fn find(device: &Path) -> Option<PathBuf> {
    let rdev = std::fs::metadata(device).ok()?.rdev();
    let mountinfo = std::fs::read_to_string(MOUNTINFO).ok()?;
    mount_points_of(&mountinfo, libc::major(rdev), libc::minor(rdev))
        .find(|point| std::fs::metadata(point).is_ok_and(|found| found.dev() == rdev))
}
