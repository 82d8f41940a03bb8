//! `growpart` (cloud-init's cc_growpart): the partition a file system is on (`/` by default)
//! grown into the free space after it, in its GPT or MBR partition table, and the kernel told
//! its new size; the `resizefs` step (`apply/resizefs.rs`) then grows the file system. A cloud
//! image is built small and booted on a larger disk: nova gives an instance's disk the
//! flavour's size.

use std::path::Path;

pub mod gpt;
pub mod mbr;
pub mod partition;
mod table;

use gpt::Gpt;
use mbr::Mbr;
use partition::{Located, Partition};
pub(crate) use table::le_u32;
pub use table::{Grown, TableError};

/// The least growth worth a partition table write: less free space after a partition (the
/// alignment gap partitioning tools leave at a disk's end) leaves it alone.
pub const MIN_GROWTH_BYTES: u64 = 1 << 20;
/// When this file exists, `growpart` does nothing unless `ignore_growroot_disabled` is true
/// (cloud-init's switch, shared with the initramfs growroot scripts).
pub const GROWROOT_DISABLED: &str = "/etc/growroot-disabled";
/// What `growpart.devices` is when not given.
pub const DEFAULT_DEVICES: &[&str] = &["/"];

/// What became of one device of `growpart.devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    /// The partition grew.
    Grew { partition: String, grown: Grown },
    /// It already fills the space it has (the next partition or the disk's end).
    Fills { partition: String },
    /// Not a partition (a whole disk, a mapped device, a virtual file system): why.
    NotPartition(String),
}

impl Growth {
    /// The step's words for it.
    pub fn describe(&self) -> String {
        match self {
            Growth::Grew { partition, grown } => format!(
                "{partition} grown from {} to {}",
                size(grown.from),
                size(grown.to)
            ),
            Growth::Fills { partition } => format!("{partition} already fills its space"),
            Growth::NotPartition(why) => why.clone(),
        }
    }
}

/// Whether `growpart.mode` asks for growing: `auto` (the default), `growpart` and `gpart`
/// (cloud-init's names of the tools it would run; metaboot grows by itself for each) do;
/// `off` and `false` do not; anything else is an error naming the value.
pub fn enabled(mode: Option<&serde_json::Value>) -> Result<bool, String> {
    match mode {
        None | Some(serde_json::Value::Null) => Ok(true),
        Some(serde_json::Value::Bool(on)) => Ok(*on),
        Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "auto" | "growpart" | "gpart" => Ok(true),
            "off" | "false" => Ok(false),
            _ => Err(format!(
                "growpart.mode is {s:?}: use auto, growpart, gpart, off or false"
            )),
        },
        Some(other) => Err(format!(
            "growpart.mode is {other}: use auto, growpart, gpart, off or false"
        )),
    }
}

/// Grows the partition `device` names: a mount point or any path on a file system (its
/// partition), or a partition's device node (`/dev/vda1`). The root is the host's. A path that
/// does not exist is skipped, not an error (cloud-init's "stat … failed" skip): a flavour
/// without the second disk the image's configuration names is not a failed boot.
pub fn grow(device: &str) -> Result<Growth, TableError> {
    let dev = match partition::device_of(Path::new(device), Path::new(partition::MOUNTINFO)) {
        Ok(dev) => dev,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Growth::NotPartition(format!(
                "{device} does not exist: skipped"
            )));
        }
        Err(err) => {
            return Err(TableError::io_owned(
                format!("find the device of {device}"),
                err,
            ));
        }
    };
    grow_device(
        Path::new(partition::SYS_DEV_BLOCK),
        Path::new(partition::DEV),
        dev,
    )
}

/// Grows the partition `major:minor`, read in sysfs at `sys_dev_block` and opened from its
/// disk's node under `dev_dir`.
pub fn grow_device(
    sys_dev_block: &Path,
    dev_dir: &Path,
    dev: (u64, u64),
) -> Result<Growth, TableError> {
    let part = match partition::locate(sys_dev_block, dev)? {
        Located::Partition(part) => part,
        Located::Not(why) => return Ok(Growth::NotPartition(why)),
    };
    // Most boots: the disk has not grown since the last one, and nothing needs reading.
    let after = part.disk.bytes.saturating_sub(part.start + part.bytes);
    if after < MIN_GROWTH_BYTES {
        return Ok(Growth::Fills {
            partition: part.name,
        });
    }
    let disk = partition::open_disk(dev_dir, &part.disk)?;
    let Some(grown) = grow_table(&disk, &part)? else {
        return Ok(Growth::Fills {
            partition: part.name,
        });
    };
    partition::resize_in_kernel(&disk, part.number, part.start, grown.to).map_err(|e| {
        TableError::invalid(format!(
            "the partition table now gives {} {}, but the kernel kept {} ({e}): the file \
             system can grow after a reboot",
            part.name,
            size(grown.to),
            size(grown.from)
        ))
    })?;
    Ok(Growth::Grew {
        partition: part.name,
        grown,
    })
}

/// The partition grown in the disk's table (GPT, else MBR), written; `None` when it already
/// fills its space there.
fn grow_table(disk: &std::fs::File, part: &Partition) -> Result<Option<Grown>, TableError> {
    let lba = part.disk.lba_bytes;
    if lba == 0 || !part.start.is_multiple_of(lba) || !part.bytes.is_multiple_of(lba) {
        return Err(TableError::invalid(format!(
            "{} does not start and end on the disk's {lba}-byte blocks",
            part.name
        )));
    }
    let (first, lbas, disk_lbas) = (part.start / lba, part.bytes / lba, part.disk.bytes / lba);
    let min_lbas = MIN_GROWTH_BYTES.div_ceil(lba);
    if let Some(mut gpt) = Gpt::read(disk, lba)? {
        let grown = gpt.grow(first, lbas, disk_lbas, min_lbas)?;
        if grown.is_some() {
            gpt.write(disk)?;
        }
        return Ok(grown);
    }
    match Mbr::read(disk)? {
        Some(mbr) if mbr.is_protective() => Err(TableError::invalid(format!(
            "{} has a protective MBR but no valid GPT header at LBA 1",
            part.disk.name
        ))),
        Some(mut mbr) => {
            let grown = mbr.grow(part.number, first, lbas, disk_lbas, min_lbas, lba)?;
            if grown.is_some() {
                mbr.write(disk)?;
            }
            Ok(grown)
        }
        None => Err(TableError::invalid(format!(
            "{} has no partition table metaboot knows (GPT or MBR)",
            part.disk.name
        ))),
    }
}

/// A size for messages: `2.0 GiB`, `512.0 MiB`.
pub fn size(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests;
