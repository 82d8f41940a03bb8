//! The device of a `mounts` entry, named as cloud-init's `sanitize_devname` names it: a
//! network source (`host:/path`) as written; `ephemeral0`, `swap` and the other names of the
//! metadata found by label, as cloud-init's OpenStack datasource finds them (`LABEL=ephemeral0`,
//! `TYPE=swap`: nova labels an instance's ephemeral disk `ephemeral0`); `sdb`, `vdb1`, `xvdc`,
//! `sr0` under `/dev`; a device given without a partition number takes its first partition
//! when it has one (`/dev/vdb` → `/dev/vdb1`), `name.N` its N-th. A device that is not a block
//! device of this system is `None` (the caller keeps the entry as written). `device_aliases`
//! names are replaced by their devices first.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::root::Root;
use crate::source::drive::{self, FsType};

/// What the system's block devices are: `/sys/block` and `/dev` under a root, labels probed
/// once, when a name of the metadata asks for them.
pub struct Devices<'a> {
    root: &'a Root,
    labelled: OnceCell<Vec<(PathBuf, FsType, String)>>,
    /// `device_aliases`: a name for a device.
    aliases: BTreeMap<String, String>,
}

/// `[x]?[shv]d[a-z][0-9]*` or `sr[0-9]+` (cloud-init's `DEVICE_NAME_FILTER`).
pub fn is_device_name(name: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix("sr") {
        return !rest.is_empty() && digits(rest);
    }
    let rest = name.strip_prefix('x').unwrap_or(name);
    let bytes = rest.as_bytes();
    bytes.len() >= 3
        && matches!(bytes[0], b's' | b'h' | b'v')
        && bytes[1] == b'd'
        && bytes[2].is_ascii_lowercase()
        && digits(&rest[3..])
}

/// A name the metadata maps to a device (`ami`, `root`, `swap`, `ephemeralN`, `ebsN`).
pub fn is_metadata_name(name: &str) -> bool {
    matches!(name, "ami" | "root" | "swap")
        || ((name.starts_with("ephemeral") || name.starts_with("ebs")) && !name.contains(':'))
}

/// A network file system's source (`server:/export`).
pub fn is_network(name: &str) -> bool {
    name.find(':').is_some_and(|at| at > 0)
}

/// `ephemeral0.1` → (`ephemeral0`, `1`); no number after the last dot: no partition.
pub fn split_partition(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((device, number))
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (device, Some(number))
        }
        _ => (name, None),
    }
}

/// `device_aliases`: names for device paths (for `mounts`, `disk_setup` and `fs_setup`).
pub fn aliases(value: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(map) = value else {
        return Err(format!(
            "device_aliases {value} is not a map of names to devices"
        ));
    };
    map.iter()
        .map(|(name, device)| match device {
            Value::String(s) => Ok((name.clone(), s.clone())),
            Value::Number(n) => Ok((name.clone(), n.to_string())),
            other => Err(format!("device {other} is not a string")),
        })
        .collect()
}

impl<'a> Devices<'a> {
    pub fn new(root: &'a Root) -> Self {
        Devices {
            root,
            labelled: OnceCell::new(),
            aliases: BTreeMap::new(),
        }
    }

    /// The same, `aliases` (`device_aliases`) replaced by their devices.
    pub fn with_aliases(mut self, aliases: BTreeMap<String, String>) -> Self {
        self.aliases = aliases;
        self
    }

    /// The whole device `name` stands for, as `disk_setup` and `fs_setup` name it (cloud-init's
    /// `alias_to_device`): an alias's device, a name of the metadata's device (by label), a
    /// kernel name under `/dev`, anything else as written. `None`: a name of the metadata no
    /// device has.
    pub fn disk(&self, name: &str) -> Option<String> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        if is_metadata_name(name) {
            // A label on a partition (`disk_setup` partitioned the disk, `fs_setup` labelled
            // its first partition `ephemeral0`) names the disk holding it.
            let device = self.by_label(name)?;
            Some(
                self.real_name(&device)
                    .and_then(|part| self.partition_of(&part))
                    .map_or(device, |disk| format!("/dev/{disk}")),
            )
        } else if is_device_name(name) {
            Some(format!("/dev/{name}"))
        } else {
            Some(name.to_owned())
        }
    }

    /// The device path `name` stands for on this system, if any.
    pub fn resolve(&self, name: &str) -> Option<String> {
        if is_network(name) {
            return Some(name.to_owned());
        }
        let name = if name == "ephemeral" {
            "ephemeral0"
        } else {
            name
        };
        let (device, partition) = split_partition(name);
        let device = self.aliases.get(device).map_or(device, String::as_str);
        let device = if is_metadata_name(device) {
            self.by_label(device)?
        } else if is_device_name(name) {
            format!("/dev/{device}")
        } else {
            device.to_owned()
        };
        let partition = match partition {
            None => self.nth_partition(&device, "1"),
            Some(n) => Some(self.nth_partition(&device, n)?),
        };
        self.is_block_device(&device, partition.as_deref())
            .then(|| partition.unwrap_or(device))
    }

    /// The first device labelled `name` (for `swap`: the first swap area).
    fn by_label(&self, name: &str) -> Option<String> {
        let labelled = self.labelled.get_or_init(|| drive::probe_all(self.root));
        labelled
            .iter()
            .find(|(_, fs, label)| {
                if name == "swap" {
                    *fs == FsType::Swap
                } else {
                    label == name
                }
            })
            .map(|(device, _, _)| device.to_string_lossy().into_owned())
    }

    /// `device` + `N`, `pN` or `-partN`, the first that exists.
    fn nth_partition(&self, device: &str, n: &str) -> Option<String> {
        ["", "p", "-part"]
            .iter()
            .map(|infix| format!("{device}{infix}{n}"))
            .find(|path| self.root.exists(path))
    }

    /// Whether `device` (and `partition` of it) are block devices of this system:
    /// `/sys/block/<device>[/<partition>]`, the names after symlinks (`/dev/disk/by-label/…`).
    fn is_block_device(&self, device: &str, partition: Option<&str>) -> bool {
        let Some(name) = self.real_name(device) else {
            return false;
        };
        // A partition itself (a label found on `vdb1`): `/sys/block/vdb/vdb1`.
        if partition.is_none() && self.partition_of(&name).is_some() {
            return true;
        }
        let mut sys = Path::new("/sys/block").join(name);
        if let Some(partition) = partition {
            let Some(part) = self.real_name(partition) else {
                return false;
            };
            sys.push(part);
        }
        self.root.exists(sys)
    }

    /// The disk holding partition `name` (`vdb1` → `vdb`: `/sys/block/vdb/vdb1` exists);
    /// `None` for a whole disk or an unknown name.
    fn partition_of(&self, name: &str) -> Option<String> {
        if name.is_empty() || self.root.exists(Path::new("/sys/block").join(name)) {
            return None;
        }
        self.root
            .entries_or_none("/sys/block")
            .into_iter()
            .map(|(disk, _)| disk.to_string_lossy().into_owned())
            .find(|disk| {
                self.root
                    .exists(Path::new("/sys/block").join(disk).join(name))
            })
    }

    fn real_name(&self, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let host = self.root.host_path(path);
        let real = std::fs::canonicalize(&host).ok()?;
        real.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drive::tests::add_device;

    #[test]
    fn names_are_classified_as_cloud_init_does() {
        for name in ["sdb", "vdb1", "xvdc", "hda", "sr0", "xvdz12"] {
            assert!(is_device_name(name), "{name}");
        }
        for name in ["sd", "vdB", "nvme0n1", "sr", "ephemeral0", "xxvdb"] {
            assert!(!is_device_name(name), "{name}");
        }
        for name in ["ephemeral0", "ephemeral", "swap", "ebs1", "ami", "root"] {
            assert!(is_metadata_name(name), "{name}");
        }
        assert!(!is_metadata_name("ephemeral0:x"));
        assert!(is_network("nas:/export") && !is_network(":x") && !is_network("vdb"));
        assert_eq!(split_partition("ephemeral0.1"), ("ephemeral0", Some("1")));
        assert_eq!(split_partition("host.example"), ("host.example", None));
    }

    #[test]
    fn devices_resolve_to_their_first_partition_and_labels_to_their_device() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        add_device(&root, "vdb", None);
        add_device(&root, "vdc", None);
        add_device(&root, "vdc1", None);
        for sys in ["/sys/block/vdb", "/sys/block/vdc/vdc1"] {
            std::fs::create_dir_all(root.host_path(sys)).unwrap();
        }
        let devices = Devices::new(&root);
        assert_eq!(devices.resolve("vdb").as_deref(), Some("/dev/vdb"));
        assert_eq!(devices.resolve("/dev/vdb").as_deref(), Some("/dev/vdb"));
        assert_eq!(devices.resolve("vdc").as_deref(), Some("/dev/vdc1"));
        assert_eq!(devices.resolve("/dev/vdc").as_deref(), Some("/dev/vdc1"));
        // `.N` is for the names of the metadata (`ephemeral0.1`); a device name with it is no
        // device name (cloud-init's filter), so nothing.
        assert_eq!(devices.resolve("vdc.1"), None);
        assert_eq!(devices.resolve("sdz"), None);
        assert_eq!(
            devices.resolve("nas:/export").as_deref(),
            Some("nas:/export")
        );
        // No device is labelled ephemeral0 here.
        assert_eq!(devices.resolve("ephemeral0"), None);
        assert_eq!(devices.resolve("swap"), None);
        assert_eq!(devices.disk("ephemeral0"), None);

        // `device_aliases`: `data.1` is the first partition of the alias's device.
        let aliases = [("data".to_owned(), "/dev/vdc".to_owned())].into();
        let devices = Devices::new(&root).with_aliases(aliases);
        assert_eq!(devices.resolve("data.1").as_deref(), Some("/dev/vdc1"));
        assert_eq!(devices.resolve("data").as_deref(), Some("/dev/vdc1"));
        assert_eq!(devices.resolve("data.2"), None);
        assert_eq!(devices.disk("data").as_deref(), Some("/dev/vdc"));
        assert_eq!(devices.disk("vdb").as_deref(), Some("/dev/vdb"));
        assert_eq!(devices.disk("/dev/sdz").as_deref(), Some("/dev/sdz"));
    }
}
