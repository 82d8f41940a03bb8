//! Whether ifupdown reads the file metaboot writes: `/etc/network/interfaces` reads another
//! file only through its `source` lines (a path or a shell glob) and `source-directory` lines
//! (any keyword starting with `source-dir`: the files with run-parts names,
//! `^[a-zA-Z0-9_-]+$`, of a directory, itself perhaps a glob), a relative path taken from
//! the directory of the file with the line, as Debian's ifupdown does (interfaces(5)); lines
//! of sourced files count too. Without one, `interfaces.d/50-metaboot` is never applied while
//! the step reports it written. busybox's `ifup` reads no `source` line at all.

use std::path::{Path, PathBuf};

use super::links::name_matches;
use crate::root::Root;

/// Most files read through `source` lines (a loop of them ends there).
const MAX_SOURCED_FILES: usize = 32;
/// The file name of busybox, which `ifup` is a link to on a busybox system.
const BUSYBOX: &str = "busybox";

/// Whether `main` reads `file` (absolute paths under `root`): through its `source` and
/// `source-directory` lines, or those of the files they read. A glob this check does not
/// follow (a wildcard in a directory, a `[…]` class) counts as reading it: only a file that
/// surely reads nothing of it is refused.
pub fn reads(root: &Root, main: &str, file: &str) -> bool {
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
            let (keyword, paths) = (words.next(), words);
            for path in paths {
                let path = here.join(path);
                let found = match keyword {
                    Some("source") => source(root, &path, file, &mut queue),
                    // ifupdown takes any keyword starting with `source-dir`.
                    Some(keyword) if keyword.starts_with("source-dir") => {
                        source_directory(root, &path, file, &mut queue)
                    }
                    _ => false,
                };
                if found {
                    return true;
                }
            }
        }
    }
    false
}

/// A `source PATTERN` line: true when it reads `file` (or cannot be told); the other files it
/// reads go to `queue`.
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

/// A `source-directory DIR` line: true when it reads `file` (or cannot be told: DIR a glob);
/// the other files it reads go to `queue`.
fn source_directory(root: &Root, dir: &Path, file: &Path, queue: &mut Vec<PathBuf>) -> bool {
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return true;
    }
    let named = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
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

/// The first of `ifups` (those there) when every one is a link to busybox, whose `ifup`
/// reads no `source` line.
pub fn busybox_ifup<'a>(root: &Root, ifups: &[&'a str]) -> Option<&'a str> {
    let there: Vec<&str> = ifups.iter().copied().filter(|p| root.exists(p)).collect();
    let busybox = |path: &&str| {
        root.link_target(path)
            .ok()
            .flatten()
            .is_some_and(|target| target.file_name().is_some_and(|n| n == BUSYBOX))
    };
    (!there.is_empty() && there.iter().all(busybox)).then(|| there[0])
}
