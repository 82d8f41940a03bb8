//! The distribution's sources in deb822 format, as cloud-init writes them: since 23.4 a
//! rewritten sources list goes to `/etc/apt/sources.list.d/<distribution>.sources` when its
//! text is deb822 (`Types:`, `URIs:`, `Suites:`, `Components:` fields); since 24.1 the one-line
//! `/etc/apt/sources.list` then steps aside (Ubuntu's note pointing to the new file written in
//! it, removed elsewhere), so that apt never reads a source twice; since 25.1 a mirror's `key`
//! is its section's `Signed-By`.
//!
//! Which format the distribution's default takes is cloud-init's build flag
//! `APT_DEB822_SOURCE_LIST_FILE`: on in cloud-init since 23.4, turned off by Ubuntu's package on
//! its releases before 24.04, absent from Debian 12's cloud-init (22.4). metaboot, one binary
//! for every release, reads the same answer off the image (`super::default_is_deb822`).

use crate::apply::locale::shell_value;

/// What Ubuntu's images hold in `/etc/apt/sources.list` since 24.04, and what cloud-init puts
/// there after writing `ubuntu.sources` (its `UBUNTU_DEFAULT_APT_SOURCES_LIST`): the same text
/// is left as it is.
pub const UBUNTU_SOURCES_LIST_NOTE: &str = "\
# Ubuntu sources have moved to the /etc/apt/sources.list.d/ubuntu.sources
# file, which uses the deb822 format. Use deb822-formatted .sources files
# to manage package sources in the /etc/apt/sources.list.d/ directory.
# See the sources.list(5) manual page for details.
";

/// The first Ubuntu release whose cloud-init writes `ubuntu.sources` (24.04, noble).
pub const UBUNTU_FIRST: (u32, u32) = (24, 4);
/// The first Debian release whose cloud-init writes `debian.sources` (13, trixie).
pub const DEBIAN_FIRST: u32 = 13;

/// The keyrings of the distributions' archives, the default `Signed-By`.
pub const UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Ubuntu's sources as cloud-init's `sources.list.ubuntu.deb822.tmpl` renders them: every
/// component in the release, `-updates` and `-backports` from the mirror, `-security` from the
/// security mirror, each checked against the mirror's `key` when one is given.
pub const UBUNTU_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
Types: deb
URIs: $MIRROR
Suites: $RELEASE $RELEASE-updates $RELEASE-backports
Components: main universe restricted multiverse
Signed-By: $PRIMARY_SIGNED_BY

## Security updates: as above, from the security mirror.
Types: deb
URIs: $SECURITY
Suites: $RELEASE-security
Components: main universe restricted multiverse
Signed-By: $SECURITY_SIGNED_BY
";

/// Debian's sources as cloud-init's `sources.list.debian.deb822.tmpl` renders them (binary
/// and source packages of `main`).
pub const DEBIAN_TEMPLATE: &str = "\
## Note, this file is written by metaboot on first boot of an instance, as cloud-init does.
## Keep the image's file with `apt: {preserve_sources_list: true}` in user data, or add
## sources in /etc/apt/sources.list.d.
Types: deb deb-src
URIs: $MIRROR
Suites: $RELEASE $RELEASE-updates $RELEASE-backports
Components: main
Signed-By: $PRIMARY_SIGNED_BY

## Security updates: as above, from the security mirror.
Types: deb deb-src
URIs: $SECURITY
Suites: $SECURITY_SUITE
Components: main
Signed-By: $SECURITY_SIGNED_BY
";

/// The parameters only the two templates above use: the `Signed-By` of each section, the
/// mirror's key file when `primary`/`security` gives a `key` (the security one defaulting to the
/// primary's), else the archive's `keyring` (cloud-init 25.1's `primary_key`/`security_key`).
pub fn signed_by(
    keyring: &str,
    primary_key: Option<&str>,
    security_key: Option<&str>,
) -> [(&'static str, String); 2] {
    let primary = primary_key.unwrap_or(keyring);
    [
        ("PRIMARY_SIGNED_BY", primary.to_owned()),
        (
            "SECURITY_SIGNED_BY",
            security_key.unwrap_or(primary).to_owned(),
        ),
    ]
}

/// Whether os-release names a release whose cloud-init writes the distribution's sources in
/// deb822 format: Ubuntu from 24.04 on, Debian from 13 on, by its own `ID` (a derivative's
/// `VERSION_ID` numbers its own releases).
pub fn release_is_deb822(os_release: &str) -> bool {
    let id = shell_value(os_release, "ID").unwrap_or_default();
    let Some(version) = shell_value(os_release, "VERSION_ID") else {
        return false;
    };
    let mut numbers = version.split('.').map(str::parse::<u32>);
    let (Some(Ok(major)), minor) = (numbers.next(), numbers.next()) else {
        return false;
    };
    let minor = match minor {
        None => 0,
        Some(Ok(minor)) => minor,
        Some(Err(_)) => return false,
    };
    match id.as_str() {
        "ubuntu" => (major, minor) >= UBUNTU_FIRST,
        "debian" => major >= DEBIAN_FIRST,
        _ => false,
    }
}

/// cloud-init's `is_deb822_sources_format`: no line starts `deb ` or `deb-src `, and one starts
/// `Types: `, `URIs: `, `Suites: ` or `Components: `.
pub fn is_deb822(text: &str) -> bool {
    if text
        .lines()
        .any(|line| line.starts_with("deb ") || line.starts_with("deb-src "))
    {
        return false;
    }
    text.lines().any(|line| {
        ["Types: ", "URIs: ", "Suites: ", "Components: "]
            .iter()
            .any(|field| line.starts_with(field))
    })
}

/// The line a shortened `Suites:` field keeps as it was, inside its section.
const REDACTED: &str = "# metaboot disable_suites redacted: ";
/// The line above a section left with no suite, and the start of each of its lines.
const SECTION_DISABLED: &str = "## Entry disabled by metaboot, due to disable_suites\n";
const LINE_DISABLED: &str = "# disabled by metaboot: ";

/// cloud-init's `disable_suites` on a deb822 text: each section's `Suites:` loses the `disabled`
/// suites (the field as it was kept above it, commented), and a section left with none is
/// commented out whole, its field as it was. Sections end at a blank line.
pub fn disable_suites(text: &str, disabled: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut section = Vec::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if bare.trim().is_empty() {
            close(&mut out, &mut section);
            out.push_str(line);
        } else if line.starts_with('#') && section.is_empty() {
            out.push_str(line);
        } else if let Some(field) = bare.strip_prefix("Suites:") {
            let suites: Vec<&str> = field.split_whitespace().collect();
            let kept: Vec<&str> = suites
                .iter()
                .copied()
                .filter(|suite| !disabled.iter().any(|d| d == suite))
                .collect();
            if kept == suites {
                section.push(Line::Kept(line.to_owned()));
            } else {
                section.push(Line::Suites {
                    was: line.to_owned(),
                    kept: kept.join(" "),
                });
            }
        } else {
            section.push(Line::Kept(line.to_owned()));
        }
    }
    close(&mut out, &mut section);
    out
}

/// A line of a section being read.
enum Line {
    Kept(String),
    /// A `Suites:` field that lost some: as it `was` (with its line end), and what is `kept`.
    Suites {
        was: String,
        kept: String,
    },
}

/// Appends the section read so far, commented out whole when no suite is left in it.
fn close(out: &mut String, section: &mut Vec<Line>) {
    if section.is_empty() {
        return;
    }
    let has_suite = section.iter().any(|line| match line {
        Line::Kept(text) => text
            .strip_prefix("Suites:")
            .is_some_and(|field| !field.trim().is_empty()),
        Line::Suites { kept, .. } => !kept.is_empty(),
    });
    if has_suite {
        for line in section.drain(..) {
            match line {
                Line::Kept(text) => out.push_str(&text),
                Line::Suites { was, kept } => {
                    out.push_str(REDACTED);
                    out.push_str(&was);
                    let end = if was.ends_with('\n') { "\n" } else { "" };
                    out.push_str(&format!("Suites: {kept}{end}"));
                }
            }
        }
        return;
    }
    out.push_str(SECTION_DISABLED);
    for line in section.drain(..) {
        let (Line::Kept(text) | Line::Suites { was: text, .. }) = line;
        out.push_str(LINE_DISABLED);
        out.push_str(&text);
    }
}
