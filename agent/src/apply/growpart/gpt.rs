//! A GUID partition table (UEFI specification, chapter 5) with one partition grown into the
//! free space after it: the entry's last LBA moved, the backup header and entries moved to the
//! disk's new end, the protective MBR's size updated, every checksum recomputed.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::table::{Grown, TableError, le_u32, le_u64, put_u32, put_u64};

/// What the header at LBA 1 starts with.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Bytes of the header the specification defines (a header may declare more, up to a sector).
const HEADER_MIN_BYTES: usize = 92;
/// The most bytes of partition entries read (128 entries of 128 bytes are the usual 16 KiB).
pub const MAX_ENTRIES_BYTES: usize = 1 << 20;
/// The smallest partition entry.
const ENTRY_MIN_BYTES: usize = 128;

// Header fields (byte offsets).
const HEADER_SIZE: usize = 12;
const HEADER_CRC: usize = 16;
const MY_LBA: usize = 24;
const ALTERNATE_LBA: usize = 32;
const LAST_USABLE: usize = 48;
const ENTRIES_LBA: usize = 72;
const ENTRY_COUNT: usize = 80;
const ENTRY_SIZE: usize = 84;
const ENTRIES_CRC: usize = 88;

// Entry fields.
const TYPE_GUID: std::ops::Range<usize> = 0..16;
const FIRST_LBA: usize = 32;
const LAST_LBA: usize = 40;

/// The MBR's partition type of a GPT disk's protective entry.
const PROTECTIVE_TYPE: u8 = 0xee;

/// The primary GPT of a disk, read and checked.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// Bytes per LBA (the disk's logical block size).
    sector: u64,
    /// The header, `header_size` bytes.
    header: Vec<u8>,
    /// The partition entries, `count × size` bytes.
    entries: Vec<u8>,
}

impl Gpt {
    /// The primary GPT of `disk` (LBAs of `sector` bytes); `None` when LBA 1 has no GPT
    /// signature. A damaged header or entry array is an error: nothing is grown from it.
    pub fn read(disk: &File, sector: u64) -> Result<Option<Gpt>, TableError> {
        let mut block = vec![0; to_usize(sector)?];
        disk.read_exact_at(&mut block, sector)
            .map_err(|e| TableError::io("read the GPT header", e))?;
        if &block[..8] != SIGNATURE {
            return Ok(None);
        }
        let size = le_u32(&block, HEADER_SIZE) as usize;
        if !(HEADER_MIN_BYTES..=block.len()).contains(&size) {
            return Err(TableError::invalid(format!("GPT header size {size}")));
        }
        let header = block[..size].to_vec();
        if header_crc(&header) != le_u32(&header, HEADER_CRC) {
            return Err(TableError::invalid(
                "the primary GPT header's checksum is wrong",
            ));
        }
        if le_u64(&header, MY_LBA) != 1 {
            return Err(TableError::invalid(
                "the primary GPT header is not at LBA 1",
            ));
        }
        let entry_size = le_u32(&header, ENTRY_SIZE) as usize;
        let count = le_u32(&header, ENTRY_COUNT) as usize;
        if entry_size < ENTRY_MIN_BYTES || !entry_size.is_multiple_of(8) {
            return Err(TableError::invalid(format!("GPT entry size {entry_size}")));
        }
        let bytes = count
            .checked_mul(entry_size)
            .filter(|b| *b <= MAX_ENTRIES_BYTES)
            .ok_or_else(|| {
                TableError::invalid(format!(
                    "{count} GPT entries of {entry_size} bytes (at most {MAX_ENTRIES_BYTES} bytes)"
                ))
            })?;
        let at = le_u64(&header, ENTRIES_LBA);
        if at < 2 {
            return Err(TableError::invalid(format!("GPT entries at LBA {at}")));
        }
        let mut entries = vec![0; bytes];
        let offset = at
            .checked_mul(sector)
            .ok_or_else(|| TableError::invalid(format!("GPT entries at LBA {at}")))?;
        disk.read_exact_at(&mut entries, offset)
            .map_err(|e| TableError::io("read the GPT entries", e))?;
        if crc(&entries) != le_u32(&header, ENTRIES_CRC) {
            return Err(TableError::invalid("the GPT entries' checksum is wrong"));
        }
        Ok(Some(Gpt {
            sector,
            header,
            entries,
        }))
    }

    fn entry_size(&self) -> usize {
        le_u32(&self.header, ENTRY_SIZE) as usize
    }

    /// Every used entry: (index, first LBA, last LBA).
    fn used(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        self.entries
            .chunks_exact(self.entry_size())
            .enumerate()
            .filter(|(_, e)| e[TYPE_GUID].iter().any(|b| *b != 0))
            .map(|(i, e)| (i, le_u64(e, FIRST_LBA), le_u64(e, LAST_LBA)))
    }

    /// LBAs the entry array takes.
    fn entry_lbas(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(self.sector)
    }

    /// Grows the partition that starts at LBA `first` and has `lbas` LBAs up to the next
    /// partition or the last usable LBA of a disk of `disk_lbas` LBAs (the backup GPT moving
    /// to its end), when that adds at least `min_lbas`. `None`: it already fills its space.
    pub fn grow(
        &mut self,
        first: u64,
        lbas: u64,
        disk_lbas: u64,
        min_lbas: u64,
    ) -> Result<Option<Grown>, TableError> {
        let last = first
            .checked_add(lbas)
            .and_then(|end| end.checked_sub(1))
            .filter(|_| lbas > 0)
            .ok_or_else(|| TableError::invalid(format!("a partition of {lbas} LBAs at {first}")))?;
        let index = self
            .used()
            .find(|&(_, f, l)| f == first && l == last)
            .map(|(i, ..)| i)
            .ok_or_else(|| {
                TableError::invalid(format!(
                    "no GPT entry from LBA {first} to {last}, where the kernel has the partition"
                ))
            })?;
        let alternate = disk_lbas
            .checked_sub(1)
            .filter(|a| *a > self.entry_lbas() + 2)
            .ok_or_else(|| TableError::invalid(format!("a disk of {disk_lbas} LBAs")))?;
        let last_usable = alternate - self.entry_lbas() - 1;
        let old_last_usable = le_u64(&self.header, LAST_USABLE);
        if last_usable < old_last_usable {
            return Err(TableError::invalid(format!(
                "the GPT's last usable LBA {old_last_usable} is beyond the disk's end \
                 (LBA {alternate}): a disk smaller than its table"
            )));
        }
        let next = self
            .used()
            .filter(|&(i, f, _)| i != index && f > last)
            .map(|(_, f, _)| f - 1)
            .min();
        let new_last = next.map_or(last_usable, |n| n.min(last_usable));
        if new_last < last || new_last - last < min_lbas {
            return Ok(None);
        }
        let size = self.entry_size();
        put_u64(&mut self.entries, index * size + LAST_LBA, new_last);
        let entries_crc = crc(&self.entries);
        put_u32(&mut self.header, ENTRIES_CRC, entries_crc);
        put_u64(&mut self.header, ALTERNATE_LBA, alternate);
        put_u64(&mut self.header, LAST_USABLE, last_usable);
        seal(&mut self.header);
        Ok(Some(Grown {
            from: lbas * self.sector,
            to: (new_last - first + 1) * self.sector,
        }))
    }

    /// The backup header: the primary's with the two LBAs swapped and the entries just before
    /// it.
    fn backup_header(&self) -> Vec<u8> {
        let mut header = self.header.clone();
        let alternate = le_u64(&header, ALTERNATE_LBA);
        put_u64(&mut header, MY_LBA, alternate);
        put_u64(&mut header, ALTERNATE_LBA, 1);
        put_u64(&mut header, ENTRIES_LBA, alternate - self.entry_lbas());
        seal(&mut header);
        header
    }

    /// Writes the table to `disk`: the backup first (entries, then header) and synced, then the
    /// protective MBR and the primary (entries, then header), synced. A write cut short leaves
    /// one complete table whose checksums hold, which partitioning tools recover from.
    pub fn write(&self, disk: &File) -> Result<(), TableError> {
        let backup = self.backup_header();
        let alternate = le_u64(&self.header, ALTERNATE_LBA);
        let at = |lba: u64| lba * self.sector;
        let write = |what: &'static str, bytes: &[u8], offset: u64| {
            disk.write_all_at(bytes, offset)
                .map_err(|e| TableError::io(what, e))
        };
        let sync = || {
            disk.sync_data()
                .map_err(|e| TableError::io("sync the disk", e))
        };
        write(
            "write the backup GPT entries",
            &self.entries,
            at(le_u64(&backup, ENTRIES_LBA)),
        )?;
        write(
            "write the backup GPT header",
            &padded(&backup, self.sector),
            at(alternate),
        )?;
        sync()?;
        self.update_protective_mbr(disk, alternate)?;
        write(
            "write the GPT entries",
            &self.entries,
            at(le_u64(&self.header, ENTRIES_LBA)),
        )?;
        write(
            "write the GPT header",
            &padded(&self.header, self.sector),
            at(1),
        )?;
        sync()
    }

    /// The protective MBR's 0xEE entry covers the disk up to its new end (as far as 32 bits
    /// count), as partitioning tools keep it; an MBR without one (a hybrid) is left alone.
    fn update_protective_mbr(&self, disk: &File, alternate: u64) -> Result<(), TableError> {
        let mut mbr = [0; super::mbr::SECTOR_BYTES];
        disk.read_exact_at(&mut mbr, 0)
            .map_err(|e| TableError::io("read the protective MBR", e))?;
        if mbr[510..] != super::mbr::BOOT_SIGNATURE {
            return Ok(());
        }
        let protective: Vec<usize> = (0..4)
            .map(|i| super::mbr::ENTRIES + i * super::mbr::ENTRY_BYTES)
            .filter(|&e| mbr[e + super::mbr::TYPE] == PROTECTIVE_TYPE)
            .collect();
        let [entry] = protective[..] else {
            return Ok(());
        };
        if le_u32(&mbr, entry + super::mbr::START) != 1 {
            return Ok(());
        }
        let size = u32::try_from(alternate).unwrap_or(u32::MAX);
        put_u32(&mut mbr, entry + super::mbr::SIZE, size);
        disk.write_all_at(&mbr, 0)
            .map_err(|e| TableError::io("write the protective MBR", e))
    }
}

/// The CRC-32 the UEFI specification uses (IEEE 802.3, as zlib's).
fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The header's checksum: over its bytes with the checksum field zeroed.
fn header_crc(header: &[u8]) -> u32 {
    let mut copy = header.to_vec();
    put_u32(&mut copy, HEADER_CRC, 0);
    crc(&copy)
}

/// Sets the header's checksum.
fn seal(header: &mut [u8]) {
    let sum = header_crc(header);
    put_u32(header, HEADER_CRC, sum);
}

/// A header padded with zeros to a whole LBA (the rest of its LBA is reserved, zero).
fn padded(header: &[u8], sector: u64) -> Vec<u8> {
    let mut block = header.to_vec();
    block.resize(sector as usize, 0);
    block
}

fn to_usize(sector: u64) -> Result<usize, TableError> {
    usize::try_from(sector)
        .ok()
        .filter(|s| (512..=65536).contains(s) && s.is_power_of_two())
        .ok_or_else(|| TableError::invalid(format!("a logical block size of {sector} bytes")))
}

#[cfg(test)]
mod tests;
