//! What a disk holds, asked of util-linux: `lsblk` for the device and its partitions, `blkid`
//! for each one's file system (probed, not read from udev's database as lsblk reads it: right
//! after mkfs, or where no udev runs, that still says nothing), `sfdisk --json` for its
//! partition table, `blockdev` for its size.

use serde_json::Value;

use crate::apply::tool::{self, ToolError};

use super::error::DiskError;

/// One block device as lsblk lists it, with blkid's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Its path (`/dev/vdb1`).
    pub name: String,
    /// `disk`, `part`, `loop`, `crypt`, …
    pub kind: String,
    /// The file system or other signature on it (`ext4`, `swap`), if any.
    pub fstype: Option<String>,
    pub label: Option<String>,
}

/// A block device as lsblk lists it: its path and type.
struct Listed {
    name: String,
    kind: String,
}

/// `device` first, then what it holds (its partitions), as `lsblk --list` orders them, each
/// with the file system blkid finds on it.
pub fn blocks(device: &str) -> Result<Vec<Block>, DiskError> {
    listed(device)?
        .into_iter()
        .map(|listed| {
            let (fstype, label) = match file_system(&listed.name)? {
                Some((fstype, label)) => (Some(fstype), label),
                None => (None, None),
            };
            Ok(Block {
                name: listed.name,
                kind: listed.kind,
                fstype,
                label,
            })
        })
        .collect()
}

fn listed(device: &str) -> Result<Vec<Listed>, DiskError> {
    let out = required(
        "lsblk",
        &[
            "--json",
            "--list",
            "--paths",
            "--output",
            "NAME,TYPE",
            device,
        ],
    )?;
    let bad = || DiskError::Config(format!("cannot read lsblk's listing of {device}"));
    let listing: Value = serde_json::from_slice(&out).map_err(|_| bad())?;
    let devices = listing["blockdevices"].as_array().ok_or_else(bad)?;
    devices
        .iter()
        .map(|d| {
            Some(Listed {
                name: d["name"].as_str()?.to_owned(),
                kind: d["type"].as_str()?.to_owned(),
            })
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)
}

/// lsblk's type of `device` alone (`disk`, `part`, `loop`).
pub fn kind(device: &str) -> Result<String, DiskError> {
    listed(device)?
        .into_iter()
        .next()
        .map(|listed| listed.kind)
        .ok_or_else(|| DiskError::Config(format!("lsblk lists nothing for {device}")))
}

/// The file system on `device` as blkid probes it (`-p`: the device itself, no cache):
/// `(type, label)`, `None` when it finds none. A partition table is no file system.
pub fn file_system(device: &str) -> Result<Option<(String, Option<String>)>, DiskError> {
    let out = match tool::output("blkid", &["-p", "-o", "export", device]) {
        Ok(Some(out)) => out,
        Ok(None) => return Err(missing("blkid")),
        // blkid's exit status 2: nothing found.
        Err(ToolError::Failed { status, .. }) if status.code() == Some(2) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let text = String::from_utf8_lossy(&out);
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(unescape)
    };
    Ok(value("TYPE").map(|kind| (kind, value("LABEL"))))
}

/// blkid's export format puts a backslash before the characters a shell would take apart.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// A partition table as sfdisk reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `dos` or `gpt`.
    pub label: String,
    /// Each partition's type: a hex id on `dos` (`83`), a type GUID on `gpt`.
    pub types: Vec<String>,
}

/// The partition table of `device`; `None` when it has none sfdisk recognizes.
pub fn table(device: &str) -> Result<Option<Table>, DiskError> {
    let out = match tool::output("sfdisk", &["--json", device]) {
        Ok(Some(out)) => out,
        Ok(None) => return Err(missing("sfdisk")),
        // "does not contain a recognized partition table"
        Err(ToolError::Failed { status, said, .. })
            if status.code() == Some(1) && said.contains("partition table") =>
        {
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    let bad = || DiskError::Config(format!("cannot read sfdisk's dump of {device}"));
    let dump: Value = serde_json::from_slice(&out).map_err(|_| bad())?;
    let table = &dump["partitiontable"];
    let types = match table.get("partitions") {
        None => Vec::new(),
        Some(list) => list
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|p| p["type"].as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
    };
    Ok(Some(Table {
        label: table["label"].as_str().ok_or_else(bad)?.to_owned(),
        types,
    }))
}

/// The size of `device` in its logical sectors.
pub fn sectors(device: &str) -> Result<u64, DiskError> {
    let out = required("blockdev", &["--getsize64", "--getss", device])?;
    let text = String::from_utf8_lossy(&out);
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(bytes)), Some(Ok(sector))) if sector > 0 => Ok(bytes / sector),
        _ => Err(DiskError::Config(format!(
            "blockdev --getsize64 --getss {device} said {text:?}, not two sizes"
        ))),
    }
}

/// `tool`'s output; a missing tool is an error naming its package.
pub fn required(tool_name: &'static str, args: &[&str]) -> Result<Vec<u8>, DiskError> {
    tool::output(tool_name, args)?.ok_or_else(|| missing(tool_name))
}

/// The error for a tool the image lacks.
pub fn missing(tool_name: &'static str) -> DiskError {
    let package = match tool_name {
        "sfdisk" => "fdisk",
        "blkid" | "wipefs" | "lsblk" | "blockdev" => "util-linux",
        _ => "the package that has it",
    };
    DiskError::Missing {
        tool: tool_name,
        package,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkids_escapes_are_undone() {
        assert_eq!(unescape(r"my\ data"), "my data");
        assert_eq!(unescape(r"a\\b"), r"a\b");
        assert_eq!(unescape("plain"), "plain");
    }
}
