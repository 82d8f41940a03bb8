//! The `run` command: the tiny image's scenarios in a fresh lab, or (`--image FILE`) one cloud
//! image a user brings; each reports a table and exits 0 only when every check passed.

use std::path::PathBuf;

use anyhow::Context;

use crate::args::{Run, build_tiny};
use crate::scenario::cloud_image::{self, own};
use crate::{image, lab, progress, scenario};

/// Runs `run` with its arguments.
pub fn run(cache: &std::path::Path, args: Run) -> anyhow::Result<i32> {
    if args.image.is_some() {
        image(cache, args)
    } else {
        scenarios(cache, args)
    }
}

/// Run directories (keys, disks, console logs) kept under `<cache>/runs`.
pub const MAX_KEPT_RUNS: usize = 5;

fn scenarios(cache: &std::path::Path, args: Run) -> anyhow::Result<i32> {
    let scenarios = scenario::matrix::select(&args.scenarios)?;
    if args.list {
        for s in &scenarios {
            println!("{}", s.name());
        }
        return Ok(0);
    }
    scenario::check_jobs(args.jobs)?;
    scenario::preflight()?;
    lab::take_down_abandoned(&args.lab.state_root);
    let image = build_tiny(cache, None, &args.agent)?;
    let server_bin = args.server.resolve()?;
    let run_dir = run_dir(cache, args.run_dir)?;
    let names: Vec<String> = std::iter::once("lab".to_owned())
        .chain(scenarios.iter().map(|s| s.name()))
        .collect();
    let progress = progress::for_terminal(&names);
    let lab_id = lab::config::random_id();
    scenario::tear_down_on_signal(&args.lab.state_root, &lab_id)?;
    let opts = scenario::RunOptions {
        lab_id,
        scenarios,
        jobs: args.jobs,
        image,
        server_bin,
        state_root: args.lab.state_root,
        run_dir: run_dir.clone(),
        keep_lab: args.keep_lab,
        via: args.via,
    };
    let report = scenario::run(&opts, progress.as_ref());
    scenario::yield_to_a_signal();
    let report = report?;
    drop(progress);
    let failures = report.failures();
    if !failures.is_empty() {
        println!("{failures}");
    }
    print!("{}", report.table());
    println!("logs, keys and disks: {}", run_dir.display());
    if let Some(path) = &args.report {
        report.write_json(path)?;
        println!("report: {}", path.display());
    }
    Ok(if report.passed { 0 } else { 1 })
}

/// The run directory: `--run-dir`, else a new one under `<cache>/runs`, keeping the newest
/// [`MAX_KEPT_RUNS`] (and any another run still uses). Named by the time and the PID: two runs
/// started in the same second never share one (its overlay and its SSH key are the run's
/// own). Created, and held by this process until it exits, so that no other run prunes it.
fn run_dir(cache: &std::path::Path, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = given.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let runs = cache.join("runs");
        let dir = runs.join(format!("run-{stamp}-{}", std::process::id()));
        image::output::prune_prefixed(&runs, "run-", &dir, MAX_KEPT_RUNS - 1);
        dir
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create the run directory {}", dir.display()))?;
    image::in_use::hold(&dir)?.keep();
    Ok(dir)
}

/// Holds the run directory under `<cache>/runs` that the image file `real` (a canonical path)
/// lies in, if any (an overlay an earlier run kept): the prune that makes this run's
/// directory ([`run_dir`]) then leaves it, and the file this run boots, alone.
fn hold_run_of(cache: &std::path::Path, real: &std::path::Path) -> anyhow::Result<()> {
    // No runs yet: nothing to prune.
    let Ok(runs) = std::fs::canonicalize(cache.join("runs")) else {
        return Ok(());
    };
    let Some(std::path::Component::Normal(name)) = real
        .strip_prefix(&runs)
        .ok()
        .and_then(|inside| inside.components().next())
    else {
        return Ok(());
    };
    let dir = runs.join(name);
    if !dir.is_dir() {
        return Ok(());
    }
    image::in_use::hold(&dir)
        .with_context(|| {
            format!(
                "{} lies in the run directory {}, which another run is removing: copy the \
                 image out of {} and run again",
                real.display(),
                dir.display(),
                runs.display()
            )
        })?
        .keep();
    Ok(())
}

/// Holds what the image `real` and each file of its backing chain (`backing`) lie in, as
/// [`own::resolve`] holds the image's: the run directory an earlier run kept it in
/// ([`hold_run_of`]), or the built image whose disk it is (a kept overlay's base): neither the
/// prune of old runs nor a build's prune removes it before QEMU opens it.
fn hold_chain(
    cache: &std::path::Path,
    real: &std::path::Path,
    backing: &[PathBuf],
) -> anyhow::Result<()> {
    let below = backing
        .iter()
        .filter_map(|file| std::fs::canonicalize(file).ok());
    for file in std::iter::once(real.to_owned()).chain(below) {
        hold_run_of(cache, &file)?;
        own::hold_if_built(&file);
    }
    Ok(())
}

/// `run --image FILE`: one cloud image guest in a fresh lab. A file that is not a disk image
/// gets one line and exit 2; a guest that fails its checks, exit 1.
fn image(cache: &std::path::Path, args: Run) -> anyhow::Result<i32> {
    let Some(image) = args.image.clone() else {
        return scenarios(cache, args);
    };
    // Looked at by the path given (the messages name it), booted as the real file behind it.
    let looked_at = own::inspect(&image).and_then(|info| Ok((own::resolve(&image)?, info)));
    let (real, info) = match looked_at {
        Ok(found) => found,
        Err(err) if err.is_bad_input() => {
            eprintln!("metaboot-harness: {err}");
            return Ok(2);
        }
        Err(err) => return Err(err.into()),
    };
    hold_chain(cache, &real, &info.backing_files)?;
    scenario::preflight()?;
    lab::take_down_abandoned(&args.lab.state_root);
    let own = own::OwnImage {
        image: real,
        given: image,
        info,
        user: args.user,
        path: args.path,
        via: args.via,
        boot_timeout: args.timeout.map_or(
            crate::guest::qemu::DISK_BOOT_TIMEOUT,
            std::time::Duration::from_secs,
        ),
    };
    let guest = own.guest();
    let run_dir = run_dir(cache, args.run_dir)?;
    let lab_id = lab::config::random_id();
    scenario::tear_down_on_signal(&args.lab.state_root, &lab_id)?;
    let opts = cloud_image::CloudImageRun {
        lab_id: lab_id.clone(),
        guests: vec![guest],
        jobs: 1,
        server_bin: args.server.resolve()?,
        state_root: args.lab.state_root,
        run_dir: run_dir.clone(),
        keep_lab: args.keep_lab,
    };
    let reports = cloud_image::run_all(&opts, &progress::Lines::new());
    scenario::yield_to_a_signal();
    let reports = reports?;
    print!("{}", cloud_image::table(&reports));
    println!(
        "lab {lab_id} is {}; logs, keys and the overlay: {}",
        if args.keep_lab { "still up" } else { "down" },
        run_dir.display()
    );
    if let Some(path) = &args.report {
        crate::atomic::write(path, &serde_json::to_vec_pretty(&reports)?, 0o644)?;
        println!("report: {}", path.display());
    }
    Ok(if reports.iter().all(|r| r.passed) {
        0
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's directory survives the prune of a run started after it, however many newer
    /// ones there are.
    #[test]
    fn a_run_directory_in_use_is_not_pruned() {
        let cache = tempfile::tempdir().unwrap();
        let ours = run_dir(cache.path(), None).unwrap();
        assert!(ours.is_dir() && ours.starts_with(cache.path().join("runs")));
        let old = cache.path().join("runs/run-0-1");
        std::fs::create_dir(&old).unwrap();
        let next = cache.path().join("runs/run-next");
        image::output::prune_prefixed(&cache.path().join("runs"), "run-", &next, 0);
        assert!(ours.is_dir(), "still in use");
        assert!(!old.exists());
        // A directory given with --run-dir is made and held too.
        let given = cache.path().join("mine/run");
        assert_eq!(run_dir(cache.path(), Some(given.clone())).unwrap(), given);
        assert!(!image::in_use::remove_unless_held(&given));
    }

    /// An image inside an old run directory (the overlay a run kept, booted again) is still
    /// there after the prune that makes the new run's directory.
    #[test]
    fn an_image_in_an_old_run_directory_is_not_pruned() {
        let cache = tempfile::tempdir().unwrap();
        let runs = cache.path().join("runs");
        let now = std::time::SystemTime::now();
        for i in 0..=MAX_KEPT_RUNS as u64 {
            let run = runs.join(format!("run-{i}-1"));
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("overlay.qcow2"), b"qcow").unwrap();
            let when = now - std::time::Duration::from_secs(100 * (20 - i));
            std::fs::File::open(&run)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        let oldest = std::fs::canonicalize(runs.join("run-0-1/overlay.qcow2")).unwrap();
        let next = std::fs::canonicalize(runs.join("run-1-1/overlay.qcow2")).unwrap();
        hold_run_of(cache.path(), &oldest).unwrap();
        // Paths outside the runs (or no runs at all) hold nothing and fail nothing.
        hold_run_of(cache.path(), std::path::Path::new("/var/tmp/image.qcow2")).unwrap();
        hold_run_of(&cache.path().join("none"), &oldest).unwrap();
        let ours = run_dir(cache.path(), None).unwrap();
        assert!(oldest.is_file(), "the image this run boots is kept");
        assert!(!next.exists(), "an old run without it is pruned");
        assert!(ours.is_dir());
    }

    /// `run --image <runs>/run-X/overlay.qcow2` whose base is a built image: the build's prune
    /// (of images as of runs) leaves both the run directory and the built image alone.
    #[test]
    fn a_built_image_below_a_kept_overlay_is_held() {
        let cache = tempfile::tempdir().unwrap();
        let images = cache.path().join("images");
        let built = images.join("debian-metaboot-0123");
        std::fs::create_dir_all(&built).unwrap();
        std::fs::write(built.join(image::disk::DISK), b"QFI").unwrap();
        let manifest = serde_json::json!({
            "kind": "debian-metaboot", "key": "0123", "inputs": [],
            "provisioner": "metaboot", "default_user": "debian", "packages": [],
            "kernel": "6.1.0-57-cloud-amd64", "disk_bytes": 3, "virtual_bytes": 3,
            "root_bytes": 3, "rootfs_cached": true, "build_seconds": 1.0,
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        std::fs::write(built.join(image::MANIFEST), manifest).unwrap();
        let kept = cache.path().join("runs/run-0-1");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::write(kept.join("overlay.qcow2"), b"QFI").unwrap();

        let overlay = std::fs::canonicalize(kept.join("overlay.qcow2")).unwrap();
        hold_chain(cache.path(), &overlay, &[built.join(image::disk::DISK)]).unwrap();
        // A build elsewhere keeps none of the older images: this one is held all the same.
        let newer = images.join("debian-metaboot-4567");
        std::fs::create_dir(&newer).unwrap();
        image::output::prune_prefixed(&images, "debian-metaboot-", &newer, 0);
        assert!(built.join(image::disk::DISK).is_file(), "the base is held");
        assert!(!image::in_use::remove_unless_held(&kept), "the run too");
    }

    #[test]
    fn old_run_directories_are_pruned_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MAX_KEPT_RUNS + 2 {
            let run = dir.path().join(format!("run-{i}"));
            std::fs::create_dir(&run).unwrap();
            let when = std::time::SystemTime::now()
                - std::time::Duration::from_secs(100 * (20 - i as u64));
            std::fs::File::open(&run)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        let current = dir.path().join("run-new");
        image::output::prune_prefixed(dir.path(), "run-", &current, MAX_KEPT_RUNS - 1);
        std::fs::create_dir(&current).unwrap();
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, MAX_KEPT_RUNS);
        assert!(
            dir.path()
                .join(format!("run-{}", MAX_KEPT_RUNS + 1))
                .exists(),
            "the newest are kept"
        );
    }
}
