//! The disk steps of the init stage: the root partition and file system grown, disks
//! partitioned and formatted, file systems mounted.

use std::path::Path;

use super::instance::Instance;
use crate::apply::mounts::Devices;
use crate::apply::{disk_setup, growpart, mounts, resizefs};
use crate::log::chain;
use crate::state::result::{Done, count};

/// Every boot, on the host root: the partitions of `growpart.devices` (default `/`) grown into
/// the free space after them, unless `growpart.mode` is off or `/etc/growroot-disabled` exists.
pub(super) fn growpart(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    let config = i.config.growpart.clone().unwrap_or_default();
    match growpart::enabled(config.mode.as_ref()) {
        Ok(true) => {}
        Ok(false) => return Done::skipped("growpart.mode is off"),
        Err(err) => return Done::error(err),
    }
    if !i.root.is_host() {
        return Done::skipped("root is not /: its disks are left alone");
    }
    if !config.ignore_growroot_disabled.unwrap_or(false)
        && i.root.exists(growpart::GROWROOT_DISABLED)
    {
        return Done::skipped(format!("{} exists", growpart::GROWROOT_DISABLED));
    }
    let devices = config.devices.unwrap_or_else(|| {
        growpart::DEFAULT_DEVICES
            .iter()
            .map(|d| (*d).to_owned())
            .collect()
    });
    let mut grew = false;
    let mut said = Vec::new();
    let mut errors = Vec::new();
    for device in &devices {
        match growpart::grow(device) {
            Ok(growth) => {
                grew |= matches!(growth, growpart::Growth::Grew { .. });
                said.push(format!("{device}: {}", growth.describe()));
            }
            Err(err) => errors.push(format!("{device}: {}", chain(&err))),
        }
    }
    if !errors.is_empty() {
        errors.extend(said);
        Done::error(errors.join("; "))
    } else if grew {
        Done::ok_with(said.join("; "))
    } else {
        Done::skipped(said.join("; "))
    }
}

/// Every boot, on the host root: the root file system grown to its partition (`resize_rootfs`,
/// default true).
pub(super) fn resizefs(i: &Instance<'_>, _: &mut Vec<String>) -> Done {
    if !resizefs::wanted(i.config.resize_rootfs.as_ref()) {
        return Done::skipped("resize_rootfs is false");
    }
    if !i.root.is_host() {
        return Done::skipped("root is not /: its file system is left alone");
    }
    match resizefs::resize(
        Path::new("/"),
        Path::new(growpart::partition::SYS_DEV_BLOCK),
        Path::new(growpart::partition::DEV),
    ) {
        Ok(resized @ resizefs::Resized::Grew { .. }) => Done::ok_with(resized.describe()),
        Ok(resized) => Done::skipped(resized.describe()),
        Err(err) => Done::error(chain(&err)),
    }
}

/// `disk_setup`, `fs_setup` and `device_aliases` (cloud-init's `cc_disk_setup`, once per
/// instance, host root only): the disks partitioned, then the file systems made, each entry on
/// its own (a failed one is in the step's error, the others are still done).
pub(super) fn disk_setup(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let config = &i.config;
    if config.disk_setup.is_none() && config.fs_setup.is_none() {
        return Done::skipped("no disk_setup or fs_setup");
    }
    if !i.root.is_host() {
        return Done::skipped("root is not /: its disks are left alone");
    }
    let parsed = (|| {
        let aliases = mounts::aliases(config.device_aliases.as_ref())?;
        let disks = match &config.disk_setup {
            Some(value) => disk_setup::disks(value, warnings)?,
            None => Vec::new(),
        };
        let file_systems = match &config.fs_setup {
            Some(value) => disk_setup::file_systems(value, warnings)?,
            None => Vec::new(),
        };
        Ok::<_, String>((aliases, disks, file_systems))
    })();
    let (aliases, disks, file_systems) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return Done::error(err),
    };
    let devices = Devices::new(i.root).with_aliases(aliases);
    let mut said = Vec::new();
    let mut errors = Vec::new();
    for disk in &disks {
        let Some(device) = devices.disk(&disk.name) else {
            errors.push(format!("disk_setup: no device is {} here", disk.name));
            continue;
        };
        match disk_setup::partition(&device, disk) {
            Ok(done) => said.push(format!("{device}: {}", partitioned(&done, disk))),
            Err(err) => errors.push(format!("disk_setup: {device}: {}", chain(&err))),
        }
    }
    for fs in &file_systems {
        let Some(device) = devices.disk(&fs.device) else {
            errors.push(format!("fs_setup: no device is {} here", fs.device));
            continue;
        };
        let what = fs.filesystem.as_deref().unwrap_or("a file system");
        match disk_setup::make(&device, fs) {
            Ok(disk_setup::Made::Made(on)) => said.push(format!("{what} made on {on}")),
            Ok(disk_setup::Made::Found(on)) => said.push(format!("{what} already on {on}")),
            Ok(disk_setup::Made::NoRoom) => said.push(format!(
                "{what} not made: every partition of {device} has a file system"
            )),
            Ok(disk_setup::Made::NoTool(fs_type)) => {
                warnings.push(format!(
                    "fs_setup: no mkfs.{fs_type} or mk{fs_type} here: {fs_type} not made on {device}"
                ));
            }
            Err(err) => errors.push(format!("fs_setup: {device}: {}", chain(&err))),
        }
    }
    Done::with_errors(errors, said)
}

/// What became of a disk, for the step's message.
fn partitioned(done: &disk_setup::Partitioned, disk: &disk_setup::DiskRequest) -> String {
    use disk_setup::Partitioned;
    let table = match disk.table {
        disk_setup::TableType::Mbr => "MBR",
        disk_setup::TableType::Gpt => "GPT",
    };
    match done {
        Partitioned::NotAsked => "layout is false: left alone".to_owned(),
        Partitioned::Matches => format!("its {table} table already has the layout"),
        Partitioned::InUse(held) => {
            format!("left alone: {held} (overwrite: true replaces it)")
        }
        Partitioned::Made(n) => format!("{table} table with {}", count(*n, "partition")),
        Partitioned::Removed => "its file systems and partition table wiped".to_owned(),
    }
}

/// The `mounts` step (cloud-init's `cc_mounts`, once per instance): fstab entries of
/// `mounts` and the defaults (`ephemeral0` on `/mnt`, a swap area), a `swap` file, then
/// `swapon -a` and `mount -a` on the host root.
pub(super) fn mounts(i: &Instance<'_>, warnings: &mut Vec<String>) -> Done {
    let config = mounts::Config {
        mounts: i.config.mounts.as_ref(),
        default_fields: i.config.mount_default_fields.as_ref(),
        swap: i.config.swap.as_ref(),
        device_aliases: i.config.device_aliases.as_ref(),
    };
    match mounts::apply(i.root, config, warnings) {
        Ok(None) => Done::skipped("no mounts, no swap and no ephemeral0 or swap device"),
        Ok(Some(applied)) => {
            let mut message = format!(
                "{}: {} added, {} of an earlier instance dropped",
                mounts::FSTAB,
                count(applied.added.len(), "line"),
                applied.dropped
            );
            for line in &applied.added {
                message.push_str(&format!("; {}", line.replace('\t', " ")));
            }
            if !applied.ran.is_empty() {
                message.push_str(&format!("; ran {}", applied.ran.join(", ")));
            }
            if applied.failed.is_empty() {
                Done::ok_with(message)
            } else {
                Done::error(format!("{}; {message}", applied.failed.join("; ")))
            }
        }
        Err(err) => Done::error(chain(&err)),
    }
}
