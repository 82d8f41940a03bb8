//! `metaboot status`: the last run's state (done / running / error) with each step's outcome,
//! like `cloud-init status --long`; the exit code says whether provisioning succeeded.

use std::fmt::Write as _;
use std::time::Duration;

use super::State;
use super::result::{Outcome, Report, RunStatus};
use crate::cli::StatusArgs;
use crate::log::escape_controls;
use crate::root::Root;

/// Exit code: the last run finished and every step succeeded.
pub const EXIT_DONE: u8 = 0;
/// Exit code: the last run finished with at least one failed step.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: a run is in progress, or none has started (status `running` / `not started`).
pub const EXIT_NOT_DONE: u8 = 2;
/// How often `--wait` re-reads the status.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

/// Where the kernel lists the file locks held: `status` asks it whether a run holds `.lock`
/// instead of taking the lock itself, which, even for a moment, could make a run starting
/// then refuse to run.
pub const PROC_LOCKS: &str = "/proc/locks";

/// Reads `status.json` under `root`: `Ok(None)` when no run has started yet.
pub fn read(root: &Root) -> Result<Option<Report>, String> {
    let path = State::new(root).status_path();
    let shown = root.host_path(&path);
    match root.read_optional(&path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            format!(
                "{} is not a metaboot status document: {err}",
                shown.display()
            )
        }),
        Err(err) => Err(format!("cannot read {}: {err}", shown.display())),
    }
}

/// Runs `metaboot status`.
pub fn main(args: &StatusArgs) -> u8 {
    let this_boot = super::result::boot_id();
    let report = loop {
        let found = match Root::open(&args.root) {
            Ok(root) => read(&root),
            // No root yet: nothing has run there.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(format!("cannot open root {}: {err}", args.root.display())),
        };
        match found {
            Err(err) => {
                eprintln!("metaboot status: {err}");
                return EXIT_ERROR;
            }
            Ok(report) => {
                // A run of an earlier boot (a reboot, an instance started from a snapshot) says
                // nothing of this one: not started yet.
                let report = report
                    .filter(|report| !report.from_another_boot(this_boot.as_deref()))
                    .map(|report| match Root::open(&args.root) {
                        Ok(root) => stopped(&root, report, PROC_LOCKS),
                        Err(_) => report,
                    });
                let running = report
                    .as_ref()
                    .is_none_or(|r| r.status == RunStatus::Running);
                if !(args.wait && running) {
                    break report;
                }
                std::thread::sleep(WAIT_POLL);
            }
        }
    };
    let Some(report) = report else {
        if args.json {
            println!("{{\"status\": \"not started\"}}");
        } else {
            println!("status: not started");
        }
        return EXIT_NOT_DONE;
    };
    if args.json {
        // Serialising plain data cannot fail.
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    match report.status {
        RunStatus::Done => EXIT_DONE,
        RunStatus::Error => EXIT_ERROR,
        RunStatus::Running => EXIT_NOT_DONE,
    }
}

/// A run that says `running` with no stage left to wait for (`next_stage`, or a final stage
/// no unit will run: [`Report::final_ran`]) while no process holds its lock was stopped before
/// it finished (killed, its unit stopped, the machine's OOM
/// killer): it is reported as an error, so that `--wait` ends, as cloud-init's `status`
/// reports a failed unit. When that cannot be told (no `locks` file to read), the report is
/// left as it is. The status is read again once the lock is seen free: a run writes its last
/// report before it lets go of the lock.
pub fn stopped(root: &Root, report: Report, locks: &str) -> Report {
    let waits = |report: &Report| {
        report.status == RunStatus::Running && (report.next_stage.is_none() || report.final_ran)
    };
    if !waits(&report) {
        return report;
    }
    let Ok(held) = std::fs::read_to_string(locks) else {
        return report;
    };
    let state = State::new(root);
    let lock = state.lock_path();
    if run_holds(root, &lock, &held) {
        return report;
    }
    let mut again = match read(root) {
        Ok(Some(again)) if waits(&again) && again.started_at == report.started_at => again,
        Ok(Some(again)) => return again,
        _ => return report,
    };
    again.status = RunStatus::Error;
    if again.next_stage.is_some() {
        again.errors.push(
            "the final stage (user scripts, runcmd) has not run, and metaboot-final.service \
             already ran in this boot: run `metaboot run --stage final` to finish the run"
                .to_owned(),
        );
        return again;
    }
    again.errors.push(format!(
        "the run was stopped before it finished (no metaboot run holds {}); run `metaboot \
         run` again to finish it",
        root.host_path(&lock).display()
    ));
    again
}

/// Whether the lock file at `lock` appears among `held` (`/proc/locks`' lines name a file
/// `MAJOR:MINOR:INODE`). Only the inode number is compared: the device there is the file
/// system's own (`s_dev`), which on btrfs (each subvolume its own device number) and some
/// overlays is not the `st_dev` that `stat` gives. Another file system's lock on the same
/// inode number can only make a stopped run read as running, the verdict `status` gave before
/// it looked. A missing lock file is held by none: a run makes it before it writes `running`;
/// one that cannot be looked at (a user without the right to) is taken as held, as nothing can
/// be told.
fn run_holds(root: &Root, lock: &std::path::Path, held: &str) -> bool {
    let stat = match root.stat(lock) {
        Ok(Some(stat)) => stat,
        Ok(None) => return false,
        Err(_) => return true,
    };
    let inode = stat.st_ino.to_string();
    held.lines().any(|line| {
        line.split_whitespace().any(|field| {
            let mut parts = field.split(':');
            let (major, minor, number) = (parts.next(), parts.next(), parts.next());
            parts.next().is_none()
                && [major, minor]
                    .iter()
                    .all(|part| part.is_some_and(|hex| u32::from_str_radix(hex, 16).is_ok()))
                && number == Some(inode.as_str())
        })
    })
}

/// The narrowest the step names' column gets in `metaboot status`; wider when a step's name is
/// longer (`ssh-authkey-fingerprints`), so the outcomes stay in one column.
pub const MIN_STEP_COLUMN: usize = 22;

/// The long human-readable form.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "status: {}", report.status.word());
    if let Some(next) = &report.next_stage {
        let next = escape_controls(next);
        let _ = writeln!(
            out,
            "waiting for: stage {next} (`metaboot run --stage {next}`)"
        );
    }
    let id = escape_controls(report.instance_id.as_deref().unwrap_or("unknown"));
    let new = match report.new_instance {
        Some(true) => " (new)",
        _ => "",
    };
    let _ = writeln!(out, "instance: {id}{new}");
    let _ = writeln!(
        out,
        "source: {}",
        report.source.as_deref().unwrap_or("none")
    );
    let _ = writeln!(out, "started: {}", iso8601(report.started_at));
    if let Some(finished) = report.finished_at {
        let ms = report.duration_ms.unwrap_or(0);
        let _ = writeln!(out, "finished: {} ({ms} ms)", iso8601(finished));
    }
    let _ = writeln!(out, "steps:");
    let width = report
        .steps
        .iter()
        .map(|step| step.name.chars().count())
        .fold(MIN_STEP_COLUMN, usize::max);
    for step in &report.steps {
        let outcome = match step.outcome {
            Outcome::Ok => "ok",
            Outcome::Skipped => "skipped",
            Outcome::Error => "error",
        };
        let message = escape_controls(step.message.as_deref().unwrap_or(""));
        let _ = writeln!(
            out,
            "  {:<width$} {:<8} {:>6} ms  {message}",
            step.name, outcome, step.duration_ms
        );
        for script in &step.scripts {
            let code = script
                .exit_code
                .map_or_else(|| "none".to_owned(), |c| c.to_string());
            let _ = writeln!(
                out,
                "    script {}: exit {code} ({} ms){}",
                escape_controls(&script.name),
                script.duration_ms,
                script
                    .error
                    .as_deref()
                    .map(|e| format!(" {}", escape_controls(e)))
                    .unwrap_or_default()
            );
        }
    }
    for (title, lines) in [("errors", &report.errors), ("warnings", &report.warnings)] {
        if !lines.is_empty() {
            let _ = writeln!(out, "{title}:");
            for line in lines {
                let _ = writeln!(out, "  - {}", escape_controls(line));
            }
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (days-to-civil, H. Hinnant's algorithm).
pub fn iso8601(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::result::Done;

    /// A run `running` with no stage left to wait for is stopped when no process holds its
    /// lock, and still running while one does; a run waiting for its final stage is left
    /// waiting.
    #[test]
    fn a_running_status_whose_lock_nobody_holds_is_a_stopped_run() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let state = State::new(&root);
        let report = Report::start();
        state.write_running(&report).unwrap();
        let lock = std::fs::File::create(root.host_path(state.lock_path())).unwrap();

        let found = stopped(&root, read(&root).unwrap().unwrap(), PROC_LOCKS);
        assert_eq!(found.status, RunStatus::Error);
        assert!(
            found.errors[0].starts_with("the run was stopped before it finished"),
            "{:?}",
            found.errors
        );
        assert!(render(&found).starts_with("status: error\n"));

        let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).unwrap();
        let found = stopped(&root, read(&root).unwrap().unwrap(), PROC_LOCKS);
        assert_eq!(found.status, RunStatus::Running);
        drop(held);

        let mut waiting = Report::start();
        waiting.next_stage = Some("final".into());
        state.write_running(&waiting).unwrap();
        let found = stopped(&root, read(&root).unwrap().unwrap(), PROC_LOCKS);
        assert_eq!(found.status, RunStatus::Running);
        // Waiting for a final stage that already ran in this boot (a manual `--stage init`):
        // not waited for.
        waiting.final_ran = true;
        state.write_running(&waiting).unwrap();
        let found = stopped(&root, read(&root).unwrap().unwrap(), PROC_LOCKS);
        assert_eq!(found.status, RunStatus::Error);
        assert!(
            found.errors[0].contains("run `metaboot run --stage final`"),
            "{:?}",
            found.errors
        );
        // Without a lock table to read, nothing is concluded.
        let found = stopped(&root, Report::start(), "/nonexistent/locks");
        assert_eq!(found.status, RunStatus::Running);
    }

    /// `/proc/locks` names the file system's own device, which on btrfs is not `stat`'s
    /// `st_dev`: the lock file is found by its inode number whatever device a line names.
    #[test]
    fn the_lock_file_is_found_by_its_inode_whatever_the_device() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let lock = State::new(&root).lock_path();
        std::fs::create_dir_all(root.host_path(&lock).parent().unwrap()).unwrap();
        std::fs::File::create(root.host_path(&lock)).unwrap();
        let inode = std::fs::metadata(root.host_path(&lock)).unwrap().ino();
        let line = |device: &str, inode: u64| {
            format!("1: FLOCK  ADVISORY  WRITE 4242 {device}:{inode} 0 EOF\n")
        };
        assert!(run_holds(&root, &lock, &line("00:2f", inode)));
        assert!(run_holds(&root, &lock, &line("fd:01", inode)));
        assert!(!run_holds(&root, &lock, &line("00:2f", inode + 1)));
        assert!(!run_holds(&root, &lock, ""));
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_435_199), "2026-11-23T11:59:59Z");
    }

    #[test]
    fn render_lists_steps_and_errors() {
        let mut report = Report::start();
        report.instance_id = Some("i-1".into());
        report.step("meta-data", Done::ok);
        report.step("user-data", || Done::error("user data: Corrupt gzip data"));
        report.finish();
        let text = render(&report);
        assert!(text.starts_with("status: error\ninstance: i-1\n"), "{text}");
        assert!(text.contains("user-data              error"), "{text}");
        assert!(
            text.contains("errors:\n  - user-data: user data: Corrupt gzip data\n"),
            "{text}"
        );
    }

    #[test]
    fn outcomes_stay_in_one_column_after_a_step_name_wider_than_the_minimum() {
        let mut report = Report::start();
        let long = "ssh-authkey-fingerprints";
        assert!(long.len() > MIN_STEP_COLUMN);
        report.step("hostname", Done::ok);
        report.step(long, || Done::skipped("no user"));
        let text = render(&report);
        let steps: Vec<&str> = text
            .lines()
            .skip_while(|line| *line != "steps:")
            .skip(1)
            .collect();
        let outcome_column = 2 + long.len() + 1;
        assert_eq!(steps.len(), 2, "{text}");
        assert!(steps[0][outcome_column..].starts_with("ok "), "{text}");
        assert!(steps[1][outcome_column..].starts_with("skipped "), "{text}");
        let mut short = Report::start();
        short.step("hostname", Done::ok);
        let line = format!("  {:<MIN_STEP_COLUMN$} ok ", "hostname");
        assert!(render(&short).contains(&line), "{}", render(&short));
    }
}
