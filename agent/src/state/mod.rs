//! Per-instance and per-boot bookkeeping under `<root>/var/lib/metaboot`: the current instance,
//! fetched data, semaphores, scripts, `status.json` and `result.json`.

pub mod redact;
pub mod result;
pub mod semaphore;
pub mod status;

use std::path::{Path, PathBuf};

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use result::Report;
use semaphore::Semaphores;

/// The state directory, under the root.
pub const STATE_DIR: &str = "/var/lib/metaboot";
/// Longest instance id accepted, in bytes (nova's are 36-character UUIDs).
pub const MAX_INSTANCE_ID_LEN: usize = 128;
/// Longest name an instance's directory gets (`NAME_MAX` is 255): an id whose encoded name
/// would be longer keeps this many bytes of it, then `~` and a hash of the whole id.
pub const MAX_INSTANCE_DIR_NAME: usize = 200;

/// State bookkeeping failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "Instance id {0:?} is not usable: want 1-{MAX_INSTANCE_ID_LEN} bytes without control characters or surrounding spaces"
    )]
    BadInstanceId(String),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Checks that an instance id can be stored and compared: it is not empty, not too long, one
/// line with no control characters, and not padded with spaces (the stored id is read back
/// trimmed). Any other character is allowed, as cloud-init allows it (NoCloud users pick ids
/// such as `my host:1`); [`instance_dir_name`] makes the directory name safe.
pub fn check_instance_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_INSTANCE_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(StateError::BadInstanceId(id.to_owned()))
    }
}

/// The name of instance `id`'s directory under `instances/`: the id itself when it is made of
/// `A-Z a-z 0-9 . _ -` and does not start with a dot (every nova, EC2 and most NoCloud ids);
/// otherwise each other byte and a leading dot as `%XX`, so that no two ids share a directory
/// and no id names `.`, `..` or a path. An encoded name longer than
/// [`MAX_INSTANCE_DIR_NAME`] is cut there and ends in `~` and a hash of the id.
pub fn instance_dir_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for (i, byte) in id.bytes().enumerate() {
        let plain = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
        let unit = if plain || (byte == b'.' && i > 0) {
            char::from(byte).to_string()
        } else {
            format!("%{byte:02X}")
        };
        if name.len() + unit.len() > MAX_INSTANCE_DIR_NAME {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(id.as_bytes());
            name.push('~');
            for byte in &digest[..8] {
                name.push_str(&format!("{byte:02x}"));
            }
            return name;
        }
        name.push_str(&unit);
    }
    name
}

/// The state directory of one root; every path it gives is taken under that root.
#[derive(Debug, Clone)]
pub struct State {
    root: Root,
    base: PathBuf,
}

impl State {
    /// The state directory under `root`.
    pub fn new(root: &Root) -> Self {
        State {
            root: root.clone(),
            base: PathBuf::from(STATE_DIR),
        }
    }

    /// The root the paths are taken under.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// `status.json`: the report of the last (or current) run.
    pub fn status_path(&self) -> PathBuf {
        self.base.join("status.json")
    }

    /// `.lock`: held (flock) by a run for as long as it runs, so two never interleave.
    pub fn lock_path(&self) -> PathBuf {
        self.base.join(".lock")
    }

    /// `instances/<id>`, its name made safe by [`instance_dir_name`].
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.base.join("instances").join(instance_dir_name(id))
    }

    /// `instance`: symlink to the current instance's directory.
    pub fn current_instance_dir(&self) -> PathBuf {
        self.base.join("instance")
    }

    /// `data/<name>` (instance-id, previous-instance-id, previous-hostname).
    pub fn data_file(&self, name: &str) -> PathBuf {
        self.base.join("data").join(name)
    }

    /// `scripts/per-{boot,instance,once}`.
    pub fn scripts_dir(&self, frequency: &str) -> PathBuf {
        self.base.join("scripts").join(format!("per-{frequency}"))
    }

    /// `sshd-password-auth`: `yes` or `no` when `ssh_pwauth` was set (for dropbear images).
    pub fn sshd_password_auth_path(&self) -> PathBuf {
        self.base.join("sshd-password-auth")
    }

    /// The semaphores of instance `id`.
    pub fn semaphores(&self, id: &str) -> Semaphores {
        Semaphores {
            root: self.root.clone(),
            instance_dir: self.instance_dir(id).join("sem"),
            once_dir: self.base.join("sem"),
        }
    }

    /// The instance id of the previous run, if any.
    pub fn stored_instance_id(&self) -> Option<String> {
        self.root
            .read_optional_string(self.data_file("instance-id"))
            .ok()
            .flatten()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Makes `id` the current instance: records the previous id, writes `data/instance-id`,
    /// points the `instance` symlink at `instances/<id>`. Returns true for a new instance.
    pub fn switch_instance(&self, id: &str) -> Result<bool, StateError> {
        check_instance_id(id)?;
        let previous = self.stored_instance_id();
        let dir = self.instance_dir(id);
        self.root
            .ensure_dir(&dir, 0o755, None)
            .map_err(PathError::fail("create", self.root.host_path(&dir)))?;
        let keep = WriteOptions::keep_or(0o644);
        if let Some(previous) = &previous {
            self.root.write_atomic(
                self.data_file("previous-instance-id"),
                format!("{previous}\n").as_bytes(),
                &keep,
            )?;
        }
        self.root.write_atomic(
            self.data_file("instance-id"),
            format!("{id}\n").as_bytes(),
            &keep,
        )?;
        self.point_current_at(id)?;
        Ok(previous.as_deref() != Some(id))
    }

    fn point_current_at(&self, id: &str) -> Result<(), StateError> {
        let link = self.current_instance_dir();
        self.root
            .replace_symlink(
                &link,
                Path::new(&format!("instances/{}", instance_dir_name(id))),
            )
            .map_err(PathError::fail("update", self.root.host_path(&link)))
            .map_err(StateError::from)
    }

    /// Stores fetched data in the instance directory (mode 0600: user data may hold secrets).
    pub fn cache(&self, id: &str, name: &str, data: &[u8]) -> Result<(), PathError> {
        self.root.write_atomic(
            self.instance_dir(id).join(name),
            data,
            &WriteOptions::exact(0o600, None),
        )
    }

    /// Removes a cached document the source no longer has (its answer is a definite absence:
    /// 404, or no file on the drive), so that `metaboot query` does not show a stale copy;
    /// true when one was there. The removal goes through the run's root, which first
    /// publishes a staged write of the same name (`fsutil/dir.rs`'s `remove_file`).
    pub fn uncache(&self, id: &str, name: &str) -> Result<bool, PathError> {
        let path = self.instance_dir(id).join(name);
        self.root
            .remove_file(&path)
            .map_err(PathError::fail("remove", self.root.host_path(&path)))
    }

    /// Writes the report of a run that is starting to `status.json` at once, so that
    /// `metaboot status` (and `--wait`) see the run now rather than the previous run's result.
    pub fn write_running(&self, report: &Report) -> Result<(), PathError> {
        self.root.write_atomic_now(
            self.status_path(),
            &report_json(report),
            &WriteOptions::exact(0o644, None),
        )
    }

    /// Writes the report to `status.json` and, once the instance is known, to its
    /// `result.json` (status.json last: it says the run is over).
    pub fn write_report(&self, report: &Report) -> Result<(), PathError> {
        let json = report_json(report);
        let options = WriteOptions::exact(0o644, None);
        if let Some(id) = &report.instance_id
            && check_instance_id(id).is_ok()
        {
            self.root
                .write_atomic(self.instance_dir(id).join("result.json"), &json, &options)?;
        }
        self.root.write_atomic(self.status_path(), &json, &options)
    }
}

/// The report as status.json and result.json hold it.
fn report_json(report: &Report) -> Vec<u8> {
    // Serialising plain data with string keys cannot fail.
    let mut json = serde_json::to_vec_pretty(report).unwrap_or_default();
    json.push(b'\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_one_line_of_bounded_length() {
        let longest = "a".repeat(MAX_INSTANCE_ID_LEN);
        for ok in [
            "d8e02d56-2648-49a3-bf97-6be8f1204f38",
            "i-0001",
            "a.b_c",
            "..",
            "a/b",
            "my host:1",
            longest.as_str(),
        ] {
            assert!(check_instance_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_INSTANCE_ID_LEN + 1);
        for bad in ["", " a", "a ", "a\nb", "a\tb", long.as_str()] {
            assert!(check_instance_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_name_is_the_id_or_its_encoding() {
        let uuid = "d8e02d56-2648-49a3-bf97-6be8f1204f38";
        assert_eq!(instance_dir_name(uuid), uuid);
        assert_eq!(instance_dir_name("a.b_c"), "a.b_c");
        assert_eq!(instance_dir_name("."), "%2E");
        assert_eq!(instance_dir_name(".."), "%2E.");
        assert_eq!(instance_dir_name("../etc"), "%2E.%2Fetc");
        assert_eq!(instance_dir_name("my host:1"), "my%20host%3A1");
        // `%` itself is encoded, so an id that looks encoded keeps its own directory.
        assert_eq!(instance_dir_name("my%20host%3A1"), "my%2520host%253A1");
        assert_eq!(instance_dir_name("é"), "%C3%A9");
    }

    #[test]
    fn a_long_encoded_name_is_cut_and_ends_in_a_hash() {
        let a = "/".repeat(MAX_INSTANCE_ID_LEN);
        let b = format!("{}:", "/".repeat(MAX_INSTANCE_ID_LEN - 1));
        let (name_a, name_b) = (instance_dir_name(&a), instance_dir_name(&b));
        assert_ne!(name_a, name_b);
        for name in [&name_a, &name_b] {
            assert!(name.len() <= MAX_INSTANCE_DIR_NAME + 17, "{name}");
            assert!(name.starts_with("%2F%2F") && name.contains('~'), "{name}");
        }
        let plain = "a".repeat(MAX_INSTANCE_ID_LEN);
        assert_eq!(instance_dir_name(&plain), plain);
    }

    #[test]
    fn an_id_that_is_not_a_path_component_gets_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let state = State::new(&root);
        assert!(state.switch_instance("../../etc").unwrap());
        assert!(!state.switch_instance("../../etc").unwrap());
        assert_eq!(state.stored_instance_id().as_deref(), Some("../../etc"));
        state.cache("../../etc", "user-data", b"x").unwrap();
        let inside = dir
            .path()
            .join("var/lib/metaboot/instances/%2E.%2F..%2Fetc");
        assert_eq!(std::fs::read(inside.join("user-data")).unwrap(), b"x");
        assert!(!dir.path().join("var/lib/etc").exists());
        let link = std::fs::read_link(root.host_path(state.current_instance_dir())).unwrap();
        assert_eq!(link, PathBuf::from("instances/%2E.%2F..%2Fetc"));
    }

    #[test]
    fn switching_instances_tracks_new_and_previous() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let state = State::new(&root);
        assert!(state.switch_instance("one").unwrap());
        assert!(!state.switch_instance("one").unwrap());
        assert!(state.switch_instance("two").unwrap());
        assert_eq!(state.stored_instance_id().as_deref(), Some("two"));
        let prev = root
            .read_optional_string(state.data_file("previous-instance-id"))
            .unwrap();
        assert_eq!(prev.as_deref(), Some("one\n"));
        let link = std::fs::read_link(root.host_path(state.current_instance_dir())).unwrap();
        assert_eq!(link, PathBuf::from("instances/two"));
        assert!(root.is_dir(state.current_instance_dir()));
    }
}
