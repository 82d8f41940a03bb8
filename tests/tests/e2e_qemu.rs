//! The end-to-end matrix: QEMU guests booting the tiny image in the namespace lab, served by
//! `metaboot-server all`, checked from outside with OpenSSH. Needs root and QEMU: fails in CI
//! when they are missing, skips elsewhere.
//!
//! `METABOOT_E2E_SCENARIOS` (space-separated names, default all) and `METABOOT_E2E_JOBS`
//! (guests at once) narrow or widen a run. The report is written to `target/e2e/`.

use std::path::PathBuf;

use metaboot_harness::cli::{AgentArgs, build_tiny};
use metaboot_harness::guest::Via;
use metaboot_harness::scenario::{self, RunOptions, matrix};
use metaboot_harness::{lab, progress, workspace};

/// In CI (`CI=true`) a missing prerequisite fails the test; elsewhere it is skipped with the
/// reason printed.
fn require(what: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else { return true };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{what} is required in CI but {reason}");
    }
    eprintln!("skipping: {what} is not available here ({reason}); CI runs this test");
    false
}

#[test]
fn scenario_matrix_boots_and_checks_every_guest() {
    if !require(
        "root, QEMU and the lab tools",
        scenario::preflight().err().map(|e| format!("{e:#}")),
    ) {
        return;
    }
    let patterns: Vec<String> = std::env::var("METABOOT_E2E_SCENARIOS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let scenarios =
        matrix::select(&patterns).expect("METABOOT_E2E_SCENARIOS names known scenarios");
    let jobs = std::env::var("METABOOT_E2E_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(scenario::DEFAULT_JOBS);
    let cache = metaboot_harness::image::cache::default_dir();
    let image =
        build_tiny(&cache, None, &AgentArgs { agent: None }).expect("the tiny image builds");
    let server_bin = workspace::build(workspace::SERVER).expect("metaboot-server builds");
    let out = workspace::root().join("target/e2e");
    let run_dir: PathBuf = out.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let opts = RunOptions {
        lab_id: lab::config::random_id(),
        scenarios,
        jobs,
        image,
        server_bin,
        state_root: PathBuf::from(lab::state::DEFAULT_STATE_ROOT),
        run_dir,
        keep_lab: false,
        via: Via::Qemu,
    };
    let report =
        scenario::run(&opts, &progress::Lines::new()).expect("the lab comes up and goes down");
    report
        .write_json(&out.join("report.json"))
        .expect("the report is written");
    let table = report.table();
    std::fs::write(out.join("report.txt"), &table).expect("the table is written");
    eprintln!("{}{table}", report.failures());
    assert!(
        report.passed,
        "{} of {} scenarios failed (see above and target/e2e/)",
        report.failed_count,
        report.scenarios.len()
    );
}
