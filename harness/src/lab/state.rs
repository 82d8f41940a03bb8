//! What a lab made, recorded before each step in `<state root>/<lab id>/state.json`, so that
//! `lab down` removes all of it, also after a crash of the process that brought it up.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::lab::config::LabConfig;
use crate::lab::owner::Owner;
use crate::lab::registry::{InstanceRecord, NetworkRecord, RouterRecord};
use crate::process::Daemon;

/// Default root of the labs' state directories (on tmpfs: gone after a reboot, like namespaces).
pub const DEFAULT_STATE_ROOT: &str = "/run/metaboot-harness/labs";

/// The state file's name inside a lab's directory.
pub const STATE_FILE: &str = "state.json";

/// Everything a lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab file it came from.
    pub config: LabConfig,
    /// Its directory (database, logs, dnsmasq files, server config).
    pub dir: PathBuf,
    /// The bridge namespace.
    pub bridge_ns: String,
    /// Every namespace, recorded before it is created; deleted in reverse order.
    pub namespaces: Vec<String>,
    /// dnsmasq instances and `metaboot-server all`; stopped first on `down`.
    pub daemons: Vec<Daemon>,
    /// The server binary.
    pub server_bin: PathBuf,
    /// The registry database.
    pub db: PathBuf,
    /// Networks in the registry.
    pub networks: Vec<NetworkRecord>,
    /// Routers in the registry.
    pub routers: Vec<RouterRecord>,
    /// Instances registered from the lab file.
    pub guests: Vec<InstanceRecord>,
    /// True once `up` finished.
    pub complete: bool,
    /// The process the lab belongs to, and how long the lab lives; `None` in a state file
    /// from before owners were recorded (such a lab is left to `lab down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The directory of lab `id`.
pub fn lab_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl LabState {
    /// Reads the state of lab `id`, if there is one.
    pub fn load(root: &Path, id: &str) -> anyhow::Result<Option<Self>> {
        let path = lab_dir(root, id).join(STATE_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("failed to parse {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("failed to read {}", path.display())),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("failed to encode the lab state")?;
        atomic::write(&self.dir.join(STATE_FILE), &json, 0o600)
    }

    /// The ids of every lab with a state directory under `root`.
    pub fn list(root: &Path) -> Vec<String> {
        fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().join(STATE_FILE).is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
