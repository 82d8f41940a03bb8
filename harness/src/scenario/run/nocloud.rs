//! The `nocloud` flow: the instance is deleted from the registry once its port has its DHCP
//! address (one near the top of the network, which no later guest of the run is given), so
//! the metadata service does not know the guest; a NoCloud seed (a `cidata` ISO 9660
//! image made as `cloud-localds` makes it) carries its hostname, key and user data. Checked from
//! outside: key login and hostname, the source, `metaboot status`, the seed's runcmd, and that
//! the metadata service answers the guest with a 404.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::{
    Identity, Runner, ScenarioReport, check_hostname, check_log, check_source, check_status,
};
use crate::check::CheckResult;
use crate::check::ssh::{self, SshTarget};
use crate::guest::Guest;
use crate::lab::registry::InstanceRecord;
use crate::process::check;
use crate::scenario::matrix::Scenario;
use crate::scenario::userdata::{Intent, RUNCMD_LOG, Variant};

/// The volume label of a NoCloud seed (`cloud-localds` writes it lower-case).
pub const SEED_LABEL: &str = "cidata";

/// How far below the top of its network the `nocloud` guest's address is. The flow deletes
/// the instance while the guest keeps the address; guests registered later get the lowest free
/// address, which never comes up here, so no other guest of the run takes it (an address
/// taken twice gives the other guest no DHCP lease, or this one the other's metadata).
pub const RESERVED_FROM_TOP: usize = 5;

/// What the guest asks the metadata service for, to show that it is not known there.
const META_DATA_URL: &str = "http://169.254.169.254/openstack/latest/meta_data.json";

/// Makes a NoCloud seed at `path`: an ISO 9660 image labelled `cidata` with `meta-data` and
/// `user-data` at its top, as `cloud-localds` makes it (`genisoimage -volid cidata -joliet
/// -rock`, here with xorriso's mkisofs mode). No root or loop mount needed.
pub fn make_seed(path: &Path, meta_data: &str, user_data: &str) -> anyhow::Result<()> {
    let tree = path.with_extension("d");
    fs::create_dir_all(&tree).with_context(|| format!("failed to create {}", tree.display()))?;
    for (name, text) in [("meta-data", meta_data), ("user-data", user_data)] {
        fs::write(tree.join(name), text)
            .with_context(|| format!("failed to write the seed's {name}"))?;
    }
    check(
        Command::new("xorriso")
            .args([
                "-as", "mkisofs", "-quiet", "-volid", SEED_LABEL, "-joliet", "-rock", "-o",
            ])
            .arg(path)
            .arg(&tree),
    )
    .with_context(|| {
        format!(
            "failed to make the NoCloud seed {} (is xorriso installed?)",
            path.display()
        )
    })?;
    Ok(())
}

/// A seed and who it makes the guest.
struct Seed {
    image: PathBuf,
    who: Identity,
}

impl Runner<'_> {
    /// The address the `nocloud` guest registers with: [`RESERVED_FROM_TOP`] below the top of
    /// its network.
    pub(super) fn reserved_address(&self, scenario: &Scenario) -> anyhow::Result<IpAddr> {
        let network = self.lab.network(scenario.network())?;
        network
            .cidr
            .hosts()
            .rev()
            .nth(RESERVED_FROM_TOP)
            .with_context(|| format!("network {} is too small", network.name))
    }

    /// Runs the `nocloud` flow for an instance registered as `record` (its port gave the guest
    /// its address and tap).
    pub(super) fn nocloud(
        &self,
        dir: &Path,
        scenario: &Scenario,
        record: &InstanceRecord,
        guest: Guest,
        target: &SshTarget,
        report: &mut ScenarioReport,
    ) -> anyhow::Result<()> {
        self.stage(scenario, "deleting the instance from the registry");
        // The DHCP host entry stays: the guest keeps its address, the chain forgets it.
        self.lab.unregister_instance(&record.uuid)?;
        let seed = self.nocloud_seed(dir, scenario)?;
        // Attached as a config drive is: a second, read-only virtio disk.
        let vm = self.boot(
            scenario,
            &guest.with_config_drive(&seed.image),
            target,
            &seed.who,
            report,
        )?;
        self.stage(scenario, "checking");
        let key = &seed.who.key;
        let checks = [
            (
                "key login + hostname",
                check_hostname(target, key, &seed.who.meta_hostname),
            ),
            (
                "source is the NoCloud seed",
                check_source(target, key, "nocloud"),
            ),
            ("metaboot status", check_status(target, key, Variant::None)),
            (
                "runcmd ran once",
                check_log(target, key, RUNCMD_LOG, 1, &seed.who.intent.marker),
            ),
            (
                "the metadata service does not know it",
                check_unknown_to_the_chain(target, key),
            ),
        ];
        for (name, result) in checks {
            report.checks.push(match result {
                Ok(check) => CheckResult {
                    name: name.to_owned(),
                    ..check
                },
                Err(err) => CheckResult::fail(name, format!("{err:#}")),
            });
        }
        vm.kill()
    }

    /// A seed whose hostname and key the registry never had, with a `#cloud-config` whose
    /// runcmd marks the boot.
    fn nocloud_seed(&self, dir: &Path, scenario: &Scenario) -> anyhow::Result<Seed> {
        let key = ssh::keygen(dir, "id_ed25519-nocloud")?;
        let public = fs::read_to_string(key.with_extension("pub"))
            .context("failed to read the seed's public key")?;
        let slug = scenario.slug();
        let who = Identity {
            key,
            intent: Intent {
                hostname: format!("nc-{slug}"),
                password: String::new(),
                marker: format!("{slug} seed"),
            },
            meta_hostname: format!("nc-{slug}"),
        };
        let meta_data = format!(
            "instance-id: iid-{}\nlocal-hostname: {}\npublic-keys:\n  - {}\n",
            crate::lab::config::random_id(),
            who.meta_hostname,
            public.trim()
        );
        let user_data = format!(
            "#cloud-config\nruncmd:\n  - echo \"{}\" >> {RUNCMD_LOG}\n",
            who.intent.marker
        );
        let image = dir.join("nocloud-seed.iso");
        make_seed(&image, &meta_data, &user_data)?;
        Ok(Seed { image, who })
    }
}

/// The guest asks the metadata service for its meta_data.json and gets a 404: the data it
/// came up with can only have come from the seed.
fn check_unknown_to_the_chain(target: &SshTarget, key: &Path) -> anyhow::Result<CheckResult> {
    let out = ssh::with_key(
        target,
        key,
        &format!("wget -q -O /dev/null {META_DATA_URL} 2>&1; echo rc=$?"),
    )?;
    if out.code == 255 {
        anyhow::bail!("ssh failed: {}", out.summary());
    }
    let text = out.stdout.trim();
    Ok(CheckResult::from_bool(
        "",
        text.contains("404") && !text.ends_with("rc=0"),
        format!("GET {META_DATA_URL} from the guest: expected a 404, got {text:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed is an ISO 9660 image labelled `cidata` with both files at its top, as the guest
    /// agent looks for it.
    #[test]
    fn the_seed_is_a_cidata_iso_with_meta_data_and_user_data() {
        if Command::new("xorriso").arg("-version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "xorriso is required in CI (scripts/install-test-deps installs it)"
            );
            eprintln!("skipping: xorriso is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("seed.iso");
        make_seed(&image, "instance-id: iid-1\n", "#cloud-config\n").unwrap();
        let bytes = fs::read(&image).unwrap();
        // The primary volume descriptor at sector 16; its volume id at offset 40.
        let pvd = &bytes[32 * 1024..32 * 1024 + 72];
        assert_eq!(&pvd[1..6], b"CD001");
        assert_eq!(String::from_utf8_lossy(&pvd[40..72]).trim_end(), SEED_LABEL);
        let listing = check(
            Command::new("osirrox")
                .arg("-indev")
                .arg(&image)
                .args(["-find", "/", "-type", "f"]),
        )
        .unwrap();
        assert!(
            listing.contains("'/meta-data'") && listing.contains("'/user-data'"),
            "{listing}"
        );
    }
}
