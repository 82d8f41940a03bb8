//! One cloud image guest from registration to the last check: the instance and its user data,
//! the overlay, the boot (by the harness's QEMU or libvirt), the first key login, the verdict
//! and the checks from outside (and, for the bench, a look inside while the guest still runs).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::checks::{
    HOSTNAME_LISTED, HOSTS_FILE, check_output, check_password, check_root_fills,
    detect_provisioner, hostname_in_hosts, wait_for_verdict,
};
use super::console_keys::check_console_host_keys;
use super::host_keys::check_host_keys;
use super::spec::{
    BOOTCMD_NICE_FILE, CloudImageGuest, CloudImageReport, DATA_ALIAS, DATA_DEVICE, DATA_DISK_BYTES,
    DATA_LABEL, DATA_MOUNT, EPHEMERAL_DISK_BYTES, KEYS_DIR, KEYS_ELSEWHERE, LOCALE, LOCALE_LISTED,
    LOGS_LABEL, NTP_SERVER, POLL, PROVISION_TIMEOUT, RSYSLOG_FILE, RSYSLOG_LINES, RSYSLOG_REMOTE,
    SWAP_FILE, SWAP_SIZE, TIMEZONE, TIMEZONE_ABBREVIATION, TRUSTED_CA, USER,
};
use crate::check::CheckResult;
use crate::check::apt_repo::{self, AptRepo, RepoSource};
use crate::check::ssh::{self, SshTarget};
use crate::guest::qemu::RunningGuest;
use crate::guest::{self, Guest, Nic, serial};
use crate::image::debian::recipe;
use crate::lab::Lab;
use crate::lab::registry::InstanceSpec;
use crate::progress::Progress;
use crate::scenario::run::{TapGuard, power_state};
use crate::scenario::userdata::{self, Intent};

/// Who the guest should become.
pub(crate) struct Who {
    /// The instance's key (meta_data `public_keys`): the default user's.
    pub(crate) key: PathBuf,
    /// The user data user's key.
    pub(crate) user_key: PathBuf,
    /// The host name, password and runcmd marker the user data asks for.
    pub(crate) intent: Intent,
}

impl Who {
    /// Fresh keys in `dir` and an intent for guest `spec`; the user data (a `#cloud-config`
    /// asking for it all) is written to `dir/user-data`, whose path is returned too.
    pub(crate) fn new(
        dir: &Path,
        spec: &CloudImageGuest,
        lab: &LabServices,
    ) -> anyhow::Result<(Self, PathBuf)> {
        let slug = spec.slug();
        let who = Self {
            key: ssh::keygen(dir, "id_ed25519")?,
            user_key: ssh::keygen(dir, "id_ed25519-user")?,
            intent: Intent {
                hostname: format!("ud-{slug}"),
                password: format!("pw-{}", crate::lab::config::random_id()),
                marker: format!("{slug} runcmd"),
            },
        };
        let user_public = fs::read_to_string(who.user_key.with_extension("pub"))
            .context("failed to read the user's public key")?;
        let user_data = dir.join("user-data");
        fs::write(
            &user_data,
            cloud_config(&who.intent, user_public.trim(), spec, lab),
        )
        .with_context(|| format!("failed to write {}", user_data.display()))?;
        Ok((who, user_data))
    }
}

/// What the lab serves a guest besides the metadata: where it phones home, and a signed
/// package repository ([`crate::check::apt_repo`]).
#[derive(Debug, Clone, Default)]
pub struct LabServices {
    pub phone_home: Option<String>,
    pub apt_repo: Option<RepoSource>,
}

/// The `#cloud-config` the guest gets: a host name, a user with a key and a password (and
/// sudo), password logins, a runcmd; the image's default user stays (`users: [default, …]`).
/// With `trust_ca` also [`TRUSTED_CA`], with `mounts` a swap file, with `reboot_once` a reboot
/// once provisioned and a final message ([`userdata::POWER_STATE_REBOOT`]), with `phone_home`
/// a POST to that URL, with a package repository that repository as apt's only source (its
/// primary mirror, its key for `signed-by`, `sources.list` rewritten) and
/// [`apt_repo::PACKAGE`] to install (`packages`).
pub fn cloud_config(
    intent: &Intent,
    user_key: &str,
    spec: &CloudImageGuest,
    lab: &LabServices,
) -> String {
    let packages = lab
        .apt_repo
        .as_ref()
        .map(|repo| {
            let key: String = repo.key.lines().map(|l| format!("        {l}\n")).collect();
            format!(
                "apt:\n  preserve_sources_list: false\n  primary:\n    - arches: [default]\n      \
                 uri: {url}\n  sources_list: |\n    {line}\n  \
                 sources:\n    {name}:\n      source: \"deb [signed-by=$KEY_FILE] $MIRROR ./\"\n      \
                 key: |\n{key}packages:\n  - {package}\n",
                url = repo.url,
                line = apt_repo::SOURCES_LIST_LINE,
                name = apt_repo::REPO_NAME,
                package = apt_repo::PACKAGE
            )
        })
        .unwrap_or_default();
    // Appended before the users' keys are written (both provisioners run write_files first).
    let keys_elsewhere = if spec.keys_elsewhere {
        format!(
            "write_files:\n  - path: /etc/ssh/sshd_config\n    append: true\n    \
             content: |\n      {KEYS_ELSEWHERE}\n"
        )
    } else {
        String::new()
    };
    let mut swap = if spec.mounts {
        format!("swap:\n  filename: {SWAP_FILE}\n  size: {SWAP_SIZE}\n")
    } else {
        String::new()
    };
    if spec.disk_setup {
        swap.push_str(&data_disk_user_data());
    }
    // The system's settings: time server, the metadata route, rsyslog's remote.
    let mut system = if spec.ntp {
        format!("ntp:\n  servers: [{NTP_SERVER}]\n")
    } else {
        String::new()
    };
    if spec.disable_metadata {
        system.push_str("disable_ec2_metadata: true\n");
    }
    if spec.rsyslog {
        system.push_str(&format!(
            "rsyslog:\n  remotes:\n    lab: \"{RSYSLOG_REMOTE}\"\n"
        ));
    }
    let bootcmd = if spec.bootcmd {
        format!("bootcmd:\n  - nice > {BOOTCMD_NICE_FILE}\n")
    } else {
        String::new()
    };
    let locale = if spec.locale {
        format!("locale: {LOCALE}\n")
    } else {
        String::new()
    };
    let ca_certs = if spec.trust_ca {
        let pem: String = TRUSTED_CA.lines().map(|l| format!("      {l}\n")).collect();
        format!("ca_certs:\n  trusted:\n    - |\n{pem}")
    } else {
        String::new()
    };
    format!(
        "#cloud-config\n\
         hostname: {host}\n\
         timezone: {TIMEZONE}\n\
         {locale}\
         {system}\
         {bootcmd}\
         ssh_pwauth: true\n\
         users:\n  - default\n  - name: {USER}\n    shell: /bin/bash\n    lock_passwd: false\n\
         \x20   sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys:\n      - {user_key}\n\
         chpasswd:\n  expire: false\n  users:\n    - name: {USER}\n      password: \"{pw}\"\n      type: text\n\
         {ca_certs}\
         {keys_elsewhere}\
         {swap}\
         {packages}\
         runcmd:\n  - echo \"{marker}\" >> {log}\n\
         {phone_home}\
         {reboot}",
        host = intent.hostname,
        pw = intent.password,
        marker = intent.marker,
        log = userdata::RUNCMD_LOG,
        phone_home = lab
            .phone_home
            .as_deref()
            .map(userdata::phone_home)
            .unwrap_or_default(),
        reboot = if spec.reboot_once {
            userdata::POWER_STATE_REBOOT
        } else {
            ""
        },
    )
}

/// The user data of [`CloudImageGuest::disk_setup`]: the data disk named, partitioned (GPT,
/// two partitions), formatted, its first partition mounted.
fn data_disk_user_data() -> String {
    format!(
        "device_aliases:\n  {DATA_ALIAS}: {DATA_DEVICE}\n\
         disk_setup:\n  {DATA_ALIAS}:\n    table_type: gpt\n    layout: [40, 60]\n    overwrite: false\n\
         fs_setup:\n  - label: {DATA_LABEL}\n    filesystem: ext4\n    device: {DATA_ALIAS}.1\n\
         \x20 - label: {LOGS_LABEL}\n    filesystem: ext4\n    device: {DATA_ALIAS}.2\n\
         mounts:\n  - [{DATA_ALIAS}.1, {DATA_MOUNT}]\n"
    )
}

/// A line of [`TRUSTED_CA`]'s body: found in the system's bundle once the CA is trusted.
fn trusted_ca_line() -> &'static str {
    TRUSTED_CA
        .lines()
        .nth(1)
        .expect("a PEM certificate has a body")
}

/// Boots `spec` on `lab` and checks it; failures end up in the report, never as a panic.
pub fn run(
    lab: &Lab,
    spec: &CloudImageGuest,
    dir: &Path,
    askpass: &Path,
    progress: &dyn Progress,
) -> CloudImageReport {
    let mut nothing = |_: &SshTarget, _: &Path| Ok(());
    run_with(
        lab,
        spec,
        dir,
        askpass,
        progress,
        &mut RunHooks {
            login_poll: POLL,
            inspect: &mut nothing,
        },
    )
}

/// A look inside a guest after its checks, while it still runs: given the default user's SSH
/// target and the instance's private key.
pub type Inspect<'a> = dyn FnMut(&SshTarget, &Path) -> anyhow::Result<()> + 'a;

/// What [`run_with`] adds to [`run`] (the bench times boots with it).
pub struct RunHooks<'a> {
    /// How often the first key login is tried: the report's `ssh` time is only as fine as
    /// this ([`POLL`] for the checks).
    pub login_poll: Duration,
    /// Called after the checks; its error becomes the report's.
    pub inspect: &'a mut Inspect<'a>,
}

/// [`run`], with the first key login tried every `hooks.login_poll` and `hooks.inspect` called
/// after the checks, before the guest is killed.
pub fn run_with(
    lab: &Lab,
    spec: &CloudImageGuest,
    dir: &Path,
    askpass: &Path,
    progress: &dyn Progress,
    hooks: &mut RunHooks<'_>,
) -> CloudImageReport {
    let started = Instant::now();
    let mut report = CloudImageReport::starting(spec, dir);
    if let Err(err) = run_guest(lab, spec, dir, askpass, progress, hooks, &mut report) {
        report.error = Some(format!("{err:#}"));
    }
    report.passed = report.error.is_none()
        && !report.checks.is_empty()
        && report.checks.iter().all(|c| c.passed);
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn run_guest(
    lab: &Lab,
    spec: &CloudImageGuest,
    dir: &Path,
    askpass: &Path,
    progress: &dyn Progress,
    hooks: &mut RunHooks<'_>,
    report: &mut CloudImageReport,
) -> anyhow::Result<()> {
    let stage = |what: &str| progress.stage(&spec.name, what);
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    stage("registering");
    let slug = spec.slug();
    let network = lab.network(spec.path.network())?;
    let network_id = network.id.clone();
    // A guest that reboots itself also phones home, to a port of its own at the lab's address.
    let receiver = if spec.reboot_once {
        let ns = lab.client_namespace(&network_id);
        let addr = std::net::SocketAddr::new(network.dhcp_ip, 0);
        Some(crate::check::phone_home::Receiver::start_on(&ns, addr)?)
    } else {
        None
    };
    // A guest that installs a package gets a repository of its own at the lab's address.
    let repo = match &spec.apt_package {
        Some(deb) => {
            let ns = lab.client_namespace(&network_id);
            let addr = std::net::SocketAddr::new(network.dhcp_ip, 0);
            Some(AptRepo::start_on(&ns, addr, deb)?)
        }
        None => None,
    };
    let services = LabServices {
        phone_home: receiver
            .as_ref()
            .map(crate::check::phone_home::Receiver::url),
        apt_repo: repo.as_ref().map(AptRepo::source),
    };
    let (who, user_data) = Who::new(dir, spec, &services)?;
    // meta_data's `hostname`: what phone_home posts (the user data sets another one).
    let meta_hostname = format!("md-{slug}");
    let record = lab.register_instance(&InstanceSpec {
        name: slug.clone(),
        network: network_id,
        hostname: Some(meta_hostname.clone()),
        key_files: vec![who.key.with_extension("pub")],
        user_data: Some(user_data),
        ..InstanceSpec::default()
    })?;
    report.instance = Some(record.uuid.clone());
    let tap = TapGuard {
        lab,
        tap: lab.add_tap(&record)?,
    };
    let overlay = guest::make_overlay(
        &spec.image,
        &spec.format,
        &dir.join("overlay.qcow2"),
        spec.disk_growth,
    )?;
    let nic = Nic {
        netns: lab.state().bridge_ns.clone(),
        tap: tap.tap.clone(),
        mac: record.mac.clone(),
    };
    let ephemeral = dir.join("ephemeral0.img");
    if spec.mounts {
        guest::make_ephemeral_disk(&ephemeral, EPHEMERAL_DISK_BYTES)?;
    }
    let data = dir.join("data.img");
    if spec.disk_setup {
        guest::make_blank_disk(&data, DATA_DISK_BYTES)?;
    }
    let guest_with = |serial_log: &Path| {
        let mut guest = Guest::from_disk(&slug, &overlay, serial_log).with_nic(nic.clone());
        if spec.mounts {
            guest = guest.with_disk(&ephemeral);
        }
        if spec.disk_setup {
            guest = guest.with_disk(&data);
        }
        guest
    };
    let mut guest = guest_with(&report.serial_log);
    let target = SshTarget {
        netns: lab.client_namespace(&record.network_id),
        ip: record.ip,
        user: spec.default_user.clone(),
    };

    if spec.reboot_once {
        reboot_once(spec, &guest, &who.key, &stage, report)?;
        // The second boot's console; the first one's (the provisioning, the host keys) stays
        // the report's.
        let second = dir.join("serial-after-reboot.log");
        guest = guest_with(&second);
        report.after_reboot_log = Some(second);
    }
    stage(&format!(
        "booting (firmware, GRUB, kernel, systemd) via {}",
        spec.via
    ));
    let mut vm = RunningGuest::start_via(&guest, spec.via)?;
    let result = first_login(&mut vm, spec, &target, &who.key, hooks.login_poll, report)
        .and_then(|()| verdict_and_checks(&vm, spec, &target, &who, askpass, &stage, report))
        .map(|()| {
            if let Some(receiver) = &receiver {
                report.checks.push(crate::check::phone_home::phoned_home(
                    &receiver.posted(),
                    &record.uuid,
                    &meta_hostname,
                    true,
                ));
            }
        })
        .and_then(|()| {
            stage("inspecting");
            (hooks.inspect)(&target, &who.key).context("failed to look inside the guest")
        });
    record_markers(&vm, report);
    // A guest that cannot be stopped is an error of its own, but never hides why a check
    // failed.
    let killed = vm.kill();
    drop(tap);
    match (result, killed) {
        (Err(err), Err(kill)) => Err(anyhow::anyhow!(
            "{err:#}; and the guest could not be stopped: {kill:#}"
        )),
        (Err(err), Ok(())) => Err(err),
        (Ok(()), killed) => killed,
    }
}

/// The first boot of a guest whose user data reboots it once provisioned: it must end by
/// itself (QEMU and libvirt run with `-no-reboot`) with the final message on its console.
fn reboot_once(
    spec: &CloudImageGuest,
    guest: &Guest,
    key: &Path,
    stage: &dyn Fn(&str),
    report: &mut CloudImageReport,
) -> anyhow::Result<()> {
    stage(&format!(
        "first boot via {}: provisioned, then rebooting itself (power_state)",
        spec.via
    ));
    let mut vm = RunningGuest::start_via(guest, spec.via)?;
    let timeout = spec.boot_timeout + PROVISION_TIMEOUT;
    let rebooted = vm.wait_exit(timeout);
    let console = fs::read_to_string(&guest.serial_log).unwrap_or_default();
    let restarted = power_state::restarted_after_final_message(&console);
    report.checks.push(CheckResult::from_bool(
        "rebooted itself once provisioned (power_state)",
        rebooted.is_ok() && restarted,
        match &rebooted {
            Ok(()) if restarted => "the first boot ended by itself".to_owned(),
            Ok(()) => format!(
                "the first boot ended, but not by a restart after the final message (no `{}` \
                 after it): see the console log {}",
                power_state::KERNEL_RESTART,
                guest.serial_log.display()
            ),
            Err(err) => format!("{err:#}; console log: {}", guest.serial_log.display()),
        },
    ));
    if let Err(err) = rebooted {
        vm.kill()?;
        return Err(err);
    }
    report
        .checks
        .push(power_state::final_message(&console, None));
    let public_key = fs::read_to_string(key.with_extension("pub")).unwrap_or_default();
    let user = &spec.default_user;
    let keys_file = if spec.keys_elsewhere {
        format!("{KEYS_DIR}/{user}")
    } else {
        format!("/home/{user}/.ssh/authorized_keys")
    };
    report
        .checks
        .push(crate::check::fingerprints::authkey_fingerprints(
            &console,
            user,
            &keys_file,
            &public_key,
        ));
    Ok(())
}

/// Tries a key login as the default user every `poll` until one works: the sign that the
/// guest is provisioned.
pub(crate) fn first_login(
    vm: &mut RunningGuest,
    spec: &CloudImageGuest,
    target: &SshTarget,
    key: &Path,
    poll: Duration,
    report: &mut CloudImageReport,
) -> anyhow::Result<()> {
    let deadline = vm.started + spec.boot_timeout;
    loop {
        // One attempt per poll: a refused connection (sshd not up yet) is tried again `poll`
        // later, not after ssh's own retry pause, so the login's time is as fine as the poll.
        if ssh::with_key_once(target, key, "true").is_ok_and(|out| out.success()) {
            break;
        }
        if let Some(why) = vm.stopped()? {
            bail!("{why}; console log: {}", report.serial_log.display());
        }
        if Instant::now() >= deadline {
            bail!(
                "no provisioning seen in {} s (no key login as {} with the instance's key); \
                 console log: {}",
                spec.boot_timeout.as_secs(),
                target.user,
                report.serial_log.display()
            );
        }
        thread::sleep(poll);
    }
    report.times.ssh = Some(vm.started.elapsed().as_secs_f64());
    Ok(())
}

/// The provisioner's verdict and the checks, after the first key login.
pub(crate) fn verdict_and_checks(
    vm: &RunningGuest,
    spec: &CloudImageGuest,
    target: &SshTarget,
    who: &Who,
    askpass: &Path,
    stage: &dyn Fn(&str),
    report: &mut CloudImageReport,
) -> anyhow::Result<()> {
    let provisioner = match spec.provisioner {
        Some(known) => known,
        None => detect_provisioner(target, &who.key)?,
    };
    report.provisioner = Some(provisioner);
    stage(&format!(
        "key login as {} after {:.1} s; waiting for {}",
        target.user,
        vm.started.elapsed().as_secs_f64(),
        provisioner.status_command()
    ));

    let verdict = wait_for_verdict(target, &who.key, provisioner)?;
    report.times.verdict = Some(vm.started.elapsed().as_secs_f64());
    stage("checking");
    let serial_log = report.serial_log.clone();
    let mut push = |name: &str, result: anyhow::Result<CheckResult>| {
        report.checks.push(match result {
            Ok(check) => CheckResult {
                name: name.to_owned(),
                ..check
            },
            Err(err) => CheckResult::fail(name, format!("{err:#}")),
        });
    };
    push(
        &format!("key login as {}", target.user),
        Ok(CheckResult::pass(
            "",
            "the instance's key (meta_data public_keys)",
        )),
    );
    push(
        &format!("{}: done, no errors", provisioner.status_command()),
        Ok(verdict),
    );
    push(
        "hostname",
        check_output(target, &who.key, "hostname", &who.intent.hostname),
    );
    push(
        &format!("time zone {TIMEZONE} (user data)"),
        check_output(target, &who.key, "date +%Z", TIMEZONE_ABBREVIATION),
    );
    if spec.trust_ca {
        push(
            "the user data's CA is in the system's trust store (ca_certs)",
            check_output(
                target,
                &who.key,
                &format!(
                    "grep -cF '{}' /etc/ssl/certs/ca-certificates.crt",
                    trusted_ca_line()
                ),
                "1",
            ),
        );
    }
    if spec.locale {
        push(
            &format!("system locale {LOCALE} (locale)"),
            check_output(
                target,
                &who.key,
                ". /etc/default/locale && echo \"$LANG\"",
                LOCALE,
            ),
        );
        if provisioner == crate::image::disk::Provisioner::Metaboot {
            push(
                &format!("locale {LOCALE} built (locale -a)"),
                check_output(
                    target,
                    &who.key,
                    &format!("locale -a | grep -ix {LOCALE_LISTED}"),
                    LOCALE_LISTED,
                ),
            );
        }
    }
    if spec.ntp {
        push(
            &format!("time server {NTP_SERVER} in systemd-timesyncd (ntp)"),
            check_output(
                target,
                &who.key,
                "timedatectl show-timesync --property=SystemNTPServers --value",
                NTP_SERVER,
            ),
        );
    }
    if spec.rsyslog {
        push(
            "rsyslog's remote in its configuration (rsyslog)",
            check_output(
                target,
                &who.key,
                &format!("cat {RSYSLOG_FILE}"),
                RSYSLOG_LINES,
            ),
        );
    }
    if spec.bootcmd {
        push(
            "bootcmd ran at nice 0, the default priority (bootcmd)",
            check_output(target, &who.key, &format!("cat {BOOTCMD_NICE_FILE}"), "0"),
        );
    }
    if spec.disable_metadata {
        push(
            "the metadata service unreachable from the guest (disable_ec2_metadata)",
            check_output(
                target,
                &who.key,
                // A prohibit route refuses the connection with EACCES.
                "bash -c 'exec 3<>/dev/tcp/169.254.169.254/80' 2>&1 | grep -o -m1 'Permission denied'",
                "Permission denied",
            ),
        );
    }
    if spec.apt_package.is_some() {
        push(
            "sources.list rewritten from the user data's template (apt)",
            check_output(
                target,
                &who.key,
                "cat /etc/apt/sources.list",
                &apt_repo::SOURCES_LIST_LINE.replace("$RELEASE", recipe::RELEASE),
            ),
        );
        push(
            &format!(
                "package {} installed from the lab's signed repository (apt, packages)",
                apt_repo::PACKAGE
            ),
            check_output(
                target,
                &who.key,
                apt_repo::PACKAGE_COMMAND,
                apt_repo::PACKAGE_SAYS,
            ),
        );
    }
    push(
        "hostname in /etc/hosts",
        check_output(
            target,
            &who.key,
            &hostname_in_hosts(HOSTS_FILE),
            HOSTNAME_LISTED,
        ),
    );
    let user = SshTarget {
        user: USER.to_owned(),
        ..target.clone()
    };
    push(
        &format!("key login as {USER} (user data)"),
        check_output(&user, &who.user_key, "id -un", USER),
    );
    if spec.keys_elsewhere {
        push(
            &format!("{USER}'s keys in {KEYS_DIR}, where sshd reads them (AuthorizedKeysFile)"),
            check_output(
                &user,
                &who.user_key,
                &format!(
                    "test -s {KEYS_DIR}/{USER} && test ! -e ~/.ssh/authorized_keys && echo elsewhere"
                ),
                "elsewhere",
            ),
        );
    }
    push(
        &format!("password login as {USER}"),
        check_password(&user, askpass, &who.intent.password),
    );
    push(
        "runcmd ran once (read with sudo)",
        check_output(
            target,
            &who.key,
            &format!("sudo -n cat {}", userdata::RUNCMD_LOG),
            &who.intent.marker,
        ),
    );
    if spec.mounts {
        push(
            "nova's ephemeral disk is on /mnt (mounts' default)",
            check_output(
                target,
                &who.key,
                "findmnt -n -o SOURCE,FSTYPE /mnt | tr -s ' '",
                "/dev/vdb ext4",
            ),
        );
        push(
            &format!("the swap file {SWAP_FILE} is in use (swap)"),
            check_output(
                target,
                &who.key,
                // /proc/swaps: swapon is in /sbin, off a user's PATH.
                "tail -n +2 /proc/swaps | cut -d ' ' -f 1",
                SWAP_FILE,
            ),
        );
    }
    if spec.disk_setup {
        push(
            &format!(
                "{DATA_DEVICE}: a GPT, ext4 {DATA_LABEL:?} and {LOGS_LABEL:?} on its two partitions (disk_setup, fs_setup)"
            ),
            check_output(
                target,
                &who.key,
                &format!(
                    "lsblk -n -r -o PTTYPE,FSTYPE,LABEL {DATA_DEVICE}1 {DATA_DEVICE}2 | tr '\\n' ' '"
                ),
                &format!("gpt ext4 {DATA_LABEL} gpt ext4 {LOGS_LABEL}"),
            ),
        );
        push(
            &format!("{DATA_ALIAS}.1 is on {DATA_MOUNT} (device_aliases, mounts)"),
            check_output(
                target,
                &who.key,
                &format!("findmnt -n -o SOURCE,FSTYPE,LABEL {DATA_MOUNT} | tr -s ' '"),
                &format!("{DATA_DEVICE}1 ext4 {DATA_LABEL}"),
            ),
        );
    }
    if spec.disk_growth > 0 {
        push(
            "the root file system fills the disk (grown from the image's size)",
            check_root_fills(target, &who.key),
        );
    }
    if spec.provisioner.is_some() {
        // The images' answer, checked against the boot disk by the provisioner's `grub_dpkg`.
        push(
            "grub-pc installs on the boot disk (debconf's answer, grub_dpkg)",
            check_output(
                target,
                &who.key,
                "sudo -n debconf-show grub-pc | grep -F 'grub-pc/install_devices:'",
                "* grub-pc/install_devices: /dev/vda",
            ),
        );
    }
    // Last: an image may make its RSA key after the first login. Only the images this project
    // builds (their provisioner is known) are held to all three types; a user's own image makes
    // the types its configuration asks for (cloud-init's `ssh_genkeytypes`).
    if spec.provisioner.is_some() {
        push(
            "sshd offers its ed25519, ECDSA and RSA host keys",
            check_host_keys(target),
        );
        push(
            "the host keys sshd offers are the ones the console showed",
            check_console_host_keys(target, &serial_log),
        );
    }
    Ok(())
}

/// Copies the console's timestamps into the report.
pub(crate) fn record_markers(vm: &RunningGuest, report: &mut CloudImageReport) {
    let at = |name: &str| {
        vm.serial()
            .markers()
            .into_iter()
            .find(|m| m.text.starts_with(name))
            .map(|m| m.at.as_secs_f64())
    };
    report.times.kernel = at(serial::MARK_KERNEL);
    report.times.sshd = at(serial::MARK_SSHD);
    report.times.provisioner_done =
        at(serial::MARK_CLOUD_INIT_FINISHED).or_else(|| at(serial::MARK_METABOOT_FINISHED));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_data_asks_for_what_the_checks_look_at() {
        let intent = Intent {
            hostname: "ud-x".into(),
            password: "pw-1".into(),
            marker: "x runcmd".into(),
        };
        let spec = CloudImageGuest {
            name: "router/x".into(),
            image: "/i.qcow2".into(),
            format: "qcow2".into(),
            provisioner: None,
            default_user: "debian".into(),
            path: crate::scenario::matrix::MetadataPath::Router,
            via: crate::guest::Via::Qemu,
            boot_timeout: std::time::Duration::from_secs(1),
            disk_growth: 0,
            trust_ca: true,
            reboot_once: true,
            mounts: true,
            apt_package: None,
            locale: true,
            keys_elsewhere: true,
            ntp: true,
            disable_metadata: true,
            rsyslog: true,
            bootcmd: true,
            disk_setup: true,
        };
        let services = LabServices {
            phone_home: Some("http://u/".into()),
            apt_repo: Some(RepoSource {
                url: "http://198.18.10.2:4/".into(),
                key: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEaxJk\n".into(),
            }),
        };
        let text = cloud_config(&intent, "ssh-ed25519 AAAA k", &spec, &services);
        assert!(text.starts_with("#cloud-config\n"));
        for expect in [
            "hostname: ud-x\n",
            "timezone: Asia/Tokyo\n",
            "ca_certs:\n  trusted:\n    - |\n      -----BEGIN CERTIFICATE-----\n",
            "  - default\n",
            "  - name: cloudy\n",
            "      - ssh-ed25519 AAAA k\n",
            "      password: \"pw-1\"\n",
            "  - echo \"x runcmd\" >> /root/runcmd.log\n",
            "ssh_pwauth: true\n",
            "power_state:\n  mode: reboot\n",
            "swap:\n  filename: /swap.img\n  size: 64M\n",
            "final_message: ",
            "phone_home:\n  url: \"http://u/\"\n  post: all\n",
            "apt:\n  preserve_sources_list: false\n  primary:\n    - arches: [default]\n      \
             uri: http://198.18.10.2:4/\n  sources_list: |\n    \
             # $RELEASE: only the lab's repository, in sources.list.d\n  sources:\n    lab:\n      \
             source: \"deb [signed-by=$KEY_FILE] $MIRROR ./\"\n      key: |\n        \
             -----BEGIN PGP PUBLIC KEY BLOCK-----\n        \n        mDMEaxJk\n",
            "packages:\n  - hello\n",
            "locale: en_US.UTF-8\n",
            "ntp:\n  servers: [time.metaboot.test]\n",
            "disable_ec2_metadata: true\n",
            "rsyslog:\n  remotes:\n    lab: \"@@[2001:db8::514]:6514\"\n",
            "bootcmd:\n  - nice > /run/bootcmd-nice\n",
            "device_aliases:\n  data: /dev/vdc\n",
            "disk_setup:\n  data:\n    table_type: gpt\n    layout: [40, 60]\n    overwrite: false\n",
            "fs_setup:\n  - label: data\n    filesystem: ext4\n    device: data.1\n  \
             - label: logs\n    filesystem: ext4\n    device: data.2\n",
            "mounts:\n  - [data.1, /data]\n",
            "write_files:\n  - path: /etc/ssh/sshd_config\n    append: true\n    content: |\n      \
             AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys\n",
        ] {
            assert!(text.contains(expect), "{expect:?} in\n{text}");
        }
        let plain = CloudImageGuest {
            trust_ca: false,
            reboot_once: false,
            mounts: false,
            locale: false,
            keys_elsewhere: false,
            ntp: false,
            disable_metadata: false,
            rsyslog: false,
            bootcmd: false,
            disk_setup: false,
            ..spec
        };
        let plain = cloud_config(
            &intent,
            "ssh-ed25519 AAAA k",
            &plain,
            &LabServices::default(),
        );
        for key in [
            "ca_certs",
            "power_state",
            "swap",
            "phone_home",
            "packages",
            "locale",
            "write_files",
            "ntp",
            "disable_ec2_metadata",
            "rsyslog",
            "bootcmd",
            "disk_setup",
            "fs_setup",
            "device_aliases",
            "mounts",
        ] {
            assert!(!plain.contains(key), "{key}");
        }
    }
}
