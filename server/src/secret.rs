//! The shared secret the agent signs instance ids with and the API checks them against. Whoever
//! reads it can sign for any instance, so the file must be private to its owner.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

/// Largest secret file accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 4096;
/// Permission bits the secret file must not have: any access for its group or for others.
pub const FORBIDDEN_SECRET_MODE_BITS: u32 = 0o077;
/// The mode the refusal tells the user to set.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Why the secret file was refused.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "failed to read the shared secret file {}: create it (e.g. `umask 077; head -c 32 \
         /dev/urandom | base64 > FILE`) or fix the path",
        path.display()
    )]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the shared secret file {} cannot be read by {user}, which this runs as: give the file \
         to that user (`chown {owner} {}`, keeping mode {SECRET_FILE_MODE:o})",
        path.display(),
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        /// Who the process is, as the message names it: `user NAME (uid N)` or `uid N`.
        user: String,
        /// What `chown` takes for that user: its name, else its uid.
        owner: String,
    },
    #[error(
        "the shared secret file {} is a directory: a file is expected; give the path of the \
         file that holds the secret (create one with `umask 077; head -c 32 /dev/urandom | \
         base64 > FILE`)",
        path.display()
    )]
    Directory { path: PathBuf },
    #[error("failed to read the shared secret file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the shared secret file {} has mode {mode:04o}: its group and other users must not be \
         able to read it; run `chmod {SECRET_FILE_MODE:o} {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "the shared secret file {} is larger than {MAX_SECRET_BYTES} bytes",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error(
        "the shared secret file {} is empty: with an empty secret anyone who can reach the API \
         can sign for any instance; write one into it (e.g. `umask 077; head -c 32 \
         /dev/urandom | base64 > {}`)",
        path.display(),
        path.display()
    )]
    Empty { path: PathBuf },
}

impl SecretError {
    /// True when the user's file (not the machine) is at fault: the CLI exits 2.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Missing { .. }
                | Self::Unreadable { .. }
                | Self::Directory { .. }
                | Self::TooOpen { .. }
                | Self::TooLarge { .. }
                | Self::Empty { .. }
        )
    }

    /// The error for `source`, met opening or reading `path`: a missing file, one the process
    /// may not read and a directory are the user's to fix (their message says how; the same
    /// faults as `user_file::is_users_fault`'s); anything else is the machine's.
    fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            ErrorKind::NotFound => Self::Missing { path, source },
            ErrorKind::PermissionDenied => {
                let (user, owner) = process_user();
                Self::Unreadable { path, user, owner }
            }
            ErrorKind::IsADirectory => Self::Directory { path },
            _ => Self::Read { path, source },
        }
    }
}

/// The user files are opened as (the effective uid): how a message names it, and what
/// `chown` takes for it.
fn process_user() -> (String, String) {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => (format!("user {} (uid {uid})", user.name), user.name),
        _ => (format!("uid {uid}"), uid.to_string()),
    }
}

/// Reads the secret: the file's bytes without one trailing newline. Refuses a file its group
/// or others may access (before reading it), and an empty secret: nova tolerates one with a
/// warning, but then anyone who can reach the API signs for any instance.
pub fn read_secret(path: &Path) -> Result<Arc<[u8]>, SecretError> {
    let read_error = |source| SecretError::io(path, source);
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let metadata = file.metadata().map_err(read_error)?;
    // A directory opens, and only read(2) refuses it: refused before its mode is judged, so
    // the message is not a `chmod` of the directory.
    if metadata.is_dir() {
        return Err(SecretError::Directory {
            path: path.to_owned(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & FORBIDDEN_SECRET_MODE_BITS != 0 {
        return Err(SecretError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = crate::user_file::read_at_most(&mut file, MAX_SECRET_BYTES)
        .map_err(read_error)?
        .ok_or_else(|| SecretError::TooLarge {
            path: path.to_owned(),
        })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::OpenOptionsExt as _;

    use super::*;

    fn write_private(path: &Path, bytes: &[u8]) {
        let _ = std::fs::remove_file(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
    }

    #[test]
    fn strips_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        write_private(&file, b"s3cret\n");
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret");
        write_private(&file, b"s3cret\r\n");
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret");
        write_private(&file, b"s3cret\n\n");
        assert_eq!(&*read_secret(&file).unwrap(), b"s3cret\n");
        write_private(&file, &[b'x'; MAX_SECRET_BYTES]);
        assert!(read_secret(&file).is_ok());
        write_private(&file, &[b'x'; MAX_SECRET_BYTES + 1]);
        assert!(matches!(
            read_secret(&file),
            Err(SecretError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_the_users_to_create() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = read_secret(&missing).unwrap_err();
        assert!(matches!(err, SecretError::Missing { .. }), "{err}");
        assert!(err.is_user_error());
        let text = err.to_string();
        assert!(
            text.contains(&missing.display().to_string())
                && text.contains("create it")
                && text.contains("or fix the path"),
            "{text}"
        );
    }

    #[test]
    fn a_file_the_process_may_not_read_names_its_user_and_the_chown() {
        let path = Path::new("/etc/metaboot/secret");
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let err = SecretError::io(path, denied);
        assert!(err.is_user_error(), "{err}");
        let uid = nix::unistd::Uid::effective();
        let text = err.to_string();
        assert!(text.contains(&format!("uid {uid}")), "{text}");
        let owner = nix::unistd::User::from_uid(uid)
            .unwrap()
            .map_or_else(|| uid.to_string(), |user| user.name);
        assert!(
            text.contains(&format!("`chown {owner} /etc/metaboot/secret`")),
            "{text}"
        );
        assert!(!text.contains("create it"), "{text}");
    }

    #[test]
    fn other_read_errors_are_the_machines() {
        let path = Path::new("/etc/metaboot/secret");
        for errno in [libc::EIO, libc::EMFILE] {
            let err = SecretError::io(path, std::io::Error::from_raw_os_error(errno));
            assert!(matches!(err, SecretError::Read { .. }), "{errno}: {err}");
            assert!(!err.is_user_error(), "{errno}: {err}");
        }
    }

    /// A directory opens (only read(2) refuses it): it is refused as the user's to fix, the
    /// same whatever its mode, never with a `chmod` of the directory to run.
    #[test]
    fn a_directory_is_refused_as_the_users_saying_a_file_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o700, 0o755] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret(dir.path()).unwrap_err();
            assert!(matches!(err, SecretError::Directory { .. }), "{err}");
            assert!(err.is_user_error(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&dir.path().display().to_string())
                    && text.contains("a file is expected")
                    && !text.contains("chmod"),
                "{text}"
            );
        }
        let err = SecretError::io(
            Path::new("/etc/metaboot"),
            std::io::Error::from_raw_os_error(libc::EISDIR),
        );
        assert!(matches!(err, SecretError::Directory { .. }), "{err}");
        assert!(crate::user_file::is_users_fault(ErrorKind::IsADirectory));
    }

    #[test]
    fn an_empty_secret_is_refused_with_how_to_write_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        for bytes in [&b""[..], b"\n", b"\r\n"] {
            write_private(&file, bytes);
            let err = read_secret(&file).unwrap_err();
            assert!(matches!(err, SecretError::Empty { .. }), "{bytes:?}: {err}");
            assert!(err.is_user_error());
            let text = err.to_string();
            assert!(
                text.contains("is empty") && text.contains(&format!("base64 > {}", file.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn a_file_others_may_read_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        write_private(&file, b"s3cret\n");
        for mode in [0o640, 0o604, 0o644, 0o620, 0o660, 0o700 | 0o001] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret(&file).unwrap_err();
            assert!(err.is_user_error(), "{mode:o}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("run `chmod 600 {}`", file.display())),
                "{text}"
            );
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
        for mode in [0o600, 0o400, 0o700] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(&*read_secret(&file).unwrap(), b"s3cret", "{mode:o}");
        }
    }
}
