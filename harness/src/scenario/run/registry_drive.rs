//! The scenarios whose instance the registry makes whole: `config-drive` and `static-network`
//! boot from the drive `metaboot-server instance config-drive` writes (the hostname, key,
//! user data, `admin_pass` and, on the network without DHCP, the static address of the
//! registry's records); `password-postback` boots a guest that posts its own password,
//! which `instance get-password` decrypts for a password login.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{
    Identity, Runner, ScenarioReport, check_hostname, check_password_login, check_source,
    check_status,
};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::lab::registry::{InstanceRecord, InstanceSpec};
use crate::scenario::matrix::{Flow, Scenario};
use crate::scenario::userdata::Variant;

/// The user data of a config-drive guest: password logins on, for the `admin_pass` check.
const DRIVE_USER_DATA: &str = "#cloud-config\nssh_pwauth: true\n";
/// The user data of a post-back guest.
const POSTBACK_USER_DATA: &str = "#cloud-config\npassword_postback: true\nssh_pwauth: true\n";
/// The RSA key the post-back password is encrypted with (the instance's first key pair).
const POSTBACK_KEY: &str = "id_rsa-postback";

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .with_context(|| format!("failed to write {}", path.display()))
}

impl Runner<'_> {
    /// Registers the instance of a `config-drive`, `static-network` or `password-postback`
    /// scenario: its own user data, an admin password for the drive, and for the post-back an
    /// RSA key pair first (the ed25519 one logs in).
    pub(super) fn register_own(
        &self,
        dir: &Path,
        scenario: &Scenario,
        network_id: &str,
    ) -> anyhow::Result<(Identity, InstanceRecord)> {
        let who = self.identity(dir, scenario, 1)?;
        let postback = scenario.flow == Flow::PasswordPostback;
        let user_data = dir.join("user-data");
        fs::write(
            &user_data,
            if postback {
                POSTBACK_USER_DATA
            } else {
                DRIVE_USER_DATA
            },
        )
        .context("failed to write the user data")?;
        let mut key_files = Vec::new();
        if postback {
            key_files.push(ssh::keygen_of(dir, POSTBACK_KEY, "rsa")?.with_extension("pub"));
        }
        key_files.push(who.key.with_extension("pub"));
        let admin_pass_file = if postback {
            None
        } else {
            let file = dir.join("admin-pass");
            write_private(&file, &who.intent.password)?;
            Some(file)
        };
        let record = self.lab.register_instance(&InstanceSpec {
            name: who.meta_hostname.trim_start_matches("md-").to_owned(),
            network: network_id.to_owned(),
            hostname: Some(who.meta_hostname.clone()),
            key_files,
            user_data: Some(user_data),
            admin_pass_file,
            ..InstanceSpec::default()
        })?;
        Ok((who, record))
    }

    fn push(report: &mut ScenarioReport, name: &str, result: anyhow::Result<CheckResult>) {
        report.checks.push(match result {
            Ok(check) => CheckResult {
                name: name.to_owned(),
                ..check
            },
            Err(err) => CheckResult::fail(name, format!("{err:#}")),
        });
    }

    /// A guest booted from the registry's config drive: who the registry says, with the
    /// drive's `admin_pass`; on the network without DHCP, at its static address and route.
    pub(super) fn check_drive_boot(
        &self,
        scenario: &Scenario,
        target: &SshTarget,
        who: &Identity,
        record: &InstanceRecord,
        report: &mut ScenarioReport,
    ) {
        let key = &who.key;
        let checks = [
            (
                "key login + hostname",
                check_hostname(target, key, &who.meta_hostname),
            ),
            (
                "admin_pass login",
                check_password_login(target, &self.askpass, &who.intent.password),
            ),
            (
                "source is the config drive",
                check_source(target, key, "config-drive"),
            ),
            ("metaboot status", check_status(target, key, Variant::None)),
        ];
        for (name, result) in checks {
            Self::push(report, name, result);
        }
        if scenario.flow == Flow::StaticNetwork {
            let gateway = self
                .lab
                .network(scenario.network())
                .map(|n| n.gateway.to_string())
                .unwrap_or_default();
            let serial = report.serial_logs.last().cloned().unwrap_or_default();
            Self::push(report, "no DHCP lease", check_no_lease(&serial));
            Self::push(
                report,
                "static address and default route",
                check_static(target, key, &record.ip.to_string(), &gateway),
            );
        }
    }

    /// The post-back guest's password: stored encrypted, decrypted by `instance get-password`
    /// with the RSA key, and root logs in with it.
    pub(super) fn check_postback(
        &self,
        dir: &Path,
        target: &SshTarget,
        who: &Identity,
        record: &InstanceRecord,
        report: &mut ScenarioReport,
    ) {
        Self::push(
            report,
            "key login + hostname",
            check_hostname(target, &who.key, &who.meta_hostname),
        );
        Self::push(
            report,
            "metaboot status",
            check_status(target, &who.key, Variant::None),
        );
        let private: PathBuf = dir.join(POSTBACK_KEY);
        match self.lab.registry().get_password(&record.uuid, &private) {
            Ok(password) => {
                Self::push(
                    report,
                    "get-password decrypts it",
                    Ok(CheckResult::from_bool(
                        "",
                        password.len() == 20,
                        format!("a 20-character password, got {} characters", password.len()),
                    )),
                );
                Self::push(
                    report,
                    "password login with it",
                    check_password_login(target, &self.askpass, &password),
                );
            }
            Err(err) => Self::push(report, "get-password decrypts it", Err(err)),
        }
    }
}

/// The tiny image's DHCP client found no server: what the guest has is static.
fn check_no_lease(serial: &Path) -> anyhow::Result<CheckResult> {
    let log = fs::read_to_string(serial)
        .with_context(|| format!("failed to read {}", serial.display()))?;
    Ok(CheckResult::from_bool(
        "",
        log.contains("no DHCP lease") && !log.contains("metaboot-tiny: lease "),
        format!(
            "{}: expected \"no DHCP lease\" and no lease",
            serial.display()
        ),
    ))
}

/// `ip` inside the guest shows the registry's address on eth0 and the default route through
/// the gateway.
fn check_static(
    target: &SshTarget,
    key: &Path,
    ip: &str,
    gateway: &str,
) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(
        target,
        key,
        "ip -4 addr show dev eth0; ip -4 route show default",
    )?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    let text = out.stdout;
    let ok =
        text.contains(&format!("inet {ip}/24")) && text.contains(&format!("default via {gateway}"));
    Ok(CheckResult::from_bool(
        "",
        ok,
        format!(
            "expected inet {ip}/24 and default via {gateway}, got {:?}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    ))
}
