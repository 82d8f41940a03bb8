//! Bring your own image: `metaboot-harness run --image FILE` boots any cloud image that runs
//! cloud-init or metaboot (a distribution's "genericcloud" qcow2, one of ours) on a lab
//! network through the chain, on a copy-on-write overlay (the file is never written), and
//! checks it from outside like the built images.
//!
//! The file is looked at before anything starts: a missing file or one that is not a disk
//! image is refused with one line (the CLI exits 2). `qemu-img info` names the format; raw
//! data passes only with a boot sector, since qemu-img calls any file raw. An image with a
//! backing file is opened with its whole chain, one file at a time (a missing backing file is
//! refused here, not when the overlay is made), and an encrypted one is refused (the harness
//! has no key to give QEMU). So is one whose chain would have QEMU, which runs as root, open
//! anything but plain qcow2 and raw image files ([`layer`]): a device, a protocol, a `json:`
//! spec, a data file, a VMDK's extents. qemu-img runs as root too, and some opens a qcow2's
//! data file even for `info`: each file's qcow2 header is read first ([`header`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

mod header;
mod layer;

use super::spec::CloudImageGuest;
use crate::guest::Via;
use crate::scenario::matrix::MetadataPath;

/// The default user `--user` names unless told: Debian's cloud images' (Ubuntu's is `ubuntu`).
pub const DEFAULT_USER: &str = "debian";

/// Deadline of `qemu-img info`.
pub const INFO_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a BIOS boot sector (an MBR, or a GPT disk's protective MBR) has its signature.
pub const BOOT_SIGNATURE_OFFSET: usize = 510;

/// The signature bytes.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// Why a file cannot be booted as a cloud image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Nothing at the path.
    #[error("{}: no such file", .0.display())]
    Missing(PathBuf),
    /// A directory or a device.
    #[error("{}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// qemu-img could not open it (a damaged image, not a format it knows).
    #[error("{}: not a disk image qemu-img can open: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// qemu-img's first line.
        reason: String,
    },
    /// The image opens, but a file of its backing chain does not.
    #[error(
        "{}: its backing file {backing} cannot be opened: {reason} (put it back, or point the \
         image at its copy with `qemu-img rebase -u -b FILE`)",
        path.display()
    )]
    Backing {
        /// The file.
        path: PathBuf,
        /// Its backing file, as the image names it.
        backing: String,
        /// qemu-img's first line.
        reason: String,
    },
    /// Its data (or a backing file's) is encrypted.
    #[error(
        "{}: an encrypted image (QEMU would need its key, which the harness cannot give): \
         boot a decrypted copy (`qemu-img convert --object secret,… -O qcow2`)",
        .0.display()
    )]
    Encrypted(PathBuf),
    /// Raw data without a boot sector, or an image of no size.
    #[error("{}: not a disk image: {why}", path.display())]
    NotADisk {
        /// The file.
        path: PathBuf,
        /// What qemu-img or the first sector showed.
        why: String,
    },
    /// Booting it would have QEMU (root, unsandboxed) open a file that is no plain image
    /// file, and give the guest its contents.
    #[error("{}: {why}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Which file of its chain, and why.
        why: layer::Refusal,
    },
    /// The tool itself failed.
    #[error("failed to run qemu-img (scripts/install-lab-deps installs qemu-utils)")]
    QemuImg(#[source] anyhow::Error),
}

impl ImageError {
    /// True when the input is at fault (the CLI exits 2), not the machine.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ImageError::QemuImg(_))
    }
}

/// What `qemu-img info` says of an image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    /// Its format (`qcow2`, `raw`, `vmdk`, …), as QEMU names it.
    pub format: String,
    /// The size the guest sees.
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    /// Its backing file, absolute, if it has one.
    #[serde(rename = "full-backing-filename", default)]
    pub full_backing: Option<String>,
    /// Its backing file as the image names it (relative to the image's directory).
    #[serde(rename = "backing-filename", default)]
    pub backing: Option<String>,
    /// The format its backing file is opened in, when it records one (else QEMU probes).
    #[serde(rename = "backing-filename-format", default)]
    pub backing_format: Option<String>,
    /// Whether its data is encrypted (LUKS or the old AES qcow2).
    #[serde(default)]
    pub encrypted: bool,
    /// What only its format has (a qcow2's `data-file`, a VMDK's `extents`).
    #[serde(rename = "format-specific", default)]
    pub format_specific: Option<serde_json::Value>,
    /// The files of its backing chain below it, as QEMU opens them, nearest first (filled by
    /// [`inspect`]): a run holds them too.
    #[serde(skip)]
    pub backing_files: Vec<PathBuf>,
}

/// Looks at `path` without changing it: a regular file that qemu-img opens as a disk image,
/// whose backing chain QEMU can open without reaching any file but plain image files (see
/// [`layer`]). Looked at as the real file behind `path` ([`resolve`]), which the overlay is
/// made on: a backing file named relative to it is found where QEMU will look.
pub fn inspect(path: &Path) -> Result<ImageInfo, ImageError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::Missing(path.to_owned()));
        }
        Err(err) => {
            return Err(ImageError::Unreadable {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
    };
    if !meta.is_file() {
        return Err(ImageError::NotAFile(path.to_owned()));
    }
    // An absolute path: `-x.qcow2` is no option, `a:b.qcow2` no protocol (as the overlay
    // names its backing file).
    let real = real_file(path)?;
    let unreadable = |reason: String| ImageError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let refuse = |why: layer::Refusal| ImageError::Unsafe {
        path: path.to_owned(),
        why,
    };
    header::check(&real)
        .map_err(|err| unreadable(err.to_string()))?
        .map_err(refuse)?;
    let out = qemu_img_info(&real, None)?.map_err(unreadable)?;
    let mut info: ImageInfo = serde_json::from_slice(&out)
        .map_err(|e| unreadable(format!("unexpected qemu-img output: {e}")))?;
    safe_layer(path, &real, &info)?;
    if info.virtual_size == 0 {
        return Err(ImageError::NotADisk {
            path: path.to_owned(),
            why: "it is empty".into(),
        });
    }
    if info.format == "raw" && !has_boot_sector(path) {
        return Err(ImageError::NotADisk {
            path: path.to_owned(),
            why: format!(
                "qemu-img sees raw data with no boot sector (no 55 AA at byte \
                 {BOOT_SIGNATURE_OFFSET})"
            ),
        });
    }
    info.backing_files = backing_chain(path, &real, &info)?;
    Ok(info)
}

/// The files below the image `real` (`top` is what qemu-img said of it), nearest first, each
/// looked at before the next is opened: a plain regular file (no device, protocol or `json:`
/// spec), of a format its parent records (or qemu-img finds) among
/// [`layer::BOOTABLE_FORMATS`], with no data file (unless opened as raw, its qcow2 header is
/// read before qemu-img opens it), not encrypted, raw only with a boot sector.
fn backing_chain(path: &Path, real: &Path, top: &ImageInfo) -> Result<Vec<PathBuf>, ImageError> {
    let refuse = |why: layer::Refusal| ImageError::Unsafe {
        path: path.to_owned(),
        why,
    };
    let mut files = Vec::new();
    let (mut file, mut info) = (real.to_owned(), top.clone());
    while let Some(name) = info.backing.clone().or(info.full_backing.clone()) {
        if files.len() == layer::MAX_BACKING_FILES {
            return Err(refuse(layer::Refusal::TooLong));
        }
        let below =
            layer::backing_path(&file, &name, info.full_backing.as_deref()).map_err(refuse)?;
        let cannot_open = |reason: String| ImageError::Backing {
            path: path.to_owned(),
            backing: below.display().to_string(),
            reason,
        };
        // Followed through symbolic links, as QEMU opens it.
        let meta = std::fs::metadata(&below).map_err(|err| cannot_open(err.to_string()))?;
        if !meta.is_file() {
            return Err(refuse(layer::Refusal::NotAPlainFile {
                backing: name,
                what: "not a regular file (a device, a directory, a pipe)",
            }));
        }
        // As QEMU opens it: in the format its parent records, else the one it finds.
        if let Some(format) = &info.backing_format {
            layer::bootable_format(&below, format).map_err(refuse)?;
        }
        // Opened as raw, a qcow2 header is only data.
        if info.backing_format.as_deref() != Some("raw") {
            header::check(&below)
                .map_err(|err| cannot_open(err.to_string()))?
                .map_err(refuse)?;
        }
        let out = qemu_img_info(&below, info.backing_format.as_deref())?.map_err(cannot_open)?;
        let next: ImageInfo = serde_json::from_slice(&out)
            .map_err(|e| cannot_open(format!("unexpected qemu-img output: {e}")))?;
        safe_layer(path, &below, &next)?;
        if next.format == "raw" && !has_boot_sector(&below) {
            return Err(ImageError::NotADisk {
                path: path.to_owned(),
                why: format!(
                    "its backing file {} is raw data with no boot sector (no 55 AA at byte \
                     {BOOT_SIGNATURE_OFFSET})",
                    below.display()
                ),
            });
        }
        files.push(below.clone());
        (file, info) = (below, next);
    }
    Ok(files)
}

/// Refuses the file `file` of `path`'s chain (`info` is what qemu-img said of it) when its
/// format is not one QEMU may open for the harness, it names a data file, or it is encrypted.
fn safe_layer(path: &Path, file: &Path, info: &ImageInfo) -> Result<(), ImageError> {
    let refuse = |why: layer::Refusal| ImageError::Unsafe {
        path: path.to_owned(),
        why,
    };
    if info.encrypted || info.format == "luks" {
        return Err(ImageError::Encrypted(path.to_owned()));
    }
    layer::bootable_format(file, &info.format).map_err(refuse)?;
    layer::no_data_file(file, info.format_specific.as_ref()).map_err(refuse)
}

/// `qemu-img info --output=json` of `file` (absolute; opened as `format` when given, else
/// probed): its output, or qemu-img's first line when it cannot open the file. It opens no
/// backing file; a qemu-img without the fix for CVE-2024-4467 (QEMU before 9.0.2, unless the
/// distribution backported it) opens a qcow2's data file, so the caller reads the header first
/// ([`header::check`]).
fn qemu_img_info(file: &Path, format: Option<&str>) -> Result<Result<Vec<u8>, String>, ImageError> {
    // --force-share: a guest that has the image open (read-only, as a backing file) holds
    // QEMU's lock on it; reading its header is still safe.
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--force-share", "--output=json"]);
    if let Some(format) = format {
        cmd.args(["-f", format]);
    }
    cmd.arg(file);
    let out =
        crate::process::output_with_timeout(&mut cmd, INFO_TIMEOUT).map_err(ImageError::QemuImg)?;
    if out.status.success() {
        return Ok(Ok(out.stdout));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .trim_start_matches("qemu-img: ")
        .to_owned();
    Ok(Err(reason))
}

/// The real file behind `path`: absolute, no symbolic link on the way.
fn real_file(path: &Path) -> Result<PathBuf, ImageError> {
    std::fs::canonicalize(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => ImageError::Missing(path.to_owned()),
        _ => ImageError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        },
    })
}

/// The real file behind `path` (absolute, no symbolic link on the way), which the guest's
/// overlay is made on: a link pointed elsewhere later (the image cache's
/// `debian-metaboot/disk.qcow2`, the newest build) leaves the run on the image it looked at. A
/// built image's disk has its directory held for this process, as a run of the built images
/// holds it ([`in_use`](crate::image::in_use)): no build's prune removes it under the guest.
pub fn resolve(path: &Path) -> Result<PathBuf, ImageError> {
    let real = real_file(path)?;
    hold_if_built(&real);
    Ok(real)
}

/// Holds the directory of the built image whose disk `file` (a real path) is, if it is one's,
/// for this process: the image booted, or a file of its backing chain (a kept overlay's base).
pub fn hold_if_built(file: &Path) {
    if let Some(dir) = built_image_dir(file) {
        // Best effort: a directory that is not a complete image is only not held.
        let _ = crate::image::disk::DiskImage::open(dir);
    }
}

/// The image directory `disk` is the disk of, if it is a built image's (`<dir>/disk.qcow2`
/// beside a manifest).
fn built_image_dir(disk: &Path) -> Option<&Path> {
    let dir = disk.parent()?;
    (disk.file_name()? == crate::image::disk::DISK && dir.join(crate::image::MANIFEST).is_file())
        .then_some(dir)
}

/// Whether the file starts with a sector a BIOS would boot (MBR or GPT's protective MBR).
fn has_boot_sector(path: &Path) -> bool {
    let mut sector = [0u8; BOOT_SIGNATURE_OFFSET + 2];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut sector))
        .is_ok_and(|()| sector[BOOT_SIGNATURE_OFFSET..] == BOOT_SIGNATURE)
}

/// What `run --image` boots.
#[derive(Debug, Clone)]
pub struct OwnImage {
    /// The image file (never written), as [`resolve`] found it: the real file.
    pub image: PathBuf,
    /// The path it was given by, which names it in reports.
    pub given: PathBuf,
    /// What [`inspect`] found.
    pub info: ImageInfo,
    /// The default user, who gets the instance's key.
    pub user: String,
    /// The network it boots on.
    pub path: MetadataPath,
    /// Who starts its QEMU.
    pub via: Via,
    /// How long until the first key login.
    pub boot_timeout: Duration,
}

impl OwnImage {
    /// The guest to boot: its provisioner is found over SSH after the first login.
    pub fn guest(&self) -> CloudImageGuest {
        CloudImageGuest {
            name: format!("{}/{}", self.path.name(), name_of(&self.given)),
            image: self.image.clone(),
            format: self.info.format.clone(),
            provisioner: None,
            default_user: self.user.clone(),
            path: self.path,
            via: self.via,
            boot_timeout: self.boot_timeout,
            disk_growth: super::spec::FLAVOUR_DISK_GROWTH,
            // A user's image is checked without it: its store's rebuild takes a minute under
            // emulation, for cloud-init as for metaboot.
            trust_ca: false,
            reboot_once: false,
            mounts: false,
            apt_package: None,
            locale: false,
            keys_elsewhere: false,
            ntp: false,
            disable_metadata: false,
            rsyslog: false,
            bootcmd: false,
            disk_setup: false,
        }
    }
}

/// Most characters of the name an image gets in reports.
pub const MAX_NAME_CHARS: usize = 40;

/// File names that say nothing of the image (`…/debian-cloud-init/disk.qcow2`): the
/// directory's name is used with them.
pub const GENERIC_NAMES: [&str; 4] = ["disk", "image", "root", "rootfs"];

/// The image's name in reports: its file name without extension, or the directory's name with
/// a [`GENERIC_NAMES`] one.
fn name_of(image: &Path) -> String {
    let part = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().into_owned());
    let stem = part(image.file_stem()).unwrap_or_default();
    if GENERIC_NAMES.contains(&stem.as_str())
        && let Some(dir) = part(image.parent().and_then(Path::file_name))
    {
        return slug(&dir);
    }
    slug(&stem)
}

/// A file name as a report and instance name: letters, digits and dashes.
fn slug(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "image".into()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests;
