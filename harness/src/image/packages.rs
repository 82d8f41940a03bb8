//! Debian packages for guest images: resolved from apt's lists, fetched with `apt-get download`
//! and unpacked with `dpkg -x` into a cache, so a rebuild needs no network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::leftovers;
use crate::process::{check, check_timeout};

/// Prefix of a download's scratch directory in `debs/` (see [`leftovers`]).
pub const DOWNLOAD_SCRATCH: &str = ".download";

/// Prefix of an unpacking's scratch directory in `root/` (see [`leftovers`]).
pub const UNPACK_SCRATCH: &str = ".unpack-";

/// Deadline for one `apt-get download` (the kernel package is about 27 MB).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `apt-get update` waits for another apt (an unattended upgrade) to release its
/// lock before it gives up and says so.
pub const APT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `apt-get update` itself may take, once it has the lock.
pub const UPDATE_WORK_TIMEOUT: Duration = Duration::from_secs(300);

/// Deadline for `apt-get update`: the wait for the lock, then the update. Longer than the
/// wait alone, so that apt says it found the lock held rather than being killed while waiting.
pub const UPDATE_TIMEOUT: Duration =
    Duration::from_secs(APT_LOCK_TIMEOUT.as_secs() + UPDATE_WORK_TIMEOUT.as_secs());

/// apt's option that makes it wait up to [`APT_LOCK_TIMEOUT`] for the lock.
fn apt_lock_option() -> String {
    format!("DPkg::Lock::Timeout={}", APT_LOCK_TIMEOUT.as_secs())
}

/// An `apt-get download` that failed: the version resolved from the local lists may be gone
/// from the archive (lists older than a point release or a security update).
#[derive(Debug, thiserror::Error)]
#[error("failed to download {0}")]
pub struct DownloadFailed(pub String);

impl DownloadFailed {
    /// Whether `err` is (or was caused by) a failed download.
    pub fn in_chain(err: &anyhow::Error) -> bool {
        err.downcast_ref::<DownloadFailed>().is_some()
    }
}

/// Refreshes apt's package lists (`apt-get update`), waiting for another apt's lock.
pub fn refresh_lists() -> anyhow::Result<()> {
    check_timeout(
        Command::new("apt-get")
            .args(["-o", &apt_lock_option()])
            .args(["update", "-q"]),
        UPDATE_TIMEOUT,
    )
    .map(|_| ())
    .context("failed to refresh apt's package lists (apt-get update)")
}

/// One binary package at the version apt would install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Version, with its epoch if any.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
}

impl Package {
    /// The file name `apt-get download` gives the package (the epoch's colon is written `%3a`).
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    /// `name=version`, as apt-get takes it.
    pub fn spec(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

/// The package cache: `debs/` holds downloaded packages, `root/` one unpacked tree per package.
#[derive(Debug, Clone)]
pub struct PackageCache {
    dir: PathBuf,
}

impl PackageCache {
    /// A cache rooted at `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Removes the scratch directories of downloads and unpackings whose build was killed.
    pub fn remove_leftovers(&self) {
        leftovers::remove_dead(&self.dir.join("debs"), DOWNLOAD_SCRATCH);
        leftovers::remove_dead(&self.dir.join("root"), UNPACK_SCRATCH);
    }

    /// Resolves each name to the candidate version apt would install (see [`resolve`]).
    pub fn resolve(&self, names: &[&str]) -> anyhow::Result<Vec<Package>> {
        resolve(names)
    }

    /// The package a metapackage (e.g. `linux-image-cloud-amd64`) depends on first, by name.
    pub fn resolve_meta(&self, name: &str) -> anyhow::Result<String> {
        let out = apt_cache_show(&[name])?;
        let depends = field(&out, "Depends")
            .with_context(|| format!("metapackage {name} has no Depends field"))?;
        first_dependency(depends)
            .map(str::to_owned)
            .with_context(|| format!("failed to read the Depends field of {name}: {depends}"))
    }

    /// The package file, downloaded with `apt-get download` unless already cached.
    pub fn fetch(&self, package: &Package) -> anyhow::Result<PathBuf> {
        let debs = self.dir.join("debs");
        let path = debs.join(package.file_name());
        if path.is_file() {
            return Ok(path);
        }
        // Download into a private directory, then rename: a concurrent build or an interrupted
        // download never leaves a torn .deb under its final name.
        let tmp = leftovers::scratch_path(&debs, DOWNLOAD_SCRATCH, "");
        fs::create_dir_all(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
        let result = check_timeout(
            Command::new("apt-get")
                .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
                .arg(package.spec())
                .current_dir(&tmp),
            DOWNLOAD_TIMEOUT,
        )
        .context(DownloadFailed(package.spec()))
        .and_then(|_| {
            let got = tmp.join(package.file_name());
            fs::rename(&got, &path)
                .with_context(|| format!("failed to move {} into the cache", got.display()))
        });
        let _ = fs::remove_dir_all(&tmp);
        result.map(|()| path)
    }

    /// The package's files unpacked with `dpkg -x` (cached, keyed by the package file name).
    pub fn unpack(&self, package: &Package) -> anyhow::Result<PathBuf> {
        let root = self
            .dir
            .join("root")
            .join(package.file_name().trim_end_matches(".deb"));
        if root.is_dir() {
            return Ok(root);
        }
        let deb = self.fetch(package)?;
        let parent = root.parent().context("a cache path has a parent")?;
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
        let tmp = leftovers::scratch_path(parent, UNPACK_SCRATCH, &package.name);
        fill_into_place(&tmp, &root, |tmp| {
            check(Command::new("dpkg").arg("-x").arg(&deb).arg(tmp))
                .map(|_| ())
                .with_context(|| format!("failed to unpack {}", deb.display()))
        })?;
        Ok(root)
    }
}

/// Has `fill` make the scratch directory `tmp`, then renames it to `dest`; `tmp` is gone
/// afterwards whatever failed (`dpkg -x` stopped half-way leaves a partial tree).
fn fill_into_place(
    tmp: &Path,
    dest: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(tmp);
    let filled = fill(tmp).and_then(|()| {
        fs::rename(tmp, dest)
            .or_else(|err| {
                // Another build unpacked the same package meanwhile: theirs is as good as ours.
                if dest.is_dir() { Ok(()) } else { Err(err) }
            })
            .with_context(|| format!("failed to move into {}", dest.display()))
    });
    let _ = fs::remove_dir_all(tmp);
    filled
}

/// Resolves each name to the candidate version apt would install, from the local package
/// lists (one `apt-cache` call: each takes about half a second). The images' cache keys are
/// made of these versions, so a new version in the lists (a point release, a new kernel)
/// makes a new image.
pub fn resolve(names: &[&str]) -> anyhow::Result<Vec<Package>> {
    let out = apt_cache_show(names)?;
    let found: Vec<Package> = stanzas(&out)
        .map(|stanza| parse_show(stanza).context("failed to read `apt-cache show` output"))
        .collect::<anyhow::Result<_>>()?;
    names
        .iter()
        .map(|name| {
            found.iter().find(|p| p.name == *name).cloned().with_context(|| {
                format!("apt does not know the package {name}: run `apt-get update` (scripts/install-lab-deps does)")
            })
        })
        .collect()
}

fn apt_cache_show(names: &[&str]) -> anyhow::Result<String> {
    let out = check(
        Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names),
    );
    match out {
        Ok(text) if !text.trim().is_empty() => Ok(text),
        Ok(_) | Err(_) => bail!(
            "apt does not know all of {names:?}: run `apt-get update` (scripts/install-lab-deps does)"
        ),
    }
}

/// The stanzas of `apt-cache show` output (blank-line separated).
fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").filter(|s| !s.trim().is_empty())
}

/// The value of `key` in the first stanza of `apt-cache show` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn parse_show(text: &str) -> anyhow::Result<Package> {
    let get = |key| field(text, key).with_context(|| format!("no {key} field"));
    Ok(Package {
        name: get("Package")?.to_owned(),
        version: get("Version")?.to_owned(),
        arch: get("Architecture")?.to_owned(),
    })
}

/// The first package name of a Depends field (`a (= 1) | b, c` → `a`).
fn first_dependency(depends: &str) -> Option<&str> {
    let first = depends.split([',', '|']).next()?.trim();
    let name = first.split([' ', '(']).next()?.trim();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A download that failed is told apart from any other failure, under the contexts the
    /// build adds, so that the build refreshes the lists only then.
    #[test]
    fn a_failed_download_is_found_under_the_builds_contexts() {
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("E: Can't find a source to download"));
        let err = failed
            .context(DownloadFailed(
                "linux-image-6.1.0-9-cloud-amd64=6.1.27-1".into(),
            ))
            .context("failed to unpack the kernel")
            .unwrap_err();
        assert!(DownloadFailed::in_chain(&err));
        assert!(format!("{err:#}").contains("failed to download linux-image-6.1.0-9"));
        assert!(!DownloadFailed::in_chain(&anyhow::anyhow!(
            "failed to read a module"
        )));
    }

    #[test]
    fn an_unpacking_that_fails_leaves_no_scratch_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = leftovers::scratch_path(dir.path(), UNPACK_SCRATCH, "zlib1g");
        let dest = dir.path().join("zlib1g_1_amd64");
        let err = fill_into_place(&tmp, &dest, |tmp| {
            fs::create_dir_all(tmp.join("usr/lib"))?;
            anyhow::bail!("dpkg-deb: error: unexpected end of file")
        })
        .unwrap_err();
        assert!(err.to_string().contains("dpkg-deb"), "{err}");
        assert!(!tmp.exists() && !dest.exists());

        fill_into_place(&tmp, &dest, |tmp| Ok(fs::create_dir_all(tmp.join("usr"))?)).unwrap();
        assert!(dest.join("usr").is_dir() && !tmp.exists());
        // Unpacked by another build meanwhile: theirs is kept, ours goes.
        fill_into_place(&tmp, &dest, |tmp| Ok(fs::create_dir_all(tmp.join("etc"))?)).unwrap();
        assert!(dest.join("usr").is_dir() && !dest.join("etc").exists() && !tmp.exists());
    }

    /// apt waits for another's lock as long as [`APT_LOCK_TIMEOUT`], and gets to say that it
    /// gave up before the update's deadline kills it.
    #[test]
    fn apt_update_waits_for_the_lock_within_its_deadline() {
        assert_eq!(apt_lock_option(), "DPkg::Lock::Timeout=300");
        assert!(APT_LOCK_TIMEOUT < UPDATE_TIMEOUT);
        assert_eq!(UPDATE_TIMEOUT, APT_LOCK_TIMEOUT + UPDATE_WORK_TIMEOUT);
    }

    const SHOW: &str = "Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\n\
        Architecture: amd64\nDepends: libc6 (>= 2.34)\n\nPackage: busybox-static\nVersion: 0\n";

    #[test]
    fn parses_the_first_stanza_and_names_the_file_like_apt() {
        let package = parse_show(SHOW).unwrap();
        assert_eq!(package.version, "1:1.35.0-4+deb12u1+b1");
        assert_eq!(
            package.file_name(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
        assert_eq!(package.spec(), "busybox-static=1:1.35.0-4+deb12u1+b1");
        assert!(parse_show("Package: x\n").is_err());
        assert_eq!(stanzas(SHOW).count(), 2);
    }

    #[test]
    fn first_dependency_takes_the_first_alternative() {
        assert_eq!(
            first_dependency("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2), x"),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(first_dependency("a | b"), Some("a"));
        assert_eq!(first_dependency(""), None);
    }
}
