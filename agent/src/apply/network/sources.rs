//! Whether ifupdown reads the file metaboot writes: `/etc/network/interfaces` reads another
//! file only through its `source` and `source-directory` lines, and each `ifup` reads them its
//! own way ([`Ifup`]); lines of sourced files count too. Without one, `interfaces.d/50-metaboot`
//! is never applied while the step reports it written.

use std::path::{Path, PathBuf};

use super::links::name_matches;
use crate::root::Root;

/// Most files read through `source` lines (a loop of them ends there).
const MAX_SOURCED_FILES: usize = 32;

/// The `ifup` of an image, as its file tells (`ifup` a link to `busybox`, to `ifupdown`, or
/// neither), and how each reads `source` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ifup {
    /// Debian's ifupdown (a program of its own; interfaces(5)): `source PATTERN…` (shell
    /// globs) and any keyword starting with `source-dir` (`source-directory DIR…`, DIR a glob
    /// too), whose files are those with run-parts names (`^[a-zA-Z0-9_-]+$`); a relative path
    /// is taken from the directory of the file with the line.
    Debian,
    /// ifupdown-ng (`ifup` a link to its multi-call `ifupdown`): `source PATTERN` (one shell
    /// glob; since 0.12, a literal path before) and exactly `source-directory DIR` (a literal
    /// directory, every regular file in it); relative paths are taken from its working
    /// directory.
    Ng,
    /// busybox's applet (`ifup` a link to `busybox`): `source FILE` (a literal path) and any
    /// keyword starting with `source-dir` (a literal directory, every name not starting with
    /// `.`); relative paths are taken from its working directory.
    Busybox,
}

impl Ifup {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Ifup::Debian => "Debian's ifupdown",
            Ifup::Ng => "ifupdown-ng",
            Ifup::Busybox => "busybox's ifup",
        }
    }

    /// Whether `keyword` is its `source-directory`.
    fn directory_keyword(self, keyword: &str) -> bool {
        match self {
            Ifup::Debian | Ifup::Busybox => keyword.starts_with("source-dir"),
            Ifup::Ng => keyword == "source-directory",
        }
    }

    /// The path that word `index` of a `source` line means in a file of directory `here`; `None`
    /// for a relative one taken from the working directory of `ifup`, which this check does not
    /// know. Debian's joins the line's rest to the directory, so that only its first word is
    /// relative to it.
    fn resolve(self, here: &Path, index: usize, word: &str) -> Option<PathBuf> {
        let path = Path::new(word);
        if path.is_absolute() {
            Some(path.to_owned())
        } else {
            (self == Ifup::Debian && index == 0).then(|| here.join(path))
        }
    }
}

/// The `ifup`s among `paths` that are there, each once; Debian's when none is.
pub fn ifups(root: &Root, paths: &[&str]) -> Vec<Ifup> {
    let mut found = Vec::new();
    for path in paths.iter().filter(|p| root.exists(p)) {
        let target = root.link_target(path).ok().flatten();
        let ifup = match target.as_deref().and_then(Path::file_name) {
            Some(name) if name == "busybox" => Ifup::Busybox,
            Some(name) if name == "ifupdown" => Ifup::Ng,
            _ => Ifup::Debian,
        };
        if !found.contains(&ifup) {
            found.push(ifup);
        }
    }
    if found.is_empty() {
        found.push(Ifup::Debian);
    }
    found
}

/// Whether `main` reads `file` (absolute paths under `root`) as `ifup` reads it: through its
/// `source` and `source-directory` lines, or those of the files they read. A glob this check
/// does not follow (a wildcard in a directory, a `[…]` class) counts as reading it: only a
/// file that surely reads nothing of it is refused.
pub fn reads(root: &Root, ifup: Ifup, main: &str, file: &str) -> bool {
    let file = Path::new(file);
    let mut queue = vec![PathBuf::from(main)];
    let mut seen = Vec::new();
    while let Some(current) = queue.pop() {
        if seen.contains(&current) || seen.len() == MAX_SOURCED_FILES {
            continue;
        }
        let text = root.read_optional_string(&current).ok().flatten();
        let here = current.parent().unwrap_or(Path::new("/")).to_owned();
        seen.push(current);
        for line in text.unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let directory = match keyword {
                "source" => false,
                _ if ifup.directory_keyword(keyword) => true,
                _ => continue,
            };
            // Only Debian's reads every word of the line.
            let count = if ifup == Ifup::Debian { usize::MAX } else { 1 };
            for (index, word) in words.take(count).enumerate() {
                let Some(path) = ifup.resolve(&here, index, word) else {
                    continue;
                };
                let found = match (ifup, directory) {
                    (Ifup::Busybox, false) => {
                        let found = path == file;
                        queue.push(path);
                        found
                    }
                    (_, false) => source(root, &path, file, &mut queue),
                    (Ifup::Debian, true) => {
                        path.to_string_lossy().contains(['*', '?', '['])
                            || source_directory(root, &path, file, &mut queue, run_parts_name)
                    }
                    (Ifup::Ng, true) => source_directory(root, &path, file, &mut queue, |_| true),
                    (Ifup::Busybox, true) => {
                        source_directory(root, &path, file, &mut queue, |name| {
                            !name.starts_with('.')
                        })
                    }
                };
                if found {
                    return true;
                }
            }
        }
    }
    false
}

/// A `source PATTERN` line read as a shell glob: true when it reads `file` (or cannot be told);
/// the other files it reads go to `queue`.
fn source(root: &Root, pattern: &Path, file: &Path, queue: &mut Vec<PathBuf>) -> bool {
    let (Some(dir), Some(last)) = (pattern.parent(), pattern.file_name()) else {
        return false;
    };
    let (dir_text, last) = (dir.to_string_lossy(), last.to_string_lossy());
    if dir_text.contains(['*', '?', '[']) || last.contains('[') {
        return true;
    }
    let matches = |name: &str| name_matches(&last, name) && !name.starts_with('.');
    if file.parent() == Some(dir)
        && file
            .file_name()
            .is_some_and(|name| matches(&name.to_string_lossy()))
    {
        return true;
    }
    for (name, _) in root.entries_or_none(dir) {
        if matches(&name.to_string_lossy()) {
            queue.push(dir.join(name));
        }
    }
    false
}

/// Whether `name` is a run-parts name, the only ones Debian's `source-directory` reads.
fn run_parts_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A `source-directory DIR` line, of which `ifup` reads the files whose names are `named`:
/// true when it reads `file`; the other files it reads go to `queue`.
fn source_directory(
    root: &Root,
    dir: &Path,
    file: &Path,
    queue: &mut Vec<PathBuf>,
    named: impl Fn(&str) -> bool,
) -> bool {
    if file.parent() == Some(dir)
        && file
            .file_name()
            .is_some_and(|name| named(&name.to_string_lossy()))
    {
        return true;
    }
    for (name, _) in root.entries_or_none(dir) {
        if named(&name.to_string_lossy()) {
            queue.push(dir.join(name));
        }
    }
    false
}
