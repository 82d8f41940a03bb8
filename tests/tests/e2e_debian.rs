//! The Debian cloud images end to end: `image build debian` makes (or finds in its cache)
//! `debian-cloud-init` and `debian-metaboot`; each boots under QEMU (TCG) from its disk alone
//! (SeaBIOS → GRUB → kernel, through a copy-on-write overlay) on a lab network served by
//! `metaboot-server all`, as a registered instance whose user data sets a host name, a user
//! with an SSH key and a password, and a runcmd; and each is checked from outside: key login as
//! `debian`, the host name, the user's key and password logins, sudo and runcmd, the host keys
//! sshd offers (ed25519, ECDSA, RSA) and that each is one the guest printed on its console
//! (`keys_to_console`), that bootcmd ran at nice 0 (metaboot.service itself runs at -10), and
//! the provisioner's own verdict (`cloud-init status --long`, `metaboot status`). No two of the
//! instances share a host key.
//!
//! Needs root, QEMU, the lab's tools and the image build's (scripts/install-lab-deps): fails in
//! CI when they are missing, skips elsewhere. A cold image build takes a few minutes, each
//! Debian boot about a minute under TCG.
//!
//! By default each image boots on both metadata paths (router and isolated), and one of the
//! four boots through a real libvirtd (`virsh create` of a transient domain) instead of the
//! harness's own QEMU; two boot at once, in one lab. Every guest also gets an ephemeral disk
//! as nova makes one (ext4 labelled `ephemeral0`), found mounted on `/mnt`, and a swap file
//! from its user data, found in `/proc/swaps`, and a blank data disk its user data partitions
//! (`disk_setup`), formats (`fs_setup`) and mounts (`mounts`) under an alias (`device_aliases`),
//! read back with lsblk and findmnt. On the router path the user data also
//! asks for a reboot once provisioned (`power_state`) and a `final_message`: the first boot
//! must end by itself with the message on its console, and the checks run on the second boot
//! (runcmd not re-run). `METABOOT_E2E_DEBIAN` (space-separated `path/image[@libvirt][+reboot]`)
//! chooses other guests, `METABOOT_E2E_JOBS` how many boot at once.
//! The report goes to `target/e2e/debian-report.*`.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use metaboot_harness::check::apt_repo;
use metaboot_harness::cli::{AgentArgs, build_debian};
use metaboot_harness::guest::Via;
use metaboot_harness::guest::libvirtd;
use metaboot_harness::guest::qemu::DISK_BOOT_TIMEOUT;
use metaboot_harness::image::debian::{self, Flavour};
use metaboot_harness::image::disk::Provisioner;
use metaboot_harness::scenario::cloud_image::{
    self, CloudImageGuest, CloudImageRun, FLAVOUR_DISK_GROWTH,
};
use metaboot_harness::scenario::matrix::MetadataPath;
use metaboot_harness::{lab, progress, scenario, workspace};
use metaboot_tests::prerequisite::require;

/// The guests a run boots unless `METABOOT_E2E_DEBIAN` names others (the slower cloud-init
/// guests first, so the two at a time finish together).
const DEFAULT_GUESTS: &str = "router/debian-cloud-init@libvirt+reboot isolated/debian-cloud-init \
                              router/debian-metaboot+reboot isolated/debian-metaboot";

#[test]
fn debian_images_boot_from_their_disk_and_are_provisioned_through_the_chain() {
    let wanted = std::env::var("METABOOT_E2E_DEBIAN").unwrap_or_else(|_| DEFAULT_GUESTS.into());
    let missing = scenario::preflight()
        .and_then(|()| debian::preflight())
        .and_then(|()| {
            if wanted.contains("@libvirt") {
                libvirtd::preflight()
            } else {
                Ok(())
            }
        })
        .err()
        .map(|e| format!("{e:#}"));
    if !require(
        "root, QEMU, libvirt, the lab and image build tools",
        missing,
    ) {
        return;
    }
    let jobs = std::env::var("METABOOT_E2E_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(scenario::DEFAULT_JOBS);

    let started = Instant::now();
    let images = build_debian(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
        &Flavour::ALL,
        &progress::Lines::new(),
    )
    .expect("the Debian images build");
    eprintln!(
        "images ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        images
            .iter()
            .map(|i| format!(
                "{} {}",
                i.manifest.kind,
                if i.cached { "cached" } else { "built" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let before: Vec<(PathBuf, SystemTime, u64)> = images
        .iter()
        .map(|i| {
            let meta = std::fs::metadata(&i.disk).unwrap();
            (i.disk.clone(), meta.modified().unwrap(), meta.len())
        })
        .collect();

    // The package every guest installs from the lab's repository (`packages`).
    let hello = apt_repo::fetch_package(&metaboot_harness::image::cache::default_dir())
        .expect("the lab repository's package is downloaded (apt-get download)");
    let guests: Vec<CloudImageGuest> = wanted
        .split_whitespace()
        .map(|name| {
            let (name, reboot_once) = match name.strip_suffix("+reboot") {
                Some(name) => (name, true),
                None => (name, false),
            };
            let (name, via) = match name.split_once('@') {
                Some((name, "libvirt")) => (name, Via::Libvirt),
                Some((_, other)) => panic!("{name}: unknown @{other} (only @libvirt)"),
                None => (name, Via::Qemu),
            };
            let (path, kind) = name
                .split_once('/')
                .unwrap_or_else(|| panic!("{name}: expected path/image"));
            let path = match path {
                "router" => MetadataPath::Router,
                "isolated" => MetadataPath::Isolated,
                other => panic!("{name}: unknown path {other}"),
            };
            let image = images
                .iter()
                .find(|i| i.manifest.kind == kind)
                .unwrap_or_else(|| panic!("{name}: unknown image {kind}"));
            CloudImageGuest {
                name: match via {
                    Via::Qemu => name.to_owned(),
                    Via::Libvirt => format!("{name}-libvirt"),
                },
                image: image.disk.clone(),
                format: "qcow2".into(),
                provisioner: Some(image.manifest.provisioner),
                default_user: image.manifest.default_user.clone(),
                path,
                via,
                boot_timeout: DISK_BOOT_TIMEOUT,
                disk_growth: FLAVOUR_DISK_GROWTH,
                trust_ca: true,
                reboot_once,
                mounts: true,
                apt_package: Some(hello.clone()),
                // cloud-init 22.4 fails `locale` on Debian for a locale the image does not
                // build yet (Debian's locale-gen ignores the name it is given, then
                // update-locale refuses the unbuilt locale): only metaboot's guests are asked.
                locale: image.manifest.provisioner == Provisioner::Metaboot,
                // Keys where the image's sshd reads them, on the router path (the isolated
                // path keeps sshd's default).
                keys_elsewhere: path == MetadataPath::Router,
                ntp: true,
                // cloud-init 22.4's `ip route add prohibit 169.254.169.254` fails on the
                // isolated path, where the route to the metadata service comes from DHCP
                // (option 121) and exists already (EEXIST: its module fails, `cloud-init status`
                // is `error`, the service stays reachable); metaboot replaces that route. So
                // metaboot's guests are asked on both paths, cloud-init's on the router path.
                disable_metadata: path == MetadataPath::Router
                    || image.manifest.provisioner == Provisioner::Metaboot,
                rsyslog: true,
                bootcmd: true,
                disk_setup: true,
            }
        })
        .collect();
    let server_bin = workspace::build(workspace::SERVER).expect("metaboot-server builds");
    let out = workspace::root().join("target/e2e");
    let run_dir = out.join("debian-run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let reports = cloud_image::run_all(
        &CloudImageRun {
            lab_id: lab::config::random_id(),
            guests,
            jobs,
            server_bin,
            state_root: PathBuf::from(lab::state::DEFAULT_STATE_ROOT),
            run_dir,
            keep_lab: false,
        },
        &progress::Lines::new(),
    )
    .expect("the lab comes up and goes down");

    let table = cloud_image::table(&reports);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("debian-report.txt"), &table).expect("the table is written");
    std::fs::write(
        out.join("debian-report.json"),
        serde_json::to_vec_pretty(&reports).unwrap(),
    )
    .expect("the report is written");
    eprintln!("{table}");

    for (disk, modified, len) in before {
        let meta = std::fs::metadata(&disk).unwrap();
        assert_eq!(
            (meta.modified().unwrap(), meta.len()),
            (modified, len),
            "{} must never be written (guests boot an overlay)",
            disk.display()
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{failed:?} failed (see above and target/e2e/)"
    );
    assert_eq!(reports.len(), wanted.split_whitespace().count());
    for (report, name) in reports.iter().zip(wanted.split_whitespace()) {
        assert_eq!(
            report.after_reboot_log.is_some(),
            name.ends_with("+reboot"),
            "{}",
            report.name
        );
    }
    no_two_instances_share_a_host_key(&reports);
    for report in &reports {
        let via = if report.name.ends_with("-libvirt") {
            Via::Libvirt
        } else {
            Via::Qemu
        };
        assert_eq!(report.via, via, "{}", report.name);
    }
}

/// Two instances of one image never share a host key (an image's or a previous instance's keys
/// are replaced on a new instance), read from the host key blocks their consoles showed (each
/// guest's check compared them with what its sshd offers).
fn no_two_instances_share_a_host_key(reports: &[cloud_image::CloudImageReport]) {
    let keys: Vec<(&str, Vec<(String, String)>)> = reports
        .iter()
        .map(|report| {
            let console = std::fs::read_to_string(&report.serial_log).unwrap_or_default();
            let keys = cloud_image::console_keys(&console)
                .unwrap_or_else(|| panic!("{}: no host key block on its console", report.name));
            assert!(!keys.is_empty(), "{}: an empty host key block", report.name);
            (report.name.as_str(), keys)
        })
        .collect();
    for (i, (name, mine)) in keys.iter().enumerate() {
        for (other, theirs) in &keys[i + 1..] {
            let shared: Vec<&str> = mine
                .iter()
                .filter(|key| theirs.contains(key))
                .map(|(kind, _)| kind.as_str())
                .collect();
            assert!(
                shared.is_empty(),
                "{name} and {other} share their {} host keys",
                shared.join(", ")
            );
        }
    }
}
