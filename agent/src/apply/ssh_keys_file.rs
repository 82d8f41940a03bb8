//! Where sshd reads a user's authorized keys: `AuthorizedKeysFile` of the image's
//! `/etc/ssh/sshd_config` (and the files its `Include` lines name, in order: sshd takes a
//! keyword's first value), its `%h`, `%u`, `%U` and `%%` filled in, a relative path taken from
//! the home; `StrictModes`. As cloud-init's `extract_authorized_keys` chooses, a user's keys
//! go to the first of those files that names the user (`%u`, `%h`) or lies in the home, else
//! to `~/.ssh/authorized_keys`. An image that keeps keys in `/etc/ssh/authorized_keys/%u` then
//! gets them there.

use std::path::{Component, Path, PathBuf};

use crate::apply::sshd::SSHD_CONFIG;
use crate::apply::users::User;
use crate::root::Root;

/// sshd's own default (`.ssh/authorized_keys`; sshd also reads `.ssh/authorized_keys2`).
pub const DEFAULT_KEYS_FILE: &str = ".ssh/authorized_keys";
/// Most `Include` levels followed (sshd's own limit is 16).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// What the image's sshd says about authorized keys files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFiles {
    /// `AuthorizedKeysFile`'s patterns, in order.
    pub patterns: Vec<String>,
    /// `StrictModes` (default yes): a file or directory on the way that others may write is
    /// not used.
    pub strict: bool,
}

impl Default for KeysFiles {
    fn default() -> Self {
        Self {
            patterns: vec![DEFAULT_KEYS_FILE.to_owned()],
            strict: true,
        }
    }
}

/// Reads the image's sshd configuration; what it does not set keeps sshd's default.
pub fn sshd_settings(root: &Root) -> KeysFiles {
    let mut found = Found::default();
    read_config(root, Path::new(SSHD_CONFIG), 0, &mut found);
    let mut settings = KeysFiles::default();
    if let Some(patterns) = found.patterns.filter(|p| !p.is_empty()) {
        settings.patterns = patterns;
    }
    if let Some(strict) = found.strict {
        settings.strict = strict;
    }
    settings
}

/// The first value of each keyword seen so far.
#[derive(Default)]
struct Found {
    patterns: Option<Vec<String>>,
    strict: Option<bool>,
}

fn read_config(root: &Root, path: &Path, depth: usize, found: &mut Found) {
    let Ok(Some(bytes)) = root.read_optional(path) else {
        return;
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return;
    }
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or((line, ""));
        let value = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        if keyword.eq_ignore_ascii_case("match") {
            // What follows applies to some connections only.
            return;
        }
        if keyword.eq_ignore_ascii_case("include") && depth < MAX_INCLUDE_DEPTH {
            for pattern in value.split_whitespace() {
                for included in expand_include(root, pattern) {
                    read_config(root, &included, depth + 1, found);
                }
            }
        } else if keyword.eq_ignore_ascii_case("authorizedkeysfile") && found.patterns.is_none() {
            let patterns = value.split_whitespace().map(|p| p.trim_matches('"'));
            found.patterns = Some(patterns.map(str::to_owned).collect());
        } else if keyword.eq_ignore_ascii_case("strictmodes") && found.strict.is_none() {
            found.strict = Some(!value.trim().eq_ignore_ascii_case("no"));
        }
    }
}

/// The files an `Include` pattern names, sorted: a path relative to `/etc/ssh`, a `*` or `?`
/// in its last component only.
fn expand_include(root: &Root, pattern: &str) -> Vec<PathBuf> {
    let path = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut names: Vec<String> = root
        .entries_or_none(dir)
        .into_iter()
        .filter_map(|(entry, _)| entry.into_string().ok())
        .filter(|entry| glob_match(&name, entry))
        .collect();
    names.sort();
    names.into_iter().map(|entry| dir.join(entry)).collect()
}

/// `pattern` (`*` any run, `?` one character) matches all of `name`; names starting with a dot
/// match only a pattern that starts with one (as glob(3) does).
fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

/// One of `AuthorizedKeysFile`'s patterns for `user`: `%%`, `%h` (the home), `%u` (the name),
/// `%U` (the uid) filled in; a relative path is in the home.
pub fn render(pattern: &str, user: &User) -> PathBuf {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(&user.home),
            Some('u') => out.push_str(&user.name),
            Some('U') => out.push_str(&user.uid.to_string()),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    if out.starts_with('/') {
        PathBuf::from(out)
    } else {
        Path::new(&user.home).join(out)
    }
}

/// The files `user`'s keys may go to, in the order they are tried: each pattern that names the
/// user (`%u`, `%h`) or lies in the home (cloud-init's rule: a shared file such as
/// `/etc/ssh/authorized_keys` is not one user's), then `~/.ssh/authorized_keys`. A file whose
/// path has `..` is left out.
pub fn candidates(settings: &KeysFiles, user: &User) -> Vec<PathBuf> {
    let home = Path::new(&user.home);
    let mut out: Vec<PathBuf> = settings
        .patterns
        .iter()
        .filter(|pattern| !pattern.eq_ignore_ascii_case("none"))
        .map(|pattern| (pattern, render(pattern, user)))
        .filter(|(pattern, path)| {
            pattern.contains("%u") || pattern.contains("%h") || in_home(path, user)
        })
        .map(|(_, path)| path)
        .filter(|path| !path.components().any(|c| c == Component::ParentDir))
        .collect();
    let default = home.join(DEFAULT_KEYS_FILE);
    if !out.contains(&default) {
        out.push(default);
    }
    out
}

/// Whether `path` lies inside `user`'s home (cloud-init compares with the home and a `/`): a
/// home of `/` holds nothing, else every shared path (`/etc/ssh/authorized_keys`) would be
/// that user's.
pub fn in_home(path: &Path, user: &User) -> bool {
    let home = Path::new(&user.home);
    let named = home.components().any(|c| matches!(c, Component::Normal(_)));
    named && path != home && path.starts_with(home)
}

/// [`candidates`] before `~/.ssh/authorized_keys`: the files the image's sshd reads instead of
/// it, tried first.
pub fn elsewhere(settings: &KeysFiles, user: &User) -> impl Iterator<Item = PathBuf> {
    let default = Path::new(&user.home).join(DEFAULT_KEYS_FILE);
    candidates(settings, user)
        .into_iter()
        .take_while(move |path| *path != default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "bob".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/bob".into(),
            shell: "/bin/sh".into(),
        }
    }

    fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let at = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(at, text).unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn patterns_are_filled_in_as_sshd_does() {
        assert_eq!(
            render("%h/.ssh/keys", &user()),
            Path::new("/home/bob/.ssh/keys")
        );
        assert_eq!(
            render(".ssh/authorized_keys", &user()),
            Path::new("/home/bob/.ssh/authorized_keys")
        );
        assert_eq!(
            render("/etc/ssh/keys/%u-%U.%%", &user()),
            Path::new("/etc/ssh/keys/bob-1001.%")
        );
        assert_eq!(render("/k/%x%", &user()), Path::new("/k/%x%"));
    }

    #[test]
    fn the_files_of_the_user_first_then_the_default() {
        let settings = KeysFiles {
            patterns: vec![
                "/etc/ssh/authorized_keys".into(),
                "/etc/ssh/keys/%u".into(),
                ".ssh/authorized_keys2".into(),
                "/srv/../etc/%u".into(),
                "none".into(),
            ],
            strict: true,
        };
        assert_eq!(
            candidates(&settings, &user()),
            [
                PathBuf::from("/etc/ssh/keys/bob"),
                PathBuf::from("/home/bob/.ssh/authorized_keys2"),
                PathBuf::from("/home/bob/.ssh/authorized_keys"),
            ]
        );
        assert_eq!(
            candidates(&KeysFiles::default(), &user()),
            [PathBuf::from("/home/bob/.ssh/authorized_keys")]
        );
    }

    /// A user whose home is `/` (a service account's) has no claim on a shared keys file.
    #[test]
    fn a_home_of_slash_holds_no_shared_file() {
        let svc = User {
            home: "/".into(),
            ..user()
        };
        let settings = KeysFiles {
            patterns: vec!["/etc/ssh/authorized_keys".into(), "/srv/%u".into()],
            strict: true,
        };
        assert_eq!(
            candidates(&settings, &svc),
            [
                PathBuf::from("/srv/bob"),
                PathBuf::from("/.ssh/authorized_keys")
            ]
        );
        assert!(!in_home(Path::new("/etc/ssh/authorized_keys"), &svc));
        assert!(in_home(Path::new("/home/bob/.ssh"), &user()));
        assert!(!in_home(Path::new("/home/bob"), &user()));
        assert!(!in_home(Path::new("/home/bobby/.ssh"), &user()));
    }

    #[test]
    fn the_first_value_wins_includes_in_place_and_match_blocks_left_out() {
        let (_dir, root) = root_with(&[
            (
                "/etc/ssh/sshd_config",
                "# sshd\nInclude /etc/ssh/sshd_config.d/*.conf\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nStrictModes no\n",
            ),
            (
                "/etc/ssh/sshd_config.d/20-keys.conf",
                "authorizedkeysfile=/etc/ssh/keys/%u  .ssh/authorized_keys\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-match.conf",
                "Match User admin\n  AuthorizedKeysFile /admin/%u\n",
            ),
            (
                "/etc/ssh/sshd_config.d/.hidden.conf",
                "AuthorizedKeysFile /hidden\n",
            ),
            (
                "/etc/ssh/sshd_config.d/30-x.conf.bak",
                "AuthorizedKeysFile /bak\n",
            ),
        ]);
        assert_eq!(
            sshd_settings(&root),
            KeysFiles {
                patterns: vec!["/etc/ssh/keys/%u".into(), ".ssh/authorized_keys".into()],
                strict: false,
            }
        );
        // No configuration: sshd's defaults.
        let (_dir, root) = root_with(&[]);
        assert_eq!(sshd_settings(&root), KeysFiles::default());
    }

    #[test]
    fn include_globs() {
        assert!(glob_match("*.conf", "50-cloud-init.conf"));
        assert!(!glob_match("*.conf", "50.conf.dpkg-old"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("*", ".hidden"));
        assert!(glob_match(".*", ".hidden"));
    }
}
