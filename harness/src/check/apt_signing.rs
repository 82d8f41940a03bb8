//! The signature of the lab's package repository: a signing key made for one repository in a
//! GnuPG home of its own (deleted with it), the repository's `Release` file (the index's size
//! and SHA-256) clear-signed into `InRelease`, and the public key ASCII-armored for the user
//! data's `apt: sources: …: key:`. apt in the guest checks `InRelease` against that key only
//! (`signed-by`): a guest that took the key wrong cannot install from the repository.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use sha2::Digest as _;

/// The key's user id.
const USER_ID: &str = "metaboot lab repository <apt@metaboot.invalid>";
/// How far before now the `Release` file is dated: a guest whose clock is behind the host's
/// must not find it "not valid yet".
const DATED_BEFORE: Duration = Duration::from_secs(24 * 3600);

/// A signing key in its own GnuPG home.
pub struct SigningKey {
    home: tempfile::TempDir,
    /// The public key, ASCII-armored.
    pub armored: String,
}

impl SigningKey {
    /// Makes an ed25519 signing key (no passphrase).
    pub fn new() -> anyhow::Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("metaboot-apt-key-")
            .tempdir()
            .context("failed to create a GnuPG home")?;
        let mut key = Self {
            home,
            armored: String::new(),
        };
        key.gpg(&["--quick-generate-key", USER_ID, "ed25519", "sign", "never"])?;
        let armored = key.gpg(&["--armor", "--export", USER_ID])?;
        key.armored = String::from_utf8(armored).context("gpg's armored key is not text")?;
        Ok(key)
    }

    /// The repository's `InRelease`: `Release` for `packages` (the `Packages` index)
    /// clear-signed.
    pub fn in_release(&self, packages: &[u8]) -> anyhow::Result<Vec<u8>> {
        let release = release(packages, SystemTime::now() - DATED_BEFORE);
        let file = self.home.path().join("Release");
        std::fs::write(&file, release)
            .with_context(|| format!("failed to write {}", file.display()))?;
        let signed = self.home.path().join("InRelease");
        self.gpg(&[
            "--local-user",
            USER_ID,
            "--digest-algo",
            "SHA512",
            "--output",
            path_str(&signed)?,
            "--clearsign",
            path_str(&file)?,
        ])?;
        std::fs::read(&signed).with_context(|| format!("failed to read {}", signed.display()))
    }

    fn gpg(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--quiet",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
            ])
            .args(["--passphrase", ""])
            .args(args)
            .output()
            .context("failed to run gpg (install-lab-deps installs it)")?;
        if !output.status.success() {
            bail!(
                "gpg {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output.stdout)
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        // The agent gpg started for this home ends with it.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// A flat repository's `Release` file: its date and the `Packages` index's SHA-256 and size
/// (no suite or codename: apt compares those with the source line's `./`).
pub fn release(packages: &[u8], date: SystemTime) -> String {
    format!(
        "Origin: metaboot lab\nLabel: metaboot lab\nDate: {}\nSHA256:\n {} {} Packages\n",
        httpdate::fmt_http_date(date),
        hex::encode(sha2::Sha256::digest(packages)),
        packages.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_the_index_by_hash_and_size() {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            release(b"Package: x\n", date),
            "Origin: metaboot lab\nLabel: metaboot lab\nDate: Tue, 14 Nov 2023 22:13:20 GMT\n\
             SHA256:\n c2884d921b791fbd3c1502d39094cd562642944d7149c89fba0f9900eed65bb3 11 \
             Packages\n"
        );
    }

    #[test]
    fn in_release_verifies_with_the_armored_key_alone() {
        for tool in ["gpg", "gpgv"] {
            if Command::new(tool).arg("--version").output().is_err() {
                let why = format!("{tool} is not installed (scripts/install-lab-deps)");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipping: {why}");
                return;
            }
        }
        let key = SigningKey::new().unwrap();
        assert!(
            key.armored
                .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{}",
            key.armored
        );
        let signed = key.in_release(b"Package: x\n").unwrap();
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(
            text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
            "{text}"
        );
        assert!(text.contains(" 11 Packages\n"), "{text}");
        // As apt checks it: gpgv with a keyring of that one key, dearmored.
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("lab.gpg");
        let dearmored = Command::new("sh")
            .arg("-c")
            .arg(format!("gpg --dearmor > {}", keyring.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(key.armored.as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(dearmored.success());
        let file = dir.path().join("InRelease");
        std::fs::write(&file, &signed).unwrap();
        let verified = Command::new("gpgv")
            .arg("--keyring")
            .arg(&keyring)
            .arg(&file)
            .output()
            .unwrap();
        assert!(verified.status.success(), "{verified:?}");
        // Changed by one byte, it no longer verifies.
        std::fs::write(&file, text.replace(" 11 Packages", " 12 Packages")).unwrap();
        let forged = Command::new("gpgv")
            .arg("--keyring")
            .arg(&keyring)
            .arg(&file)
            .output()
            .unwrap();
        assert!(!forged.status.success());
    }
}
