//! The labs a `run` killed with SIGKILL (or by the OOM killer) left behind, guests and all:
//! the next `run` takes them down before it starts ([`sweep`]), and `lab down --all` names
//! the labs it takes from a process that still runs ([`still_owned`]). Who owns a lab is in
//! `owner.rs`.

use std::path::Path;

use crate::lab::owner::{LabKind, Owner};
use crate::lab::state::LabState;
use crate::lab::trust;

/// What a `run` finds under a state root before it starts ([`sweep`]).
#[derive(Debug, Default)]
pub struct Sweep {
    /// The `run` labs whose owner is gone, by id: the run takes them down.
    pub abandoned: Vec<LabState>,
    /// A warning for each state that was not read (refused by the trust checks, or broken),
    /// with what to do: its lab is not looked at, so one a killed run left up stays up.
    pub unread: Vec<String>,
}

/// The labs under `root` that a `run` takes down before it starts: `run` labs whose owner is
/// gone. Labs of `lab up` or `--keep-lab`, labs whose owner still runs (a concurrent `run`)
/// and labs from state files older than the owner (unknown: left as they are) are left
/// alone. A state that cannot be read is left too, with a warning in [`Sweep::unread`]; a
/// state root that is refused, with one warning for all its labs.
pub fn sweep(root: &Path) -> Sweep {
    let mut sweep = Sweep::default();
    let ids = LabState::list(root);
    if ids.is_empty() {
        return sweep;
    }
    if let Err(err) = trust::check_dir(root) {
        sweep.unread.push(format!(
            "warning: the labs under {} were not looked at, so one a run that is gone left up \
             stays up: {err:#}",
            root.display()
        ));
        return sweep;
    }
    for id in ids {
        match LabState::load(root, &id) {
            Ok(Some(state))
                if state
                    .owner
                    .is_some_and(|owner| owner.kind == LabKind::Run && !owner.is_running()) =>
            {
                sweep.abandoned.push(state);
            }
            // Gone since it was listed (taken down meanwhile), or not abandoned.
            Ok(_) => {}
            Err(err) => sweep.unread.push(unread_warning(&id, &err)),
        }
    }
    sweep
        .abandoned
        .sort_by(|a, b| a.config.id.cmp(&b.config.id));
    sweep.unread.sort();
    sweep
}

/// What a `run` says of lab `id`, whose state it could not read.
pub fn unread_warning(id: &str, err: &anyhow::Error) -> String {
    format!(
        "warning: lab {id} was not looked at, so if a run that is gone left it up it stays up: \
         {err:#}"
    )
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

        let found = sweep(root);
        let ids: Vec<&str> = found
            .abandoned
            .iter()
            .map(|state| state.config.id.as_str())
            .collect();
        assert_eq!(ids, ["dead-run"]);
        // The broken state is told, with its path.
        assert_eq!(found.unread.len(), 1, "{:?}", found.unread);
        assert!(
            found.unread[0].contains("lab broken was not looked at")
                && found.unread[0].contains("broken/state.json"),
            "{:?}",
            found.unread
        );
        let none = sweep(&root.join("none"));
        assert!(none.abandoned.is_empty() && none.unread.is_empty());
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
