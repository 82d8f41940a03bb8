//! SSH authorized keys (docs/protocol.md §5.2): merge by key blob (an entry whose base64 matches a
//! new key is replaced, so options and comments update without duplicates), `~/.ssh` 0700, the file
//! 0600, both owned by the user; root's keys prefixed when `disable_root` is on. A home, `~/.ssh`
//! or `authorized_keys` that is a symlink or belongs to someone else is refused (see `home`).
//! An image whose sshd reads keys elsewhere (`AuthorizedKeysFile /etc/ssh/keys/%u`) gets them
//! there (`ssh_keys_file.rs`), on a path of directories that are not symlinks and belong to the
//! user or root (and, with `StrictModes`, that nobody else may write), as sshd will check it.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::FileStat;

use crate::apply::home;
use crate::apply::ssh_keys_file::{self, DEFAULT_KEYS_FILE, KeysFiles};
use crate::apply::users::User;
use crate::fsutil::dir::read_whole;
use crate::fsutil::{Dir, PathError, Refused, WriteOptions, check_owner};
use crate::root::Root;
use metaboot_proto::ssh_key;

/// cloud-init's `disable_root_opts`: root's keys only print where to log in instead.
pub const DISABLE_ROOT_OPTS: &str = r#"no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \"$USER\" rather than the user \"$DISABLE_USER\".';echo;sleep 10;exit 142""#;
/// Most keys written for one user (a bound on what metadata and user data can add).
pub const MAX_KEYS: usize = 1024;

/// The keys file in `~/.ssh`.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";

/// Failures writing keys.
#[derive(Debug, thiserror::Error)]
pub enum SshKeysError {
    #[error("Keys for {user} not written")]
    Refused {
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("More than {MAX_KEYS} keys for {0}")]
    TooMany(String),
}

/// The base64 blob of an authorized_keys line (`[options] type blob [comment]`); `None` for
/// comments, blank lines and lines without a recognised key type.
pub fn key_blob(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let tokens = ssh_key::line_tokens(line);
    let at = ssh_key::type_position(&tokens)?;
    tokens.get(at + 1).copied()
}

/// Merges `keys` into the text of an authorized_keys file: every existing line is kept except
/// that a line with the same blob as a new key becomes that key (and later lines with the same
/// blob are dropped); keys not present are appended. New keys are de-duplicated by blob (the
/// first wins).
pub fn merge(existing: &str, keys: &[String]) -> String {
    let mut lines: Vec<String> = existing.lines().map(str::to_owned).collect();
    let mut seen: Vec<String> = Vec::new();
    for key in keys
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
    {
        let Some(blob) = key_blob(key) else {
            if !lines.iter().any(|line| line.trim() == key) {
                lines.push(key.to_owned());
            }
            continue;
        };
        if seen.iter().any(|b| b == blob) {
            continue;
        }
        seen.push(blob.to_owned());
        let mut replaced = false;
        lines.retain_mut(|line| {
            if key_blob(line) != Some(blob) {
                return true;
            }
            if replaced {
                return false;
            }
            replaced = true;
            *line = key.to_owned();
            true
        });
        if !replaced {
            lines.push(key.to_owned());
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The keys of a metadata or user-data value: one per non-empty line.
pub fn split_keys<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `disable_root_opts` with `$USER` (the default user or `NONE`) and `$DISABLE_USER` (`root`)
/// filled in.
pub fn root_prefix(opts: &str, default_user: Option<&str>) -> String {
    opts.replace("$USER", default_user.unwrap_or("NONE"))
        .replace("$DISABLE_USER", "root")
}

/// A refused path as [`SshKeysError::Refused`]; any other failure to `op` `path` as the
/// [`PathError`] it is.
fn refused_or(
    user: &User,
    op: &'static str,
    path: PathBuf,
) -> impl FnOnce(io::Error) -> SshKeysError {
    move |source| {
        if source.get_ref().is_some_and(|inner| inner.is::<Refused>()) {
            SshKeysError::Refused {
                user: user.name.clone(),
                source,
            }
        } else {
            PathError::fail(op, path)(source).into()
        }
    }
}

/// Writes `keys` into the file sshd reads `user`'s keys from under `root` (`~/.ssh/authorized_keys`
/// unless the image's `AuthorizedKeysFile`, read into `settings` by
/// [`ssh_keys_file::sshd_settings`], names another of the user's), merged with what is there.
/// Returns the file written.
pub fn write_user_keys(
    root: &Root,
    settings: &KeysFiles,
    user: &User,
    keys: &[String],
) -> Result<PathBuf, SshKeysError> {
    if keys.len() > MAX_KEYS {
        return Err(SshKeysError::TooMany(user.name.clone()));
    }
    for path in ssh_keys_file::elsewhere(settings, user) {
        match write_keys_at(root, user, &path, settings, keys) {
            Ok(written) => return Ok(written),
            // As cloud-init: a file sshd would not use is passed over for the next one.
            Err(SshKeysError::Refused { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    write_home_keys(root, user, keys)
}

/// [`write_user_keys`] into `~/.ssh/authorized_keys`.
fn write_home_keys(root: &Root, user: &User, keys: &[String]) -> Result<PathBuf, SshKeysError> {
    // Every check first (home, ~/.ssh, authorized_keys), then the changes, on descriptors.
    let (home, _) = home::open_home(root, user).map_err(refused_or(
        user,
        "create",
        root.host_path(&user.home),
    ))?;
    let ssh = home::open_user_dir(&home, ".ssh", user).map_err(refused_or(
        user,
        "create",
        home.child_path(".ssh"),
    ))?;
    let path = ssh.child_path(AUTHORIZED_KEYS);
    let existing = home::read_user_file(&ssh, AUTHORIZED_KEYS, user)
        .map_err(refused_or(user, "read", path.clone()))?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    ssh.set_owner_mode(Some(user.owner()), home::SSH_DIR_MODE)
        .map_err(PathError::fail("create", ssh.path()))?;
    let merged = merge(&existing, keys);
    ssh.write_atomic(
        OsStr::new(AUTHORIZED_KEYS),
        merged.as_bytes(),
        &WriteOptions::exact(0o600, Some(user.owner())),
    )?;
    Ok(path)
}

/// The keys file sshd reads for `user` under `root` (the first of
/// [`ssh_keys_file::candidates`] that exists and passes the checks writing it makes: no
/// symlink on the way, the user's or root's, one link; else `~/.ssh/authorized_keys`) and its
/// text, `None` when that file is missing. Creates nothing.
pub fn read_user_keys(
    root: &Root,
    settings: &KeysFiles,
    user: &User,
) -> Result<(PathBuf, Option<String>), PathError> {
    for path in ssh_keys_file::elsewhere(settings, user) {
        let Ok(Some((dir, name))) = walk_to(root, user, &path, settings, false) else {
            continue;
        };
        if let Ok(Some((bytes, _))) = read_checked(&dir, &name, user, settings) {
            return Ok((path, Some(String::from_utf8_lossy(&bytes).into_owned())));
        }
    }
    let default = Path::new(&user.home).join(DEFAULT_KEYS_FILE);
    Ok((default, read_home_keys(root, user)?))
}

/// [`read_user_keys`] from `~/.ssh/authorized_keys`.
fn read_home_keys(root: &Root, user: &User) -> Result<Option<String>, PathError> {
    let home = home::existing_home(root, user)
        .map_err(PathError::fail("open", root.host_path(&user.home)))?;
    let Some(home) = home else {
        return Ok(None);
    };
    let ssh = home::existing_user_dir(&home, ".ssh", user)
        .map_err(PathError::fail("open", home.child_path(".ssh")))?;
    let Some(ssh) = ssh else {
        return Ok(None);
    };
    let bytes = home::read_user_file(&ssh, AUTHORIZED_KEYS, user)
        .map_err(PathError::fail("read", ssh.child_path(AUTHORIZED_KEYS)))?;
    Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// The directory holding `path` (opened component by component from the root, never through
/// a symlink; each directory the user's or root's and, when `StrictModes`, writable by neither
/// group nor others) and the file's name; `None` when a directory is missing and not `create`.
/// Directories created are root's (0755), or the user's (0700) inside the home; a directory
/// that someone else made first is never chowned.
fn walk_to(
    root: &Root,
    user: &User,
    path: &Path,
    settings: &KeysFiles,
    create: bool,
) -> io::Result<Option<(Dir, std::ffi::OsString)>> {
    let name = path
        .file_name()
        .ok_or(io::ErrorKind::InvalidInput)?
        .to_owned();
    let mut dir = root.dir("/", false)?;
    let mut at = PathBuf::from("/");
    for component in path.parent().into_iter().flat_map(Path::components) {
        let Component::Normal(part) = component else {
            continue;
        };
        at.push(part);
        let next = match dir.open_dir(part)? {
            Some(next) => next,
            None if create => {
                let (mode, owner) = if ssh_keys_file::in_home(&at, user) {
                    (home::SSH_DIR_MODE, user.owner())
                } else {
                    (home::HOME_MODE, crate::fsutil::Owner { uid: 0, gid: 0 })
                };
                // Only a directory this walk made gets its owner and mode: one that appeared
                // since `open_dir` found nothing is someone's, judged below as found.
                let (next, created) = dir.create_dir(part, mode)?;
                if created && crate::fsutil::can_chown() {
                    next.set_owner_mode(Some(owner), mode)?;
                }
                next
            }
            None => return Ok(None),
        };
        let stat = next.stat()?;
        check_owner(&stat, next.path().to_owned(), &user.name, user.uid)?;
        if settings.strict && stat.st_mode & 0o022 != 0 {
            return Err(Refused::Writable(next.path().to_owned()).into());
        }
        dir = next;
    }
    Ok(Some((dir, name)))
}

/// The text of file `name` of `dir` and its status, both from the one descriptor, with the
/// checks of [`home::open_user_file`] and, with `StrictModes`, not writable by group or others.
fn read_checked(
    dir: &Dir,
    name: &OsStr,
    user: &User,
    settings: &KeysFiles,
) -> io::Result<Option<(Vec<u8>, FileStat)>> {
    let Some((mut file, stat)) = home::open_user_file(dir, name, user)? else {
        return Ok(None);
    };
    if settings.strict && stat.st_mode & 0o022 != 0 {
        return Err(Refused::Writable(dir.child_path(name)).into());
    }
    read_whole(&mut file, &stat).map(|bytes| Some((bytes, stat)))
}

/// Writes `keys` merged into `path`, a keys file outside `~/.ssh/authorized_keys`: a new file
/// is the user's, 0600; an existing one keeps its mode and owner, those of the file read.
fn write_keys_at(
    root: &Root,
    user: &User,
    path: &Path,
    settings: &KeysFiles,
    keys: &[String],
) -> Result<PathBuf, SshKeysError> {
    let shown = root.host_path(path);
    let (dir, name) = walk_to(root, user, path, settings, true)
        .map_err(refused_or(user, "create", shown.clone()))?
        .ok_or_else(|| PathError::fail("create", shown.clone())(io::ErrorKind::NotFound.into()))?;
    let existing = read_checked(&dir, &name, user, settings).map_err(refused_or(
        user,
        "read",
        shown.clone(),
    ))?;
    let options = match &existing {
        Some((_, stat)) => WriteOptions::keep_from(stat),
        None => WriteOptions::exact(0o600, Some(user.owner())),
    };
    let existing = existing
        .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    dir.write_atomic(&name, merge(&existing, keys).as_bytes(), &options)?;
    Ok(shown)
}

#[cfg(test)]
mod races;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 one@host";
    const K2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABKey2 two@host";

    #[test]
    fn blob_of_plain_and_optioned_keys() {
        assert_eq!(key_blob(K1), Some("AAAAC3NzaC1lZDI1NTE5AAAAIKey1"));
        let opt = format!("{} {K2}", root_prefix(DISABLE_ROOT_OPTS, Some("debian")));
        assert_eq!(key_blob(&opt), Some("AAAAB3NzaC1yc2EAAAADAQABAAABKey2"));
        assert_eq!(
            key_blob("no-pty ecdsa-sha2-nistp256 AAAAE2 c"),
            Some("AAAAE2")
        );
        assert_eq!(key_blob("# comment ssh-rsa AAAA"), None);
        assert_eq!(key_blob(""), None);
        assert_eq!(key_blob("garbage"), None);
    }

    #[test]
    fn merge_appends_new_keys_and_keeps_foreign_lines() {
        let existing = "# managed by hand\nssh-rsa AAAAforeign me@laptop\n";
        let merged = merge(existing, &[K1.to_owned()]);
        assert_eq!(merged, format!("{existing}{K1}\n"));
    }

    #[test]
    fn same_blob_replaces_in_place_and_never_duplicates() {
        let existing = format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 old-comment\n{K2}\n");
        let merged = merge(&existing, &[K1.to_owned(), K1.to_owned()]);
        assert_eq!(merged, format!("{K1}\n{K2}\n"));
        // A second merge of the same keys changes nothing.
        assert_eq!(merge(&merged, &[K1.to_owned(), K2.to_owned()]), merged);
        // Duplicates already in the file collapse to one when the key is written.
        let doubled = format!("{K1}\n{K1}\n");
        assert_eq!(merge(&doubled, &[K1.to_owned()]), format!("{K1}\n"));
    }

    #[test]
    fn options_change_replaces_the_line() {
        let prefixed = format!("no-pty {K1}");
        assert_eq!(
            merge(&format!("{K1}\n"), std::slice::from_ref(&prefixed)),
            format!("{prefixed}\n")
        );
    }

    #[test]
    fn root_prefix_names_the_default_user() {
        let prefix = root_prefix(DISABLE_ROOT_OPTS, Some("debian"));
        assert!(
            prefix
                .contains(r#"Please login as the user \"debian\" rather than the user \"root\"."#)
        );
        assert!(root_prefix(DISABLE_ROOT_OPTS, None).contains(r#"\"NONE\""#));
    }

    #[test]
    fn writes_with_modes_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let user = User {
            name: "bob".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/bob".into(),
            shell: "/bin/sh".into(),
        };
        let path = write_user_keys(&root, &KeysFiles::default(), &user, &[K1.to_owned()]).unwrap();
        write_user_keys(
            &root,
            &KeysFiles::default(),
            &user,
            &[K1.to_owned(), K2.to_owned()],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{K1}\n{K2}\n")
        );
        let file = std::fs::metadata(&path).unwrap();
        let ssh = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!((file.mode() & 0o777, ssh.mode() & 0o777), (0o600, 0o700));
        if crate::testutil::require_root() {
            assert_eq!((file.uid(), file.gid(), ssh.uid()), (1000, 1000, 1000));
        }
        let too_many: Vec<String> = (0..=MAX_KEYS)
            .map(|i| format!("ssh-ed25519 AAAA{i}"))
            .collect();
        assert!(matches!(
            write_user_keys(&root, &KeysFiles::default(), &user, &too_many),
            Err(SshKeysError::TooMany(_))
        ));
    }

    /// A user whose home is `/` gets no directory on the way to a shared keys file: each is
    /// root's (0755), as for a path outside any home.
    #[test]
    fn a_home_of_slash_makes_no_directory_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let svc = User {
            name: "svc".into(),
            uid: 998,
            gid: 998,
            home: "/".into(),
            shell: "/usr/sbin/nologin".into(),
        };
        let settings = KeysFiles {
            patterns: vec!["/etc/ssh/keys/%u".into()],
            strict: false,
        };
        let path = write_user_keys(&root, &settings, &svc, &[K1.to_owned()]).unwrap();
        assert_eq!(path, root.host_path("/etc/ssh/keys/svc"));
        for made in ["/etc", "/etc/ssh", "/etc/ssh/keys"] {
            let meta = std::fs::metadata(root.host_path(made)).unwrap();
            assert_eq!(meta.mode() & 0o777, home::HOME_MODE, "{made}");
            if crate::testutil::require_root() {
                assert_eq!(meta.uid(), 0, "{made}");
            }
        }
    }

    #[test]
    fn split_keys_handles_multi_line_values() {
        assert_eq!(split_keys([format!("{K1}\n\n{K2}\n").as_str()]), [K1, K2]);
    }
}
