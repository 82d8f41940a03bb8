//! A disk image file attached as a loop device with its partitions, detached when dropped
//! (also when the build fails), and the detaching of loop devices a killed build left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::check;
use crate::wait::wait_until;

/// How long the partition nodes (`/dev/loopNpM`) may take to appear.
pub const PARTITION_TIMEOUT: Duration = Duration::from_secs(10);

/// An attached loop device; `losetup --detach` on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: PathBuf,
}

impl LoopDevice {
    /// Attaches `file` on a free loop device and makes its partitions' device nodes.
    ///
    /// `losetup --partscan` asks the kernel to read the partition table; a kernel built
    /// without partition table support ignores that, so `partx --update` then adds the
    /// partitions it reads itself (a no-op where the kernel already did).
    pub fn attach(file: &Path, partitions: &[u32]) -> anyhow::Result<Self> {
        let out = check(
            Command::new("losetup")
                .args(["--find", "--show", "--partscan"])
                .arg(file),
        )
        .with_context(|| {
            format!(
                "failed to attach {} to a loop device (as root, with loop devices free: `losetup --find`)",
                file.display()
            )
        })?;
        let this = Self {
            device: PathBuf::from(out.trim()),
        };
        check(Command::new("partx").arg("--update").arg(&this.device)).with_context(|| {
            format!("failed to add the partitions of {}", this.device.display())
        })?;
        for &number in partitions {
            let node = this.partition(number);
            if !wait_until(Instant::now() + PARTITION_TIMEOUT, || node.exists()) {
                bail!(
                    "{} did not appear within {PARTITION_TIMEOUT:?} (is /dev a devtmpfs?)",
                    node.display()
                );
            }
        }
        Ok(this)
    }

    /// The whole disk (`/dev/loop3`).
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Partition `number` (`/dev/loop3p1`).
    pub fn partition(&self, number: u32) -> PathBuf {
        let mut name = self.device.clone().into_os_string();
        name.push(format!("p{number}"));
        PathBuf::from(name)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        detach(&self.device);
    }
}

/// Removes the partitions (added by `partx` they would outlive the device) and detaches it.
fn detach(device: &Path) {
    // Best effort: partitions the kernel made itself go away with the device anyway.
    let _ = check(Command::new("partx").arg("--delete").arg(device));
    if let Err(err) = check(Command::new("losetup").arg("--detach").arg(device)) {
        eprintln!(
            "warning: {err:#}; detach it with `losetup --detach {}`",
            device.display()
        );
    }
}

/// Detaches every loop device whose backing file's path starts with `prefix` (a killed build's
/// leftovers, e.g. `<images>/.debian-`). Returns the devices it detached.
pub fn detach_backed_by(prefix: &str) -> Vec<PathBuf> {
    let Ok(listing) = check(Command::new("losetup").args([
        "--list",
        "--noheadings",
        "--raw",
        "--output",
        "NAME,BACK-FILE",
    ])) else {
        return Vec::new();
    };
    let stale = backed_by(&listing, prefix);
    for device in &stale {
        detach(device);
    }
    stale
}

/// The devices of a `losetup --list --raw --output NAME,BACK-FILE` listing backed by a file
/// whose path starts with `prefix` (a deleted file is listed with a ` (deleted)` suffix).
fn backed_by(listing: &str, prefix: &str) -> Vec<PathBuf> {
    listing
        .lines()
        .filter_map(|line| line.trim().split_once(' '))
        // losetup --raw escapes spaces in names as \x20.
        .filter(|(_, file)| file.replace("\\x20", " ").starts_with(prefix))
        .map(|(name, _)| PathBuf::from(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_after_the_device() {
        let device = LoopDevice {
            device: PathBuf::from("/dev/loop7"),
        };
        assert_eq!(device.partition(14), Path::new("/dev/loop7p14"));
        // Dropping it would detach the real /dev/loop7.
        std::mem::forget(device);
    }

    #[test]
    fn leftovers_are_found_by_their_backing_file() {
        let listing = "/dev/loop0 /var/cache/metaboot/images/.debian-metaboot-1.42/disk.raw\n\
            /dev/loop1 /srv/other.img\n\
            /dev/loop2 /var/cache/metaboot/images/.debian-x.7/disk.raw (deleted)\n\
            /dev/loop3 /var/cache/metaboot/images/debian-metaboot-1/disk.qcow2\n\
            /dev/loop4 /var/cache/metaboot/images-old/.debian-a.raw\n";
        assert_eq!(
            backed_by(listing, "/var/cache/metaboot/images/.debian-"),
            [PathBuf::from("/dev/loop0"), PathBuf::from("/dev/loop2")]
        );
    }
}
