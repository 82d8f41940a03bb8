//! metaboot-bench: metaboot against real baselines in the same run, interleaved and repeated,
//! medians and ratios in one table. A tool, not a test: it exits 0 whether or not the goals are
//! met, and non-zero only when something could not be measured.
//!
//! It stands apart from the harness, whose library it runs on (lab, images, processes, the
//! chain fixture), because it writes its bulk registries through the server's store, and the
//! harness drives the server only as a program. `metaboot-harness bench …` runs this program.

pub mod baselines;
pub mod boot_phases;
pub mod chain;
pub mod cli;
pub mod cloud_init;
pub mod debian;
pub mod disk;
pub mod fleet;
pub mod install;
pub mod interrupt;
pub mod load;
pub mod measure;
pub mod plan;
pub mod propagation;
pub mod qemu;
pub mod scale;
pub mod storm;
pub mod table;
pub mod throughput;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use metaboot_harness::cli::AgentArgs;
use metaboot_harness::workspace::{self, CargoBinary};
use serde::Serialize;

use crate::cli::{BenchArgs, Section};
use crate::plan::{Plan, ROUNDS};
use crate::table::Row;

/// `metaboot-server` as the bench runs it: the release profile.
pub const RELEASE_SERVER: CargoBinary<'static> = CargoBinary {
    package: "metaboot-server",
    bin: "metaboot-server",
    profile: Some("release"),
    target: None,
    static_crt: false,
};

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    plan: Plan,
    load_at_start: String,
    load_at_end: String,
    seconds: f64,
    rows: Vec<Row>,
    failures: Vec<String>,
    storm_samples: Vec<scale::StormSample>,
    qemu_samples: Vec<qemu::BootSample>,
    debian_samples: Vec<debian::DebianSample>,
    notes: Vec<&'static str>,
}

/// Notes printed under the table.
pub const NOTES: [&str; 8] = [
    "ratio = metaboot / baseline; values are medians of interleaved runs (see the JSON for every sample); per round = the \
     judged value (ratio or difference) of each round, lowest…highest: such a goal is met only when every round meets it",
    "chain: wrk -t2 -c64 (keep-alive) and -t1 -c1 on GET /openstack/latest/meta_data.json; nginx serves the bytes the chain \
     answered once, while metaboot renders a fresh 512-byte random_seed per request (the protocol)",
    "chain: haproxy runs Neutron's configuration (docs/protocol.md §3) minus syslog; the 3-hop baseline is that haproxy → nginx on a \
     Unix socket (keep-alive upstream) → nginx static, the same shape as ns-proxy → agent → API",
    "storm: baseline column = registry of 1 000 instances, metaboot column = the large registry, ratio = growth; each storm \
     runs against a freshly started `metaboot-server all` (peak RSS = its VmHWM)",
    "guest agent: whole-process wall time; cloud-init = python3 start + imports + MetadataReader.read_v2() (EC2 crawl at \
     the same base URL) + #cloud-config merge; metaboot = `metaboot run --root DIR` (fetch, decode, apply, 1 sync), DIR on \
     an ext4 disk of its own (loop device over a file on the host disk, as a guest's root disk), in a directory of the host's \
     shared file system, or on tmpfs; a round = 3 runs of each",
    "qemu: host clock on serial markers; baseline = the same tiny image with metaboot.baseline=wget (udhcpc + one wget, no \
     SSH); the tiny image's provisioned = `metaboot run` done and its SSH listener up; goal on the difference in each round; \
     phases from each console (bench/src/boot_phases.rs)",
    "debian: host clock from QEMU's start to the first key login as `debian` (tried every 250 ms); provisioner = its units' \
     main processes as the guest's systemd timed them (ExecMainStart → ExecMainExit); goals judged on every round",
    "the machine is shared and noisy: compare ratios, not absolute numbers, across runs",
];

/// Runs the bench; returns the exit code (0 unless something could not be measured).
pub fn run(cache: &Path, args: &BenchArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let plan = Plan::new(args)?;
    metaboot_harness::lab::require_root()?;
    interrupt::install()?;
    let load_at_start = measure::load_line();
    println!("metaboot bench at start: {load_at_start}");
    if plan.rounds < ROUNDS {
        println!(
            "(only {} round(s): medians need {ROUNDS} or more to hold on a noisy machine)",
            plan.rounds
        );
    }
    if args.no_install {
        let missing = install::missing();
        if !missing.is_empty() {
            anyhow::bail!(
                "missing packages: {} (run without --no-install)",
                missing.join(" ")
            );
        }
    } else {
        install::ensure(plan.has(Section::Qemu) || plan.has(Section::Debian))?;
    }
    let server_bin = match &args.server.server_bin {
        Some(path) => path.clone(),
        None => {
            workspace::build(RELEASE_SERVER).context("failed to build metaboot-server (release)")?
        }
    };
    let agent_bin = match &args.agent.agent {
        Some(path) => path.clone(),
        None => workspace::build(workspace::GUEST_AGENT)
            .context("failed to build the static guest agent")?,
    };
    let dir = tempfile::Builder::new()
        .prefix("metaboot-bench-")
        .tempdir()
        .context("failed to create the bench's temp dir")?;
    let mut report = Report {
        plan: plan.clone(),
        load_at_start,
        load_at_end: String::new(),
        seconds: 0.0,
        rows: Vec::new(),
        failures: Vec::new(),
        storm_samples: Vec::new(),
        qemu_samples: Vec::new(),
        debian_samples: Vec::new(),
        notes: NOTES.to_vec(),
    };
    let sections = Sections {
        cache,
        dir: dir.path(),
        server_bin: &server_bin,
        agent_bin: &agent_bin,
        state_root: &args.lab.state_root,
        plan: &plan,
    };
    if plan.has(Section::Chain) || plan.has(Section::Agent) {
        let outcome = sections.chain_and_agent(&mut report);
        record(&mut report, "chain/agent", outcome);
    }
    if plan.has(Section::Storm) && !interrupt::interrupted() {
        println!("== boot storm");
        let outcome =
            scale::measure(&server_bin, &dir.path().join("storm"), &plan).map(|(rows, samples)| {
                report.rows.extend(rows);
                report.storm_samples = samples;
            });
        record(&mut report, "storm", outcome);
    }
    if plan.has(Section::Qemu) && !interrupt::interrupted() {
        println!("== QEMU");
        let outcome = sections.qemu(&mut report);
        record(&mut report, "qemu", outcome);
    }
    if plan.has(Section::Debian) && !interrupt::interrupted() {
        println!("== Debian cloud images: cloud-init vs metaboot");
        let outcome = sections.debian(&mut report);
        record(&mut report, "debian", outcome);
    }
    if interrupt::interrupted() {
        return Ok(interrupt::EXIT_INTERRUPTED);
    }
    report.load_at_end = measure::load_line();
    report.seconds = started.elapsed().as_secs_f64();
    println!();
    print!("{}", table::render(&report.rows));
    for note in NOTES {
        println!("  * {note}");
    }
    println!("load at start: {}", report.load_at_start);
    println!("load at end:   {}", report.load_at_end);
    println!("bench took {:.0} s", report.seconds);
    for failure in &report.failures {
        println!("NOT MEASURED: {failure}");
    }
    if args.keep {
        println!("kept: {}", dir.keep().display());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        metaboot_harness::atomic::write(path, &json, 0o644)?;
        println!("numbers: {}", path.display());
    }
    Ok(if report.failures.is_empty() { 0 } else { 1 })
}

fn record(report: &mut Report, section: &str, outcome: anyhow::Result<()>) {
    if let Err(err) = outcome {
        let text = format!("{section}: {err:#}");
        eprintln!("bench: {text}");
        report.failures.push(text);
    }
}

/// What the sections share.
struct Sections<'a> {
    cache: &'a Path,
    dir: &'a Path,
    server_bin: &'a Path,
    agent_bin: &'a Path,
    state_root: &'a Path,
    plan: &'a Plan,
}

impl Sections<'_> {
    /// The chain, the baselines and the guest agent's comparison (which uses the chain).
    fn chain_and_agent(&self, report: &mut Report) -> anyhow::Result<()> {
        let dir = self.dir.join("chain");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let setup = throughput::ChainSetup::start(self.server_bin, &dir)?;
        if self.plan.has(Section::Chain) {
            println!("== chain throughput and latency");
            let baseline_dir = dir.join("baselines");
            std::fs::create_dir_all(&baseline_dir)
                .with_context(|| format!("failed to create {}", baseline_dir.display()))?;
            let baselines = baselines::Baselines::start(&baseline_dir, &setup.meta_data)?;
            report
                .rows
                .extend(throughput::measure(&setup, &baselines, self.plan)?);
        }
        if self.plan.has(Section::Agent) {
            println!("== guest agent vs cloud-init");
            let cloud_init = cloud_init::CloudInit::unpack(&self.cache.join("packages"))?;
            println!(
                "  cloud-init {} unpacked in {}",
                cloud_init.version,
                cloud_init.dist_packages.display()
            );
            let agent_dir = self.dir.join("agent");
            std::fs::create_dir_all(&agent_dir)
                .with_context(|| format!("failed to create {}", agent_dir.display()))?;
            report.rows.extend(cloud_init::measure(
                &cloud_init,
                self.agent_bin,
                &setup.base_url(),
                &agent_dir,
                self.plan.rounds,
            )?);
        }
        Ok(())
    }

    fn qemu(&self, report: &mut Report) -> anyhow::Result<()> {
        let image = metaboot_harness::cli::build_tiny(
            self.cache,
            None,
            &AgentArgs {
                agent: Some(self.agent_bin.to_owned()),
            },
        )?;
        let dir = self.dir.join("qemu");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let (rows, samples) = qemu::measure(
            self.server_bin,
            &image,
            self.state_root,
            &dir,
            self.plan.rounds,
        )?;
        report.rows.extend(rows);
        report.qemu_samples = samples;
        Ok(())
    }

    fn debian(&self, report: &mut Report) -> anyhow::Result<()> {
        let dir = self.dir.join("debian");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let measured = debian::measure(
            &debian::Setup {
                cache: self.cache,
                server_bin: self.server_bin,
                agent_bin: self.agent_bin,
                state_root: self.state_root,
                dir: &dir,
            },
            self.plan.rounds,
        )?;
        report.rows.extend(measured.rows);
        report.debian_samples = measured.samples;
        match measured.failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}
