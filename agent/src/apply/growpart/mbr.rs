//! A DOS (MBR) partition table with one primary partition grown into the free space after it:
//! its size field and the CHS address of its end rewritten, in one sector write.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::table::{Grown, TableError, le_u32, put_u32};

/// The MBR is the disk's first 512 bytes, whatever its logical block size.
pub const SECTOR_BYTES: usize = 512;
/// Its last two bytes.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xaa];
/// Where the four primary entries start.
pub const ENTRIES: usize = 446;
/// Bytes per entry.
pub const ENTRY_BYTES: usize = 16;
// Entry fields (byte offsets in an entry).
/// The CHS address of the last sector (3 bytes).
const CHS_END: usize = 5;
/// The partition type.
pub const TYPE: usize = 4;
/// The first LBA.
pub const START: usize = 8;
/// The size in LBAs.
pub const SIZE: usize = 12;

/// Partition types of extended partitions (their logical partitions are not grown).
const EXTENDED_TYPES: [u8; 3] = [0x05, 0x0f, 0x85];
/// The type of a GPT disk's protective entry.
const PROTECTIVE_TYPE: u8 = 0xee;
/// The highest partition number of a primary partition.
pub const MAX_PRIMARY: u32 = 4;

/// CHS geometry the addresses are written for (what partitioning tools assume).
const HEADS: u64 = 255;
const SECTORS_PER_TRACK: u64 = 63;
/// The CHS address of anything beyond cylinder 1023.
const CHS_BEYOND: [u8; 3] = [0xfe, 0xff, 0xff];

/// The MBR of a disk.
#[derive(Debug, Clone)]
pub struct Mbr {
    sector: [u8; SECTOR_BYTES],
}

impl Mbr {
    /// The MBR of `disk`; `None` when its boot signature is missing.
    pub fn read(disk: &File) -> Result<Option<Mbr>, TableError> {
        let mut sector = [0; SECTOR_BYTES];
        disk.read_exact_at(&mut sector, 0)
            .map_err(|e| TableError::io("read the MBR", e))?;
        Ok((sector[510..] == BOOT_SIGNATURE).then_some(Mbr { sector }))
    }

    /// The offsets of the four primary entries.
    fn entries() -> impl Iterator<Item = usize> {
        (0..MAX_PRIMARY as usize).map(|i| ENTRIES + i * ENTRY_BYTES)
    }

    fn kind(&self, entry: usize) -> u8 {
        self.sector[entry + TYPE]
    }

    /// True for a GPT disk's protective MBR.
    pub fn is_protective(&self) -> bool {
        Self::entries().any(|e| self.kind(e) == PROTECTIVE_TYPE)
    }

    /// Grows primary partition `number` (1–4), which the kernel has at LBA `first` with `lbas`
    /// LBAs, up to the next partition or the end of a disk of `disk_lbas` LBAs (as far as 32
    /// bits count), when that adds at least `min_lbas`. `None`: it already fills its space.
    pub fn grow(
        &mut self,
        number: u32,
        first: u64,
        lbas: u64,
        disk_lbas: u64,
        min_lbas: u64,
        lba_bytes: u64,
    ) -> Result<Option<Grown>, TableError> {
        if !(1..=MAX_PRIMARY).contains(&number) {
            return Err(TableError::invalid(format!(
                "partition {number} is a logical partition: only primary partitions (1-{MAX_PRIMARY}) are grown"
            )));
        }
        let entry = ENTRIES + (number as usize - 1) * ENTRY_BYTES;
        let (start, size) = (self.start(entry), self.size(entry));
        if self.kind(entry) == 0 || start != first || size != lbas {
            return Err(TableError::invalid(format!(
                "MBR entry {number} is not the partition the kernel has at LBA {first} ({lbas} LBAs)"
            )));
        }
        if EXTENDED_TYPES.contains(&self.kind(entry)) {
            return Err(TableError::invalid(format!(
                "partition {number} is an extended partition"
            )));
        }
        let last = first
            .checked_add(lbas)
            .and_then(|end| end.checked_sub(1))
            .filter(|_| lbas > 0)
            .ok_or_else(|| TableError::invalid(format!("a partition of {lbas} LBAs at {first}")))?;
        // Any entry that starts after this one bounds it, extended partitions included.
        let next = Self::entries()
            .filter(|&e| e != entry && self.kind(e) != 0 && self.start(e) > last)
            .map(|e| self.start(e) - 1)
            .min();
        let disk_last = disk_lbas.saturating_sub(1);
        let counted = first + u64::from(u32::MAX) - 1;
        let new_last = next.unwrap_or(disk_last).min(disk_last).min(counted);
        if new_last < last || new_last - last < min_lbas {
            return Ok(None);
        }
        let new_size = new_last - first + 1;
        put_u32(
            &mut self.sector,
            entry + SIZE,
            u32::try_from(new_size).expect("bounded by u32::MAX above"),
        );
        self.sector[entry + CHS_END..entry + CHS_END + 3].copy_from_slice(&chs(new_last));
        Ok(Some(Grown {
            from: lbas * lba_bytes,
            to: new_size * lba_bytes,
        }))
    }

    fn start(&self, entry: usize) -> u64 {
        u64::from(le_u32(&self.sector, entry + START))
    }

    fn size(&self, entry: usize) -> u64 {
        u64::from(le_u32(&self.sector, entry + SIZE))
    }

    /// Writes the MBR back (one sector: all or nothing on any disk) and syncs it.
    pub fn write(&self, disk: &File) -> Result<(), TableError> {
        disk.write_all_at(&self.sector, 0)
            .map_err(|e| TableError::io("write the MBR", e))?;
        disk.sync_data()
            .map_err(|e| TableError::io("sync the disk", e))
    }
}

/// The CHS address of `lba` in the geometry partitioning tools assume (255 heads, 63 sectors
/// per track), or the "beyond 1023 cylinders" marker.
pub fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (HEADS * SECTORS_PER_TRACK);
    if cylinder > 1023 {
        return CHS_BEYOND;
    }
    let head = (lba / SECTORS_PER_TRACK) % HEADS;
    let sector = lba % SECTORS_PER_TRACK + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xc0) as u8),
        (cylinder & 0xff) as u8,
    ]
}

#[cfg(test)]
mod tests;
