//! `random_seed` (cloud-init's `seed_random`): meta_data.json's `random_seed` and cloud-config
//! `random_seed.data` mixed into `/dev/urandom` — only on the host root.

use std::io::Write;

use base64::Engine;
use nix::fcntl::OFlag;

use crate::apply::write_files;
use crate::root::Root;
use crate::userdata::cloud_config::RandomSeed;

/// The kernel's entropy pool.
pub const URANDOM: &str = "/dev/urandom";
/// Most seed bytes written (nova sends 512).
pub const MAX_SEED_BYTES: usize = 64 * 1024;

/// Seed failures.
#[derive(Debug, thiserror::Error)]
pub enum RandomSeedError {
    #[error("meta_data.json random_seed is not valid base64")]
    MetaData,
    #[error("random_seed.data")]
    Data(#[source] write_files::WriteFilesError),
    #[error("Failed to write {URANDOM}")]
    Write(#[source] std::io::Error),
}

/// The seed: `random_seed.data` (decoded per `encoding`) followed by the metadata seed, at most
/// [`MAX_SEED_BYTES`]. What is cut is user data's: the metadata seed (nova's, made by the
/// host) is always written whole, however much user data gives.
pub fn seed_bytes(
    meta: Option<&str>,
    config: Option<&RandomSeed>,
) -> Result<Vec<u8>, RandomSeedError> {
    let mut host = Vec::new();
    if let Some(meta) = meta {
        let compact: String = meta.chars().filter(|c| !c.is_whitespace()).collect();
        host = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| RandomSeedError::MetaData)?;
        host.truncate(MAX_SEED_BYTES);
    }
    let mut seed = Vec::new();
    if let Some(config) = config
        && let Some(data) = &config.data
    {
        let (encoding, _) = write_files::parse_encoding(config.encoding.as_deref());
        seed = write_files::decode("random_seed", data, encoding).map_err(RandomSeedError::Data)?;
        seed.truncate(MAX_SEED_BYTES - host.len());
    }
    seed.extend(host);
    Ok(seed)
}

/// Writes the seed into the root's `/dev/urandom` (mixes it into the pool; no entropy is
/// credited); the caller makes sure the root is the host's.
pub fn feed_urandom(root: &Root, seed: &[u8]) -> Result<(), RandomSeedError> {
    root.open_file(URANDOM, OFlag::O_WRONLY, 0, true, false)
        .and_then(|mut f| f.write_all(seed))
        .map_err(RandomSeedError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_config_data_and_metadata_seed() {
        let config = RandomSeed {
            data: Some("aGVsbG8=".into()),
            encoding: Some("b64".into()),
        };
        assert_eq!(
            seed_bytes(Some("IHdvcmxk"), Some(&config)).unwrap(),
            b"hello world"
        );
        assert_eq!(seed_bytes(None, None).unwrap(), b"");
        assert!(matches!(
            seed_bytes(Some("@@@"), None),
            Err(RandomSeedError::MetaData)
        ));
    }

    #[test]
    fn seed_is_bounded() {
        let big = base64::engine::general_purpose::STANDARD.encode(vec![1u8; MAX_SEED_BYTES + 10]);
        assert_eq!(seed_bytes(Some(&big), None).unwrap().len(), MAX_SEED_BYTES);
        // User data's seed is what is cut: nova's is written whole.
        let config = RandomSeed {
            data: Some("x".repeat(MAX_SEED_BYTES)),
            encoding: None,
        };
        let seed = seed_bytes(Some("IHdvcmxk"), Some(&config)).unwrap();
        assert_eq!(seed.len(), MAX_SEED_BYTES);
        assert!(seed.ends_with(b"x world"), "nova's seed is cut");
    }
}
