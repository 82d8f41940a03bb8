//! `--key-file` (and `--key-name`): reads one SSH public key into a key pair named after the
//! file, or as the user names it; the name must be one nova's API allows.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::input::InputError;
use crate::store::{KeyPair, StoreError, validate};

/// Largest key file read; public keys are a few KiB at most, so anything bigger is the wrong
/// file.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The key pair in `path`: name = `name`, else the file name without `.pub`; type `ssh`; data
/// = the key line. Refuses a name nova's API would refuse (see `validate::key_name`), private
/// keys, empty files, several keys and anything that is not an SSH public key.
pub fn read_key_file(path: &Path, name: Option<&str>) -> Result<KeyPair, InputError> {
    let shown = path.display();
    // The name first: a file name with a line break in it never reaches a message unescaped.
    let name = match name {
        Some(name) => {
            validate::key_name(name).map_err(|err| {
                InputError(format!(
                    "bad --key-name for key file {:?}: {}",
                    shown.to_string(),
                    reason(err)
                ))
            })?;
            name
        }
        None => name_from_file(path)?,
    };
    let file = File::open(path)
        .map_err(|err| InputError(format!("cannot read key file {shown}: {err}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| InputError(format!("cannot read key file {shown}: {err}")))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(InputError(format!(
            "key file {shown} is larger than {} KiB: pass an SSH public key (.pub)",
            MAX_KEY_FILE_BYTES / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        InputError(format!(
            "key file {shown} is not text: pass an SSH public key (.pub)"
        ))
    })?;
    if text.contains("PRIVATE KEY") {
        return Err(InputError(format!(
            "key file {shown} is a private key: pass the public key instead ({shown}.pub)"
        )));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let line = match keys.as_slice() {
        [] => {
            return Err(InputError(format!(
                "key file {shown} is empty: pass an SSH public key (.pub)"
            )));
        }
        [line] => *line,
        more => {
            return Err(InputError(format!(
                "key file {shown} holds {} keys: pass one key per --key-file",
                more.len()
            )));
        }
    };
    validate::ssh_public_key(name, line)
        .map_err(|err| InputError(format!("key file {shown}: {}", reason(err))))?;
    Ok(KeyPair {
        name: name.to_owned(),
        kind: "ssh".to_owned(),
        data: line.to_owned(),
    })
}

/// The name a key file gives its key pair: the file name without `.pub`, when nova's API
/// allows it.
fn name_from_file(path: &Path) -> Result<&str, InputError> {
    let shown = path.display();
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let name = file_name.strip_suffix(".pub").unwrap_or(file_name);
    validate::key_name(name).map_err(|err| {
        InputError(format!(
            "key file {:?} cannot name its key pair ({}): rename the file or pass --key-name NAME",
            shown.to_string(),
            reason(err)
        ))
    })?;
    Ok(name)
}

fn reason(err: StoreError) -> String {
    match err {
        StoreError::Invalid(reason) => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ed25519 public key (generated for these tests; no private half is kept).
    const ED25519: &str = "ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIHnxQJp7OV7nFXQW4MhVvVAr9U7yZqSbqfGVxNyf0Gw1 test@metaboot";

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn refused(path: &Path) -> String {
        read_key_file(path, None).unwrap_err().0
    }

    #[test]
    fn reads_a_public_key_named_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pair = read_key_file(
            &write(dir.path(), "alice.pub", &format!("{ED25519}\n")),
            None,
        )
        .unwrap();
        assert_eq!(pair.name, "alice");
        assert_eq!(pair.kind, "ssh");
        assert_eq!(pair.data, ED25519);
    }

    #[test]
    fn refuses_what_is_not_one_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let private = write(
            dir.path(),
            "id_ed25519",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        assert!(refused(&private).contains("private key"));
        assert!(refused(&write(dir.path(), "empty.pub", "\n\n")).contains("empty"));
        assert!(
            refused(&write(
                dir.path(),
                "two.pub",
                &format!("{ED25519}\n{ED25519}\n")
            ))
            .contains("2 keys")
        );
        assert!(refused(&write(dir.path(), "junk.pub", "hello world\n")).contains("no key type"));
        assert!(
            refused(&write(dir.path(), "b64.pub", "ssh-rsa !!!notbase64\n")).contains("base64")
        );
        // Valid base64 of an ed25519 blob, labelled as RSA.
        let relabelled = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(
            refused(&write(dir.path(), "lie.pub", &relabelled))
                .contains("says ssh-rsa but its base64 blob holds a ssh-ed25519 key")
        );
        assert!(refused(&dir.path().join("missing.pub")).contains("cannot read"));
        let big = "x".repeat(usize::try_from(MAX_KEY_FILE_BYTES).unwrap() + 1);
        assert!(refused(&write(dir.path(), "big.pub", &big)).contains("larger"));
    }

    /// `--key-file` and the store check a key with the one check, in the same words: what
    /// one takes the other takes (options before the type, as authorized_keys has them).
    #[test]
    fn a_key_file_is_checked_as_the_store_checks_a_key_pair() {
        let dir = tempfile::tempdir().unwrap();
        let with_options = format!("no-pty,command=\"echo hi\" {ED25519}");
        let pair = read_key_file(&write(dir.path(), "opt.pub", &with_options), None).unwrap();
        assert_eq!(pair.data, with_options);
        assert!(validate::key_pairs(&[pair]).is_ok());

        let relabelled = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        for bad in ["hello world", "ssh-rsa !!!notbase64", relabelled.as_str()] {
            let path = write(dir.path(), "k.pub", bad);
            let from_file = refused(&path);
            let from_store = reason(
                validate::key_pairs(&[KeyPair {
                    name: "k".to_owned(),
                    kind: "ssh".to_owned(),
                    data: bad.to_owned(),
                }])
                .unwrap_err(),
            );
            assert_eq!(
                from_file,
                format!("key file {}: {from_store}", path.display())
            );
        }
    }

    #[test]
    fn a_key_is_named_as_novas_api_allows() {
        let dir = tempfile::tempdir().unwrap();
        let key = format!("{ED25519}\n");
        for (file, want) in [("a.b@host.pub", "a.b@host"), ("my key_1-x", "my key_1-x")] {
            let pair = read_key_file(&write(dir.path(), file, &key), None).unwrap();
            assert_eq!(pair.name, want);
        }
        // `0=a=b` in the EC2 listing would make afterburn drop the key; a line break would
        // forge another key entry.
        for file in ["a=b.pub", "evil\n1=forged.pub", "tab\there.pub", ".pub"] {
            let refused = refused(&write(dir.path(), file, &key));
            assert!(refused.contains("--key-name"), "{refused}");
            assert!(!refused.contains('\n'), "{refused}");
        }
        // --key-name names it apart from its file, under the same rules.
        let odd = write(dir.path(), "id=1.pub", &key);
        let pair = read_key_file(&odd, Some("deploy@ci")).unwrap();
        assert_eq!(
            (pair.name.as_str(), pair.data.as_str()),
            ("deploy@ci", ED25519)
        );
        let refused = read_key_file(&odd, Some("0=x")).unwrap_err().0;
        assert!(refused.contains("bad --key-name"), "{refused}");
    }
}
