//! A disk of its own for the guest agent's runs: an ext4 file system on a loop device over a
//! file of the host's disk, mounted under the bench's directory. A guest's root disk is its
//! own, so a sync there writes what the guest wrote; on a directory of the host's shared file
//! system, `syncfs(2)` would also write whatever other processes left dirty (on this machine,
//! hundreds of MB of other builds). The loop device passes each flush to the backing file on
//! the real disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use metaboot_harness::process::check;

/// Size of the disk image (sparse; the runs use a few MB).
pub const DISK_SIZE: &str = "1G";

/// A mounted ext4 disk; unmounted (and its image removed) when dropped.
#[derive(Debug)]
pub struct OwnDisk {
    image: PathBuf,
    mountpoint: PathBuf,
}

impl OwnDisk {
    /// Makes `dir/disk.img` an ext4 file system and mounts it at `dir/disk`.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let image = dir.join("disk.img");
        let mountpoint = dir.join("disk");
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("failed to create {}", mountpoint.display()))?;
        check(Command::new("truncate").args(["-s", DISK_SIZE]).arg(&image))
            .context("failed to make the disk image")?;
        check(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))
            .context("failed to make an ext4 file system")?;
        check(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mountpoint),
        )
        .context("failed to mount the disk image")?;
        Ok(Self { image, mountpoint })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Writes out what is dirty on it (before a timed run: a booted guest's files are on disk
    /// already).
    pub fn settle(&self) -> anyhow::Result<()> {
        let dir = std::fs::File::open(&self.mountpoint)
            .with_context(|| format!("failed to open {}", self.mountpoint.display()))?;
        nix::unistd::syncfs(&dir).context("failed to sync the bench's disk")?;
        Ok(())
    }

    fn unmount(&self) -> anyhow::Result<()> {
        let out = Command::new("umount")
            .arg(&self.mountpoint)
            .output()
            .context("failed to run umount")?;
        if !out.status.success() {
            // Busy (a run still in it): detach it now, it goes when released.
            check(Command::new("umount").arg("-l").arg(&self.mountpoint))?;
        }
        if self.mountpoint.join("lost+found").exists() {
            bail!("{} is still mounted", self.mountpoint.display());
        }
        Ok(())
    }
}

impl Drop for OwnDisk {
    fn drop(&mut self) {
        if let Err(err) = self.unmount() {
            eprintln!("bench: {err:#}");
            return;
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_of_its_own_is_ext4_and_goes_away() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "root is required in CI: mounting a disk needs it"
            );
            eprintln!("skipping: mounting a disk needs root (the bench runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = OwnDisk::create(dir.path()).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == disk.path().to_str())
            .unwrap_or_else(|| panic!("{} not mounted", disk.path().display()));
        assert_eq!(line.split(' ').nth(2), Some("ext4"), "{line}");
        std::fs::write(disk.path().join("f"), "x").unwrap();
        disk.settle().unwrap();
        let mountpoint = disk.path().to_owned();
        drop(disk);
        assert!(!mountpoint.join("f").exists());
        assert!(!dir.path().join("disk.img").exists());
    }
}
