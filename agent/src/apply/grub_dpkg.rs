//! cloud-init's `grub_dpkg` (once per instance, on by default on the Debian family): the disk
//! GRUB boots from told to debconf, so that an upgrade of `grub-pc` installs GRUB on the
//! instance's disk, not on the one the image was built on (a loop device, a builder's disk),
//! and does not stop to ask. The disk is the one whose partition holds `/boot` (from the
//! kernel's view, in-process; `grub-probe -t disk /boot`, as cloud-init asks, where `/boot` is
//! on no partition: LVM, RAID), named by its first `/dev/disk/by-id/` link when udev has one (a
//! disk's serial; a virtio disk without one keeps its kernel name); `grub-pc/install_devices`
//! and `grub-pc/install_devices_empty` are set with `debconf-set-selections`, as cloud-init
//! sets them, unless debconf's database already holds both answers (a perl program that takes
//! seconds under emulation is not run for nothing). `grub_dpkg` (or `grub-dpkg`):
//! `{enabled, grub-pc/install_devices, grub-pc/install_devices_empty}`.

use serde_json::{Map, Value};

use std::path::Path;

use super::growpart::partition::{self, Located};
use super::tool::{self, ToolError};
use crate::userdata::cloud_config::{is_false, is_true};

/// debconf's tool that sets answers (the Debian family's).
pub const SET_SELECTIONS: &str = "debconf-set-selections";
/// debconf's database of answers (its default configuration's `configdb`).
pub const DEBCONF_CONFIG: &str = "/var/cache/debconf/config.dat";
/// The directory whose disk GRUB is installed on.
pub const BOOT_DIR: &str = "/boot";
/// The prefix of the links that name a disk by its identity.
pub const BY_ID: &str = "/dev/disk/by-id/";
/// The debconf question of the disks.
pub const INSTALL_DEVICES: &str = "grub-pc/install_devices";
/// The debconf question of an empty answer to it.
pub const INSTALL_DEVICES_EMPTY: &str = "grub-pc/install_devices_empty";

/// What the step sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selections {
    /// The disks (empty: none found).
    pub devices: String,
    /// Whether no disk is on purpose.
    pub empty: bool,
}

impl Selections {
    /// The lines `debconf-set-selections` reads.
    pub fn text(&self) -> String {
        format!(
            "grub-pc {INSTALL_DEVICES} string {}\ngrub-pc {INSTALL_DEVICES_EMPTY} boolean {}\n",
            self.devices, self.empty
        )
    }
}

/// The configuration: `grub_dpkg`, else `grub-dpkg`.
pub fn config<'a>(
    new: Option<&'a Map<String, Value>>,
    old: Option<&'a Map<String, Value>>,
) -> Option<&'a Map<String, Value>> {
    new.or(old)
}

/// Whether the step runs (`enabled`, default true).
pub fn enabled(config: Option<&Map<String, Value>>) -> bool {
    !config.and_then(|c| c.get("enabled")).is_some_and(is_false)
}

/// The selections for `config`, the disk found by `find` when the configuration names none.
pub fn selections(
    config: Option<&Map<String, Value>>,
    find: impl FnOnce() -> Result<String, ToolError>,
) -> Result<Selections, String> {
    let given = |key: &str| config.and_then(|c| c.get(key)).filter(|v| !v.is_null());
    let devices = match given(INSTALL_DEVICES) {
        Some(Value::String(devices)) => devices.clone(),
        Some(other) => {
            return Err(format!(
                "grub_dpkg: {INSTALL_DEVICES} {other} is not a string"
            ));
        }
        None => find().map_err(|err| crate::log::chain(&err))?,
    };
    if devices.contains('\n') {
        return Err(format!(
            "grub_dpkg: {INSTALL_DEVICES} {devices:?} is more than one line"
        ));
    }
    let empty = match given(INSTALL_DEVICES_EMPTY) {
        Some(value) => is_true(value),
        None => devices.is_empty(),
    };
    Ok(Selections { devices, empty })
}

/// The disk GRUB boots from: the disk of the partition `/boot` is on, else what grub-probe says
/// (empty when it is missing or finds none, as in cloud-init); its first `/dev/disk/by-id/`
/// link, else its name.
pub fn boot_disk() -> Result<String, ToolError> {
    let disk = match partition_disk(Path::new(BOOT_DIR)) {
        Some(disk) => disk,
        None => match grub_probe()? {
            Some(disk) => disk,
            None => return Ok(String::new()),
        },
    };
    let links = match tool::output("udevadm", &["info", "--root", "--query=symlink", &disk]) {
        Ok(Some(out)) => String::from_utf8_lossy(&out).into_owned(),
        _ => String::new(),
    };
    Ok(by_id(&links).unwrap_or(disk))
}

/// `/dev/<disk>` of the partition the file system at `dir` is on, as the kernel sees it.
pub fn partition_disk(dir: &Path) -> Option<String> {
    let dev = partition::device_of(dir, Path::new(partition::MOUNTINFO)).ok()?;
    match partition::locate(Path::new(partition::SYS_DEV_BLOCK), dev).ok()? {
        Located::Partition(found) => {
            let node = Path::new(partition::DEV).join(&found.disk.name);
            node.exists().then(|| node.to_string_lossy().into_owned())
        }
        Located::Not(_) => None,
    }
}

/// `grub-probe -t disk /boot`: `None` when grub-probe is missing or cannot name the disk.
fn grub_probe() -> Result<Option<String>, ToolError> {
    let disk = match tool::output("grub-probe", &["-t", "disk", BOOT_DIR]) {
        Ok(Some(out)) => String::from_utf8_lossy(&out).trim().to_owned(),
        // No grub-common (a container).
        Ok(None) => return Ok(None),
        // /boot on a disk this system cannot name.
        Err(ToolError::Failed { said, .. }) if said.contains("failed to get canonical path") => {
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    Ok((!disk.is_empty() && Path::new(&disk).exists()).then_some(disk))
}

/// The two answers debconf's database `config` (config.dat's text) holds now, if any.
pub fn current(config: &str) -> Option<Selections> {
    let value = |name: &str| {
        config.split("\n\n").find_map(|stanza| {
            if !stanza
                .lines()
                .any(|line| line.strip_prefix("Name: ") == Some(name))
            {
                return None;
            }
            Some(
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix("Value:"))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
    };
    let devices = value(INSTALL_DEVICES)?;
    let empty = match value(INSTALL_DEVICES_EMPTY)?.as_str() {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    Some(Selections { devices, empty })
}

/// The first (sorted) `/dev/disk/by-id/` link among udev's `links`.
pub fn by_id(links: &str) -> Option<String> {
    links
        .split_whitespace()
        .filter(|link| link.starts_with(BY_ID))
        .min()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("{other} is not a map"),
        }
    }

    #[test]
    fn the_disk_found_is_set_unless_the_configuration_names_one() {
        let found = || Ok("/dev/vda".to_owned());
        let set = selections(None, found).unwrap();
        assert_eq!(
            set.text(),
            "grub-pc grub-pc/install_devices string /dev/vda\n\
             grub-pc grub-pc/install_devices_empty boolean false\n"
        );
        let none = selections(None, || Ok(String::new())).unwrap();
        assert_eq!(
            none,
            Selections {
                devices: String::new(),
                empty: true
            }
        );
        let given = map(
            json!({"grub-pc/install_devices": "/dev/sda", "grub-pc/install_devices_empty": "yes"}),
        );
        let set = selections(Some(&given), || panic!("not asked")).unwrap();
        assert_eq!((set.devices.as_str(), set.empty), ("/dev/sda", true));
        let bad = map(json!({"grub-pc/install_devices": ["/dev/sda"]}));
        assert!(
            selections(Some(&bad), found)
                .unwrap_err()
                .contains("is not a string")
        );
        let two = map(json!({"grub-pc/install_devices": "/dev/sda\n/dev/sdb"}));
        assert!(
            selections(Some(&two), found)
                .unwrap_err()
                .contains("more than one line")
        );
    }

    #[test]
    fn it_is_on_unless_disabled_and_the_new_name_wins() {
        assert!(enabled(None));
        let off = map(json!({"enabled": false}));
        let off_text = map(json!({"enabled": "off"}));
        let on = map(json!({"enabled": true}));
        assert!(!enabled(Some(&off)) && !enabled(Some(&off_text)) && enabled(Some(&on)));
        assert_eq!(config(Some(&on), Some(&off)), Some(&on));
        assert_eq!(config(None, Some(&off)), Some(&off));
    }

    #[test]
    fn the_answers_debconf_holds_are_read_from_its_database() {
        let config = "Name: grub-pc/install_devices\nTemplate: grub-pc/install_devices\n\
                      Value: /dev/vda\nOwners: grub-pc\nFlags: seen\n\n\
                      Name: grub-pc/install_devices_empty\nTemplate: grub-pc/install_devices_empty\n\
                      Value: false\nOwners: grub-pc\n\n\
                      Name: tzdata/Areas\nValue: Etc\n";
        assert_eq!(
            current(config),
            Some(Selections {
                devices: "/dev/vda".to_owned(),
                empty: false
            })
        );
        // An answer never given (the image's build left it out): the step sets both.
        let unset = "Name: grub-pc/install_devices\nTemplate: grub-pc/install_devices\n\
                     Owners: grub-pc\n";
        assert_eq!(current(unset), None);
        let blank = "Name: grub-pc/install_devices\nValue: \n\n\
                     Name: grub-pc/install_devices_empty\nValue: true\n";
        assert_eq!(
            current(blank),
            Some(Selections {
                devices: String::new(),
                empty: true
            })
        );
        assert_eq!(current(""), None);
    }

    #[test]
    fn the_disk_of_a_directory_on_no_partition_is_left_to_grub_probe() {
        // /proc is on no block device at all.
        assert_eq!(partition_disk(Path::new("/proc")), None);
    }

    #[test]
    fn a_by_id_link_names_the_disk_when_udev_has_one() {
        let links = "/dev/disk/by-path/pci-0000:00:04.0 /dev/disk/by-id/virtio-zz \
                     /dev/disk/by-id/ata-QEMU_HARDDISK_QM00001";
        assert_eq!(
            by_id(links).as_deref(),
            Some("/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001")
        );
        assert_eq!(by_id("/dev/disk/by-path/pci-0000:00:04.0"), None);
        assert_eq!(by_id(""), None);
    }
}
