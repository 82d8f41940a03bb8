//! NoCloud, as cloud-init's `DataSourceNoCloud` reads it: a seed of `meta-data` (YAML:
//! `instance-id`, `local-hostname`, `public-keys`), `user-data`, and optionally `vendor-data`
//! and `network-config`, on a filesystem labelled `cidata` or `CIDATA` (iso9660 or vfat: what
//! `cloud-localds` and libvirt make), or in a seed directory (`/var/lib/cloud/seed/nocloud`,
//! then `…/nocloud-net`). A seed without `meta-data` or `user-data` is no seed. When a directory
//! and a device both hold one, the device's documents replace the directory's, except that
//! meta-data keys the directory already set stay (cloud-init's `_merge_new_seed`). A meta-data
//! that is not a YAML mapping is a warning and adds no keys (cloud-init's `load_yaml` gives
//! `None`): the defaults apply (instance-id `nocloud`) and the user data is still applied.
//! A seed directory is read through the machine's root: root's symlinks there lead anywhere in
//! it (`user-data -> /etc/seed/user-data`, as cloud-init follows them), users' are refused; a
//! drive's symlinks stay inside the drive.
//!
//! Not read (as with cloud-init's network stage, they need more than a local seed): `seedfrom`
//! URLs, `ds=nocloud;…` on the kernel command line or in the DMI serial number, `dsmode`, and
//! the deprecated `network-interfaces` key.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::contract::{NetworkData, Probe, Source, SourceError, VendorData};
use super::drive::{self, DriveError, Mount, Mounted};
use super::http::MAX_METADATA_BYTES;
use crate::fsutil::PathError;
use crate::root::Root;
use crate::userdata::gzip::MAX_DECOMPRESSED_BYTES;
use crate::userdata::yaml::{self, YamlError};

/// Its name in `datasources:`.
pub const NAME: &str = "nocloud";
/// The labels of a seed filesystem (cloud-init looks for both spellings, nothing in between).
pub const LABELS: [&str; 2] = ["cidata", "CIDATA"];
/// Seed directories, under the root, in the order cloud-init reads them.
pub const SEED_DIRS: [&str; 2] = [
    "/var/lib/cloud/seed/nocloud",
    "/var/lib/cloud/seed/nocloud-net",
];
/// The instance id of a seed whose meta-data has none (cloud-init's default).
pub const DEFAULT_INSTANCE_ID: &str = "nocloud";
/// Largest `user-data` or `vendor-data` of a seed. A seed is local, made by the machine's
/// owner, and cloud-init reads it whole, so the bound is not the metadata service's (nova
/// keeps at most 64 KiB of user data) but what the decoder takes after gunzip anyway.
pub const MAX_SEED_USER_DATA_BYTES: u64 = MAX_DECOMPRESSED_BYTES as u64;

/// NoCloud failures.
#[derive(Debug, thiserror::Error)]
pub enum NoCloudError {
    #[error("NoCloud seed {seed}")]
    Drive {
        seed: String,
        #[source]
        source: DriveError,
    },
    #[error("NoCloud: cannot read the meta-data in {seed}")]
    MetaData {
        seed: String,
        #[source]
        source: YamlError,
    },
    #[error("NoCloud: `{key}` in meta-data must be {want}, found {found}")]
    Field {
        key: &'static str,
        want: &'static str,
        found: String,
    },
}

/// The files of one seed, read whole (each within its bound).
#[derive(Debug, Clone)]
struct Seed {
    /// The device or directory it came from.
    origin: String,
    meta_data: Vec<u8>,
    user_data: Vec<u8>,
    vendor_data: Option<Vec<u8>>,
    network_config: Option<Vec<u8>>,
}

impl Seed {
    /// The seed in directory `dir` under `root` (its files read as the root reads them: a
    /// seed directory's through the machine's root, where root's symlinks lead anywhere in it,
    /// a drive's inside the drive, as its `mount` is read), `None` when `meta-data` or
    /// `user-data` is missing (a warning naming what is missing).
    fn read(
        root: &Root,
        dir: &Path,
        origin: String,
        mount: Mount,
    ) -> Result<Option<Seed>, NoCloudError> {
        let file = |name: &str, limit: u64| {
            let read = drive::read_under(root, &dir.join(name), limit, mount);
            read.map_err(|source| NoCloudError::Drive {
                seed: origin.clone(),
                source,
            })
        };
        let meta_data = file("meta-data", MAX_METADATA_BYTES)?;
        let user_data = file("user-data", MAX_SEED_USER_DATA_BYTES)?;
        let missing: Vec<&str> = [("meta-data", &meta_data), ("user-data", &user_data)]
            .into_iter()
            .filter_map(|(name, read)| read.is_none().then_some(name))
            .collect();
        let (Some(meta_data), Some(user_data)) = (meta_data, user_data) else {
            let missing = missing.join(" and ");
            tracing::warn!(
                seed = origin,
                "not a NoCloud seed: it has no {missing} (a seed needs both)"
            );
            return Ok(None);
        };
        Ok(Some(Seed {
            meta_data,
            user_data,
            vendor_data: file("vendor-data", MAX_SEED_USER_DATA_BYTES)?,
            network_config: file("network-config", MAX_METADATA_BYTES)?,
            origin,
        }))
    }

    /// The seed at the top of directory `dir` (a `mount` of a drive, a seed image's files), its
    /// symlinks resolved inside it; `None` when `dir` does not exist.
    fn read_dir(dir: &Path, origin: String, mount: Mount) -> Result<Option<Seed>, NoCloudError> {
        match Root::open(dir) {
            Ok(drive) => Self::read(&drive, Path::new("/"), origin, mount),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NoCloudError::Drive {
                seed: origin,
                source: PathError::fail("open", dir)(source).into(),
            }),
        }
    }
}

/// This machine's NoCloud seeds (a seed directory, a `cidata` device), read; `None` without any.
/// A seed that cannot be read (a file that is not readable, or over its bound) is a warning and
/// the next one is looked at; its error explains why none was found.
pub fn detect(probe: &Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError> {
    let mut seeds: Vec<Seed> = Vec::new();
    let mut unusable = None;
    for dir in SEED_DIRS {
        if !probe.root.is_dir(dir) {
            continue;
        }
        match Seed::read(probe.root, Path::new(dir), dir.to_owned(), Mount::Own) {
            Ok(Some(seed)) => {
                seeds.push(seed);
                break;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(seed = dir, "{}", crate::log::chain(&err));
                unusable.get_or_insert(err);
            }
        }
    }
    // Last attached first, as cloud-init sorts them (`devlist.sort(reverse=True)`): a seed
    // volume added after the image's own is the one meant for this boot.
    let mut devices = drive::find(probe.root, |label| LABELS.contains(&label));
    devices.sort_by(|(a, _), (b, _)| b.cmp(a));
    for (device, fs) in devices {
        let origin = device.display().to_string();
        let seed = Mounted::mount(probe.root, &device, fs, NAME)
            .map_err(|source| NoCloudError::Drive {
                seed: origin.clone(),
                source,
            })
            .and_then(|mounted| Seed::read_dir(mounted.dir(), origin.clone(), mounted.whose()));
        match seed {
            Ok(Some(seed)) => {
                seeds.push(seed);
                break;
            }
            Ok(None) => {}
            // As cloud-init does, the next device is tried; the error is kept to explain why
            // nothing was found.
            Err(err) => {
                tracing::warn!(device = origin, "{}", crate::log::chain(&err));
                unusable.get_or_insert(err);
            }
        }
    }
    match (NoCloud::from_seeds(seeds), unusable) {
        (Some(nocloud), _) => Ok(Some(Box::new(nocloud))),
        (None, Some(err)) => Err(err.into()),
        (None, None) => Ok(None),
    }
}

/// A NoCloud seed, read (a mounted drive is released at once).
#[derive(Debug, Clone)]
pub struct NoCloud {
    /// The seeds found, in cloud-init's order (directory first), later documents winning.
    seeds: Vec<Seed>,
    /// Meta-data that could not be read, for [`Source::take_warnings`].
    warnings: Vec<String>,
}

impl NoCloud {
    /// The seed in directory `dir` (`meta-data`, `user-data` and the optional files at its
    /// top), e.g. a seed image's files; `None` when it is not a seed.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, NoCloudError> {
        let seed = Seed::read_dir(dir, dir.display().to_string(), Mount::Own)?;
        Ok(Self::from_seeds(seed.into_iter().collect()))
    }

    fn from_seeds(seeds: Vec<Seed>) -> Option<Self> {
        (!seeds.is_empty()).then_some(NoCloud {
            seeds,
            warnings: Vec::new(),
        })
    }

    /// The merged meta-data: earlier seeds' keys win, as in cloud-init's `mergemanydict`. A
    /// seed's meta-data that is not a YAML mapping adds nothing and leaves a warning, as
    /// cloud-init's `_merge_new_seed` (its `load_yaml` warns and gives `None`) and the
    /// defaults fill in.
    fn merged_meta_data(&mut self) -> Map<String, Value> {
        let mut merged = Map::new();
        for seed in &self.seeds {
            let text = String::from_utf8_lossy(&seed.meta_data);
            match yaml::parse_map(&text) {
                Ok(map) => {
                    for (key, value) in map {
                        merged.entry(key).or_insert(value);
                    }
                }
                Err(source) => {
                    let err = NoCloudError::MetaData {
                        seed: seed.origin.clone(),
                        source,
                    };
                    let warning = format!(
                        "{}; none of its keys are used, the defaults apply (instance-id \
                         `{DEFAULT_INSTANCE_ID}`): make it a YAML mapping (`instance-id: …`)",
                        crate::log::chain(&err)
                    );
                    tracing::warn!("{warning}");
                    self.warnings.push(warning);
                }
            }
        }
        merged
    }

    /// The document of the last seed that has it; an empty one is no document.
    fn latest(&self, document: impl Fn(&Seed) -> Option<&Vec<u8>>) -> Option<Vec<u8>> {
        self.seeds
            .iter()
            .rev()
            .find_map(document)
            .filter(|bytes| !bytes.is_empty())
            .cloned()
    }
}

/// A scalar meta-data value as cloud-init's `str()` gives it; `None` when absent.
fn text(meta: &Map<String, Value>, key: &'static str) -> Result<Option<String>, NoCloudError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(NoCloudError::Field {
            key,
            want: "a string",
            found: other.to_string(),
        }),
    }
}

/// `public-keys` as cloud-init's `normalize_pubkey_data` reads it: a string (one key a line), a
/// list, or a mapping of name to a key or a list of keys.
fn public_keys(value: Option<&Value>) -> Result<Vec<String>, NoCloudError> {
    let keys = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter_map(Value::as_str)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Ok(match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(lines)) => lines.lines().map(str::to_owned).collect(),
        Some(Value::Array(items)) => keys(items),
        Some(Value::Object(named)) => named
            .values()
            .flat_map(|entry| match entry {
                Value::String(key) => keys(&[Value::String(key.clone())]),
                Value::Array(items) => keys(items),
                _ => Vec::new(),
            })
            .collect(),
        Some(other) => {
            return Err(NoCloudError::Field {
                key: "public-keys",
                want: "a string, a list or a mapping",
                found: other.to_string(),
            });
        }
    })
}

impl Source for NoCloud {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The seed's meta-data in `meta_data.json`'s shape: `instance-id` is the uuid,
    /// `local-hostname` the hostname and name, `public-keys` the key pairs (named by position),
    /// `launch-index` (when it is a number) the launch index.
    fn meta_data(&mut self) -> Result<Vec<u8>, SourceError> {
        let meta = self.merged_meta_data();
        let id = text(&meta, "instance-id")?.unwrap_or_else(|| DEFAULT_INSTANCE_ID.to_owned());
        let hostname = text(&meta, "local-hostname")?.unwrap_or_default();
        let keys: Map<String, Value> = public_keys(meta.get("public-keys"))?
            .into_iter()
            .enumerate()
            .map(|(i, key)| (format!("{i:04}"), Value::String(key)))
            .collect();
        let mut doc = json!({"uuid": id, "hostname": hostname, "name": hostname});
        // cloud-init's NoCloud `launch-index`, given as a number or as text holding one (nova's
        // are never negative, and meta_data.json's is unsigned).
        let launch_index = meta
            .get("launch-index")
            .and_then(crate::userdata::launch_index_of)
            .and_then(|n| u32::try_from(n).ok());
        if let Some(index) = launch_index {
            doc["launch_index"] = index.into();
        }
        if !keys.is_empty() {
            doc["public_keys"] = Value::Object(keys);
        }
        Ok(serde_json::to_vec(&doc)?)
    }

    fn user_data(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(self.latest(|seed| Some(&seed.user_data)))
    }

    fn vendor_data(&mut self) -> Result<Option<VendorData>, SourceError> {
        Ok(self
            .latest(|seed| seed.vendor_data.as_ref())
            .map(VendorData::Plain))
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn network_data(&mut self) -> Result<Option<NetworkData>, SourceError> {
        // An empty network-config does not replace an earlier seed's (cloud-init's rule).
        Ok(self
            .latest(|seed| seed.network_config.as_ref().filter(|c| !c.is_empty()))
            .map(NetworkData::NetworkConfig))
    }
}

#[cfg(test)]
mod tests;
