//! `mounts`, `mount_default_fields` and `swap` (cloud-init's `cc_mounts`, once per instance,
//! after the root is grown): `/etc/fstab` gets the entries the configuration asks for, plus
//! cloud-init's two defaults when their devices exist (`ephemeral0` on `/mnt`: nova's
//! ephemeral disk; a `swap` area), every line marked `comment=cloudconfig` so the next
//! instance replaces them; a swap file is made; then `swapon -a`, `mount -a` and, under
//! systemd, `systemctl daemon-reload` (host root only).

mod devices;
mod fstab;
pub mod swap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::growpart::partition::MOUNTINFO;
use super::tool::{self, ToolError};
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::userdata::cloud_config::StrLike;
pub use devices::{Devices, aliases, split_partition};
pub use fstab::{Fstab, MNT_COMMENT};

/// The file edited.
pub const FSTAB: &str = "/etc/fstab";
/// Most `mounts` entries read (cloud-init has no bound).
pub const MAX_MOUNTS: usize = 64;
/// The fields of an fstab line.
const FIELDS: usize = 6;
/// Options of an entry that gives none, on a systemd image: a missing device never holds the
/// boot (`nofail`), and the mount waits for the provisioning that wrote it (cloud-init's, with
/// its own unit there).
pub const SYSTEMD_OPTIONS: &str = "defaults,nofail,x-systemd.after=metaboot.service,_netdev";
/// The same elsewhere (cloud-init's `nobootwait` is upstart's; busybox and util-linux both
/// take `nofail`).
pub const PLAIN_OPTIONS: &str = "defaults,nofail";

/// Failures of the step.
#[derive(Debug, thiserror::Error)]
pub enum MountsError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Fstab(#[from] PathError),
    #[error("cannot read {FSTAB}")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Swap(#[from] swap::SwapError),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// The step's configuration (the three keys as merged).
#[derive(Debug, Clone, Copy, Default)]
pub struct Config<'a> {
    pub mounts: Option<&'a Value>,
    pub default_fields: Option<&'a Value>,
    pub swap: Option<&'a Map<String, Value>>,
    /// `device_aliases`: names for devices (`data.1` is the first partition of `data`'s).
    pub device_aliases: Option<&'a Value>,
}

/// What the step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The lines added to fstab.
    pub added: Vec<String>,
    /// The earlier instance's lines dropped.
    pub dropped: usize,
    /// The commands run (`swapon -a`, `mount -a`, …).
    pub ran: Vec<&'static str>,
    /// The commands that failed, each with why (the others still ran).
    pub failed: Vec<String>,
}

/// One field of an entry: text, or nothing (`null`: the default, or "leave this device out").
type Field = Option<String>;

/// One field: text whatever YAML made of it, as cloud-init `str()`s it ([`StrLike`]), or
/// `null`.
fn field(value: &Value) -> Result<Field, String> {
    Option::<StrLike>::deserialize(value)
        .map(|field| field.map(|text| text.0))
        .map_err(|e| e.to_string())
}

/// `mounts`: a list of lists of fields; an entry that is not a list is a warning.
fn entries(value: Option<&Value>, warnings: &mut Vec<String>) -> Result<Vec<Vec<Field>>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("mounts must be a list of entries (found: {other})")),
    };
    if items.len() > MAX_MOUNTS {
        return Err(format!(
            "mounts has {} entries; at most {MAX_MOUNTS} are read",
            items.len()
        ));
    }
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Array(fields) = item else {
            warnings.push(format!(
                "mounts entry {index} is not a list: ignored ({item})"
            ));
            continue;
        };
        if fields.is_empty() || fields.len() > FIELDS {
            warnings.push(format!(
                "mounts entry {index} has {} fields (1 to {FIELDS}): ignored",
                fields.len()
            ));
            continue;
        }
        let fields = fields
            .iter()
            .map(field)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("mounts entry {index}: {e}"))?;
        out.push(fields);
    }
    Ok(out)
}

/// `mount_default_fields`, or cloud-init's defaults with `options`.
fn default_fields(value: Option<&Value>, options: &str) -> Result<Vec<Field>, String> {
    let given = match value {
        None | Some(Value::Null) => {
            return Ok(vec![
                None,
                None,
                Some("auto".into()),
                Some(options.into()),
                Some("0".into()),
                Some("2".into()),
            ]);
        }
        Some(Value::Array(items)) if items.len() == FIELDS => items,
        Some(other) => {
            return Err(format!(
                "mount_default_fields must be a list of {FIELDS} fields (found: {other})"
            ));
        }
    };
    given
        .iter()
        .map(field)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("mount_default_fields: {e}"))
}

/// The entries to write (six fields each, the mark not yet added), as cloud-init's
/// `sanitize_mounts_configuration`, `add_default_mounts_to_cfg` and
/// `remove_nonexistent_devices` make them.
fn plan(
    given: Vec<Vec<Field>>,
    defaults: &[Field],
    options: &str,
    fstab: &Fstab,
    devices: &Devices<'_>,
) -> Vec<Vec<String>> {
    let valid = |name: &str| devices.resolve(name).filter(|d| !fstab.has_device(d));
    // The user's entries: a device that exists and is not in fstab yet takes its real name.
    let mut entries: Vec<Vec<Field>> = given
        .into_iter()
        .map(|mut entry| {
            let start = entry[0].clone().unwrap_or_else(|| "None".to_owned());
            if let Some(device) = valid(&start) {
                entry[0] = Some(device);
            }
            for (index, slot) in entry.iter_mut().enumerate() {
                if slot.is_none() {
                    slot.clone_from(&defaults[index]);
                }
            }
            entry.extend(defaults[entry.len()..].iter().cloned());
            entry
        })
        .collect();
    // cloud-init's defaults, for devices that exist and no entry names.
    for default in [
        ["ephemeral0", "/mnt", "auto", options, "0", "2"],
        ["swap", "none", "swap", "sw", "0", "0"],
    ] {
        let Some(device) = valid(default[0]) else {
            continue;
        };
        if entries
            .iter()
            .any(|e| e[0].as_deref() == Some(device.as_str()))
        {
            continue;
        }
        let mut entry: Vec<Field> = default.iter().map(|f| Some((*f).to_owned())).collect();
        entry[0] = Some(device);
        entries.push(entry);
    }
    // A null mount point leaves that device out, with every entry of it before.
    let mut left_out: Vec<Field> = Vec::new();
    let mut kept = Vec::new();
    for entry in entries.into_iter().rev() {
        if entry[1].is_none() || left_out.contains(&entry[0]) {
            left_out.push(entry[0].clone());
        } else {
            kept.push(entry);
        }
    }
    kept.reverse();
    kept.into_iter()
        .map(|entry| {
            entry
                .into_iter()
                .map(|f| f.unwrap_or_else(|| "None".to_owned()))
                .collect()
        })
        .collect()
}

/// Applies the configuration under `root`; `None` when it asks for nothing.
pub fn apply(
    root: &Root,
    config: Config<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Applied>, MountsError> {
    let systemd = tool::systemd_runs(root);
    let options = if systemd {
        SYSTEMD_OPTIONS
    } else {
        PLAIN_OPTIONS
    };
    let defaults = default_fields(config.default_fields, options).map_err(MountsError::Config)?;
    let given = entries(config.mounts, warnings).map_err(MountsError::Config)?;
    // A swap file that cannot be made does not keep the volumes out of fstab (cloud-init's
    // `handle_swapcfg` warns and goes on): its error is the step's, after the mounts.
    let mut swap_failed = None;
    let swap = match config.swap.map(swap::parse).transpose() {
        Ok(request) => request.flatten(),
        Err(err) => {
            swap_failed = Some(MountsError::Config(err));
            None
        }
    };
    let text = root
        .read_optional_text(FSTAB)
        .map_err(MountsError::Read)?
        .unwrap_or_default();
    let fstab = Fstab::parse(&text);
    let aliases = devices::aliases(config.device_aliases).map_err(MountsError::Config)?;
    let devices = Devices::new(root).with_aliases(aliases);
    let mut entries = plan(given, &defaults, options, &fstab, &devices);
    let mut swap_line_kept = false;
    let made = match swap.as_ref().map(|request| swap::make(root, request)) {
        Some(Ok(file)) => file,
        Some(Err(err)) => {
            swap_failed = Some(err.into());
            None
        }
        None => None,
    };
    if let Some(file) = made {
        let entry = [file.as_str(), "none", "swap", "sw", "0", "0"].map(str::to_owned);
        // An older metaboot wrote a swap file's line without the mark: that line stands for
        // this one rather than being doubled (two lines for one file fail `swapon -a`).
        swap_line_kept = fstab.kept.contains(&fstab::line(&entry));
        if !swap_line_kept {
            entries.push(entry.to_vec());
        }
    }
    // Every line the step adds carries the mark, the swap file's too (as cloud-init's), so the
    // next instance replaces it.
    for entry in &mut entries {
        entry[3] = format!("{},{MNT_COMMENT}", entry[3]);
    }
    // Nothing asked and no default device: fstab is left as it is (cloud-init's too, an
    // earlier instance's lines included).
    if entries.is_empty() && !swap_line_kept {
        return swap_failed.map_or(Ok(None), Err);
    }
    let added: Vec<String> = entries.iter().map(|e| fstab::line(e)).collect();
    let changed = added.iter().any(|l| !fstab.dropped.contains(l))
        || fstab.dropped.iter().any(|l| !added.contains(l));
    root.write_atomic(
        FSTAB,
        fstab.render(&added).as_bytes(),
        &WriteOptions::keep_or(0o644),
    )?;
    let mount_points: Vec<&str> = entries
        .iter()
        .map(|e| e[1].as_str())
        .filter(|dir| dir.starts_with('/'))
        .collect();
    for dir in &mount_points {
        if !root.is_dir(dir)
            && let Err(err) = root.ensure_dir(dir, 0o755, None)
        {
            warnings.push(format!("cannot make mount point {dir}: {err}"));
        }
    }
    let mut applied = Applied {
        added,
        dropped: fstab.dropped.len(),
        ran: Vec::new(),
        failed: swap_failed
            .iter()
            .map(|err| format!("swap: {}", crate::log::chain(err)))
            .collect(),
    };
    if !root.is_host() {
        return Ok(Some(applied));
    }
    // The tools read /etc/fstab: it must be in place. Each runs whatever the one before did
    // (as cloud-init's): a swap area that fails does not keep the volumes unmounted.
    root.publish();
    if swap_line_kept || entries.iter().any(|e| e[2] == "swap") {
        run(&mut applied, "swapon", &["-a"]);
    }
    if changed || mount_points.iter().any(|dir| !is_mounted(root, dir)) {
        run(&mut applied, "mount", &["-a"]);
        if systemd {
            run(&mut applied, "systemctl", &["daemon-reload"]);
        }
    }
    Ok(Some(applied))
}

/// Runs `tool args`; what it ran, or why it failed, goes into `applied`.
fn run(applied: &mut Applied, tool: &'static str, args: &[&str]) {
    let command = match tool {
        "swapon" => "swapon -a",
        "mount" => "mount -a",
        _ => "systemctl daemon-reload",
    };
    match tool::run(tool, args) {
        Ok(Some(())) => applied.ran.push(command),
        Ok(None) => applied.failed.push(format!("{tool} is not installed")),
        Err(err) => applied
            .failed
            .push(format!("{command}: {}", crate::log::chain(&err))),
    }
}

/// Whether `dir` is a mount point now (this process's mounts; their mount points are
/// octal-escaped as fstab's fields are).
fn is_mounted(root: &Root, dir: &str) -> bool {
    root.read_optional_string(MOUNTINFO)
        .ok()
        .flatten()
        .is_some_and(|info| {
            info.lines()
                .filter_map(|line| line.split_whitespace().nth(4))
                .any(|point| fstab::unescape(point) == dir)
        })
}

#[cfg(test)]
mod tests;
