//! The apt sources the Debian images are built from: the machine's own configuration
//! (`/etc/apt/sources.list`, `sources.list.d/*.list` and `*.sources`), keeping only Debian's
//! archives for the suite (no mirror is hard-coded, and no third-party repository of the
//! machine ends up in an image).
//!
//! An entry is Debian's when apt's list of it says `Origin: Debian` (its `InRelease` or
//! `Release` file under /var/lib/apt/lists, written by `apt-get update`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::bail;

/// Where apt keeps its configuration.
pub const APT_ETC: &str = "/etc/apt";

/// Where `apt-get update` keeps the archives' Release files.
pub const APT_LISTS: &str = "/var/lib/apt/lists";

/// The only component an image takes packages from.
pub const COMPONENT: &str = "main";

/// One archive to build from: `deb [signed-by=…] URI SUITE main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The archive's URI (`http://deb.debian.org/debian`).
    pub uri: String,
    /// `bookworm`, `bookworm-updates`, `bookworm-security`.
    pub suite: String,
    /// The keyring apt checks it with, if the configuration names one.
    pub signed_by: Option<String>,
}

impl Source {
    /// The one-line form mmdebstrap takes as a mirror argument.
    pub fn line(&self) -> String {
        match &self.signed_by {
            Some(keyring) => format!(
                "deb [signed-by={keyring}] {} {} {COMPONENT}",
                self.uri, self.suite
            ),
            None => format!("deb {} {} {COMPONENT}", self.uri, self.suite),
        }
    }

    /// The names apt gives this archive's Release files under [`APT_LISTS`]
    /// (`deb.debian.org_debian_dists_bookworm_InRelease`).
    fn list_names(&self) -> [String; 2] {
        let uri = self
            .uri
            .split_once("://")
            .map_or(self.uri.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        let base = format!("{uri}/dists/{}", self.suite).replace('/', "_");
        [format!("{base}_InRelease"), format!("{base}_Release")]
    }
}

/// The suites of a release an image takes: the release, its updates and its security archive.
pub fn suites(release: &str) -> [String; 3] {
    [
        release.to_owned(),
        format!("{release}-updates"),
        format!("{release}-security"),
    ]
}

/// The machine's Debian archives for `release` (see the module doc), in configuration order.
///
/// Fails, saying what to do, when there is none or when apt has no list of one.
pub fn debian_sources(release: &str) -> anyhow::Result<Vec<Source>> {
    let configured = configured(Path::new(APT_ETC))?;
    let wanted = suites(release);
    let mut found = Vec::new();
    for source in configured {
        if !wanted.contains(&source.suite) || found.contains(&source) {
            continue;
        }
        match origin(Path::new(APT_LISTS), &source) {
            Some(origin) if origin == "Debian" => found.push(source),
            Some(_) => {}
            None => bail!(
                "apt has no package list for `{}`: run `apt-get update` (scripts/install-lab-deps does)",
                source.line()
            ),
        }
    }
    if !found.iter().any(|s| s.suite == release) {
        bail!(
            "no Debian archive for {release} (main) in the apt sources under {APT_ETC}: add one, e.g. `deb http://deb.debian.org/debian {release} main`, and run `apt-get update`"
        );
    }
    Ok(found)
}

/// Every `deb` entry with the [`COMPONENT`] configured under `etc` (an `/etc/apt`).
pub fn configured(etc: &Path) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    let main = etc.join("sources.list");
    if let Some(text) = read_optional(&main)? {
        sources.extend(parse_one_line(&text));
    }
    let dir = etc.join("sources.list.d");
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => bail!("failed to list {}: {err}", dir.display()),
    };
    // apt reads them in name order.
    files.sort();
    for file in files {
        let Some(text) = read_optional(&file)? else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("list") => sources.extend(parse_one_line(&text)),
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    Ok(sources)
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => bail!("failed to read {}: {err}", path.display()),
    }
}

/// `deb [opt=val …] URI SUITE COMPONENT…` lines; `deb-src` and comments are skipped.
pub fn parse_one_line(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(after) => match after.split_once(']') {
                Some((options, rest)) => (options, rest),
                None => continue,
            },
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if !words.any(|c| c == COMPONENT) {
            continue;
        }
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
            .map(str::to_owned);
        sources.push(Source {
            uri: uri.to_owned(),
            suite: suite.to_owned(),
            signed_by,
        });
    }
    sources
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`, `Signed-By:`, `Enabled:`).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // A continuation line (a multi-line field, e.g. an inline Signed-By key).
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let words = |key: &str| {
            get(key)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no"))
            || !words("types").contains(&"deb")
            || !words("components").contains(&COMPONENT)
        {
            continue;
        }
        // A key written inline (several lines) cannot be passed as a path: apt then falls back
        // to its trusted keyrings, which hold Debian's keys.
        let signed_by = get("signed-by")
            .filter(|v| !v.contains('\n') && v.starts_with('/'))
            .map(str::to_owned);
        for uri in words("uris") {
            for suite in words("suites") {
                sources.push(Source {
                    uri: uri.to_owned(),
                    suite: suite.to_owned(),
                    signed_by: signed_by.clone(),
                });
            }
        }
    }
    sources
}

/// The `Origin:` of the archive's Release file in `lists`, if apt has one.
fn origin(lists: &Path, source: &Source) -> Option<String> {
    source.list_names().iter().find_map(|name| {
        let text = fs::read(lists.join(name)).ok()?;
        let text = String::from_utf8_lossy(&text);
        // An InRelease file is clear-signed: its fields follow the armour's header block.
        let fields = match text.strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----") {
            Some(signed) => signed.split_once("\n\n").map_or("", |(_, rest)| rest),
            None => &text,
        };
        fields
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Origin:"))
            .map(|v| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_entries_keep_debs_with_main_and_their_keyring() {
        let text = "# the archive\ndeb http://deb.debian.org/debian bookworm main contrib\n\
            deb-src http://deb.debian.org/debian bookworm main\n\
            deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://m.example/debian/ bookworm-updates main # c\n\
            deb https://download.docker.com/linux/debian bookworm stable\n\
            deb [broken http://x bookworm main\n";
        let sources = parse_one_line(text);
        assert_eq!(
            sources,
            [
                Source {
                    uri: "http://deb.debian.org/debian".into(),
                    suite: "bookworm".into(),
                    signed_by: None,
                },
                Source {
                    uri: "https://m.example/debian/".into(),
                    suite: "bookworm-updates".into(),
                    signed_by: Some("/usr/share/keyrings/x.gpg".into()),
                },
            ]
        );
        assert_eq!(
            sources[1].line(),
            "deb [signed-by=/usr/share/keyrings/x.gpg] https://m.example/debian/ bookworm-updates main"
        );
        assert_eq!(
            sources[1].list_names()[0],
            "m.example_debian_dists_bookworm-updates_InRelease"
        );
    }

    #[test]
    fn deb822_stanzas_expand_every_uri_and_suite() {
        let text = "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\n\
            Suites: bookworm bookworm-updates\nComponents: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
            Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n\n\
            Types: deb\nURIs: http://off\nSuites: bookworm\nComponents: main\nEnabled: no\n\n\
            Types: deb-src\nURIs: http://src\nSuites: bookworm\nComponents: main\n\n\
            Types: deb\nURIs: http://inline\nSuites: bookworm\nComponents: main\n\
            Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n";
        let sources = parse_deb822(text);
        let lines: Vec<String> = sources.iter().map(Source::line).collect();
        assert_eq!(
            lines,
            [
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
                "deb https://deb.nodesource.com/node_20.x nodistro main",
                "deb http://inline bookworm main",
            ]
        );
    }

    #[test]
    fn only_archives_whose_release_says_debian_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lists = dir.path();
        let debian = Source {
            uri: "http://deb.debian.org/debian".into(),
            suite: "bookworm".into(),
            signed_by: None,
        };
        let other = Source {
            uri: "http://packages.example/php".into(),
            suite: "bookworm".into(),
            signed_by: None,
        };
        fs::write(
            lists.join("deb.debian.org_debian_dists_bookworm_InRelease"),
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nLabel: Debian\n",
        )
        .unwrap();
        fs::write(
            lists.join("packages.example_php_dists_bookworm_Release"),
            "Origin: Example\n",
        )
        .unwrap();
        assert_eq!(origin(lists, &debian).as_deref(), Some("Debian"));
        assert_eq!(origin(lists, &other).as_deref(), Some("Example"));
        let missing = Source {
            suite: "bookworm-updates".into(),
            ..debian
        };
        assert_eq!(origin(lists, &missing), None);
    }

    #[test]
    fn the_machines_configuration_reads_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        fs::write(
            etc.join("sources.list"),
            "deb http://a/debian bookworm main\n",
        )
        .unwrap();
        fs::create_dir(etc.join("sources.list.d")).unwrap();
        fs::write(
            etc.join("sources.list.d/b.sources"),
            "Types: deb\nURIs: http://b/debian\nSuites: bookworm-security\nComponents: main\n",
        )
        .unwrap();
        fs::write(
            etc.join("sources.list.d/c.list.save"),
            "deb http://c x main\n",
        )
        .unwrap();
        let uris: Vec<String> = configured(etc)
            .unwrap()
            .into_iter()
            .map(|s| s.uri)
            .collect();
        assert_eq!(uris, ["http://a/debian", "http://b/debian"]);
        assert_eq!(
            suites("bookworm"),
            ["bookworm", "bookworm-updates", "bookworm-security"]
        );
    }
}
