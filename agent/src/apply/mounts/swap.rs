//! `swap: {filename, size, maxsize}`: a swap file made as cloud-init's `cc_mounts` makes it
//! (`fallocate`, else `dd`; mode 0600; `mkswap`), its fstab line added by the caller.

use std::path::Path;

use serde_json::{Map, Value};

use crate::apply::tool::{self, ToolError};
use crate::root::Root;

/// cloud-init's default swap file.
pub const DEFAULT_FILENAME: &str = "/swap.img";
/// The largest swap file made (cloud-init has no bound; 64 GiB guards a typo such as `64T`).
pub const MAX_SWAP_BYTES: u64 = 64 << 30;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// How large the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// cloud-init's suggestion from the memory and the free space ([`suggested`]).
    Auto,
}

/// A `swap` request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRequest {
    pub filename: String,
    pub size: Size,
    pub maxsize: Option<u64>,
}

/// Reads `swap`; `None` when it asks for nothing (no size, size 0, or no file name).
pub fn parse(map: &Map<String, Value>) -> Result<Option<SwapRequest>, String> {
    let filename = match map.get("filename") {
        None | Some(Value::Null) => DEFAULT_FILENAME.to_owned(),
        Some(Value::String(name)) => name.clone(),
        Some(other) => return Err(format!("swap.filename must be a path (found: {other})")),
    };
    let size = match map.get("size") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("auto") => Size::Auto,
        Some(value) => Size::Bytes(bytes(value).map_err(|e| format!("swap.size: {e}"))?),
    };
    let maxsize = match map.get("maxsize") {
        None | Some(Value::Null) => None,
        Some(value) => Some(bytes(value).map_err(|e| format!("swap.maxsize: {e}"))?),
    };
    if size == Size::Bytes(0) || filename.is_empty() {
        return Ok(None);
    }
    if !filename.starts_with('/') {
        return Err(format!(
            "swap.filename must be an absolute path (found: '{filename}')"
        ));
    }
    Ok(Some(SwapRequest {
        filename,
        size,
        maxsize,
    }))
}

/// A size in bytes: a number, or cloud-init's `human2bytes` text (`512M`, `1G`, `2GiB`, `1.5G`;
/// the units are powers of 1024).
pub fn bytes(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| format!("'{n}' cannot be negative")),
        Value::String(text) => human_to_bytes(text),
        other => Err(format!("'{other}' is not a size")),
    }
}

fn human_to_bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not valid input");
    let mut size = text.trim();
    if let Some(rest) = size.strip_suffix("iB") {
        size = rest;
    } else if let Some(rest) = size.strip_suffix('B') {
        size = rest;
    }
    let (number, multiplier) = match size.chars().last() {
        Some('K') => (&size[..size.len() - 1], 1u64 << 10),
        Some('M') => (&size[..size.len() - 1], MIB),
        Some('G') => (&size[..size.len() - 1], GIB),
        Some('T') => (&size[..size.len() - 1], 1u64 << 40),
        Some('B') => (&size[..size.len() - 1], 1),
        _ => (size, 1),
    };
    let number: f64 = number.trim().parse().map_err(|_| bad())?;
    if number < 0.0 || !number.is_finite() {
        return Err(format!("'{text}': cannot be negative"));
    }
    Ok((number * multiplier as f64) as u64)
}

/// cloud-init's `suggested_swapsize`: the memory up to 4 GiB, 4 GiB up to 16 GiB of memory,
/// then √(memory in GiB) GiB; at most `maxsize`, else the smaller of a quarter of the free
/// space and twice the memory (and never over 90 % of the free space).
pub fn suggested(memory: u64, maxsize: Option<u64>, free: u64) -> u64 {
    let max = match maxsize {
        None => (free / 4).min(memory * 2),
        Some(max) if (max as f64) > free as f64 * 0.9 => (free as f64 * 0.9) as u64,
        Some(max) => max,
    };
    let min = if memory < 4 * GIB {
        memory
    } else if memory < 16 * GIB {
        4 * GIB
    } else {
        ((memory as f64 / GIB as f64).sqrt().round() as u64) * GIB
    };
    min.min(max)
}

/// Failures making the swap file.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("swap file {path}: {size} bytes is over the {max} bytes metaboot makes")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("swap file {path}: size auto needs MemTotal in /proc/meminfo")]
    NoMemory { path: String },
    #[error("swap file {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("swap file {path}: {source}")]
    Tool {
        path: String,
        #[source]
        source: ToolError,
    },
    #[error("swap file {path}: {tool} is not installed")]
    Missing { path: String, tool: &'static str },
}

/// Whether `filename` is an active swap area (`/proc/swaps`), or cannot be told (no
/// `/proc/swaps`): then an existing file is left as it is, as cloud-init does.
fn in_use(root: &Root, filename: &str) -> bool {
    match root.read_optional_string("/proc/swaps") {
        Ok(Some(swaps)) => swaps
            .lines()
            .any(|line| line.split_whitespace().next() == Some(filename)),
        _ => true,
    }
}

/// Makes the swap file of `request` unless it exists and is in use (or cannot be told);
/// returns its name (for the fstab line), or `None` when its size comes out 0.
pub fn make(root: &Root, request: &SwapRequest) -> Result<Option<String>, SwapError> {
    let path = request.filename.clone();
    let host = root.host_path(&request.filename);
    if host.exists() && in_use(root, &request.filename) {
        tracing::info!(file = %path, "swap file exists and is in use: kept");
        return Ok(Some(path));
    }
    let dir = host.parent().unwrap_or(Path::new("/")).to_owned();
    std::fs::create_dir_all(&dir).map_err(|source| SwapError::Io {
        path: path.clone(),
        source,
    })?;
    let size = match request.size {
        Size::Bytes(bytes) => bytes,
        Size::Auto => {
            let memory = memory_total(root).ok_or(SwapError::NoMemory { path: path.clone() })?;
            let stat = nix::sys::statvfs::statvfs(&dir).map_err(|e| SwapError::Io {
                path: path.clone(),
                source: e.into(),
            })?;
            let free = stat.fragment_size() * stat.blocks_free();
            suggested(memory, request.maxsize, free)
        }
    };
    let mib = size / MIB;
    if mib == 0 {
        tracing::info!(file = %path, "not making a swap file: its size comes out 0 MiB");
        return Ok(None);
    }
    if size > MAX_SWAP_BYTES {
        return Err(SwapError::TooLarge {
            path,
            size,
            max: MAX_SWAP_BYTES,
        });
    }
    let shown = host.to_string_lossy().into_owned();
    let tool_error = |source| SwapError::Tool {
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&host);
    let made = tool::run("fallocate", &["-l", &format!("{mib}M"), &shown]);
    if !matches!(made, Ok(Some(()))) {
        let _ = std::fs::remove_file(&host);
        let count = format!("count={mib}");
        let of = format!("of={shown}");
        match tool::run("dd", &["if=/dev/zero", &of, "bs=1M", &count]) {
            Ok(Some(())) => {}
            Ok(None) => {
                return Err(SwapError::Missing {
                    path,
                    tool: "fallocate or dd",
                });
            }
            Err(err) => {
                let _ = std::fs::remove_file(&host);
                return Err(tool_error(err));
            }
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        SwapError::Io {
            path: path.clone(),
            source,
        }
    })?;
    match tool::run("mkswap", &[&shown]) {
        Ok(Some(())) => Ok(Some(path)),
        Ok(None) => {
            let _ = std::fs::remove_file(&host);
            Err(SwapError::Missing {
                path,
                tool: "mkswap",
            })
        }
        Err(err) => {
            let _ = std::fs::remove_file(&host);
            Err(tool_error(err))
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn memory_total(root: &Root) -> Option<u64> {
    let text = root.read_optional_string("/proc/meminfo").ok()??;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_read_as_cloud_inits_human2bytes() {
        for (text, expect) in [
            ("10M", 10 * MIB),
            ("10MB", 10 * MIB),
            ("10MiB", 10 * MIB),
            ("1G", GIB),
            ("1.5G", GIB + GIB / 2),
            ("512", 512),
            ("2K", 2048),
        ] {
            assert_eq!(human_to_bytes(text), Ok(expect), "{text}");
        }
        assert!(human_to_bytes("-1M").is_err());
        assert!(human_to_bytes("lots").is_err());
        assert_eq!(bytes(&json!(4096)), Ok(4096));
    }

    #[test]
    fn requests_default_and_refuse_as_cloud_init() {
        let parsed = |v: Value| parse(v.as_object().unwrap());
        assert_eq!(parsed(json!({"filename": "/swap.img"})), Ok(None));
        assert_eq!(parsed(json!({"size": 0})), Ok(None));
        assert_eq!(
            parsed(json!({"size": "512M"})),
            Ok(Some(SwapRequest {
                filename: DEFAULT_FILENAME.into(),
                size: Size::Bytes(512 * MIB),
                maxsize: None
            }))
        );
        assert_eq!(
            parsed(json!({"filename": "/var/swap", "size": "auto", "maxsize": "2G"}))
                .unwrap()
                .unwrap()
                .maxsize,
            Some(2 * GIB)
        );
        assert!(
            parsed(json!({"size": "many"}))
                .unwrap_err()
                .starts_with("swap.size:")
        );
        assert!(parsed(json!({"size": 1, "filename": "rel"})).is_err());
    }

    #[test]
    fn the_suggested_size_follows_cloud_init() {
        // Memory below 4 GiB: as much as the memory, within a quarter of the free space.
        assert_eq!(suggested(2 * GIB, None, 100 * GIB), 2 * GIB);
        assert_eq!(suggested(2 * GIB, None, 4 * GIB), GIB);
        assert_eq!(suggested(8 * GIB, None, 100 * GIB), 4 * GIB);
        assert_eq!(suggested(64 * GIB, None, 1000 * GIB), 8 * GIB);
        assert_eq!(suggested(2 * GIB, Some(512 * MIB), 100 * GIB), 512 * MIB);
        // A maximum over 90 % of the free space is cut to it.
        assert_eq!(
            suggested(2 * GIB, Some(10 * GIB), GIB),
            (GIB as f64 * 0.9) as u64
        );
    }
}
