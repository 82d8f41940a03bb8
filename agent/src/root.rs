//! `Root`: the directory every path the guest agent reads or writes is taken under.

use std::path::{Component, Path, PathBuf};

/// A path prefix: `/` on a guest, a temporary directory in tests. Paths are joined with chroot
/// semantics, so `..` never climbs above the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    path: PathBuf,
    host: bool,
}

impl Root {
    /// A root at `path`. It is the host root when `path` resolves to `/`; only then does the
    /// agent call sethostname(2) or write `/dev/urandom`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let host = std::fs::canonicalize(&path).is_ok_and(|p| p == Path::new("/"));
        Root { path, host }
    }

    /// True when this root is the running system's `/`.
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `path` (absolute or relative, both taken from the root) inside the root.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in path.as_ref().components() {
            match component {
                Component::Normal(part) => parts.push(part),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let mut out = self.path.clone();
        out.extend(parts);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_absolute_and_relative_paths_under_the_root() {
        let root = Root::new("/tmp/r");
        assert_eq!(root.join("/etc/hostname"), Path::new("/tmp/r/etc/hostname"));
        assert_eq!(root.join("etc/hosts"), Path::new("/tmp/r/etc/hosts"));
        assert_eq!(root.join("/"), Path::new("/tmp/r"));
    }

    #[test]
    fn parent_components_never_escape() {
        let root = Root::new("/tmp/r");
        assert_eq!(
            root.join("/../../etc/passwd"),
            Path::new("/tmp/r/etc/passwd")
        );
        assert_eq!(root.join("/a/b/../../../c"), Path::new("/tmp/r/c"));
        assert_eq!(root.join("./x/./y"), Path::new("/tmp/r/x/y"));
    }

    #[test]
    fn only_slash_is_the_host() {
        assert!(Root::new("/").is_host());
        let dir = tempfile::tempdir().unwrap();
        assert!(!Root::new(dir.path()).is_host());
        assert!(!Root::new("/nonexistent/metaboot/root").is_host());
    }
}
