//! `run --image`'s look at a file: names, refusals (with small images qemu-img makes in a
//! temporary directory, some with headers patched by hand), the real file behind a path and
//! the built image it holds.

use super::*;

#[test]
fn image_names_become_short_slugs() {
    assert_eq!(
        slug("debian-12-genericcloud-amd64"),
        "debian-12-genericcloud-amd64"
    );
    assert_eq!(slug("My Image.v2"), "my-image-v2");
    assert_eq!(slug("***"), "image");
    assert_eq!(slug(&"x".repeat(100)).len(), MAX_NAME_CHARS);
    assert_eq!(
        name_of(Path::new("/c/debian-cloud-init/disk.qcow2")),
        "debian-cloud-init"
    );
    assert_eq!(
        name_of(Path::new("/d/debian-12-genericcloud-amd64.qcow2")),
        "debian-12-genericcloud-amd64"
    );
}

#[test]
fn bad_files_are_refused_before_qemu_img_runs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.qcow2");
    let err = inspect(&missing).unwrap_err();
    assert!(matches!(err, ImageError::Missing(_)) && err.is_bad_input());
    assert_eq!(
        err.to_string(),
        format!("{}: no such file", missing.display())
    );
    let err = inspect(dir.path()).unwrap_err();
    assert!(matches!(err, ImageError::NotAFile(_)), "{err}");
}

/// qemu-img, or a skip (a failure in CI) when it is not installed.
fn have_qemu_img() -> bool {
    crate::process::tool_for_test("qemu-img", "scripts/install-lab-deps installs qemu-utils")
}

/// `qemu-img create -q -f qcow2 ARGS… FILE 1M`.
fn create_qcow2(args: &[&str], file: &Path) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .args(args)
        .arg(file)
        .arg("1M")
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img create {args:?}: {out:?}");
}

/// Where a qcow2 header has its encryption method (big-endian; 1 is AES, 2 LUKS).
const QCOW2_CRYPT_METHOD_OFFSET: u64 = 32;

/// Marks a qcow2 as AES-encrypted in its header, as `qemu-img info` then reports it (a real
/// LUKS image needs a PBKDF benchmark that fails on a busy machine).
fn mark_encrypted(file: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(QCOW2_CRYPT_METHOD_OFFSET)).unwrap();
    f.write_all(&1u32.to_be_bytes()).unwrap();
}

/// The whole backing chain must open: a qcow2 whose backing file is gone, or whose data is
/// encrypted, is bad input (exit 2), refused before any overlay is made on it.
#[test]
fn a_missing_backing_file_or_an_encrypted_image_is_refused() {
    if !have_qemu_img() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    create_qcow2(&[], &p("base.qcow2"));
    // -u: qemu-img create would check the backing file itself.
    create_qcow2(
        &["-u", "-b", "base.qcow2", "-F", "qcow2"],
        &p("overlay.qcow2"),
    );
    create_qcow2(
        &["-u", "-b", "missing.qcow2", "-F", "qcow2"],
        &p("orphan.qcow2"),
    );
    let info = inspect(&p("overlay.qcow2")).unwrap();
    assert_eq!(
        (info.format.as_str(), info.virtual_size),
        ("qcow2", 1 << 20)
    );
    assert_eq!(info.backing.as_deref(), Some("base.qcow2"));
    assert_eq!(info.backing_files, [p("base.qcow2")]);

    let orphan = p("orphan.qcow2");
    let err = inspect(&orphan).unwrap_err();
    assert!(
        matches!(err, ImageError::Backing { .. }) && err.is_bad_input(),
        "{err:?}"
    );
    let line = err.to_string();
    assert!(
        line.starts_with(&format!(
            "{}: its backing file {} cannot be opened: ",
            orphan.display(),
            p("missing.qcow2").display()
        )),
        "{line}"
    );
    assert!(
        line.contains("No such file") && !line.contains('\n'),
        "{line}"
    );

    let encrypted = p("encrypted.qcow2");
    create_qcow2(&[], &encrypted);
    mark_encrypted(&encrypted);
    let err = inspect(&encrypted).unwrap_err();
    assert!(
        matches!(err, ImageError::Encrypted(_)) && err.is_bad_input(),
        "{err:?}"
    );
    // Also as the backing file of a plain overlay.
    create_qcow2(
        &["-u", "-b", "encrypted.qcow2", "-F", "qcow2"],
        &p("on-encrypted.qcow2"),
    );
    let err = inspect(&p("on-encrypted.qcow2")).unwrap_err();
    assert!(matches!(err, ImageError::Encrypted(_)), "{err:?}");
}

/// `qemu-img create -q -f FORMAT FILE 1M`.
fn create_image(format: &str, file: &Path) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", format])
        .arg(file)
        .arg("1M")
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img create -f {format}: {out:?}");
}

/// The refusal `inspect` gives `file`: bad input, on one line.
fn refusal(file: &Path) -> ImageError {
    let err = inspect(file).unwrap_err();
    assert!(err.is_bad_input(), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");
    err
}

/// A chain that would have QEMU (root, unsandboxed) give the guest anything but plain image
/// files is refused before anything starts: a device as backing file (named, or behind a
/// symbolic link), a protocol or a `json:` spec, a qcow2 data file, a format that names
/// files of its own (VMDK), a raw file with no boot sector (a key, a password file), a loop.
#[test]
fn a_chain_that_reaches_past_plain_image_files_is_refused() {
    if !have_qemu_img() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let on = |backing: &str, format: &str, file: &str| {
        create_qcow2(&["-u", "-b", backing, "-F", format], &p(file));
        p(file)
    };
    std::os::unix::fs::symlink("/dev/null", p("innocent.raw")).unwrap();
    let devices = [
        on("/dev/null", "raw", "device.qcow2"),
        on("innocent.raw", "raw", "device-link.qcow2"),
        on(
            r#"json:{"driver":"file","filename":"/etc/hostname"}"#,
            "raw",
            "json.qcow2",
        ),
        on("file:/etc/hostname", "raw", "protocol.qcow2"),
    ];
    for image in &devices {
        let err = refusal(image);
        assert!(
            matches!(
                err,
                ImageError::Unsafe {
                    why: layer::Refusal::NotAPlainFile { .. },
                    ..
                }
            ),
            "{}: {err:?}",
            image.display()
        );
        assert!(err.to_string().contains("qemu-img rebase"), "{err}");
    }

    create_qcow2(
        &["-o", &format!("data_file={}", p("data.raw").display())],
        &p("data-file.qcow2"),
    );
    for image in [
        p("data-file.qcow2"),
        on("data-file.qcow2", "qcow2", "on-data-file.qcow2"),
    ] {
        let err = refusal(&image);
        assert!(
            matches!(
                &err,
                ImageError::Unsafe {
                    why: layer::Refusal::DataFile { data_file, .. },
                    ..
                } if data_file.ends_with("data.raw")
            ),
            "{}: {err:?}",
            image.display()
        );
    }

    create_image("vmdk", &p("extents.vmdk"));
    for image in [
        p("extents.vmdk"),
        on("extents.vmdk", "vmdk", "on-vmdk.qcow2"),
    ] {
        let err = refusal(&image);
        assert!(
            matches!(
                &err,
                ImageError::Unsafe {
                    why: layer::Refusal::Format { format, .. },
                    ..
                } if format == "vmdk"
            ),
            "{}: {err:?}",
            image.display()
        );
    }

    std::fs::write(
        p("id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n".repeat(40),
    )
    .unwrap();
    let err = refusal(&on("id_ed25519", "raw", "on-key.qcow2"));
    assert!(
        matches!(err, ImageError::NotADisk { .. }) && err.to_string().contains("id_ed25519"),
        "{err:?}"
    );

    on("b.qcow2", "qcow2", "a.qcow2");
    on("a.qcow2", "qcow2", "b.qcow2");
    let err = refusal(&p("a.qcow2"));
    assert!(
        matches!(
            err,
            ImageError::Unsafe {
                why: layer::Refusal::TooLong,
                ..
            }
        ),
        "{err:?}"
    );

    // Plain image files pass: a raw disk with a boot sector under a qcow2 under a qcow2.
    let mut disk = vec![0u8; 1 << 20];
    disk[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2].copy_from_slice(&BOOT_SIGNATURE);
    std::fs::write(p("disk.raw"), &disk).unwrap();
    on("disk.raw", "raw", "middle.qcow2");
    let info = inspect(&on("middle.qcow2", "qcow2", "top.qcow2")).unwrap();
    assert_eq!(info.backing_files, [p("middle.qcow2"), p("disk.raw")]);
}

/// Sets `bits` in a qcow2's incompatible features, by hand.
fn set_incompatible(file: &Path, bits: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut head = [0u8; header::INCOMPATIBLE_FEATURES_OFFSET + 8];
    File::open(file).unwrap().read_exact(&mut head).unwrap();
    let at = header::INCOMPATIBLE_FEATURES_OFFSET;
    let features = u64::from_be_bytes(head[at..].try_into().unwrap()) | bits;
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&features.to_be_bytes()).unwrap();
}

/// An incompatible feature no QEMU knows: qemu-img refuses to open the file at all.
const UNKNOWN_FEATURE: u64 = 1 << 40;

/// The data file `file`'s refusal names, if it is a data file's.
fn refused_data_file(file: &Path) -> String {
    match refusal(file) {
        ImageError::Unsafe {
            why: layer::Refusal::DataFile { data_file, .. },
            ..
        } => data_file,
        err => panic!("{}: {err:?}", file.display()),
    }
}

/// A qemu-img without the fix for CVE-2024-4467 opens a qcow2's data file even for `info`, as
/// root: the header is read first. A data file is refused from the header alone: named by it
/// (and gone, which such a qemu-img fails to open), only flagged by a bit set by hand (which a
/// fixed qemu-img reports as no data file at all), in a backing file, in a file qemu-img
/// cannot open at all (so the refusal comes before it runs); so is a `json:` backing name.
#[test]
fn a_qcow2_header_with_a_data_file_is_refused_before_qemu_img_runs() {
    if !have_qemu_img() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    let data = p("data.raw");
    create_qcow2(
        &["-o", &format!("data_file={}", data.display())],
        &p("named.qcow2"),
    );
    assert_eq!(
        refused_data_file(&p("named.qcow2")),
        data.display().to_string()
    );
    std::fs::remove_file(&data).unwrap();
    assert_eq!(
        refused_data_file(&p("named.qcow2")),
        data.display().to_string()
    );

    create_qcow2(&[], &p("flagged.qcow2"));
    set_incompatible(&p("flagged.qcow2"), header::INCOMPAT_DATA_FILE);
    assert_eq!(
        refused_data_file(&p("flagged.qcow2")),
        header::UNNAMED_DATA_FILE
    );
    create_qcow2(
        &["-u", "-b", "flagged.qcow2", "-F", "qcow2"],
        &p("on-flagged.qcow2"),
    );
    assert_eq!(
        refused_data_file(&p("on-flagged.qcow2")),
        header::UNNAMED_DATA_FILE
    );

    create_qcow2(&[], &p("unopenable.qcow2"));
    set_incompatible(&p("unopenable.qcow2"), UNKNOWN_FEATURE);
    assert!(
        matches!(
            refusal(&p("unopenable.qcow2")),
            ImageError::Unreadable { .. }
        ),
        "qemu-img opens a qcow2 with an unknown feature"
    );
    set_incompatible(&p("unopenable.qcow2"), header::INCOMPAT_DATA_FILE);
    assert_eq!(
        refused_data_file(&p("unopenable.qcow2")),
        header::UNNAMED_DATA_FILE
    );

    let spec = r#"json:{"driver":"file","filename":"/etc/hostname"}"#;
    create_qcow2(&["-u", "-b", spec, "-F", "raw"], &p("json.qcow2"));
    set_incompatible(&p("json.qcow2"), UNKNOWN_FEATURE);
    let err = refusal(&p("json.qcow2"));
    assert!(
        matches!(
            &err,
            ImageError::Unsafe {
                why: layer::Refusal::NotAPlainFile { backing, .. },
                ..
            } if backing == spec
        ),
        "{err:?}"
    );

    // A qcow2 header in a file opened as raw is only data.
    let mut disk = std::fs::read(p("flagged.qcow2")).unwrap();
    disk.resize(1 << 20, 0);
    disk[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2].copy_from_slice(&BOOT_SIGNATURE);
    std::fs::write(p("disk.raw"), &disk).unwrap();
    create_qcow2(&["-u", "-b", "disk.raw", "-F", "raw"], &p("on-raw.qcow2"));
    let info = inspect(&p("on-raw.qcow2")).unwrap();
    assert_eq!(info.backing_files, [p("disk.raw")]);
}

/// `--image <cache>/images/debian-metaboot/disk.qcow2` (the link to the newest build) is
/// the build it points at now, held so that no prune removes it; a file of no built image
/// is resolved and left alone.
#[test]
fn an_image_is_resolved_to_its_real_file_and_a_built_one_held() {
    let cache = tempfile::tempdir().unwrap();
    let built = cache.path().join("debian-metaboot-0123");
    std::fs::create_dir(&built).unwrap();
    std::fs::write(built.join(crate::image::disk::DISK), b"QFI").unwrap();
    let manifest = serde_json::json!({
        "kind": "debian-metaboot", "key": "0123", "inputs": [],
        "provisioner": "metaboot", "default_user": "debian", "packages": [],
        "kernel": "6.1.0-57-cloud-amd64", "disk_bytes": 3, "virtual_bytes": 3,
        "root_bytes": 3, "rootfs_cached": true, "build_seconds": 1.0,
    });
    std::fs::write(
        built.join(crate::image::MANIFEST),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let newest = cache.path().join("debian-metaboot");
    std::os::unix::fs::symlink("debian-metaboot-0123", &newest).unwrap();

    let given = newest.join("disk.qcow2");
    let real = resolve(&given).unwrap();
    assert_eq!(
        real,
        std::fs::canonicalize(built.join("disk.qcow2")).unwrap()
    );
    assert!(
        !crate::image::in_use::remove_unless_held(&built),
        "a built image booted as a user's own is held"
    );
    // The report still names it by the path it was given by.
    let own = OwnImage {
        image: real,
        given,
        info: ImageInfo {
            format: "qcow2".into(),
            virtual_size: 3,
            full_backing: None,
            backing: None,
            backing_format: None,
            encrypted: false,
            format_specific: None,
            backing_files: Vec::new(),
        },
        user: DEFAULT_USER.into(),
        path: MetadataPath::Router,
        via: Via::Qemu,
        boot_timeout: Duration::from_secs(1),
    };
    assert!(
        own.guest().name.ends_with("/debian-metaboot"),
        "{}",
        own.guest().name
    );
    assert!(
        own.guest()
            .image
            .starts_with(std::fs::canonicalize(&built).unwrap())
    );

    let plain = cache.path().join("mine.qcow2");
    std::fs::write(&plain, b"QFI").unwrap();
    assert_eq!(
        resolve(&plain).unwrap(),
        std::fs::canonicalize(&plain).unwrap()
    );
    assert!(built_image_dir(&plain).is_none());
    let err = resolve(&cache.path().join("gone.qcow2")).unwrap_err();
    assert!(matches!(err, ImageError::Missing(_)), "{err}");
}

#[test]
fn a_boot_sector_is_what_tells_a_raw_disk_from_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a disk\n".repeat(100)).unwrap();
    assert!(!has_boot_sector(&text));
    let disk = dir.path().join("disk.raw");
    let mut sector = vec![0u8; 4096];
    sector[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2].copy_from_slice(&BOOT_SIGNATURE);
    std::fs::write(&disk, &sector).unwrap();
    assert!(has_boot_sector(&disk));
    let short = dir.path().join("short");
    std::fs::write(&short, [0x55, 0xAA]).unwrap();
    assert!(!has_boot_sector(&short));
}
