//! Networks served on a bridge of the host (`--libvirt-network`, `--bridge`): created, shown
//! and deleted with their kind; instances there known by MAC, their address learned (a
//! placeholder no guest sends from) or fixed; the refusals; and a registry made before them
//! (schema version 2) brought up to date.

use metaboot_server::store::{
    self, HostBridge, Ipv6AddressMode, LEARNED_IP_SHOWN, NewNetwork, NewPort, NewRouter, Store,
    is_learned_placeholder,
};

use crate::support::{conflict, invalid, ip, new_instance, snapshot};

fn host_network(name: &str, cidr: &str, host: HostBridge) -> NewNetwork {
    NewNetwork {
        name: name.to_owned(),
        project: "p1".to_owned(),
        cidr: cidr.parse().expect("test CIDRs are literals"),
        host: Some(host),
        ..NewNetwork::default()
    }
}

fn mac_port(network: &str, mac: &str, fixed: Option<&str>) -> NewPort {
    NewPort {
        network_id: network.to_owned(),
        mac: Some(mac.to_owned()),
        ip: fixed.map(ip),
        ..NewPort::default()
    }
}

pub fn host_networks_and_their_instances(store: &dyn Store) {
    let lan = store
        .create_network(&host_network(
            "lan",
            "198.18.8.0/24",
            HostBridge::LibvirtNetwork("lab".to_owned()),
        ))
        .unwrap();
    // The bridge's own address is the gateway and where its DHCP server answers.
    assert_eq!(lan.gateway, Some(ip("198.18.8.1")));
    assert_eq!(lan.dhcp_ip, Some(ip("198.18.8.1")));
    assert!(!lan.isolated);
    let br = store
        .create_network(&host_network(
            "br",
            "198.18.9.0/24",
            HostBridge::Bridge("br-lab".to_owned()),
        ))
        .unwrap();
    assert_eq!(store.network("lan").unwrap(), lan);
    assert_eq!(store.network(&br.id).unwrap().host, br.host);
    assert_eq!(store.networks().unwrap(), vec![lan.clone(), br.clone()]);

    // Known by MAC (normalised), the address learned: a placeholder, shown as leased.
    let (_, web) = store
        .create_instance(
            &new_instance("web"),
            &mac_port("lan", "52-54-00-AA-00-01", None),
        )
        .unwrap();
    assert_eq!(web.mac, "52:54:00:aa:00:01");
    assert!(
        web.ip_learned() && is_learned_placeholder(web.ip),
        "{web:?}"
    );
    assert_eq!(web.shown_ips(), vec![LEARNED_IP_SHOWN.to_owned()]);
    let (_, db) = store
        .create_instance(
            &new_instance("db"),
            &mac_port("lan", "52:54:00:aa:00:02", None),
        )
        .unwrap();
    assert!(db.ip_learned() && db.ip != web.ip);
    // Or fixed with --ip, checked as any fixed address.
    let (_, fixed) = store
        .create_instance(
            &new_instance("fixed"),
            &mac_port("br", "52:54:00:aa:00:03", Some("198.18.9.10")),
        )
        .unwrap();
    assert_eq!(fixed.ip, ip("198.18.9.10"));
    assert!(!fixed.ip_learned());
    assert_eq!(store.ports().unwrap().len(), 3);

    // Without DHCP there is no lease to learn from: the address must be given.
    store
        .create_network(&NewNetwork {
            no_dhcp: true,
            ..host_network(
                "static",
                "198.18.10.0/24",
                HostBridge::Bridge("br-static".to_owned()),
            )
        })
        .unwrap();
    let msg = invalid(store.create_instance(
        &new_instance("nolease"),
        &mac_port("static", "52:54:00:aa:00:0a", None),
    ));
    assert!(msg.contains("--ip"), "{msg}");
    // With it, the port is made.
    let (_, given) = store
        .create_instance(
            &new_instance("static1"),
            &mac_port("static", "52:54:00:aa:00:0b", Some("198.18.10.5")),
        )
        .unwrap();
    assert_eq!(given.ip, ip("198.18.10.5"));
    store.delete_instance(&given.instance_id).unwrap();
    let before = snapshot(store);
    // No MAC: refused, saying how the instance is known.
    let msg = invalid(store.create_instance(
        &new_instance("nomac"),
        &NewPort {
            network_id: "lan".to_owned(),
            ..NewPort::default()
        },
    ));
    assert!(
        msg.contains("--mac") && msg.contains("libvirt network lab"),
        "{msg}"
    );
    // The same MAC twice.
    let msg = conflict(store.create_instance(
        &new_instance("twin"),
        &mac_port("lan", "52:54:00:aa:00:01", None),
    ));
    assert!(
        msg.contains("52:54:00:aa:00:01") && msg.contains("instance web"),
        "{msg}"
    );
    // A bad MAC.
    let msg = invalid(store.create_instance(&new_instance("bad"), &mac_port("lan", "52:54", None)));
    assert!(msg.contains("bad MAC"), "{msg}");
    // A fixed address outside the subnet, the bridge's own, or taken.
    for (address, word) in [
        ("198.18.99.5", "198.18.99.5"),
        ("198.18.9.1", "gateway"),
        ("198.18.9.10", "already used"),
    ] {
        let result = store.create_instance(
            &new_instance("clash"),
            &mac_port("br", "52:54:00:aa:00:09", Some(address)),
        );
        let msg = format!("{result:?}");
        assert!(result.is_err() && msg.contains(word), "{address}: {msg}");
    }
    // One network per libvirt network or bridge: a second would never be served.
    for (name, host) in [
        ("lan2", HostBridge::LibvirtNetwork("lab".to_owned())),
        ("br2", HostBridge::Bridge("br-lab".to_owned())),
    ] {
        let msg = conflict(store.create_network(&host_network(name, "198.18.11.0/24", host)));
        assert!(msg.contains("already served on the"), "{name}: {msg}");
    }
    // The names are told apart by kind: a bridge named like the libvirt network is another.
    let other_kind = host_network(
        "other",
        "198.18.11.0/24",
        HostBridge::Bridge("lab".to_owned()),
    );
    // No router takes a host network.
    let msg = invalid(store.create_router(&NewRouter {
        name: "r".to_owned(),
        project: "p1".to_owned(),
        networks: vec!["lan".to_owned()],
    }));
    assert!(msg.contains("no router"), "{msg}");
    assert_eq!(snapshot(store), before);
    let other = store.create_network(&other_kind).unwrap();
    store.delete_network(&other.id).unwrap();

    // Deleted once its instances are gone.
    let msg = conflict(store.delete_network(&lan.id));
    assert!(msg.contains("leased"), "{msg}");
    for name in ["web", "db"] {
        let uuid = store.instance(name).unwrap().uuid;
        store.delete_instance(&uuid).unwrap();
    }
    store.delete_network(&lan.id).unwrap();
    // Its libvirt network is free again.
    let again = store
        .create_network(&host_network(
            "lan-again",
            "198.18.8.0/24",
            HostBridge::LibvirtNetwork("lab".to_owned()),
        ))
        .unwrap();
    store.delete_network(&again.id).unwrap();
    let left: Vec<String> = store
        .networks()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(left, vec![br.name, "static".to_owned()]);
}

pub fn host_network_bad_input_is_refused(store: &dyn Store) {
    let before = snapshot(store);
    let libvirt = || HostBridge::LibvirtNetwork("lab".to_owned());
    let cases = [
        (
            host_network(
                "a",
                "198.18.8.0/24",
                HostBridge::Bridge("no/slash".to_owned()),
            ),
            "bad bridge name",
        ),
        (
            host_network(
                "a",
                "198.18.8.0/24",
                HostBridge::Bridge("sixteen-bytes-xx".to_owned()),
            ),
            "bad bridge name",
        ),
        (
            host_network(
                "a",
                "198.18.8.0/24",
                HostBridge::LibvirtNetwork("a/b".to_owned()),
            ),
            "bad libvirt network name",
        ),
        (
            host_network("a", "fdc6:1200:0:9::/64", libvirt()),
            "one IPv4 subnet",
        ),
        (
            NewNetwork {
                isolated: true,
                ..host_network("a", "198.18.8.0/24", libvirt())
            },
            "--isolated",
        ),
        (
            NewNetwork {
                ipv6_address_mode: Some(Ipv6AddressMode::Slaac),
                ..host_network("a", "198.18.8.0/24", libvirt())
            },
            "drop --ipv6-address-mode",
        ),
        (
            NewNetwork {
                dhcp_ip: Some(ip("198.18.8.2")),
                ..host_network("a", "198.18.8.0/24", libvirt())
            },
            "--dhcp-ip",
        ),
        (
            NewNetwork {
                gateway: Some(ip("198.18.7.1")),
                ..host_network("a", "198.18.8.0/24", libvirt())
            },
            "198.18.7.1",
        ),
    ];
    for (new, word) in cases {
        let msg = invalid(store.create_network(&new));
        assert!(msg.contains(word), "{word}: {msg}");
    }
    assert_eq!(snapshot(store), before);
}

/// What schema version 1 lacks, as version 2 added it (both dialects).
pub const TO_SCHEMA_2: &str = "
ALTER TABLE networks ADD COLUMN second_cidr TEXT;
ALTER TABLE networks ADD COLUMN second_gateway TEXT;
ALTER TABLE networks ADD COLUMN second_dhcp_ip TEXT;
ALTER TABLE networks ADD COLUMN ipv6_address_mode TEXT;
ALTER TABLE ports ADD COLUMN second_ip TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS ports_network_second_ip ON ports (network_id, second_ip);
CREATE INDEX IF NOT EXISTS ports_second_ip ON ports (second_ip);
INSERT INTO schema_version (version) VALUES (2);
";

/// A registry made at schema version 2 (`make_v2` makes it: the backend's schema 1, its rows
/// and [`TO_SCHEMA_2`]) opens: its networks read back as routed ones, and host networks and
/// their instances can be added; opening it again changes nothing.
pub fn schema_2_is_brought_up_to_date(url: &str, make_v2: &dyn Fn()) {
    make_v2();
    let store = store::open(url).unwrap();
    let old = store.network("old").unwrap();
    assert_eq!(old.host, None);
    let lan = store
        .create_network(&host_network(
            "lan",
            "198.18.8.0/24",
            HostBridge::LibvirtNetwork("lab".to_owned()),
        ))
        .unwrap();
    let (_, port) = store
        .create_instance(
            &new_instance("web"),
            &mac_port("lan", "52:54:00:aa:00:01", None),
        )
        .unwrap();
    assert!(port.ip_learned());
    drop(store);
    let again = store::open(url).unwrap();
    assert_eq!(again.network("lan").unwrap(), lan);
    assert_eq!(again.networks().unwrap().len(), 2);
}
