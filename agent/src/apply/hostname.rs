//! Hostname (docs/protocol.md §5.1): cloud-init's `get_hostname_fqdn` resolution, `/etc/hostname`,
//! and the kernel hostname (sethostname(2), only on the host root).

use std::net::Ipv4Addr;

use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;

/// The hostname file, under the root.
pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// Linux's HOST_NAME_MAX: longer names are cut at the first dot, then truncated.
pub const MAX_HOSTNAME_LEN: usize = 64;
/// Longest fully qualified name (`/etc/hosts` takes it whole; the kernel's host name is the
/// short one).
pub const MAX_FQDN_LEN: usize = 253;
/// Longest label of a name (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Hostname failures.
#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    #[error("Invalid hostname {0:?} (want letters, digits, '-' and '.')")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("Failed to set the kernel hostname")]
    Kernel(#[source] nix::Error),
}

/// The short name and the fully qualified one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub hostname: String,
    pub fqdn: String,
}

/// The datasource's hostname as cloud-init derives it: an IPv4 literal becomes `ip-a-b-c-d`.
fn datasource_name(local_hostname: &str) -> String {
    match local_hostname.parse::<Ipv4Addr>() {
        Ok(ip) => format!("ip-{}", ip.to_string().replace('.', "-")),
        Err(_) => local_hostname.to_owned(),
    }
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// cloud-init's `util.get_hostname_fqdn`: `fqdn` wins, then a dotted `hostname`, then the
/// datasource's `local-hostname` (meta_data.json `hostname`), then the current name.
pub fn resolve(
    hostname: Option<&str>,
    fqdn: Option<&str>,
    local_hostname: Option<&str>,
    current: &str,
) -> Names {
    let hostname = hostname.map(str::trim).filter(|h| !h.is_empty());
    if let Some(fqdn) = fqdn.map(str::trim).filter(|f| !f.is_empty()) {
        return Names {
            hostname: hostname.unwrap_or_else(|| first_label(fqdn)).to_owned(),
            fqdn: fqdn.to_owned(),
        };
    }
    if let Some(name) = hostname.filter(|h| h.find('.').is_some_and(|dot| dot > 0)) {
        return Names {
            hostname: first_label(name).to_owned(),
            fqdn: name.to_owned(),
        };
    }
    let ds = local_hostname
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(datasource_name)
        .unwrap_or_else(|| current.to_owned());
    Names {
        hostname: hostname.unwrap_or_else(|| first_label(&ds)).to_owned(),
        fqdn: ds.clone(),
    }
}

/// Checks and bounds a name: at most [`MAX_HOSTNAME_LEN`] bytes (cut at the first dot first, as
/// afterburn does), only letters, digits, `-` and `.`.
pub fn sanitize(name: &str) -> Result<String, HostnameError> {
    let mut name = name.trim().trim_end_matches('.').to_owned();
    if name.len() > MAX_HOSTNAME_LEN {
        name = first_label(&name).to_owned();
        // On a character's boundary: a name that is not ASCII is refused below, not cut
        // inside a character.
        name.truncate(name.floor_char_boundary(MAX_HOSTNAME_LEN));
    }
    let ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(name)
    } else {
        Err(HostnameError::Invalid(name))
    }
}

/// Checks a fully qualified name, as `/etc/hosts` takes it: up to [`MAX_FQDN_LEN`] bytes of
/// labels of at most [`MAX_LABEL_LEN`], as cloud-init keeps it whole. A longer one is cut as
/// [`sanitize`] cuts a host name.
pub fn sanitize_fqdn(name: &str) -> Result<String, HostnameError> {
    let name = name.trim().trim_end_matches('.');
    let fits = name.len() <= MAX_FQDN_LEN && name.split('.').all(|l| l.len() <= MAX_LABEL_LEN);
    if !fits {
        return sanitize(name);
    }
    let ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(HostnameError::Invalid(name.to_owned()))
    }
}

/// The current name in `/etc/hostname` under the root (empty when missing).
pub fn current(root: &Root) -> Result<String, HostnameError> {
    Ok(root
        .read_optional_string(HOSTNAME_FILE)
        .map_err(PathError::fail("read", root.host_path(HOSTNAME_FILE)))?
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Writes `/etc/hostname` (unless it is missing and `create` is false) and, on the host root, the
/// kernel hostname. Returns true when something changed.
pub fn write(root: &Root, name: &str, create: bool) -> Result<bool, HostnameError> {
    let mut changed = false;
    if current(root)? != name && (create || root.exists(HOSTNAME_FILE)) {
        root.write_atomic(
            HOSTNAME_FILE,
            format!("{name}\n").as_bytes(),
            &WriteOptions::keep_or(0o644),
        )?;
        changed = true;
    }
    if root.is_host() {
        let kernel = nix::unistd::gethostname()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if kernel != name {
            nix::unistd::sethostname(name).map_err(HostnameError::Kernel)?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(h: &str, f: &str) -> Names {
        Names {
            hostname: h.into(),
            fqdn: f.into(),
        }
    }

    #[test]
    fn datasource_name_when_user_data_is_silent() {
        assert_eq!(
            resolve(None, None, Some("test.novalocal"), "old"),
            names("test", "test.novalocal")
        );
        assert_eq!(
            resolve(None, None, Some("plain"), "old"),
            names("plain", "plain")
        );
        assert_eq!(
            resolve(None, None, Some("10.1.2.3"), "old"),
            names("ip-10-1-2-3", "ip-10-1-2-3")
        );
        assert_eq!(resolve(None, None, None, "old"), names("old", "old"));
        assert_eq!(resolve(None, None, Some("  "), "old"), names("old", "old"));
    }

    #[test]
    fn fqdn_wins_and_hostname_overrides_its_first_label() {
        assert_eq!(
            resolve(None, Some("a.example.org"), Some("t.novalocal"), ""),
            names("a", "a.example.org")
        );
        assert_eq!(
            resolve(Some("web"), Some("a.example.org"), Some("t.novalocal"), ""),
            names("web", "a.example.org")
        );
    }

    #[test]
    fn a_dotted_hostname_is_an_fqdn() {
        assert_eq!(
            resolve(Some("db.example.org"), None, Some("t.novalocal"), ""),
            names("db", "db.example.org")
        );
        // A leading dot does not count.
        assert_eq!(
            resolve(Some(".x"), None, Some("t.novalocal"), "").hostname,
            ".x"
        );
    }

    #[test]
    fn a_short_hostname_keeps_the_datasource_fqdn() {
        assert_eq!(
            resolve(Some("web"), None, Some("t.novalocal"), ""),
            names("web", "t.novalocal")
        );
    }

    #[test]
    fn sanitize_bounds_and_checks() {
        assert_eq!(sanitize(" web.example.org. ").unwrap(), "web.example.org");
        let long = format!("{}.example.org", "a".repeat(70));
        assert_eq!(sanitize(&long).unwrap(), "a".repeat(MAX_HOSTNAME_LEN));
        let long_fqdn = format!("short.{}", "b".repeat(70));
        assert_eq!(sanitize(&long_fqdn).unwrap(), "short");
        assert!(sanitize("bad name").is_err());
        assert!(sanitize("a/b").is_err());
        assert!(sanitize("").is_err());
        assert!(sanitize("-x").is_err());
        // A fully qualified name over the host name's bound is kept whole where it goes
        // (/etc/hosts), up to its own.
        let fqdn = format!("node-0123456789abcdef.{}.example.com", "c".repeat(60));
        assert!(fqdn.len() > MAX_HOSTNAME_LEN);
        assert_eq!(sanitize_fqdn(&format!("{fqdn}.")).unwrap(), fqdn);
        let too_long = format!("x.{}", "d.".repeat(130));
        assert_eq!(sanitize_fqdn(&too_long).unwrap(), "x");
        for bad in ["a..b", "bad name.org", "-x.org", ""] {
            assert!(sanitize_fqdn(bad).is_err(), "{bad}");
        }
        // A long name that is not ASCII, whatever byte the bound falls on: refused, no panic.
        for name in [
            "\u{e9}".repeat(40),
            format!("a{}", "\u{e9}".repeat(40)),
            "\u{4e2d}".repeat(30),
        ] {
            assert!(
                matches!(sanitize(&name), Err(HostnameError::Invalid(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn writes_the_file_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(
            !write(&root, "web", false).unwrap(),
            "not created when create is false"
        );
        assert!(write(&root, "web", true).unwrap());
        assert_eq!(
            std::fs::read_to_string(root.host_path(HOSTNAME_FILE)).unwrap(),
            "web\n"
        );
        assert!(!write(&root, "web", true).unwrap());
        assert_eq!(current(&root).unwrap(), "web");
    }
}
