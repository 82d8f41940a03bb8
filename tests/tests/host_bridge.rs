//! A host network (`network create --bridge BR`, as a libvirt network is served) with real
//! parts (root): a namespace standing for the host, with a bridge and a plain dnsmasq handing
//! out leases on it (its lease file in `all --leases-dir`), and guest namespaces on the bridge
//! that take their address with busybox's DHCP client and ask `169.254.169.254` through their
//! default route. `metaboot-server all` puts the address on the bridge and serves it there:
//! a registered MAC gets its own `meta_data.json`, an unregistered one 404; a guest whose
//! lease moved to another address is still served as itself, and the address it left, leased
//! to another MAC, serves that MAC's instance, never the old one. Deleting the network takes
//! the address off the bridge, and so does a clean stop.

use std::path::Path;
use std::time::{Duration, Instant};

use metaboot_proto::METADATA_IPV4_LISTEN;
use metaboot_tests::chain::Chain;
use metaboot_tests::netns::{Netns, run};
use metaboot_tests::prerequisite::{require_command, require_root};
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
    run(
        "ip",
        &[
            "link",
            "add",
            "eth0",
            "netns",
            &guest.name,
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &host.name,
        ],
    )
    .unwrap();
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

/// The uuid `guest` is served, None for a 404; Err when nothing answers yet.
fn try_served(guest: &Netns) -> Result<Option<String>, String> {
    let path = "/openstack/latest/meta_data.json";
    let reply = guest
        .within(|| guest::get(None, METADATA_IPV4_LISTEN, path, &[]))
        .unwrap();
    match reply {
        Ok(reply) if reply.status == 200 => {
            Ok(Some(reply.json()["uuid"].as_str().unwrap().to_owned()))
        }
        Ok(reply) if reply.status == 404 => Ok(None),
        other => Err(format!("{} got {other:?}", guest.name)),
    }
}

/// Waits until `guest` is served `want` (while nothing answers, or while it gets 404 before
/// its lease is read); being served any other instance fails at once.
#[track_caller]
fn until_served(guest: &Netns, want: Option<&str>) {
    let started = Instant::now();
    loop {
        let seen = try_served(guest);
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

#[test]
fn a_bridge_network_serves_each_guest_by_its_leased_mac() {
    if !(require_root()
        && require_command("dnsmasq")
        && require_command("busybox")
        && require_command("ip"))
    {
        return;
    }
    let tag = std::process::id();
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
    let lease_file = leases_dir.join(format!("{BRIDGE}.leases"));
    // Fixed addresses by MAC, reread on SIGHUP (what `virsh net-update … ip-dhcp-host` does
    // to libvirt's dnsmasq).
    let hosts_file = chain.path().join("dhcp-hosts");
    std::fs::write(&hosts_file, "").unwrap();
    let script = chain.path().join("udhcpc.sh");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dnsmasq_args = [
        "ip".to_owned(),
        "netns".to_owned(),
        "exec".to_owned(),
        host.name.clone(),
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
        format!("--dhcp-leasefile={}", lease_file.display()),
        format!("--dhcp-hostsfile={}", hosts_file.display()),
        format!("--pid-file={}", chain.path().join("dnsmasq.pid").display()),
    ];
    let argv: Vec<&str> = dnsmasq_args.iter().map(String::as_str).collect();
    let lease_path = lease_file.clone();
    chain
        .start_shell_role("dnsmasq", &argv, || lease_path.exists())
        .unwrap();

    let created = chain
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
    assert_eq!(created["host"]["bridge"], BRIDGE, "{created}");
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
    let leases = leases_dir.display().to_string();
    chain
        .start_shell_role(
            "all",
            &[
                "ip",
                "netns",
                "exec",
                &host.name,
                &server,
                "--db",
                &db_path,
                "all",
                "--shared-secret-file",
                &secret,
                "--leases-dir",
                &leases,
            ],
            || bridge_has_address(&host),
        )
        .unwrap();

    lease(&web, &script, "198.18.20.60");
    lease(&db, &script, "198.18.20.70");
    lease(&stranger, &script, "198.18.20.80");
    until_served(&web, Some(&web_id));
    until_served(&db, Some(&db_id));
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
    let dnsmasq = chain.pid("dnsmasq").unwrap().to_string();
    run("kill", &["-HUP", &dnsmasq]).unwrap();
    lease(&web, &script, "198.18.20.61");
    lease(&db, &script, "198.18.20.60");
    let leased = std::fs::read_to_string(&lease_file).unwrap();
    assert!(
        leased.contains(&format!("{MAC_DB} 198.18.20.60")) && !leased.contains("198.18.20.70"),
        "{leased}"
    );
    until_served(&web, Some(&web_id));
    until_served(&db, Some(&db_id));

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
    let pid = chain.pid("all").unwrap().to_string();
    run("kill", &["-TERM", &pid]).unwrap();
    until_address(&host, false);
}
