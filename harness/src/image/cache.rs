//! Where the harness caches packages, images and run logs (outside the checkout, so a fresh
//! clone finds them again), and the cache key of an image: a SHA-256 over every input, so an
//! image is rebuilt only when one of them changed.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// The cache of a root user (the lab needs root): `<cache>/packages`, `<cache>/images`,
/// `<cache>/runs`.
pub const SYSTEM_CACHE_DIR: &str = "/var/cache/metaboot";

/// The cache directory when neither `--cache` nor `METABOOT_CACHE` names one:
/// [`SYSTEM_CACHE_DIR`] for root, `$XDG_CACHE_HOME/metaboot` (else `~/.cache/metaboot`) for
/// anyone else, who cannot write under /var/cache.
pub fn default_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(SYSTEM_CACHE_DIR);
    }
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("metaboot")
}

/// Bump when the builder itself changes what it makes from the same inputs.
pub const BUILDER_VERSION: u32 = 1;

/// Hex characters of the digest used in directory names.
pub const KEY_LEN: usize = 16;

/// Collects named inputs; the order of `add` calls is part of the key.
#[derive(Debug, Clone)]
pub struct InputHash {
    hasher: Sha256,
    inputs: Vec<String>,
}

impl InputHash {
    /// A hash seeded with the image kind and [`BUILDER_VERSION`].
    pub fn new(kind: &str) -> Self {
        let mut this = Self {
            hasher: Sha256::new(),
            inputs: Vec::new(),
        };
        this.add(
            &format!("builder:{kind}"),
            BUILDER_VERSION.to_string().as_bytes(),
        );
        this
    }

    /// Adds one input: its name and its bytes, both length-prefixed so inputs cannot run together.
    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        for part in [name.as_bytes(), bytes] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        let digest = hex::encode(Sha256::digest(bytes));
        self.inputs
            .push(format!("{name} sha256:{}", &digest[..KEY_LEN]));
    }

    /// The names of the inputs with a short digest each, for the image manifest.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The key: the first [`KEY_LEN`] hex characters of the digest.
    pub fn key(&self) -> String {
        let digest = hex::encode(self.hasher.clone().finalize());
        digest[..KEY_LEN].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_lives_outside_the_checkout() {
        let dir = default_dir();
        assert!(
            !dir.starts_with(crate::workspace::root()),
            "{}",
            dir.display()
        );
        if nix::unistd::geteuid().is_root() {
            assert_eq!(dir, std::path::Path::new(SYSTEM_CACHE_DIR));
        } else {
            assert!(dir.ends_with("metaboot"), "{}", dir.display());
        }
    }

    #[test]
    fn the_key_changes_with_any_input_and_not_otherwise() {
        let key = |inputs: &[(&str, &[u8])]| {
            let mut h = InputHash::new("tiny");
            for (name, bytes) in inputs {
                h.add(name, bytes);
            }
            h.key()
        };
        let base = key(&[("init", b"a"), ("agent", b"b")]);
        assert_eq!(base.len(), KEY_LEN);
        assert_eq!(base, key(&[("init", b"a"), ("agent", b"b")]));
        assert_ne!(base, key(&[("init", b"a"), ("agent", b"c")]));
        assert_ne!(
            base,
            key(&[("init", b"ab"), ("agent", b"")]),
            "inputs must not run together"
        );
        assert_ne!(base, key(&[("agent", b"b"), ("init", b"a")]));
    }
}
