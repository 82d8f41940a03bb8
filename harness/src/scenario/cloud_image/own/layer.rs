//! What makes one file of a user's image's backing chain unsafe to boot. QEMU runs as root and
//! unsandboxed, so any file the chain names is opened as root and its contents given to the
//! guest: a backing file that is a device (`/dev/sda`), a protocol (`nbd:…`, `file:…`) or a
//! `json:{…}` spec, a qcow2's external data file, a VMDK's extents (the class of OpenStack's
//! CVE-2024-32498). Each layer is looked at on its own (`qemu-img info` without
//! `--backing-chain` opens no backing file) before the next one is opened. A qemu-img without
//! the fix for CVE-2024-4467 (QEMU before 9.0.2, unless the distribution backported it) does
//! open a qcow2's data file even for `info`, as root: the harness reads each layer's qcow2
//! header first (see `header.rs` beside this file) and refuses a data file or a protocol or
//! `json:` backing name before qemu-img runs; what qemu-img then prints is checked here too.

use std::path::{Path, PathBuf};

/// The formats a file of the chain may have: qcow2 (whose backing and data files are looked
/// at here) and raw. Every other format QEMU knows can name files of its own (VMDK extents, a
/// LUKS payload, a quorum's children), which the harness would have to look at too.
pub const BOOTABLE_FORMATS: [&str; 2] = ["qcow2", "raw"];

/// Most files below an image (a kept overlay on a kept overlay on a built image needs 2): a
/// chain that loops stops here.
pub const MAX_BACKING_FILES: usize = 16;

/// Why a file of the chain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A format other than [`BOOTABLE_FORMATS`].
    #[error(
        "{file} is a {format} image, which can name further files QEMU would open as root: \
         only qcow2 and raw are booted (convert it: `qemu-img convert -O qcow2 FILE NEW.qcow2`)"
    )]
    Format {
        /// The file, or the backing file whose recorded format it is.
        file: String,
        /// Its format.
        format: String,
    },
    /// A qcow2 that keeps its data in another file.
    #[error(
        "{file} keeps its data in the external file {data_file}, which QEMU would open as root \
         and give the guest: boot a self-contained copy (`qemu-img convert -O qcow2 FILE \
         NEW.qcow2`)"
    )]
    DataFile {
        /// The qcow2.
        file: String,
        /// Its data file, as it names it.
        data_file: String,
    },
    /// A backing file that is not a plain image file.
    #[error(
        "its backing file {backing} is {what}, which QEMU would open as root and give the \
         guest: point the image at an image file (`qemu-img rebase -u -b FILE -F qcow2`)"
    )]
    NotAPlainFile {
        /// The backing file, as the image names it.
        backing: String,
        /// What it is instead.
        what: &'static str,
    },
    /// More than [`MAX_BACKING_FILES`] files below the image.
    #[error(
        "its backing chain has more than {MAX_BACKING_FILES} files, or loops: boot a flattened \
         copy (`qemu-img convert -O qcow2 FILE NEW.qcow2`)"
    )]
    TooLong,
}

/// Refuses `format` (of `file`, or recorded for it) unless it is one of [`BOOTABLE_FORMATS`].
pub fn bootable_format(file: &Path, format: &str) -> Result<(), Refusal> {
    if BOOTABLE_FORMATS.contains(&format) {
        return Ok(());
    }
    Err(Refusal::Format {
        file: file.display().to_string(),
        format: format.to_owned(),
    })
}

/// Refuses a qcow2 whose `format-specific` data (as `qemu-img info --output=json` prints it)
/// names an external data file.
pub fn no_data_file(
    file: &Path,
    format_specific: Option<&serde_json::Value>,
) -> Result<(), Refusal> {
    let data_file = format_specific.and_then(|specific| specific.pointer("/data/data-file"));
    match data_file {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(named) => Err(Refusal::DataFile {
            file: file.display().to_string(),
            data_file: named
                .as_str()
                .map_or_else(|| named.to_string(), str::to_owned),
        }),
    }
}

/// Whether QEMU takes `name` for a protocol (`nbd:…`, `file:…`, `json:{…}`) rather than a
/// path: a `:` before any `/`, as QEMU's `path_has_protocol` decides.
pub fn has_protocol(name: &str) -> bool {
    name.find([':', '/'])
        .is_some_and(|at| name[at..].starts_with(':'))
}

/// The path QEMU opens for the backing file `name` of `image` (an absolute path): `full`
/// (qemu-img's `full-backing-filename`) or `name` relative to the image's directory. Refused
/// when either is a protocol or a `json:` spec; whether the path is a regular file is the
/// caller's to look at (a missing one has its own message).
pub fn backing_path(image: &Path, name: &str, full: Option<&str>) -> Result<PathBuf, Refusal> {
    if has_protocol(name) || full.is_some_and(has_protocol) {
        return Err(Refusal::NotAPlainFile {
            backing: name.to_owned(),
            what: "a protocol or a json: spec, not a path",
        });
    }
    let dir = image.parent().unwrap_or(Path::new("/"));
    Ok(match full {
        Some(full) if Path::new(full).is_absolute() => PathBuf::from(full),
        _ => dir.join(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_json_specs_are_told_from_paths_as_qemu_tells_them() {
        for protocol in [
            "json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}",
            "file:/root/.ssh/id_ed25519",
            "nbd:host:10809",
            "nbd+unix:///export?socket=/run/x",
            "host_device:/dev/sda",
            "a:b.qcow2",
        ] {
            assert!(has_protocol(protocol), "{protocol}");
            let err = backing_path(Path::new("/i/top.qcow2"), protocol, Some(protocol));
            assert!(
                matches!(err, Err(Refusal::NotAPlainFile { .. })),
                "{protocol}: {err:?}"
            );
        }
        for path in [
            "base.qcow2",
            "/i/base.qcow2",
            "./a:b.qcow2",
            "/x:y/base.qcow2",
        ] {
            assert!(!has_protocol(path), "{path}");
        }
        assert_eq!(
            backing_path(
                Path::new("/i/top.qcow2"),
                "base.qcow2",
                Some("/i/base.qcow2")
            ),
            Ok(PathBuf::from("/i/base.qcow2"))
        );
        assert_eq!(
            backing_path(Path::new("/i/top.qcow2"), "base.qcow2", None),
            Ok(PathBuf::from("/i/base.qcow2"))
        );
        // A plain name whose full form qemu-img made a protocol is refused too.
        assert!(backing_path(Path::new("/i/t"), "b", Some("file:/etc/shadow")).is_err());
    }

    #[test]
    fn only_qcow2_and_raw_without_a_data_file_pass() {
        let file = Path::new("/i/top");
        for format in BOOTABLE_FORMATS {
            assert_eq!(bootable_format(file, format), Ok(()));
        }
        for format in [
            "vmdk",
            "luks",
            "vpc",
            "vdi",
            "qed",
            "parallels",
            "quorum",
            "",
        ] {
            assert!(bootable_format(file, format).is_err(), "{format}");
        }
        let specific = serde_json::json!({"type": "qcow2", "data": {"compat": "1.1"}});
        assert_eq!(no_data_file(file, Some(&specific)), Ok(()));
        assert_eq!(no_data_file(file, None), Ok(()));
        let specific = serde_json::json!({
            "type": "qcow2",
            "data": {"compat": "1.1", "data-file": "/dev/sda", "data-file-raw": false},
        });
        let err = no_data_file(file, Some(&specific)).unwrap_err();
        assert_eq!(
            err,
            Refusal::DataFile {
                file: "/i/top".into(),
                data_file: "/dev/sda".into()
            }
        );
        assert!(!err.to_string().contains('\n'));
    }
}
