//! `ca_certs` (cloud-init's cc_ca_certs, per instance): the certificates an instance must trust
//! (a private CA) written where the distribution's trust store takes local ones, and the store
//! rebuilt with the distribution's own tool; `remove_defaults` first deselects the
//! distribution's own CAs (Debian family: `!` in front of each line of
//! `/etc/ca-certificates.conf`, as cloud-init does).

use crate::apply::tool::{self, ToolError};
use crate::fsutil::{PathError, WriteOptions};
use crate::root::Root;
use crate::userdata::cloud_config::CaCerts;

/// Most certificates taken from `trusted`.
pub const MAX_CA_CERTS: usize = 100;
/// The largest certificate entry (a PEM certificate is 1–3 KiB).
pub const MAX_CA_CERT_BYTES: usize = 64 * 1024;
/// What a certificate entry must hold.
pub const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";

/// Where a distribution keeps the certificates it adds to its store, and how it rebuilds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store {
    /// The directory local certificates go to.
    pub local_dir: &'static str,
    /// The selection file `remove_defaults` edits (Debian's), if the distribution has one.
    pub config: Option<&'static str>,
    /// The program that rebuilds the store.
    pub update: &'static str,
}

/// Debian, Ubuntu, Alpine (cloud-init's default).
pub const DEBIAN: Store = Store {
    local_dir: "/usr/local/share/ca-certificates",
    config: Some("/etc/ca-certificates.conf"),
    update: "update-ca-certificates",
};

/// The RHEL family (p11-kit's trust anchors).
pub const RHEL: Store = Store {
    local_dir: "/usr/share/pki/ca-trust-source/anchors",
    config: None,
    update: "update-ca-trust",
};

/// The RHEL family's tool: its presence marks the family's store.
const RHEL_UPDATE: &str = "/usr/bin/update-ca-trust";

/// The line put above the deselected entries of the selection file.
pub const DESELECTED_HEADER: &str =
    "# Modified by metaboot to deselect certs due to user-data (remove_defaults)";

/// What debconf is told, so that a later ca-certificates upgrade does not select new CAs.
const DEBCONF_NO_NEW: &[u8] = b"ca-certificates ca-certificates/trust_new_crts select no\n";

/// The name of the `index`-th certificate file (1-based).
pub fn file_name(index: usize) -> String {
    format!("metaboot-ca-cert-{index}.crt")
}

/// True for a name `file_name` gives.
fn is_certificate_file(name: &str) -> bool {
    name.strip_prefix("metaboot-ca-cert-")
        .and_then(|rest| rest.strip_suffix(".crt"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A `ca_certs` that could not be applied in full.
#[derive(Debug, thiserror::Error)]
pub enum CaCertsError {
    #[error("trusted entry {index} has no {PEM_BEGIN} block: not written")]
    NotPem { index: usize },
    #[error("trusted entry {index} is {bytes} bytes, more than {MAX_CA_CERT_BYTES}: not written")]
    TooLarge { index: usize, bytes: usize },
    #[error("{count} trusted entries, more than {MAX_CA_CERTS}: the first {MAX_CA_CERTS} are used")]
    TooMany { count: usize },
    #[error(
        "remove_defaults: this image's store ({update}) has no selection file metaboot knows \
         (Debian's /etc/ca-certificates.conf); the default CAs stay"
    )]
    NoSelection { update: &'static str },
    #[error(
        "{0} is not installed: the certificates are written but not in the trust store (install the image's ca-certificates package)"
    )]
    NoUpdateTool(&'static str),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// What was done.
#[derive(Debug)]
pub struct Applied {
    /// The image's store (where the certificates went, which tool rebuilt it).
    pub store: Store,
    /// Certificate files written, under the store's local directory.
    pub written: Vec<String>,
    /// Certificate files of an earlier run that this `trusted` no longer holds, removed.
    pub removed: Vec<String>,
    /// Entries of the selection file deselected.
    pub deselected: usize,
    /// The store was rebuilt (false when the root is not the running system's).
    pub updated: bool,
    /// What went wrong on the way; the rest was still done.
    pub errors: Vec<CaCertsError>,
}

/// The store of the image under `root`.
fn store(root: &Root) -> Store {
    if root.exists(RHEL_UPDATE) {
        RHEL
    } else {
        DEBIAN
    }
}

/// Applies `config` under `root`: deselects the defaults, writes the certificates, rebuilds
/// the store (on the host root). Each bad entry is an error of its own; the others apply.
pub fn apply(root: &Root, config: &CaCerts) -> Applied {
    let store = store(root);
    let mut applied = Applied {
        store,
        written: Vec::new(),
        removed: Vec::new(),
        deselected: 0,
        updated: false,
        errors: Vec::new(),
    };
    if config.removes_defaults() {
        match deselect_defaults(root, store) {
            Ok(n) => applied.deselected = n,
            Err(err) => applied.errors.push(err),
        }
    }
    let trusted = config
        .trusted
        .as_ref()
        .map(|t| t.to_vec())
        .unwrap_or_default();
    if trusted.len() > MAX_CA_CERTS {
        applied.errors.push(CaCertsError::TooMany {
            count: trusted.len(),
        });
    }
    for (i, cert) in trusted.iter().take(MAX_CA_CERTS).enumerate() {
        let index = i + 1;
        if cert.len() > MAX_CA_CERT_BYTES {
            applied.errors.push(CaCertsError::TooLarge {
                index,
                bytes: cert.len(),
            });
            continue;
        }
        if !cert.contains(PEM_BEGIN) {
            applied.errors.push(CaCertsError::NotPem { index });
            continue;
        }
        let path = format!("{}/{}", store.local_dir, file_name(index));
        let mut text = cert.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        match root.write_atomic(&path, text.as_bytes(), &WriteOptions::exact(0o644, None)) {
            Ok(()) => applied.written.push(file_name(index)),
            Err(err) => applied.errors.push(err.into()),
        }
    }
    remove_others(root, store, &mut applied);
    if root.is_host() {
        // Written files must be in place before the tool reads the directory.
        root.publish();
        match tool::run(store.update, &[]) {
            Ok(Some(())) => applied.updated = true,
            Ok(None) => applied
                .errors
                .push(CaCertsError::NoUpdateTool(store.update)),
            Err(err) => applied.errors.push(err.into()),
        }
    }
    applied
}

/// Removes the certificate files an earlier run wrote that this run did not (an image captured
/// from an instance that trusted more, an entry now refused): what `trusted` lists now is what
/// the store trusts, as cloud-init's one file, replaced whole, makes it.
fn remove_others(root: &Root, store: Store, applied: &mut Applied) {
    let dir = match root.dir_optional(store.local_dir) {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(err) => {
            applied
                .errors
                .push(PathError::fail("open", store.local_dir)(err).into());
            return;
        }
    };
    let entries = match dir.entries() {
        Ok(entries) => entries,
        Err(err) => {
            applied
                .errors
                .push(PathError::fail("list", store.local_dir)(err).into());
            return;
        }
    };
    for (name, _) in entries {
        let Some(name) = name.to_str().filter(|n| is_certificate_file(n)) else {
            continue;
        };
        if applied.written.iter().any(|w| w == name) {
            continue;
        }
        let path = format!("{}/{name}", store.local_dir);
        match dir.remove_file(name.as_ref()) {
            Ok(true) => applied.removed.push(name.to_owned()),
            Ok(false) => {}
            Err(err) => applied
                .errors
                .push(PathError::fail("remove", path)(err).into()),
        }
    }
}

/// Puts `!` in front of every selected entry of the store's selection file, under one header
/// line (kept when it is there already); tells debconf to select no new CAs. Returns how many
/// entries it deselected.
fn deselect_defaults(root: &Root, store: Store) -> Result<usize, CaCertsError> {
    let Some(config) = store.config else {
        return Err(CaCertsError::NoSelection {
            update: store.update,
        });
    };
    let Some(text) = root
        .read_optional_text(config)
        .map_err(PathError::fail("read", root.host_path(config)))?
    else {
        return Ok(0);
    };
    let (edited, deselected) = deselect(&text);
    if deselected > 0 {
        root.write_atomic(config, edited.as_bytes(), &WriteOptions::keep_or(0o644))?;
    }
    if root.is_host() {
        // Only where debconf is (a Debian family image); its absence changes nothing here.
        tool::run_with_input("debconf-set-selections", &["-"], DEBCONF_NO_NEW)?;
    }
    Ok(deselected)
}

/// The selection file with every selected entry deselected, and how many there were.
pub fn deselect(text: &str) -> (String, usize) {
    let mut out = Vec::new();
    let mut header = text.lines().any(|l| l == DESELECTED_HEADER);
    let mut count = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            out.push(line.to_owned());
            continue;
        }
        if !header {
            out.push(DESELECTED_HEADER.to_owned());
            header = true;
        }
        out.push(format!("!{line}"));
        count += 1;
    }
    (out.join("\n") + "\n", count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selected_entry_is_deselected_once() {
        let conf = "# Debian's header\nmozilla/A.crt\n!mozilla/B.crt\n\nmozilla/C.crt\n";
        let (edited, n) = deselect(conf);
        assert_eq!(n, 2);
        assert_eq!(
            edited,
            format!(
                "# Debian's header\n{DESELECTED_HEADER}\n!mozilla/A.crt\n!mozilla/B.crt\n\n!mozilla/C.crt\n"
            )
        );
        // Again: nothing left to deselect, the header not doubled.
        assert_eq!(deselect(&edited), (edited.clone(), 0));
    }

    #[test]
    fn certificate_files_are_numbered_from_one() {
        assert_eq!(file_name(1), "metaboot-ca-cert-1.crt");
    }

    #[test]
    fn the_limits_hold_a_real_bundle() {
        assert_eq!(MAX_CA_CERTS, 100);
        assert_eq!(MAX_CA_CERT_BYTES, 64 * 1024);
    }

    #[test]
    fn too_many_or_too_large_entries_are_refused_and_the_rest_written() {
        use crate::userdata::cloud_config::OneOrMany;
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cert = format!("{PEM_BEGIN}\nMIIB\n-----END CERTIFICATE-----\n");
        let mut trusted = vec![cert.clone(); MAX_CA_CERTS + 1];
        trusted[0] = format!("{PEM_BEGIN}\n{}", "A".repeat(MAX_CA_CERT_BYTES));
        let config = CaCerts {
            trusted: Some(OneOrMany::Many(trusted)),
            ..CaCerts::default()
        };
        let applied = apply(&root, &config);
        let errors: Vec<String> = applied.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                format!("101 trusted entries, more than {MAX_CA_CERTS}: the first 100 are used"),
                format!(
                    "trusted entry 1 is {} bytes, more than {MAX_CA_CERT_BYTES}: not written",
                    PEM_BEGIN.len() + 1 + MAX_CA_CERT_BYTES
                ),
            ]
        );
        assert_eq!(applied.written.len(), MAX_CA_CERTS - 1);
        assert_eq!(applied.written.last().unwrap(), "metaboot-ca-cert-100.crt");
        assert!(!applied.updated, "not the host root");
    }
}
