//! Whether a lab's state may be acted on. The teardown of a lab (also the one a `run` does by
//! itself for a lab whose run is gone) kills the daemons its state names, ends every process in
//! the namespaces it names and removes the directory it names, as the user running the harness
//! (root). So the state root, the lab's directory and its state file must be that user's alone:
//! another user who can write there could plant a state naming any process, namespace or
//! directory. What a state names is checked against what a lab of its id makes in `state.rs`,
//! with the names from here.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, bail};

use crate::lab::{bridge, dhcp, router};

/// The mode bits that let the group or others write a directory or file: a lab's state must
/// have neither.
pub const SHARED_WRITE_BITS: u32 = 0o022;

/// The longest registry id (of a router or a network) a lab names a namespace after: the
/// registry's ids are UUIDs (36 characters).
pub const MAX_REGISTRY_ID_LEN: usize = 64;

/// Where to keep labs instead, for the errors.
const WHAT_TO_DO: &str = "keep labs under a state root only you can write (`--state-root` or \
     METABOOT_LAB_STATE; the default, /run/metaboot-harness/labs, is one)";

/// Fails, naming the path and what to do, unless directory `path` is the running user's and
/// writable by no one else; a symbolic link is followed only when it is the user's too. A
/// missing directory holds no state: fine.
pub fn check_dir(path: &Path) -> anyhow::Result<()> {
    let link = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("failed to look at {}", path.display()));
        }
    };
    let me = nix::unistd::geteuid().as_raw();
    if link.file_type().is_symlink()
        && let Some(refused) = refusal(path, link.uid(), 0, me)
    {
        bail!("{refused}");
    }
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        // A dangling link of the user's: nothing behind it.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("failed to look at {}", path.display()));
        }
    };
    if !meta.is_dir() {
        bail!(
            "{} is not a directory: a lab's state is kept in directories; {WHAT_TO_DO}",
            path.display()
        );
    }
    match refusal(path, meta.uid(), meta.mode(), me) {
        Some(refused) => bail!("{refused}"),
        None => Ok(()),
    }
}

/// The text of file `path` in directory `dir` ([`check_dir`]), if it is there, when it is the
/// running user's and writable by no one else (checked on the open file).
pub fn read_private(dir: &Path, path: &Path) -> anyhow::Result<Option<String>> {
    check_dir(dir)?;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("failed to read {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("failed to look at {}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if let Some(refused) = refusal(path, meta.uid(), meta.mode(), me) {
        bail!("{refused}");
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(Some(text))
}

/// Why `path`, owned by `owner` with `mode`, cannot hold the state of user `me`'s labs; `None`
/// when it can.
fn refusal(path: &Path, owner: u32, mode: u32, me: u32) -> Option<String> {
    let path = path.display();
    if owner != me {
        return Some(format!(
            "{path} belongs to uid {owner}, not to you (uid {me}): that user could plant a lab \
             state there that has the harness kill processes and remove files as you; \
             {WHAT_TO_DO}"
        ));
    }
    if mode & SHARED_WRITE_BITS != 0 {
        return Some(format!(
            "{path} is writable by its group or others (mode {:o}): they could plant a lab \
             state there that has the harness kill processes and remove files as you; run \
             `chmod go-w {path}`, or {WHAT_TO_DO}",
            mode & 0o7777
        ));
    }
    None
}

/// Whether `name` is a namespace a lab of `id` makes: its bridge namespace, or the namespace
/// of one of its routers (`router_ids`) or networks (`network_ids`). Plain names only: a
/// path is no lab's.
pub fn is_lab_namespace(name: &str, id: &str, router_ids: &[&str], network_ids: &[&str]) -> bool {
    name == bridge::namespace(id)
        || router_ids.iter().any(|r| name == router::namespace(r))
        || network_ids.iter().any(|n| name == dhcp::namespace(n))
}

/// Fails unless `id` (of a router or network in a lab's state) is shaped like the registry's
/// ids: 1 to [`MAX_REGISTRY_ID_LEN`] of a-z, 0-9 and `-`, so the namespace named after it is
/// a plain name.
pub fn check_registry_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > MAX_REGISTRY_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("registry id {id:?} is not 1 to {MAX_REGISTRY_ID_LEN} characters of a-z, 0-9 and -");
    }
    Ok(())
}

/// Whether `a` and `b` name one directory: the same path, or (both there) the same place
/// reached through a symbolic link or `..`.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (fs::canonicalize(a), fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Another user's directory or file, or one its group or others may write, is refused with
    /// its path and what to do; the user's own, writable by the user alone, is taken.
    #[test]
    fn a_state_anyone_else_can_write_is_refused() {
        let me = 1000;
        let path = Path::new("/tmp/labs");
        let other = refusal(path, 1001, 0o755, me).unwrap();
        assert!(other.contains("/tmp/labs belongs to uid 1001"), "{other}");
        assert!(other.contains("--state-root"), "{other}");
        for mode in [0o775, 0o757, 0o777, 0o1777, 0o40777] {
            let shared = refusal(path, me, mode, me).unwrap();
            assert!(shared.contains("chmod go-w /tmp/labs"), "{shared}");
        }
        for mode in [0o700, 0o755, 0o600, 0o644, 0o40755] {
            assert_eq!(refusal(path, me, mode, me), None, "{mode:o}");
        }
        assert_eq!(SHARED_WRITE_BITS, 0o022);
    }

    /// On disk: a group- or world-writable directory or state file is refused, the user's own
    /// taken, a missing one holds nothing.
    #[test]
    fn directories_and_files_are_checked_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        assert!(check_dir(&root).is_ok(), "missing");
        fs::create_dir(&root).unwrap();
        chmod(&root, 0o755);
        check_dir(&root).unwrap();
        chmod(&root, 0o777);
        let err = format!("{:#}", check_dir(&root).unwrap_err());
        assert!(err.contains(&root.display().to_string()), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
        chmod(&root, 0o755);

        let file = root.join("state.json");
        assert_eq!(read_private(&root, &file).unwrap(), None);
        fs::write(&file, "{}").unwrap();
        chmod(&file, 0o600);
        assert_eq!(read_private(&root, &file).unwrap().as_deref(), Some("{}"));
        chmod(&file, 0o666);
        let err = format!("{:#}", read_private(&root, &file).unwrap_err());
        assert!(err.contains("state.json is writable"), "{err}");

        let plain = dir.path().join("plain");
        fs::write(&plain, "").unwrap();
        assert!(format!("{:#}", check_dir(&plain).unwrap_err()).contains("not a directory"));
    }

    /// Namespaces a lab makes, by their plain names; paths and other names are none of its.
    #[test]
    fn only_the_labs_own_namespace_names_are_its() {
        let routers = ["80085ce6-1111"];
        let networks = ["34567c7e-2222"];
        for ns in [
            "metaboot-ab12",
            "qrouter-80085ce6-1111",
            "qdhcp-34567c7e-2222",
        ] {
            assert!(is_lab_namespace(ns, "ab12", &routers, &networks), "{ns}");
        }
        for ns in [
            "/proc/1/ns/net",
            "../../proc/1/ns/net",
            "metaboot-cd34",
            "qrouter-34567c7e-2222",
            "qdhcp-80085ce6-1111",
            "cni-1234",
            "",
        ] {
            assert!(!is_lab_namespace(ns, "ab12", &routers, &networks), "{ns}");
        }
        check_registry_id("1c9b3f62-8a4d-4a59-9a3c-54f2d5e6a7b8").unwrap();
        for id in ["", "../x", "a/b", "A", &"a".repeat(MAX_REGISTRY_ID_LEN + 1)] {
            assert!(check_registry_id(id).is_err(), "{id}");
        }
        assert!(MAX_REGISTRY_ID_LEN >= "1c9b3f62-8a4d-4a59-9a3c-54f2d5e6a7b8".len());
    }
}
