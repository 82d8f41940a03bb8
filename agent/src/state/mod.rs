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
/// Longest instance id accepted (nova's are 36-character UUIDs).
pub const MAX_INSTANCE_ID_LEN: usize = 128;

/// State bookkeeping failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "Instance id {0:?} is not usable as a directory name (want 1-{MAX_INSTANCE_ID_LEN} of A-Z a-z 0-9 . _ -)"
    )]
    BadInstanceId(String),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Checks that an instance id is safe as a path component.
pub fn check_instance_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_INSTANCE_ID_LEN
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadInstanceId(id.to_owned()))
    }
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

    /// `instances/<id>`.
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.base.join("instances").join(id)
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
            .replace_symlink(&link, Path::new(&format!("instances/{id}")))
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
    fn instance_ids_must_be_safe_path_components() {
        for ok in ["d8e02d56-2648-49a3-bf97-6be8f1204f38", "i-0001", "a.b_c"] {
            assert!(check_instance_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_INSTANCE_ID_LEN + 1);
        for bad in ["", ".", "..", "../etc", "a/b", "a b", long.as_str()] {
            assert!(check_instance_id(bad).is_err(), "{bad}");
        }
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
