//! A plain libvirt host, as most people who boot cloud images under virsh have one: libvirtd
//! runs inside a lab namespace (`ip netns exec … libvirtd`), so its network's bridge, its
//! dnsmasq and its iptables rules live there and nothing touches the machine's own network;
//! the libvirt network is a NAT network in 198.18.60.0/24. Guests start with `virt-install
//! --import … --network network=NAME,mac=…,filterref=clean-traffic`, as the README says.
//!
//! One test checks the lab itself (the network, its dnsmasq, nwfilter, a tiny guest's lease);
//! the other is the whole scenario (`metaboot_harness::scenario::libvirt_host`): a Debian
//! cloud image with stock cloud-init registered by MAC and checked from outside (key and
//! password logins, host name, …), an unregistered MAC that gets 404, a tiny guest that takes
//! the Debian guest's address and is not served its data, and one whose lease moves and is
//! still served as itself. Reports go to `target/e2e/libvirt-host*/`.
//!
//! Needs root, QEMU, libvirt (with virt-install) and the lab's tools: fails in CI when they are
//! missing, skips elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use metaboot_harness::cli::{AgentArgs, build_debian, build_tiny};
use metaboot_harness::guest::Via;
use metaboot_harness::guest::libvirt_network::{CLEAN_TRAFFIC, random_mac};
use metaboot_harness::guest::libvirtd::{VIRSH_TIMEOUT, virsh};
use metaboot_harness::guest::qemu::DISK_BOOT_TIMEOUT;
use metaboot_harness::guest::qemu::RunningGuest;
use metaboot_harness::guest::virt_install::NetworkNic;
use metaboot_harness::guest::{Entropy, Guest};
use metaboot_harness::image::debian::{self, Flavour};
use metaboot_harness::lab::libvirt_host::{self, LibvirtHost};
use metaboot_harness::lab::netns;
use metaboot_harness::process::output_with_timeout;
use metaboot_harness::scenario::cloud_image::{self, CloudImageGuest};
use metaboot_harness::scenario::libvirt_host::{self as libvirt_host_run, LibvirtHostRun};
use metaboot_harness::scenario::matrix::MetadataPath;
use metaboot_harness::{lab, progress, scenario, workspace};
use metaboot_tests::prerequisite::require;

/// How long a tiny guest may take from `virt-install` to its DHCP lease (about 3 s alone).
const TINY_LEASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails in CI (skips elsewhere) unless root, QEMU, libvirt and virt-install are here.
fn prerequisites() -> bool {
    let missing = scenario::preflight()
        .and_then(|()| libvirt_host::preflight())
        .err()
        .map(|e| format!("{e:#}"));
    require(
        "root, QEMU, libvirt with virt-install, and the lab tools",
        missing,
    )
}

/// A fresh run directory under target/e2e.
fn run_dir(name: &str) -> PathBuf {
    let dir = workspace::root().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `virsh ARGS` on the harness's libvirtd; its standard output (panics on failure).
fn virsh_out(args: &[&str]) -> String {
    let out = output_with_timeout(&mut virsh(args), VIRSH_TIMEOUT).unwrap();
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tiny image's guest `name` on the host's network with `mac`, behind clean-traffic.
fn start_tiny(host: &LibvirtHost, dir: &Path, name: &str, mac: &str) -> RunningGuest {
    let image = build_tiny(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
    )
    .expect("the tiny image builds");
    let guest = Guest::new(name, &image, &dir.join(format!("{name}.serial.log")))
        .with_entropy(Entropy::CpuMax);
    RunningGuest::start_virt_install(
        &guest,
        &NetworkNic {
            network: host.network().spec().name.clone(),
            mac: mac.to_owned(),
            filter: Some(CLEAN_TRAFFIC.to_owned()),
        },
    )
    .expect("virt-install starts the tiny guest")
}

#[test]
fn a_libvirt_network_in_a_lab_namespace_leases_addresses_to_a_filtered_guest() {
    if !prerequisites() {
        return;
    }
    let dir = run_dir("libvirt-host-network");
    let id = lab::config::random_id();
    let host = LibvirtHost::up(&id, &dir).expect("libvirtd and its network come up");
    let spec = host.network().spec().clone();

    // The bridge and libvirt's dnsmasq are in the lab's namespace, not on the machine.
    let addr = netns::ip(&host.ns, &["-4", "addr", "show", "dev", &spec.bridge]).unwrap();
    assert!(
        addr.contains(&format!("inet {}/24", spec.gateway())),
        "{addr}"
    );
    assert!(
        !Path::new("/sys/class/net").join(&spec.bridge).exists(),
        "{} must not exist in the machine's own namespace",
        spec.bridge
    );
    assert!(
        !host.processes_named("dnsmasq").is_empty(),
        "libvirt's dnsmasq runs in {}",
        host.ns
    );
    // nwfilter works here: libvirt's clean-traffic filter is defined.
    let filters = virsh_out(&["nwfilter-list"]);
    assert!(filters.contains(CLEAN_TRAFFIC), "{filters}");

    let mac = random_mac().unwrap();
    let vm = start_tiny(&host, &dir, "tiny-lease", &mac);
    let ip = host
        .network()
        .wait_for_lease(&mac, None, TINY_LEASE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", vm.console_text()));
    let (first, last) = spec.dhcp_range();
    assert!((first..=last).contains(&ip), "{ip} from the DHCP range");
    // The filter is attached to the guest's interface: libvirt put ebtables rules for it in
    // the namespace.
    let xml = virsh_out(&["dumpxml", "tiny-lease"]);
    assert!(
        xml.contains(&format!("<filterref filter='{CLEAN_TRAFFIC}'")),
        "{xml}"
    );
    let ebtables = output_with_timeout(
        netns::exec(&host.ns, "ebtables").args(["-t", "nat", "-L"]),
        VIRSH_TIMEOUT,
    )
    .unwrap();
    let rules = String::from_utf8_lossy(&ebtables.stdout);
    assert!(rules.contains("libvirt-I-"), "nwfilter's chains:\n{rules}");
    assert!(
        vm.serial()
            .wait_for(
                "lease",
                0,
                std::time::Instant::now() + Duration::from_secs(30)
            )
            .is_some(),
        "{}",
        vm.console_text()
    );
    vm.kill().unwrap();

    let ns = host.ns.clone();
    host.down().expect("the libvirt host goes down");
    assert!(!netns::exists(&ns), "{ns} is removed");
}

/// The README's libvirt host end to end (see `scenario::libvirt_host`): the libvirt network
/// registered with `--libvirt-network`, `metaboot-server all` in the namespace, the Debian
/// cloud image with stock cloud-init registered by MAC and started with virt-install; then
/// an unregistered MAC, an impostor and a moved lease with the tiny image.
#[test]
fn a_plain_libvirt_host_provisions_guests_known_by_mac() {
    if !prerequisites() {
        return;
    }
    let missing = debian::preflight().err().map(|e| format!("{e:#}"));
    if !require("the Debian image's build tools", missing) {
        return;
    }
    let images = build_debian(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
        &[Flavour::CloudInit],
        &progress::Lines::new(),
    )
    .expect("the Debian image builds");
    let image = images
        .into_iter()
        .find(|i| i.manifest.kind == "debian-cloud-init")
        .expect("debian-cloud-init");
    let tiny = build_tiny(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
    )
    .expect("the tiny image builds");
    let dir = run_dir("libvirt-host");
    let opts = LibvirtHostRun {
        lab_id: lab::config::random_id(),
        server_bin: workspace::build(workspace::SERVER).expect("metaboot-server builds"),
        debian: CloudImageGuest {
            name: "libvirt-host/debian-cloud-init".into(),
            image: image.disk.clone(),
            format: "qcow2".into(),
            provisioner: Some(image.manifest.provisioner),
            default_user: image.manifest.default_user.clone(),
            path: MetadataPath::Router,
            via: Via::Libvirt,
            boot_timeout: DISK_BOOT_TIMEOUT,
            disk_growth: 0,
            trust_ca: false,
            reboot_once: false,
            mounts: false,
            apt_package: None,
            locale: false,
            keys_elsewhere: false,
            ntp: false,
            disable_metadata: false,
            rsyslog: false,
            bootcmd: false,
            disk_setup: false,
        },
        tiny,
        run_dir: dir.clone(),
    };
    let ns = lab::bridge::namespace(&opts.lab_id);
    let report = libvirt_host_run::run(&opts, &progress::Lines::new())
        .expect("the libvirt host comes up and goes down");
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    let mut text = report
        .debian
        .as_ref()
        .map(|debian| cloud_image::table(std::slice::from_ref(debian)))
        .unwrap_or_default();
    for c in &report.checks {
        text.push_str(&format!(
            "{} {}: {}\n",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail.chars().take(200).collect::<String>()
        ));
    }
    std::fs::write(dir.with_file_name("libvirt-host-report.txt"), &text).unwrap();
    eprintln!("{text}");
    assert!(!netns::exists(&ns), "{ns} is removed");
    assert!(
        report.passed,
        "the libvirt host failed: {:?} (see above and {})",
        report.error,
        dir.display()
    );
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expect in [
        "169.254.169.254/32 on the libvirt bridge",
        "an unregistered MAC with a lease gets 404",
        "a MAC-registered tiny guest is served as itself",
        "a guest that takes another's address is not served its data (clean-traffic)",
        "without clean-traffic the same impostor reaches metaboot and is refused (404)",
        "after its lease moved to another address it is still served as itself",
    ] {
        assert!(names.contains(&expect), "{expect} in {names:?}");
    }
}
