use std::fs::File;

use super::super::tests::{MIB, enlarge, partitioned, sfdisk_reads, sfdisk_verify};
use super::*;

const SECTOR: u64 = 512;

fn open(disk: &std::path::Path) -> File {
    File::options().read(true).write(true).open(disk).unwrap()
}

#[test]
fn the_last_primary_partition_grows_to_the_disks_end() {
    let Some((_dir, disk)) = partitioned(
        32 * MIB,
        "label: dos\nstart=2048, size=20480\nstart=22528\n",
    ) else {
        return;
    };
    let (parts, _) = sfdisk_reads(&disk);
    let &(_, start, size) = parts.iter().find(|(n, ..)| *n == 2).unwrap();
    enlarge(&disk, 64 * MIB);
    let file = open(&disk);
    let mut mbr = Mbr::read(&file).unwrap().unwrap();
    assert!(!mbr.is_protective());
    let disk_lbas = 64 * MIB / SECTOR;
    let grown = mbr
        .grow(2, start, size, disk_lbas, 2048, SECTOR)
        .unwrap()
        .unwrap();
    assert_eq!(
        grown,
        Grown {
            from: size * SECTOR,
            to: (disk_lbas - start) * SECTOR
        }
    );
    mbr.write(&file).unwrap();
    let (parts, _) = sfdisk_reads(&disk);
    assert_eq!(parts, vec![(1, 2048, 20480), (2, start, disk_lbas - start)]);
    let (ok, said) = sfdisk_verify(&disk);
    assert!(ok, "{said}");
}

#[test]
fn a_partition_grows_up_to_the_next_one_and_a_full_one_stays() {
    let Some((_dir, disk)) =
        partitioned(32 * MIB, "label: dos\nstart=2048, size=8192\nstart=30720\n")
    else {
        return;
    };
    let file = open(&disk);
    let mut mbr = Mbr::read(&file).unwrap().unwrap();
    let disk_lbas = 32 * MIB / SECTOR;
    let grown = mbr
        .grow(1, 2048, 8192, disk_lbas, 2048, SECTOR)
        .unwrap()
        .unwrap();
    assert_eq!(grown.to, (30720 - 2048) * SECTOR);
    mbr.write(&file).unwrap();
    assert_eq!(sfdisk_reads(&disk).0[0], (1, 2048, 30720 - 2048));
    assert!(sfdisk_verify(&disk).0);
    let mut again = Mbr::read(&file).unwrap().unwrap();
    assert_eq!(
        again
            .grow(1, 2048, 30720 - 2048, disk_lbas, 2048, SECTOR)
            .unwrap(),
        None
    );
}

#[test]
fn logical_and_unknown_partitions_are_refused() {
    let Some((_dir, disk)) = partitioned(32 * MIB, "label: dos\nstart=2048, size=8192\n") else {
        return;
    };
    let mut mbr = Mbr::read(&open(&disk)).unwrap().unwrap();
    let err = mbr.grow(5, 2048, 8192, 65536, 2048, SECTOR).unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition 5 is a logical partition: only primary partitions (1-4) are grown"
    );
    let err = mbr.grow(1, 4096, 8192, 65536, 2048, SECTOR).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MBR entry 1 is not the partition the kernel has at LBA 4096 (8192 LBAs)"
    );
}

#[test]
fn a_gpt_disks_mbr_is_protective() {
    let Some((_dir, disk)) = partitioned(8 * MIB, "label: gpt\nstart=2048\n") else {
        return;
    };
    assert!(Mbr::read(&open(&disk)).unwrap().unwrap().is_protective());
}

#[test]
fn chs_addresses_are_those_partitioning_tools_write() {
    // The familiar `20 21 00` of a partition starting at 1 MiB.
    assert_eq!(chs(2048), [0x20, 0x21, 0x00]);
    assert_eq!(chs(0), [0, 1, 0]);
    // The last address CHS can hold, and one past it.
    assert_eq!(chs(1024 * 255 * 63 - 1), [0xfe, 0xff, 0xff]);
    assert_eq!(chs(1024 * 255 * 63), CHS_BEYOND);
}

#[test]
fn an_mbr_has_four_primary_entries() {
    assert_eq!(MAX_PRIMARY, 4);
    assert_eq!(ENTRIES + 4 * ENTRY_BYTES, 510);
}
