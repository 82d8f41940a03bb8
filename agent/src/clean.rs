//! `metaboot clean`: what an image made from this machine (Packer, a snapshot) must not carry,
//! as `cloud-init clean` removes its own: everything in the state directory (the instance's
//! cached data, semaphores, the `scripts/per-*` directories, `status.json`) but its lock, which
//! is held while cleaning, so no run is under way; with `--logs` the log files; with `--seed`
//! the whole seed directory, as cloud-init's (the NoCloud seeds metaboot reads are in it); with
//! `--reboot` a reboot once clean
//! (`shutdown -r now`, as cloud-init).

use std::ffi::OsStr;
use std::path::Path;

use crate::cli::CleanArgs;
use crate::fsutil::Dir;
use crate::log::{LOG_FILE, OLD_LOG_NAME};
use crate::root::Root;
use crate::state::status::{EXIT_DONE, EXIT_ERROR};
use crate::state::{STATE_DIR, State};

/// The entry of the state directory that stays: the lock (`State::lock_path`).
pub const KEPT: &str = ".lock";
/// What `--seed` removes: cloud-init's seed directory (`paths.seed_dir`), every data source's
/// seeds in it, as `cloud-init clean --seed` removes it.
pub const SEED_DIR: &str = "/var/lib/cloud/seed";
/// The command `--reboot` runs, cloud-init's.
pub const REBOOT: [&str; 3] = ["shutdown", "-r", "now"];

/// Runs `metaboot clean`.
pub fn main(args: &CleanArgs) -> u8 {
    let root = match Root::open(&args.root) {
        Ok(root) => root,
        Err(err) => {
            eprintln!(
                "metaboot clean: cannot open root {}: {err}",
                args.root.display()
            );
            return EXIT_ERROR;
        }
    };
    let _lock = match crate::run::lock(&State::new(&root)) {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!(
                "metaboot clean: {err}: wait for the run to end (`metaboot status --wait`), then \
                 clean again"
            );
            return EXIT_ERROR;
        }
    };
    let mut failed = Vec::new();
    match root.dir_optional(STATE_DIR).and_then(|dir| {
        let Some(dir) = dir else { return Ok(()) };
        for (name, _) in dir.entries()? {
            if name != KEPT {
                remove(&dir, &name).unwrap_or_else(|err| failed.push((dir.child_path(&name), err)));
            }
        }
        Ok(())
    }) {
        Ok(()) => {}
        Err(err) => failed.push((root.host_path(STATE_DIR), err)),
    }
    let old_log = Path::new(LOG_FILE).with_file_name(OLD_LOG_NAME);
    let mut extra: Vec<&Path> = Vec::new();
    if args.logs {
        extra.extend([Path::new(LOG_FILE), &old_log]);
    }
    if args.seed {
        extra.push(Path::new(SEED_DIR));
    }
    for path in extra {
        if let Err(err) = root
            .parent(path, false)
            .and_then(|(dir, name)| remove(&dir, &name))
            && err.kind() != std::io::ErrorKind::NotFound
        {
            failed.push((root.host_path(path), err));
        }
    }
    for (path, err) in &failed {
        eprintln!("metaboot clean: cannot remove {}: {err}", path.display());
    }
    if !failed.is_empty() {
        return EXIT_ERROR;
    }
    if args.reboot {
        if !root.is_host() {
            eprintln!("metaboot clean: not rebooting: --root is not /");
            return EXIT_DONE;
        }
        let status = std::process::Command::new(REBOOT[0])
            .args(&REBOOT[1..])
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!(
                "metaboot clean: `{}` failed: reboot by hand",
                REBOOT.join(" ")
            );
            return EXIT_ERROR;
        }
    }
    EXIT_DONE
}

/// Removes entry `name` of `dir`: a file or a symlink (never followed), or a directory with
/// all it holds (`remove_dir_all` follows no symlink either); a missing one is no error.
fn remove(dir: &Dir, name: &OsStr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    match dir.entry(name)? {
        None => Ok(()),
        Some(stat) if crate::fsutil::kind(&stat) == nix::sys::stat::SFlag::S_IFDIR => {
            // The directory as the kernel reached it, through the descriptor: no path walked
            // again, so no symlink put in its way is followed.
            let path = Path::new("/proc/self/fd")
                .join(dir.fd().as_raw_fd().to_string())
                .join(name);
            std::fs::remove_dir_all(path)
        }
        Some(_) => dir.remove_file(name).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::nocloud::SEED_DIRS;
    use std::path::PathBuf;

    fn args(root: &Path, logs: bool, seed: bool) -> CleanArgs {
        CleanArgs {
            root: root.to_owned(),
            logs,
            seed,
            reboot: false,
        }
    }

    /// The state directory is emptied but for its lock; logs and seeds go only when asked;
    /// a symlink in the state directory goes, not what it leads to.
    #[test]
    fn clean_empties_the_state_and_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| -> PathBuf { dir.path().join(p.trim_start_matches('/')) };
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        for file in [
            "var/lib/metaboot/.lock",
            "var/lib/metaboot/status.json",
            "var/lib/metaboot/instances/i-1/sem/config_scripts_user",
            "var/lib/metaboot/scripts/per-instance/10-build",
            "var/log/metaboot.log",
            "var/log/metaboot.log.1",
            "var/lib/cloud/seed/nocloud/meta-data",
            "var/lib/cloud/seed/azure/ovf-env.xml",
            "var/lib/cloud/instance-kept",
        ] {
            std::fs::create_dir_all(at(file).parent().unwrap()).unwrap();
            std::fs::write(at(file), "x").unwrap();
        }
        std::os::unix::fs::symlink(outside.path(), at("var/lib/metaboot/instance")).unwrap();
        assert_eq!(main(&args(dir.path(), false, false)), EXIT_DONE);
        let left: Vec<String> = std::fs::read_dir(at(STATE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [KEPT]);
        assert!(outside.path().join("keep").exists());
        assert!(at(LOG_FILE).exists());
        assert!(at(SEED_DIRS[0]).exists());
        assert_eq!(main(&args(dir.path(), true, true)), EXIT_DONE);
        assert!(!at(LOG_FILE).exists() && !at("var/log/metaboot.log.1").exists());
        // The whole seed directory, as cloud-init's `--seed`; nothing else of /var/lib/cloud.
        assert!(SEED_DIRS.iter().all(|seeds| seeds.starts_with(SEED_DIR)));
        assert!(!at(SEED_DIR).exists());
        assert!(at("var/lib/cloud/instance-kept").exists());
        // Nothing there to clean: still done.
        assert_eq!(main(&args(dir.path(), true, true)), EXIT_DONE);
    }

    /// A run holding the lock: nothing is removed.
    #[test]
    fn clean_refuses_while_a_run_holds_the_lock() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/metaboot");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("status.json"), "{}").unwrap();
        let lock = std::fs::File::create(state.join(KEPT)).unwrap();
        let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(main(&args(dir.path(), false, false)), EXIT_ERROR);
        assert!(state.join("status.json").exists());
        drop(held);
    }
}
