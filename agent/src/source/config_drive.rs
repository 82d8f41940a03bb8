//! The OpenStack config drive: a block device labelled `config-2` (iso9660 or vfat), mounted
//! read-only and read in nova's `openstack/<version>/…` layout (see [`super::drive`]). The
//! version is picked from the drive's `openstack/` directory as the metadata service's is from
//! its listing ([`pick_version`]: the newest dated one metaboot knows, else `latest`), as
//! cloud-init's `ConfigDriveReader` picks it: a drive made with only `openstack/2015-10-15/` is
//! read there.

use std::path::{Path, PathBuf};

use super::contract::{Probe, Source, SourceError};
use super::drive::{self, DriveError, FsType, Mount, Mounted};
use super::openstack::{self, OpenStackLayout, pick_version};
use crate::fsutil::PathError;
use crate::root::Root;

/// Its name in `datasources:`.
pub const NAME: &str = "config-drive";
/// The label nova gives a config drive (vfat may store it upper-case).
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// The directory of nova's versions (`latest`, `2012-08-10`, …), inside the drive.
pub const OPENSTACK: &str = "openstack";

/// Config drive failures.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("Config drive")]
    Drive(#[from] DriveError),
    #[error("Config drive: no meta_data.json in {}", .0.display())]
    MissingMetaData(PathBuf),
}

/// The block devices under the root labelled `config-2`: `(device path, filesystem)`, whole
/// disks before partitions (see [`drive::probe_all`]) and each kind in reverse name order, as
/// cloud-init's `find_candidate_devs` sorts them (`by_label.sort(reverse=True)`): nova
/// attaches the config drive last, so a stray `config-2` volume `vdb` (a copy of another
/// instance's drive) is not preferred to the real one at `vdc`.
pub fn find(root: &Root) -> Vec<(PathBuf, FsType)> {
    let mut found = drive::find(root, |label| label.eq_ignore_ascii_case(CONFIG_DRIVE_LABEL));
    found.sort_by_cached_key(|(device, _)| {
        let name = device.file_name().unwrap_or_default().to_owned();
        (drive::probing_rank(root, &name), std::cmp::Reverse(name))
    });
    found
}

/// The config drive of this machine, mounted; `None` without one. Each device labelled
/// `config-2` is tried in turn ([`find`]'s order), as cloud-init's ConfigDrive tries its
/// candidates: the first that mounts and holds `meta_data.json` is the drive; when none does,
/// the last one's error. With several, one whose `uuid` is the machine's DMI system UUID
/// (which nova sets to it, [`openstack::DMI_PRODUCT_UUID`]) is preferred (see [`pick`]).
pub fn detect(probe: &Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError> {
    let candidates = find(probe.root);
    let machine = if candidates.len() > 1 {
        openstack::dmi_product_uuid(probe.root)
    } else {
        None
    };
    let open = |device: &Path, fs: FsType| {
        Mounted::mount(probe.root, device, fs, NAME)
            .map_err(ConfigDriveError::from)
            .and_then(|mounted| {
                let mut drive = ConfigDrive::from_dir(mounted.dir());
                drive.mounted = Some(mounted);
                drive.checked()
            })
    };
    let uuid = |drive: &mut ConfigDrive| {
        let raw = drive.meta_data().ok()?;
        let doc: serde_json::Value = serde_json::from_slice(&raw).ok()?;
        doc.get("uuid")?.as_str().map(str::to_owned)
    };
    match pick(&candidates, machine.as_deref(), open, uuid) {
        Ok(drive) => Ok(drive.map(|drive| Box::new(drive) as Box<dyn Source>)),
        Err(err) => Err(err.into()),
    }
}

/// The drive among `candidates` (in order) that `open` opens: the first one, or, when the
/// machine's UUID is known (`machine`, lower-case), the first whose `uuid` is it (compared
/// case-insensitively), else the first one opened again, or the next one that opened when it
/// no longer does (each is released before the next is opened: they share a mount directory).
/// With several candidates, the others are named in a warning. When none opens, the last
/// one's error.
fn pick<D>(
    candidates: &[(PathBuf, FsType)],
    machine: Option<&str>,
    mut open: impl FnMut(&Path, FsType) -> Result<D, ConfigDriveError>,
    uuid: impl Fn(&mut D) -> Option<String>,
) -> Result<Option<D>, ConfigDriveError> {
    let others = |chosen: &Path| {
        let others: Vec<String> = candidates
            .iter()
            .filter(|(device, _)| device != chosen)
            .map(|(device, _)| device.display().to_string())
            .collect();
        if !others.is_empty() {
            tracing::warn!(chosen = %chosen.display(), others = others.join(", "), "several config-2 devices: the others are not used");
        }
    };
    let mut failed = None;
    // Those that opened but are not the machine's, in order: one is opened again below.
    let mut opened = Vec::new();
    for (device, fs) in candidates {
        match open(device, *fs) {
            Ok(mut drive) => {
                let Some(machine) = machine else {
                    others(device);
                    return Ok(Some(drive));
                };
                if uuid(&mut drive).is_some_and(|uuid| uuid.eq_ignore_ascii_case(machine)) {
                    others(device);
                    return Ok(Some(drive));
                }
                opened.push((device, *fs));
            }
            Err(err) => {
                tracing::warn!(device = %device.display(), error = %crate::log::chain(&err), "a config-2 device cannot be used");
                failed = Some(err);
            }
        }
    }
    for (device, fs) in opened {
        match open(device, fs) {
            Ok(drive) => {
                tracing::warn!(machine, device = %device.display(), "no config-2 device is this machine's (DMI product_uuid): the first one that opens is used");
                others(device);
                return Ok(Some(drive));
            }
            // It opened a moment ago (a drive ejected meanwhile): the next one is tried.
            Err(err) => {
                tracing::warn!(device = %device.display(), error = %crate::log::chain(&err), "a config-2 device cannot be used");
                failed = Some(err);
            }
        }
    }
    match failed {
        Some(err) => Err(err),
        None => Ok(None),
    }
}

/// A config drive's contents (a mounted device or a plain directory).
#[derive(Debug)]
pub struct ConfigDrive {
    dir: PathBuf,
    /// Where the documents are inside the drive: `openstack/<version>`.
    documents: PathBuf,
    /// Unmounts the device when the drive is dropped; says whose mount it is.
    mounted: Option<Mounted>,
}

impl ConfigDrive {
    /// A drive already available as a directory (`openstack/<version>/…` inside), read at the
    /// version its `openstack/` directory offers (see the module's documentation).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let offered: Vec<String> = Root::open(&dir)
            .map(|drive| drive.entries_or_none(OPENSTACK))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        let version = pick_version(offered.iter().map(String::as_str));
        tracing::info!(drive = %dir.display(), version, offered = ?offered, "config drive version chosen");
        ConfigDrive {
            documents: Path::new(OPENSTACK).join(version),
            dir,
            mounted: None,
        }
    }

    /// The drive, when it holds `meta_data.json` at its version: one without it cannot be
    /// used (as cloud-init's ConfigDrive, whose one required file it is), so the chooser warns
    /// and tries the next datasource. One whose file is refused (a loop of symlinks, a user's
    /// link on a drive mounted elsewhere) says why. A mounted one is released.
    pub fn checked(self) -> Result<Self, ConfigDriveError> {
        let meta_data = self.documents.join("meta_data.json");
        let found = Root::open(&self.dir).and_then(|drive| drive.stat(&meta_data));
        match found {
            Ok(Some(_)) => Ok(self),
            Ok(None) => Err(ConfigDriveError::MissingMetaData(
                self.dir.join(&self.documents),
            )),
            Err(err) => {
                let path = self.dir.join(&meta_data);
                Err(DriveError::from(PathError::fail("read", path)(err)).into())
            }
        }
    }
}

impl OpenStackLayout for ConfigDrive {
    const NAME: &'static str = NAME;

    fn document(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let inside = self.documents.join(name);
        let mount = self.mounted.as_ref().map_or(Mount::Own, Mounted::whose);
        Ok(drive::read(&self.dir, &inside, limit, mount).map_err(ConfigDriveError::from)?)
    }

    fn missing_meta_data(&self) -> SourceError {
        ConfigDriveError::MissingMetaData(self.dir.join(&self.documents)).into()
    }
}

#[cfg(test)]
mod tests;
