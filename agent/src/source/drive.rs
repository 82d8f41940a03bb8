//! A labelled drive (a config drive, a NoCloud seed): found by reading filesystem labels
//! directly (the tiny image has no blkid or udev; the same probe finds `mounts`' `ephemeral0`
//! and swap devices), mounted read-only under `/run/metaboot` (or read where the system mounted
//! it read-write already: `drive/elsewhere.rs`, where only what root alone may write is read),
//! unmounted when dropped, and read file by file with a size bound and never through a symlink
//! out of the drive.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};

use crate::fsutil::{PathError, Refused};
use crate::root::Root;

/// Block devices, under the root.
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// Where drives are mounted (one directory each), under the root.
pub const MOUNT_DIR: &str = "/run/metaboot";
/// Most block devices probed, counted among those that may hold a drive (see [`probe_all`]).
pub const MAX_PROBED_DEVICES: usize = 128;
/// Bytes read from a device to find its label: the iso9660 primary volume descriptor ends at
/// 32 KiB + 2 KiB.
pub const PROBE_BYTES: usize = 34 * 1024;

/// Failures finding, mounting or reading a drive.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("Failed to mount {device} on {}", target.display())]
    Mount {
        device: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "{} (uid {uid}, mode {mode:04o}) may be written by a user: on a drive mounted \
         read-write elsewhere, only what root alone may write is read (mount it owned by root \
         with umask=022, without `users`, or leave it unmounted for metaboot to mount)",
        path.display()
    )]
    UsersMayWrite { path: PathBuf, uid: u32, mode: u32 },
    /// A failure reading a drive mounted elsewhere ([`Mount::Elsewhere`]).
    #[error(transparent)]
    Elsewhere(Box<DriveError>),
}

impl DriveError {
    /// Whether the drive gives the same answer at every boot: a file over its bound, or one
    /// refused for what the drive holds (a symlink not followed, a loop of links, a directory
    /// where a file is read). A drive is read-only: holding the instance back for such a
    /// document would hold it back for ever. A read error of the medium, or a mount that
    /// failed, may pass; so may a refusal for an owner ([`Refused::ForeignSymlink`]): on the
    /// agent's own mount every file is root's ([`ISO9660_OWNERS`]), but an ISO something
    /// mounted first without them keeps its files a user's in the agent's mount too (the
    /// kernel shares that file system, and its options), and the next boot may not. Nothing
    /// read from a drive mounted elsewhere is definite: that mount is read-write, and its
    /// owner and options may change by the next boot.
    pub fn is_definite(&self) -> bool {
        match self {
            DriveError::TooLarge { .. } => true,
            DriveError::Io(err) => {
                let refused = err
                    .source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<Refused>())
                    .is_some_and(|refused| !matches!(refused, Refused::ForeignSymlink { .. }));
                let errno = err.source.raw_os_error().map(Errno::from_raw);
                refused
                    || matches!(
                        errno,
                        Some(Errno::ELOOP | Errno::ENOTDIR | Errno::EISDIR | Errno::ENAMETOOLONG)
                    )
            }
            DriveError::Mount { .. }
            | DriveError::UsersMayWrite { .. }
            | DriveError::Elsewhere(_) => false,
        }
    }
}

/// The filesystem of a drive, or of another labelled device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Iso9660,
    Vfat,
    /// ext2, ext3 or ext4 (nova formats ephemeral disks ext4, labelled `ephemeral0`).
    Ext,
    Xfs,
    /// A swap area (`mkswap`).
    Swap,
}

impl FsType {
    /// The name mount(2) wants (blkid's `TYPE` for the others).
    pub fn name(self) -> &'static str {
        match self {
            FsType::Iso9660 => "iso9660",
            FsType::Vfat => "vfat",
            FsType::Ext => "ext4",
            FsType::Xfs => "xfs",
            FsType::Swap => "swap",
        }
    }

    /// Whether a drive source takes it (config drives and NoCloud seeds are iso9660 or FAT,
    /// as cloud-init's ds-identify wants them).
    pub fn is_drive(self) -> bool {
        matches!(self, FsType::Iso9660 | FsType::Vfat)
    }

    /// The options a drive of this filesystem is mounted with (mount(2)'s `data`):
    /// [`ISO9660_OWNERS`] for iso9660, none for the others (vfat has no symlinks, and its
    /// files are the mounting root's).
    pub fn mount_data(self) -> Option<&'static str> {
        (self == FsType::Iso9660).then_some(ISO9660_OWNERS)
    }
}

/// How an iso9660 drive is mounted: every file root's. `genisoimage -R` and `xorriso -R` (what
/// `cloud-localds` and users run) keep the builder's uid in the Rock Ridge records, and the
/// drive's reads follow only root's symlinks (`fsutil/resolve.rs`): `openstack/2018-08-27 ->
/// latest` or `user-data -> ../x` on a drive built by uid 1000 would be refused, where
/// cloud-init reads through them. Linux's isofs gives every inode the owners these options
/// name, over Rock Ridge's (`isofs_read_inode`); the links stay confined to the drive.
pub const ISO9660_OWNERS: &str = "uid=0,gid=0";

/// Where a swap area's signature ends: the end of its first page (4 KiB on x86-64).
const SWAP_PAGE: usize = 4096;
/// A swap area's signature, the last bytes of its first page (`union swap_header`).
pub const SWAP_MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// Where a swap area's UUID and label are (after 1 KiB of boot bits, the version, the last
/// page and the bad page count).
pub const SWAP_UUID: std::ops::Range<usize> = 1036..1052;
pub const SWAP_LABEL: std::ops::Range<usize> = 1052..1068;

fn label(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

/// The filesystem type and label in the first [`PROBE_BYTES`] of a device, if it is iso9660,
/// FAT, ext2/3/4, XFS or a swap area.
pub fn probe_label(head: &[u8]) -> Option<(FsType, String)> {
    // iso9660: primary volume descriptor at sector 16, volume id at offset 40 (32 bytes).
    if let Some(pvd) = head.get(32 * 1024..32 * 1024 + 72)
        && pvd[0] == 1
        && &pvd[1..6] == b"CD001"
    {
        return Some((FsType::Iso9660, label(&pvd[40..72])));
    }
    // ext2/3/4: the superblock at 1 KiB, magic 0xEF53 at 56, the volume name at 120 (16 bytes).
    if let Some(sb) = head.get(1024..1024 + 136)
        && sb[56..58] == [0x53, 0xEF]
    {
        return Some((FsType::Ext, label(&sb[120..136])));
    }
    // XFS: "XFSB" at 0, the name at 108 (12 bytes).
    if let Some(sb) = head.get(..120)
        && &sb[..4] == b"XFSB"
    {
        return Some((FsType::Xfs, label(&sb[108..120])));
    }
    // A swap area: its signature ends its first page.
    if let Some(page) = head.get(..SWAP_PAGE)
        && page.ends_with(SWAP_MAGIC)
    {
        return Some((FsType::Swap, label(&page[SWAP_LABEL])));
    }
    let boot = head.get(..512)?;
    if boot[510..512] != [0x55, 0xAA] {
        return None;
    }
    // FAT32 keeps its extended BPB at 64, FAT12/16 at 36: signature 0x29, label 11 bytes.
    if &boot[82..87] == b"FAT32" && boot[66] == 0x29 {
        Some((FsType::Vfat, label(&boot[71..82])))
    } else if &boot[54..57] == b"FAT" && boot[38] == 0x29 {
        Some((FsType::Vfat, label(&boot[43..54])))
    } else {
        None
    }
}

fn probe_device(root: &Root, path: &Path) -> Option<(FsType, String)> {
    let mut head = Vec::with_capacity(PROBE_BYTES);
    root.open_file(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0, true, false)
        .ok()?
        .take(PROBE_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    probe_label(&head)
}

/// Where a block device comes in the probing order: whole disks first (a config drive or a
/// NoCloud seed is one: `sr0`, `vdb`), then partitions, then loop devices (a snap each);
/// `None` for one of size zero, which holds nothing to probe (an unused loop device, an empty
/// CD tray). Read from sysfs only, the device itself is not opened.
pub fn probing_rank(root: &Root, name: &OsStr) -> Option<u8> {
    let sys = Path::new(SYS_CLASS_BLOCK).join(name);
    let size = root.read_optional_string(sys.join("size")).ok().flatten();
    if size.is_some_and(|size| size.trim() == "0") {
        return None;
    }
    Some(if name.as_bytes().starts_with(b"loop") {
        2
    } else if root.exists(sys.join("partition")) {
        1
    } else {
        0
    })
}

/// Every labelled block device under the root, in probing order: `(device path under the root,
/// filesystem, label)`. The devices that may hold one are picked first ([`probing_rank`]:
/// none of size zero; whole disks, then partitions, then loop devices, each in name order),
/// then at most [`MAX_PROBED_DEVICES`] of them are probed: dozens of loop devices and
/// partitions do not hide the drive.
pub fn probe_all(root: &Root) -> Vec<(PathBuf, FsType, String)> {
    let mut candidates: Vec<(u8, OsString)> = root
        .entries_or_none(SYS_CLASS_BLOCK)
        .into_iter()
        .filter_map(|(name, _)| Some((probing_rank(root, &name)?, name)))
        .collect();
    candidates.sort_unstable();
    candidates
        .into_iter()
        .take(MAX_PROBED_DEVICES)
        .filter_map(|(_, name)| {
            let device = Path::new("/dev").join(&name);
            let (fs, label) = probe_device(root, &device)?;
            tracing::debug!(device = %device.display(), fs = fs.name(), label, "probed");
            Some((device, fs, label))
        })
        .collect()
}

/// The drives (iso9660 or FAT devices) under the root whose label `wanted` accepts, in probing
/// order: `(device path, filesystem)`.
pub fn find(root: &Root, wanted: impl Fn(&str) -> bool) -> Vec<(PathBuf, FsType)> {
    probe_all(root)
        .into_iter()
        .filter(|(_, fs, label)| fs.is_drive() && wanted(label))
        .map(|(device, fs, _)| (root.host_path(&device), fs))
        .collect()
}

/// Whose mount a drive's files are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// The agent's own, read-only, every file root's ([`ISO9660_OWNERS`]; vfat gives its files
    /// the mounting root); or a directory read as a drive (a NoCloud seed directory, read
    /// through the machine's root).
    Own,
    /// One the system made read-write (`drive/elsewhere.rs`): its files may be a user's
    /// (`uid=1000`, `umask=000`, `users`), and may change by the next boot.
    Elsewhere,
}

/// A drive mounted read-only; unmounted when dropped. Or one the system had mounted
/// read-write already, read where it is and left mounted (see `drive/elsewhere.rs`).
#[derive(Debug)]
pub struct Mounted {
    dir: PathBuf,
    /// [`Mount::Elsewhere`]: not unmounted when dropped.
    mount: Mount,
}

impl Mounted {
    /// Mounts `device` read-only on `<root>/run/metaboot/<name>` (a directory made, or checked
    /// not to be a symlink, through the root's descriptor; mount(2) then takes its path, in
    /// directories only root can change). A device the system has mounted read-write already
    /// (the kernel refuses a read-only mount of it, `EBUSY`) is read where it is mounted, and
    /// left mounted (`drive/elsewhere.rs`).
    pub fn mount(root: &Root, device: &Path, fs: FsType, name: &str) -> Result<Self, DriveError> {
        let inside = Path::new(MOUNT_DIR).join(name);
        let target = mount_point(root, &inside)?;
        let mounted = nix::mount::mount(
            Some(device),
            &target,
            Some(fs.name()),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            fs.mount_data(),
        );
        let elsewhere = match mounted {
            Err(Errno::EBUSY) => elsewhere::find(device),
            _ => None,
        };
        if let Some(dir) = elsewhere {
            tracing::info!(device = %device.display(), dir = %dir.display(), "drive mounted read-write already: read where it is, left mounted");
            return Ok(Mounted {
                dir,
                mount: Mount::Elsewhere,
            });
        }
        mounted.map_err(|source| DriveError::Mount {
            device: device.display().to_string(),
            target: target.clone(),
            source,
        })?;
        tracing::info!(device = %device.display(), fs = fs.name(), dir = %target.display(), "drive mounted");
        Ok(Mounted {
            dir: target,
            mount: Mount::Own,
        })
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whose mount it is, which decides how its files are read ([`read`]).
    pub fn whose(&self) -> Mount {
        self.mount
    }
}

/// Most mounts an earlier run may have left stacked on a drive's directory; each is detached.
pub const MAX_LEFT_MOUNTS: usize = 8;

/// The directory a drive is mounted on (`inside` the root), made when missing. A drive an
/// earlier run left mounted there (killed, or ended by a panic, which the guest build aborts
/// on, so no `Drop` ran) is detached first: its read-only file system would refuse the
/// directory's mode (`EROFS`), and the drive could not be read until a reboot.
pub fn mount_point(root: &Root, inside: &Path) -> Result<PathBuf, DriveError> {
    let target = root.host_path(inside);
    for _ in 0..MAX_LEFT_MOUNTS {
        // EINVAL: nothing is mounted there; ENOENT: no directory yet.
        if nix::mount::umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            break;
        }
        tracing::info!(dir = %target.display(), "an earlier run's drive detached");
    }
    root.ensure_dir(inside, 0o755, None)
        .map_err(PathError::fail("create", &target))?;
    Ok(target)
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mount == Mount::Elsewhere {
            return;
        }
        if let Err(err) = nix::mount::umount2(&self.dir, MntFlags::MNT_DETACH) {
            tracing::warn!(dir = %self.dir.display(), %err, "failed to unmount a drive");
        }
    }
}

/// Reads `inside` the drive's directory `dir` (a `mount` of it), at most `limit` bytes; `None`
/// when it does not exist. Symlinks on the drive are resolved inside it, never out of it.
pub fn read(
    dir: &Path,
    inside: &Path,
    limit: u64,
    mount: Mount,
) -> Result<Option<Vec<u8>>, DriveError> {
    match Root::open(dir) {
        Ok(drive) => read_under(&drive, inside, limit, mount),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PathError::fail("read", dir.join(inside))(source).into()),
    }
}

/// Reads `path` under `root` (a `mount` of a drive, or [`Mount::Own`] for a directory), at
/// most `limit` bytes; `None` when it does not exist. Symlinks are followed as the root
/// follows them (see `fsutil/resolve.rs`): inside it, and only root's (a drive mounted by the
/// agent is all root's). A drive mounted elsewhere is read as `drive/elsewhere.rs` reads it:
/// only what root alone may write.
pub fn read_under(
    root: &Root,
    path: &Path,
    limit: u64,
    mount: Mount,
) -> Result<Option<Vec<u8>>, DriveError> {
    if mount == Mount::Elsewhere {
        return elsewhere::read(root, path, limit).map_err(|err| DriveError::Elsewhere(err.into()));
    }
    let path_shown = root.host_path(path);
    let opened = root.open_file(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0, true, false);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PathError::fail("read", path_shown)(source).into()),
    };
    read_bounded(file, path_shown, limit).map(Some)
}

/// Reads `file` (`path` on the drive) whole, when it has at most `limit` bytes.
fn read_bounded(file: impl Read, path: PathBuf, limit: u64) -> Result<Vec<u8>, DriveError> {
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(PathError::fail("read", &path))?;
    if data.len() as u64 > limit {
        return Err(DriveError::TooLarge { path, limit });
    }
    Ok(data)
}

mod elsewhere;

#[cfg(test)]
pub(crate) mod tests;
