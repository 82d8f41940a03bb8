//! Semaphores: files that say a step already ran for this instance (or ever), so a reboot with
//! the same instance id does not repeat per-instance work.

use std::path::PathBuf;

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::state::result::unix_now;

/// How often a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every run (bootcmd, hostname updates, per-boot scripts).
    Always,
    /// Once per instance id (users, keys, passwords, write_files, runcmd, user scripts).
    PerInstance,
    /// Once ever on this disk (per-once scripts).
    Once,
}

/// The semaphore directories of one instance.
#[derive(Debug, Clone)]
pub struct Semaphores {
    /// The root the directories are under.
    pub root: Root,
    /// `instances/<id>/sem`.
    pub instance_dir: PathBuf,
    /// `sem` (instance-independent).
    pub once_dir: PathBuf,
}

impl Semaphores {
    /// The file for step `name` at `frequency` (`None` for [`Frequency::Always`]). Names follow
    /// cloud-init's `config_<module>` with `-` turned into `_`.
    pub fn path(&self, name: &str, frequency: Frequency) -> Option<PathBuf> {
        let stem = format!("config_{}", name.replace('-', "_"));
        match frequency {
            Frequency::Always => None,
            Frequency::PerInstance => Some(self.instance_dir.join(stem)),
            Frequency::Once => Some(self.once_dir.join(format!("{stem}.once"))),
        }
    }

    /// True when step `name` already ran at this frequency.
    pub fn has(&self, name: &str, frequency: Frequency) -> bool {
        self.path(name, frequency)
            .is_some_and(|p| self.root.exists(p))
    }

    /// Records that step `name` ran (content: the Unix time).
    pub fn mark(&self, name: &str, frequency: Frequency) -> Result<(), PathError> {
        match self.path(name, frequency) {
            Some(path) => self.root.write_atomic(
                path,
                format!("{}\n", unix_now()).as_bytes(),
                &WriteOptions::exact(0o644, None),
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_per_instance_and_once_but_never_always() {
        let dir = tempfile::tempdir().unwrap();
        let sem = Semaphores {
            root: Root::open(dir.path()).unwrap(),
            instance_dir: PathBuf::from("/instances/i-1/sem"),
            once_dir: PathBuf::from("/sem"),
        };
        assert!(!sem.has("write-files", Frequency::PerInstance));
        sem.mark("write-files", Frequency::PerInstance).unwrap();
        assert!(sem.has("write-files", Frequency::PerInstance));
        assert!(
            dir.path()
                .join("instances/i-1/sem/config_write_files")
                .exists()
        );
        sem.mark("scripts-per-once", Frequency::Once).unwrap();
        assert!(dir.path().join("sem/config_scripts_per_once.once").exists());
        sem.mark("bootcmd", Frequency::Always).unwrap();
        assert!(!sem.has("bootcmd", Frequency::Always));
    }
}
