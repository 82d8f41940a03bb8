//! The Debian images: Debian 12 (bookworm, amd64) cloud images built from Debian packages only,
//! as bootable qcow2 disks (SeaBIOS → GRUB → `linux-image-cloud-amd64`, console on ttyS0),
//! in two flavours from one recipe (`images/debian/`):
//!
//! - `debian-cloud-init`: stock cloud-init (OpenStack datasource), openssh-server, the default
//!   user `debian` with sudo, as Debian's cloud images;
//! - `debian-metaboot`: the same root without cloud-init, with the static guest agent as
//!   `/usr/bin/metaboot`, its metaboot.yaml and its systemd unit enabled.
//!
//! The work is shared and cached (see [`rootfs`]): one mmdebstrap run makes the root both
//! flavours unpack, keyed by the version of every package it is made of, dependencies and
//! Essential packages included, as apt resolves them from the machine's lists for the image's
//! sources ([`closure`]), so an `apt-get update` that brings a point release, a security
//! update of any of them or a new kernel makes new images; each flavour is then finished
//! inside a chroot, laid out on a disk with GRUB ([`bootdisk`]) and converted to qcow2. Every
//! product is made in a scratch directory and renamed into place, so an interrupted build
//! leaves no half image; loop devices are released by guards, mounts live in private mount
//! namespaces, and a killed build's leftovers are removed by the next build.

pub mod bootdisk;
pub mod closure;
pub mod lists_lock;
pub mod loopdev;
pub mod namespaces;
pub mod recipe;
pub mod rootfs;
pub mod scratch;
pub mod sources;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use recipe::Flavour;
pub use scratch::WorkDir;

use super::disk::{DISK, DiskImage, DiskManifest};
use super::{MANIFEST, output};
use crate::process::check;
use crate::progress::Progress;
use crate::step::run_logged;

/// Images of each flavour kept in the cache (the current one and the one before).
pub const MAX_CACHED_IMAGES: usize = 2;

/// Deadline of finishing a root inside its chroot (a purge of cloud-init: seconds).
pub const CUSTOMIZE_TIMEOUT: Duration = Duration::from_secs(600);

/// The user that gets the instance's keys on both flavours.
pub const DEFAULT_USER: &str = "debian";

/// Inputs of a Debian build.
#[derive(Debug, Clone)]
pub struct DebianBuild {
    /// The image directory (`<cache>/images`): `<flavour>-<key>/` per image, a `<flavour>`
    /// link to the newest, `debian-rootfs-<key>/` for the shared root, `logs/`.
    pub out: PathBuf,
    /// The static guest agent (for `debian-metaboot`).
    pub agent: Option<PathBuf>,
    /// Which images.
    pub flavours: Vec<Flavour>,
}

/// The tools a Debian build runs (scripts/install-lab-deps installs them).
pub const TOOLS: [&str; 11] = [
    "mmdebstrap",
    "unshare",
    "losetup",
    "partx",
    "sfdisk",
    "mkfs.ext4",
    "blkid",
    "qemu-img",
    "tar",
    "dpkg-query",
    "apt-get",
];

/// Checks that this machine can build the images: root (mmdebstrap's root mode, loop devices)
/// and [`TOOLS`].
pub fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "building the Debian images needs root (mmdebstrap --mode=root, loop devices): run as root"
        );
    }
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|t| !crate::process::on_path(t))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {} (scripts/install-lab-deps installs them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Builds (or finds in the cache) the images of `spec`, in its order.
pub fn build(spec: &DebianBuild, progress: &dyn Progress) -> anyhow::Result<Vec<DiskImage>> {
    preflight()?;
    fs::create_dir_all(&spec.out)
        .with_context(|| format!("failed to create {}", spec.out.display()))?;
    let _lock = scratch::lock(&spec.out, crate::step::interrupted)?;
    scratch::clean_leftovers(&spec.out);
    let logs = spec.out.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("failed to create {}", logs.display()))?;

    let sources = sources::debian_sources(recipe::RELEASE)?;
    let lines: Vec<String> = sources.iter().map(sources::Source::line).collect();
    let resolving = WorkDir::create(&spec.out, "resolve")?;
    let resolved = closure::resolve(
        &lines,
        &recipe::rootfs_packages(),
        Path::new(sources::APT_LISTS),
        resolving.path(),
        crate::step::interrupted,
    )
    .context("failed to resolve the packages of the images' root")?;
    drop(resolving);
    let rootfs_key = recipe::rootfs_key(&sources, &resolved);
    let agent = match (&spec.agent, spec.flavours.contains(&Flavour::Metaboot)) {
        (Some(path), true) => Some(
            fs::read(path)
                .with_context(|| format!("failed to read the guest agent {}", path.display()))?,
        ),
        (None, true) => bail!("debian-metaboot needs the static guest agent (--agent)"),
        (_, false) => None,
    };

    let mut images = Vec::new();
    let mut rootfs: Option<rootfs::Rootfs> = None;
    for &flavour in &spec.flavours {
        let started = Instant::now();
        let key = recipe::flavour_key(
            &rootfs_key.key(),
            flavour,
            agent.as_deref(),
            &builder_inputs(),
        );
        let dir = spec.out.join(format!("{}-{}", flavour.name(), key.key()));
        if let Some(image) = cached(&spec.out, flavour, &dir)? {
            progress.done(flavour.name(), true, &format!("reused {}", dir.display()));
            images.push(image);
            continue;
        }
        let root = match &rootfs {
            Some(root) => root.clone(),
            None => {
                progress.stage(
                    "debian-rootfs",
                    "mmdebstrap from the apt sources (a few minutes) unless cached",
                );
                let log = logs.join("debian-rootfs.log");
                let root = rootfs::ensure(&spec.out, &sources, &rootfs_key, &log)
                    .context("failed to build the Debian root")?;
                progress.done(
                    "debian-rootfs",
                    true,
                    if root.cached { "reused" } else { "built" },
                );
                rootfs = Some(root.clone());
                root
            }
        };
        let job = FlavourJob {
            out: &spec.out,
            flavour,
            key: &key,
            dir: &dir,
            rootfs: &root,
            agent: agent.as_deref(),
            log: &logs.join(format!("{}.log", flavour.name())),
            started,
            progress,
        };
        let image = job
            .build()
            .with_context(|| format!("failed to build the {} image", flavour.name()))?;
        progress.done(
            flavour.name(),
            true,
            &format!(
                "built in {:.0} s: {}",
                image.manifest.build_seconds,
                dir.display()
            ),
        );
        images.push(image);
    }
    Ok(images)
}

/// How the build makes a flavour's image from the root (inputs of its key): unpacking the
/// root and making the disk.
fn builder_inputs() -> Vec<recipe::BuilderInput> {
    let mut inputs = vec![("unpack:tar", rootfs::UNPACK_OPTIONS.join(" "))];
    inputs.extend(bootdisk::key_inputs());
    inputs
}

/// The complete image of `flavour` in `dir` (under `out`), reused: held, marked used and
/// linked as the newest. None when there is none; a directory there that is not a complete
/// image is set aside first (unless a run holds it), so that the build's rename can put a new
/// one in its place.
fn cached(out: &Path, flavour: Flavour, dir: &Path) -> anyhow::Result<Option<DiskImage>> {
    if let Ok(image) = DiskImage::open(dir) {
        output::mark_used(dir);
        output::link_named(out, flavour.name(), dir)?;
        return Ok(Some(DiskImage {
            cached: true,
            ..image
        }));
    }
    scratch::set_aside_incomplete(out, dir, DiskImage::is_complete)?;
    Ok(None)
}

/// One flavour's build.
struct FlavourJob<'a> {
    out: &'a Path,
    flavour: Flavour,
    key: &'a crate::image::cache::InputHash,
    dir: &'a Path,
    rootfs: &'a rootfs::Rootfs,
    agent: Option<&'a [u8]>,
    log: &'a Path,
    started: Instant,
    progress: &'a dyn Progress,
}

impl FlavourJob<'_> {
    fn stage(&self, stage: &str) {
        self.progress.stage(self.flavour.name(), stage);
    }

    fn build(&self) -> anyhow::Result<DiskImage> {
        crate::step::start_log(self.log)?;
        let name = self.flavour.name();
        let work = WorkDir::create(self.out, &format!("{name}-{}", self.key.key()))?;
        let root = work.path().join("root");
        let scripts = work.path().join("scripts");
        let staging = work.path().join("image");
        for dir in [&scripts, &staging] {
            fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        for (file, content) in [
            ("chroot.sh", recipe::CHROOT_SH),
            ("bootloader.sh", recipe::BOOTLOADER_SH),
        ] {
            write_file(&scripts.join(file), content.as_bytes(), 0o755)?;
        }

        self.stage("unpacking the shared root");
        rootfs::unpack(&self.rootfs.tar, &root, self.log)?;
        self.stage("finishing the root (chroot)");
        self.place_files(&root)?;
        self.customize(&root, &scripts)?;
        let packages = installed_packages(&root)?;
        let kernel = kernel_release(&root)?;
        let root_bytes = tree_bytes(&root);

        self.stage("making the disk (GPT, ext4, GRUB, qcow2)");
        let disk = staging.join(DISK);
        bootdisk::make(&bootdisk::DiskWork {
            root: &root,
            work: work.path(),
            scripts: &scripts,
            out: &disk,
            log: self.log,
        })?;
        // Guests boot overlays of it; nothing may write the image itself.
        fs::set_permissions(&disk, fs::Permissions::from_mode(0o444))
            .with_context(|| format!("failed to make {} read-only", disk.display()))?;
        let manifest = DiskManifest {
            kind: name.to_owned(),
            key: self.key.key(),
            inputs: self.key.inputs().to_vec(),
            provisioner: self.flavour.provisioner(),
            default_user: DEFAULT_USER.to_owned(),
            packages,
            kernel,
            disk_bytes: fs::metadata(&disk)
                .with_context(|| format!("failed to stat {}", disk.display()))?
                .len(),
            virtual_bytes: bootdisk::DISK_BYTES,
            root_bytes,
            rootfs_cached: self.rootfs.cached,
            build_seconds: self.started.elapsed().as_secs_f64(),
        };
        let json = serde_json::to_vec_pretty(&manifest).context("failed to encode the manifest")?;
        write_file(&staging.join(MANIFEST), &json, 0o644)?;
        output::sync_staged(&staging)?;
        work.commit("image", self.dir)?;
        output::link_named(self.out, name, self.dir)?;
        output::prune_prefixed(self.out, &format!("{name}-"), self.dir, MAX_CACHED_IMAGES);
        DiskImage::open(self.dir)
    }

    /// The recipe's files of the flavour, and the guest agent for `debian-metaboot`.
    fn place_files(&self, root: &Path) -> anyhow::Result<()> {
        for file in recipe::files(self.flavour) {
            write_file(&root.join(file.path), file.content.as_bytes(), file.mode)?;
        }
        if self.flavour == Flavour::Metaboot {
            let agent = self
                .agent
                .context("debian-metaboot needs the static guest agent")?;
            write_file(&root.join(recipe::AGENT_PATH), agent, 0o755)?;
        }
        Ok(())
    }

    /// Runs `customize.sh` inside the root, without network, in namespaces that take its
    /// mounts and processes along when they end.
    fn customize(&self, root: &Path, scripts: &Path) -> anyhow::Result<()> {
        let inside = "tmp/metaboot-customize.sh";
        write_file(&root.join(inside), recipe::CUSTOMIZE_SH.as_bytes(), 0o755)?;
        let mut cmd = namespaces::unshare(namespaces::Network::None);
        cmd.arg("sh")
            .arg(scripts.join("chroot.sh"))
            .arg(root)
            .args(["--", "/bin/sh", &format!("/{inside}"), self.flavour.name()]);
        if self.flavour == Flavour::Metaboot {
            cmd.args(recipe::package_names(recipe::CLOUD_INIT_PACKAGES));
        }
        run_logged(
            "customize.sh (in the image)",
            &mut cmd,
            CUSTOMIZE_TIMEOUT,
            self.log,
        )?;
        // customize.sh empties /tmp itself; this covers a script that stopped early.
        let _ = fs::remove_file(root.join(inside));
        Ok(())
    }
}

/// `name=version` of every package dpkg has installed in `root`.
fn installed_packages(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = check(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Package}=${Version}\\n"]),
    )
    .context("failed to list the image's packages")?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// The release of the (newest) kernel in the root's /boot.
fn kernel_release(root: &Path) -> anyhow::Result<String> {
    let boot = root.join("boot");
    let mut releases: Vec<String> = fs::read_dir(&boot)
        .with_context(|| format!("failed to list {}", boot.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .collect();
    releases.sort();
    releases.pop().context(
        "the image has no kernel in /boot (is linux-image-cloud-amd64 in images/debian/packages?)",
    )
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.path(), fs::symlink_metadata(e.path()).ok()?)))
        .map(|(path, meta)| {
            if meta.is_dir() {
                tree_bytes(&path)
            } else if meta.is_file() {
                meta.len()
            } else {
                0
            }
        })
        .sum()
}

/// Writes a file with `mode`, creating its directory.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::disk::Provisioner;

    #[test]
    fn flavours_are_named_as_the_cli_and_the_cache_name_them() {
        assert_eq!(Flavour::CloudInit.name(), "debian-cloud-init");
        assert_eq!(Flavour::Metaboot.provisioner(), Provisioner::Metaboot);
    }

    /// A damaged image a run holds stays where it is (the build stops, saying so); one no run
    /// holds is set aside (to a scratch name the next build's cleanup knows), and a complete
    /// one is reused.
    #[test]
    fn only_an_incomplete_image_no_run_holds_is_set_aside() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("debian-metaboot-0123");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(DISK), b"QFI").unwrap();
        let held = crate::image::in_use::hold(&dir).unwrap();
        // The build stops at once: its image could not be renamed into the held one's place.
        let err = cached(out.path(), Flavour::Metaboot, &dir).unwrap_err();
        assert!(
            format!("{err:#}").contains("a run still uses it"),
            "{err:#}"
        );
        assert!(dir.join(DISK).is_file(), "a run holds it");
        drop(held);
        assert!(
            cached(out.path(), Flavour::Metaboot, &dir)
                .unwrap()
                .is_none()
        );
        assert!(!dir.exists(), "set aside");
        let left: Vec<_> = fs::read_dir(out.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(DISK), b"QFI").unwrap();
        let manifest = DiskManifest {
            kind: Flavour::Metaboot.name().into(),
            key: "0123".into(),
            inputs: vec![],
            provisioner: Provisioner::Metaboot,
            default_user: DEFAULT_USER.into(),
            packages: vec![],
            kernel: "6.1.0-57-cloud-amd64".into(),
            disk_bytes: 3,
            virtual_bytes: bootdisk::DISK_BYTES,
            root_bytes: 3,
            rootfs_cached: true,
            build_seconds: 1.0,
        };
        fs::write(dir.join(MANIFEST), serde_json::to_vec(&manifest).unwrap()).unwrap();
        let image = cached(out.path(), Flavour::Metaboot, &dir).unwrap();
        assert!(
            image.is_some_and(|i| i.cached),
            "a complete image is reused"
        );
        assert_eq!(
            fs::read_link(out.path().join(Flavour::Metaboot.name())).unwrap(),
            Path::new("debian-metaboot-0123")
        );
    }

    /// What the builder does to make a disk from the root is in the flavours' keys: the
    /// partition types, the fstab's mount options, mkfs.ext4's options and configuration,
    /// tar's options, qemu-img's conversion; another of any makes another image.
    #[test]
    fn how_a_disk_is_made_is_in_the_flavours_key() {
        let inputs = builder_inputs();
        let value = |name: &str| {
            inputs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{name} in {inputs:?}"))
        };
        assert!(value("disk:partitions").contains(bootdisk::BIOS_BOOT_TYPE));
        assert!(value("disk:partitions").contains(bootdisk::LINUX_FS_TYPE));
        assert!(value("disk:fstab").contains("rw,discard,errors=remount-ro"));
        let mkfs = value("disk:mkfs.ext4");
        assert!(
            mkfs.contains("-L root") && mkfs.contains(&format!("={}", bootdisk::MKE2FS_CONFIG)),
            "{mkfs}"
        );
        assert!(value("unpack:tar").contains("--xattrs"));
        assert!(value("disk:qemu-img").contains("qcow2"));
        assert!(value("disk-layout").contains("bios boot 14"));

        let key = recipe::flavour_key("root", Flavour::Metaboot, Some(b"a"), &inputs);
        for (name, value) in &inputs {
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(value));
            let input = format!(
                "builder:{name} sha256:{}",
                &digest[..crate::image::cache::KEY_LEN]
            );
            assert!(
                key.inputs().contains(&input),
                "{input} in {:?}",
                key.inputs()
            );
            let mut other = inputs.clone();
            other.retain(|(n, _)| n != name);
            other.push((name, format!("{value} changed")));
            assert_ne!(
                recipe::flavour_key("root", Flavour::Metaboot, Some(b"a"), &other).key(),
                key.key(),
                "{name}"
            );
        }
    }

    #[test]
    fn tree_bytes_counts_files_not_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/f"), [0u8; 100]).unwrap();
        fs::write(dir.path().join("g"), [0u8; 10]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        assert_eq!(tree_bytes(dir.path()), 110);
    }
}
