//! The distributions whose default sources and mirrors metaboot knows (Debian, Ubuntu and its
//! derivatives), their default sources lists, and which format the default is written in on
//! an image.

use super::deb822;
use super::files::SOURCES_DIR;
use crate::root::Root;

/// The mirrors Debian's cloud.cfg gives cloud-init (`system_info: package_mirrors`).
pub const DEFAULT_PRIMARY: &str = "https://deb.debian.org/debian";
pub const DEFAULT_SECURITY: &str = "https://deb.debian.org/debian-security";
/// Ubuntu's mirrors as cloud-init's cc_apt_configure defaults them (`get_default_mirrors`):
/// the archive and its security mirror for [`UBUNTU_ARCHIVE_ARCHES`], the ports archive for
/// both on every other architecture.
pub const UBUNTU_PRIMARY: &str = "http://archive.ubuntu.com/ubuntu";
pub const UBUNTU_SECURITY: &str = "http://security.ubuntu.com/ubuntu";
pub const UBUNTU_PORTS: &str = "http://ports.ubuntu.com/ubuntu-ports";
/// The architectures of Ubuntu's main archive (cloud-init's `PRIMARY_ARCHES`).
pub const UBUNTU_ARCHIVE_ARCHES: [&str; 2] = ["amd64", "i386"];

/// Debian's sources.list as cloud-init renders it by default (its `sources.list.debian.tmpl`;
/// `$SECURITY_SUITE` is `RELEASE-security`, or `RELEASE/updates` before bullseye).
const DEBIAN_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
deb $MIRROR $RELEASE main
deb-src $MIRROR $RELEASE main
deb $SECURITY $SECURITY_SUITE main
deb-src $SECURITY $SECURITY_SUITE main
deb $MIRROR $RELEASE-updates main
deb-src $MIRROR $RELEASE-updates main
deb $MIRROR $RELEASE-backports main
deb-src $MIRROR $RELEASE-backports main
";

/// Ubuntu's sources.list as cloud-init renders it by default (its `sources.list.ubuntu.tmpl`,
/// classic one-line format): every component in the release and its `-updates`, `-backports`
/// and `-security` suites, the last from the security mirror.
const UBUNTU_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
deb $MIRROR $RELEASE main restricted universe multiverse
deb $MIRROR $RELEASE-updates main restricted universe multiverse
deb $MIRROR $RELEASE-backports main restricted universe multiverse
deb $SECURITY $RELEASE-security main restricted universe multiverse
";

/// The distributions whose default sources.list and mirrors metaboot knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    Debian,
    Ubuntu,
}

impl Distro {
    /// The distribution of an os-release text: Ubuntu when `ID` or a word of `ID_LIKE` is
    /// `ubuntu` (Linux Mint, Pop!_OS), Debian when `ID` is `debian`; else `Err` with the `ID`.
    pub fn of_os_release(text: &str) -> Result<Distro, String> {
        let value = |key| crate::apply::locale::shell_value(text, key).unwrap_or_default();
        let (id, like) = (value("ID"), value("ID_LIKE"));
        if id == "ubuntu" || like.split_whitespace().any(|word| word == "ubuntu") {
            Ok(Distro::Ubuntu)
        } else if id == "debian" {
            Ok(Distro::Debian)
        } else {
            Err(id)
        }
    }

    /// The default primary and security mirrors on `arch` (a dpkg architecture).
    pub fn mirrors(self, arch: &str) -> (&'static str, &'static str) {
        match self {
            Distro::Debian => (DEFAULT_PRIMARY, DEFAULT_SECURITY),
            Distro::Ubuntu if UBUNTU_ARCHIVE_ARCHES.contains(&arch) => {
                (UBUNTU_PRIMARY, UBUNTU_SECURITY)
            }
            Distro::Ubuntu => (UBUNTU_PORTS, UBUNTU_PORTS),
        }
    }

    /// cloud-init's name of the distribution, that of its deb822 sources file.
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    /// The file of its sources in deb822 format, `ubuntu.sources` or `debian.sources`.
    pub fn deb822_file(self) -> String {
        deb822_file(self.name())
    }

    /// The keyring of its archive, its sources' default `Signed-By`.
    pub(super) fn keyring(self) -> &'static str {
        match self {
            Distro::Debian => deb822::DEBIAN_KEYRING,
            Distro::Ubuntu => deb822::UBUNTU_KEYRING,
        }
    }

    /// The default sources list, in deb822 format or in the one-line one.
    pub(super) fn template(self, deb822: bool) -> &'static str {
        match (self, deb822) {
            (Distro::Debian, false) => DEBIAN_TEMPLATE,
            (Distro::Ubuntu, false) => UBUNTU_TEMPLATE,
            (Distro::Debian, true) => deb822::DEBIAN_TEMPLATE,
            (Distro::Ubuntu, true) => deb822::UBUNTU_TEMPLATE,
        }
    }
}

/// The file of the sources in deb822 format of the distribution cloud-init names `name`.
pub fn deb822_file(name: &str) -> String {
    format!("{SOURCES_DIR}/{name}.sources")
}

/// Whether the distribution's default sources are written in deb822 format on this image:
/// when its deb822 file is already there (an image never writes the same sources twice), or
/// when os-release names a release whose cloud-init writes that file
/// ([`deb822::release_is_deb822`]: Ubuntu 24.04 and later, Debian 13 and later). Else the
/// one-line `/etc/apt/sources.list`, as before.
pub fn default_is_deb822(root: &Root, distro: Distro, os_release: &str) -> bool {
    root.exists(distro.deb822_file()) || deb822::release_is_deb822(os_release)
}

/// The dpkg name of the architecture this agent was built for.
pub fn dpkg_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        other => other,
    }
}
