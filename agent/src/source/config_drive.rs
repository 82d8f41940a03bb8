//! The OpenStack config drive: a block device labelled `config-2` (iso9660 or vfat), found by
//! reading filesystem labels directly (the tiny image has no blkid or udev), mounted read-only,
//! read in the `openstack/latest/…` layout (resolved inside the drive: its symlinks never lead
//! out of it), unmounted when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};

use super::http::{MAX_METADATA_BYTES, MAX_USER_DATA_BYTES};
use super::{Source, SourceError};
use crate::fsutil::PathError;
use crate::root::Root;

/// The label nova gives a config drive (vfat may store it upper-case).
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// Block devices, under the root.
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// Where the drive is mounted, under the root.
pub const MOUNT_POINT: &str = "/run/metaboot/config-drive";
/// Most block devices probed.
pub const MAX_PROBED_DEVICES: usize = 128;
/// Bytes read from a device to find its label: the iso9660 primary volume descriptor ends at
/// 32 KiB + 2 KiB.
pub const PROBE_BYTES: usize = 34 * 1024;

/// The filesystem of a config drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Iso9660,
    Vfat,
}

impl FsType {
    /// The name mount(2) wants.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Iso9660 => "iso9660",
            FsType::Vfat => "vfat",
        }
    }
}

fn label(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

/// The filesystem type and label in the first [`PROBE_BYTES`] of a device, if it is iso9660 or
/// FAT.
pub fn probe_label(head: &[u8]) -> Option<(FsType, String)> {
    // iso9660: primary volume descriptor at sector 16, volume id at offset 40 (32 bytes).
    let pvd = head.get(32 * 1024..32 * 1024 + 72)?;
    if pvd[0] == 1 && &pvd[1..6] == b"CD001" {
        return Some((FsType::Iso9660, label(&pvd[40..72])));
    }
    None.or_else(|| {
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
    })
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

/// The first block device under the root labelled `config-2`: `(device path, filesystem)`.
pub fn find(root: &Root) -> Option<(PathBuf, FsType)> {
    let mut names: Vec<std::ffi::OsString> = root
        .dir_optional(SYS_CLASS_BLOCK)
        .ok()??
        .entries()
        .ok()?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.truncate(MAX_PROBED_DEVICES);
    names.into_iter().find_map(|name| {
        let device = Path::new("/dev").join(&name);
        let (fs, label) = probe_device(root, &device)?;
        let device = root.host_path(&device);
        tracing::debug!(device = %device.display(), label, "probed");
        label
            .eq_ignore_ascii_case(CONFIG_DRIVE_LABEL)
            .then_some((device, fs))
    })
}

/// A config drive's contents (a mounted device or a plain directory).
#[derive(Debug)]
pub struct ConfigDrive {
    dir: PathBuf,
    mounted: bool,
}

impl ConfigDrive {
    /// A drive already available as a directory (`openstack/latest/…` inside).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        ConfigDrive {
            dir: dir.into(),
            mounted: false,
        }
    }

    /// Mounts `device` read-only at the root's [`MOUNT_POINT`] (a directory made, or checked
    /// not to be a symlink, through the root's descriptor; mount(2) then takes its path, in
    /// directories only root can change).
    pub fn mount(root: &Root, device: &Path, fs: FsType) -> Result<Self, SourceError> {
        let target = root.host_path(MOUNT_POINT);
        let fail = |source| SourceError::Mount {
            device: device.display().to_string(),
            target: target.clone(),
            source,
        };
        root.ensure_dir(MOUNT_POINT, 0o755, None)
            .map_err(PathError::fail("create", &target))?;
        nix::mount::mount(
            Some(device),
            &target,
            Some(fs.name()),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(fail)?;
        tracing::info!(device = %device.display(), fs = fs.name(), "config drive mounted");
        Ok(ConfigDrive {
            dir: target,
            mounted: true,
        })
    }

    fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let inside = Path::new("openstack/latest").join(name);
        let path = self.dir.join(&inside);
        let opened = Root::open(&self.dir).and_then(|drive| {
            drive.open_file(&inside, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0, true, false)
        });
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PathError::fail("read", path)(source).into()),
        };
        let mut data = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut data)
            .map_err(PathError::fail("read", &path))?;
        if data.len() as u64 > limit {
            return Err(SourceError::TooLarge { path, limit });
        }
        Ok(Some(data))
    }
}

impl Drop for ConfigDrive {
    fn drop(&mut self) {
        if self.mounted
            && let Err(err) = nix::mount::umount2(&self.dir, MntFlags::MNT_DETACH)
        {
            tracing::warn!(dir = %self.dir.display(), %err, "failed to unmount the config drive");
        }
    }
}

impl Source for ConfigDrive {
    fn name(&self) -> &'static str {
        "config-drive"
    }

    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError> {
        self.read("meta_data.json", MAX_METADATA_BYTES)?
            .ok_or_else(|| {
                SourceError::MissingMetaData(
                    self.dir.join("openstack/latest").display().to_string(),
                )
            })
    }

    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.read("user_data", MAX_USER_DATA_BYTES)
    }

    fn vendor_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.read("vendor_data.json", MAX_METADATA_BYTES)
    }

    fn vendor_data2(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.read("vendor_data2.json", MAX_METADATA_BYTES)
    }

    fn network_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        self.read("network_data.json", MAX_METADATA_BYTES)
    }
}

#[cfg(test)]
mod tests;
