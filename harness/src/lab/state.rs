//! What a lab made, recorded before each step in `<state root>/<lab id>/state.json`, so that
//! `lab down` removes all of it, also after a crash of the process that brought it up.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::lab::config::LabConfig;
use crate::lab::owner::Owner;
use crate::lab::registry::{InstanceRecord, NetworkRecord, RouterRecord};
use crate::lab::{bridge, trust};
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
    /// Reads the state of lab `id`, if there is one. Fails (naming the path and what to do)
    /// when the state root, the lab's directory or its state file may be written by anyone but
    /// the running user, or when the state names what no lab `id` under `root` makes
    /// ([`LabState::check_is_lab`]): a teardown acts on all of it ([`trust`]).
    pub fn load(root: &Path, id: &str) -> anyhow::Result<Option<Self>> {
        trust::check_dir(root)?;
        let dir = lab_dir(root, id);
        let path = dir.join(STATE_FILE);
        let Some(text) = trust::read_private(&dir, &path)? else {
            return Ok(None);
        };
        let state: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "failed to parse {}: if lab {id} is up, remove the file and run \
                 `metaboot-harness lab down --id {id}`, which finds the lab by its id",
                path.display()
            )
        })?;
        state.check_is_lab(root, id).with_context(|| {
            format!(
                "refusing the lab state {}: taking the lab down would act on what it names; \
                 remove the file if no lab of yours wrote it",
                path.display()
            )
        })?;
        Ok(Some(state))
    }

    /// Fails unless the state is one lab `id` under `root` writes: its id, its directory
    /// (`lab_dir`), its bridge namespace, and namespaces of the lab's own names (plain names,
    /// never paths) for its own routers and networks.
    pub fn check_is_lab(&self, root: &Path, id: &str) -> anyhow::Result<()> {
        if self.config.id != id {
            bail!(
                "it is the state of lab {:?}, not of lab {id}",
                self.config.id
            );
        }
        let dir = lab_dir(root, id);
        if !trust::same_dir(&self.dir, &dir) {
            bail!(
                "its directory is {}, where lab {id}'s is {}",
                self.dir.display(),
                dir.display()
            );
        }
        if self.bridge_ns != bridge::namespace(id) {
            bail!(
                "its bridge namespace is {:?}, where lab {id}'s is {}",
                self.bridge_ns,
                bridge::namespace(id)
            );
        }
        let routers: Vec<&str> = self.routers.iter().map(|r| r.id.as_str()).collect();
        let networks: Vec<&str> = self.networks.iter().map(|n| n.id.as_str()).collect();
        for registry_id in routers.iter().chain(&networks) {
            trust::check_registry_id(registry_id)?;
        }
        if let Some(ns) = self
            .namespaces
            .iter()
            .find(|ns| !trust::is_lab_namespace(ns, id, &routers, &networks))
        {
            bail!(
                "namespace {ns:?} is none of lab {id}'s ({}, qrouter-ROUTER and qdhcp-NETWORK of \
                 its own routers and networks)",
                bridge::namespace(id)
            );
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::lab::abandoned::{sweep, tests::lab};
    use crate::lab::owner::{LabKind, tests::gone};

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Rewrites the state of lab `id` under `root` with `change` applied to its JSON.
    fn plant(root: &Path, id: &str, change: impl FnOnce(&mut serde_json::Value)) {
        let path = lab_dir(root, id).join(STATE_FILE);
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        change(&mut json);
        atomic::write(&path, &serde_json::to_vec(&json).unwrap(), 0o600).unwrap();
    }

    /// A lab of `id` with a router and a network and the namespaces it makes for them, left
    /// by a run that is gone (the next `run` takes it down).
    fn dead_lab(root: &Path, id: &str) {
        lab(root, id, Some(gone(LabKind::Run)));
        let (router, network) = (
            "80085ce6-1c9b-4a59-9a3c-54f2d5e6a7b8",
            "34567c7e-8a4d-4a59-9a3c-54f2d5e6a7b8",
        );
        plant(root, id, |json| {
            json["routers"] = serde_json::json!([
                {"id": router, "name": "router1", "network_ids": [network]}
            ]);
            json["networks"] = serde_json::json!([{
                "id": network, "name": "tenant-r", "cidr": "198.18.10.0/24",
                "gateway": "198.18.10.1", "dhcp_ip": "198.18.10.2", "isolated": false
            }]);
            json["namespaces"] = serde_json::json!([
                format!("metaboot-{id}"),
                format!("qrouter-{router}"),
                format!("qdhcp-{network}")
            ]);
        });
    }

    /// A state that names what no lab of its id under its root makes (another directory, a
    /// namespace by a path or another name, another id) is refused with its path, and a `run`
    /// does not take it down; the lab's own is read.
    #[test]
    fn a_state_naming_what_the_lab_does_not_make_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        dead_lab(root, "ab12");
        let state = LabState::load(root, "ab12").unwrap().unwrap();
        assert_eq!(state.namespaces.len(), 3);
        assert_eq!(sweep(root).abandoned.len(), 1);

        /// What a planted state says, and how it was planted.
        type Planted = (&'static str, fn(&mut serde_json::Value));
        let planted: [Planted; 7] = [
            ("its directory is /etc", |json| json["dir"] = "/etc".into()),
            ("\"/proc/1/ns/net\"", |json| {
                json["namespaces"][1] = "/proc/1/ns/net".into();
            }),
            ("\"../../proc/1/ns/net\"", |json| {
                json["namespaces"][1] = "../../proc/1/ns/net".into();
            }),
            ("\"cni-1234\"", |json| {
                json["namespaces"][2] = "cni-1234".into()
            }),
            ("bridge namespace", |json| {
                json["bridge_ns"] = "metaboot-cd34".into();
            }),
            ("registry id", |json| {
                json["networks"][0]["id"] = "../x".into()
            }),
            ("not of lab ab12", |json| {
                json["config"]["id"] = "cd34".into()
            }),
        ];
        for (said, change) in planted {
            dead_lab(root, "ab12");
            plant(root, "ab12", change);
            let err = format!("{:#}", LabState::load(root, "ab12").unwrap_err());
            assert!(err.contains(said), "{said}: {err}");
            assert!(err.contains("ab12/state.json"), "{err}");
            let found = sweep(root);
            assert!(
                found.abandoned.is_empty(),
                "{said}: a run would take it down"
            );
            // A run says so, with the refusal and what to do.
            assert_eq!(found.unread.len(), 1, "{said}: {:?}", found.unread);
            assert!(found.unread[0].contains(&err), "{said}: {:?}", found.unread);
            assert!(
                found.unread[0].contains("lab ab12 was not looked at"),
                "{:?}",
                found.unread
            );
        }
    }

    /// A state root, lab directory or state file that others may write is refused, naming the
    /// path and what to do: nothing in it is taken down by a `run`.
    #[test]
    fn a_state_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        dead_lab(root, "ab12");
        let dir = lab_dir(root, "ab12");
        let file = dir.join(STATE_FILE);
        for (path, mode, back) in [
            (root, 0o777, 0o700),
            (&dir, 0o775, 0o755),
            (&file, 0o622, 0o600),
        ] {
            chmod(path, mode);
            let err = format!("{:#}", LabState::load(root, "ab12").unwrap_err());
            assert!(
                err.contains(&format!("{} is writable", path.display())),
                "{err}"
            );
            assert!(err.contains("chmod go-w"), "{err}");
            // A run warns (once, for the whole state root too), naming the path and the chmod.
            let found = sweep(root);
            assert!(found.abandoned.is_empty());
            assert_eq!(found.unread.len(), 1, "{:?}", found.unread);
            assert!(
                found.unread[0].contains(&format!("{} is writable", path.display()))
                    && found.unread[0].contains("chmod go-w")
                    && found.unread[0].contains("stays up"),
                "{:?}",
                found.unread
            );
            chmod(path, back);
            assert!(LabState::load(root, "ab12").unwrap().is_some());
        }
    }
}
