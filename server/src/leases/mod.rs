//! The DHCP leases of networks served on a host bridge (`--libvirt-network`, `--bridge`):
//! which MAC holds a guest's address. Read from the files libvirt's dnsmasq keeps in one
//! directory (`/var/lib/libvirt/dnsmasq` unless `all --leases-dir` says otherwise):
//! `<network>.conf` names a libvirt network's bridge (`interface=`), `<bridge>.status` holds
//! its leases (libvirt's helper), or `<bridge>.leases` (a plain `dnsmasq
//! --dhcp-leasefile=DIR/BR.leases` on a bridge of one's own).
//!
//! Each file is parsed once and kept until it changes: a lookup costs one `stat` per file (no
//! store round trip), and a guest whose address changed after a reboot is found at its new
//! address as soon as the file says so. A lease is only as good as its expiry: an expired one
//! never names anyone, so an address handed to another MAC is never served as its old owner.

mod neighbor;
mod parse;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

pub use neighbor::{ARP_TABLE, neighbor_mac, parse_neighbor};
pub use parse::{Lease, LeaseError, parse, parse_mac};

use crate::store::HostBridge;

/// Where libvirt's dnsmasq keeps its configuration and leases (libvirt's
/// `LOCALSTATEDIR/lib/libvirt/dnsmasq`).
pub const DEFAULT_LEASES_DIR: &str = "/var/lib/libvirt/dnsmasq";
/// The largest lease or configuration file read; a bigger one is refused (a /16 of leases is
/// about 8 MiB of libvirt's JSON).
pub const MAX_LEASE_FILE_BYTES: u64 = 32 << 20;

/// Why a host network's leases cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HostLeaseError {
    #[error("Cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_LEASE_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} names no bridge (no interface= line): is libvirt network {network} started?")]
    NoBridge { path: PathBuf, network: String },
    #[error("Cannot parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: LeaseError,
    },
}

/// An error and its sources, `: `-joined, for logs.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What identifies one version of a file: a rename gives a new inode, a rewrite a new size or
/// modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// Leases by address.
type LeaseTable = HashMap<IpAddr, Vec<Lease>>;

/// The host networks' lease files, each parsed once per version.
#[derive(Debug)]
pub struct HostLeases {
    dir: PathBuf,
    bridges: Mutex<HashMap<PathBuf, (Stamp, Arc<str>)>>,
    leases: Mutex<HashMap<PathBuf, (Stamp, Arc<LeaseTable>)>>,
}

impl Default for HostLeases {
    fn default() -> Self {
        Self::new(PathBuf::from(DEFAULT_LEASES_DIR))
    }
}

/// `path`'s metadata, `None` when it does not exist.
fn stat(path: &Path) -> Result<Option<std::fs::Metadata>, HostLeaseError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_LEASE_FILE_BYTES => Err(HostLeaseError::TooLarge {
            path: path.to_owned(),
        }),
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostLeaseError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read(path: &Path) -> Result<String, HostLeaseError> {
    std::fs::read_to_string(path).map_err(|source| HostLeaseError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The address ranges libvirt's dnsmasq hands out on libvirt network `network`, from
/// `<dir>/<network>.conf` (libvirt writes `dhcp-range=192.168.122.2,192.168.122.254,…`, one line
/// per range): the first and last address of each. Empty when the file (the network not
/// started, or libvirt on another host) or its ranges cannot be read.
pub fn libvirt_dhcp_ranges(dir: &Path, network: &str) -> Vec<(IpAddr, IpAddr)> {
    let path = dir.join(format!("{network}.conf"));
    let Ok(Some(_)) = stat(&path) else {
        return Vec::new();
    };
    let Ok(text) = read(&path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("dhcp-range="))
        .filter_map(|range| {
            let mut fields = range.split(',').map(str::trim);
            let first = fields.next()?.parse().ok()?;
            let last = fields.next()?.parse().ok()?;
            Some((first, last))
        })
        .collect()
}

/// Most reads of a lease file that changed while it was read before one is taken as it is.
pub const MAX_LEASE_READS: usize = 3;

/// The text of `path` as two reads in a row agree on it. dnsmasq rewrites its file in place in
/// several writes, all within one tick of the file's clock, the length often the same: a read
/// between two of them (the new beginning, the old end) is told only by a second read. After
/// [`MAX_LEASE_READS`] the last read is used: the parser takes whole lines only.
fn read_whole(path: &Path) -> Result<String, HostLeaseError> {
    stable(|| read(path))
}

/// What `read` gives twice in a row, trying at most [`MAX_LEASE_READS`] times.
fn stable(
    mut read: impl FnMut() -> Result<String, HostLeaseError>,
) -> Result<String, HostLeaseError> {
    let mut text = read()?;
    for _ in 1..MAX_LEASE_READS {
        let again = read()?;
        if again == text {
            break;
        }
        text = again;
    }
    Ok(text)
}

/// The cached value of `path` when its stamp is `stamp`, else `load`ed anew and kept.
fn cached<T: ?Sized>(
    cache: &Mutex<HashMap<PathBuf, (Stamp, Arc<T>)>>,
    path: &Path,
    stamp: Stamp,
    load: impl FnOnce() -> Result<Arc<T>, HostLeaseError>,
) -> Result<Arc<T>, HostLeaseError> {
    if let Some((seen, value)) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        && *seen == stamp
    {
        return Ok(value.clone());
    }
    let value = load()?;
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_owned(), (stamp, value.clone()));
    Ok(value)
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl HostLeases {
    /// Lease files are looked for in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            bridges: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// The directory lease files are looked for in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bridge a host network is served on: named, or the `interface=` of the libvirt
    /// network's dnsmasq configuration (`None` while that file does not exist: the network is
    /// not started).
    pub fn bridge_of(&self, host: &HostBridge) -> Result<Option<Arc<str>>, HostLeaseError> {
        let name = match host {
            HostBridge::Bridge(bridge) => return Ok(Some(Arc::from(bridge.as_str()))),
            HostBridge::LibvirtNetwork(name) => name,
        };
        let path = self.dir.join(format!("{name}.conf"));
        let Some(meta) = stat(&path)? else {
            return Ok(None);
        };
        cached(&self.bridges, &path, Stamp::of(&meta), || {
            let text = read(&path)?;
            text.lines()
                .find_map(|line| line.trim().strip_prefix("interface="))
                .map(|bridge| Arc::from(bridge.trim()))
                .ok_or_else(|| HostLeaseError::NoBridge {
                    path: path.clone(),
                    network: name.clone(),
                })
        })
        .map(Some)
    }

    /// The MACs holding `ip` on the host network's bridge now (distinct; unexpired leases
    /// only): none when no lease file exists or none has it.
    pub fn macs_of(&self, host: &HostBridge, ip: IpAddr) -> Result<Vec<[u8; 6]>, HostLeaseError> {
        let Some(bridge) = self.bridge_of(host)? else {
            return Ok(Vec::new());
        };
        let mut found = None;
        for suffix in ["status", "leases"] {
            let path = self.dir.join(format!("{bridge}.{suffix}"));
            if let Some(meta) = stat(&path)? {
                found = Some((path, meta));
                break;
            }
        }
        let Some((path, meta)) = found else {
            return Ok(Vec::new());
        };
        let table = cached(&self.leases, &path, Stamp::of(&meta), || {
            let text = read_whole(&path)?;
            let leases = parse(&text).map_err(|source| HostLeaseError::Parse {
                path: path.clone(),
                source,
            })?;
            let mut table = LeaseTable::new();
            for lease in leases {
                table.entry(lease.ip).or_default().push(lease);
            }
            Ok(Arc::new(table))
        })?;
        let now = now();
        let mut macs: Vec<[u8; 6]> = table
            .get(&ip)
            .into_iter()
            .flatten()
            .filter(|lease| lease.holds_at(now))
            .map(|lease| lease.mac)
            .collect();
        macs.sort_unstable();
        macs.dedup();
        Ok(macs)
    }
}

#[cfg(test)]
mod tests;
