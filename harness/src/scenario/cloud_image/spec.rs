//! What a cloud image run is about: the guest to boot, its boot times and its report, and the
//! bounds its checks share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::check::CheckResult;
use crate::guest::Via;
use crate::image::disk::Provisioner;
use crate::scenario::matrix::MetadataPath;

/// How long provisioning may go on after the first key login (cloud-init's config and final
/// stages run after sshd started: about 20 s more under TCG here, but over 4 minutes on a
/// machine busy with other builds and guests).
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(360);

/// How often the first key login and the verdict are tried.
pub const POLL: Duration = Duration::from_secs(2);

/// How long after the checks start a guest's sshd may take to offer every host key type (an
/// RSA key made after the first login takes tens of seconds under emulation).
pub const HOST_KEYS_TIMEOUT: Duration = Duration::from_secs(180);

/// How much larger than its image a guest's disk is, as a flavour's root disk is larger than
/// the image booted on it (nova grows the instance's disk to the flavour's size).
pub const FLAVOUR_DISK_GROWTH: u64 = 1 << 30;

/// The least share of its disk a grown root file system has (a root that did not grow has
/// about two thirds of a disk [`FLAVOUR_DISK_GROWTH`] larger than a 2 GiB image; ext4's own
/// metadata takes a few percent).
pub const MIN_ROOT_SHARE: f64 = 0.9;

/// The time zone the user data sets: one without daylight saving time, so that its
/// abbreviation ([`TIMEZONE_ABBREVIATION`], what `date +%Z` prints) is the same all year.
pub const TIMEZONE: &str = "Asia/Tokyo";
/// Its abbreviation.
pub const TIMEZONE_ABBREVIATION: &str = "JST";

/// A CA the user data asks the instance to trust (`ca_certs`), as a cloud with a private CA
/// does; the same test CA the guest agent's tests use.
pub const TRUSTED_CA: &str = include_str!("../../../../agent/tests/fixtures/ca/test-ca.pem");

/// The user the user data creates (besides the image's default user).
pub const USER: &str = "cloudy";

/// A cloud image guest to boot.
#[derive(Debug, Clone)]
pub struct CloudImageGuest {
    /// Its name in reports (`router/debian-metaboot`).
    pub name: String,
    /// The disk image (never written).
    pub image: PathBuf,
    /// The image's format for QEMU (`qcow2`, `raw`).
    pub format: String,
    /// What provisions it (its verdict is checked); `None`: asked over SSH after the first
    /// login (`metaboot` when it is installed, else `cloud-init`).
    pub provisioner: Option<Provisioner>,
    /// The user that gets the instance's keys.
    pub default_user: String,
    /// The metadata path (the lab network it boots on).
    pub path: MetadataPath,
    /// Who starts its QEMU.
    pub via: Via,
    /// How long after QEMU's start the first key login as the default user may take: the
    /// sign that provisioning happened (default [`crate::guest::qemu::DISK_BOOT_TIMEOUT`]).
    pub boot_timeout: Duration,
    /// Bytes its disk has beyond the image's ([`FLAVOUR_DISK_GROWTH`] as a flavour's larger
    /// root disk; 0: the image's size). When some, a check asks that the root file system
    /// grew to fill it.
    pub disk_growth: u64,
    /// The user data also asks it to trust [`TRUSTED_CA`] (`ca_certs`), and a check looks for
    /// the CA in the system's bundle. The trust store's rebuild takes tens of seconds under
    /// emulation, so the bench leaves it out (its boot figures stay comparable).
    pub trust_ca: bool,
    /// The user data also asks for a reboot once provisioned (`power_state`, on a condition
    /// that holds once runcmd ran) and a `final_message`: the first boot ends by itself (QEMU
    /// and libvirt run with `-no-reboot`), its console shows the final message, and the same
    /// disk boots again for the checks (the instance's per-instance work not redone).
    pub reboot_once: bool,
    /// The guest also gets an ephemeral disk as nova gives one ([`EPHEMERAL_DISK_BYTES`],
    /// ext4 labelled `ephemeral0`) and the user data a swap file ([`SWAP_FILE`],
    /// [`SWAP_SIZE`]): checks find the disk mounted on `/mnt` (`mounts`' default) and the
    /// file an active swap area.
    pub mounts: bool,
    /// A `.deb` the lab serves the guest from a repository at its address
    /// ([`crate::check::apt_repo`]): the user data makes it apt's only source and asks for
    /// the package (`packages`), and a check runs what it installed.
    pub apt_package: Option<PathBuf>,
    /// The user data also sets the system locale to [`LOCALE`] (`locale`), one the image's
    /// `/etc/locale.gen` does not enable: a check finds it in `/etc/default/locale`, and, on a
    /// guest metaboot provisions, built (`locale -a`). cloud-init 22.4 fails there on Debian
    /// (its `locale-gen` builds only what locale.gen enables, then `update-locale` refuses the
    /// locale), so the suite asks it of metaboot's guests only.
    pub locale: bool,
    /// The user data also points the image's sshd at keys kept outside the homes
    /// ([`KEYS_ELSEWHERE`] appended to `/etc/ssh/sshd_config` by `write_files`, which both
    /// provisioners run before they write keys): the key logins then work only when the
    /// provisioner wrote the keys where sshd reads them, and a check finds the user's file in
    /// [`KEYS_DIR`] and none in its home.
    pub keys_elsewhere: bool,
    /// The user data also names [`NTP_SERVER`] as the time server (`ntp`): both provisioners
    /// choose the image's systemd-timesyncd (cloud-init's `auto` on an image without chrony),
    /// write its drop-in and restart it, and a check finds the server among the ones
    /// timesyncd uses (`timedatectl show-timesync`).
    pub ntp: bool,
    /// The user data also asks for `disable_ec2_metadata: true`: the provisioner prohibits the
    /// route to 169.254.169.254 once it has read it, and a check finds that no process of the
    /// guest can connect to the metadata service any more (cloud-init 22.4 cannot where DHCP
    /// gave that route: `tests/tests/e2e_debian.rs`).
    pub disable_metadata: bool,
    /// The user data also gives rsyslog a remote ([`RSYSLOG_REMOTE`], `rsyslog: remotes:`): both
    /// provisioners write it into `/etc/rsyslog.d/20-cloud-config.conf` as cloud-init renders
    /// it (the images have no rsyslog: the reload each tries is a warning), and a check reads
    /// the file back.
    pub rsyslog: bool,
    /// The user data also has a `bootcmd` that writes the nice value it runs at to
    /// [`BOOTCMD_NICE_FILE`], and a check reads 0 there: the user's commands run at the default
    /// priority, also where the provisioner itself runs above it (metaboot.service at -10).
    pub bootcmd: bool,
    /// The guest also gets a blank data disk ([`DATA_DISK_BYTES`], `/dev/vdc` after the
    /// ephemeral disk) and the user data names it [`DATA_ALIAS`] (`device_aliases`), asks for a
    /// GPT with two partitions on it (`disk_setup`), an ext4 file system on each
    /// ([`DATA_LABEL`], [`LOGS_LABEL`]: `fs_setup`) and the first one on [`DATA_MOUNT`]
    /// (`mounts`): checks find both file systems and the mount. Needs [`Self::mounts`] (the
    /// data disk comes after the ephemeral one).
    pub disk_setup: bool,
}

/// The data disk's size.
pub const DATA_DISK_BYTES: u64 = 64 << 20;
/// The name the user data gives it, and the device it names.
pub const DATA_ALIAS: &str = "data";
pub const DATA_DEVICE: &str = "/dev/vdc";
/// The labels of its two file systems.
pub const DATA_LABEL: &str = "data";
pub const LOGS_LABEL: &str = "logs";
/// Where the first is mounted.
pub const DATA_MOUNT: &str = "/data";

/// The remote of [`CloudImageGuest::rsyslog`] (TCP to a documentation address and port).
pub const RSYSLOG_REMOTE: &str = "@@[2001:db8::514]:6514";
/// The file both provisioners write it into, and what it holds.
pub const RSYSLOG_FILE: &str = "/etc/rsyslog.d/20-cloud-config.conf";
/// What that file holds: the remote as cloud-init 22.4 renders it, named `lab`.
pub const RSYSLOG_LINES: &str = "# begin remotes\n*.* @@[2001:db8::514]:6514 # lab\n# end remotes";
/// Where [`CloudImageGuest::bootcmd`]'s command writes its nice value (every boot: bootcmd runs
/// on each).
pub const BOOTCMD_NICE_FILE: &str = "/run/bootcmd-nice";

/// The time server of [`CloudImageGuest::ntp`]: a name under `.test` (RFC 2606), which nothing
/// answers; timesyncd lists it all the same.
pub const NTP_SERVER: &str = "time.metaboot.test";

/// The `AuthorizedKeysFile` line of [`CloudImageGuest::keys_elsewhere`]: a file per user in
/// [`KEYS_DIR`] (as hardened images keep them), then sshd's default.
pub const KEYS_ELSEWHERE: &str =
    "AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys";
/// The directory of those files.
pub const KEYS_DIR: &str = "/etc/ssh/authorized_keys";

/// The locale the user data sets.
pub const LOCALE: &str = "en_US.UTF-8";
/// How `locale -a` names it.
pub const LOCALE_LISTED: &str = "en_US.utf8";

/// The ephemeral disk's size.
pub const EPHEMERAL_DISK_BYTES: u64 = 64 << 20;
/// The swap file the user data asks for.
pub const SWAP_FILE: &str = "/swap.img";
/// Its size, as the user data writes it.
pub const SWAP_SIZE: &str = "64M";

impl CloudImageGuest {
    /// The name as an identifier (`router-debian-metaboot`): instance names, files.
    pub fn slug(&self) -> String {
        self.name.replace('/', "-")
    }
}

/// Times of one boot, in seconds since QEMU started (host monotonic clock).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DiskBootTimes {
    /// The kernel printed its banner (firmware and bootloader before it).
    pub kernel: Option<f64>,
    /// systemd started sshd.
    pub sshd: Option<f64>,
    /// The provisioner's last console line (cloud-init's final message, metaboot's
    /// "metaboot finished").
    pub provisioner_done: Option<f64>,
    /// The first successful key login as the default user.
    pub ssh: Option<f64>,
    /// The verdict was final (polled over SSH, so up to [`POLL`] late).
    pub verdict: Option<f64>,
}

/// The outcome of one cloud image guest.
#[derive(Debug, Clone, Serialize)]
pub struct CloudImageReport {
    /// Its name.
    pub name: String,
    /// True when every check passed and nothing failed on the way.
    pub passed: bool,
    /// The checks, in the order they ran.
    pub checks: Vec<CheckResult>,
    /// The boot.
    pub times: DiskBootTimes,
    /// What stopped it early, if anything.
    pub error: Option<String>,
    /// What provisioned it (known, or found in the guest).
    pub provisioner: Option<Provisioner>,
    /// Who started its QEMU.
    pub via: Via,
    /// The registered instance.
    pub instance: Option<String>,
    /// The console log (of the first boot, when the guest rebooted itself).
    pub serial_log: PathBuf,
    /// The second boot's console log, when the guest rebooted itself (`reboot_once`).
    pub after_reboot_log: Option<PathBuf>,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl CloudImageReport {
    /// The report of `spec` before its run, with its console log in `dir`.
    pub fn starting(spec: &CloudImageGuest, dir: &Path) -> Self {
        Self {
            name: spec.name.clone(),
            passed: false,
            checks: Vec::new(),
            times: DiskBootTimes::default(),
            error: None,
            provisioner: spec.provisioner,
            via: spec.via,
            instance: None,
            serial_log: dir.join("serial.log"),
            after_reboot_log: None,
            seconds: 0.0,
        }
    }
}
