//! The shared root of the Debian images: one mmdebstrap run from the machine's Debian archives
//! with both flavours' packages, kept in the cache as a tar keyed by release, packages and
//! sources. Each flavour unpacks it (`debian-metaboot` then purges cloud-init), so a new
//! guest agent rebuilds an image in seconds, without mmdebstrap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::recipe::{self, RELEASE, VARIANT};
use super::scratch::WorkDir;
use super::sources::Source;
use crate::image::MANIFEST;
use crate::image::cache::InputHash;
use crate::image::output;
use crate::step::run_logged;

/// The shared roots' directories in the image directory: `<prefix><key>`.
pub const ROOT_PREFIX: &str = "debian-rootfs-";

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
    /// Size of the tar: one of another size (torn, cut short) is not reused.
    pub tar_bytes: u64,
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
/// directory and renamed into place (an interrupted build leaves no half root behind), its
/// output in a new `log` (the last build's kept: see [`crate::step::start_log`]).
pub fn ensure(
    out: &Path,
    sources: &[Source],
    key: &InputHash,
    log: &Path,
) -> anyhow::Result<Rootfs> {
    let key_hex = key.key();
    let dir = out.join(format!("{ROOT_PREFIX}{key_hex}"));
    let tar = dir.join(ROOTFS_TAR);
    if is_complete(&dir) {
        return Ok(Rootfs {
            tar,
            key: key_hex,
            cached: true,
        });
    }
    super::scratch::set_aside_incomplete(out, &dir, is_complete)?;
    crate::step::start_log(log)?;
    let started = Instant::now();
    let work = WorkDir::create(out, &format!("{ROOT_PREFIX}{key_hex}"))?;
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
    let staged_tar = staging.join(ROOTFS_TAR);
    let tar_bytes = fs::metadata(&staged_tar)
        .with_context(|| format!("failed to stat {}", staged_tar.display()))?
        .len();
    let manifest = RootfsManifest {
        key: key_hex.clone(),
        inputs: key.inputs().to_vec(),
        sources: sources.iter().map(Source::line).collect(),
        packages: packages.iter().map(|p| (*p).to_owned()).collect(),
        tar_bytes,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&manifest).context("failed to encode the manifest")?;
    fs::write(staging.join(MANIFEST), json).context("failed to write the root's manifest")?;
    work.commit("image", &dir)?;
    output::prune_prefixed(out, ROOT_PREFIX, &dir, MAX_OLD_ROOTS + 1);
    Ok(Rootfs {
        tar,
        key: key_hex,
        cached: false,
    })
}

/// Whether `dir` holds a complete root: its manifest (written last) parses, names the key
/// the directory is named after, and records the size its tar has.
pub fn is_complete(dir: &Path) -> bool {
    read_complete(dir).is_ok()
}

fn read_complete(dir: &Path) -> anyhow::Result<RootfsManifest> {
    let path = dir.join(MANIFEST);
    let text =
        fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let manifest: RootfsManifest = serde_json::from_str(&text)
        .with_context(|| format!("failed to parse {}", path.display()))?;
    let named = dir.file_name().and_then(|n| n.to_str());
    if named != Some(&format!("{ROOT_PREFIX}{}", manifest.key)) {
        bail!("{} holds the root of key {}", dir.display(), manifest.key);
    }
    let tar = dir.join(ROOTFS_TAR);
    let bytes = fs::metadata(&tar)
        .with_context(|| format!("failed to stat {}", tar.display()))?
        .len();
    if bytes != manifest.tar_bytes {
        bail!(
            "{} has {bytes} bytes where its manifest records {}",
            tar.display(),
            manifest.tar_bytes
        );
    }
    Ok(manifest)
}

/// tar's options unpacking the root (an input of the flavours' keys: they decide what of the
/// tar the root gets).
pub const UNPACK_OPTIONS: [&str; 4] = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"];

/// Unpacks the root's tar into the empty directory `root`, owners and attributes kept.
pub fn unpack(tar: &Path, root: &Path, log: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(root).with_context(|| format!("failed to create {}", root.display()))?;
    run_logged(
        "tar (unpacking the shared root)",
        Command::new("tar")
            .args(UNPACK_OPTIONS)
            .arg(tar)
            .arg("-C")
            .arg(root),
        UNPACK_TIMEOUT,
        log,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root is reused only when its manifest names its key and records the size its tar
    /// has: a tar cut short (or a manifest torn, or moved under another key) makes it anew.
    #[test]
    fn a_root_is_complete_only_with_the_tar_its_manifest_records() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join(format!("{ROOT_PREFIX}0123"));
        fs::create_dir(&dir).unwrap();
        let manifest = |key: &str| RootfsManifest {
            key: key.into(),
            inputs: vec![],
            sources: vec![],
            packages: vec!["sudo".into()],
            tar_bytes: 4,
            build_seconds: 1.0,
        };
        let write = |manifest: &RootfsManifest| {
            fs::write(dir.join(MANIFEST), serde_json::to_vec(manifest).unwrap()).unwrap();
        };
        assert!(!is_complete(&dir), "nothing there");
        write(&manifest("0123"));
        assert!(!is_complete(&dir), "no tar");
        for torn in [&b"tar"[..], b"tar\0\0"] {
            fs::write(dir.join(ROOTFS_TAR), torn).unwrap();
            let err = read_complete(&dir).unwrap_err().to_string();
            assert!(err.contains("records 4"), "{err}");
        }
        fs::write(dir.join(ROOTFS_TAR), b"tar\0").unwrap();
        assert!(is_complete(&dir));
        write(&manifest("4567"));
        assert!(!is_complete(&dir), "another key's manifest");
        fs::write(dir.join(MANIFEST), b"{\"key\": \"0123\"").unwrap();
        assert!(!is_complete(&dir), "a torn manifest");
    }
}
