//! Host networks with real parts (root): a namespace standing for the host, with a bridge and
//! a real dnsmasq handing out leases on it, and guest namespaces on the bridge that take their
//! address with busybox's DHCP client and ask `169.254.169.254` through their default route.
//! Twice: `--bridge BR` with a plain dnsmasq writing its lease file into `all --leases-dir`,
//! and `--libvirt-network NAME` with dnsmasq run as libvirt runs it (libvirt's real
//! `libvirt_leaseshelper` keeping `<bridge>.status`, the bridge named in `<network>.conf`).
//! `metaboot-server all` puts the address on the bridge and serves it there: a registered MAC
//! gets its own `meta_data.json`, an unregistered one 404; a guest whose lease moved to another
//! address is still served as itself, and the address it left, leased to another MAC, serves
//! that MAC's instance, never the old one; a guest that takes another's address is not served
//! the other's data. A second network on the same bridge is refused by the registry or, named
//! another way, not served (the first keeps its guests). The address taken off the bridge
//! behind `all`'s back is put back. Deleting the network takes the address off the bridge, and
//! so does a clean stop. An address a killed `all` left on the bridge of a network deleted
//! meanwhile is taken off at the next start, never one `all` did not put there; a port 80
//! another server holds leaves the bridge without the address until it is free.

use std::path::Path;
use std::time::{Duration, Instant};

use metaboot_proto::METADATA_IPV4_LISTEN;
use metaboot_tests::chain::Chain;
use metaboot_tests::netns::{Netns, guest_veth, run};
use metaboot_tests::prerequisite::{require, require_command, require_root};
use metaboot_tests::{guest, registry};

/// Longest `all` may take to serve a network, or to follow a change of the registry or of
/// the leases (a loaded 2-core machine).
const WITHIN: Duration = Duration::from_secs(20);
const BRIDGE: &str = "br-mb";
const HOST_IP: &str = "198.18.20.1/24";
const MAC_WEB: &str = "52:54:00:20:00:01";
const MAC_DB: &str = "52:54:00:20:00:02";
const MAC_STRANGER: &str = "52:54:00:20:00:03";

/// busybox udhcpc's script: the leased address and the default route through the host.
const UDHCPC_SCRIPT: &str = "#!/bin/sh
case \"$1\" in
deconfig) ip -4 addr flush dev \"$interface\" ;;
bound|renew)
    ip -4 addr flush dev \"$interface\"
    ip addr add \"$ip/$mask\" dev \"$interface\"
    ip route replace default via \"${router%% *}\" dev \"$interface\"
    ;;
esac
";

/// A guest namespace with `eth0` (MAC `mac`) plugged into the host's bridge.
fn plug(host: &Netns, name: &str, mac: &str, port: &str) -> Netns {
    let guest = Netns::create(name).unwrap();
    guest_veth(&guest, mac, host, port).unwrap();
    host.exec("ip", &["link", "set", port, "master", BRIDGE, "up"])
        .unwrap();
    guest.exec("ip", &["link", "set", "eth0", "up"]).unwrap();
    guest
}

/// Takes a lease (busybox udhcpc, one lease then exit) and checks it is for `address`.
fn lease(guest: &Netns, script: &Path, address: &str) {
    let script = script.display().to_string();
    let args = [
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", &script, "-r", address, "-t", "10", "-T",
        "1",
    ];
    guest.exec("busybox", &args).unwrap();
    let shown = guest
        .exec("ip", &["-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(
        shown.contains(&format!("{address}/")),
        "{}: {shown}",
        guest.name
    );
}

/// Waits until `guest` is served `want` (while nothing answers, or while it gets 404 before
/// its lease is read); being served any other instance fails at once.
#[track_caller]
fn until_served(guest: &Netns, want: Option<&str>) {
    let started = Instant::now();
    loop {
        let seen = guest.served_uuid();
        match &seen {
            Ok(seen) if seen.as_deref() == want => return,
            // Another instance's data, even for a moment, is what must never happen.
            Ok(Some(other)) => panic!("{} was served instance {other}, not {want:?}", guest.name),
            _ => {}
        }
        assert!(
            started.elapsed() < WITHIN,
            "{} was served {seen:?}, not {want:?}",
            guest.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the bridge holds the metadata address.
fn bridge_has_address(host: &Netns) -> bool {
    let shown = host
        .exec("ip", &["-4", "addr", "show", "dev", BRIDGE])
        .unwrap();
    shown.contains(&format!("{}/32", METADATA_IPV4_LISTEN.ip()))
}

#[track_caller]
fn until_address(host: &Netns, present: bool) {
    let started = Instant::now();
    while bridge_has_address(host) != present {
        assert!(
            started.elapsed() < WITHIN,
            "the metadata address never became {}",
            if present { "present" } else { "absent" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A second network on the bridge `lan` is served on. The registry refuses one made with the
/// same flag and name; a `--bridge` naming the libvirt network's bridge is only found out by
/// `all`, which keeps serving `lan` (its guests are never answered 404 for the newcomer) and
/// logs why the other is not served.
fn second_network_on_the_bridge(chain: &Chain, dhcp: Dhcp, web: &Netns, web_id: &str) {
    let twin = chain.registry(&[
        "network",
        "create",
        "twin",
        "--cidr",
        "198.18.21.0/24",
        "--bridge",
        BRIDGE,
    ]);
    if dhcp == Dhcp::Plain {
        let refused = format!("{:#}", twin.unwrap_err());
        assert!(
            refused.contains(&format!("already served on the bridge {BRIDGE}")),
            "{refused}"
        );
        return;
    }
    twin.unwrap();
    let log = chain.path().join("all.log");
    let started = Instant::now();
    loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.contains(&format!("bridge {BRIDGE} already serves network")) {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "all never said why twin is not served:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    until_served(web, Some(web_id));
    chain.run(&["network", "delete", "twin"]).unwrap();
}

/// Which DHCP server hands out the leases, and where `all` reads them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dhcp {
    /// A plain dnsmasq writing its own lease file into `all --leases-dir`; the network is
    /// `--bridge`.
    Plain,
    /// dnsmasq as libvirt runs it: `--leasefile-ro` with `libvirt_leaseshelper` keeping
    /// `/var/lib/libvirt/dnsmasq/<bridge>.status`, the bridge named in `<network>.conf`; the
    /// network is `--libvirt-network`, read from the default directory. Both run in a mount
    /// namespace of their own with a tmpfs on that directory, so the host's stays untouched.
    Libvirt,
}

/// libvirt's lease helper (Debian's path).
const LEASES_HELPER: &str = "/usr/lib/libvirt/libvirt_leaseshelper";
/// The directory the helper writes to (compiled in).
const LIBVIRT_DNSMASQ_DIR: &str = "/var/lib/libvirt/dnsmasq";

#[test]
fn a_bridge_network_serves_each_guest_by_its_leased_mac() {
    serve_guests(Dhcp::Plain);
}

#[test]
fn a_libvirt_network_serves_each_guest_by_its_leased_mac() {
    serve_guests(Dhcp::Libvirt);
}

fn serve_guests(dhcp: Dhcp) {
    if !(require_root()
        && require_command("dnsmasq")
        && require_command("busybox")
        && require_command("ip")
        && require_command("unshare"))
    {
        return;
    }
    if dhcp == Dhcp::Libvirt {
        let missing = (!Path::new(LEASES_HELPER).exists()
            || !Path::new(LIBVIRT_DNSMASQ_DIR).is_dir())
        .then(|| format!("{LEASES_HELPER} or {LIBVIRT_DNSMASQ_DIR} is missing (libvirt-daemon)"));
        if !require("libvirt's lease helper", missing) {
            return;
        }
    }
    let tag = format!(
        "{}{}",
        if dhcp == Dhcp::Plain { "p" } else { "l" },
        std::process::id()
    );
    let host = Netns::create(&format!("mbhb-host-{tag}")).unwrap();
    host.exec("ip", &["link", "add", BRIDGE, "type", "bridge"])
        .unwrap();
    host.exec("ip", &["addr", "add", HOST_IP, "dev", BRIDGE])
        .unwrap();
    host.exec("ip", &["link", "set", BRIDGE, "up"]).unwrap();
    let web = plug(&host, &format!("mbhb-web-{tag}"), MAC_WEB, "vweb");
    let db = plug(&host, &format!("mbhb-db-{tag}"), MAC_DB, "vdb");
    let stranger = plug(&host, &format!("mbhb-x-{tag}"), MAC_STRANGER, "vx");

    let mut chain = Chain::new().unwrap();
    let leases_dir = chain.path().join("dnsmasq");
    std::fs::create_dir_all(&leases_dir).unwrap();
    // Fixed addresses by MAC, reread on SIGHUP (what `virsh net-update … ip-dhcp-host` does
    // to libvirt's dnsmasq).
    let hosts_file = chain.path().join("dhcp-hosts");
    std::fs::write(&hosts_file, "").unwrap();
    let script = chain.path().join("udhcpc.sh");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dnsmasq_pid = chain.path().join("dnsmasq.pid");
    let mut dnsmasq = vec![
        "dnsmasq".to_owned(),
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--port=0".to_owned(),
        format!("--interface={BRIDGE}"),
        "--bind-interfaces".to_owned(),
        "--except-interface=lo".to_owned(),
        "--dhcp-range=198.18.20.50,198.18.20.99,1h".to_owned(),
        "--dhcp-authoritative".to_owned(),
        "--no-ping".to_owned(),
        format!("--dhcp-hostsfile={}", hosts_file.display()),
        format!("--pid-file={}", dnsmasq_pid.display()),
    ];
    let (flag, name) = match dhcp {
        Dhcp::Plain => {
            let file = leases_dir.join(format!("{BRIDGE}.leases"));
            dnsmasq.push(format!("--dhcp-leasefile={}", file.display()));
            ("--bridge", BRIDGE)
        }
        Dhcp::Libvirt => {
            dnsmasq.push("--leasefile-ro".to_owned());
            dnsmasq.push(format!("--dhcp-script={LEASES_HELPER}"));
            ("--libvirt-network", "lab")
        }
    };

    let created = chain
        .registry(&[
            "network",
            "create",
            "lan",
            "--cidr",
            "198.18.20.0/24",
            flag,
            name,
        ])
        .unwrap();
    match dhcp {
        Dhcp::Plain => assert_eq!(created["host"]["bridge"], BRIDGE, "{created}"),
        Dhcp::Libvirt => assert_eq!(created["host"]["libvirt_network"], "lab", "{created}"),
    }
    let web_id = registry::created(
        &chain,
        &[
            "instance",
            "create",
            "web",
            "--network",
            "lan",
            "--mac",
            MAC_WEB,
        ],
        "uuid",
    );
    let db_id = registry::created(
        &chain,
        &[
            "instance",
            "create",
            "db",
            "--network",
            "lan",
            "--mac",
            MAC_DB,
        ],
        "uuid",
    );

    let server = chain.server.display().to_string();
    let db_path = chain.db.display().to_string();
    let secret = chain.secret_file.display().to_string();
    let all = format!("exec {server} --db {db_path} all --shared-secret-file {secret}");
    let dnsmasq = dnsmasq.join(" ");
    let shell = match dhcp {
        Dhcp::Plain => format!("{dnsmasq} & {all} --leases-dir {}", leases_dir.display()),
        Dhcp::Libvirt => format!(
            "mount -t tmpfs tmpfs {LIBVIRT_DNSMASQ_DIR} && \
             printf 'bind-dynamic\\ninterface={BRIDGE}\\n' > {LIBVIRT_DNSMASQ_DIR}/lab.conf && \
             VIR_BRIDGE_NAME={BRIDGE} {dnsmasq} & {all}"
        ),
    };
    chain
        .start_shell_role(
            "all",
            &[
                "ip",
                "netns",
                "exec",
                &host.name,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &shell,
            ],
            || bridge_has_address(&host) && dnsmasq_pid.exists(),
        )
        .unwrap();
    let all_pid = chain.pid("all").unwrap();
    // The lease file as `all` sees it (inside its mount namespace).
    let lease_file = match dhcp {
        Dhcp::Plain => leases_dir.join(format!("{BRIDGE}.leases")),
        Dhcp::Libvirt => Path::new(&format!("/proc/{all_pid}/root"))
            .join(LIBVIRT_DNSMASQ_DIR.trim_start_matches('/'))
            .join(format!("{BRIDGE}.status")),
    };

    lease(&web, &script, "198.18.20.60");
    lease(&db, &script, "198.18.20.70");
    lease(&stranger, &script, "198.18.20.80");
    until_served(&web, Some(&web_id));
    until_served(&db, Some(&db_id));
    second_network_on_the_bridge(&chain, dhcp, &web, &web_id);
    // Its network_data.json says DHCP, with no made-up address.
    let network_data = web
        .within(|| {
            guest::get(
                None,
                METADATA_IPV4_LISTEN,
                "/openstack/latest/network_data.json",
                &[],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(network_data.status, 200);
    let network_data = network_data.json();
    assert_eq!(
        network_data["networks"][0]["type"], "ipv4_dhcp",
        "{network_data}"
    );
    assert_eq!(
        network_data["links"][0]["ethernet_mac_address"], MAC_WEB,
        "{network_data}"
    );
    assert!(
        !network_data.to_string().contains("0.0.0."),
        "{network_data}"
    );
    // The address taken off the bridge behind `all`'s back (`ip addr flush`, a network
    // manager reconfiguring the bridge): it is put back, and web is served again.
    host.exec(
        "ip",
        &[
            "addr",
            "del",
            &format!("{}/32", METADATA_IPV4_LISTEN.ip()),
            "dev",
            BRIDGE,
        ],
    )
    .unwrap();
    until_address(&host, true);
    until_served(&web, Some(&web_id));
    // A MAC no instance has: 404, never another's data.
    until_served(&stranger, None);
    let reply = stranger
        .within(|| {
            guest::get(
                None,
                METADATA_IPV4_LISTEN,
                "/openstack/latest/meta_data.json",
                &[],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 404);
    assert!(!reply.text().contains(&web_id) && !reply.text().contains(&db_id));

    // web reboots and comes up at another address; db is given the one web left (the DHCP
    // server told so, as `virsh net-update` tells libvirt's). Each is served as itself.
    std::fs::write(
        &hosts_file,
        format!("{MAC_WEB},198.18.20.61\n{MAC_DB},198.18.20.60\n"),
    )
    .unwrap();
    let dnsmasq = std::fs::read_to_string(&dnsmasq_pid).unwrap();
    run("kill", &["-HUP", dnsmasq.trim()]).unwrap();
    lease(&web, &script, "198.18.20.61");
    lease(&db, &script, "198.18.20.60");
    // The DHCP server writes the lease a moment after the guest has it (libvirt's helper runs
    // after the reply); meanwhile db may get 404, never web's data.
    let db_mac = metaboot_server::leases::parse_mac(MAC_DB).unwrap();
    let started = Instant::now();
    loop {
        let leased = std::fs::read_to_string(&lease_file).unwrap_or_default();
        let leases = metaboot_server::leases::parse(&leased).unwrap_or_default();
        if leases
            .iter()
            .any(|lease| lease.mac == db_mac && lease.ip.to_string() == "198.18.20.60")
        {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "db's new lease never written: {leased}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    until_served(&web, Some(&web_id));
    until_served(&db, Some(&db_id));

    // The unregistered guest takes web's address (a bridge without clean-traffic lets it):
    // the lease names web's MAC, but the host's replies go to the stranger's, so it is not
    // served web's data.
    stranger
        .exec("ip", &["-4", "addr", "flush", "dev", "eth0"])
        .unwrap();
    stranger
        .exec("ip", &["addr", "add", "198.18.20.61/24", "dev", "eth0"])
        .unwrap();
    stranger
        .exec("ip", &["route", "replace", "default", "via", "198.18.20.1"])
        .unwrap();
    until_served(&stranger, None);

    // Deleting the network (its instances first) takes the address off the bridge.
    chain.run(&["instance", "delete", "web"]).unwrap();
    chain.run(&["instance", "delete", "db"]).unwrap();
    chain.run(&["network", "delete", "lan"]).unwrap();
    until_address(&host, false);

    // Made again, it is served again; a clean stop takes the address off.
    chain
        .run(&[
            "network",
            "create",
            "lan",
            "--cidr",
            "198.18.20.0/24",
            "--bridge",
            BRIDGE,
        ])
        .unwrap();
    until_address(&host, true);
    // SIGTERM, or SIGHUP: the terminal `all` runs in closing is a clean stop too.
    let stop = match dhcp {
        Dhcp::Plain => "-HUP",
        Dhcp::Libvirt => "-TERM",
    };
    run("kill", &[stop, &all_pid.to_string()]).unwrap();
    until_address(&host, false);
}

/// `metaboot-server all` serving the chain's registry inside `host`, as the role `name`, until
/// `ready`.
fn start_all(chain: &mut Chain, host: &Netns, name: &str, ready: impl FnMut() -> bool) {
    let all = format!(
        "exec {} --db {} all --shared-secret-file {}",
        chain.server.display(),
        chain.db.display(),
        chain.secret_file.display()
    );
    chain
        .start_shell_role(
            name,
            &["ip", "netns", "exec", &host.name, "sh", "-c", &all],
            ready,
        )
        .unwrap();
}

/// A host namespace with the bridge up and its own address on it.
fn host_with_bridge(tag: &str) -> Netns {
    let host = Netns::create(&format!("mbhb-host-{tag}")).unwrap();
    host.exec("ip", &["link", "add", BRIDGE, "type", "bridge"])
        .unwrap();
    host.exec("ip", &["addr", "add", HOST_IP, "dev", BRIDGE])
        .unwrap();
    host.exec("ip", &["link", "set", BRIDGE, "up"]).unwrap();
    host
}

/// `all` killed (kill -9: no clean stop) while it serves a network, the network deleted, `all`
/// started again: the address the first run left on the bridge, under its label, is taken off
/// at start. The same address on another bridge, put there by someone else (no label), stays.
#[test]
fn an_address_a_killed_all_left_on_a_deleted_networks_bridge_is_taken_off_at_start() {
    if !(require_root() && require_command("ip")) {
        return;
    }
    let host = host_with_bridge(&format!("k{}", std::process::id()));
    let other = "br-other";
    let metadata = format!("{}/32", METADATA_IPV4_LISTEN.ip());
    host.exec("ip", &["link", "add", other, "type", "bridge"])
        .unwrap();
    host.exec("ip", &["addr", "add", &metadata, "dev", other])
        .unwrap();
    host.exec("ip", &["link", "set", other, "up"]).unwrap();
    let mut chain = Chain::new().unwrap();
    chain
        .registry(&[
            "network",
            "create",
            "lan",
            "--cidr",
            "198.18.20.0/24",
            "--bridge",
            BRIDGE,
        ])
        .unwrap();
    start_all(&mut chain, &host, "all", || bridge_has_address(&host));
    let shown = host
        .exec("ip", &["-4", "addr", "show", "dev", BRIDGE])
        .unwrap();
    assert!(shown.contains(&format!("{BRIDGE}:mb")), "{shown}");
    let first = chain.pid("all").unwrap();
    run("kill", &["-KILL", &first.to_string()]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        bridge_has_address(&host),
        "a killed all took the address off"
    );
    chain.run(&["network", "delete", "lan"]).unwrap();

    start_all(&mut chain, &host, "all-again", || {
        !bridge_has_address(&host)
    });
    let kept = host
        .exec("ip", &["-4", "addr", "show", "dev", other])
        .unwrap();
    assert!(
        kept.contains(&metadata),
        "all took off an address it did not put there: {kept}"
    );
}

/// Another server on port 80 of every address of the host: `all` never puts the address on the
/// bridge while it holds the port (no add and delete at every attempt: `ip monitor` sees no
/// change of it), says so once, and serves the bridge once the port is free.
#[test]
fn a_bridge_whose_port_another_server_holds_never_gets_the_address() {
    if !(require_root() && require_command("ip")) {
        return;
    }
    let host = host_with_bridge(&format!("c{}", std::process::id()));
    let taken = host
        .within(|| std::net::TcpListener::bind("0.0.0.0:80"))
        .unwrap()
        .unwrap();
    let mut chain = Chain::new().unwrap();
    chain
        .registry(&[
            "network",
            "create",
            "lan",
            "--cidr",
            "198.18.20.0/24",
            "--bridge",
            BRIDGE,
        ])
        .unwrap();
    let events = chain.path().join("ip-monitor.log");
    let _monitor = KillOnDrop(
        std::process::Command::new("ip")
            .args(["-n", &host.name, "monitor", "address"])
            .stdout(std::fs::File::create(&events).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = chain.path().join("all.log");
    let said = "cannot serve this host network yet";
    start_all(&mut chain, &host, "all", || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains(said))
    });
    // Attempts at 0, 1 and 3 s: each would have added and deleted the address.
    std::thread::sleep(Duration::from_secs(4));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches(said).count(), 1, "{logged}");
    let seen = std::fs::read_to_string(&events).unwrap();
    assert!(
        !seen.contains(&METADATA_IPV4_LISTEN.ip().to_string()),
        "the address came and went while the port was taken:\n{seen}"
    );
    assert!(!bridge_has_address(&host));

    drop(taken);
    let started = Instant::now();
    while !bridge_has_address(&host) {
        assert!(
            started.elapsed() < WITHIN + Duration::from_secs(30),
            "the bridge was never served once the port was free"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the child (`ip monitor`) when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
