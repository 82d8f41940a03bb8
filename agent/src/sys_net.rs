//! The system's network interfaces as `<root>/sys/class/net` lists them: their names and their
//! attribute files (`address`, `flags`, `mtu`, `carrier`, …). Read by the fallback NIC of a
//! link-local metadata URL (`source/fallback_nic.rs`) and by the network apply
//! (`apply/network/links.rs`).

use std::path::Path;

use crate::root::Root;

/// Where the system lists its interfaces, under the root.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// Most interfaces read.
pub const MAX_SYSTEM_INTERFACES: usize = 256;

/// The interfaces' names, in the directory's order: at most [`MAX_SYSTEM_INTERFACES`], names
/// that are not UTF-8 left out, none when the directory cannot be read.
pub fn interface_names(root: &Root) -> Vec<String> {
    root.entries_or_none(SYS_CLASS_NET)
        .into_iter()
        .take(MAX_SYSTEM_INTERFACES)
        .filter_map(|(name, _)| name.to_str().map(str::to_owned))
        .collect()
}

/// The attribute file `file` of interface `name`, trimmed; `None` when it is missing or cannot
/// be read (some cannot while the interface is down: EINVAL).
pub fn attribute(root: &Root, name: &str, file: &str) -> Option<String> {
    let path = Path::new(SYS_CLASS_NET).join(name).join(file);
    root.read_optional_string(&path)
        .ok()
        .flatten()
        .map(|text| text.trim().to_owned())
}

/// Whether interface `name` has the entry `entry` (`bridge`, `bonding`, …).
pub fn has_entry(root: &Root, name: &str, entry: &str) -> bool {
    root.exists(Path::new(SYS_CLASS_NET).join(name).join(entry))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn at_most_max_system_interfaces_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=MAX_SYSTEM_INTERFACES {
            let path = dir.path().join("sys/class/net").join(format!("eth{i}"));
            fs::create_dir_all(&path).unwrap();
            fs::write(path.join("mtu"), " 1500\n").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let names = interface_names(&root);
        assert_eq!(names.len(), MAX_SYSTEM_INTERFACES);
        assert_eq!(attribute(&root, &names[0], "mtu").as_deref(), Some("1500"));
        assert!(has_entry(&root, &names[0], "mtu"));
        assert!(!has_entry(&root, &names[0], "bridge"));
    }

    #[test]
    fn without_the_directory_there_are_no_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(interface_names(&root).is_empty());
        assert_eq!(attribute(&root, "eth0", "mtu"), None);
    }
}
