//! `resizefs` (cloud-init's cc_resizefs): the root file system grown to the size of its
//! device, after `growpart` (`apply/growpart.rs`) grew the partition. ext4 is grown online by
//! the kernel (`EXT4_IOC_RESIZE_FS`, what resize2fs does on a mounted file system), XFS and
//! btrfs by their own tools (`xfs_growfs`, `btrfs`) when the image has them, as cloud-init
//! runs them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use nix::sys::statfs::fstatfs;

use super::growpart::{le_u32, partition, size};
use super::tool::{self, ToolError};

/// statfs(2) `f_type` of ext2/3/4.
pub const EXT4_SUPER_MAGIC: i64 = 0xef53;
/// Of XFS.
pub const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
/// Of btrfs.
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
/// `EXT4_IOC_RESIZE_FS` (linux/ext4.h: `_IOW('f', 16, __u64)`): the new block count.
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;

/// Names of file systems that have nothing to grow, for the step's message.
const VIRTUAL: &[(i64, &str)] = &[
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x794c_7630, "overlay"),
    (0x7371_7368, "squashfs"),
    (0x6969, "nfs"),
];

/// What became of the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resized {
    /// It grew: which (`ext4 on vda1`), from and to (bytes the file system reports).
    Grew { what: String, from: u64, to: u64 },
    /// It already fills its device.
    Fills(String),
    /// Nothing metaboot can grow: why.
    NotGrown(String),
}

impl Resized {
    /// The step's words for it.
    pub fn describe(&self) -> String {
        match self {
            Resized::Grew { what, from, to } => {
                format!("{what} grown from {} to {}", size(*from), size(*to))
            }
            Resized::Fills(what) => format!("{what} already fills its device"),
            Resized::NotGrown(why) => why.clone(),
        }
    }
}

/// A file system that could not be grown.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Size(String),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ResizeError {
    let what = what.into();
    move |source| ResizeError::Io { what, source }
}

/// Whether `resize_rootfs` asks for it: true (the default), `noblock` (cloud-init then grows in
/// the background; metaboot's online grow is quick and done in place) and cloud-init's other
/// true words do; false and anything else do not.
pub fn wanted(value: Option<&serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Bool(on)) => *on,
        Some(serde_json::Value::Number(n)) => n.as_i64() == Some(1),
        Some(serde_json::Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "1" | "on" | "yes" | "y" | "noblock"
        ),
        Some(_) => false,
    }
}

/// Grows the file system mounted at `mount` to its device's size (read in sysfs at
/// `sys_dev_block`; the device's node under `dev_dir`).
pub fn resize(mount: &Path, sys_dev_block: &Path, dev_dir: &Path) -> Result<Resized, ResizeError> {
    let dir = File::open(mount).map_err(io_error(format!("open {}", mount.display())))?;
    let before =
        fstatfs(&dir).map_err(|e| io_error(format!("statfs {}", mount.display()))(e.into()))?;
    let kind = before.filesystem_type().0;
    let total = |s: &nix::sys::statfs::Statfs| s.blocks() * s.block_size() as u64;
    let from = total(&before);
    let dev = dir
        .metadata()
        .map_err(io_error(format!("stat {}", mount.display())))?
        .dev();
    let dev = (u64::from(libc::major(dev)), u64::from(libc::minor(dev)));
    let device_name = || {
        std::fs::canonicalize(sys_dev_block.join(format!("{}:{}", dev.0, dev.1)))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| format!("device {}:{}", dev.0, dev.1))
    };
    let what = match kind {
        EXT4_SUPER_MAGIC => {
            let name = device_name();
            let bytes = partition::device_bytes(sys_dev_block, dev)
                .map_err(|e| ResizeError::Size(format!("the size of {name}: {e}")))?;
            let block = before.block_size() as u64;
            let blocks = bytes / block;
            // Most boots: it spans its device already. The kernel's grow would still flush the
            // journal, so the superblock decides first.
            if ext4_blocks(dev_dir, &name, dev).is_some_and(|now| now >= blocks) {
                return Ok(Resized::Fills(format!("ext4 on {name}")));
            }
            // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count) from the pointer.
            let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &raw const blocks) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                let why = if err.raw_os_error() == Some(libc::EPERM) {
                    " (growing a mounted file system takes CAP_SYS_RESOURCE)"
                } else {
                    ""
                };
                return Err(io_error(format!(
                    "grow ext4 on {name} to {blocks} blocks of {block} bytes{why}"
                ))(err));
            }
            format!("ext4 on {name}")
        }
        XFS_SUPER_MAGIC => {
            let mount = mount.to_string_lossy();
            match tool::run("xfs_growfs", &["-d", &mount])? {
                Some(()) => format!("xfs on {}", device_name()),
                None => {
                    return Ok(Resized::NotGrown(format!(
                        "{mount} is xfs and xfs_growfs is not installed"
                    )));
                }
            }
        }
        BTRFS_SUPER_MAGIC => {
            let mount = mount.to_string_lossy();
            match tool::run("btrfs", &["filesystem", "resize", "max", &mount])? {
                Some(()) => format!("btrfs at {mount}"),
                None => {
                    return Ok(Resized::NotGrown(format!(
                        "{mount} is btrfs and the btrfs tool is not installed"
                    )));
                }
            }
        }
        other => {
            let name = VIRTUAL
                .iter()
                .find(|(magic, _)| *magic == other)
                .map_or_else(
                    || format!("type {other:#x}"),
                    |(_, name)| (*name).to_owned(),
                );
            return Ok(Resized::NotGrown(format!(
                "{} is a {name} file system: metaboot grows ext4, xfs and btrfs",
                mount.display()
            )));
        }
    };
    let after =
        fstatfs(&dir).map_err(|e| io_error(format!("statfs {}", mount.display()))(e.into()))?;
    let to = total(&after);
    Ok(if to > from {
        Resized::Grew { what, from, to }
    } else {
        Resized::Fills(what)
    })
}

/// Where the ext4 superblock is, and its fields read here (byte offsets).
const SUPERBLOCK: u64 = 1024;
const SB_BLOCKS_LO: usize = 0x04;
const SB_MAGIC: usize = 0x38;
const SB_INCOMPAT: usize = 0x60;
const SB_BLOCKS_HI: usize = 0x150;
/// `INCOMPAT_64BIT`: the block count has a high half.
const INCOMPAT_64BIT: u32 = 0x80;

/// The block count of the ext4 superblock on `/dev/<name>` (under `dev_dir`, checked to be
/// the device `dev`): what the file system spans now. `None` when it cannot be read.
fn ext4_blocks(dev_dir: &Path, name: &str, dev: (u64, u64)) -> Option<u64> {
    let file = partition::open_node(dev_dir, name, dev, false).ok()?;
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, SUPERBLOCK).ok()?;
    superblock_blocks(&sb)
}

/// The block count of an ext2/3/4 superblock; `None` without its magic number.
fn superblock_blocks(sb: &[u8; 1024]) -> Option<u64> {
    let u32_at = |at: usize| le_u32(sb, at);
    if u16::from_le_bytes([sb[SB_MAGIC], sb[SB_MAGIC + 1]]) as i64 != EXT4_SUPER_MAGIC {
        return None;
    }
    let high = if u32_at(SB_INCOMPAT) & INCOMPAT_64BIT != 0 {
        u32_at(SB_BLOCKS_HI)
    } else {
        0
    };
    Some(u64::from(high) << 32 | u64::from(u32_at(SB_BLOCKS_LO)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_rootfs_words_as_cloud_init_translates_them() {
        use serde_json::json;
        for on in [
            json!(true),
            json!("noblock"),
            json!("Yes"),
            json!("on"),
            json!(1),
        ] {
            assert!(wanted(Some(&on)), "{on}");
        }
        assert!(wanted(None));
        for off in [
            json!(false),
            json!("false"),
            json!("off"),
            json!(0),
            json!("later"),
        ] {
            assert!(!wanted(Some(&off)), "{off}");
        }
    }

    #[test]
    fn the_block_count_is_read_from_the_superblock() {
        let mut sb = [0u8; 1024];
        assert_eq!(superblock_blocks(&sb), None, "no magic");
        sb[SB_MAGIC..SB_MAGIC + 2].copy_from_slice(&0xef53u16.to_le_bytes());
        sb[SB_BLOCKS_LO..SB_BLOCKS_LO + 4].copy_from_slice(&785_403u32.to_le_bytes());
        sb[SB_BLOCKS_HI..SB_BLOCKS_HI + 4].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            superblock_blocks(&sb),
            Some(785_403),
            "the high half only with 64bit"
        );
        sb[SB_INCOMPAT..SB_INCOMPAT + 4].copy_from_slice(&INCOMPAT_64BIT.to_le_bytes());
        assert_eq!(superblock_blocks(&sb), Some((1 << 32) + 785_403));
    }

    #[test]
    fn a_virtual_file_system_is_not_grown() {
        let resized = resize(
            Path::new("/proc"),
            Path::new(partition::SYS_DEV_BLOCK),
            Path::new(partition::DEV),
        )
        .unwrap();
        assert_eq!(
            resized,
            Resized::NotGrown(
                "/proc is a type 0x9fa0 file system: metaboot grows ext4, xfs and btrfs".into()
            )
        );
    }
}
