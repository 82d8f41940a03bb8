//! Scratch directories of image builds that no build owns any more: each is named after the
//! process that made it (`<prefix><what>.<pid>`), removed by that process when its build ends
//! or fails, and by the next build when the process was killed first.

use std::fs;
use std::path::{Path, PathBuf};

use crate::process::is_alive;

/// `<dir>/<prefix><what>.<pid>`: a scratch path of this process.
pub fn scratch_path(dir: &Path, prefix: &str, what: &str) -> PathBuf {
    dir.join(format!("{prefix}{what}.{}", std::process::id()))
}

/// The PID a scratch name made by [`scratch_path`] with `prefix` carries.
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let (_, pid) = name.strip_prefix(prefix)?.rsplit_once('.')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the scratch paths with `prefix` in `dir` whose process has ended (a build's own,
/// or another running build's, stay); returns those it removed. Best effort: what cannot be
/// removed is left for the next build.
pub fn remove_dead(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner(n, prefix)) else {
            continue;
        };
        if is_alive(pid) {
            continue;
        }
        let path = entry.path();
        // Does not follow a symbolic link: a link is removed, not what it points at.
        let gone = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(err) => Err(err),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above Linux's PID_MAX_LIMIT (2^22): never a process.
    const DEAD_PID: u32 = 1 << 23;

    #[test]
    fn scratch_names_carry_their_process() {
        let path = scratch_path(Path::new("/c/debs"), ".download", "");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(owner(name, ".download"), Some(std::process::id()));
        assert_eq!(owner(".unpack-libc6.0.42", ".unpack-"), Some(42));
        assert_eq!(owner(".tiny-0123abcd.7", ".tiny-"), Some(7));
        assert_eq!(owner(".tiny-0123abcd", ".tiny-"), None);
        assert_eq!(owner(".tiny-x.", ".tiny-"), None);
        assert_eq!(owner(".tiny-x.+7", ".tiny-"), None);
        assert_eq!(owner("tiny-0123abcd.7", ".tiny-"), None);
    }

    #[test]
    fn only_the_scratch_of_ended_processes_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!(".unpack-zlib1g.{DEAD_PID}"));
        fs::create_dir_all(dead.join("usr/lib")).unwrap();
        fs::write(dead.join("usr/lib/libz.so.1"), b"x").unwrap();
        let dead_file = dir.path().join(format!(".unpack-half.{DEAD_PID}"));
        fs::write(&dead_file, b"x").unwrap();
        let ours = scratch_path(dir.path(), ".unpack-", "busybox");
        fs::create_dir(&ours).unwrap();
        let product = dir.path().join("zlib1g_1.2.13_amd64");
        fs::create_dir(&product).unwrap();
        let other_kind = dir.path().join(format!(".tiny-abc.{DEAD_PID}"));
        fs::create_dir(&other_kind).unwrap();

        let mut removed = remove_dead(dir.path(), ".unpack-");
        removed.sort();
        assert_eq!(removed, [dead_file, dead]);
        assert!(ours.is_dir(), "a live build's scratch stays");
        assert!(product.is_dir() && other_kind.is_dir());
        assert!(remove_dead(&dir.path().join("absent"), ".unpack-").is_empty());
    }
}
