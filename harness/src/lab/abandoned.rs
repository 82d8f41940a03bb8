//! The labs a `run` killed with SIGKILL (or by the OOM killer) left behind, guests and all:
//! the next `run` takes them down before it starts ([`abandoned`]), and `lab down --all` names
//! the labs it takes from a process that still runs ([`still_owned`]). Who owns a lab is in
//! `owner.rs`.

use std::path::Path;

use crate::lab::owner::{LabKind, Owner};
use crate::lab::state::LabState;

/// The labs under `root` that a `run` takes down before it starts: `run` labs whose owner is
/// gone. Labs of `lab up` or `--keep-lab`, labs whose owner still runs (a concurrent `run`),
/// labs from state files older than the owner (unknown: left as they are) and unreadable
/// state files are left alone.
pub fn abandoned(root: &Path) -> Vec<LabState> {
    let mut found: Vec<LabState> = LabState::list(root)
        .iter()
        .filter_map(|id| LabState::load(root, id).ok().flatten())
        .filter(|state| {
            state
                .owner
                .is_some_and(|owner| owner.kind == LabKind::Run && !owner.is_running())
        })
        .collect();
    found.sort_by(|a, b| a.config.id.cmp(&b.config.id));
    found
}

/// The labs among `ids` under `root` whose owner still runs, with the owner: taking them down
/// pulls a lab from under a `run` (or a `lab up`) in progress.
pub fn still_owned(root: &Path, ids: &[String]) -> Vec<(String, Owner)> {
    ids.iter()
        .filter_map(|id| {
            let owner = LabState::load(root, id).ok().flatten()?.owner?;
            owner.is_running().then(|| (id.clone(), owner))
        })
        .collect()
}

/// What `lab down --all` says about a lab whose owner still runs.
pub fn still_owned_warning(id: &str, owner: &Owner) -> String {
    let by = match owner.kind {
        LabKind::Run => "a run",
        LabKind::Kept => "`lab up`",
    };
    format!(
        "warning: lab {id} belongs to {by} still running (pid {}): taking it down too, which \
         fails that run's guests; to leave it, take labs down one by one with `lab down --id ID`",
        owner.pid
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lab::config::LabConfig;
    use crate::lab::owner::tests::gone;

    /// Saves the state of lab `id` under `root` with `owner`.
    pub(crate) fn lab(root: &Path, id: &str, owner: Option<Owner>) {
        let dir = crate::lab::state::lab_dir(root, id);
        std::fs::create_dir_all(&dir).unwrap();
        // The user's alone to write, as `lab up` makes it whatever the umask.
        std::fs::set_permissions(
            &dir,
            std::os::unix::fs::PermissionsExt::from_mode(crate::lab::STATE_DIR_MODE),
        )
        .unwrap();
        LabState {
            config: LabConfig::default_with_id(id),
            dir: dir.clone(),
            bridge_ns: format!("metaboot-{id}"),
            namespaces: Vec::new(),
            daemons: Vec::new(),
            server_bin: "metaboot-server".into(),
            db: dir.join("registry.sqlite"),
            networks: Vec::new(),
            routers: Vec::new(),
            guests: Vec::new(),
            complete: true,
            owner,
        }
        .save()
        .unwrap();
    }

    #[test]
    fn a_run_takes_down_only_the_labs_of_runs_that_are_gone() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let me = Owner::this_process(LabKind::Run).unwrap();
        lab(root, "dead-run", Some(gone(LabKind::Run)));
        lab(root, "live-run", Some(me));
        lab(root, "kept", Some(gone(LabKind::Kept)));
        lab(root, "old", None);
        // A state file from before owners were recorded: unknown, left as it is.
        let path = crate::lab::state::lab_dir(root, "older").join(crate::lab::state::STATE_FILE);
        lab(root, "older", Some(gone(LabKind::Run)));
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("owner");
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        // A directory without a state file (a lab being brought up) and a broken one.
        std::fs::create_dir_all(root.join("coming-up")).unwrap();
        std::fs::create_dir_all(root.join("broken")).unwrap();
        std::fs::write(
            root.join("broken").join(crate::lab::state::STATE_FILE),
            b"{",
        )
        .unwrap();

        let ids: Vec<String> = abandoned(root)
            .into_iter()
            .map(|state| state.config.id)
            .collect();
        assert_eq!(ids, ["dead-run"]);
        assert!(abandoned(&root.join("none")).is_empty());
    }

    #[test]
    fn lab_down_all_names_the_labs_whose_owner_still_runs() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let me = Owner::this_process(LabKind::Run).unwrap();
        lab(root, "dead-run", Some(gone(LabKind::Run)));
        lab(root, "live-run", Some(me));
        lab(root, "old", None);
        let mut ids = LabState::list(root);
        ids.sort();
        assert_eq!(
            still_owned(root, &ids),
            [("live-run".to_owned(), me)],
            "of {ids:?}"
        );
        let warning = still_owned_warning("live-run", &me);
        assert!(warning.contains("live-run") && warning.contains(&me.pid.to_string()));
    }

    #[test]
    fn the_owner_is_recorded_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let me = Owner::this_process(LabKind::Kept).unwrap();
        lab(root.path(), "a", Some(me));
        let state = LabState::load(root.path(), "a").unwrap().unwrap();
        assert_eq!(state.owner, Some(me));
        let text = std::fs::read_to_string(root.path().join("a").join("state.json")).unwrap();
        assert!(text.contains("\"kind\": \"kept\""), "{text}");
    }
}
