//! Disk images: a bootable qcow2 disk (firmware → bootloader → kernel), as a downloaded cloud
//! image is, with the manifest of what it was built from.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::MANIFEST;

/// The disk's file name in an image directory.
pub const DISK: &str = "disk.qcow2";

/// What provisions a guest of the image at boot (and so what the checks ask for its verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provisioner {
    /// Stock cloud-init: `cloud-init status --long`.
    CloudInit,
    /// The guest agent: `metaboot status`.
    Metaboot,
}

impl Provisioner {
    /// The command that prints its verdict (exit 0 when provisioning is done without errors).
    pub fn status_command(self) -> &'static str {
        match self {
            Provisioner::CloudInit => "cloud-init status --long",
            Provisioner::Metaboot => "metaboot status",
        }
    }
}

/// What a disk image was built from, stored next to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskManifest {
    /// The image (`debian-cloud-init`, `debian-metaboot`).
    pub kind: String,
    /// The input hash the directory is named after.
    pub key: String,
    /// Every input with a short digest.
    pub inputs: Vec<String>,
    /// What provisions its guests.
    pub provisioner: Provisioner,
    /// The user that gets the instance's SSH keys (cloud images' "default user").
    pub default_user: String,
    /// The installed packages, `name=version`.
    pub packages: Vec<String>,
    /// The kernel release (`6.1.0-57-cloud-amd64`).
    pub kernel: String,
    /// Size of the qcow2 file.
    pub disk_bytes: u64,
    /// Size the guest sees.
    pub virtual_bytes: u64,
    /// Size of the files in the root file system.
    pub root_bytes: u64,
    /// Whether the shared root came from the cache (no mmdebstrap run).
    pub rootfs_cached: bool,
    /// How long the build took.
    pub build_seconds: f64,
}

/// A built disk image.
#[derive(Debug, Clone)]
pub struct DiskImage {
    /// The image directory.
    pub dir: PathBuf,
    /// The qcow2 disk (never written to: guests boot a copy-on-write overlay of it).
    pub disk: PathBuf,
    /// What it was built from.
    pub manifest: DiskManifest,
    /// True when an existing image was reused instead of built.
    pub cached: bool,
}

impl DiskImage {
    /// Opens a complete image directory (its manifest is written last), which this process
    /// then uses until it exits (see [`super::in_use`]).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        // Before reading it: a prune that removes it meanwhile fails to lock it.
        let held = super::in_use::hold(dir)?;
        let image = Self::read(dir)?;
        held.keep();
        Ok(image)
    }

    /// Whether `dir` holds a complete image: a manifest that parses and the disk of the size
    /// it records (read without holding it).
    pub fn is_complete(dir: &Path) -> bool {
        Self::read(dir).is_ok()
    }

    fn read(dir: &Path) -> anyhow::Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let text = fs::read_to_string(&manifest_path)
            .with_context(|| format!("failed to read {}", manifest_path.display()))?;
        let manifest: DiskManifest = serde_json::from_str(&text)
            .with_context(|| format!("failed to parse {}", manifest_path.display()))?;
        let disk = dir.join(DISK);
        let Some(bytes) = fs::metadata(&disk)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
        else {
            anyhow::bail!(
                "image {} is incomplete: {} is missing",
                dir.display(),
                disk.display()
            );
        };
        // A disk torn or cut short (a copy, a full file system) is not reused.
        if bytes != manifest.disk_bytes {
            anyhow::bail!(
                "image {} is incomplete: {} has {bytes} bytes where its manifest records {} \
                 (the next build makes it anew)",
                dir.display(),
                disk.display(),
                manifest.disk_bytes
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            disk,
            manifest,
            cached: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_opens_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskImage::open(dir.path()).is_err());
        let manifest = DiskManifest {
            kind: "debian-metaboot".into(),
            key: "0123".into(),
            inputs: vec![],
            provisioner: Provisioner::Metaboot,
            default_user: "debian".into(),
            packages: vec!["sudo=1.9".into()],
            kernel: "6.1.0-57-cloud-amd64".into(),
            disk_bytes: 3,
            virtual_bytes: 2,
            root_bytes: 3,
            rootfs_cached: true,
            build_seconds: 4.0,
        };
        fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let err = DiskImage::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
        // Cut short, or grown: not the disk the manifest describes.
        for torn in [&b"QF"[..], b"QFI\xfb"] {
            fs::write(dir.path().join(DISK), torn).unwrap();
            let err = DiskImage::open(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("incomplete") && err.contains("records 3"),
                "{err}"
            );
            assert!(!DiskImage::is_complete(dir.path()));
        }
        fs::write(dir.path().join(DISK), b"QFI").unwrap();
        assert!(DiskImage::is_complete(dir.path()));
        let image = DiskImage::open(dir.path()).unwrap();
        assert_eq!(image.manifest.provisioner, Provisioner::Metaboot);
        assert_eq!(
            serde_json::to_value(Provisioner::CloudInit).unwrap(),
            "cloud-init"
        );
        assert_eq!(
            Provisioner::CloudInit.status_command(),
            "cloud-init status --long"
        );
    }
}
