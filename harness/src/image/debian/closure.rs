//! The packages the shared root is made of, for its cache key: every package, at its
//! version, that mmdebstrap's `apt` variant installs from the image's apt sources, the
//! recipe's packages with all their dependencies and the Essential ones, so that a new
//! version of any of them (a libc6 security update) makes a new root.
//!
//! apt resolves them as mmdebstrap does, from the machine's package lists (`apt-get update`
//! fills them) but with the image's sources only ([`super::sources`]): none of the machine's
//! other sources, pins or installed packages, and no Recommends. mmdebstrap installs in two
//! steps, the Essential packages with apt (a `dist-upgrade` from an empty dpkg status), then
//! the recipe's; each is simulated (`apt-get -s`) from an empty status, and the key takes
//! both sets. Both read the lists under apt's lock ([`super::lists_lock`]): an `apt-get
//! update` (apt-daily's) between them would give them different versions.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::lists_lock;
use crate::image::packages::Package;
use crate::process::check_timeout;

/// Deadline of one simulation (seconds: apt reads the lists into memory and resolves).
pub const SIMULATE_TIMEOUT: Duration = Duration::from_secs(120);

/// apt configured for a simulation in `scratch` (an empty directory of this build) with the
/// sources `lines`, from the package lists in `lists`: no configuration, other source, pin or
/// installed package of the machine counts (nor its hooks run), nothing is locked or written
/// outside `scratch`.
struct Apt {
    /// Read instead of the machine's configuration (`APT_CONFIG`).
    config: PathBuf,
    /// The `-o` options.
    options: Vec<String>,
}

impl Apt {
    fn new(scratch: &Path, lines: &[String], lists: &Path) -> anyhow::Result<Self> {
        let sources = scratch.join("sources.list");
        let status = scratch.join("status");
        let empty = scratch.join("empty");
        let config = scratch.join("apt.conf");
        fs::create_dir_all(&empty)
            .with_context(|| format!("failed to create {}", empty.display()))?;
        let path = |p: &Path| p.display().to_string();
        for (file, text) in [
            (&sources, lines.join("\n") + "\n"),
            (&status, String::new()),
            // apt reads this first: then neither apt.conf.d nor apt.conf of the machine.
            (
                &config,
                format!(
                    "Dir::Etc::Parts \"{}\";\nDir::Etc::Main \"{}\";\n",
                    path(&empty),
                    path(&empty.join("apt.conf"))
                ),
            ),
        ] {
            fs::write(file, text).with_context(|| format!("failed to write {}", file.display()))?;
        }
        let options = options(&sources, &status, &empty, lists, scratch);
        Ok(Self { config, options })
    }

    /// `apt-get` so configured, for its arguments.
    fn get(&self) -> Command {
        let mut cmd = Command::new("apt-get");
        cmd.env("APT_CONFIG", &self.config).args(&self.options);
        cmd
    }
}

/// The `-o` options of [`Apt`].
fn options(
    sources: &Path,
    status: &Path,
    empty: &Path,
    lists: &Path,
    scratch: &Path,
) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    [
        ("Dir::Etc::SourceList", path(sources)),
        ("Dir::Etc::SourceParts", path(empty)),
        ("Dir::Etc::Preferences", path(&empty.join("preferences"))),
        ("Dir::Etc::PreferencesParts", path(empty)),
        ("Dir::State::status", path(status)),
        ("Dir::State::Lists", path(lists)),
        ("Dir::Cache", path(scratch)),
        ("Dir::Cache::pkgcache", String::new()),
        ("Dir::Cache::srcpkgcache", String::new()),
        ("APT::Default-Release", String::new()),
        ("APT::Install-Recommends", "false".to_owned()),
        ("Debug::NoLocking", "true".to_owned()),
    ]
    .into_iter()
    .flat_map(|(key, value)| ["-o".to_owned(), format!("{key}={value}")])
    .collect()
}

/// Every package mmdebstrap's `apt` variant installs with the packages `include` from the
/// sources `lines`, resolved from the lists in `lists`, by name; `scratch` is an empty
/// directory of this build. Waits while an `apt-get update` holds the lists, until
/// `interrupted` says to stop ([`lists_lock::lock`]).
pub fn resolve(
    lines: &[String],
    include: &[&str],
    lists: &Path,
    scratch: &Path,
    interrupted: impl Fn() -> bool,
) -> anyhow::Result<Vec<Package>> {
    let apt = Apt::new(scratch, lines, lists)?;
    let _lists = lists_lock::lock(lists, lists_lock::WAIT_TIMEOUT, interrupted)?;
    let mut install = vec!["install", "apt"];
    install.extend_from_slice(include);
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    for step in [&["dist-upgrade"][..], &install] {
        for package in simulate(&apt, step)? {
            match found.get(&package.name) {
                Some(other) if other != &package => bail!(
                    "apt resolved {} to {} and to {}: run `apt-get update` and build again",
                    package.name,
                    other.spec(),
                    package.spec()
                ),
                _ => {
                    found.insert(package.name.clone(), package);
                }
            }
        }
    }
    if let Some(missing) = include.iter().find(|name| !found.contains_key(**name)) {
        bail!("apt would not install {missing} into the image (is it in images/debian/packages?)");
    }
    Ok(found.into_values().collect())
}

/// The packages `apt-get -s <args>` would install.
fn simulate(apt: &Apt, args: &[&str]) -> anyhow::Result<Vec<Package>> {
    let out = check_timeout(apt.get().args(["-s", "-q"]).args(args), SIMULATE_TIMEOUT).context(
        "failed to resolve the packages of the Debian images: run `apt-get update` \
         (scripts/install-lab-deps does)",
    )?;
    parse_simulation(&out)
}

/// The `Inst NAME (VERSION ARCHIVE… [ARCH])` lines of a simulation, as packages.
fn parse_simulation(text: &str) -> anyhow::Result<Vec<Package>> {
    text.lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .map(|line| {
            parse_inst(line).with_context(|| format!("failed to read apt's line `Inst {line}`"))
        })
        .collect()
}

fn parse_inst(line: &str) -> Option<Package> {
    let (name, rest) = line.split_once(' ')?;
    let inside = rest.split_once('(')?.1.split_once(')')?.0;
    let version = inside.split_whitespace().next()?;
    let arch = inside
        .split_whitespace()
        .last()?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    Some(Package {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: arch.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_packages_of_a_simulation() {
        let out = "Reading package lists...\n\
            Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])\n\
            Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64]) []\n\
            Inst tzdata (2025b-0+deb12u2 Debian:12.15/oldstable [all])\n\
            Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n";
        let packages = parse_simulation(out).unwrap();
        let specs: Vec<String> = packages
            .iter()
            .map(|p| format!("{} {}", p.spec(), p.arch))
            .collect();
        assert_eq!(
            specs,
            [
                "gcc-12-base=12.2.0-14+deb12u1 amd64",
                "libc6=2.36-9+deb12u14 amd64",
                "tzdata=2025b-0+deb12u2 all"
            ]
        );
        assert!(parse_simulation("Inst broken line\n").is_err());
    }

    /// apt's real resolution, from a package list of a local archive: the recipe's packages
    /// with their dependencies and the Essential ones, nothing else, and none of the
    /// machine's own sources.
    #[test]
    fn the_root_is_every_package_apt_would_install() {
        if !crate::process::tool_for_test("apt-get", "a Debian machine has it") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let lists = dir.path().join("lists");
        let scratch = dir.path().join("scratch");
        for d in [&repo, &lists.join("partial"), &scratch] {
            fs::create_dir_all(d).unwrap();
        }
        let stanza = |name: &str, version: &str, extra: &str| {
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}\
                 Filename: ./{name}.deb\nSize: 1\nDescription: {name}\n\n"
            )
        };
        fs::write(
            repo.join("Packages"),
            [
                stanza("apt", "2.6.1", ""),
                stanza("base-files", "12.4", "Essential: yes\n"),
                stanza("sudo", "1.9.13", "Depends: libc6 (>= 2.34)\n"),
                stanza("libc6", "2.36-9+deb12u14", ""),
                stanza("unrelated", "1", ""),
            ]
            .concat(),
        )
        .unwrap();
        let lines = [format!("deb [trusted=yes] file:{} ./", repo.display())];
        // The lists, as `apt-get update` makes them (here from the local archive alone).
        check_timeout(
            Apt::new(&scratch, &lines, &lists).unwrap().get().args([
                "-o",
                "APT::Sandbox::User=root",
                "-q",
                "update",
            ]),
            SIMULATE_TIMEOUT,
        )
        .unwrap();

        // While an update holds the lists, nothing is read from them.
        let update = lists_lock::lock(&lists, SIMULATE_TIMEOUT, || false).unwrap();
        let err = resolve(&lines, &["sudo"], &lists, &scratch, || true).unwrap_err();
        assert!(
            format!("{err:#}").contains("apt to update its package lists"),
            "{err:#}"
        );
        drop(update);

        let root = resolve(&lines, &["sudo"], &lists, &scratch, || false).unwrap();
        let specs: Vec<String> = root.iter().map(Package::spec).collect();
        assert_eq!(
            specs,
            [
                "apt=2.6.1",
                "base-files=12.4",
                "libc6=2.36-9+deb12u14",
                "sudo=1.9.13"
            ]
        );
        let err = resolve(&lines, &["nonexistent"], &lists, &scratch, || false).unwrap_err();
        assert!(format!("{err:#}").contains("apt-get update"), "{err:#}");
    }
}
