//! Several cloud image guests in one fresh lab, and their report table.

use std::fs;
use std::path::PathBuf;
use std::thread;

use anyhow::Context;

use super::guest::run;
use super::spec::{CloudImageGuest, CloudImageReport};
use crate::check::ssh;
use crate::guest::Via;
use crate::lab::Lab;
use crate::progress::Progress;

/// What [`run_all`] needs.
#[derive(Debug, Clone)]
pub struct CloudImageRun {
    /// The id of the lab the run brings up.
    pub lab_id: String,
    /// The guests.
    pub guests: Vec<CloudImageGuest>,
    /// Guests booting at once, 1..=[`crate::scenario::MAX_JOBS`].
    pub jobs: usize,
    /// The `metaboot-server` binary.
    pub server_bin: PathBuf,
    /// Root of the labs' state directories.
    pub state_root: PathBuf,
    /// Directory for keys, overlays and console logs (one subdirectory per guest).
    pub run_dir: PathBuf,
    /// Leave the lab up afterwards (`run --image FILE --keep-lab`).
    pub keep_lab: bool,
}

/// Boots every guest in a fresh lab (the default one: a routed and an isolated network) and
/// takes the lab down again (unless `keep_lab`), also when a guest thread panics.
pub fn run_all(
    opts: &CloudImageRun,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<CloudImageReport>> {
    crate::scenario::check_jobs(opts.jobs)?;
    let config = crate::lab::config::LabConfig::default_with_id(&opts.lab_id);
    fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("failed to create {}", opts.run_dir.display()))?;
    progress.stage("lab", &format!("bringing lab {} up", config.id));
    let mut lab = Lab::up(
        &config,
        &crate::lab::LabOptions {
            state_root: opts.state_root.clone(),
            server_bin: opts.server_bin.clone(),
        },
    )
    .with_context(|| format!("failed to bring lab {} up", config.id))?;
    if opts.keep_lab {
        // The user's from the start: a run killed before its end leaves it up too.
        lab.keep()
            .with_context(|| format!("failed to record lab {} as kept", config.id))?;
    }
    progress.done("lab", true, &format!("lab {} up", config.id));
    let mut guard = crate::scenario::DownOnDrop {
        state_root: &opts.state_root,
        id: &config.id,
        armed: true,
    };
    let askpass = ssh::write_askpass(&opts.run_dir)?;
    let via = if opts.guests.iter().any(|g| g.via == Via::Libvirt) {
        Via::Libvirt
    } else {
        Via::Qemu
    };
    let boots = crate::scenario::with_libvirtd(via, &lab, &opts.run_dir, || {
        Ok(boot_all(opts, &lab, &askpass, progress))
    });
    guard.armed = false;
    if let Err(broken) = lab.require_running() {
        eprintln!("during the run: {broken:#}");
    }
    crate::scenario::down_unless_kept(lab, opts.keep_lab)?;
    let mut results = boots?;
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Boots the guests, `opts.jobs` at a time; (index, report) in the order they finished.
fn boot_all(
    opts: &CloudImageRun,
    lab: &Lab,
    askpass: &std::path::Path,
    progress: &dyn Progress,
) -> Vec<(usize, CloudImageReport)> {
    // Reversed: pop() hands them out in order.
    let queue = std::sync::Mutex::new(opts.guests.iter().enumerate().rev().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..opts.jobs.min(opts.guests.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((index, spec)) = next else { break };
                    let dir = opts.run_dir.join(spec.slug());
                    let report = run(lab, spec, &dir, askpass, progress);
                    let summary = report
                        .error
                        .clone()
                        .or_else(|| {
                            report
                                .checks
                                .iter()
                                .find(|c| !c.passed)
                                .map(|c| format!("{}: {}", c.name, c.detail))
                        })
                        .unwrap_or_else(|| {
                            format!("{} checks in {:.0} s", report.checks.len(), report.seconds)
                        });
                    progress.done(&report.name, report.passed, &summary);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((index, report));
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Narrowest width of the table's guest column.
pub const GUEST_COLUMN: usize = 28;

/// A table of reports: one line per guest with its boot times, then every failed check.
pub fn table(reports: &[CloudImageReport]) -> String {
    let secs = |t: Option<f64>| t.map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"));
    let width = reports
        .iter()
        .map(|r| r.name.chars().count())
        .chain([GUEST_COLUMN])
        .max()
        .unwrap_or(GUEST_COLUMN);
    let mut out = format!(
        "{:<width$} {:>6} {:>7} {:>7} {:>7} {:>8} {:>7}  result\n",
        "guest", "kernel", "sshd", "ssh", "done", "verdict", "checks"
    );
    for r in reports {
        let passed = r.checks.iter().filter(|c| c.passed).count();
        out.push_str(&format!(
            "{:<width$} {:>6} {:>7} {:>7} {:>7} {:>8} {:>7}  {}\n",
            r.name,
            secs(r.times.kernel),
            secs(r.times.sshd),
            secs(r.times.ssh),
            secs(r.times.provisioner_done),
            secs(r.times.verdict),
            format!("{passed}/{}", r.checks.len()),
            if r.passed { "PASS" } else { "FAIL" }
        ));
    }
    out.push_str("(seconds after QEMU's start: kernel banner, sshd started, first key login, provisioner's last console line, verdict final)\n");
    for r in reports {
        if let Some(err) = &r.error {
            out.push_str(&format!("{}: {err}\n", r.name));
        }
        for c in r.checks.iter().filter(|c| !c.passed) {
            out.push_str(&format!("{}: {}: {}\n", r.name, c.name, c.detail));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Via;

    fn report(name: &str) -> CloudImageReport {
        CloudImageReport {
            name: name.into(),
            passed: true,
            checks: Vec::new(),
            times: crate::scenario::cloud_image::spec::DiskBootTimes::default(),
            error: None,
            provisioner: None,
            via: Via::Libvirt,
            instance: None,
            serial_log: "/r/serial.log".into(),
            after_reboot_log: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn the_guest_column_is_as_wide_as_the_longest_name() {
        let long = "router/debian-cloud-init-libvirt-and-more";
        assert!(long.len() > GUEST_COLUMN);
        let text = table(&[report("router/x"), report(long)]);
        let result_at: Vec<usize> = text
            .lines()
            .take(3)
            .map(|l| l.find("result").or_else(|| l.find("PASS")).unwrap())
            .collect();
        assert!(result_at.windows(2).all(|w| w[0] == w[1]), "{text}");
        let short = table(&[report("router/x")]);
        assert_eq!(
            short.lines().next().unwrap().find(" kernel"),
            Some(GUEST_COLUMN)
        );
    }
}
