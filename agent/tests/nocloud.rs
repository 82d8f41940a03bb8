//! `metaboot run --root TMP` with a NoCloud seed made the way libvirt users make one (the
//! files `cloud-localds` puts on an iso9660 `cidata` image or a vfat `CIDATA` one, made here
//! with xorriso and mkfs.vfat + mcopy), read back out of the image with the image tools into
//! the seed directory, and the image itself attached as a block device. The metadata service
//! is never asked; the guest becomes what the seed says.

mod support;

use std::path::Path;
use std::process::Command;

use support::testutil::{require_tool, run};
use support::*;

const INSTANCE_ID: &str = "iid-libvirt-7f3a";
const VENDOR_DATA: &str = "#cloud-config\npreserve_hostname: false\n";
const SEED_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINoCloudMetaDataKey libvirt@host";

fn seed_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "meta-data",
            format!(
                "instance-id: {INSTANCE_ID}\nlocal-hostname: seeded.example.org\n\
                 public-keys:\n  - {SEED_KEY}\n"
            ),
        ),
        (
            "user-data",
            format!(
                "#cloud-config\nssh_authorized_keys:\n  - {USER_KEY}\n\
                 write_files:\n  - path: /etc/seeded\n    content: from the seed\n"
            ),
        ),
        ("vendor-data", VENDOR_DATA.to_owned()),
        (
            "network-config",
            "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n".to_owned(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// An iso9660 seed as `cloud-localds` makes it (`genisoimage -volid cidata -joliet -rock`).
fn iso_seed(work: &Path, files: &Path) -> std::path::PathBuf {
    let image = work.join("seed.iso");
    run(Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-volid", "cidata", "-joliet", "-rock", "-o",
        ])
        .arg(&image)
        .arg(files));
    image
}

/// A vfat seed as `cloud-localds --filesystem vfat` makes it (`mkfs.vfat -n cidata`, then
/// `mcopy`); mkfs.vfat stores the label upper-case.
fn vfat_seed(work: &Path, files: &Path) -> std::path::PathBuf {
    let image = work.join("seed.img");
    run(Command::new("mkfs.vfat")
        .args(["-n", "CIDATA", "-C"])
        .arg(&image)
        .arg("2048"));
    for name in ["meta-data", "user-data", "vendor-data", "network-config"] {
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(files.join(name))
            .arg("::"));
    }
    image
}

/// Copies the seed's files out of `image` into `dest`, with the image tools.
fn extract(image: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    if image.extension().is_some_and(|e| e == "iso") {
        run(Command::new("osirrox")
            .arg("-indev")
            .arg(image)
            .args(["-extract", "/"])
            .arg(dest));
    } else {
        for name in ["meta-data", "user-data", "vendor-data", "network-config"] {
            run(Command::new("mcopy")
                .arg("-i")
                .arg(image)
                .arg(format!("::{name}"))
                .arg(dest.join(name)));
        }
    }
}

#[test]
fn a_libvirt_seed_provisions_the_guest_without_the_metadata_service() {
    for tool in ["xorriso", "osirrox", "mkfs.vfat", "mcopy"] {
        if !require_tool(tool) {
            return;
        }
    }
    for vfat in [false, true] {
        let guest = Guest::new();
        let work = guest.dir.path();
        seed_files(&work.join("files"));
        let image = if vfat {
            vfat_seed(work, &work.join("files"))
        } else {
            iso_seed(work, &work.join("files"))
        };
        extract(&image, &guest.path("/var/lib/cloud/seed/nocloud"));
        // The image as a block device too: found by its label (it cannot be mounted here: it
        // is a file), and the seed directory serves.
        std::fs::create_dir_all(guest.path("/sys/class/block/vdb")).unwrap();
        std::fs::create_dir_all(guest.path("/dev")).unwrap();
        std::fs::copy(&image, guest.path("/dev/vdb")).unwrap();

        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "vfat={vfat}: {stderr}");
        let status = guest.status();
        assert_eq!(status["source"], "nocloud");
        assert_eq!(status["instance_id"], INSTANCE_ID);
        assert_eq!(guest.server.hits("/openstack"), 0, "never asked");
        assert_eq!(guest.read("/etc/hostname"), "seeded\n");
        assert_eq!(
            guest.read("/root/.ssh/authorized_keys"),
            format!("{SEED_KEY}\n{USER_KEY}\n")
        );
        assert_eq!(guest.read("/etc/seeded"), "from the seed");
        assert_eq!(
            guest.step("network-data"),
            ("ok".to_owned(), "network-config version 2".to_owned())
        );
        assert_eq!(
            guest.step("vendor-data"),
            ("ok".to_owned(), "1 cloud-config part, 0 scripts".to_owned())
        );
        let query = guest.metaboot(&["query", "vendor-data"]);
        assert_eq!(String::from_utf8_lossy(&query.stdout), VENDOR_DATA);
        let query = guest.metaboot(&["query", "public-keys"]);
        assert_eq!(
            String::from_utf8_lossy(&query.stdout),
            format!("{SEED_KEY}\n")
        );

        // A second boot: the same instance, per-instance steps not again.
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(guest.status()["new_instance"], false);
        assert_eq!(guest.step("write-files").0, "skipped");
    }
}

/// A seed directory whose `network-config` is cloud-init's switch to leave the network alone,
/// `network: {config: disabled}` or `config: disabled` (no `version`): the run is no error, the
/// `network` step skips, nothing is written for the network.
#[test]
fn a_network_config_of_config_disabled_leaves_the_network_alone() {
    for network_config in ["network:\n  config: disabled\n", "config: disabled\n"] {
        let guest = Guest::new();
        let seed = guest.path("/var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(
            seed.join("meta-data"),
            format!("instance-id: {INSTANCE_ID}\n"),
        )
        .unwrap();
        std::fs::write(seed.join("user-data"), "#cloud-config\n").unwrap();
        std::fs::write(seed.join("network-config"), network_config).unwrap();

        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{network_config}: {stderr}");
        assert_eq!(guest.status()["source"], "nocloud");
        assert_eq!(
            guest.step("network-data"),
            (
                "ok".to_owned(),
                "network-config: {config: disabled}".to_owned()
            )
        );
        assert_eq!(
            guest.step("network"),
            (
                "skipped".to_owned(),
                "network-config: {config: disabled}".to_owned()
            )
        );
        assert!(!guest.path("/etc/resolv.conf").exists());
    }
}

/// A metadata service that does not know this instance (404 for `meta_data.json` and for
/// `/openstack`) is not this guest's datasource: the next one listed, a NoCloud seed here (a
/// config drive alike), provisions it, as cloud-init moves on when `wait_for_url` saw no 200.
#[test]
fn a_metadata_service_that_does_not_know_the_instance_yields_to_the_next_datasource() {
    let guest = Guest::new();
    // As nova's service for an address it cannot map to an instance: 404 for every path.
    std::fs::remove_dir_all(guest.tree.join("openstack")).unwrap();
    guest.config("datasources: [metadata-service, nocloud]\n");
    seed_files(&guest.path("/var/lib/cloud/seed/nocloud"));
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let status = guest.status();
    assert_eq!(status["source"], "nocloud");
    assert_eq!(status["instance_id"], INSTANCE_ID);
    assert_eq!(guest.read("/etc/hostname"), "seeded\n");
    let warnings = status["warnings"].to_string();
    // The URLs asked are named, and what the two 404s mean.
    let base = guest.server.url();
    let newest = metaboot_proto::OpenStackVersion::LATEST.date();
    let first = format!("{base}/openstack/{newest}/meta_data.json");
    assert!(
        warnings.contains(&format!(
            "The metadata service answered 404 for {first} and for {base}/openstack: it does \
             not know this instance"
        )) && warnings.contains("trying the next datasource"),
        "{warnings}"
    );
}

/// A NoCloud instance id that is no file name (`instance-id: "web/01 (blue)"`, which cloud-init
/// takes): the guest is provisioned, its state goes to an encoded directory inside
/// `instances/`, and a second boot is the same instance.
#[test]
fn an_instance_id_that_is_no_file_name_is_still_one_instance() {
    let id = "web/01 (blue)";
    let guest = Guest::new();
    let seed = guest.path("/var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), format!("instance-id: {id:?}\n")).unwrap();
    std::fs::write(
        seed.join("user-data"),
        "#cloud-config\nwrite_files:\n  - path: /etc/seeded\n    content: once\n",
    )
    .unwrap();

    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.status()["instance_id"], id);
    assert_eq!(guest.read("/etc/seeded"), "once");
    let dir = guest.path("/var/lib/metaboot/instances/web%2F01%20%28blue%29");
    assert!(dir.join("boot-finished").is_file(), "{dir:?}");
    assert!(!guest.path("/var/lib/metaboot/instances/web").exists());

    std::fs::remove_file(guest.path("/etc/seeded")).unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.status()["new_instance"], false);
    assert_eq!(guest.step("write-files").0, "skipped");
    assert!(!guest.path("/etc/seeded").exists());
}

/// A seed with `launch-index: 1` (the second instance of a multi-create request) and MIME user
/// data with parts for instance 0 and instance 1 (each appending to `write_files`): only its own
/// part and the unmarked one apply.
#[test]
fn a_seed_with_a_launch_index_applies_only_the_parts_for_it() {
    let guest = Guest::new();
    let seed = guest.path("/var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        format!("instance-id: {INSTANCE_ID}\nlaunch-index: 1\n"),
    )
    .unwrap();
    let part = |header: &str, path: &str| {
        format!(
            "--B\nContent-Type: text/cloud-config\n\
             Merge-Type: dict(recurse_array)+list(append)+str()\n{header}\n\
             #cloud-config\nwrite_files:\n  - path: {path}\n    content: x\n"
        )
    };
    let user_data = format!(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n{}{}{}--B--\n",
        part("", "/etc/for-all"),
        part("Launch-Index: 0\n", "/etc/for-zero"),
        part("Launch-Index: 1\n", "/etc/for-one"),
    );
    std::fs::write(seed.join("user-data"), user_data).unwrap();

    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(guest.path("/etc/for-one").is_file());
    assert!(guest.path("/etc/for-all").is_file());
    assert!(!guest.path("/etc/for-zero").exists());
}

/// A seed whose meta-data is no YAML mapping (`local-hostname: a: b`, or a tab-indented line,
/// which YAML forbids): as cloud-init's NoCloud (`load_yaml` warns and gives `None`), the run
/// goes on with the defaults, instance-id `nocloud`, the user data is applied, and the status
/// says which meta-data could not be read and why.
#[test]
fn meta_data_that_does_not_parse_is_a_warning_and_the_user_data_still_applies() {
    for meta_data in [
        "local-hostname: a: b\n",
        "instance-id: i-1\n\tlocal-hostname: h\n",
    ] {
        let guest = Guest::new();
        let seed = guest.path("/var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(seed.join("meta-data"), meta_data).unwrap();
        std::fs::write(
            seed.join("user-data"),
            "#cloud-config\nwrite_files:\n  - path: /etc/seeded\n    content: applied\n",
        )
        .unwrap();

        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{meta_data:?}: {stderr}");
        let status = guest.status();
        assert_eq!(status["source"], "nocloud");
        assert_eq!(status["instance_id"], "nocloud", "{meta_data:?}");
        assert_eq!(guest.step("meta-data").0, "ok");
        assert_eq!(guest.read("/etc/seeded"), "applied", "{meta_data:?}");
        let warnings = status["warnings"].to_string();
        assert!(
            warnings.contains(&format!(
                "NoCloud: cannot read the meta-data in {}: Invalid YAML",
                "/var/lib/cloud/seed/nocloud"
            )) && warnings.contains("the defaults apply (instance-id `nocloud`)"),
            "{meta_data:?}: {warnings}"
        );
    }
}
