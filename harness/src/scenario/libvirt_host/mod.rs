//! metaboot on a plain libvirt host (no Neutron), as the README's "libvirt host" section has a
//! user set it up: libvirt's own network (bridge, libvirt's dnsmasq) registered with
//! `network create lan --cidr C --libvirt-network NAME`, instances known by MAC (`instance create
//! … --mac …`), `metaboot-server all` putting 169.254.169.254/32 on the bridge, and guests
//! started with `virt-install --import … --network network=NAME,mac=…,filterref=clean-traffic`.
//! Everything runs inside a lab namespace (see [`crate::lab::libvirt_host`]).
//!
//! The run: an unregistered MAC (a veth behind the bridge with a real lease) gets 404; a Debian
//! cloud image (stock cloud-init) comes up as its instance and passes the cloud image checks
//! (key and password logins, host name, …); a tiny guest is served as itself, is not served the
//! Debian guest's data when it takes the Debian guest's address (clean-traffic drops it), and
//! is still served as itself after its lease changed address across a reboot.

mod probes;
mod registry;

pub use probes::TINY_BOOT_TIMEOUT;
pub use registry::NETWORK;
use registry::Registry;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metaboot_proto::METADATA_IPV4;
use serde::Serialize;

use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::guest::libvirt_network::{CLEAN_TRAFFIC, random_mac};
use crate::guest::qemu::RunningGuest;
use crate::guest::virt_install::NetworkNic;
use crate::guest::{self, Guest};
use crate::image::Image;
use crate::lab::libvirt_host::LibvirtHost;
use crate::progress::Progress;
use crate::scenario::cloud_image::guest::{
    LabServices, Who, first_login, record_markers, verdict_and_checks,
};
use crate::scenario::cloud_image::{CloudImageGuest, CloudImageReport};

/// How long `metaboot-server all` may take to answer on 169.254.169.254 in the namespace.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct LibvirtHostRun {
    /// The lab id (namespace `metaboot-ID`, libvirt network `metaboot-ID`).
    pub lab_id: String,
    /// The `metaboot-server` binary.
    pub server_bin: PathBuf,
    /// The Debian guest (its image, provisioner, default user, boot timeout).
    pub debian: CloudImageGuest,
    /// The tiny image.
    pub tiny: Image,
    /// Logs, keys, overlays.
    pub run_dir: PathBuf,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LibvirtHostReport {
    /// The host's own checks (unregistered MAC, the tiny guest's).
    pub checks: Vec<CheckResult>,
    /// The Debian guest's report.
    pub debian: Option<CloudImageReport>,
    /// What stopped the run early, if anything.
    pub error: Option<String>,
    /// True when everything passed.
    pub passed: bool,
}

/// Runs the whole scenario on a fresh libvirt host and takes it down again.
pub fn run(opts: &LibvirtHostRun, progress: &dyn Progress) -> anyhow::Result<LibvirtHostReport> {
    fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("failed to create {}", opts.run_dir.display()))?;
    progress.stage("libvirt-host", "libvirtd and its network");
    let mut host = LibvirtHost::up(&opts.lab_id, &opts.run_dir)?;
    let mut report = LibvirtHostReport {
        checks: Vec::new(),
        debian: None,
        error: None,
        passed: false,
    };
    if let Err(err) = run_on(&mut host, opts, progress, &mut report) {
        report.error = Some(format!("{err:#}"));
    }
    let stopped = host.stopped_daemons();
    if !stopped.is_empty() {
        report
            .error
            .get_or_insert_with(|| format!("{} stopped during the run", stopped.join(", ")));
    }
    host.down()
        .context("failed to take the libvirt host down")?;
    report.passed = report.error.is_none()
        && report.checks.iter().all(|c| c.passed)
        && report.debian.as_ref().is_some_and(|d| d.passed);
    Ok(report)
}

fn run_on(
    host: &mut LibvirtHost,
    opts: &LibvirtHostRun,
    progress: &dyn Progress,
    report: &mut LibvirtHostReport,
) -> anyhow::Result<()> {
    let stage = |what: &str| progress.stage("libvirt-host", what);
    let spec = host.network().spec().clone();
    let registry = Registry {
        bin: &opts.server_bin,
        db: opts.run_dir.join("registry.sqlite"),
    };
    stage("network create --libvirt-network, metaboot-server all");
    registry.run(&[
        "network",
        "create",
        NETWORK,
        "--cidr",
        &spec.subnet.to_string(),
        "--libvirt-network",
        &spec.name,
    ])?;
    let config = crate::lab::write_server_config(&opts.run_dir, &opts.lab_id, &registry.db)?;
    let mut server = host.exec(&opts.server_bin);
    server
        .arg("--db")
        .arg(&registry.db)
        .arg("all")
        .arg("--config")
        .arg(&config);
    let server_log = opts.run_dir.join("metaboot-server.log");
    host.spawn("metaboot-server all", &mut server, &server_log)?;
    wait_for_server(host, &server_log)?;
    report.checks.push(probes::metadata_address_on_bridge(host));

    stage("an unregistered MAC behind the bridge");
    report
        .checks
        .push(probes::unregistered_mac(host, &opts.run_dir));

    let (debian, web) = run_debian(host, &registry, opts, progress)?;
    let web_uuid = debian.instance.clone().unwrap_or_default();
    report.debian = Some(debian);

    stage("tiny guest: as itself, as an impostor, after its lease moved");
    probes::tiny_guest(
        host,
        &registry,
        &opts.tiny,
        &opts.run_dir.join("tiny"),
        web.as_ref().map(|(ip, _)| (*ip, web_uuid.as_str())),
        &mut report.checks,
    )?;
    if let Some((_, vm)) = web {
        vm.kill()?;
    }
    Ok(())
}

/// Waits until `all` has put 169.254.169.254 on the bridge (its listener is bound to the
/// bridge, so a probe from the namespace itself would not reach it: the first client's request
/// retries a refused connection instead).
fn wait_for_server(host: &LibvirtHost, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVER_READY_TIMEOUT;
    loop {
        if !host.stopped_daemons().is_empty() {
            bail!(
                "metaboot-server all exited:\n{}",
                crate::lab::tail(log, crate::lab::DAEMON_LOG_LINES)
            );
        }
        let on_bridge = probes::metadata_address_on_bridge(host);
        if on_bridge.passed {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "metaboot-server all did not put {METADATA_IPV4}/32 on {} within \
                 {SERVER_READY_TIMEOUT:?} ({}); its log:\n{}",
                host.network().spec().bridge,
                on_bridge.detail,
                crate::lab::tail(log, crate::lab::DAEMON_LOG_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Registers the Debian guest by MAC, starts it with virt-install (clean-traffic attached),
/// learns its address from the lease and runs the cloud image checks; returns its report
/// and address.
fn run_debian(
    host: &LibvirtHost,
    registry: &Registry<'_>,
    opts: &LibvirtHostRun,
    progress: &dyn Progress,
) -> anyhow::Result<(CloudImageReport, Option<(Ipv4Addr, RunningGuest)>)> {
    let spec = &opts.debian;
    let stage = |what: &str| progress.stage(&spec.name, what);
    let dir = opts.run_dir.join(spec.slug());
    fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let started = Instant::now();
    let mut report = CloudImageReport::starting(spec, &dir);
    stage("instance create --mac");
    let (who, user_data) = Who::new(&dir, spec, &LabServices::default())?;
    let mac = random_mac()?;
    report.instance = Some(registry.instance(
        &spec.slug(),
        &mac,
        &who.key.with_extension("pub"),
        Some(&user_data),
        None,
    )?);
    let overlay = guest::make_overlay(
        &spec.image,
        &spec.format,
        &dir.join("overlay.qcow2"),
        spec.disk_growth,
    )?;
    let guest = Guest::from_disk(&spec.slug(), &overlay, &report.serial_log);
    stage("virt-install --import (firmware, GRUB, kernel, systemd)");
    let mut vm = RunningGuest::start_virt_install(
        &guest,
        &NetworkNic {
            network: host.network().spec().name.clone(),
            mac: mac.clone(),
            filter: Some(CLEAN_TRAFFIC.to_owned()),
        },
    )?;
    let result = host
        .network()
        .wait_for_lease(&mac, None, spec.boot_timeout)
        .and_then(|ip| {
            let target = SshTarget {
                netns: host.ns.clone(),
                ip: ip.into(),
                user: spec.default_user.clone(),
            };
            let askpass = ssh::write_askpass(&dir)?;
            first_login(
                &mut vm,
                spec,
                &target,
                &who.key,
                super::cloud_image::POLL,
                &mut report,
            )?;
            verdict_and_checks(&vm, spec, &target, &who, &askpass, &stage, &mut report)?;
            Ok(ip)
        });
    record_markers(&vm, &mut report);
    let _ = fs::remove_file(&overlay);
    if let Err(err) = &result {
        report.error = Some(format!("{err:#}"));
    }
    report.passed = report.error.is_none()
        && !report.checks.is_empty()
        && report.checks.iter().all(|c| c.passed);
    report.seconds = started.elapsed().as_secs_f64();
    progress.done(
        &spec.name,
        report.passed,
        &report
            .error
            .clone()
            .unwrap_or_else(|| format!("{} checks", report.checks.len())),
    );
    // The guest keeps running (the tiny guest impersonates it next) while it has an address.
    Ok((report, result.ok().map(|ip| (ip, vm))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_leave_room_for_a_busy_machine() {
        assert!(SERVER_READY_TIMEOUT >= Duration::from_secs(10));
        // A tiny guest comes up in about 3 s alone; a loaded 2-core machine takes many times that.
        assert!(TINY_BOOT_TIMEOUT >= Duration::from_secs(60));
        assert_eq!(NETWORK, "lan");
    }
}
