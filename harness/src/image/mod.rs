//! Guest images: recipes under `images/`, built from Debian packages, cached by input hash:
//! the tiny image (a kernel and an initramfs for QEMU's direct kernel boot) and the Debian
//! cloud images (bootable qcow2 disks, see [`debian`]).

pub mod cache;
pub mod cpio;
pub mod debian;
pub mod disk;
pub mod in_use;
pub mod leftovers;
pub mod modules;
pub mod output;
pub mod packages;
pub mod tiny;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The kernel's file name in an image directory.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs's file name in an image directory.
pub const INITRD: &str = "initrd.img";
/// The manifest's file name; written last, so its presence marks a complete image.
pub const MANIFEST: &str = "manifest.json";

/// What an image was built from, stored next to it. `Default` is an empty one, for tests that
/// need an image's record but no build.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The recipe (`tiny`).
    pub kind: String,
    /// The input hash the directory is named after.
    pub key: String,
    /// Every input with a short digest.
    pub inputs: Vec<String>,
    /// The Debian packages, `name=version`.
    pub packages: Vec<String>,
    /// Kernel modules in load order.
    pub modules: Vec<String>,
    /// The kernel file the package shipped (`vmlinuz-6.1.0-…-cloud-amd64`).
    pub kernel_file: String,
    /// Size of the kernel (absent in manifests from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_bytes: Option<u64>,
    /// Size of the gzipped initramfs.
    pub initrd_bytes: u64,
    /// Size of the files inside it.
    pub content_bytes: u64,
    /// How long the build took.
    pub build_seconds: f64,
}

/// A built image: a kernel and an initramfs for QEMU's direct kernel boot.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image directory.
    pub dir: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// What it was built from.
    pub manifest: Manifest,
    /// True when an existing image was reused instead of built.
    pub cached: bool,
}

impl Image {
    /// Opens a complete image directory, which this process then uses until it exits (see
    /// [`in_use`]).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        // Before reading it: a prune that removes it meanwhile fails to lock it.
        let held = in_use::hold(dir)?;
        let image = Self::read(dir)?;
        held.keep();
        Ok(image)
    }

    /// Whether `dir` holds a complete image: a manifest that parses, the kernel and the
    /// initramfs of the sizes it records (read without holding it).
    pub fn is_complete(dir: &Path) -> bool {
        Self::read(dir).is_ok()
    }

    fn read(dir: &Path) -> anyhow::Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let text = fs::read_to_string(&manifest_path)
            .with_context(|| format!("failed to read {}", manifest_path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("failed to parse {}", manifest_path.display()))?;
        let image = Self {
            dir: dir.to_owned(),
            kernel: dir.join(KERNEL),
            initrd: dir.join(INITRD),
            manifest,
            cached: false,
        };
        let recorded = [
            (&image.kernel, image.manifest.kernel_bytes),
            (&image.initrd, Some(image.manifest.initrd_bytes)),
        ];
        for (file, bytes) in recorded {
            let Some(found) = fs::metadata(file)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
            else {
                anyhow::bail!(
                    "image {} is incomplete: {} is missing",
                    dir.display(),
                    file.display()
                );
            };
            // A file cut short (a power loss before it reached the disk) is not reused.
            if let Some(bytes) = bytes.filter(|&bytes| bytes != found) {
                anyhow::bail!(
                    "image {} is incomplete: {} has {found} bytes where its manifest records \
                     {bytes} (the next build makes it anew)",
                    dir.display(),
                    file.display()
                );
            }
        }
        Ok(image)
    }
}
