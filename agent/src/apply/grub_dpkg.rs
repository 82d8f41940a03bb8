//! cloud-init's `grub_dpkg` (once per instance, on by default on the Debian family): the disk
//! GRUB boots from told to debconf, so that an upgrade of `grub-pc` installs GRUB on the
//! instance's disk, not on the one the image was built on (a loop device, a builder's disk),
//! and does not stop to ask. The disk is `grub-probe -t disk /boot`, named by its first
//! `/dev/disk/by-id/` link when udev has one (a disk's serial; a virtio disk without one keeps
//! its kernel name); `grub-pc/install_devices` and `grub-pc/install_devices_empty` are set
//! with `debconf-set-selections`, as cloud-init sets them. `grub_dpkg` (or `grub-dpkg`):
//! `{enabled, grub-pc/install_devices, grub-pc/install_devices_empty}`.

use serde_json::{Map, Value};

use super::tool::{self, ToolError};
use crate::userdata::cloud_config::{is_false, is_true};

/// debconf's tool that sets answers (the Debian family's).
pub const SET_SELECTIONS: &str = "debconf-set-selections";
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

/// The disk GRUB boots from, as cloud-init finds it: empty when grub-probe is missing or finds
/// none; its first `/dev/disk/by-id/` link, else its name.
pub fn boot_disk() -> Result<String, ToolError> {
    let disk = match tool::output("grub-probe", &["-t", "disk", BOOT_DIR]) {
        Ok(Some(out)) => String::from_utf8_lossy(&out).trim().to_owned(),
        // No grub-common (a container), or /boot on a disk this system cannot name.
        Ok(None) => return Ok(String::new()),
        Err(ToolError::Failed { said, .. }) if said.contains("failed to get canonical path") => {
            return Ok(String::new());
        }
        Err(err) => return Err(err),
    };
    if disk.is_empty() || !std::path::Path::new(&disk).exists() {
        return Ok(String::new());
    }
    let links = match tool::output("udevadm", &["info", "--root", "--query=symlink", &disk]) {
        Ok(Some(out)) => String::from_utf8_lossy(&out).into_owned(),
        _ => String::new(),
    };
    Ok(by_id(&links).unwrap_or(disk))
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
