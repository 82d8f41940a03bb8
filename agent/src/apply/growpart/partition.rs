//! Which partition of which disk a device is, as the kernel sees it (sysfs), the disk's device
//! node, and the kernel told a partition's new size (`BLKPG_RESIZE_PARTITION`, which works on
//! a mounted partition; re-reading the whole table does not).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::table::TableError;

/// The kernel's block devices by `major:minor`.
pub const SYS_DEV_BLOCK: &str = "/sys/dev/block";
/// Where device nodes are.
pub const DEV: &str = "/dev";
/// sysfs counts partition starts and sizes in units of 512 bytes, whatever the disk's sectors.
pub const SYSFS_SECTOR: u64 = 512;

/// A partition the kernel knows, and its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its kernel name (`vda1`).
    pub name: String,
    /// Its number in the partition table.
    pub number: u32,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its size in bytes.
    pub bytes: u64,
    pub disk: Disk,
}

/// A whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Its kernel name (`vda`).
    pub name: String,
    /// Its `major:minor`.
    pub dev: (u64, u64),
    /// Its size in bytes.
    pub bytes: u64,
    /// Bytes per logical block (what a partition table's LBAs count).
    pub lba_bytes: u64,
}

/// What a device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    Partition(Partition),
    /// Not a partition: why, for the step's message.
    Not(String),
}

/// The partition whose `major:minor` is `dev`, read under `sys_dev_block`.
pub fn locate(sys_dev_block: &Path, dev: (u64, u64)) -> Result<Located, TableError> {
    let (major, minor) = dev;
    let link = sys_dev_block.join(format!("{major}:{minor}"));
    let Ok(dir) = fs::canonicalize(&link) else {
        return Ok(Located::Not(format!(
            "device {major}:{minor} is not a block device (a virtual or network file system)"
        )));
    };
    let name = file_name(&dir);
    if !dir.join("partition").exists() {
        return Ok(Located::Not(format!(
            "{name} is a whole disk or a mapped device, not a partition"
        )));
    }
    let number = read_number(&dir.join("partition"))?;
    let start = read_number(&dir.join("start"))? * SYSFS_SECTOR;
    let bytes = read_number(&dir.join("size"))? * SYSFS_SECTOR;
    let disk_dir = dir
        .parent()
        .ok_or_else(|| TableError::invalid(format!("{name} has no disk in sysfs")))?;
    let disk = Disk {
        name: file_name(disk_dir),
        dev: read_dev(&disk_dir.join("dev"))?,
        bytes: read_number(&disk_dir.join("size"))? * SYSFS_SECTOR,
        lba_bytes: read_number(&disk_dir.join("queue/logical_block_size"))?,
    };
    Ok(Located::Partition(Partition {
        name,
        number: u32::try_from(number)
            .map_err(|_| TableError::invalid(format!("partition number {number}")))?,
        start,
        bytes,
        disk,
    }))
}

/// The size in bytes of the block device `major:minor` (sysfs, now).
pub fn device_bytes(sys_dev_block: &Path, dev: (u64, u64)) -> Result<u64, TableError> {
    let (major, minor) = dev;
    Ok(read_number(&sys_dev_block.join(format!("{major}:{minor}/size")))? * SYSFS_SECTOR)
}

/// The disk's device node under `dev_dir`, opened for reading and writing.
pub fn open_disk(dev_dir: &Path, disk: &Disk) -> Result<File, TableError> {
    open_node(dev_dir, &disk.name, disk.dev, true)
}

/// The node of the block device `name` (`major:minor` `dev`) under `dev_dir`, opened for
/// reading (and writing when `write`); it must be that block device (a `!` in a kernel name
/// is a `/` under /dev).
pub fn open_node(
    dev_dir: &Path,
    name: &str,
    dev: (u64, u64),
    write: bool,
) -> Result<File, TableError> {
    let path = dev_dir.join(name.replace('!', "/"));
    let what = format!("open {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| TableError::io_owned(what.clone(), e))?;
    let meta = file.metadata().map_err(|e| TableError::io_owned(what, e))?;
    let (major, minor) = dev;
    if !meta.file_type().is_block_device()
        || meta.rdev() != libc::makedev(major as u32, minor as u32)
    {
        return Err(TableError::invalid(format!(
            "{} is not the disk {major}:{minor}",
            path.display()
        )));
    }
    Ok(file)
}

/// `BLKPG` (linux/fs.h: `_IO(0x12, 105)`).
const BLKPG: libc::c_ulong = 0x1269;
/// `BLKPG_RESIZE_PARTITION` (linux/blkpg.h).
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

/// `struct blkpg_partition`.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// Tells the kernel that partition `number` of `disk` now has `bytes` bytes from `start`.
pub fn resize_in_kernel(disk: &File, number: u32, start: u64, bytes: u64) -> io::Result<()> {
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    let mut partition = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| invalid())?,
        length: i64::try_from(bytes).map_err(|_| invalid())?,
        pno: libc::c_int::try_from(number).map_err(|_| invalid())?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: size_of::<BlkpgPartition>() as libc::c_int,
        data: (&raw mut partition).cast(),
    };
    // SAFETY: BLKPG reads a blkpg_ioctl_arg whose data points at a blkpg_partition of
    // datalen bytes; both live on this stack frame for the call.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &raw mut arg) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn file_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_trimmed(path: &Path) -> Result<String, TableError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| TableError::io_owned(format!("read {}", path.display()), e))
}

fn read_number(path: &Path) -> Result<u64, TableError> {
    let text = read_trimmed(path)?;
    text.parse().map_err(|_| {
        TableError::invalid(format!("{} holds {text:?}, not a number", path.display()))
    })
}

fn read_dev(path: &Path) -> Result<(u64, u64), TableError> {
    let text = read_trimmed(path)?;
    text.split_once(':')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .ok_or_else(|| {
            TableError::invalid(format!(
                "{} holds {text:?}, not major:minor",
                path.display()
            ))
        })
}

/// This process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The `major:minor` of the device a path names: the block device itself for a device node,
/// else the device of the file system it is on. A file system whose device number is not a
/// disk's (btrfs gives each subvolume an anonymous number, major 0) is found in `mountinfo`
/// (this process's mounts, [`MOUNTINFO`]): the device node the mount holding the path was
/// mounted from.
pub fn device_of(path: &Path, mountinfo: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    let split = |dev: u64| (u64::from(libc::major(dev)), u64::from(libc::minor(dev)));
    if meta.file_type().is_block_device() {
        return Ok(split(meta.rdev()));
    }
    let dev = split(meta.dev());
    if dev.0 != 0 {
        return Ok(dev);
    }
    let path = fs::canonicalize(path)?;
    let mounts = fs::read_to_string(mountinfo).unwrap_or_default();
    Ok(match mount_source(&mounts, &path).map(fs::metadata) {
        Some(Ok(meta)) if meta.file_type().is_block_device() => split(meta.rdev()),
        _ => dev,
    })
}

/// The source of the mount holding `path` (the last mount on the longest mount point that
/// contains it) in `mountinfo`'s text, when it is a path (fields: id, parent, `major:minor`,
/// root, mount point, options, optional fields, `-`, type, source, super options; a space in
/// a path is `\040`).
fn mount_source(mountinfo: &str, path: &Path) -> Option<String> {
    let unescape = |s: &str| s.replace("\\040", " ");
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let Some(point) = fields.nth(4).map(unescape) else {
            continue;
        };
        let Some(source) = fields.skip_while(|f| *f != "-").nth(2) else {
            continue;
        };
        let depth = Path::new(&point).components().count();
        if path.starts_with(&point) && best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, source));
        }
    }
    best.map(|(_, source)| unescape(source))
        .filter(|s| s.starts_with('/'))
}

#[cfg(test)]
mod tests;
