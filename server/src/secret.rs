//! The shared secret the agent signs instance ids with and the API checks them against.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

/// Largest secret file accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 4096;

/// Reads the secret: the file's bytes without one trailing newline. An empty secret works (both
/// sides then sign with an empty key, as nova tolerates) but is logged as a warning.
pub fn read_secret(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    let mut bytes = std::fs::read(path).with_context(|| {
        format!(
            "failed to read the shared secret file {}: create it (e.g. `head -c 32 /dev/urandom | base64 > FILE`) or fix the path",
            path.display()
        )
    })?;
    if bytes.len() > MAX_SECRET_BYTES {
        anyhow::bail!(
            "the shared secret file {} is {} bytes; the limit is {MAX_SECRET_BYTES}",
            path.display(),
            bytes.len()
        );
    }
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        tracing::warn!(file = %path.display(), "the shared secret is empty: anyone who can reach the API can forge requests");
    }
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret");
        std::fs::write(&file, "s3cret\n\n").unwrap();
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret\n");
        std::fs::write(&file, vec![b'x'; MAX_SECRET_BYTES + 1]).unwrap();
        assert!(read_secret(&file).is_err());
        assert!(read_secret(&dir.path().join("missing")).is_err());
    }
}
