//! `disk_setup`, `fs_setup` and `device_aliases` (cloud-init's `cc_disk_setup`, once per
//! instance, after the root is grown and before `mounts`): disks partitioned (an MBR or GPT
//! table, a partition over the whole disk or shares of it, or everything wiped with
//! `remove`), then file systems made on them with `mkfs.<type>` (`mkswap` for swap), each as
//! cloud-init decides it:
//! - a disk is partitioned unless its table already has the layout, and only when it holds no
//!   partition and no file system, unless `overwrite: true`;
//! - a file system is made on partition N (`partition: N`, or `device: name.N`) unless one of
//!   the same type and label is there (or always with `overwrite: true`); on the first
//!   partition without one (`auto`: unless a partition already has the type and label; `any`,
//!   the default: unless one has the type, or the first with `replace_fs`'s type is taken);
//!   on the disk itself (`none`, or `partition:` with no value, as cloud-init reads it: unless
//!   it has the type and label already);
//! - devices are paths, `device_aliases`' names, or the metadata's names (`ephemeral0`: nova's
//!   ephemeral disk, found by its label).
//!
//! The tools are util-linux's and e2fsprogs' (`lsblk`, `blkid`, `sfdisk`, `wipefs`,
//! `blockdev`, `mkfs.*`): sfdisk writes GPT tables too (cloud-init uses sgdisk there; the
//! same partitions, sgdisk's type codes read as their GUIDs). Host root only.

mod error;
mod layout;
pub mod probe;

use std::path::Path;

use serde_json::{Map, Value};

use super::mounts::split_partition;
use super::tool;
pub use error::DiskError;
pub use layout::{GPT_TYPES, Layout, MAX_GPT_PARTITIONS, MAX_MBR_PARTITIONS, Part, TableType};
use probe::Block;

/// Most `disk_setup` disks and `fs_setup` entries read each (cloud-init has no bound).
pub const MAX_ENTRIES: usize = 64;

/// One disk of `disk_setup`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRequest {
    /// The key as written (a path, an alias or a name of the metadata).
    pub name: String,
    pub table: TableType,
    pub layout: Layout,
    pub overwrite: bool,
}

/// Where in a device `fs_setup` puts its file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The first partition with no file system, unless one has the type and label.
    Auto,
    /// The same, unless one has the type (whatever its label); the default.
    Any,
    /// The device itself.
    Whole,
    /// Partition N.
    Number(u32),
}

/// One entry of `fs_setup`.
#[derive(Debug, Clone, PartialEq)]
pub struct FsRequest {
    /// `device` as written (`ephemeral0`, `my_alias.1`, `/dev/vdb`).
    pub device: String,
    pub placement: Placement,
    pub label: Option<String>,
    pub filesystem: Option<String>,
    pub overwrite: bool,
    pub replace_fs: Option<String>,
    pub extra_opts: Vec<String>,
    /// `cmd`: a shell command, `%(label)s`, `%(filesystem)s`, `%(device)s` filled in.
    pub cmd: Option<String>,
}

fn string(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{what} {other} is not a string")),
    }
}

fn flag(map: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("{key} {other} is neither true nor false")),
    }
}

/// `disk_setup`: a map of devices to their tables; an entry that is no map is a warning, as in
/// cloud-init.
pub fn disks(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<DiskRequest>, String> {
    let Value::Object(map) = value else {
        return Err(format!("disk_setup {value} is not a map of devices"));
    };
    if map.len() > MAX_ENTRIES {
        return Err(format!(
            "disk_setup names {} disks, more than {MAX_ENTRIES}",
            map.len()
        ));
    }
    let mut disks = Vec::new();
    for (name, definition) in map {
        let Value::Object(definition) = definition else {
            warnings.push(format!(
                "disk_setup: {name}: {definition} is not a map, skipped"
            ));
            continue;
        };
        let request = (|| {
            let table = TableType::parse(definition.get("table_type"))?;
            Ok::<_, String>(DiskRequest {
                name: name.clone(),
                table,
                layout: Layout::parse(definition.get("layout"), table)?,
                overwrite: flag(definition, "overwrite")?,
            })
        })()
        .map_err(|err| format!("disk_setup: {name}: {err}"))?;
        disks.push(request);
    }
    Ok(disks)
}

/// `fs_setup`: a list of file systems; an entry that is no map is a warning, as in cloud-init.
pub fn file_systems(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<FsRequest>, String> {
    let Value::Array(list) = value else {
        return Err(format!("fs_setup {value} is not a list of file systems"));
    };
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "fs_setup has {} entries, more than {MAX_ENTRIES}",
            list.len()
        ));
    }
    let mut requests = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let Value::Object(map) = entry else {
            warnings.push(format!(
                "fs_setup entry {}: {entry} is not a map, skipped",
                i + 1
            ));
            continue;
        };
        let request = file_system(map).map_err(|err| format!("fs_setup entry {}: {err}", i + 1))?;
        requests.push(request);
    }
    Ok(requests)
}

fn file_system(map: &Map<String, Value>) -> Result<FsRequest, String> {
    let optional = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => string(value, key).map(Some),
        }
    };
    let device = optional("device")?.ok_or("it names no device")?;
    // cloud-init reads `str(fs_cfg.get("partition", "any"))`: absent is `any`, but a key
    // given with no value (`partition:`) is `"None"`, which it makes on the whole device.
    let mut placement = match map.get("partition") {
        None => Placement::Any,
        Some(Value::Null) => Placement::Whole,
        Some(value) => placement(&string(value, "partition")?)?,
    };
    // `name.N`: N is the partition, whatever `partition` says (cloud-init's warning too).
    let (device, number) = match split_number(&device) {
        Some((device, number)) => (device.to_owned(), Some(number)),
        None => (device, None),
    };
    if let Some(number) = number {
        placement = Placement::Number(number);
    }
    let extra_opts = match map.get("extra_opts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| string(v, "extra_opts"))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("extra_opts {other} is not a list of options")),
    };
    let request = FsRequest {
        device,
        placement,
        label: optional("label")?,
        filesystem: optional("filesystem")?,
        overwrite: flag(map, "overwrite")?,
        replace_fs: optional("replace_fs")?,
        extra_opts,
        cmd: optional("cmd")?,
    };
    if let Some(fs) = &request.filesystem
        && (fs.is_empty()
            || !fs
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(format!(
            "filesystem {fs:?} is not a file system type (ext4, xfs, swap, …)"
        ));
    }
    if request.filesystem.is_none() && request.cmd.is_none() {
        return Err("it names no filesystem and no cmd: no way to make one".to_owned());
    }
    Ok(request)
}

fn placement(given: &str) -> Result<Placement, String> {
    match given.to_ascii_lowercase().as_str() {
        "auto" => Ok(Placement::Auto),
        "any" => Ok(Placement::Any),
        "none" | "" => Ok(Placement::Whole),
        number => number
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(Placement::Number)
            .ok_or_else(|| format!("partition {given:?} is not auto, any, none or a number")),
    }
}

/// `ephemeral0.1` → (`ephemeral0`, 1), as `mounts` splits the name; no partition 0.
pub fn split_number(name: &str) -> Option<(&str, u32)> {
    let (device, Some(number)) = split_partition(name) else {
        return None;
    };
    Some((device, number.parse().ok().filter(|n| *n > 0)?))
}

/// The node of partition `number` of `disk`: `/dev/vdb` → `/dev/vdb1`, and with a `p` after
/// a name ending in a digit, as the kernel names them (`/dev/nvme0n1p1`, `/dev/loop0p1`).
pub fn partition_node(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// `device` once it exists (after `udevadm settle` when it did not yet), its symlinks
/// resolved (`/dev/disk/by-label/…` → `/dev/vdb`).
pub fn settled(device: &str) -> Result<String, DiskError> {
    if !Path::new(device).exists() {
        settle()?;
    }
    let real = std::fs::canonicalize(device).map_err(|err| {
        DiskError::Config(format!(
            "{device} does not exist ({err}), not even after udevadm settle"
        ))
    })?;
    Ok(real.to_string_lossy().into_owned())
}

/// Waits for udev to make the nodes and links of new partitions, where udev runs.
pub fn settle() -> Result<(), DiskError> {
    if Path::new("/run/udev/control").exists() {
        tool::run("udevadm", &["settle"])?;
    }
    Ok(())
}

/// What became of one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioned {
    /// Its layout is `false`: left alone.
    NotAsked,
    /// Its table already has the layout.
    Matches,
    /// It holds partitions or a file system and `overwrite` is not set: left alone.
    InUse(String),
    /// The table written with this many partitions.
    Made(usize),
    /// Its file systems and table wiped (`layout: remove`).
    Removed,
}

/// `request` applied to the disk at `device` (a path).
pub fn partition(device: &str, request: &DiskRequest) -> Result<Partitioned, DiskError> {
    if request.layout == Layout::Keep {
        return Ok(Partitioned::NotAsked);
    }
    let device = settled(device)?;
    let kind = probe::kind(&device)?;
    if kind != "disk" && kind != "loop" {
        return Err(DiskError::Config(format!(
            "{device} is no disk (lsblk says {kind}): only a whole disk is partitioned"
        )));
    }
    if request.layout == Layout::Remove {
        wipe(&device)?;
        return Ok(Partitioned::Removed);
    }
    let table = probe::table(&device)?;
    if request.layout.matches(request.table, table.as_ref()) {
        return Ok(Partitioned::Matches);
    }
    if !request.overwrite {
        let blocks = probe::blocks(&device)?;
        let held = blocks.len() > 1 || blocks.first().is_some_and(|b| b.fstype.is_some());
        if held {
            return Ok(Partitioned::InUse(describe(&blocks)));
        }
    }
    let sectors = probe::sectors(&device)?;
    let script = request.layout.script(request.table, sectors);
    // Old signatures go, on the disk and where the new partitions start: a file system of an
    // earlier table is never taken for one made here.
    tool::run_with_input(
        "sfdisk",
        &[
            "--quiet",
            "--force",
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
            &device,
        ],
        script.as_bytes(),
    )?
    .ok_or_else(|| probe::missing("sfdisk"))?;
    // sfdisk asks the kernel to read the new table; where that leaves partitions out (a loop
    // device in a container), partx adds them one by one. Its failure leaves sfdisk's reading.
    let _ = tool::run("partx", &["--update", &device]);
    settle()?;
    Ok(Partitioned::Made(match &request.layout {
        Layout::Parts(parts) => parts.len(),
        _ => 1,
    }))
}

/// What a disk holds, for the message of one left alone.
fn describe(blocks: &[Block]) -> String {
    let parts = blocks.len().saturating_sub(1);
    match blocks.first().and_then(|b| b.fstype.as_deref()) {
        Some(fs) if parts == 0 => format!("it holds {fs}"),
        _ => format!(
            "it holds {}",
            crate::state::result::count(parts, "partition")
        ),
    }
}

/// `layout: remove`: every partition's signatures wiped, then the table's.
fn wipe(device: &str) -> Result<(), DiskError> {
    for block in probe::blocks(device)?.iter().skip(1) {
        if block.kind == "part" {
            tool::run("wipefs", &["--all", &block.name])?
                .ok_or_else(|| probe::missing("wipefs"))?;
        }
    }
    tool::run("wipefs", &["--all", device])?.ok_or_else(|| probe::missing("wipefs"))?;
    // wipefs tells the kernel the table is gone; sfdisk's view of it is the check.
    if probe::table(device)?.is_some() {
        return Err(DiskError::Config(format!(
            "{device} still has a partition table after wipefs --all"
        )));
    }
    settle()
}

/// What became of one `fs_setup` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// Made on this device.
    Made(String),
    /// One with the type (and label) is there already.
    Found(String),
    /// No partition of the device is free for it.
    NoRoom,
    /// Neither `mkfs.<type>` nor `mk<type>` is installed (a warning in cloud-init).
    NoTool(String),
}

/// `request` applied to `device` (a path: its alias or metadata name resolved).
pub fn make(device: &str, request: &FsRequest) -> Result<Made, DiskError> {
    let device = settled(device)?;
    let fs_type = request.filesystem.as_deref();
    let label = request.label.as_deref();
    // The target, and whether it is a partition when that is known already.
    let (target, partition) = match request.placement {
        Placement::Number(_) | Placement::Whole => {
            let (target, partition) = match request.placement {
                Placement::Number(n) => (partition_node(&device, n), Some(true)),
                _ => (device.clone(), None),
            };
            if !Path::new(&target).exists() {
                return Err(DiskError::Config(format!(
                    "{target} does not exist: partition {device} first (disk_setup)"
                )));
            }
            if let Some((found, found_label)) = probe::file_system(&target)?
                && Some(found.as_str()) == fs_type
                && found_label.as_deref() == label
                && !request.overwrite
            {
                return Ok(Made::Found(target));
            }
            (target, partition)
        }
        Placement::Auto | Placement::Any => {
            let by_label = request.placement == Placement::Auto;
            match choose(&probe::blocks(&device)?, &device, request, by_label) {
                Choice::Reuse(found) => return Ok(Made::Found(found)),
                Choice::Make { target, partition } => (target, Some(partition)),
                Choice::None => return Ok(Made::NoRoom),
            }
        }
    };
    if let Some(cmd) = &request.cmd {
        let line = fill(cmd, label, fs_type, &target);
        tool::run("sh", &["-c", &line])?.ok_or_else(|| probe::missing("sh"))?;
        return Ok(Made::Made(target));
    }
    let fs_type = fs_type.unwrap_or_default();
    let Some(mkfs) = [format!("mkfs.{fs_type}"), format!("mk{fs_type}")]
        .into_iter()
        .find(|name| tool::find(name).is_some())
    else {
        return Ok(Made::NoTool(fs_type.to_owned()));
    };
    let mut args: Vec<&str> = Vec::new();
    if let Some(label) = label {
        args.extend(["-L", label]);
    }
    let partition = match partition {
        Some(known) => known,
        None => probe::kind(&target)? == "part",
    };
    if (request.overwrite || !partition)
        && let Some(force) = force_flag(fs_type)
    {
        args.push(force);
    }
    args.extend(request.extra_opts.iter().map(String::as_str));
    args.push(&target);
    tool::run(&mkfs, &args)?.ok_or(DiskError::Missing {
        tool: "mkfs",
        package: "the file system's tools",
    })?;
    Ok(Made::Made(target))
}

/// Where `auto`/`any` put a file system.
enum Choice {
    Reuse(String),
    /// On `target`, a partition or (`partition: false`) the whole disk, as lsblk listed it.
    Make {
        target: String,
        partition: bool,
    },
    None,
}

/// cloud-init's `find_device_node`: the first block (the disk, then its partitions) that
/// already has the file system (with its label for `auto`) is reused; with `any`, the first
/// with `replace_fs`'s type is taken; else the first partition with no file system; else the
/// disk itself when it holds neither partitions nor a file system.
fn choose(blocks: &[Block], device: &str, request: &FsRequest, by_label: bool) -> Choice {
    let mut disk_used = false;
    for block in blocks {
        if !by_label
            && request.replace_fs.is_some()
            && block.fstype.as_deref() == request.replace_fs.as_deref()
        {
            return Choice::Make {
                target: block.name.clone(),
                partition: block.kind == "part",
            };
        }
        if block.fstype.is_some()
            && block.fstype == request.filesystem
            && (!by_label || block.label == request.label)
        {
            return Choice::Reuse(block.name.clone());
        }
        if block.kind == "part" {
            disk_used = true;
            if block.fstype.is_none() {
                return Choice::Make {
                    target: block.name.clone(),
                    partition: true,
                };
            }
        } else if block.fstype.is_some() {
            disk_used = true;
        }
    }
    if disk_used {
        Choice::None
    } else {
        Choice::Make {
            target: device.to_owned(),
            partition: blocks.first().is_some_and(|disk| disk.kind == "part"),
        }
    }
}

/// mkfs's flag to make a file system over whatever is there.
fn force_flag(fs_type: &str) -> Option<&'static str> {
    if fs_type.to_ascii_lowercase().contains("ext") {
        return Some("-F");
    }
    match fs_type {
        "btrfs" | "xfs" | "reiserfs" | "swap" => Some("-f"),
        _ => None,
    }
}

/// `cmd` with cloud-init's three `%(name)s` fields filled in (an absent one is `None`, as
/// Python prints it).
fn fill(cmd: &str, label: Option<&str>, fs_type: Option<&str>, device: &str) -> String {
    cmd.replace("%(label)s", label.unwrap_or("None"))
        .replace("%(filesystem)s", fs_type.unwrap_or("None"))
        .replace("%(device)s", device)
}

#[cfg(test)]
mod tests;
