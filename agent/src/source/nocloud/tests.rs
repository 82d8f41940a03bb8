//! NoCloud tests: the seed layouts in `tests/fixtures/nocloud/` read as cloud-init reads them,
//! seeds found in a seed directory and on labelled devices (real images; mounting them needs a
//! kernel with iso9660, which the test hosts lack: the QEMU scenario `router/nocloud` does it).

use std::fs;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::retry::Retry;
use crate::root::Root;
use crate::source::drive::tests::{add_device, iso_image};
use crate::source::http::HttpClient;
use crate::testutil::require_tool;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nocloud")
        .join(name)
}

fn seed(name: &str) -> NoCloud {
    NoCloud::from_dir(&fixture(name))
        .unwrap()
        .unwrap_or_else(|| panic!("{name} is a seed"))
}

fn meta(source: &mut NoCloud) -> Value {
    serde_json::from_slice(&source.meta_data().unwrap()).unwrap()
}

#[test]
fn cloud_localds_seed() {
    let mut source = seed("cloud-localds");
    assert_eq!(
        meta(&mut source),
        json!({"uuid": "iid-local01", "hostname": "cloudimg", "name": "cloudimg"})
    );
    assert_eq!(
        source.user_data().unwrap().unwrap(),
        fs::read(fixture("cloud-localds/user-data")).unwrap()
    );
    assert_eq!(source.vendor_data().unwrap(), None);
    assert_eq!(source.vendor_data2().unwrap(), None, "OpenStack's only");
    assert_eq!(source.network_data().unwrap(), None);
}

#[test]
fn seed_directory_keys_are_flattened_and_empty_entries_dropped() {
    let mut source = seed("seed-dir");
    assert_eq!(
        meta(&mut source),
        json!({
            "uuid": "i-87018aed",
            "hostname": "seed-host.compute-1.internal",
            "name": "seed-host.compute-1.internal",
            "public_keys": {
                "0000": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISeedDirectoryKey seed-keypair.us-east-1"
            },
        })
    );
}

#[test]
fn proxmox_seed_empty_vendor_data_and_network_config_v1() {
    let mut source = seed("proxmox");
    assert_eq!(
        meta(&mut source),
        json!({"uuid": "8d9e1f0a3b7c4d2e6f5a4b3c2d1e0f9a8b7c6d5e", "hostname": "", "name": ""})
    );
    assert_eq!(source.vendor_data().unwrap(), None, "empty is absent");
    assert_eq!(
        source.network_data().unwrap(),
        Some(NetworkData::NetworkConfig(
            fs::read(fixture("proxmox/network-config")).unwrap()
        ))
    );
}

#[test]
fn kubevirt_seed() {
    let mut source = seed("kubevirt");
    let meta = meta(&mut source);
    assert_eq!(meta["uuid"], "5d307ca9-b3ef-428c-8861-06e72d69f224");
    assert_eq!(meta["hostname"], "vm-nocloud.example.org");
    assert!(matches!(
        source.network_data().unwrap(),
        Some(NetworkData::NetworkConfig(_))
    ));
}

#[test]
fn public_keys_as_text_one_key_a_line_and_empty_user_data_is_none() {
    let mut source = seed("public-keys-text");
    assert_eq!(
        meta(&mut source)["public_keys"],
        json!({
            "0000": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirstTextKey first@host",
            "0001": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABSecondTextKey second@host",
        })
    );
    assert_eq!(source.user_data().unwrap(), None);
}

#[test]
fn a_launch_index_is_carried_when_it_is_a_number() {
    let dir = tempfile::tempdir().unwrap();
    for (line, index) in [
        ("launch-index: 2\n", Some(json!(2))),
        ("launch-index: '3'\n", Some(json!(3))),
        ("launch-index: first\n", None),
        ("", None),
    ] {
        write_seed(dir.path(), &format!("instance-id: a\n{line}"), "");
        let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
        assert_eq!(
            meta(&mut source).get("launch_index").cloned(),
            index,
            "{line}"
        );
    }
}

#[test]
fn meta_data_without_user_data_is_no_seed() {
    assert!(
        NoCloud::from_dir(&fixture("no-user-data"))
            .unwrap()
            .is_none()
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(NoCloud::from_dir(empty.path()).unwrap().is_none());
}

fn write_seed(dir: &Path, meta_data: &str, user_data: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("meta-data"), meta_data).unwrap();
    fs::write(dir.join("user-data"), user_data).unwrap();
}

#[test]
fn defaults_and_clear_errors_for_bad_meta_data() {
    let dir = tempfile::tempdir().unwrap();
    write_seed(dir.path(), "", "");
    let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
    assert_eq!(meta(&mut source)["uuid"], DEFAULT_INSTANCE_ID);

    write_seed(dir.path(), "instance-id: 42\nlocal-hostname: n1\n", "");
    let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
    assert_eq!(meta(&mut source)["uuid"], "42", "str() of a number");

    // The meta-data step's message for a seed whose meta-data is `text`.
    let error = |text: &str| {
        write_seed(dir.path(), text, "");
        let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
        crate::log::chain(source.meta_data().unwrap_err().as_ref())
    };
    assert_eq!(
        error("instance-id: {a: 1}\n"),
        "NoCloud: `instance-id` in meta-data must be a string, found {\"a\":1}"
    );
    assert!(error("public-keys: 7\n").contains("`public-keys`"));
}

/// Meta-data that is no YAML mapping, as cloud-init's `load_yaml` takes it: a warning, no keys,
/// the defaults; the seed's other documents are still used.
#[test]
fn meta_data_that_is_no_mapping_is_a_warning_and_the_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().display();
    for (text, why) in [
        ("instance-id: [a\n", "Invalid YAML"),
        ("local-hostname: a: b\n", "Invalid YAML"),
        ("instance-id: i-1\n\tlocal-hostname: h\n", "Invalid YAML"),
        (
            "- a list\n",
            "Expected a mapping at the top level, found a list",
        ),
    ] {
        write_seed(dir.path(), text, "#cloud-config\n");
        let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
        assert_eq!(
            meta(&mut source),
            json!({"uuid": DEFAULT_INSTANCE_ID, "hostname": "", "name": ""}),
            "{text:?}"
        );
        assert_eq!(
            source.user_data().unwrap().as_deref(),
            Some(&b"#cloud-config\n"[..])
        );
        let warnings = source.take_warnings();
        assert_eq!(warnings.len(), 1, "{text:?}: {warnings:?}");
        assert!(
            warnings[0].starts_with(&format!(
                "NoCloud: cannot read the meta-data in {seed}: {why}"
            )) && warnings[0].ends_with(
                "; none of its keys are used, the defaults apply (instance-id `nocloud`): \
                 make it a YAML mapping (`instance-id: …`)"
            ),
            "{text:?}: {warnings:?}"
        );
        assert!(source.take_warnings().is_empty(), "taken");
    }
}

#[test]
fn documents_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    write_seed(
        dir.path(),
        "instance-id: big\n",
        &"#".repeat(MAX_SEED_USER_DATA_BYTES as usize + 1),
    );
    let err = NoCloud::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            NoCloudError::Drive {
                source: DriveError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// A seed's user data may be larger than the metadata service's (local, and cloud-init has no
/// bound), up to what the decoder takes after gunzip.
#[test]
fn seed_user_data_is_bounded_by_what_the_decoder_takes() {
    use crate::source::http::MAX_USER_DATA_BYTES;
    const { assert!(MAX_SEED_USER_DATA_BYTES > MAX_USER_DATA_BYTES) };
    assert_eq!(MAX_SEED_USER_DATA_BYTES, MAX_DECOMPRESSED_BYTES as u64);
    let dir = tempfile::tempdir().unwrap();
    let big = format!("#cloud-config\n#{}\n", "x".repeat(2 * 1024 * 1024));
    write_seed(dir.path(), "instance-id: big\n", &big);
    let mut source = NoCloud::from_dir(dir.path()).unwrap().unwrap();
    assert_eq!(source.user_data().unwrap().unwrap().len(), big.len());
}

/// A seed that cannot be read (a file that is no file, user data over its bound) is a warning:
/// the next seed is read, and the error only explains why none was found.
#[test]
fn an_unreadable_seed_passes_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let bad = root.host_path(SEED_DIRS[0]);
    fs::create_dir_all(bad.join("user-data")).unwrap();
    fs::write(bad.join("meta-data"), "instance-id: bad\n").unwrap();
    write_seed(&root.host_path(SEED_DIRS[1]), "instance-id: net\n", "");
    let mut source = detect_in(&root).unwrap().unwrap();
    let meta: Value = serde_json::from_slice(&source.meta_data().unwrap()).unwrap();
    assert_eq!(meta["uuid"], "net");

    fs::remove_dir(bad.join("user-data")).unwrap();
    fs::write(
        bad.join("user-data"),
        vec![b'#'; MAX_SEED_USER_DATA_BYTES as usize + 1],
    )
    .unwrap();
    let mut source = detect_in(&root).unwrap().unwrap();
    let meta: Value = serde_json::from_slice(&source.meta_data().unwrap()).unwrap();
    assert_eq!(meta["uuid"], "net");

    // With no other seed, the bad one's error says why there is none.
    fs::remove_dir_all(root.host_path(SEED_DIRS[1])).unwrap();
    let err = detect_in(&root).err().expect("no usable seed");
    let shown = crate::log::chain(err.as_ref());
    assert!(
        shown.starts_with(&format!("NoCloud seed {}: ", SEED_DIRS[0]))
            && shown.contains("larger than"),
        "{shown}"
    );
}

/// A seed directory's files may be root's symlinks to anywhere on the machine (`user-data ->
/// /etc/seed/user-data`, `vendor-data -> ../common/vendor-data`), as cloud-init follows them;
/// they were resolved inside the seed directory and found missing, and the seed taken for none.
/// A user's link is never followed: the seed is refused, the error saying why.
#[test]
fn a_seed_directorys_symlinks_are_followed_through_the_machines_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let seed = root.host_path(SEED_DIRS[0]);
    let common = root.host_path("/var/lib/cloud/seed/common");
    fs::create_dir_all(&seed).unwrap();
    fs::create_dir_all(&common).unwrap();
    fs::create_dir_all(root.host_path("/etc/seed")).unwrap();
    fs::write(seed.join("meta-data"), "instance-id: linked\n").unwrap();
    let user_data = "#cloud-config\nhostname: linked\n";
    fs::write(root.host_path("/etc/seed/user-data"), user_data).unwrap();
    fs::write(common.join("vendor-data"), "#cloud-config\n").unwrap();
    std::os::unix::fs::symlink("/etc/seed/user-data", seed.join("user-data")).unwrap();
    std::os::unix::fs::symlink("../common/vendor-data", seed.join("vendor-data")).unwrap();
    let mut source = detect_in(&root).unwrap().expect("the linked seed");
    let meta: Value = serde_json::from_slice(&source.meta_data().unwrap()).unwrap();
    assert_eq!(meta["uuid"], "linked");
    assert_eq!(source.user_data().unwrap().unwrap(), user_data.as_bytes());
    assert_eq!(
        source.vendor_data().unwrap(),
        Some(VendorData::Plain(b"#cloud-config\n".to_vec()))
    );

    if !crate::testutil::require_root() {
        return;
    }
    std::os::unix::fs::lchown(seed.join("user-data"), Some(1000), Some(1000)).unwrap();
    let err = detect_in(&root).err().expect("a user's link is refused");
    let shown = crate::log::chain(err.as_ref());
    assert!(shown.contains("owned by uid 1000"), "{shown}");
}

/// A seed directory and a seed device: the device's documents replace the directory's, while
/// the directory's meta-data keys stay (cloud-init's `_merge_new_seed`).
#[test]
fn a_device_seed_is_merged_over_a_directory_seed() {
    let dir = tempfile::tempdir().unwrap();
    write_seed(
        &dir.path().join("dir"),
        "instance-id: from-dir\nlocal-hostname: dir-host\n",
        "#cloud-config\nhostname: dir\n",
    );
    fs::write(dir.path().join("dir/network-config"), "version: 2\n").unwrap();
    fs::write(dir.path().join("dir/vendor-data"), "#cloud-config\n").unwrap();
    write_seed(
        &dir.path().join("device"),
        "instance-id: from-device\npublic-keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDev dev@host]\n",
        "#cloud-config\nhostname: device\n",
    );
    fs::write(dir.path().join("device/network-config"), "").unwrap();
    let read = |name: &str| {
        Seed::read_dir(&dir.path().join(name), name.to_owned(), Mount::Own)
            .unwrap()
            .unwrap()
    };
    let mut source = NoCloud::from_seeds(vec![read("dir"), read("device")]).unwrap();
    assert_eq!(
        meta(&mut source),
        json!({
            "uuid": "from-dir",
            "hostname": "dir-host",
            "name": "dir-host",
            "public_keys": {"0000": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDev dev@host"},
        })
    );
    assert_eq!(
        source.user_data().unwrap().unwrap(),
        b"#cloud-config\nhostname: device\n"
    );
    assert_eq!(
        source.vendor_data().unwrap(),
        Some(VendorData::Plain(b"#cloud-config\n".to_vec())),
        "the device has none, the directory's stays"
    );
    assert_eq!(
        source.network_data().unwrap(),
        Some(NetworkData::NetworkConfig(b"version: 2\n".to_vec())),
        "an empty network-config replaces nothing"
    );
}

fn detect_in(root: &Root) -> Result<Option<Box<dyn Source>>, SourceError> {
    let client = HttpClient::new(Duration::from_secs(1), Retry::until(Instant::now()));
    detect(&Probe {
        root,
        urls: &["http://127.0.0.1:9".to_owned()],
        left_out: &[],
        client: &client,
    })
}

#[test]
fn seed_directories_in_cloud_init_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    assert!(detect_in(&root).unwrap().is_none());
    // nocloud without user-data is no seed: nocloud-net is read next.
    fs::create_dir_all(root.host_path(SEED_DIRS[0])).unwrap();
    fs::write(
        root.host_path(SEED_DIRS[0]).join("meta-data"),
        "instance-id: a\n",
    )
    .unwrap();
    assert!(detect_in(&root).unwrap().is_none());
    write_seed(&root.host_path(SEED_DIRS[1]), "instance-id: net\n", "");
    let mut source = detect_in(&root).unwrap().unwrap();
    assert_eq!(source.name(), NAME);
    let meta: Value = serde_json::from_slice(&source.meta_data().unwrap()).unwrap();
    assert_eq!(meta["uuid"], "net");
}

/// A `cidata` or `CIDATA` image is found by its label; here it is a file, not a block device,
/// so mounting it fails: with no other seed that is the error the chooser reports, with a seed
/// directory the directory serves.
#[test]
fn cidata_devices_are_found_by_label_in_either_spelling() {
    if !require_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    write_seed(&content, "instance-id: iso\n", "");
    for label in ["cidata", "CIDATA"] {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        add_device(&root, "sr0", Some(&iso_image(dir.path(), label, &content)));
        let err = detect_in(&root).err().expect("mounting a plain file fails");
        let shown = crate::log::chain(err.as_ref());
        let device = root.host_path("/dev/sr0");
        assert!(
            shown.starts_with(&format!(
                "NoCloud seed {}: Failed to mount {}",
                device.display(),
                device.display()
            )),
            "{shown}"
        );
        write_seed(&root.host_path(SEED_DIRS[0]), "instance-id: dir\n", "");
        assert_eq!(detect_in(&root).unwrap().unwrap().name(), NAME);
    }
    // With several, the last attached is tried first (cloud-init sorts them in reverse):
    // here both fail to mount, and the error kept is the first tried one's.
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::open(root_dir.path()).unwrap();
    for name in ["sr0", "sr1"] {
        add_device(
            &root,
            name,
            Some(&iso_image(dir.path(), "cidata", &content)),
        );
    }
    let shown = crate::log::chain(detect_in(&root).err().expect("no seed mounts").as_ref());
    let last = root.host_path("/dev/sr1");
    assert!(
        shown.starts_with(&format!("NoCloud seed {}:", last.display())),
        "{shown}"
    );
    // cloud-init looks for the two spellings only.
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::open(root_dir.path()).unwrap();
    add_device(
        &root,
        "sr0",
        Some(&iso_image(dir.path(), "CIData", &content)),
    );
    assert!(detect_in(&root).unwrap().is_none());
}
