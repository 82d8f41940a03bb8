//! `swap: {filename, size, maxsize}`: a swap file as cloud-init's `cc_mounts` makes it
//! (allocated, else written with zeros; mode 0600; the header `mkswap` writes), its fstab line
//! added by the caller.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};
use nix::sys::stat::SFlag;
use nix::sys::statfs::fstatfs;
use serde_json::{Map, Value};

use crate::apply::resizefs::BTRFS_SUPER_MAGIC;
use crate::fsutil::owner::kind_name;
use crate::fsutil::{Refused, kind};
use crate::root::Root;
use crate::source::drive::{SWAP_MAGIC, SWAP_UUID};

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

/// The largest swap file `size: auto` makes without a `maxsize` (cloud-init's `sugg_max`).
pub const SUGGESTED_MAX_BYTES: u64 = 8 * GIB;

/// cloud-init's `suggested_swapsize`: the memory up to 4 GiB, 4 GiB up to 16 GiB of memory,
/// then √(memory in GiB) GiB; at most `maxsize`, else the smaller of a quarter of the free
/// space and [`SUGGESTED_MAX_BYTES`] (and never over 90 % of the free space).
pub fn suggested(memory: u64, maxsize: Option<u64>, free: u64) -> u64 {
    let max = match maxsize {
        None => (free / 4).min(SUGGESTED_MAX_BYTES),
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
    #[error("swap file {path}: cannot {what}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Whether one of `names` (a swap file's) is an active swap area (`/proc/swaps`), or cannot
/// be told (no `/proc/swaps`): then an existing file is left as it is, as cloud-init does.
fn in_use(root: &Root, names: &[&str]) -> bool {
    match root.read_optional_string("/proc/swaps") {
        Ok(Some(swaps)) => swaps.lines().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|name| names.contains(&name))
        }),
        _ => true,
    }
}

/// `FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS` (`_IOR/_IOW('f', 1/2, long)`) and `FS_NOCOW_FL`: what
/// `chattr +C` does.
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_NOCOW_FL: libc::c_long = 0x0080_0000;
/// Zeros written at a time where the file system cannot allocate (`dd`'s way).
const ZERO_CHUNK: usize = 1 << 20;

/// Makes the swap file of `request` unless it exists and is in use (or cannot be told);
/// returns its name (for the fstab line), or `None` when its size comes out 0.
///
/// Made the way `fallocate` + `mkswap` make it, but through the root's race-free walk: an old
/// file at the path is removed (anything else there, a device node, is refused), the new file is
/// created with `O_EXCL` (a link planted meanwhile fails the run instead of being followed),
/// allocated, given mode 0600 and the swap header (`SWAPSPACE2`, version 1, its last page, a
/// random UUID) on its descriptor; no program is run on a path.
pub fn make(root: &Root, request: &SwapRequest) -> Result<Option<String>, SwapError> {
    let path = request.filename.clone();
    let io = |what: &'static str| {
        let path = path.clone();
        move |source: std::io::Error| SwapError::Io { path, what, source }
    };
    // Where `fallocate` (cloud-init's) makes it: through root's symlink, a user's refused.
    let (dir, name) = root
        .write_target(std::path::Path::new(&request.filename))
        .map_err(|err| io(err.op)(err.source))?;
    // The kernel lists a swap file by the path it was opened at: the link's target's.
    let target = dir.child_path(&name);
    let listed = [path.as_str(), &target.to_string_lossy()];
    let old = dir.entry(&name).ok().flatten();
    if old.is_some() && in_use(root, &listed) {
        tracing::info!(file = %path, "swap file exists and is in use: kept");
        return Ok(Some(path));
    }
    // A partition's or a FIFO's node is no old swap file: removed, a file of the swap's size
    // would take its place (in memory, on /dev).
    if let Some(stat) = old.filter(|stat| kind(stat) != SFlag::S_IFREG) {
        let what = kind_name(&stat);
        let refused = Refused::NotReplaced {
            path: target.clone(),
            what,
        };
        return Err(io("replace it")(refused.into()));
    }
    // A user's directory in /tmp: they could swap the file for one of theirs, which the
    // kernel would then fill with root's memory.
    root.refuse_user_dir_in_sticky(&dir, None)
        .map_err(io("use its directory"))?;
    let size = match request.size {
        Size::Bytes(bytes) => bytes,
        Size::Auto => {
            let memory = memory_total(root).ok_or(SwapError::NoMemory { path: path.clone() })?;
            let stat = nix::sys::statvfs::fstatvfs(dir.fd())
                .map_err(|e| io("read its file system's free space")(e.into()))?;
            suggested(
                memory,
                request.maxsize,
                stat.fragment_size() * stat.blocks_free(),
            )
        }
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    if size > MAX_SWAP_BYTES {
        return Err(SwapError::TooLarge {
            path,
            size,
            max: MAX_SWAP_BYTES,
        });
    }
    // Whole MiB, as cloud-init asks fallocate for (a multiple of the page size).
    let size = size / MIB * MIB;
    if size == 0 {
        tracing::info!(file = %path, "not making a swap file: its size comes out 0 MiB");
        return Ok(None);
    }
    dir.remove_file(&name).map_err(io("remove the old file"))?;
    // In the directory already held, not by walking the path again.
    let mut file = dir.create_new(&name, 0o600).map_err(io("create it"))?;
    let made = fill(&mut file, size, page);
    if let Err(err) = made {
        let _ = dir.remove_file(&name);
        return Err(io("write it")(err));
    }
    Ok(Some(path))
}

/// Mode 0600, no copy-on-write on btrfs, `size` bytes allocated, the swap header written.
fn fill(file: &mut File, size: u64, page: u64) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let on_btrfs = fstatfs(&*file).is_ok_and(|s| s.filesystem_type().0 == BTRFS_SUPER_MAGIC);
    if on_btrfs {
        let mut flags: libc::c_long = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one long through the pointer, FS_IOC_SETFLAGS reads
        // one; both point at `flags`, which lives across the calls.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_GETFLAGS, &raw mut flags) };
        if rc == 0 {
            flags |= FS_NOCOW_FL;
            // SAFETY: as above.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_SETFLAGS, &raw const flags) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    let length =
        i64::try_from(size).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    match fallocate(&*file, FallocateFlags::empty(), 0, length) {
        Ok(()) => {}
        Err(Errno::EOPNOTSUPP) => {
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut left = size;
            while left > 0 {
                let n = left.min(ZERO_CHUNK as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
        Err(errno) => return Err(errno.into()),
    }
    let mut uuid = [0u8; 16];
    getrandom::fill(&mut uuid).map_err(std::io::Error::other)?;
    file.write_all_at(&header(size, page, uuid), 0)?;
    Ok(())
}

/// The first page of a swap area as `mkswap` writes it (`union swap_header`): 1 KiB of boot
/// bits, version 1, the last page's index, no bad pages, the UUID (version 4), no label,
/// `SWAPSPACE2` in the page's last 10 bytes.
pub fn header(size: u64, page: u64, mut uuid: [u8; 16]) -> Vec<u8> {
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let page = usize::try_from(page).unwrap_or(4096);
    let last_page = u32::try_from(size / page as u64 - 1).unwrap_or(u32::MAX);
    let mut head = vec![0u8; page];
    head[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    head[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    head[SWAP_UUID].copy_from_slice(&uuid);
    head[page - SWAP_MAGIC.len()..].copy_from_slice(SWAP_MAGIC);
    head
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
    fn the_header_is_the_one_mkswap_writes() {
        if !crate::testutil::require_tool("mkswap") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let reference = dir.path().join("reference");
        std::fs::File::create(&reference)
            .unwrap()
            .set_len(4 * MIB)
            .unwrap();
        crate::testutil::run(std::process::Command::new("mkswap").arg(&reference));
        let reference = std::fs::read(&reference).unwrap();
        let uuid: [u8; 16] = reference[1036..1052].try_into().unwrap();
        assert_eq!(header(4 * MIB, 4096, uuid), reference[..4096]);
    }

    #[test]
    fn the_suggested_size_follows_cloud_init() {
        // Memory below 4 GiB: as much as the memory, within a quarter of the free space.
        assert_eq!(suggested(2 * GIB, None, 100 * GIB), 2 * GIB);
        assert_eq!(suggested(2 * GIB, None, 4 * GIB), GIB);
        assert_eq!(suggested(8 * GIB, None, 100 * GIB), 4 * GIB);
        assert_eq!(suggested(64 * GIB, None, 1000 * GIB), 8 * GIB);
        // √256 GiB is 16 GiB: without a maxsize, cloud-init's 8 GiB ceiling holds.
        assert_eq!(suggested(256 * GIB, None, 1000 * GIB), SUGGESTED_MAX_BYTES);
        assert_eq!(suggested(2 * GIB, Some(512 * MIB), 100 * GIB), 512 * MIB);
        // A maximum over 90 % of the free space is cut to it.
        assert_eq!(
            suggested(2 * GIB, Some(10 * GIB), GIB),
            (GIB as f64 * 0.9) as u64
        );
    }
}
