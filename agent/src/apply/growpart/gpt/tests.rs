use std::fs::File;
use std::os::unix::fs::FileExt;

use super::super::tests::{MIB, enlarge, partitioned, sfdisk_reads, sfdisk_verify};
use super::*;

const SECTOR: u64 = 512;

/// Debian's cloud image layout, scaled down: BIOS boot partition 14, then the root, 1, to the
/// end of the disk.
fn debian_layout(bytes: u64) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    partitioned(
        bytes,
        "label: gpt\nunit: sectors\n\
         1 : start=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
         14 : start=2048, size=6144, type=21686148-6449-6E6F-744E-656564454649\n",
    )
}

fn open(disk: &std::path::Path) -> File {
    File::options().read(true).write(true).open(disk).unwrap()
}

fn root_of(disk: &std::path::Path) -> (u64, u64) {
    let (parts, _) = sfdisk_reads(disk);
    let &(_, start, size) = parts.iter().find(|(n, ..)| *n == 1).unwrap();
    (start, size)
}

#[test]
fn the_root_grows_to_the_disks_new_end_and_the_backup_table_moves_there() {
    let Some((_dir, disk)) = debian_layout(64 * MIB) else {
        return;
    };
    let (start, size) = root_of(&disk);
    enlarge(&disk, 128 * MIB);
    let (ok, said) = sfdisk_verify(&disk);
    assert!(
        !ok,
        "a grown disk's backup GPT is where the disk ended before: {said}"
    );

    let file = open(&disk);
    let mut gpt = Gpt::read(&file, SECTOR).unwrap().unwrap();
    let disk_lbas = 128 * MIB / SECTOR;
    let grown = gpt.grow(start, size, disk_lbas, 2048).unwrap().unwrap();
    gpt.write(&file).unwrap();

    // 128 entries of 128 bytes: 32 sectors, then the header in the last one.
    let last_usable = disk_lbas - 1 - 32 - 1;
    assert_eq!(
        grown,
        Grown {
            from: size * SECTOR,
            to: (last_usable - start + 1) * SECTOR
        }
    );
    let (parts, lastlba) = sfdisk_reads(&disk);
    assert_eq!(lastlba, Some(last_usable));
    assert!(
        parts.contains(&(1, start, last_usable - start + 1)),
        "{parts:?}"
    );
    assert!(
        parts.contains(&(14, 2048, 6144)),
        "the other partition is as it was: {parts:?}"
    );
    let (ok, said) = sfdisk_verify(&disk);
    assert!(ok, "sfdisk --verify: {said}");

    // The protective MBR covers the new disk.
    let mut mbr = [0; 512];
    file.read_exact_at(&mut mbr, 0).unwrap();
    assert_eq!(u64::from(le_u32(&mbr, 446 + 12)), disk_lbas - 1);
    // And a second pass finds nothing more to do.
    let mut again = Gpt::read(&file, SECTOR).unwrap().unwrap();
    assert_eq!(
        again
            .grow(start, last_usable - start + 1, disk_lbas, 2048)
            .unwrap(),
        None
    );
}

#[test]
fn a_partition_grows_up_to_the_next_one() {
    let Some((_dir, disk)) = partitioned(
        64 * MIB,
        "label: gpt\nunit: sectors\nstart=2048, size=20480\nstart=40960, size=8192\n",
    ) else {
        return;
    };
    enlarge(&disk, 96 * MIB);
    let file = open(&disk);
    let mut gpt = Gpt::read(&file, SECTOR).unwrap().unwrap();
    let grown = gpt
        .grow(2048, 20480, 96 * MIB / SECTOR, 2048)
        .unwrap()
        .unwrap();
    assert_eq!(grown.to, (40960 - 2048) * SECTOR);
    gpt.write(&file).unwrap();
    let (parts, _) = sfdisk_reads(&disk);
    assert_eq!(parts, vec![(1, 2048, 40960 - 2048), (2, 40960, 8192)]);
    assert!(sfdisk_verify(&disk).0);
}

#[test]
fn a_partition_that_fills_its_space_is_left_alone() {
    // The root up to the last usable LBA (a 64 MiB disk's, before its 33-sector backup table).
    let last_usable = 64 * MIB / SECTOR - 34;
    let Some((_dir, disk)) = partitioned(
        64 * MIB,
        &format!(
            "label: gpt\nunit: sectors\nstart=8192, size={}\n",
            last_usable - 8192 + 1
        ),
    ) else {
        return;
    };
    let (start, size) = root_of(&disk);
    assert_eq!(start + size - 1, last_usable);
    let before = std::fs::read(&disk).unwrap();
    let file = open(&disk);
    let mut gpt = Gpt::read(&file, SECTOR).unwrap().unwrap();
    assert_eq!(
        gpt.grow(start, size, 64 * MIB / SECTOR, 2048).unwrap(),
        None
    );
    // Less than the least growth after it: left alone too.
    enlarge(&disk, 64 * MIB + 512 * 1024);
    let mut gpt = Gpt::read(&file, SECTOR).unwrap().unwrap();
    let disk_lbas = (64 * MIB + 512 * 1024) / SECTOR;
    assert_eq!(gpt.grow(start, size, disk_lbas, 2048).unwrap(), None);
    assert_eq!(std::fs::read(&disk).unwrap()[..before.len()], before[..]);
}

#[test]
fn a_damaged_table_or_an_unknown_partition_is_refused_and_nothing_written() {
    let Some((_dir, disk)) = debian_layout(64 * MIB) else {
        return;
    };
    let (start, size) = root_of(&disk);
    enlarge(&disk, 128 * MIB);
    let file = open(&disk);
    let disk_lbas = 128 * MIB / SECTOR;

    let mut gpt = Gpt::read(&file, SECTOR).unwrap().unwrap();
    let err = gpt.grow(start + 1, size, disk_lbas, 2048).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no GPT entry from LBA {} to {}, where the kernel has the partition",
            start + 1,
            start + size
        )
    );

    // One flipped bit in an entry: the entries' checksum no longer holds.
    let before = std::fs::read(&disk).unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, 2 * SECTOR + 60).unwrap();
    file.write_all_at(&[byte[0] ^ 1], 2 * SECTOR + 60).unwrap();
    let err = Gpt::read(&file, SECTOR).unwrap_err();
    assert_eq!(err.to_string(), "the GPT entries' checksum is wrong");
    file.write_all_at(&byte, 2 * SECTOR + 60).unwrap();
    // In the header: its own checksum.
    file.write_all_at(&[0xff], SECTOR + 48).unwrap();
    let err = Gpt::read(&file, SECTOR).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the primary GPT header's checksum is wrong"
    );
    file.write_all_at(&before[(SECTOR + 48) as usize..][..1], SECTOR + 48)
        .unwrap();
    assert_eq!(std::fs::read(&disk).unwrap(), before);
}

#[test]
fn a_disk_without_a_gpt_signature_has_no_gpt() {
    let Some((_dir, disk)) = partitioned(8 * MIB, "label: dos\nstart=2048\n") else {
        return;
    };
    assert!(Gpt::read(&open(&disk), SECTOR).unwrap().is_none());
}

#[test]
fn a_disk_smaller_than_its_table_is_refused() {
    let Some((_dir, disk)) = debian_layout(64 * MIB) else {
        return;
    };
    let (start, size) = root_of(&disk);
    let mut gpt = Gpt::read(&open(&disk), SECTOR).unwrap().unwrap();
    let err = gpt.grow(start, size, 32 * MIB / SECTOR, 2048).unwrap_err();
    assert!(
        err.to_string().contains("a disk smaller than its table"),
        "{err}"
    );
}

#[test]
fn the_entries_read_are_bounded() {
    assert_eq!(MAX_ENTRIES_BYTES, 1 << 20);
}

mod malformed {
    use proptest::prelude::*;

    use super::*;

    /// The first 34 sectors of a Debian layout's 64 MiB disk (protective MBR, header,
    /// entries), made once.
    fn pristine() -> Option<Vec<u8>> {
        static TABLE: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                let (_dir, disk) = debian_layout(64 * MIB)?;
                Some(std::fs::read(&disk).unwrap()[..34 * 512].to_vec())
            })
            .clone()
    }

    /// Sets the header's and the entries' checksums to match what is there, so that a
    /// mutation reaches the code behind the checksum checks.
    fn reseal(table: &mut [u8]) {
        let header = &mut table[512..1024];
        let size = (le_u32(header, HEADER_SIZE) as usize).clamp(HEADER_MIN_BYTES, 512);
        let count = le_u32(header, ENTRY_COUNT) as usize;
        let entry = le_u32(header, ENTRY_SIZE) as usize;
        let bytes = count.saturating_mul(entry).min(32 * 512);
        let entries_crc = crc(&table[1024..1024 + bytes]);
        let header = &mut table[512..1024];
        put_u32(header, ENTRIES_CRC, entries_crc);
        seal(&mut header[..size]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the header and entries say, reading and growing answers with a table or
        /// an error, never a panic, and writes only what a grown table holds.
        #[test]
        fn a_mutated_table_is_read_or_refused(
            edits in proptest::collection::vec((512usize..34 * 512, any::<u8>()), 1..8),
            disk_mib in 1u64..256,
            lbas in 0u64..200_000,
        ) {
            let Some(mut table) = pristine() else { return Ok(()) };
            for (at, byte) in edits {
                table[at] = byte;
            }
            reseal(&mut table);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("disk.img");
            std::fs::write(&path, &table).unwrap();
            File::options().write(true).open(&path).unwrap().set_len(disk_mib * MIB).unwrap();
            let file = open(&path);
            if let Ok(Some(mut gpt)) = Gpt::read(&file, SECTOR)
                && let Ok(Some(_)) = gpt.grow(8192, lbas, disk_mib * MIB / SECTOR, 2048)
            {
                let _ = gpt.write(&file);
            }
        }
    }
}
