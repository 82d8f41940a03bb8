//! One `all` per registry and network namespace. A second `all` over the same registry on the
//! same host would find the namespaces' addresses held only for some of them and serve the
//! rest, half and half with the first; so `all` takes a lock at start, a file under its
//! runtime directory named after the registry and the network namespace it runs in, held
//! (`flock`) until it stops, with its pid in it for the refusal of a second one. Two `all`s in
//! two network namespaces (two hosts over one PostgreSQL), and `all`s over different registries
//! in one namespace, take different locks.
//!
//! The registry is known by what it is, not how `db` spells it: a SQLite file by its device
//! and inode, a PostgreSQL database by its hosts, ports and name (the user and password do
//! not matter; `localhost` and `127.0.0.1` are two spellings this does not join).

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::admin::InputError;
use crate::store::Location;

/// The variable systemd sets to the unit's runtime directory (`RuntimeDirectory=metaboot` in
/// `server/systemd/metaboot-server.service`: `/run/metaboot`).
pub const RUNTIME_DIR_VAR: &str = "RUNTIME_DIRECTORY";
/// The runtime directory of `all` run by root outside its unit: the unit's own.
pub const ROOT_RUNTIME_DIR: &str = "/run/metaboot";
/// Where the network namespace of the process is seen; its inode names the namespace.
pub const OWN_NETNS: &str = "/proc/self/ns/net";
/// Mode of the lock file (the holder's pid in it).
pub const LOCK_FILE_MODE: u32 = 0o640;
/// Mode of a runtime directory made for the lock.
pub const RUNTIME_DIR_MODE: u32 = 0o750;
/// Tries at taking the lock when its holder stopped (and removed the file) between this
/// process's open and its lock; more than a few means something else keeps removing it.
pub const MAX_LOCK_ATTEMPTS: usize = 8;

/// Where `all` keeps its lock: systemd's `$RUNTIME_DIRECTORY` (its first entry); else
/// [`ROOT_RUNTIME_DIR`] for root; else `$XDG_RUNTIME_DIR/metaboot`, or `metaboot-UID` in the
/// temporary directory.
pub fn runtime_dir() -> PathBuf {
    if let Some(dirs) = std::env::var_os(RUNTIME_DIR_VAR)
        && let Some(first) = dirs
            .to_string_lossy()
            .split(':')
            .find(|dir| !dir.is_empty())
    {
        return PathBuf::from(first);
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from(ROOT_RUNTIME_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("metaboot"),
        _ => std::env::temp_dir().join(format!("metaboot-{uid}")),
    }
}

/// What the registry `db` (opened already, so a SQLite file exists) is, however it is spelled.
fn registry_identity(db: &str) -> io::Result<String> {
    match crate::store::locate(db).map_err(|err| io::Error::other(err.to_string()))? {
        Location::Sqlite(path) => {
            let meta = std::fs::metadata(&path)?;
            Ok(format!("sqlite:{}:{}", meta.dev(), meta.ino()))
        }
        Location::Postgres(url) => {
            let config: postgres::Config = url
                .parse()
                .map_err(|err: postgres::Error| io::Error::other(err.to_string()))?;
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    postgres::config::Host::Tcp(name) => name.to_lowercase(),
                    postgres::config::Host::Unix(dir) => dir.display().to_string(),
                })
                .collect();
            let dbname = config.get_dbname().or(config.get_user()).unwrap_or("");
            Ok(format!(
                "postgres:{}:{:?}/{dbname}",
                hosts.join(","),
                config.get_ports()
            ))
        }
    }
}

/// 64-bit FNV-1a of `text`: the same across builds and versions, unlike std's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The lock file's name for the registry known as `identity` in network namespace `netns`.
fn lock_name(netns: u64, identity: &str) -> String {
    format!("all-netns{netns}-{:016x}.lock", fnv1a(identity))
}

/// The lock, held until dropped: the file is removed then, before it is unlocked.
#[derive(Debug)]
pub struct RegistryLock {
    path: PathBuf,
    _file: Flock<File>,
}

impl RegistryLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RegistryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes `all`'s lock on the registry `db` (shown as `shown`) in `dir`, for the network
/// namespace this process runs in. Held by another process: an [`InputError`] (exit 2) naming
/// the registry and the holder's pid.
pub fn take(dir: &Path, db: &str, shown: &str) -> anyhow::Result<RegistryLock> {
    let cannot = |what: String, err: io::Error| {
        anyhow::anyhow!(
            "cannot take all's lock on the registry {shown} ({what}: {err}): give `all` a \
             runtime directory it may write, e.g. {RUNTIME_DIR_VAR}=/run/metaboot"
        )
    };
    let identity = registry_identity(db).map_err(|err| cannot("what it is".into(), err))?;
    let netns = std::fs::metadata(OWN_NETNS)
        .map_err(|err| cannot(format!("the network namespace, {OWN_NETNS}"), err))?
        .ino();
    make_runtime_dir(dir).map_err(|err| cannot(dir.display().to_string(), err))?;
    let path = dir.join(lock_name(netns, &identity));
    for _ in 0..MAX_LOCK_ATTEMPTS {
        let opened = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(LOCK_FILE_MODE)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                // Another user's file: a root `all` run by hand in the unit's directory left
                // it, or still holds it.
                clear_if_stale(&path, shown)?;
                continue;
            }
            Err(err) => return Err(cannot(path.display().to_string(), err)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                if !is_at(&locked, &path).map_err(|err| cannot(path.display().to_string(), err))? {
                    continue;
                }
                locked
                    .set_len(0)
                    .and_then(|()| writeln!(locked, "{}", std::process::id()))
                    .map_err(|err| cannot(path.display().to_string(), err))?;
                return Ok(RegistryLock {
                    path,
                    _file: locked,
                });
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(refusal(&mut file, &path, shown));
            }
            Err((_, errno)) => {
                return Err(cannot(path.display().to_string(), errno.into()));
            }
        }
    }
    Err(cannot(
        path.display().to_string(),
        io::Error::other(format!(
            "removed under it {MAX_LOCK_ATTEMPTS} times in a row: does another program clean \
             the directory?"
        )),
    ))
}

/// Whether the file `locked` is still the one at `path`: the holder before may have removed
/// it between the open and the lock, and only the file at the path is the lock.
fn is_at(locked: &File, path: &Path) -> io::Result<bool> {
    let held = locked.metadata()?;
    Ok(std::fs::metadata(path).is_ok_and(|now| now.ino() == held.ino() && now.dev() == held.dev()))
}

/// The refusal of a second `all` (exit 2), naming the holder's pid as `file` holds it.
fn refusal(file: &mut File, path: &Path, shown: &str) -> anyhow::Error {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder = match text.trim().parse::<u32>() {
        Ok(pid) => format!("pid {pid}"),
        Err(_) => "pid unknown".to_owned(),
    };
    InputError(format!(
        "another metaboot-server all ({holder}) already serves the registry {shown} in this \
         network namespace (its lock {} is taken): stop it first, or give this one another \
         registry (db)",
        path.display()
    ))
    .into()
}

/// The lock file at `path` is another user's, which this process may not write: a root `all`
/// run by hand in the unit's runtime directory (the unit runs as `metaboot`) made it. Still
/// locked: that `all` runs, and this one is refused as usual. Not locked: it stopped without
/// removing the file (SIGKILL), so the file is removed here (the directory is this user's) and
/// the caller tries again. Reading it takes read access, which the unit has through
/// `CAP_DAC_READ_SEARCH` (`server/systemd/metaboot-server.service`).
fn clear_if_stale(path: &Path, shown: &str) -> anyhow::Result<()> {
    let foreign = |what: &str, err: io::Error| {
        anyhow::anyhow!(
            "cannot take all's lock on the registry {shown}: {} is another user's and this one \
             cannot {what} it ({err}): stop the metaboot-server all that runs as its owner, or \
             remove the file if none does",
            path.display()
        )
    };
    let file = match File::open(path) {
        Ok(file) => file,
        // Removed meanwhile by its holder, stopping.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(foreign("read", err)),
    };
    let mut stale = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(stale) => stale,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(refusal(&mut file, path, shown));
        }
        Err((_, errno)) => return Err(foreign("lock", errno.into())),
    };
    if !is_at(&stale, path).map_err(|err| foreign("read", err))? {
        return Ok(());
    }
    let mut text = String::new();
    let _ = stale.read_to_string(&mut text);
    // Removed while locked: whoever opened it meanwhile finds it gone once it has the lock.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(foreign("remove", err)),
    }
    tracing::warn!(
        lock = %path.display(),
        holder = text.trim(),
        "removed a lock file another user's metaboot-server all left behind when it stopped"
    );
    Ok(())
}

/// Makes `dir` when missing (mode [`RUNTIME_DIR_MODE`]); one in the shared temporary directory
/// must be this user's and closed to others, or anyone could hold the lock.
fn make_runtime_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(RUNTIME_DIR_MODE)
        .create(dir)?;
    if dir.starts_with(std::env::temp_dir()) {
        let meta = std::fs::symlink_metadata(dir)?;
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a directory of user {uid} closed to others' writes",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on one registry in one namespace is refused naming the registry and the
    /// holder's pid (exit 2); another registry is not; once the first is dropped (its file
    /// removed) the registry may be locked again.
    #[test]
    fn a_second_lock_on_one_registry_is_refused_naming_it_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run");
        let db = dir.path().join("r.sqlite");
        let other = dir.path().join("other.sqlite");
        for path in [&db, &other] {
            std::fs::write(path, "").unwrap();
        }
        let db = db.to_str().unwrap();
        let first = take(&runtime, db, db).unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        // The same file by another spelling.
        let spelled = format!("sqlite:{}/./r.sqlite", dir.path().display());
        let err = take(&runtime, &spelled, "R").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!(
                "another metaboot-server all (pid {}) already serves the registry R in this \
                 network namespace",
                std::process::id()
            )),
            "{text}"
        );
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
        let second = take(&runtime, other.to_str().unwrap(), "other").unwrap();
        assert_ne!(second.path(), first.path());
        let path = first.path().to_owned();
        drop(first);
        assert!(!path.exists(), "the lock file was left behind");
        take(&runtime, db, db).unwrap();
    }

    /// The lock is per network namespace and per registry, whatever the user and password.
    #[test]
    fn the_lock_names_the_namespace_and_the_registry_not_its_user() {
        let identity = |url: &str| registry_identity(url).unwrap();
        assert_eq!(
            identity("postgres://a:x@DB.example:5433/metaboot"),
            identity("postgresql://b@db.example:5433/metaboot")
        );
        assert_ne!(
            identity("postgres://a@db.example/metaboot"),
            identity("postgres://a@db.example/other")
        );
        assert_ne!(
            identity("postgres://a@db.example/metaboot"),
            identity("postgres://a@db2.example/metaboot")
        );
        let registry = identity("postgres://a@db.example/metaboot");
        assert_ne!(lock_name(1, &registry), lock_name(2, &registry));
        assert_eq!(lock_name(1, &registry), lock_name(1, &registry));
        // Stable across builds: the name a running `all` holds is the one a new binary takes.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_few_tries_at_a_lock_whose_file_was_removed_under_it() {
        assert!((2..=16).contains(&MAX_LOCK_ATTEMPTS));
    }
}
