//! Guests: what QEMU boots (a kernel and an initramfs, or a cloud image's disk through an
//! overlay; a state disk; a NIC on a lab tap) and the running VM, started by the harness or by
//! libvirt.

pub mod domain;
pub mod firewalld;
pub mod libvirt;
pub mod libvirt_network;
pub mod libvirtd;
pub mod qemu;
pub mod serial;
pub mod virt_install;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::image::Image;
use crate::process::check;

/// The kernel command line of the tiny image: serial console; on panic, exit at once (with
/// `-no-reboot`) instead of hanging until a timeout; `no_timer_check`, because under TCG on a
/// busy host the kernel's early test of the timer interrupt can miss its ticks and panic with
/// "IO-APIC + timer doesn't work!" before /init runs (as virtualised guests are told to skip it);
/// [`KERNEL_LOGLEVEL`].
///
/// The harness gives it at each boot (QEMU's `-append`, the domain's `<cmdline>`): it is no
/// input of the image's cache key.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 no_timer_check loglevel=4";

/// The kernel's console log level on the tiny image's command line: only errors and worse
/// (a panic's message among them) reach the serial console, as with `quiet`. The kernel writes
/// to the UART at any moment; its notices and warnings (a driver probing, a late module) would
/// otherwise land in the middle of a `metaboot-tiny: ` marker line /init is printing, and the
/// marker would never be seen whole.
pub const KERNEL_LOGLEVEL: &str = "loglevel=4";

/// Memory per guest: the tiny initramfs needs about 20 MB; the cloud kernel wants room for it.
pub const MEMORY_MB: u32 = 256;

/// Memory per guest booting a distribution from its disk: a Debian cloud image with
/// cloud-init (Python) runs in 1 GiB (spec: lab.md).
pub const DISK_MEMORY_MB: u32 = 1024;

/// Size of a guest's persistent state disk.
pub const STATE_DISK_MB: u32 = 16;

/// Where QEMU is.
pub const QEMU_BIN: &str = "qemu-system-x86_64";

/// What starts a guest's QEMU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The harness runs QEMU itself, in the NIC's namespace.
    #[default]
    Qemu,
    /// A real libvirtd (see [`libvirtd::Libvirtd`]) runs it as a transient domain made from
    /// the same guest description (`virsh create`).
    Libvirt,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Qemu => "qemu",
            Via::Libvirt => "libvirt",
        })
    }
}

/// The guest's NIC: a tap on a lab bridge, inside the lab's bridge namespace.
#[derive(Debug, Clone)]
pub struct Nic {
    /// Namespace that holds the tap (QEMU runs inside it).
    pub netns: String,
    /// The tap's name.
    pub tap: String,
    /// The port's MAC.
    pub mac: String,
}

/// Where the guest's randomness comes from (the kernel otherwise waits for entropy and
/// dropbear's first login stalls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entropy {
    /// `-cpu max`: RDRAND.
    CpuMax,
    /// A virtio-rng device fed from the host's /dev/urandom.
    VirtioRng,
}

/// How a guest starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and the initramfs itself (the tiny image): no firmware, no
    /// bootloader.
    Kernel {
        /// The kernel.
        kernel: PathBuf,
        /// The initramfs.
        initrd: PathBuf,
        /// Kernel command line.
        cmdline: String,
    },
    /// Firmware (SeaBIOS) → the bootloader on the disk → its kernel, as a cloud image boots.
    /// The disk is a copy-on-write overlay (see [`make_overlay`]): the image behind it is
    /// never written.
    Disk {
        /// The overlay QEMU opens (qcow2).
        overlay: PathBuf,
    },
}

/// A guest to boot, built step by step.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Name (QEMU's `-name`, libvirt's domain name).
    pub name: String,
    /// Kernel and initramfs, or a bootable disk.
    pub boot: Boot,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Further disks (raw), attached with virtio-blk in this order after the boot disk (a
    /// tiny guest's state disk; a cloud image guest's ephemeral and data disks).
    pub disks: Vec<PathBuf>,
    /// A config drive (a `config-2` ISO 9660 image), attached read-only as a second virtio disk.
    pub config_drive: Option<PathBuf>,
    /// Network interface.
    pub nic: Option<Nic>,
    /// Entropy source.
    pub entropy: Entropy,
    /// Serial console log.
    pub serial_log: PathBuf,
}

impl Guest {
    /// A guest booting `image` directly (no bootloader), logging its console to `serial_log`.
    pub fn new(name: &str, image: &Image, serial_log: &Path) -> Self {
        Self {
            name: name.to_owned(),
            boot: Boot::Kernel {
                kernel: image.kernel.clone(),
                initrd: image.initrd.clone(),
                cmdline: KERNEL_CMDLINE.to_owned(),
            },
            memory_mb: MEMORY_MB,
            disks: Vec::new(),
            config_drive: None,
            nic: None,
            entropy: Entropy::CpuMax,
            serial_log: serial_log.to_owned(),
        }
    }

    /// A guest booting from the disk `overlay` (made by [`make_overlay`]) through its firmware
    /// and bootloader, with the memory a distribution needs.
    pub fn from_disk(name: &str, overlay: &Path, serial_log: &Path) -> Self {
        Self {
            name: name.to_owned(),
            boot: Boot::Disk {
                overlay: overlay.to_owned(),
            },
            memory_mb: DISK_MEMORY_MB,
            disks: Vec::new(),
            config_drive: None,
            nic: None,
            entropy: Entropy::CpuMax,
            serial_log: serial_log.to_owned(),
        }
    }

    /// Appends `arg` to the kernel command line of a direct kernel boot (a disk's bootloader
    /// has its own command line: nothing changes then).
    pub fn add_kernel_arg(&mut self, arg: &str) {
        if let Boot::Kernel { cmdline, .. } = &mut self.boot {
            cmdline.push(' ');
            cmdline.push_str(arg);
        }
    }

    /// Attaches a disk after the ones attached before.
    pub fn with_disk(mut self, disk: &Path) -> Self {
        self.disks.push(disk.to_owned());
        self
    }

    /// Attaches a config drive.
    pub fn with_config_drive(mut self, image: &Path) -> Self {
        self.config_drive = Some(image.to_owned());
        self
    }

    /// Attaches a NIC on a tap.
    pub fn with_nic(mut self, nic: Nic) -> Self {
        self.nic = Some(nic);
        self
    }

    /// Chooses the entropy source.
    pub fn with_entropy(mut self, entropy: Entropy) -> Self {
        self.entropy = entropy;
        self
    }

    /// Sets the memory.
    pub fn with_memory_mb(mut self, memory_mb: u32) -> Self {
        self.memory_mb = memory_mb;
        self
    }
}

/// Makes an empty ext4 disk image of [`STATE_DISK_MB`] (no root, no loop mount).
pub fn make_state_disk(path: &Path) -> anyhow::Result<()> {
    check(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "metaboot-state", "-E", "root_owner=0:0"])
            .arg(path)
            .arg(format!("{STATE_DISK_MB}M")),
    )
    .with_context(|| format!("failed to make the state disk {}", path.display()))?;
    Ok(())
}

/// Makes `path` an ephemeral disk as nova makes one for a flavour with ephemeral storage: a raw
/// file of `bytes`, formatted ext4 and labelled `ephemeral0` (cloud-init's `mounts` default
/// mounts it on `/mnt`, metaboot's too).
pub fn make_ephemeral_disk(path: &Path, bytes: u64) -> anyhow::Result<()> {
    make_blank_disk(path, bytes)?;
    check(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", EPHEMERAL_LABEL])
            .arg(path),
    )
    .with_context(|| {
        format!(
            "failed to format {} (is e2fsprogs installed?)",
            path.display()
        )
    })?;
    Ok(())
}

/// Creates `path` as a blank raw disk of `bytes` bytes (sparse: it costs nothing until written),
/// as a volume attached to an instance is before anything formats it.
pub fn make_blank_disk(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .with_context(|| format!("failed to create {}", path.display()))
}

/// The label nova gives an instance's ephemeral disk.
pub const EPHEMERAL_LABEL: &str = "ephemeral0";

/// Names [`make_overlay`] tries for one overlay (`overlay.qcow2`, `overlay-1.qcow2`, …) before
/// it gives up: a run directory reused that many times.
pub const MAX_OVERLAY_NAMES: u32 = 1000;

/// Makes a qcow2 whose backing file is the disk image `base` (of `format`, e.g. `qcow2` or
/// `raw`) and returns its path: `wanted`, or, when a file is there, the first free
/// `<stem>-N.<ext>` beside it. The guest writes only to the overlay, and `base` stays as it is.
/// The guest's disk is `growth` bytes larger than the image (a flavour's root disk larger than
/// the image, as nova makes it); 0 keeps the image's size.
///
/// No file is ever removed or overwritten: in a reused run directory the file at `wanted` may
/// be the very image being booted (`run --image <run-dir>/<guest>/overlay.qcow2`), or a kept
/// overlay that another image uses as its backing file.
pub fn make_overlay(
    base: &Path,
    format: &str,
    wanted: &Path,
    growth: u64,
) -> anyhow::Result<PathBuf> {
    // The overlay records the path of its backing file: the real file, absolute, so that it
    // opens from anywhere and stays on this base when a symbolic link on the way (the image
    // cache's `debian-metaboot`, the newest) is pointed at another image later.
    let base = std::fs::canonicalize(base)
        .with_context(|| format!("failed to resolve {} (is it there?)", base.display()))?;
    let overlay = reserve_new_file(wanted)?;
    let made = write_overlay(&base, format, &overlay, growth);
    if made.is_err() {
        // The file is ours: created empty above.
        let _ = std::fs::remove_file(&overlay);
    }
    made.map(|()| overlay)
}

/// Creates the first of `wanted`, `<stem>-1.<ext>`, … that does not exist yet (`O_EXCL`: a
/// file, or a link, already there is left as it is) and returns its path.
fn reserve_new_file(wanted: &Path) -> anyhow::Result<PathBuf> {
    let stem = wanted.file_stem().unwrap_or_default().to_string_lossy();
    let ext = wanted
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    for n in 0..MAX_OVERLAY_NAMES {
        let path = if n == 0 {
            wanted.to_owned()
        } else {
            wanted.with_file_name(format!("{stem}-{n}{ext}"))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(err).with_context(|| format!("failed to create {}", path.display()));
            }
        }
    }
    anyhow::bail!(
        "{} and {} further names beside it are taken: remove the overlays of old runs from {}, \
         or give another --run-dir",
        wanted.display(),
        MAX_OVERLAY_NAMES - 1,
        wanted.parent().unwrap_or(Path::new(".")).display()
    )
}

/// `qemu-img create` of `overlay` (a file of ours) on `base`, then `growth` bytes more.
fn write_overlay(base: &Path, format: &str, overlay: &Path, growth: u64) -> anyhow::Result<()> {
    check(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
            .arg(base)
            .arg(overlay),
    )
    .with_context(|| {
        format!(
            "failed to make an overlay of {} (is qemu-utils installed?)",
            base.display()
        )
    })?;
    if growth > 0 {
        check(
            Command::new("qemu-img")
                .args(["resize", "-q"])
                .arg(overlay)
                .arg(format!("+{growth}")),
        )
        .with_context(|| format!("failed to enlarge the overlay {}", overlay.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only errors and worse reach the tiny guest's console.
    #[test]
    fn the_tiny_kernel_prints_only_errors_on_the_console() {
        let words: Vec<&str> = KERNEL_CMDLINE.split(' ').collect();
        assert!(words.contains(&KERNEL_LOGLEVEL), "{KERNEL_CMDLINE}");
        assert!(
            !words.contains(&"quiet") && !words.contains(&"debug"),
            "{KERNEL_CMDLINE}"
        );
        let level: u8 = KERNEL_LOGLEVEL
            .strip_prefix("loglevel=")
            .and_then(|l| l.parse().ok())
            .unwrap();
        // KERN_ERR is 3: printed when below the level. KERN_WARNING (4) and up are not.
        assert_eq!(level, 4);
    }

    /// Whether qemu-img is installed; in CI its absence fails the test, elsewhere it skips.
    fn qemu_img_here() -> bool {
        crate::process::tool_for_test("qemu-img", "scripts/install-lab-deps installs qemu-utils")
    }

    /// The overlay's backing file is the real file, not the link it was named through.
    #[test]
    fn an_overlay_is_made_on_the_real_file_behind_links() {
        if !qemu_img_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image_dir = dir.path().join("debian-metaboot-0123");
        std::fs::create_dir(&image_dir).unwrap();
        let base = image_dir.join("disk.qcow2");
        check(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&base)
                .arg("1M"),
        )
        .unwrap();
        let newest = dir.path().join("debian-metaboot");
        std::os::unix::fs::symlink("debian-metaboot-0123", &newest).unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        assert_eq!(
            make_overlay(&newest.join("disk.qcow2"), "qcow2", &overlay, 0).unwrap(),
            overlay
        );
        let info = check(
            Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(&overlay),
        )
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        let real = std::fs::canonicalize(&base).unwrap();
        assert_eq!(info["backing-filename"], real.display().to_string());
        let err = make_overlay(&dir.path().join("gone.qcow2"), "qcow2", &overlay, 0).unwrap_err();
        assert!(
            format!("{err:#}").contains("gone.qcow2 (is it there?)"),
            "{err:#}"
        );
    }

    /// The bytes and the inode of `path`.
    fn identity(path: &Path) -> (Vec<u8>, u64) {
        use std::os::unix::fs::MetadataExt;
        (
            std::fs::read(path).unwrap(),
            std::fs::metadata(path).unwrap().ino(),
        )
    }

    /// A reused run directory: the image booted is the overlay an earlier run left at the very
    /// path the new overlay wants (`run --image X/isolated-overlay/overlay.qcow2 --run-dir X`),
    /// and a kept overlay is the backing file of another image. Neither is removed or written:
    /// the new overlay gets a fresh name.
    #[test]
    fn an_overlay_never_replaces_a_file_at_its_path() {
        if !qemu_img_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        check(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&base)
                .arg("1M"),
        )
        .unwrap();
        let wanted = dir.path().join("isolated-overlay/overlay.qcow2");
        std::fs::create_dir(wanted.parent().unwrap()).unwrap();
        // The kept overlay, booted as the user's own image.
        assert_eq!(make_overlay(&base, "qcow2", &wanted, 0).unwrap(), wanted);
        let before = identity(&wanted);
        let made = make_overlay(&wanted, "qcow2", &wanted, 1 << 20).unwrap();
        assert_eq!(made, dir.path().join("isolated-overlay/overlay-1.qcow2"));
        assert_eq!(identity(&wanted), before, "the image booted is untouched");
        let info = check(
            Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(&made),
        )
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["backing-filename"], wanted.display().to_string());
        assert_eq!(info["virtual-size"], 2 << 20);
        // Run again: the two overlays stay, a third is made.
        let third = make_overlay(&base, "qcow2", &wanted, 0).unwrap();
        assert_eq!(third, dir.path().join("isolated-overlay/overlay-2.qcow2"));
        assert_eq!(identity(&wanted), before);
        // A failed qemu-img leaves nothing of its own behind.
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not an image").unwrap();
        make_overlay(&text, "qcow2", &wanted, 0).unwrap_err();
        assert!(!dir.path().join("isolated-overlay/overlay-3.qcow2").exists());
    }

    #[test]
    fn overlay_names_run_out_with_a_message_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = dir.path().join("overlay.qcow2");
        assert_eq!(reserve_new_file(&wanted).unwrap(), wanted);
        for n in 1..MAX_OVERLAY_NAMES {
            let next = reserve_new_file(&wanted).unwrap();
            assert_eq!(next, dir.path().join(format!("overlay-{n}.qcow2")));
        }
        let err = reserve_new_file(&wanted).unwrap_err().to_string();
        assert!(
            err.contains("remove the overlays of old runs") && err.contains("--run-dir"),
            "{err}"
        );
        // A dangling link is a name taken too: nothing is created through it.
        let other = tempfile::tempdir().unwrap();
        let link = other.path().join("overlay.qcow2");
        std::os::unix::fs::symlink(other.path().join("elsewhere"), &link).unwrap();
        assert_eq!(
            reserve_new_file(&link).unwrap(),
            other.path().join("overlay-1.qcow2")
        );
        assert!(!other.path().join("elsewhere").exists());
    }
}
