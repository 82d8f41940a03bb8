//! The tiny image's scenarios through a real libvirtd (`run --via libvirt`): the harness starts
//! virtlogd and libvirtd in the lab's bridge namespace, each guest is a transient domain made
//! with `virsh create` from the same guest description (the lab's tap as `<interface
//! type='ethernet'>`, the console in a file the harness follows), and everything is checked
//! from outside as with the harness's own QEMU. Afterwards no domain, no libvirtd and no
//! virtlogd of the run is left.
//!
//! Needs root, QEMU, libvirt and the lab's tools: fails in CI when they are missing, skips
//! elsewhere. `METABOOT_E2E_LIBVIRT` (space-separated scenario names, default `demo`: one guest
//! per metadata path) chooses the scenarios.

use std::path::PathBuf;

use metaboot_harness::cli::{AgentArgs, build_tiny};
use metaboot_harness::guest::Via;
use metaboot_harness::guest::libvirtd;
use metaboot_harness::scenario::{self, RunOptions, matrix};
use metaboot_harness::{lab, progress, workspace};
use metaboot_tests::prerequisite::require;

/// Processes named `name` (their `comm`).
fn processes(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

#[test]
fn scenarios_run_through_a_real_libvirtd_and_leave_nothing_behind() {
    let missing = scenario::preflight()
        .and_then(|()| libvirtd::preflight())
        .err()
        .map(|e| format!("{e:#}"));
    if !require("root, QEMU, libvirt and the lab tools", missing) {
        return;
    }
    let patterns: Vec<String> = std::env::var("METABOOT_E2E_LIBVIRT")
        .unwrap_or_else(|_| "demo".into())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let scenarios = matrix::select(&patterns).expect("known scenarios");
    let before = processes("libvirtd");
    let image = build_tiny(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
    )
    .expect("the tiny image builds");
    let out = workspace::root().join("target/e2e");
    let run_dir: PathBuf = out.join("libvirt-run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let opts = RunOptions {
        lab_id: lab::config::random_id(),
        scenarios,
        jobs: scenario::DEFAULT_JOBS,
        image,
        server_bin: workspace::build(workspace::SERVER).expect("metaboot-server builds"),
        state_root: PathBuf::from(lab::state::DEFAULT_STATE_ROOT),
        run_dir: run_dir.clone(),
        keep_lab: false,
        via: Via::Libvirt,
    };
    let report =
        scenario::run(&opts, &progress::Lines::new()).expect("the lab comes up and goes down");
    let table = report.table();
    std::fs::write(out.join("libvirt-report.txt"), &table).expect("the table is written");
    eprintln!("{}{table}", report.failures());
    assert!(
        report.passed,
        "{} of {} scenarios failed (see above and {})",
        report.failed_count,
        report.scenarios.len(),
        run_dir.display()
    );
    let libvirtd_log = std::fs::read_to_string(run_dir.join("libvirt/libvirtd.log"))
        .expect("the harness started its own libvirtd and kept its log");
    assert!(libvirtd_log.contains("libvirt version"), "{libvirtd_log}");
    for slug in report.scenarios.iter().map(|s| s.name.replace('/', "-")) {
        let xml = std::fs::read_to_string(run_dir.join(&slug).join("serial-1.console.xml"))
            .unwrap_or_else(|e| panic!("{slug}: the domain XML given to virsh create: {e}"));
        assert!(xml.contains("<interface type='ethernet'>"), "{xml}");
    }
    assert_eq!(
        processes("libvirtd"),
        before,
        "the libvirtd the run started is stopped"
    );
}
