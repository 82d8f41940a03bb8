//! Running one scenario: register the instance, boot it (once or twice), check it from outside.

mod ipv6;
mod nocloud;
pub(crate) mod power_state;
mod registry_drive;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::matrix::{Flow, Scenario};
use super::userdata::{self, Intent, Variant};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::guest::qemu::{BOOT_TIMEOUT, POWEROFF_TIMEOUT, RunningGuest, TIMELINE};
use crate::guest::{self, Guest, Nic, Via, serial};
use crate::image::Image;
use crate::lab::Lab;
use crate::lab::registry::{InstanceRecord, InstanceSpec};
use crate::progress::Progress;

/// Times of one boot, in seconds since QEMU started (host monotonic clock).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BootTimes {
    /// The kernel ran /init.
    pub init: Option<f64>,
    /// DHCP done.
    pub network: Option<f64>,
    /// `metaboot run` returned.
    pub metadata: Option<f64>,
    /// `metaboot run` done and SSH listening.
    pub provisioned: Option<f64>,
    /// First successful key login.
    pub ssh: Option<f64>,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Its name (`router/cloud-config`).
    pub name: String,
    /// The scenario.
    pub scenario: Scenario,
    /// True when every check passed and nothing failed on the way.
    pub passed: bool,
    /// The checks, in the order they ran.
    pub checks: Vec<CheckResult>,
    /// One entry per boot.
    pub boots: Vec<BootTimes>,
    /// What stopped the scenario early, if anything.
    pub error: Option<String>,
    /// The instances it registered.
    pub instances: Vec<String>,
    /// Console logs, one per boot.
    pub serial_logs: Vec<PathBuf>,
    /// Wall time of the whole scenario.
    pub seconds: f64,
}

/// Runs scenarios against one lab and image.
pub struct Runner<'a> {
    /// The lab.
    pub lab: &'a Lab,
    /// The image every guest boots.
    pub image: &'a Image,
    /// Directory for keys, user data, disks and console logs (one subdirectory per scenario).
    pub run_dir: PathBuf,
    /// The askpass helper for password logins.
    pub askpass: PathBuf,
    /// Progress display.
    pub progress: &'a dyn Progress,
    /// Who starts the guests' QEMU.
    pub via: Via,
}

/// Who the guest should become on one boot.
struct Identity {
    key: PathBuf,
    intent: Intent,
    meta_hostname: String,
}

/// Deletes a tap when the scenario ends, however it ends.
pub(crate) struct TapGuard<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) tap: String,
}

impl Drop for TapGuard<'_> {
    fn drop(&mut self) {
        self.lab.delete_tap(&self.tap);
    }
}

impl Runner<'_> {
    /// Runs one scenario; failures end up in the report, never as a panic.
    pub fn run(&self, scenario: &Scenario) -> ScenarioReport {
        let started = Instant::now();
        let mut report = ScenarioReport {
            name: scenario.name(),
            scenario: *scenario,
            passed: false,
            checks: Vec::new(),
            boots: Vec::new(),
            error: None,
            instances: Vec::new(),
            serial_logs: Vec::new(),
            seconds: 0.0,
        };
        if let Err(err) = self.run_flow(scenario, &mut report) {
            report.error = Some(format!("{err:#}"));
        }
        report.passed = report.error.is_none()
            && !report.checks.is_empty()
            && report.checks.iter().all(|c| c.passed);
        report.seconds = started.elapsed().as_secs_f64();
        report
    }

    fn stage(&self, scenario: &Scenario, stage: &str) {
        self.progress.stage(&scenario.name(), stage);
    }

    fn identity(
        &self,
        dir: &Path,
        scenario: &Scenario,
        generation: u32,
    ) -> anyhow::Result<Identity> {
        let slug = scenario.slug();
        let suffix = if generation == 1 {
            String::new()
        } else {
            format!("-{generation}")
        };
        let key = ssh::keygen(dir, &format!("id_ed25519{suffix}"))?;
        Ok(Identity {
            key,
            intent: Intent {
                hostname: format!("ud-{slug}{suffix}"),
                password: format!("pw-{}", crate::lab::config::random_id()),
                marker: format!("{slug} instance {generation}"),
            },
            meta_hostname: format!("md-{slug}{suffix}"),
        })
    }

    fn register(
        &self,
        dir: &Path,
        scenario: &Scenario,
        who: &Identity,
        network_id: &str,
        same_port_as: Option<&InstanceRecord>,
    ) -> anyhow::Result<InstanceRecord> {
        let mut user_data = userdata::user_data(scenario.variant, &who.intent);
        if scenario.flow == Flow::PowerState
            && let Some(bytes) = &mut user_data
        {
            bytes.extend_from_slice(userdata::POWER_STATE_REBOOT.as_bytes());
            // The guest tells the lab it is up, at the address the checks run from.
            let lab_ip = self.lab.network(scenario.network())?.dhcp_ip;
            let url = crate::check::phone_home::url_at(lab_ip);
            bytes.extend_from_slice(userdata::phone_home(&url).as_bytes());
        }
        let user_data = match user_data {
            Some(bytes) => {
                let path = dir.join(format!("user-data-{}", who.meta_hostname));
                fs::write(&path, bytes)
                    .with_context(|| format!("failed to write {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        let spec = InstanceSpec {
            name: who.meta_hostname.trim_start_matches("md-").to_owned(),
            network: network_id.to_owned(),
            hostname: Some(who.meta_hostname.clone()),
            key_files: vec![who.key.with_extension("pub")],
            user_data,
            uuid: None,
            ip: match same_port_as {
                Some(record) => Some(record.ip),
                None if scenario.flow == Flow::NoCloud => Some(self.reserved_address(scenario)?),
                None => None,
            },
            mac: same_port_as.map(|r| r.mac.clone()),
            admin_pass_file: None,
        };
        self.lab.register_instance(&spec)
    }

    fn run_flow(&self, scenario: &Scenario, report: &mut ScenarioReport) -> anyhow::Result<()> {
        let dir = self.run_dir.join(scenario.slug());
        fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        self.stage(scenario, "registering");
        let network_id = self.lab.network(scenario.network())?.id.clone();
        let (first, record) = match scenario.flow {
            Flow::ConfigDrive | Flow::StaticNetwork | Flow::PasswordPostback => {
                self.register_own(&dir, scenario, &network_id)?
            }
            _ => {
                let first = self.identity(&dir, scenario, 1)?;
                let record = self.register(&dir, scenario, &first, &network_id, None)?;
                (first, record)
            }
        };
        report.instances.push(record.uuid.clone());
        let disk = dir.join("disk.img");
        guest::make_state_disk(&disk)?;
        let tap = TapGuard {
            lab: self.lab,
            tap: self.lab.add_tap(&record)?,
        };
        let target = SshTarget {
            netns: self.lab.client_namespace(&record.network_id),
            ip: record.ip,
            user: "root".into(),
        };
        let nic = Nic {
            netns: self.lab.state().bridge_ns.clone(),
            tap: tap.tap.clone(),
            mac: record.mac.clone(),
        };
        let guest_for = |boot: u32| {
            Guest::new(
                &scenario.slug(),
                self.image,
                &dir.join(format!("serial-{boot}.log")),
            )
            .with_disk(&disk)
            .with_nic(nic.clone())
        };

        if matches!(scenario.flow, Flow::ConfigDrive | Flow::StaticNetwork) {
            self.stage(scenario, "writing the config drive (instance config-drive)");
            let drive = dir.join("config-drive.iso");
            self.lab.registry().config_drive(&record.uuid, &drive)?;
            let guest = guest_for(1).with_config_drive(&drive);
            let vm = self.boot(scenario, &guest, &target, &first, report)?;
            self.stage(scenario, "checking");
            self.check_drive_boot(scenario, &target, &first, &record, report);
            vm.kill()?;
            drop(tap);
            return Ok(());
        }

        if scenario.flow == Flow::PasswordPostback {
            let vm = self.boot(scenario, &guest_for(1), &target, &first, report)?;
            self.stage(scenario, "checking");
            self.check_postback(&dir, &target, &first, &record, report);
            vm.kill()?;
            drop(tap);
            return Ok(());
        }

        if scenario.flow == Flow::PowerState {
            let (first_boot, second_boot) = (guest_for(1), guest_for(2));
            let lab_ip = self.lab.network(scenario.network())?.dhcp_ip;
            let receiver = crate::check::phone_home::Receiver::start(&target.netns, lab_ip)?;
            let result =
                self.power_state(scenario, &first_boot, &second_boot, &target, &first, report);
            if result.is_ok() {
                report.checks.push(crate::check::phone_home::phoned_home(
                    &receiver.posted(),
                    &record.uuid,
                    &first.meta_hostname,
                    false,
                ));
            }
            drop(tap);
            return result;
        }

        if scenario.flow == Flow::NoCloud {
            return self.nocloud(&dir, scenario, &record, guest_for(1), &target, report);
        }

        let vm = self.boot(scenario, &guest_for(1), &target, &first, report)?;
        self.stage(scenario, "checking");
        self.check_boot(scenario, "", &target, &first, 1, report);
        if scenario.flow == Flow::Ipv6Only {
            self.check_ipv6_only(scenario, &target, &first.key, &record, report);
        }
        match scenario.flow {
            Flow::Once
            | Flow::ConfigDrive
            | Flow::NoCloud
            | Flow::StaticNetwork
            | Flow::PasswordPostback
            | Flow::PowerState
            | Flow::Ipv6Only => vm.kill()?,
            Flow::Reboot => {
                self.poweroff(scenario, vm, &target, &first)?;
                let vm = self.boot(scenario, &guest_for(2), &target, &first, report)?;
                self.stage(scenario, "checking after reboot");
                self.check_boot(scenario, "after reboot: ", &target, &first, 1, report);
                vm.kill()?;
            }
            Flow::NewInstance => {
                self.poweroff(scenario, vm, &target, &first)?;
                self.stage(scenario, "replacing the instance");
                self.lab.delete_instance(&record)?;
                let second = self.identity(&dir, scenario, 2)?;
                let new = self.register(&dir, scenario, &second, &network_id, Some(&record))?;
                report.instances.push(new.uuid.clone());
                let vm = self.boot(scenario, &guest_for(2), &target, &second, report)?;
                self.stage(scenario, "checking the new instance");
                self.check_boot(scenario, "new instance: ", &target, &second, 2, report);
                vm.kill()?;
            }
        }
        drop(tap);
        Ok(())
    }

    /// Boots a guest up to its first key login, recording the timeline.
    fn boot(
        &self,
        scenario: &Scenario,
        guest: &Guest,
        target: &SshTarget,
        who: &Identity,
        report: &mut ScenarioReport,
    ) -> anyhow::Result<RunningGuest> {
        let boot_no = report.boots.len() + 1;
        self.stage(
            scenario,
            &format!("boot {boot_no}: starting QEMU ({})", self.via),
        );
        report.serial_logs.push(guest.serial_log.clone());
        report.boots.push(BootTimes::default());
        let mut vm = RunningGuest::start_via(guest, self.via)?;
        let deadline = vm.started + BOOT_TIMEOUT;
        // On a network without DHCP the tiny image's DHCP client gives up ("no DHCP lease"):
        // its address comes from network_data.json, during `metaboot run`.
        let timeline = TIMELINE
            .into_iter()
            .filter(|name| scenario.flow.has_dhcp() || *name != serial::MARK_NETWORK);
        for name in timeline {
            let marker = vm.wait_for(name, 0, deadline)?;
            let times = report.boots.last_mut().context("a boot entry was pushed")?;
            let at = Some(marker.at.as_secs_f64());
            match name {
                serial::MARK_INIT => times.init = at,
                serial::MARK_NETWORK => times.network = at,
                serial::MARK_METADATA => times.metadata = at,
                _ => times.provisioned = at,
            }
            self.stage(scenario, &format!("boot {boot_no}: {}", marker.text));
        }
        ssh::wait_for_key_login(target, &who.key, ssh::SSH_READY_TIMEOUT)?;
        let times = report.boots.last_mut().context("a boot entry was pushed")?;
        times.ssh = Some(vm.started.elapsed().as_secs_f64());
        Ok(vm)
    }

    /// Powers the guest off from inside (so the disk is clean) and waits for QEMU to exit.
    fn poweroff(
        &self,
        scenario: &Scenario,
        mut vm: RunningGuest,
        target: &SshTarget,
        who: &Identity,
    ) -> anyhow::Result<()> {
        self.stage(scenario, "powering off");
        // Detach so ssh returns before the guest goes away.
        let out = ssh::with_key(
            target,
            &who.key,
            "sync; setsid sh -c 'sleep 0.3; poweroff -f' </dev/null >/dev/null 2>&1 &",
        )?;
        if !out.success() {
            anyhow::bail!("failed to power the guest off: ssh {}", out.summary());
        }
        vm.wait_exit(POWEROFF_TIMEOUT)
    }

    /// The checks a user would make after a boot.
    fn check_boot(
        &self,
        scenario: &Scenario,
        prefix: &str,
        target: &SshTarget,
        who: &Identity,
        runs: usize,
        report: &mut ScenarioReport,
    ) {
        let variant = scenario.variant;
        let mut push = |name: &str, result: anyhow::Result<CheckResult>| {
            let name = format!("{prefix}{name}");
            report.checks.push(match result {
                Ok(check) => CheckResult { name, ..check },
                Err(err) => CheckResult::fail(&name, format!("{err:#}")),
            });
        };

        let hostname = if variant.has_cloud_config() {
            who.intent.hostname.clone()
        } else {
            who.meta_hostname.clone()
        };
        push(
            "key login + hostname",
            check_hostname(target, &who.key, &hostname),
        );

        if variant.has_cloud_config() {
            push(
                "password login",
                check_password_login(target, &self.askpass, &who.intent.password),
            );
        } else {
            push(
                "password login refused",
                check_password_refused(target, &self.askpass, &who.intent.password),
            );
        }

        push("metaboot status", check_status(target, &who.key, variant));

        if variant.has_cloud_config() {
            let what = match (scenario.flow, prefix) {
                (Flow::Reboot | Flow::PowerState, p) if !p.is_empty() => "runcmd not re-run",
                (Flow::NewInstance, p) if !p.is_empty() => "runcmd re-run",
                _ => "runcmd ran once",
            };
            push(
                what,
                check_log(
                    target,
                    &who.key,
                    userdata::RUNCMD_LOG,
                    runs,
                    &who.intent.marker,
                ),
            );
        }
        if variant.has_script() {
            push(
                "script ran once",
                check_log(
                    target,
                    &who.key,
                    userdata::SCRIPT_LOG,
                    runs,
                    &who.intent.marker,
                ),
            );
        }
    }
}

fn check_hostname(target: &SshTarget, key: &Path, expected: &str) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, "hostname")?;
    let seen = out.stdout.trim();
    Ok(CheckResult::from_bool(
        "",
        out.success() && seen == expected,
        format!(
            "expected {expected}, got {}",
            if out.success() {
                seen.to_owned()
            } else {
                out.summary()
            }
        ),
    ))
}

fn check_password_login(
    target: &SshTarget,
    askpass: &Path,
    password: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_password(target, askpass, password, "id -un")?;
    let ok = out.success() && out.stdout.trim() == "root";
    Ok(CheckResult::from_bool(
        "",
        ok,
        format!("root with the user data's password: {}", out.summary()),
    ))
}

fn check_password_refused(
    target: &SshTarget,
    askpass: &Path,
    password: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_password(target, askpass, password, "id -un")?;
    // Refused, and no password method offered: a refused password alone would also be
    // "Permission denied", from a server that still takes passwords.
    Ok(CheckResult::from_bool(
        "",
        out.password_logins_off(),
        format!("no ssh_pwauth, so no password logins: {}", out.summary()),
    ))
}

fn check_status(target: &SshTarget, key: &Path, variant: Variant) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, "metaboot status")?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown: String = one_line.chars().take(160).collect();
    if variant.expects_error() {
        let names_it = text.to_lowercase().contains("gzip");
        Ok(CheckResult::from_bool(
            "",
            out.code != 0 && names_it,
            format!(
                "expected a non-zero exit naming the gzip error; exit {}: {shown}",
                out.code
            ),
        ))
    } else {
        Ok(CheckResult::from_bool(
            "",
            out.code == 0,
            format!("exit {}: {shown}", out.code),
        ))
    }
}

fn check_source(target: &SshTarget, key: &Path, expected: &str) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, "metaboot status")?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    let source = out
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("source: "))
        .unwrap_or("none")
        .trim()
        .to_owned();
    Ok(CheckResult::from_bool(
        "",
        source == expected,
        format!("metaboot status says source: {source}, expected {expected}"),
    ))
}

fn check_log(
    target: &SshTarget,
    key: &Path,
    path: &str,
    runs: usize,
    marker: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(target, key, &format!("cat {path}"))?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    let lines: Vec<&str> = out.stdout.lines().collect();
    let ok = out.success() && lines.len() == runs && lines.last() == Some(&marker);
    Ok(CheckResult::from_bool(
        "",
        ok,
        format!("{path}: expected {runs} line(s) ending with {marker:?}, got {lines:?}"),
    ))
}
