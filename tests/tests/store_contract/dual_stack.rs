//! IPv6 and dual-stack networks: an IPv6-only network, a second subnet of the other family
//! (IPv4 kept first), a port's address on each subnet, SLAAC addresses from the MAC, the
//! refusals, and a registry made before any of this (schema version 1) brought up to date.

use metaboot_server::store::{
    self, Ipv6AddressMode, NewNetwork, NewPort, NewRouter, Store, Subnet,
};

use crate::support::{conflict, instance, invalid, ip, new_instance, snapshot};

fn subnet(cidr: &str) -> Subnet {
    Subnet {
        cidr: cidr.parse().expect("test CIDRs are literals"),
        gateway: None,
        dhcp_ip: None,
    }
}

fn new_network(name: &str, cidr: &str) -> NewNetwork {
    NewNetwork {
        name: name.to_owned(),
        project: "p1".to_owned(),
        cidr: cidr.parse().expect("test CIDRs are literals"),
        ..NewNetwork::default()
    }
}

pub fn ipv6_and_dual_stack_networks(store: &dyn Store) {
    // IPv6 only: the same defaults as IPv4 (gateway ::1, DHCP port ::2, ports from ::3).
    let v6 = store
        .create_network(&new_network("v6", "fdc6:1200:0:1::/64"))
        .unwrap();
    assert_eq!(v6.gateway, Some(ip("fdc6:1200:0:1::1")));
    assert_eq!(v6.dhcp_ip, Some(ip("fdc6:1200:0:1::2")));
    assert_eq!(v6.second_subnet, None);
    assert!(v6.ipv4_subnet().is_none() && v6.ipv6_subnet().is_some());
    let on_v6 = instance(
        store,
        "six",
        &NewPort {
            network_id: v6.id.clone(),
            ..NewPort::default()
        },
    );
    assert_eq!(on_v6.ip, ip("fdc6:1200:0:1::3"));
    assert_eq!(on_v6.second_ip, None);

    // Dual stack, given IPv6 first: the registry keeps the IPv4 subnet first.
    let dual = store
        .create_network(&NewNetwork {
            second_subnet: Some(Subnet {
                gateway: Some(ip("198.18.5.254")),
                ..subnet("198.18.5.0/24")
            }),
            ipv6_address_mode: Some(Ipv6AddressMode::Dhcpv6Stateful),
            ..new_network("dual", "fdc6:1200:0:5::/64")
        })
        .unwrap();
    assert_eq!(dual.cidr, "198.18.5.0/24".parse().unwrap());
    assert_eq!(dual.gateway, Some(ip("198.18.5.254")));
    assert_eq!(dual.dhcp_ip, Some(ip("198.18.5.1")));
    assert_eq!(
        dual.second_subnet,
        Some(Subnet {
            gateway: Some(ip("fdc6:1200:0:5::1")),
            dhcp_ip: Some(ip("fdc6:1200:0:5::2")),
            ..subnet("fdc6:1200:0:5::/64")
        })
    );
    assert_eq!(dual.cidrs(), "198.18.5.0/24,fdc6:1200:0:5::/64");
    assert_eq!(store.network("dual").unwrap(), dual);
    assert_eq!(store.networks().unwrap(), vec![v6.clone(), dual.clone()]);

    // A port gets an address on each subnet; given ones go to the subnet of their family.
    let allocated = instance(
        store,
        "web",
        &NewPort {
            network_id: dual.id.clone(),
            ..NewPort::default()
        },
    );
    assert_eq!(allocated.ip, ip("198.18.5.2"));
    assert_eq!(allocated.second_ip, Some(ip("fdc6:1200:0:5::3")));
    let given = instance(
        store,
        "db",
        &NewPort {
            network_id: dual.id.clone(),
            ip: Some(ip("fdc6:1200:0:5::10")),
            second_ip: Some(ip("198.18.5.10")),
            ..NewPort::default()
        },
    );
    assert_eq!(
        (given.ip, given.second_ip),
        (ip("198.18.5.10"), Some(ip("fdc6:1200:0:5::10")))
    );
    let only_v6 = instance(
        store,
        "cache",
        &NewPort {
            network_id: dual.id.clone(),
            ip: Some(ip("fdc6:1200:0:5::11")),
            ..NewPort::default()
        },
    );
    assert_eq!(only_v6.ip, ip("198.18.5.3"));
    assert_eq!(only_v6.second_ip, Some(ip("fdc6:1200:0:5::11")));

    // Either address finds the port, on its network, behind its router, anywhere.
    for address in ["198.18.5.10", "fdc6:1200:0:5::10"] {
        assert_eq!(
            store
                .find_ports(ip(address), std::slice::from_ref(&dual.id))
                .unwrap(),
            vec![given.clone()],
            "{address}"
        );
        assert_eq!(
            store.find_ports_by_ip(ip(address)).unwrap(),
            vec![given.clone()]
        );
    }
    let router = store
        .create_router(&NewRouter {
            name: "r".into(),
            project: "p1".into(),
            networks: vec![dual.id.clone(), v6.id.clone()],
        })
        .unwrap();
    assert_eq!(
        store
            .find_ports_behind_router(ip("fdc6:1200:0:5::10"), &router.id)
            .unwrap(),
        vec![given.clone()]
    );
    assert_eq!(
        store
            .find_ports_behind_router(ip("fdc6:1200:0:1::3"), &router.id)
            .unwrap(),
        vec![on_v6]
    );
    let ports = store.instance_ports(&given.instance_id).unwrap();
    assert_eq!(ports, vec![(given.clone(), dual.clone())]);
    assert!(store.ports().unwrap().contains(&given));
    assert_eq!(store.port(&given.id).unwrap(), given);
}

pub fn dual_stack_bad_input_is_refused(store: &dyn Store) {
    let dual = store
        .create_network(&NewNetwork {
            second_subnet: Some(subnet("fdc6:1200:0:6::/64")),
            ..new_network("dual", "198.18.6.0/24")
        })
        .unwrap();
    let taken = instance(
        store,
        "web",
        &NewPort {
            network_id: dual.id.clone(),
            second_ip: Some(ip("fdc6:1200:0:6::10")),
            ..NewPort::default()
        },
    );
    let v4_only = store
        .create_network(&new_network("four", "198.18.7.0/24"))
        .unwrap();
    let before = snapshot(store);

    let msg = invalid(store.create_network(&NewNetwork {
        second_subnet: Some(subnet("198.18.8.0/24")),
        ..new_network("two-v4", "198.18.9.0/24")
    }));
    assert!(msg.contains("at most one subnet per family"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        ipv6_address_mode: Some(Ipv6AddressMode::Slaac),
        ..new_network("no-v6", "198.18.9.0/24")
    }));
    assert!(msg.contains("needs an IPv6 subnet"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        second_subnet: Some(subnet("fdc6:1200:0:9::/64")),
        mtu: Some(1279),
        ..new_network("small-mtu", "198.18.9.0/24")
    }));
    assert!(msg.contains("use 1280 or more"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        ipv6_address_mode: Some(Ipv6AddressMode::Slaac),
        no_dhcp: true,
        ..new_network("static-slaac", "fdc6:1200:0:9::/64")
    }));
    assert!(msg.contains("--no-dhcp"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        ipv6_address_mode: Some(Ipv6AddressMode::Dhcpv6Stateless),
        ..new_network("long", "fdc6:1200:0:9::/80")
    }));
    assert!(msg.contains("/64"), "{msg}");
    let msg = invalid(store.create_network(&NewNetwork {
        second_subnet: Some(Subnet {
            gateway: Some(ip("fdc6:1200:0:a::5")),
            ..subnet("fdc6:1200:0:9::/64")
        }),
        ..new_network("outside", "198.18.9.0/24")
    }));
    assert!(msg.contains("outside"), "{msg}");

    let port = |ip: Option<&str>, second: Option<&str>| NewPort {
        network_id: dual.id.clone(),
        ip: ip.map(crate::support::ip),
        second_ip: second.map(crate::support::ip),
        ..NewPort::default()
    };
    let create = |new: &NewPort| store.create_instance(&new_instance("x"), new);
    let msg = invalid(create(&port(Some("198.18.6.10"), Some("198.18.6.11"))));
    assert!(msg.contains("one address per subnet"), "{msg}");
    let msg = invalid(create(&NewPort {
        network_id: v4_only.id.clone(),
        ip: Some(ip("fdc6:1200:0:6::12")),
        ..NewPort::default()
    }));
    assert!(msg.contains("no IPv6 subnet"), "{msg}");
    let msg = conflict(create(&port(None, Some("fdc6:1200:0:6::10"))));
    assert!(
        msg.contains("already used") && msg.contains(&taken.id),
        "{msg}"
    );
    let msg = conflict(create(&port(Some("fdc6:1200:0:6::1"), None)));
    assert!(msg.contains("gateway"), "{msg}");
    let msg = invalid(create(&port(None, Some("fdc6:1200:0:7::1"))));
    assert!(msg.contains("outside"), "{msg}");
    assert_eq!(snapshot(store), before, "a refused write left something");
}

pub fn slaac_ports_take_the_address_their_guest_makes(store: &dyn Store) {
    let slaac = store
        .create_network(&NewNetwork {
            ipv6_address_mode: Some(Ipv6AddressMode::Slaac),
            ..new_network("slaac", "fdc6:1200:0:2::/64")
        })
        .unwrap();
    assert_eq!(slaac.ipv6_address_mode, Some(Ipv6AddressMode::Slaac));
    assert_eq!(store.network(&slaac.id).unwrap(), slaac);
    let port = |mac: &str, given: Option<&str>| NewPort {
        network_id: slaac.id.clone(),
        mac: Some(mac.to_owned()),
        ip: given.map(ip),
        ..NewPort::default()
    };
    let made = instance(store, "a", &port("fa:16:3e:12:34:56", None));
    assert_eq!(made.ip, ip("fdc6:1200:0:2:f816:3eff:fe12:3456"));
    // Naming that same address is fine; any other is refused, saying which it would be.
    let named = instance(
        store,
        "b",
        &port("fa:16:3e:00:00:01", Some("fdc6:1200:0:2:f816:3eff:fe00:1")),
    );
    assert_eq!(named.ip, ip("fdc6:1200:0:2:f816:3eff:fe00:1"));
    let before = snapshot(store);
    let msg = invalid(store.create_instance(
        &new_instance("c"),
        &port("fa:16:3e:00:00:02", Some("fdc6:1200:0:2::10")),
    ));
    assert!(
        msg.contains("slaac") && msg.contains("fdc6:1200:0:2:f816:3eff:fe00:2"),
        "{msg}"
    );
    assert_eq!(snapshot(store), before);
}

/// SQLite's schema at version 1 (before dual stack), as metaboot-server made it.
pub const SQLITE_SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway TEXT,
    dhcp_ip TEXT,
    isolated INTEGER NOT NULL,
    mtu INTEGER,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS networks_name ON networks (name);
CREATE TABLE IF NOT EXISTS routers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS routers_name ON routers (name);
CREATE TABLE IF NOT EXISTS router_networks (
    router_id TEXT NOT NULL REFERENCES routers (id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    PRIMARY KEY (router_id, network_id)
);
CREATE INDEX IF NOT EXISTS router_networks_network ON router_networks (network_id);
CREATE TABLE IF NOT EXISTS instances (
    ec2_id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    availability_zone TEXT,
    launch_index INTEGER NOT NULL,
    key_pairs TEXT NOT NULL,
    user_data BLOB,
    meta TEXT NOT NULL,
    admin_pass TEXT,
    password TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_name ON instances (name);
CREATE TABLE IF NOT EXISTS ports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    network_id TEXT NOT NULL REFERENCES networks (id),
    mac TEXT NOT NULL,
    ip TEXT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (uuid),
    project TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ports_network_ip ON ports (network_id, ip);
CREATE UNIQUE INDEX IF NOT EXISTS ports_mac ON ports (mac);
CREATE INDEX IF NOT EXISTS ports_ip ON ports (ip);
CREATE INDEX IF NOT EXISTS ports_instance ON ports (instance_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL
);
";

/// PostgreSQL's schema at version 1.
pub const POSTGRES_SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway TEXT,
    dhcp_ip TEXT,
    isolated BOOLEAN NOT NULL,
    mtu BIGINT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS networks_name ON networks (name);
CREATE TABLE IF NOT EXISTS routers (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS routers_name ON routers (name);
CREATE TABLE IF NOT EXISTS router_networks (
    router_id TEXT NOT NULL REFERENCES routers (id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    PRIMARY KEY (router_id, network_id)
);
CREATE INDEX IF NOT EXISTS router_networks_network ON router_networks (network_id);
CREATE TABLE IF NOT EXISTS instances (
    ec2_id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL CONSTRAINT instances_uuid UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    availability_zone TEXT,
    launch_index BIGINT NOT NULL,
    key_pairs TEXT NOT NULL,
    user_data BYTEA,
    meta TEXT NOT NULL,
    admin_pass TEXT,
    password TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_name ON instances (name);
CREATE TABLE IF NOT EXISTS ports (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    network_id TEXT NOT NULL REFERENCES networks (id),
    mac TEXT NOT NULL CONSTRAINT ports_mac UNIQUE,
    ip TEXT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (uuid),
    project TEXT NOT NULL,
    created TEXT NOT NULL,
    CONSTRAINT ports_network_ip UNIQUE (network_id, ip)
);
CREATE INDEX IF NOT EXISTS ports_ip ON ports (ip);
CREATE INDEX IF NOT EXISTS ports_instance ON ports (instance_id);
CREATE TABLE IF NOT EXISTS changes (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL
);
";

/// What a version-1 registry holds: its version and one network.
pub const ROWS_1: &str = "
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO networks (id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, created)
    VALUES ('00000000-0000-4000-8000-00000000000a', 'old', 'p1', '198.18.0.0/24',
    '198.18.0.1', '198.18.0.2', FALSE, NULL, '2026-01-01T00:00:00Z');
";

/// A registry made at schema version 1 (`make_v1` makes it, empty database at `url`: the
/// backend's schema 1 and [`ROWS_1`]) opens: its networks read back without a second subnet,
/// and dual-stack networks and ports can be added; opening it again changes nothing.
pub fn schema_1_is_brought_up_to_date(url: &str, make_v1: &dyn Fn()) {
    make_v1();
    let store = store::open(url).unwrap();
    let old = store.network("old").unwrap();
    assert_eq!(old.cidr, "198.18.0.0/24".parse().unwrap());
    assert_eq!((old.second_subnet, old.ipv6_address_mode), (None, None));
    let dual = store
        .create_network(&NewNetwork {
            second_subnet: Some(subnet("fdc6:1200:0:3::/64")),
            ..new_network("dual", "198.18.3.0/24")
        })
        .unwrap();
    let port = instance(
        &*store,
        "web",
        &NewPort {
            network_id: dual.id.clone(),
            ..NewPort::default()
        },
    );
    assert_eq!(port.second_ip, Some(ip("fdc6:1200:0:3::3")));
    drop(store);
    let again = store::open(url).unwrap();
    assert_eq!(again.network("dual").unwrap(), dual);
    assert_eq!(again.networks().unwrap().len(), 2);
}
