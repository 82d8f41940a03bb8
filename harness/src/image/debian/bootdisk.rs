//! A bootable disk from a root directory, laid out as Debian's cloud images are: GPT with a
//! BIOS boot partition (14) for GRUB's core image and the ext4 root (1); the root file system
//! filled from the directory without mounting it; GRUB installed from the image itself
//! through a loop device; converted to qcow2.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::loopdev::LoopDevice;
use super::namespaces::{Network, unshare};
use crate::process::describe;
use crate::step::run_logged;

/// The disk size the guest sees (Debian's genericcloud images are 2 GiB too).
pub const DISK_BYTES: u64 = 2 << 30;

/// Bytes per sector.
pub const SECTOR: u64 = 512;

/// Partitions start on 1 MiB boundaries.
pub const ALIGN_SECTORS: u64 = 2048;

/// The BIOS boot partition: GRUB embeds its core image there (a GPT disk has no gap after
/// the boot sector).
pub const BIOS_PARTITION: u32 = 14;
/// Its first sector.
pub const BIOS_START: u64 = 2048;
/// Its size, 3 MiB as on Debian's images.
pub const BIOS_SECTORS: u64 = 6144;

/// The root partition.
pub const ROOT_PARTITION: u32 = 1;
/// Its first sector (4 MiB).
pub const ROOT_START: u64 = 8192;

/// Sectors the backup GPT takes at the end of the disk (header and 128 entries).
pub const GPT_BACKUP_SECTORS: u64 = 33;

/// GPT partition type of a BIOS boot partition.
pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT partition type of a Linux file system.
pub const LINUX_FS_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// Deadline of a disk step (partitioning, mkfs, GRUB, conversion): seconds each, normally.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(600);

// The layout holds together: partitions aligned, apart, and inside the disk.
const _: () = {
    assert!(ROOT_START.is_multiple_of(ALIGN_SECTORS) && BIOS_START.is_multiple_of(ALIGN_SECTORS));
    assert!(BIOS_START + BIOS_SECTORS <= ROOT_START);
    assert!(root_sectors().is_multiple_of(ALIGN_SECTORS));
    // The last sector of the root comes before the backup GPT.
    assert!(ROOT_START + root_sectors() < DISK_BYTES / SECTOR - GPT_BACKUP_SECTORS);
};

/// The root partition's size in sectors: the rest of the disk before the backup GPT, aligned.
pub const fn root_sectors() -> u64 {
    let last_usable = DISK_BYTES / SECTOR - GPT_BACKUP_SECTORS - 1;
    (last_usable + 1 - ROOT_START) / ALIGN_SECTORS * ALIGN_SECTORS
}

/// How this module makes a disk, as inputs of the image's cache key (see
/// [`super::recipe::BuilderInput`]): the layout, the partition table with its partition types,
/// the fstab, mkfs.ext4's command line with its configuration, and qemu-img's conversion.
pub fn key_inputs() -> Vec<super::recipe::BuilderInput> {
    let mkfs = mkfs(
        Path::new(MKE2FS_CONFIG),
        Path::new("ROOT"),
        Path::new("DISK"),
        "UUID",
    );
    let env: Vec<String> = mkfs
        .get_envs()
        .map(|(k, v)| {
            let v = v.map(|v| v.to_string_lossy()).unwrap_or_default();
            format!("{}={v}", k.to_string_lossy())
        })
        .collect();
    vec![
        ("disk-layout", layout()),
        ("disk:partitions", sfdisk_script()),
        ("disk:fstab", fstab("UUID")),
        (
            "disk:mkfs.ext4",
            format!("{} {}", env.join(" "), describe(&mkfs)),
        ),
        ("disk:qemu-img", QCOW2_CONVERT.join(" ")),
    ]
}

/// qemu-img's arguments converting the raw disk to the image (before the two files).
pub const QCOW2_CONVERT: [&str; 5] = ["convert", "-f", "raw", "-O", "qcow2"];

/// A one-line description of the layout (an input of the image's cache key).
pub fn layout() -> String {
    format!(
        "gpt {DISK_BYTES} bytes; bios boot {BIOS_PARTITION} at {BIOS_START}+{BIOS_SECTORS}; \
         ext4 root {ROOT_PARTITION} at {ROOT_START}+{}",
        root_sectors()
    )
}

/// The sfdisk script of the layout. Each partition line is named by its number alone: sfdisk
/// takes the digits at the end of a line's name as the partition's number, and splits the line
/// at its first colon, so the disk's path (which may hold one) is not written.
pub fn sfdisk_script() -> String {
    format!(
        "label: gpt\nunit: sectors\n\n\
         {ROOT_PARTITION} : start={ROOT_START}, size={}, type={LINUX_FS_TYPE}, name=\"root\"\n\
         {BIOS_PARTITION} : start={BIOS_START}, size={BIOS_SECTORS}, type={BIOS_BOOT_TYPE}, name=\"bios\"\n",
        root_sectors()
    )
}

/// The root's `/etc/fstab`: the root file system by UUID, as Debian's images mount it.
pub fn fstab(uuid: &str) -> String {
    format!(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n\
         UUID={uuid} / ext4 rw,discard,errors=remount-ro 0 1\n"
    )
}

/// A random (version 4) UUID for the root file system.
pub fn random_uuid() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("failed to get random bytes: {e}"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Where a disk is made.
#[derive(Debug, Clone, Copy)]
pub struct DiskWork<'a> {
    /// The finished root directory (its /etc/fstab is written here).
    pub root: &'a Path,
    /// A scratch directory on the same file system as `out` (the raw disk goes there).
    pub work: &'a Path,
    /// Where `bootloader.sh` and `chroot.sh` are.
    pub scripts: &'a Path,
    /// The qcow2 to write.
    pub out: &'a Path,
    /// The build log.
    pub log: &'a Path,
}

/// The image's own mkfs.ext4 configuration, relative to its root (e2fsprogs ships it): the
/// file system gets the features the image's tools (its GRUB, its e2fsck) know, not those a
/// newer host's mkfs.ext4 turns on by default.
pub const MKE2FS_CONFIG: &str = "etc/mke2fs.conf";

/// mkfs.ext4 making the root file system with the defaults of `config` (the image's
/// [`MKE2FS_CONFIG`]), filled from the directory `root` straight into the partition's place
/// in the disk file `raw`: no loop device, no mount; owners, modes, links and extended
/// attributes kept.
pub fn mkfs(config: &Path, root: &Path, raw: &Path, uuid: &str) -> Command {
    let mut cmd = Command::new("mkfs.ext4");
    cmd.env("MKE2FS_CONFIG", config)
        .args(["-q", "-F", "-L", "root", "-U", uuid])
        .arg("-E")
        .arg(format!("offset={}", ROOT_START * SECTOR))
        .arg("-d")
        .arg(root)
        .arg(raw)
        .arg(format!("{}k", root_sectors() * SECTOR / 1024));
    cmd
}

/// Makes the bootable qcow2 `w.out` from the root directory `w.root`.
pub fn make(w: &DiskWork<'_>) -> anyhow::Result<()> {
    let raw = w.work.join("disk.raw");
    let file =
        fs::File::create(&raw).with_context(|| format!("failed to create {}", raw.display()))?;
    // Sparse: only what mkfs and GRUB write takes space.
    file.set_len(DISK_BYTES)
        .with_context(|| format!("failed to size {}", raw.display()))?;
    drop(file);

    let script = w.work.join("partitions.sfdisk");
    fs::write(&script, sfdisk_script())
        .with_context(|| format!("failed to write {}", script.display()))?;
    run_logged(
        "sfdisk (the GPT partition table)",
        Command::new("sh")
            .args([
                "-c",
                "exec sfdisk --quiet --no-reread --no-tell-kernel \"$1\" < \"$2\"",
            ])
            .arg("sfdisk")
            .arg(&raw)
            .arg(&script),
        STEP_TIMEOUT,
        w.log,
    )?;

    let uuid = random_uuid()?;
    let fstab_path = w.root.join("etc/fstab");
    fs::write(&fstab_path, fstab(&uuid))
        .with_context(|| format!("failed to write {}", fstab_path.display()))?;
    let config = w.root.join(MKE2FS_CONFIG);
    if !config.is_file() {
        bail!(
            "the image's root has no /{MKE2FS_CONFIG}, which mkfs.ext4 takes its defaults from \
             (is e2fsprogs in images/debian/packages?)"
        );
    }
    run_logged(
        "mkfs.ext4 (the root file system)",
        &mut mkfs(&config, w.root, &raw, &uuid),
        STEP_TIMEOUT,
        w.log,
    )?;

    let mnt = w.work.join("mnt");
    fs::create_dir_all(&mnt).with_context(|| format!("failed to create {}", mnt.display()))?;
    let disk = LoopDevice::attach(&raw, &[ROOT_PARTITION])?;
    run_logged(
        "GRUB (grub-install and update-grub in the image)",
        unshare(Network::None)
            .arg("sh")
            .arg(w.scripts.join("bootloader.sh"))
            .arg(disk.device())
            .arg(disk.partition(ROOT_PARTITION))
            .arg(&mnt),
        STEP_TIMEOUT,
        w.log,
    )?;
    drop(disk);

    run_logged(
        "qemu-img convert (raw to qcow2)",
        Command::new("qemu-img")
            .args(QCOW2_CONVERT)
            .arg(&raw)
            .arg(w.out),
        STEP_TIMEOUT,
        w.log,
    )?;
    fs::remove_file(&raw).with_context(|| format!("failed to remove {}", raw.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_fits_the_disk_and_aligns() {
        // The numbers themselves are checked at compile time (the `const _` block); here, what
        // they come to: a 2 GiB disk has a root of 2 GiB less 4 MiB in front and the
        // alignment at the end.
        assert_eq!(
            root_sectors(),
            DISK_BYTES / SECTOR - ROOT_START - ALIGN_SECTORS
        );
        let script = sfdisk_script();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[..3], ["label: gpt", "unit: sectors", ""], "{script}");
        assert!(lines[3].starts_with("1 : start=8192, size="), "{script}");
        assert!(
            lines[4].starts_with("14 : start=2048, size=6144, type=21686148"),
            "{script}"
        );
        // No line names a device: the path of the disk (a colon in it) is not in the script.
        assert!(
            lines[3..].iter().all(|l| l.matches(':').count() == 1),
            "{script}"
        );
        assert!(layout().contains("bios boot 14"));
    }

    #[test]
    fn uuids_are_random_version_4() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
        assert!(fstab(&a).contains(&format!("UUID={a} / ext4 ")));
    }

    /// The real tools: a partitioned disk file that sfdisk reads back as laid out, and a root
    /// file system mkfs.ext4 fills at the partition's offset (no root needed for either). The
    /// disk's path has a colon, as a cache directory may: sfdisk splits a line at the first.
    #[test]
    fn sfdisk_and_mkfs_make_the_layout_in_a_file() {
        for tool in ["sfdisk", "mkfs.ext4", "debugfs"] {
            let found = ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file());
            if !found {
                let why = format!("{tool} is missing (scripts/install-lab-deps installs it)");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipped: {why}");
                return;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hostname"), "debian\n").unwrap();
        // The root's own defaults, not the host's: 128-byte inodes (the host's are 256).
        fs::write(
            root.join(MKE2FS_CONFIG),
            "[defaults]\n\tbase_features = sparse_super,large_file,filetype,dir_index\n\
             \tinode_size = 128\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent\n\
             \t\tinode_size = 128\n\t}\n",
        )
        .unwrap();
        let raw = dir.path().join("cache:2").join("disk.raw");
        fs::create_dir(raw.parent().unwrap()).unwrap();
        fs::File::create(&raw).unwrap().set_len(DISK_BYTES).unwrap();
        let script = dir.path().join("s");
        fs::write(&script, sfdisk_script()).unwrap();
        let log = dir.path().join("log");
        run_logged(
            "sfdisk",
            Command::new("sh")
                .args([
                    "-c",
                    "exec sfdisk --quiet --no-reread --no-tell-kernel \"$1\" < \"$2\"",
                ])
                .arg("sfdisk")
                .arg(&raw)
                .arg(&script),
            STEP_TIMEOUT,
            &log,
        )
        .unwrap();
        let dump = crate::process::check(Command::new("sfdisk").arg("--dump").arg(&raw)).unwrap();
        assert!(dump.contains("label: gpt"), "{dump}");
        assert!(
            dump.contains(&format!(
                "{}{ROOT_PARTITION} : start=        {ROOT_START}, size=     {}",
                raw.display(),
                root_sectors()
            )),
            "{dump}"
        );
        assert!(
            dump.contains(&format!(
                "{}{BIOS_PARTITION} : start=        {BIOS_START}, size=        {BIOS_SECTORS}",
                raw.display()
            )),
            "{dump}"
        );
        let uuid = random_uuid().unwrap();
        run_logged(
            "mkfs",
            &mut mkfs(&root.join(MKE2FS_CONFIG), &root, &raw, &uuid),
            STEP_TIMEOUT,
            &log,
        )
        .unwrap();
        let spec = format!("{}?offset={}", raw.display(), ROOT_START * SECTOR);
        let stats = crate::process::check(Command::new("debugfs").args(["-R", "stats"]).arg(&spec))
            .unwrap();
        let inode_size = stats
            .lines()
            .find_map(|l| l.strip_prefix("Inode size:"))
            .map(str::trim);
        assert_eq!(inode_size, Some("128"), "the root's mke2fs.conf: {stats}");
        assert!(stats.contains(&uuid), "{stats}");
        let out = crate::process::check(
            Command::new("debugfs")
                .args(["-R", "cat /etc/hostname"])
                .arg(&spec),
        )
        .unwrap();
        assert_eq!(out, "debian\n");
        // mkfs left the partition table alone.
        let again = crate::process::check(Command::new("sfdisk").arg("--dump").arg(&raw)).unwrap();
        assert_eq!(again, dump);
    }
}
