//! The shared root of the Debian images: one mmdebstrap run from the machine's Debian archives
//! with both flavours' packages, kept in the cache as a tar keyed by release, packages and
//! sources. Each flavour unpacks it (`debian-metaboot` then purges cloud-init), so a new
//! guest agent rebuilds an image in seconds, without mmdebstrap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::recipe::{self, RELEASE, VARIANT};
use super::scratch::WorkDir;
use super::sources::Source;
use crate::image::MANIFEST;
use crate::image::cache::InputHash;
use crate::image::output;
use crate::step::run_logged;

/// The root's tar in its directory.
pub const ROOTFS_TAR: &str = "rootfs.tar";

/// Deadline of the mmdebstrap run (about 2-3 minutes here; a slow mirror takes longer).
pub const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Deadline of unpacking the root (seconds, normally).
pub const UNPACK_TIMEOUT: Duration = Duration::from_secs(600);

/// Shared roots kept besides the current one (each is about 500 MB).
pub const MAX_OLD_ROOTS: usize = 0;

/// What the root was built from, stored next to its tar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsManifest {
    /// The input hash the directory is named after.
    pub key: String,
    /// Every input with a short digest.
    pub inputs: Vec<String>,
    /// The apt sources, one-line form.
    pub sources: Vec<String>,
    /// The packages asked for (their dependencies came along).
    pub packages: Vec<String>,
    /// How long mmdebstrap took.
    pub build_seconds: f64,
}

/// The shared root, built or found in the cache.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// Its tar.
    pub tar: PathBuf,
    /// Its key.
    pub key: String,
    /// True when it came from the cache.
    pub cached: bool,
}

/// The root for `key` in `out`: from the cache, else built with mmdebstrap into a scratch
/// directory and renamed into place (an interrupted build leaves no half root behind).
pub fn ensure(
    out: &Path,
    sources: &[Source],
    key: &InputHash,
    log: &Path,
) -> anyhow::Result<Rootfs> {
    let key_hex = key.key();
    let dir = out.join(format!("debian-rootfs-{key_hex}"));
    let tar = dir.join(ROOTFS_TAR);
    if is_complete(&dir) {
        return Ok(Rootfs {
            tar,
            key: key_hex,
            cached: true,
        });
    }
    super::scratch::set_aside_incomplete(out, &dir, is_complete)?;
    let started = Instant::now();
    let work = WorkDir::create(out, &format!("debian-rootfs-{key_hex}"))?;
    let staging = work.path().join("image");
    fs::create_dir_all(&staging)
        .with_context(|| format!("failed to create {}", staging.display()))?;
    let packages = recipe::rootfs_packages();
    // In a mount namespace of its own: the /proc, /sys and /dev mmdebstrap mounts in its
    // chroot vanish with it, even if it is killed. Its temporary files go to the scratch
    // directory, which is removed however the build ends.
    let mut cmd = super::namespaces::unshare(super::namespaces::Network::Host);
    cmd.arg("mmdebstrap")
        .args([
            "--mode=root",
            &format!("--variant={VARIANT}"),
            "--format=tar",
        ])
        .arg(format!("--include={}", packages.join(",")))
        .arg(RELEASE)
        .arg(staging.join(ROOTFS_TAR))
        .args(sources.iter().map(Source::line))
        .env("TMPDIR", work.path());
    run_logged("mmdebstrap", &mut cmd, MMDEBSTRAP_TIMEOUT, log)?;
    let manifest = RootfsManifest {
        key: key_hex.clone(),
        inputs: key.inputs().to_vec(),
        sources: sources.iter().map(Source::line).collect(),
        packages: packages.iter().map(|p| (*p).to_owned()).collect(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&manifest).context("failed to encode the manifest")?;
    fs::write(staging.join(MANIFEST), json).context("failed to write the root's manifest")?;
    work.commit("image", &dir)?;
    output::prune_prefixed(out, "debian-rootfs-", &dir, MAX_OLD_ROOTS + 1);
    Ok(Rootfs {
        tar,
        key: key_hex,
        cached: false,
    })
}

/// Whether `dir` holds a complete root: its tar and its manifest (written last).
pub fn is_complete(dir: &Path) -> bool {
    dir.join(ROOTFS_TAR).is_file() && dir.join(MANIFEST).is_file()
}

/// Unpacks the root's tar into the empty directory `root`, owners and attributes kept.
pub fn unpack(tar: &Path, root: &Path, log: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(root).with_context(|| format!("failed to create {}", root.display()))?;
    run_logged(
        "tar (unpacking the shared root)",
        Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(root),
        UNPACK_TIMEOUT,
        log,
    )
}
