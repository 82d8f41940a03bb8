//! `timezone` (cloud-init's cc_timezone, per instance): `/etc/localtime` made the zone's
//! zoneinfo file (a symlink to it, or a copy where the image keeps a copy), and `/etc/timezone`
//! naming the zone on Debian-family images, as cloud-init's Debian distro writes them.

use nix::sys::stat::SFlag;

use crate::fsutil::{PathError, WriteOptions, kind};
use crate::root::Root;

/// Where zone files are.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";
/// The zone in effect.
pub const LOCALTIME: &str = "/etc/localtime";
/// The zone's name, on Debian-family images.
pub const TIMEZONE_FILE: &str = "/etc/timezone";
/// A Debian-family image has it.
const DEBIAN_VERSION: &str = "/etc/debian_version";
/// The longest zone name taken (the longest in the tz database is 32 characters).
pub const MAX_ZONE_LEN: usize = 64;
/// The largest zone file copied (they are a few KiB).
pub const MAX_ZONEINFO_BYTES: usize = 256 * 1024;

/// A zone that cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum TimezoneError {
    #[error(
        "timezone {0:?} is not a zone name: want one like Europe/Berlin or UTC (letters, digits, \
         '/', '_', '-', '+', at most {MAX_ZONE_LEN} characters)"
    )]
    Name(String),
    #[error("Invalid timezone {zone}, no file found at {path}")]
    NotFound { zone: String, path: String },
    #[error("{path} is {bytes} bytes, more than a zone file's {MAX_ZONEINFO_BYTES}")]
    TooLarge { path: String, bytes: usize },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// How `/etc/localtime` was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Localtime {
    /// A symlink to the zone file (what systemd and Debian make).
    Linked,
    /// A copy of it (the image had a regular file there).
    Copied,
}

/// Checks a zone name: relative, made of tz database characters, no `.` or `..` parts.
pub fn check_name(zone: &str) -> Result<(), TimezoneError> {
    let ok = !zone.is_empty()
        && zone.len() <= MAX_ZONE_LEN
        && zone.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(TimezoneError::Name(zone.to_owned()))
    }
}

/// Sets the zone `zone` under `root`; nothing is written when the zone has no file.
pub fn set(root: &Root, zone: &str) -> Result<Localtime, TimezoneError> {
    check_name(zone)?;
    let file = format!("{ZONEINFO}/{zone}");
    let found = root
        .stat(&file)
        .map_err(PathError::fail("read", root.host_path(&file)))?;
    if found.is_none_or(|stat| kind(&stat) != SFlag::S_IFREG) {
        return Err(TimezoneError::NotFound {
            zone: zone.to_owned(),
            path: root.host_path(&file).display().to_string(),
        });
    }
    let localtime = if root.is_nonempty_file(LOCALTIME) {
        // The image keeps a copy: keep it a copy, of the new zone.
        let bytes = root
            .read_optional(&file)
            .map_err(PathError::fail("read", root.host_path(&file)))?
            .unwrap_or_default();
        if bytes.len() > MAX_ZONEINFO_BYTES {
            return Err(TimezoneError::TooLarge {
                path: root.host_path(&file).display().to_string(),
                bytes: bytes.len(),
            });
        }
        root.write_atomic(LOCALTIME, &bytes, &WriteOptions::keep_or(0o644))?;
        Localtime::Copied
    } else {
        root.replace_symlink(LOCALTIME, std::path::Path::new(&file))
            .map_err(PathError::fail("link", root.host_path(LOCALTIME)))?;
        Localtime::Linked
    };
    if root.exists(TIMEZONE_FILE) || root.exists(DEBIAN_VERSION) {
        root.write_atomic(
            TIMEZONE_FILE,
            format!("{zone}\n").as_bytes(),
            &WriteOptions::keep_or(0o644),
        )?;
    }
    Ok(localtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_file_too_large_to_be_one_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/share/zoneinfo")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/localtime"), "TZif old").unwrap();
        let big = vec![b'T'; MAX_ZONEINFO_BYTES + 1];
        std::fs::write(dir.path().join("usr/share/zoneinfo/Big"), &big).unwrap();
        std::fs::write(dir.path().join("usr/share/zoneinfo/Fits"), &big[1..]).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let err = set(&root, "Big").unwrap_err();
        assert!(
            err.to_string().ends_with(&format!(
                "usr/share/zoneinfo/Big is {} bytes, more than a zone file's {MAX_ZONEINFO_BYTES}",
                MAX_ZONEINFO_BYTES + 1
            )),
            "{err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("etc/localtime")).unwrap(),
            b"TZif old"
        );
        assert_eq!(set(&root, "Fits").unwrap(), Localtime::Copied);
        assert_eq!(
            std::fs::read(dir.path().join("etc/localtime")).unwrap(),
            &big[1..]
        );
    }

    #[test]
    fn zone_names_are_those_of_the_tz_database() {
        for good in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "Etc/GMT-14",
            "America/Port-au-Prince",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../../etc/shadow",
            "Europe/../../../etc/shadow",
            "Europe//Berlin",
            "Europe/Berlin/",
            "Europe/ Berlin",
            "Europe/Berlin\n",
            "./UTC",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"A".repeat(MAX_ZONE_LEN)).is_ok());
        assert!(check_name(&"A".repeat(MAX_ZONE_LEN + 1)).is_err());
        assert_eq!(
            check_name("../x").unwrap_err().to_string(),
            "timezone \"../x\" is not a zone name: want one like Europe/Berlin or UTC (letters, \
             digits, '/', '_', '-', '+', at most 64 characters)"
        );
    }
}
