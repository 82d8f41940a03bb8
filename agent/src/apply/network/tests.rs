//! Network documents into plans, plans into files and commands, on temporary roots.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::sys_net::SYS_CLASS_NET;

use super::*;

/// nova's document for a static port (metaboot's `--no-dhcp` network) and a DHCP port, with
/// DNS and host routes as nova writes them, and a bond cloud-init would build.
fn nova_doc() -> serde_json::Value {
    json!({
        "links": [
            {"id": "tap1", "vif_id": "p1", "type": "bridge", "mtu": 1450,
             "ethernet_mac_address": "FA:16:3E:00:00:01"},
            {"id": "tap2", "vif_id": "p2", "type": "ovs", "mtu": null,
             "ethernet_mac_address": "fa:16:3e:00:00:02"},
            {"id": "bond0", "type": "bond", "bond_links": ["tap1"], "ethernet_mac_address": "fa:16:3e:00:00:09"}
        ],
        "networks": [
            {"id": "network0", "link": "tap1", "network_id": "n1", "type": "ipv4",
             "ip_address": "198.18.30.5", "netmask": "255.255.255.0",
             "routes": [
                {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.30.1"},
                {"network": "198.19.0.0", "netmask": "255.255.0.0", "gateway": "198.18.30.254"}
             ],
             "services": [{"type": "dns", "address": "198.18.30.2"}]},
            {"id": "network1", "link": "tap1", "network_id": "n1", "type": "ipv6",
             "ip_address": "2001:db8::5", "netmask": "ffff:ffff:ffff:ffff::",
             "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]},
            {"id": "network2", "link": "tap2", "network_id": "n2", "type": "ipv4_dhcp"},
            {"id": "network3", "link": "tap2", "network_id": "n2", "type": "ipv6_slaac"}
        ],
        "services": [{"type": "dns", "address": "198.18.30.2"}, {"type": "dns", "address": "198.18.30.3"}]
    })
}

fn addr(text: &str) -> Address {
    address(text, None).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn netmasks_and_addresses() {
    assert_eq!(prefix_of("255.255.255.0"), Some(24));
    assert_eq!(prefix_of("255.255.0.0"), Some(16));
    assert_eq!(prefix_of("0.0.0.0"), Some(0));
    assert_eq!(prefix_of("ffff:ffff:ffff:ffff::"), Some(64));
    assert_eq!(prefix_of("::"), Some(0));
    assert_eq!(prefix_of("24"), Some(24));
    assert_eq!(prefix_of("255.0.255.0"), None, "not contiguous");
    assert_eq!(prefix_of("200"), None);
    assert_eq!(
        address("198.18.0.5", Some("255.255.255.0")),
        Some(addr("198.18.0.5/24"))
    );
    assert_eq!(address("198.18.0.5/33", None), None);
    assert_eq!(
        address("fe80::1/64", None).unwrap().to_string(),
        "fe80::1/64"
    );
    assert_eq!(address("nope", None), None);
}

#[test]
fn network_data_json_becomes_a_plan() {
    let mut warnings = Vec::new();
    let plan = plan(&NetworkDoc::OpenStack(nova_doc()), &mut warnings).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("bond"), "{warnings:?}");
    assert_eq!(
        plan.interfaces,
        vec![
            Interface {
                mac: Some("fa:16:3e:00:00:01".into()),
                name: None,
                system_mac: None,
                mtu: Some(1450),
                dhcp4: false,
                dhcp4_ignores_routes: false,
                ipv6: Ipv6Auto::StaticOnly,
                addresses: vec![addr("198.18.30.5/24"), addr("2001:db8::5/64")],
                routes: vec![
                    Route {
                        to: addr("0.0.0.0/0"),
                        via: ip("198.18.30.1")
                    },
                    Route {
                        to: addr("198.19.0.0/16"),
                        via: ip("198.18.30.254")
                    },
                    Route {
                        to: addr("::/0"),
                        via: ip("2001:db8::1")
                    },
                ],
            },
            Interface {
                mac: Some("fa:16:3e:00:00:02".into()),
                dhcp4: true,
                ipv6: Ipv6Auto::Slaac,
                ..Interface::default()
            },
        ]
    );
    assert_eq!(plan.nameservers, [ip("198.18.30.2"), ip("198.18.30.3")]);
    // nova's `{}` for an instance without ports configures nothing.
    let empty = super::plan(&NetworkDoc::OpenStack(json!({})), &mut warnings).unwrap();
    assert_eq!(empty, Plan::default());
    let broken = json!({"links": [{"id": "t", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [{"id": "n", "link": "t", "type": "ipv4", "ip_address": "x"}]});
    assert!(super::plan(&NetworkDoc::OpenStack(broken), &mut warnings).is_err());
}

/// nova writes an `ipv6_slaac` or `ipv6_dhcpv6-*` network with the subnet's routes and DNS:
/// its host routes and DNS are kept, the address and the default route left to the router's
/// advertisements (or DHCPv6).
#[test]
fn routes_and_dns_of_an_ipv6_auto_network_are_kept() {
    for (kind, auto) in [
        ("ipv6_slaac", Ipv6Auto::Slaac),
        ("ipv6_dhcpv6-stateless", Ipv6Auto::Stateless),
        ("ipv6_dhcpv6-stateful", Ipv6Auto::Dhcp),
    ] {
        let doc = json!({
            "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
            "networks": [{"id": "network0", "link": "tap1", "network_id": "n1", "type": kind,
                "ip_address": "2001:db8::f816:3eff:fe00:1", "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [
                    {"network": "::", "netmask": "::", "gateway": "fe80::1"},
                    {"network": "2001:db8:9::", "netmask": "ffff:ffff:ffff::", "gateway": "2001:db8::fe"}
                ],
                "services": [{"type": "dns", "address": "2001:db8::53"}]}],
            "services": []
        });
        let mut warnings = Vec::new();
        let plan = plan(&NetworkDoc::OpenStack(doc), &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{kind}: {warnings:?}");
        let interface = &plan.interfaces[0];
        assert_eq!(interface.ipv6, auto, "{kind}");
        assert!(interface.addresses.is_empty(), "{kind}");
        // The default route comes with the router's advertisements.
        assert_eq!(
            interface.routes,
            [Route {
                to: addr("2001:db8:9::/48"),
                via: ip("2001:db8::fe")
            }],
            "{kind}"
        );
        assert_eq!(plan.nameservers, [ip("2001:db8::53")], "{kind}");
    }
}

/// A DHCP network's DNS (its `dns` services, else its `dns_nameservers`, and its
/// `dns_search`) is written as a static network's is: `DNS=` for systemd-networkd,
/// `dns-nameservers` on the `inet dhcp` stanza for ifupdown (as cloud-init's ENI renderer
/// writes it), `/etc/resolv.conf` for the direct renderer.
#[test]
fn the_dns_of_a_dhcp_network_is_written() {
    let doc = |network: serde_json::Value| {
        let mut dhcp = json!({"id": "network0", "link": "tap1", "network_id": "n1",
            "type": "ipv4_dhcp"});
        dhcp.as_object_mut()
            .unwrap()
            .extend(network.as_object().unwrap().clone());
        json!({
            "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
            "networks": [dhcp,
                {"id": "network1", "link": "tap1", "network_id": "n1", "type": "ipv6_dhcp",
                 "dns_nameservers": ["2001:db8::53"]}],
            "services": []
        })
    };
    let services = doc(
        json!({"services": [{"type": "dns", "address": "198.18.30.2"}],
        "dns_nameservers": ["198.18.30.9"], "dns_search": ["lab.example"]}),
    );
    let nameservers = doc(json!({"dns_nameservers": ["198.18.30.2"],
        "dns_search": ["lab.example"]}));
    for doc in [services, nameservers] {
        let mut warnings = Vec::new();
        let mut plan = plan(&NetworkDoc::OpenStack(doc), &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        plan.interfaces[0].name = Some("ens3".into());
        assert_eq!(
            networkd::render(&plan.interfaces[0], &plan, "network_data.json"),
            "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.
[Match]
MACAddress=fa:16:3e:00:00:01
Name=ens3

[Network]
DHCP=yes
IPv6AcceptRA=yes
DNS=198.18.30.2
DNS=2001:db8::53
Domains=lab.example

[DHCPv4]
ClientIdentifier=mac
"
        );
        assert_eq!(
            ifupdown::render(&plan, "network_data.json").0,
            "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.

auto ens3
iface ens3 inet dhcp
    dns-nameservers 198.18.30.2 2001:db8::53
    dns-search lab.example
iface ens3 inet6 dhcp
"
        );
        assert_eq!(
            resolv_conf(&plan, "network_data.json", None).unwrap(),
            "# Written by metaboot from network_data.json.\nnameserver 198.18.30.2\n\
             nameserver 2001:db8::53\nsearch lab.example\n"
        );
    }
}

/// The routes of a DHCP network (`ipv4_dhcp`, `ipv6_dhcp` in `network_data.json`, a `dhcp`
/// or `dhcp6` subnet in `network-config` version 1) are applied next to what the DHCP server
/// gives, as cloud-init's `convert_net_json` keeps them on the subnet and its renderers write
/// every subnet's routes: Ironic and other producers write them (nova does not).
#[test]
fn the_routes_of_a_dhcp_network_are_applied() {
    let openstack = json!({
        "links": [{"id": "tap1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [
            {"id": "network0", "link": "tap1", "type": "ipv4_dhcp",
             "routes": [{"network": "198.19.0.0", "netmask": "255.255.0.0", "gateway": "198.18.30.254"}]},
            {"id": "network1", "link": "tap1", "type": "ipv6_dhcp",
             "routes": [{"network": "::", "netmask": "::", "gateway": "fe80::1"},
                        {"network": "2001:db8:9::", "netmask": "ffff:ffff:ffff::", "gateway": "2001:db8::fe"}]}],
        "services": []
    });
    let v1 = json!({"network": {"version": 1, "config": [
        {"type": "physical", "name": "ens3", "mac_address": "fa:16:3e:00:00:01", "subnets": [
            {"type": "dhcp",
             "routes": [{"network": "198.19.0.0", "netmask": "255.255.0.0", "gateway": "198.18.30.254"},
                       {"network": "10.0.0.0", "prefix": 8}]},
            {"type": "dhcp6",
             "routes": [{"network": "2001:db8:9::", "prefix": 48, "gateway": "2001:db8::fe"}]}]}]}});
    for doc in [
        NetworkDoc::OpenStack(openstack),
        NetworkDoc::NetworkConfig(v1),
    ] {
        let mut warnings = Vec::new();
        let mut plan = plan(&doc, &mut warnings).unwrap();
        // The DHCPv6 network's default route is the router advertisements' (network_data.json);
        // a DHCP subnet's route that cannot be read is left out, its DHCP kept (version 1).
        match doc {
            NetworkDoc::OpenStack(_) => assert!(warnings.is_empty(), "{warnings:?}"),
            NetworkDoc::NetworkConfig(_) => assert_eq!(
                warnings,
                ["network-config: ens3: a route without a usable gateway; left out"]
            ),
        }
        plan.interfaces[0].name = Some("ens3".into());
        let interface = &plan.interfaces[0];
        assert!(interface.dhcp4 && interface.ipv6 == Ipv6Auto::Dhcp);
        assert_eq!(
            interface.routes,
            [
                Route {
                    to: addr("198.19.0.0/16"),
                    via: ip("198.18.30.254")
                },
                Route {
                    to: addr("2001:db8:9::/48"),
                    via: ip("2001:db8::fe")
                }
            ]
        );
        let networkd = networkd::render(interface, &plan, "network_data.json");
        assert!(
            networkd.contains("[Route]\nDestination=198.19.0.0/16\nGateway=198.18.30.254\n")
                && networkd
                    .contains("[Route]\nDestination=2001:db8:9::/48\nGateway=2001:db8::fe\n"),
            "{networkd}"
        );
        let ifupdown = ifupdown::render(&plan, "network_data.json").0;
        assert!(
            ifupdown.contains("iface ens3 inet dhcp\n    up ip route replace 198.19.0.0/16 via 198.18.30.254 dev ens3 || true\n")
                && ifupdown.contains("iface ens3 inet6 dhcp\n    up ip -6 route replace 2001:db8:9::/48 via 2001:db8::fe dev ens3 || true\n"),
            "{ifupdown}"
        );
        let routes: Vec<String> = direct::commands(&plan, |_, _| true)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            routes,
            [
                "-4 route replace 198.19.0.0/16 via 198.18.30.254 dev ens3",
                "-6 route replace 2001:db8:9::/48 via 2001:db8::fe dev ens3",
            ]
        );
    }
}

/// A DHCP link's default route is its lease's: the document's beside it (a `network_data.json`
/// DHCP network's routes, a version 1 DHCP subnet's, version 2's `gateway4` or default route
/// with `dhcp4`) would be a second default (`ip route replace default` at metric 0 next to
/// networkd's lease route at 1024, and networkd's `[Route]` at every boot), so it is left out
/// with a warning, as cloud-init's netplan and ENI renderers leave it; its host routes are
/// kept, and so is the default route of a link with a static IPv4 address too.
#[test]
fn a_dhcp_links_default_route_is_its_leases() {
    let openstack = json!({
        "links": [{"id": "tap1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [{"id": "network0", "link": "tap1", "type": "ipv4_dhcp",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.30.1"},
                        {"network": "198.19.0.0", "netmask": "255.255.0.0", "gateway": "198.18.30.254"}]}],
        "services": []
    });
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "ens3", "mac_address": "fa:16:3e:00:00:01", "subnets": [
            {"type": "dhcp", "routes": [
                {"network": "0.0.0.0", "prefix": 0, "gateway": "198.18.30.1"},
                {"network": "198.19.0.0", "prefix": 16, "gateway": "198.18.30.254"}]}]}]});
    let v2 = json!({"version": 2, "ethernets": {"ens3": {
        "match": {"macaddress": "fa:16:3e:00:00:01"}, "dhcp4": true, "gateway4": "198.18.30.1",
        "routes": [{"to": "default", "via": "198.18.30.1"},
                   {"to": "198.19.0.0/16", "via": "198.18.30.254"}]}}});
    let host_route = Route {
        to: addr("198.19.0.0/16"),
        via: ip("198.18.30.254"),
    };
    for (doc, defaults) in [
        (NetworkDoc::OpenStack(openstack), 1),
        (NetworkDoc::NetworkConfig(v1), 1),
        (NetworkDoc::NetworkConfig(v2), 2),
    ] {
        let mut warnings = Vec::new();
        let mut plan = plan(&doc, &mut warnings).unwrap();
        assert_eq!(plan.interfaces[0].routes, [host_route], "{doc:?}");
        assert_eq!(warnings.len(), defaults, "{warnings:?}");
        assert!(
            warnings[0].ends_with(
                ": the default route via 198.18.30.1 is left out: the \
                 interface gets its IPv4 address by DHCP, whose lease gives the default route \
                 (give it a static address to route it otherwise)"
            ),
            "{warnings:?}"
        );
        plan.interfaces[0].name = Some("ens3".into());
        plan.interfaces[0].system_mac = Some("fa:16:3e:00:00:01".into());
        let (_dir, root) = root_with_links(&[("ens3", "fa:16:3e:00:00:01")]);
        fs::write(root.host_path("/sys/class/net/ens3/mtu"), "1500\n").unwrap();
        hold_addresses(&root, &["ens3"]);
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            Ok(())
        };
        networkd::apply_with(&root, &plan, "network_data.json", Some(&mut record));
        assert_eq!(
            calls,
            ["ip -4 route replace 198.19.0.0/16 via 198.18.30.254 dev ens3"]
        );
    }
    // With a static IPv4 address too, the route is the static subnet's as much as the lease's.
    let both = json!({"version": 2, "ethernets": {"ens3": {
        "dhcp4": true, "addresses": ["198.18.31.5/24"], "gateway4": "198.18.31.1"}}});
    let mut warnings = Vec::new();
    let plan = plan(&NetworkDoc::NetworkConfig(both), &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(plan.interfaces[0].routes[0].is_default());
}

/// A DHCP link whose document tells DHCP to install no routes (`dhcp4-overrides: use-routes`
/// false, in any way networkd reads false from cloud-init's `UseRoutes=`) keeps the
/// document's default route: the lease gives none. Anything else leaves it out.
#[test]
fn a_dhcp_link_without_the_leases_routes_keeps_the_documents_default_route() {
    for (use_routes, kept) in [
        (json!(false), true),
        (json!("No"), true),
        (json!("off"), true),
        (json!(0), true),
        (json!(true), false),
        (json!("yes"), false),
    ] {
        let doc = json!({"version": 2, "ethernets": {"ens3": {
            "dhcp4": true, "dhcp4-overrides": {"use-routes": use_routes},
            "routes": [{"to": "0.0.0.0/0", "via": "198.18.30.1"}]}}});
        let mut warnings = Vec::new();
        let plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
        let routes = &plan.interfaces[0].routes;
        assert_eq!(!routes.is_empty(), kept, "{use_routes}: {warnings:?}");
        assert_eq!(warnings.is_empty(), kept, "{use_routes}: {warnings:?}");
        // networkd is told too, or the lease's default route would sit beside the document's.
        let file = networkd::render(&plan.interfaces[0], &plan, "network-config");
        assert_eq!(
            file.contains("[DHCPv4]\nClientIdentifier=mac\nUseRoutes=false\n"),
            kept,
            "{use_routes}: {file}"
        );
    }
}

/// A port of a static IPv6 network (nova's `ipv6`) refuses router advertisements, as
/// cloud-init's `accept-ra: false`: networkd would otherwise accept them by default, and the
/// guest take a SLAAC address and the router's default route next to the port's own. A link
/// that also has an `ipv6_slaac` or DHCPv6 network keeps them, whichever comes first; an
/// IPv4-only link is left to the default.
#[test]
fn a_static_ipv6_port_refuses_router_advertisements() {
    let doc = |types: &[&str]| {
        let networks: Vec<serde_json::Value> = types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let ip = if kind.starts_with("ipv4") { "198.18.30.5" } else { "2001:db8::5" };
                json!({"id": format!("network{i}"), "link": "tap1", "type": kind,
                       "ip_address": ip, "netmask": if ip.contains(':') { "ffff:ffff:ffff:ffff::" } else { "255.255.255.0" }})
            })
            .collect();
        json!({"links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
               "networks": networks, "services": []})
    };
    let rendered = |types: &[&str]| {
        let mut warnings = Vec::new();
        let mut plan = plan(&NetworkDoc::OpenStack(doc(types)), &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{types:?}: {warnings:?}");
        plan.interfaces[0].name = Some("ens3".into());
        (
            networkd::render(&plan.interfaces[0], &plan, "network_data.json"),
            ifupdown::render(&plan, "network_data.json").0,
        )
    };
    let (networkd, ifupdown) = rendered(&["ipv4", "ipv6"]);
    assert!(
        networkd.contains("\nDHCP=no\nIPv6AcceptRA=no\n"),
        "{networkd}"
    );
    assert!(
        ifupdown.contains("iface ens3 inet6 static\n    accept_ra 0\n    address 2001:db8::5/64\n"),
        "{ifupdown}"
    );
    for types in [
        &["ipv6", "ipv6_slaac"][..],
        &["ipv6_slaac", "ipv6"],
        &["ipv6", "ipv6_dhcpv6-stateful"],
    ] {
        let (networkd, ifupdown) = rendered(types);
        assert!(
            networkd.contains("IPv6AcceptRA=yes\n"),
            "{types:?}: {networkd}"
        );
        assert!(!ifupdown.contains("accept_ra"), "{types:?}: {ifupdown}");
    }
    let (networkd, ifupdown) = rendered(&["ipv4"]);
    assert!(!networkd.contains("IPv6AcceptRA"), "{networkd}");
    assert!(!ifupdown.contains("accept_ra"), "{ifupdown}");
}

/// `network-config`'s explicit `accept-ra: false` (version 2 on an ethernet, version 1 on a
/// `physical` entry; a string as cloud-init reads it) refuses router advertisements, as
/// cloud-init's renderers write it; `true` takes them; `dhcp6: true` stands.
#[test]
fn an_explicit_accept_ra_false_refuses_router_advertisements() {
    let v2 = |accept_ra: serde_json::Value, dhcp6: bool| {
        json!({"version": 2, "ethernets": {"ens3": {
            "addresses": ["2001:db8::5/64"], "accept-ra": accept_ra, "dhcp6": dhcp6}}})
    };
    let v1 = |accept_ra: serde_json::Value| {
        json!({"version": 1, "config": [{"type": "physical", "name": "ens3",
            "accept-ra": accept_ra,
            "subnets": [{"type": "static6", "address": "2001:db8::5/64"}]}]})
    };
    let ipv6 = |doc: serde_json::Value| {
        let mut warnings = Vec::new();
        let plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let networkd = networkd::render(&plan.interfaces[0], &plan, "network-config");
        let ifupdown = ifupdown::render(&plan, "network-config").0;
        (plan.interfaces[0].ipv6, networkd, ifupdown)
    };
    for doc in [
        v2(json!(false), false),
        v1(json!(false)),
        v1(json!("False")),
    ] {
        let (auto, networkd, ifupdown) = ipv6(doc);
        assert_eq!(auto, Ipv6Auto::StaticOnly);
        assert!(networkd.contains("\nIPv6AcceptRA=no\n"), "{networkd}");
        assert!(
            ifupdown.contains("iface ens3 inet6 static\n    accept_ra 0\n"),
            "{ifupdown}"
        );
    }
    assert_eq!(ipv6(v2(json!(true), false)).0, Ipv6Auto::Slaac);
    assert_eq!(ipv6(v1(json!("yes"))).0, Ipv6Auto::Slaac);
    assert_eq!(ipv6(v2(json!(false), true)).0, Ipv6Auto::Dhcp);
    assert_eq!(ipv6(v2(json!("off"), false)).0, Ipv6Auto::StaticOnly);
    assert_eq!(ipv6(v2(json!(null), false)).0, Ipv6Auto::None);
}

/// `ipv6_dhcpv6-stateless` takes its address from the router's advertisements and the rest
/// (the DNS servers) from DHCPv6: ifupdown's `inet6 auto` runs its DHCPv6 client only with
/// `dhcp 1`, as cloud-init's ENI renderer writes it; `ipv6_slaac` gets none. networkd starts
/// its client on the advertisement's flag.
#[test]
fn stateless_dhcpv6_runs_the_dhcpv6_client() {
    for (kind, dhcp) in [("ipv6_dhcpv6-stateless", true), ("ipv6_slaac", false)] {
        let doc = json!({
            "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
            "networks": [{"id": "network0", "link": "tap1", "network_id": "n1", "type": kind,
                "ip_address": "2001:db8::f816:3eff:fe00:1", "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [], "services": []}],
            "services": []
        });
        let mut warnings = Vec::new();
        let mut plan = plan(&NetworkDoc::OpenStack(doc), &mut warnings).unwrap();
        plan.interfaces[0].name = Some("ens3".into());
        let (text, _) = ifupdown::render(&plan, "network_data.json");
        let stanza = if dhcp {
            "iface ens3 inet6 auto\n    dhcp 1\n"
        } else {
            "iface ens3 inet6 auto\n"
        };
        assert!(text.ends_with(stanza), "{kind}: {text}");
        let networkd = networkd::render(&plan.interfaces[0], &plan, "network_data.json");
        assert!(
            networkd.contains("DHCP=no\nIPv6AcceptRA=yes\n"),
            "{kind}: {networkd}"
        );
    }
    let v1 = json!({"version": 1, "config": [{"type": "physical", "name": "eth0",
        "subnets": [{"type": "ipv6_dhcpv6-stateless"}]}]});
    let mut warnings = Vec::new();
    let (text, _) = ifupdown::render(
        &plan(&NetworkDoc::NetworkConfig(v1), &mut warnings).unwrap(),
        "network-config",
    );
    assert!(
        text.ends_with("iface eth0 inet6 auto\n    dhcp 1\n"),
        "{text}"
    );
}

/// The keys of `network_data.json` that cloud-init's `convert_net_json` takes besides nova's:
/// the network types `static` and `static6`, a network's `gateway` (its default route; one the
/// network's `routes` repeat is given once), `dns_nameservers` (when no `dns` service names a
/// server: cloud-init's services replace them) and `dns_search`, and `dns` services listed
/// inside a route. Each lands where a user looks for it, whatever the renderer.
#[test]
fn the_keys_cloud_init_takes_beside_novas_are_applied() {
    let doc = json!({
        "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [
            {"id": "network0", "link": "tap1", "type": "static",
             "ip_address": "198.18.30.5", "netmask": "255.255.255.0", "gateway": "198.18.30.1",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.30.1"}],
             "dns_nameservers": ["198.18.30.2"], "dns_search": ["lab.example"]},
            {"id": "network1", "link": "tap1", "type": "static6",
             "ip_address": "2001:db8::5", "netmask": "ffff:ffff:ffff:ffff::",
             "routes": [{"network": "2001:db8:9::", "netmask": "ffff:ffff:ffff::",
                         "gateway": "2001:db8::fe",
                         "services": [{"type": "dns", "address": "2001:db8::53"}]}],
             "dns_nameservers": ["2001:db8::99"]}
        ],
        "services": []
    });
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::OpenStack(doc), &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    plan.interfaces[0].name = Some("ens3".into());
    plan.interfaces[0].system_mac = Some("fa:16:3e:00:00:01".into());
    assert_eq!(
        networkd::render(&plan.interfaces[0], &plan, "network_data.json"),
        "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.
[Match]
MACAddress=fa:16:3e:00:00:01
Name=ens3

[Network]
DHCP=no
IPv6AcceptRA=no
Address=198.18.30.5/24
Address=2001:db8::5/64
DNS=198.18.30.2
DNS=2001:db8::53
Domains=lab.example

[Route]
Destination=0.0.0.0/0
Gateway=198.18.30.1

[Route]
Destination=2001:db8:9::/48
Gateway=2001:db8::fe
"
    );
    assert_eq!(
        ifupdown::render(&plan, "network_data.json").0,
        "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.

# metaboot: ens3 fa:16:3e:00:00:01
auto ens3
iface ens3 inet static
    address 198.18.30.5/24
    gateway 198.18.30.1
    dns-nameservers 198.18.30.2 2001:db8::53
    dns-search lab.example
iface ens3 inet6 static
    accept_ra 0
    address 2001:db8::5/64
    up ip -6 route replace 2001:db8:9::/48 via 2001:db8::fe dev ens3 || true
"
    );
    let commands: Vec<String> = direct::commands(&plan, |_, _| true)
        .iter()
        .map(|c| c.join(" "))
        .collect();
    assert_eq!(
        commands,
        [
            "-4 addr add 198.18.30.5/24 dev ens3",
            "-6 addr add 2001:db8::5/64 dev ens3",
            "-4 route replace default via 198.18.30.1 dev ens3",
            "-6 route replace 2001:db8:9::/48 via 2001:db8::fe dev ens3",
        ]
    );
    assert_eq!(
        resolv_conf(&plan, "network_data.json", None).unwrap(),
        "# Written by metaboot from network_data.json.\nnameserver 198.18.30.2\n\
         nameserver 2001:db8::53\nsearch lab.example\n"
    );
    // A gateway that is no address is left out with a warning, as a route without one is.
    let bad = json!({
        "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [{"id": "network0", "link": "tap1", "type": "ipv4",
            "ip_address": "198.18.30.5", "netmask": "255.255.255.0", "gateway": "nope"}]
    });
    let plan = super::plan(&NetworkDoc::OpenStack(bad), &mut warnings).unwrap();
    assert!(plan.interfaces[0].routes.is_empty());
    assert!(warnings[0].contains("gateway \"nope\""), "{warnings:?}");
}

/// Before the network starts, a MAC the ifupdown file records that is on no interface may be
/// a NIC whose driver udev is still loading: udev is waited for (at most
/// [`UDEV_SETTLE_TIMEOUT_SECS`]) before the file is set aside; a NIC that appears meanwhile
/// keeps it.
#[test]
fn udev_is_waited_for_before_a_missing_mac_sets_the_file_aside() {
    assert_eq!(UDEV_SETTLE_TIMEOUT_SECS, 10);
    assert_eq!(settle_args(), ["settle", "--timeout=10"]);
    let plan = named_plan();
    let (_dir, root) = root_with_links(&[("eth0", "fa:16:3e:00:00:01")]);
    let (text, _) = ifupdown::render(&plan, "network_data.json");
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(root.host_path(IFUPDOWN_FILE), &text).unwrap();
    // eth1 (fa:16:3e:00:00:02) appears while udev settles.
    let mut settled = 0;
    let mut settle = || {
        settled += 1;
        let eth1 = root.host_path("/sys/class/net/eth1");
        fs::create_dir_all(&eth1).unwrap();
        fs::write(eth1.join("address"), "fa:16:3e:00:00:02\n").unwrap();
    };
    assert_eq!(
        set_aside_stale(&root, Some(&mut settle)).unwrap(),
        Stale::Current
    );
    assert_eq!(settled, 1);
    assert_eq!(set_aside_stale(&root, None).unwrap(), Stale::Current);
    assert_eq!(
        fs::read_to_string(root.host_path(IFUPDOWN_FILE)).unwrap(),
        text
    );
    // A NIC that does not appear: the file is set aside after one wait.
    fs::write(
        root.host_path("/sys/class/net/eth1/address"),
        "fa:16:3e:00:00:99\n",
    )
    .unwrap();
    let mut settled = 0;
    let mut settle = || settled += 1;
    assert_eq!(
        set_aside_stale(&root, Some(&mut settle)).unwrap(),
        Stale::SetAside {
            name: "eth1".into(),
            mac: "fa:16:3e:00:00:02".into(),
            nic: NicNow::Gone,
        }
    );
    assert_eq!(settled, 1);
    assert!(!root.exists(IFUPDOWN_FILE));
    assert_eq!(fs::read_to_string(root.host_path(SET_ASIDE)).unwrap(), text);
    assert_eq!(set_aside_stale(&root, None).unwrap(), Stale::NoFile);
}

#[test]
fn network_config_versions_1_and_2_become_plans() {
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": "fa:16:3e:00:00:01", "mtu": 1400,
         "subnets": [{"type": "static", "address": "198.18.1.10", "netmask": "255.255.255.0",
                      "gateway": "198.18.1.1", "dns_nameservers": ["198.18.1.2"], "dns_search": ["a.example"]},
                     {"type": "dhcp6"}]},
        {"type": "bond", "name": "bond0"},
        {"type": "nameserver", "address": ["198.18.1.3"], "search": ["example.org"]}
    ]});
    let mut warnings = Vec::new();
    let plan1 = plan(&NetworkDoc::NetworkConfig(v1), &mut warnings).unwrap();
    assert_eq!(plan1.interfaces.len(), 1);
    let eth0 = &plan1.interfaces[0];
    assert_eq!(eth0.name.as_deref(), Some("eth0"));
    assert_eq!(eth0.mtu, Some(1400));
    assert_eq!(eth0.ipv6, Ipv6Auto::Dhcp);
    assert_eq!(eth0.addresses, [addr("198.18.1.10/24")]);
    assert_eq!(
        eth0.routes,
        [Route {
            to: addr("0.0.0.0/0"),
            via: ip("198.18.1.1")
        }]
    );
    assert_eq!(plan1.nameservers, [ip("198.18.1.2"), ip("198.18.1.3")]);
    assert_eq!(plan1.search, ["a.example", "example.org"]);
    assert_eq!(warnings.len(), 1, "the bond: {warnings:?}");

    let v2 = json!({"network": {"version": 2, "ethernets": {
        "id0": {"match": {"macaddress": "FA:16:3E:00:00:02"}, "set-name": "ens3",
                "addresses": ["198.18.2.10/24", "2001:db8::a/64"], "gateway4": "198.18.2.1",
                "routes": [{"to": "198.19.0.0/16", "via": "198.18.2.254"}],
                "nameservers": {"addresses": ["198.18.2.2"], "search": ["lab.example"]}, "mtu": 9000},
        "eth1": {"dhcp4": true, "dhcp6": true}
    }}});
    let plan2 = plan(&NetworkDoc::NetworkConfig(v2), &mut warnings).unwrap();
    let id0 =
        &plan2.interfaces[1 - usize::from(plan2.interfaces[0].name.as_deref() == Some("ens3"))];
    assert_eq!(id0.mac.as_deref(), Some("fa:16:3e:00:00:02"));
    assert_eq!(id0.name.as_deref(), Some("ens3"));
    assert_eq!(id0.mtu, Some(9000));
    assert_eq!(
        id0.addresses,
        [addr("198.18.2.10/24"), addr("2001:db8::a/64")]
    );
    assert_eq!(id0.routes.len(), 2);
    let eth1 = plan2
        .interfaces
        .iter()
        .find(|i| i.name.as_deref() == Some("eth1"))
        .unwrap();
    assert!(eth1.dhcp4 && eth1.ipv6 == Ipv6Auto::Dhcp && !eth1.is_static());
    assert_eq!(plan2.search, ["lab.example"]);

    for bad in [
        json!({"config": []}),
        json!({"version": 3}),
        json!({"version": 2,
        "ethernets": {"e": {"addresses": ["198.18.0.1"]}}}),
    ] {
        assert!(
            plan(&NetworkDoc::NetworkConfig(bad.clone()), &mut warnings).is_err(),
            "{bad}"
        );
    }
    let disabled = json!({"version": 1, "config": "disabled"});
    assert_eq!(
        plan(&NetworkDoc::NetworkConfig(disabled), &mut warnings).unwrap(),
        Plan::default()
    );
}

/// A root with interfaces under `/sys/class/net` (name, MAC).
fn root_with_links(links: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    for (name, mac) in links {
        let path = dir.path().join("sys/class/net").join(name);
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("address"), format!("{mac}\n")).unwrap();
    }
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

/// The links `names` hold an address (a DHCP lease): the kernel's table has their subnets'
/// routes (`/proc/net/route` under the root).
fn hold_addresses(root: &Root, names: &[&str]) {
    let mut table =
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
            .to_owned();
    for name in names {
        table.push_str(&format!(
            "{name}\t001F12C6\t00000000\t0001\t0\t0\t1024\t00FFFFFF\t0\t0\t0\n"
        ));
    }
    let path = root.host_path(links::IPV4_ROUTES);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, table).unwrap();
}

/// The links `names` are there, each at MTU 1500.
fn links_at_mtu_1500(root: &Root, names: &[&str]) {
    for name in names {
        let path = root.host_path(Path::new(SYS_CLASS_NET).join(name));
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("mtu"), "1500\n").unwrap();
    }
}

/// The system holds the IPv4 addresses `ips`: the kernel's trie (`/proc/net/fib_trie` under the
/// root) lists each as a local leaf, beside a subnet's.
fn hold_ipv4(root: &Root, ips: &[&str]) {
    let mut trie =
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 198.18.0.0\n        /16 link UNICAST\n".to_owned();
    for ip in ips {
        trie.push_str(&format!("     |-- {ip}\n        /32 host LOCAL\n"));
    }
    let path = root.host_path(links::IPV4_TRIE);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, trie).unwrap();
}

/// A link holds one of its addresses when the kernel lists it: an IPv6 one on the link, an
/// IPv4 one as a local leaf of the trie (not a subnet's); unreadable tables say it does.
#[test]
fn a_link_holds_one_of_its_addresses_as_the_kernel_lists_them() {
    let (_dir, root) = root_with_links(&[]);
    let v4 = [addr("198.18.40.5/24")];
    let v6 = [addr("2001:db8::5/64")];
    assert!(links::holds_one_of(&root, "eth0", &v4));
    hold_ipv4(&root, &["198.18.40.6"]);
    assert!(!links::holds_one_of(&root, "eth0", &v4));
    assert!(!links::holds_one_of(
        &root,
        "eth0",
        &[addr("198.18.0.0/16")]
    ));
    assert!(!links::holds_one_of(&root, "eth0", &[]));
    hold_ipv4(&root, &["198.18.40.5"]);
    assert!(links::holds_one_of(&root, "eth0", &v4));
    assert!(!links::holds_one_of(&root, "eth0", &v6));
    fs::write(
        root.host_path(links::IPV6_ADDRESSES),
        "20010db8000000000000000000000005 04 40 00 00     eth1\n",
    )
    .unwrap();
    assert!(!links::holds_one_of(&root, "eth0", &v6));
    assert!(links::holds_one_of(&root, "eth1", &v6));
    // Listed, but its duplicate address detection failed (flags 0x88: dadfailed, permanent).
    fs::write(
        root.host_path(links::IPV6_ADDRESSES),
        "20010db8000000000000000000000005 04 40 00 88     eth1\n",
    )
    .unwrap();
    assert!(!links::holds_one_of(&root, "eth1", &v6));
}

/// A link holds an address when the kernel has an IPv4 route on it or a global IPv6 address of
/// it; not for its link-local IPv6 address (every up link's) or the header line. Tables that
/// cannot be read (no `/proc`, one over the read limit) say nothing: every link holds one, and
/// is left running.
#[test]
fn a_link_holds_an_address_by_its_routes_or_global_ipv6_addresses() {
    let (_dir, root) = root_with_links(&[]);
    assert!(links::holds_address(&root, "eth0"));
    hold_addresses(&root, &[]);
    assert!(!links::holds_address(&root, "eth0"));
    let ipv6 = root.host_path(links::IPV6_ADDRESSES);
    fs::create_dir(&ipv6).unwrap();
    assert!(links::holds_address(&root, "eth0"));
    fs::remove_dir(&ipv6).unwrap();
    hold_addresses(&root, &["eth0"]);
    assert!(links::holds_address(&root, "eth0"));
    assert!(!links::holds_address(&root, "eth1"));
    assert!(!links::holds_address(&root, "Iface"));
    fs::write(
        &ipv6,
        "fe80000000000000f8163efffe000002 03 40 20 80     eth1\n\
         20010db8000000000000000000000005 04 40 00 00     eth2\n",
    )
    .unwrap();
    assert!(!links::holds_address(&root, "eth1"));
    assert!(links::holds_address(&root, "eth2"));
}

#[test]
fn interfaces_are_named_by_mac_as_the_system_names_them() {
    let (_dir, root) =
        root_with_links(&[("lo", "00:00:00:00:00:00"), ("ens3", "fa:16:3e:00:00:01")]);
    let links = system_links(&root);
    assert_eq!(
        links[0],
        ("ens3".to_owned(), "fa:16:3e:00:00:01".to_owned())
    );
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::OpenStack(nova_doc()), &mut warnings).unwrap();
    warnings.clear();
    name_interfaces(&mut plan, &links, &mut warnings);
    assert_eq!(plan.interfaces[0].name.as_deref(), Some("ens3"));
    assert_eq!(plan.interfaces[1].name, None);
    assert!(warnings[0].contains("fa:16:3e:00:00:02"), "{warnings:?}");
}

/// A document's MAC in the `-` form names the NIC the system writes with `:`; ifupdown's file
/// records the MAC of each interface a NIC of the system was found for, as the system writes
/// it, and no other (an interface that keeps the document's name has none there): the file is
/// `Current` for `metaboot local` on the same system.
#[test]
fn ifupdown_records_only_macs_this_systems_nics_have() {
    let (_dir, root) = root_with_links(&[("ens3", "52:54:00:12:34:56")]);
    let doc = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": "52-54-00-12-34-56",
         "subnets": [{"type": "static", "address": "198.18.1.10/24"}]},
        {"type": "physical", "name": "eth1", "mac_address": "52:54:00:AB:CD:EF",
         "subnets": [{"type": "static", "address": "198.18.2.10/24"}]}
    ]});
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
    name_interfaces(&mut plan, &system_links(&root), &mut warnings);
    let names: Vec<Option<&str>> = plan.interfaces.iter().map(|i| i.name.as_deref()).collect();
    assert_eq!(names, [Some("ens3"), Some("eth1")]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("52:54:00:ab:cd:ef"), "{warnings:?}");
    let (text, _) = ifupdown::render(&plan, "network-config");
    assert_eq!(
        ifupdown::recorded_macs(&text),
        [("ens3".to_owned(), "52:54:00:12:34:56".to_owned())],
        "{text}"
    );
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(root.host_path(IFUPDOWN_FILE), &text).unwrap();
    assert_eq!(set_aside_stale(&root, None).unwrap(), Stale::Current);
    assert_eq!(
        fs::read_to_string(root.host_path(IFUPDOWN_FILE)).unwrap(),
        text
    );
}

/// A bridge, bond or VLAN has the MAC of a NIC under it, and a bridge or bond sorts before the
/// NIC: the NIC is the one a MAC names, as with cloud-init's `get_interfaces_by_mac`.
#[test]
fn a_mac_names_the_nic_not_a_bridge_bond_or_vlan_over_it() {
    let (_dir, root) = root_with_links(&[
        ("br0", "fa:16:3e:00:00:01"),
        ("ens3", "fa:16:3e:00:00:01"),
        ("bond0", "fa:16:3e:00:00:02"),
        ("ens4", "fa:16:3e:00:00:02"),
        ("dmz", "fa:16:3e:00:00:03"),
        ("ens5", "fa:16:3e:00:00:03"),
    ]);
    let net = |name: &str| root.host_path(Path::new(SYS_CLASS_NET).join(name));
    fs::create_dir_all(net("br0").join("bridge")).unwrap();
    fs::create_dir_all(net("bond0").join("bonding")).unwrap();
    fs::write(
        net("dmz").join("uevent"),
        "DEVTYPE=vlan\nINTERFACE=dmz\nIFINDEX=5\n",
    )
    .unwrap();
    fs::write(net("ens5").join("uevent"), "INTERFACE=ens5\nIFINDEX=4\n").unwrap();
    let links = system_links(&root);
    let names: Vec<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["ens3", "ens4", "ens5"]);
    let doc = json!({"version": 2, "ethernets": {
        "a": {"match": {"macaddress": "fa:16:3e:00:00:01"}, "dhcp4": true},
        "b": {"match": {"macaddress": "fa:16:3e:00:00:02"}, "dhcp4": true},
        "c": {"match": {"macaddress": "fa:16:3e:00:00:03"}, "dhcp4": true}
    }});
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
    name_interfaces(&mut plan, &links, &mut warnings);
    let named: Vec<&str> = plan
        .interfaces
        .iter()
        .map(|i| i.name.as_deref().unwrap())
        .collect();
    assert_eq!(named, ["ens3", "ens4", "ens5"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

fn named_plan() -> Plan {
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::OpenStack(nova_doc()), &mut warnings).unwrap();
    plan.interfaces[0].name = Some("eth0".into());
    plan.interfaces[1].name = Some("eth1".into());
    plan.interfaces[0].system_mac = Some("fa:16:3e:00:00:01".into());
    plan.interfaces[1].system_mac = Some("fa:16:3e:00:00:02".into());
    plan.search = vec!["lab.example".into()];
    plan
}

#[test]
fn networkd_files() {
    let plan = named_plan();
    assert_eq!(
        networkd::render(&plan.interfaces[0], &plan, "network_data.json"),
        "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.
[Match]
MACAddress=fa:16:3e:00:00:01
Name=eth0

[Link]
MTUBytes=1450

[Network]
DHCP=no
IPv6AcceptRA=no
Address=198.18.30.5/24
Address=2001:db8::5/64
DNS=198.18.30.2
DNS=198.18.30.3
Domains=lab.example

[Route]
Destination=0.0.0.0/0
Gateway=198.18.30.1

[Route]
Destination=198.19.0.0/16
Gateway=198.18.30.254

[Route]
Destination=::/0
Gateway=2001:db8::1
"
    );
    let dhcp = networkd::render(&plan.interfaces[1], &plan, "x");
    assert!(dhcp.contains("DHCP=ipv4\nIPv6AcceptRA=yes\n"), "{dhcp}");
    assert!(dhcp.contains("[DHCPv4]\nClientIdentifier=mac\n"), "{dhcp}");

    let (_dir, root) = root_with_links(&[]);
    fs::create_dir_all(root.host_path("/etc/systemd/network")).unwrap();
    fs::create_dir_all(root.host_path("/usr/lib/systemd")).unwrap();
    fs::write(root.host_path("/usr/lib/systemd/systemd-networkd"), "").unwrap();
    assert_eq!(detect(&root), Renderer::Networkd);
    let applied = apply(&root, &plan, Renderer::Networkd, "network_data.json");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let written =
        fs::read_to_string(root.host_path("/etc/systemd/network/10-metaboot-eth0.network"))
            .unwrap();
    assert!(written.contains("Address=198.18.30.5/24"));
    assert!(root.exists("/etc/systemd/network/10-metaboot-eth1.network"));
    let again = apply(&root, &plan, Renderer::Networkd, "network_data.json");
    assert!(
        again.done.iter().all(|d| d.ends_with("(unchanged)")),
        "{:?}",
        again.done
    );
}

/// On a staged run (`metaboot run`), networkctl and ifup read the files metaboot just wrote:
/// they are in place (renamed from their temp files) before either runs, not only at the
/// run's end, when a static address would wait for the next boot.
#[test]
fn the_files_are_in_place_before_networkctl_or_ifup_reads_them() {
    let plan = named_plan();
    let (dir, root) = root_with_links(&[]);
    fs::create_dir_all(root.host_path("/etc/systemd/network")).unwrap();
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source-directory interfaces.d\n",
    )
    .unwrap();
    let staged = root.staged();
    let file = dir
        .path()
        .join("etc/systemd/network/10-metaboot-eth0.network");
    let mut calls = Vec::new();
    let mut networkctl = |_: &str, args: &[String]| {
        let text = fs::read_to_string(&file).unwrap_or_default();
        calls.push((args.join(" "), text.contains("Address=198.18.30.5/24")));
        Ok(())
    };
    let applied = networkd::apply_with(&staged, &plan, "network_data.json", Some(&mut networkctl));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(calls, [("reload".to_owned(), true)]);

    let file = dir.path().join(ifupdown::FILE.trim_start_matches('/'));
    let mut brought_up = Vec::new();
    let mut ifup = |_: &str, args: &[String]| {
        let text = fs::read_to_string(&file).unwrap_or_default();
        brought_up.push((args.join(" "), text.contains("iface eth0 inet static")));
        Ok(())
    };
    let applied = ifupdown::apply_with(&staged, &plan, "network_data.json", Some(&mut ifup));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        brought_up,
        [("eth0".to_owned(), true), ("eth0".to_owned(), true)]
    );
    staged.commit();
}

/// OpenStack's common port, a DHCP link on VXLAN (`mtu` 1450), gets its MTU at once: networkd
/// and ifupdown leave a DHCP link running as it is (their files apply at the next boot), and
/// networkd ignores the DHCP server's MTU unless told. Only `ip link set … mtu`, which keeps the
/// lease; nothing for a link at that MTU already, nor for the static one (`networkctl
/// reconfigure` and `ifup` apply its file's MTU).
#[test]
fn the_mtu_of_a_dhcp_link_is_set_at_once() {
    let mut plan = named_plan();
    plan.interfaces[1].mtu = Some(1450);
    let (_dir, root) = root_with_links(&[]);
    let mtu_now = |name: &str, mtu: &str| {
        let path = root.host_path(Path::new(SYS_CLASS_NET).join(name));
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("mtu"), mtu).unwrap();
    };
    mtu_now("eth0", "1500\n");
    mtu_now("eth1", "1500\n");
    hold_addresses(&root, &["eth1"]);
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    let calls = |renderer: Renderer, plan: &Plan| {
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            Ok(())
        };
        let applied = match renderer {
            Renderer::Networkd => {
                networkd::apply_with(&root, plan, "network_data.json", Some(&mut record))
            }
            _ => ifupdown::apply_with(&root, plan, "network_data.json", Some(&mut record)),
        };
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        if calls.iter().any(|c| c.starts_with("ip ")) {
            assert!(
                applied
                    .done
                    .contains(&"ip link set dev eth1 mtu 1450".to_owned()),
                "{:?}",
                applied.done
            );
        }
        calls
    };
    assert_eq!(
        calls(Renderer::Networkd, &plan),
        ["networkctl reload", "ip link set dev eth1 mtu 1450"]
    );
    assert_eq!(
        calls(Renderer::Ifupdown, &plan),
        ["ip link set dev eth1 mtu 1450", "ifdown eth0", "ifup eth0"]
    );
    // At that MTU already: nothing to set (the files written anew for the new MTU).
    mtu_now("eth1", "1450\n");
    plan.search = vec!["other.example".into()];
    assert_eq!(calls(Renderer::Networkd, &plan), ["networkctl reload"]);
    assert_eq!(
        calls(Renderer::Ifupdown, &plan),
        ["ifdown eth0", "ifup eth0"]
    );
}

/// A DHCP link whose document adds routes (OpenStack's host route to the metadata service)
/// keeps its lease: networkd is not told to reconfigure it (`networkctl reload` reconfigures a
/// link whose file changed, so its file is put in place after the reload, for the next boot),
/// and its routes are added at once. The static link networkd reconfigures is waited for
/// before the run goes on; one whose link is not there is not.
#[test]
fn a_dhcp_link_that_gains_routes_keeps_its_lease() {
    let mut plan = named_plan();
    plan.interfaces[1].routes.push(Route {
        to: addr("169.254.169.254/32"),
        via: ip("198.18.31.1"),
    });
    plan.interfaces.push(Interface {
        name: Some("eth9".into()),
        addresses: vec![addr("198.18.40.5/24")],
        ..Interface::default()
    });
    let (dir, root) = root_with_links(&[]);
    links_at_mtu_1500(&root, &["eth0", "eth1"]);
    hold_addresses(&root, &["eth1"]);
    fs::create_dir_all(dir.path().join("usr/lib/systemd")).unwrap();
    fs::write(
        dir.path()
            .join("usr/lib/systemd/systemd-networkd-wait-online"),
        "",
    )
    .unwrap();
    let dhcp_file = dir
        .path()
        .join("etc/systemd/network/10-metaboot-eth1.network");
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!(
            "{program} {} (eth1's file there: {})",
            args.join(" "),
            dhcp_file.exists()
        ));
        Ok(())
    };
    let applied = networkd::apply_with(&root, &plan, "network_data.json", Some(&mut record));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        calls,
        [
            "networkctl reload (eth1's file there: false)",
            "/usr/lib/systemd/systemd-networkd-wait-online --timeout=30 -i eth0 (eth1's file \
             there: false)",
            "ip -4 route replace 169.254.169.254/32 via 198.18.31.1 dev eth1 (eth1's file \
             there: true)",
        ]
    );
    assert_eq!(networkd::WAIT_ONLINE_TIMEOUT_SECS, 30);
    assert!(
        fs::read_to_string(&dhcp_file)
            .unwrap()
            .contains("Destination=169.254.169.254/32")
    );
    // A link that ran a static file of metaboot's (a previous instance's, matched by name)
    // and is now DHCP is reconfigured at once: nothing else would drop its old addresses.
    plan.interfaces[1].routes.clear();
    let old_static = "[Match]\nName=eth1\n\n[Network]\nDHCP=no\nAddress=198.18.31.9/24\n";
    fs::write(&dhcp_file, old_static).unwrap();
    calls.clear();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!("{program} {}", args.join(" ")));
        Ok(())
    };
    networkd::apply_with(&root, &plan, "network_data.json", Some(&mut record));
    assert_eq!(
        calls,
        [
            "networkctl reload",
            "/usr/lib/systemd/systemd-networkd-wait-online --timeout=30 -i eth1"
        ]
    );
    // A link still configuring at the wait's end (no carrier yet, router advertisements
    // awaited) is a warning: its file is in place and networkd goes on applying it.
    fs::write(&dhcp_file, old_static).unwrap();
    let mut late = |program: &str, _: &[String]| {
        if program.ends_with("wait-online") {
            Err("timed out".to_owned())
        } else {
            Ok(())
        }
    };
    let applied = networkd::apply_with(&root, &plan, "network_data.json", Some(&mut late));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(
        applied
            .warnings
            .iter()
            .any(|w| w.contains("not configured within 30 s")),
        "{:?}",
        applied.warnings
    );
}

/// A DHCP link that holds no address (a second NIC that no file of the image matches, which
/// networkd leaves down) has no lease to keep: its file is reloaded at once and the link waited
/// for like a static one, and its routes and MTU come from the file, not from `ip` (which would
/// fail on a link that is down). The leased link beside it is left running.
#[test]
fn a_dhcp_link_without_an_address_is_configured_at_once() {
    let mut plan = named_plan();
    plan.interfaces[1].mtu = Some(1450);
    plan.interfaces[1].routes.push(Route {
        to: addr("169.254.169.254/32"),
        via: ip("198.18.31.1"),
    });
    plan.interfaces.push(Interface {
        mac: Some("fa:16:3e:00:00:03".into()),
        system_mac: Some("fa:16:3e:00:00:03".into()),
        name: Some("eth2".into()),
        dhcp4: true,
        mtu: Some(1450),
        routes: vec![Route {
            to: addr("198.19.0.0/16"),
            via: ip("198.18.32.1"),
        }],
        ..Interface::default()
    });
    let (dir, root) = root_with_links(&[]);
    links_at_mtu_1500(&root, &["eth0", "eth1", "eth2"]);
    hold_addresses(&root, &["eth0", "eth1"]);
    fs::create_dir_all(dir.path().join("usr/lib/systemd")).unwrap();
    fs::write(
        dir.path()
            .join("usr/lib/systemd/systemd-networkd-wait-online"),
        "",
    )
    .unwrap();
    let network = dir.path().join("etc/systemd/network");
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        let there = |name: &str| network.join(format!("10-metaboot-{name}.network")).exists();
        calls.push(format!(
            "{program} {} (files of eth1, eth2 there: {}, {})",
            args.join(" "),
            there("eth1"),
            there("eth2")
        ));
        Ok(())
    };
    let applied = networkd::apply_with(&root, &plan, "network_data.json", Some(&mut record));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        calls,
        [
            "networkctl reload (files of eth1, eth2 there: false, true)",
            "/usr/lib/systemd/systemd-networkd-wait-online --timeout=30 -i eth0 -i eth2 (files \
             of eth1, eth2 there: false, true)",
            "ip link set dev eth1 mtu 1450 (files of eth1, eth2 there: true, true)",
            "ip -4 route replace 169.254.169.254/32 via 198.18.31.1 dev eth1 (files of eth1, \
             eth2 there: true, true)",
        ]
    );
    let eth2 = fs::read_to_string(network.join("10-metaboot-eth2.network")).unwrap();
    assert!(
        eth2.contains("MTUBytes=1450") && eth2.contains("Destination=198.19.0.0/16"),
        "{eth2}"
    );
}

/// ifupdown: a static interface the image's own stanza brought up (ifup would say "already
/// configured" and change nothing until the next boot) is taken down and brought up with
/// metaboot's stanza; a DHCP link that gains routes is never taken down (its lease kept), its
/// routes added at once.
#[test]
fn ifupdown_brings_an_up_static_interface_up_again_with_its_stanza() {
    let mut plan = named_plan();
    plan.interfaces[1].routes.push(Route {
        to: addr("169.254.169.254/32"),
        via: ip("198.18.31.1"),
    });
    let (_dir, root) = root_with_links(&[]);
    links_at_mtu_1500(&root, &["eth0", "eth1"]);
    hold_addresses(&root, &["eth1"]);
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    // What ifupdown has up: both, by the image's own stanzas.
    let mut up = vec!["eth0".to_owned(), "eth1".to_owned()];
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!("{program} {}", args.join(" ")));
        let name = &args[0];
        match program {
            "ifup" if up.contains(name) => {
                Err(format!("ifup: interface {name} already configured"))
            }
            "ifup" => {
                up.push(name.clone());
                Ok(())
            }
            "ifdown" => {
                up.retain(|n| n != name);
                Ok(())
            }
            _ => Ok(()),
        }
    };
    let applied = ifupdown::apply_with(&root, &plan, "network_data.json", Some(&mut record));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        calls,
        [
            "ip -4 route replace 169.254.169.254/32 via 198.18.31.1 dev eth1",
            "ifdown eth0",
            "ifup eth0"
        ]
    );
}

/// ifupdown: a DHCP link that holds no address (a second NIC no stanza of the image's names,
/// which nothing brought up) is brought up with its new stanza, its routes with it, rather than
/// left down with `ip route` refused on it; the leased link beside it is left running. A failed
/// `ifup` says the link stays down.
#[test]
fn ifupdown_brings_up_a_dhcp_link_without_an_address() {
    let mut plan = named_plan();
    plan.interfaces[1].routes.push(Route {
        to: addr("169.254.169.254/32"),
        via: ip("198.18.31.1"),
    });
    plan.interfaces.push(Interface {
        mac: Some("fa:16:3e:00:00:03".into()),
        system_mac: Some("fa:16:3e:00:00:03".into()),
        name: Some("eth2".into()),
        dhcp4: true,
        routes: vec![Route {
            to: addr("198.19.0.0/16"),
            via: ip("198.18.32.1"),
        }],
        ..Interface::default()
    });
    let (_dir, root) = root_with_links(&[]);
    links_at_mtu_1500(&root, &["eth0", "eth1", "eth2"]);
    hold_addresses(&root, &["eth1"]);
    fs::create_dir_all(root.host_path(ifupdown::DIR)).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    for dhcp_answers in [true, false] {
        let _ = fs::remove_file(root.host_path(ifupdown::FILE));
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            if program == "ifup" && args[0] == "eth2" && !dhcp_answers {
                return Err("ifup eth2: No DHCPOFFERS received".to_owned());
            }
            Ok(())
        };
        let applied = ifupdown::apply_with(&root, &plan, "network_data.json", Some(&mut record));
        assert_eq!(
            calls,
            [
                "ip -4 route replace 169.254.169.254/32 via 198.18.31.1 dev eth1",
                "ifdown eth0",
                "ifup eth0",
                "ifup eth2"
            ]
        );
        if dhcp_answers {
            assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        } else {
            assert_eq!(
                applied.errors,
                [
                    "ifup eth2: No DHCPOFFERS received (eth2 holds no address: it stays down until \
                  its stanza comes up)"
                ]
            );
        }
    }
}

/// A new stanza whose `ifup` fails (a gateway the kernel refuses, a missing DHCP client) does
/// not leave its interface down for the rest of the boot, taken down by `ifdown`: the file is
/// put back as it was (removed when there was none) and the interfaces brought up again with
/// it, those switched to the new file before too (taken down while its stanzas are there);
/// the addresses the failed `ifup` left are flushed only when `ifdown` took the old ones off.
/// The error says what failed and what was done.
#[test]
fn ifupdown_brings_an_interface_back_up_as_it_was_when_its_new_stanza_fails() {
    let mut plan = named_plan();
    plan.interfaces.push(Interface {
        name: Some("eth2".into()),
        addresses: vec![addr("198.18.40.5/24")],
        ..Interface::default()
    });
    let (dir, root) = root_with_links(&[]);
    fs::create_dir_all(root.host_path(ifupdown::DIR)).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    // The failed `ifup` added none of eth2's new addresses.
    hold_ipv4(&root, &["198.18.30.5"]);
    let file = dir.path().join(ifupdown::FILE.trim_start_matches('/'));
    let old = "auto eth0\niface eth0 inet dhcp\nauto eth2\niface eth2 inet static\n    \
               address 198.18.40.9/24\n";
    for (before, down_fails) in [(Some(old), false), (None, true)] {
        match before {
            Some(old) => fs::write(&file, old).unwrap(),
            None => drop(fs::remove_file(&file)),
        }
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            let text = fs::read_to_string(&file).unwrap_or_default();
            calls.push(format!("{program} {}", args.join(" ")));
            match program {
                "ifup" if args[0] == "eth2" && text.contains("198.18.40.5") => {
                    Err("ifup eth2: RTNETLINK answers: Invalid argument".to_owned())
                }
                "ifdown" if down_fails => {
                    Err(format!("ifdown: interface {} not configured", args[0]))
                }
                _ => Ok(()),
            }
        };
        let applied = ifupdown::apply_with(&root, &plan, "network_data.json", Some(&mut record));
        let mut expected = vec![
            "ifdown eth0",
            "ifup eth0",
            "ifdown eth2",
            "ifup eth2",
            "ifdown eth0",
        ];
        if !down_fails {
            expected.push("ip addr flush dev eth2 scope global");
        }
        expected.extend(["ifup eth2", "ifup eth0"]);
        assert_eq!(calls, expected, "{before:?}");
        assert_eq!(fs::read_to_string(&file).ok().as_deref(), before);
        assert_eq!(
            applied.errors,
            [
                "ifup eth2: RTNETLINK answers: Invalid argument: the configuration of \
                 eth2 did not come up (fix the document's configuration of it and run the step \
                 again); /etc/network/interfaces.d/50-metaboot was put back as it was and eth2, \
                 eth0 brought up again with it"
            ],
            "{before:?}"
        );
        assert!(
            applied
                .done
                .contains(&"/etc/network/interfaces.d/50-metaboot put back as it was".to_owned())
                && !applied.done.contains(&ifupdown::FILE.to_owned()),
            "{:?}",
            applied.done
        );
    }
}

/// A stanza whose `ifup` fails after its address came up (ifupdown's `ip route add default`
/// beside a DHCP client's: "File exists") keeps its interface up with the new configuration:
/// nothing is taken down, flushed or put back, neither it nor a static interface brought up
/// before it; the error says so.
#[test]
fn ifupdown_keeps_an_interface_that_came_up_with_its_new_address() {
    let mut plan = named_plan();
    plan.interfaces.insert(
        0,
        Interface {
            name: Some("eth2".into()),
            addresses: vec![addr("198.18.40.5/24")],
            ..Interface::default()
        },
    );
    let (dir, root) = root_with_links(&[]);
    hold_ipv4(&root, &[]);
    fs::create_dir_all(root.host_path(ifupdown::DIR)).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    let file = dir.path().join(ifupdown::FILE.trim_start_matches('/'));
    fs::write(&file, "auto eth0\niface eth0 inet dhcp\n").unwrap();
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!("{program} {}", args.join(" ")));
        if program == "ifup" && args[0] == "eth0" {
            hold_ipv4(&root, &["198.18.40.5", "198.18.30.5"]);
            return Err("ifup eth0: RTNETLINK answers: File exists".to_owned());
        }
        Ok(())
    };
    let applied = ifupdown::apply_with(&root, &plan, "network_data.json", Some(&mut record));
    assert_eq!(
        calls,
        ["ifdown eth2", "ifup eth2", "ifdown eth0", "ifup eth0"]
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        ifupdown::render(&plan, "network_data.json").0
    );
    assert_eq!(
        applied.errors,
        [
            "ifup eth0: RTNETLINK answers: File exists: eth0 came up with its new address, but \
             not with all of its stanza (fix the document's configuration of it and run the step \
             again)"
        ]
    );
    assert!(applied.done.contains(&ifupdown::FILE.to_owned()));
}

/// The MTU is set at once only on the link that is the interface: not under the document's
/// name of an interface whose MAC no NIC has (`name_interfaces` keeps it, with a warning),
/// which may be another NIC's (`eth1` here), nor on a link that is not there; an interface
/// without a MAC, named by the document, gets it on the link of that name.
#[test]
fn the_mtu_is_set_at_once_only_on_the_interfaces_own_link() {
    let mut plan = named_plan();
    plan.interfaces[1].mtu = Some(1450);
    plan.interfaces[1].system_mac = None;
    for name in ["eth2", "eth9"] {
        plan.interfaces.push(Interface {
            name: Some(name.into()),
            mtu: Some(1450),
            dhcp4: true,
            ..Interface::default()
        });
    }
    let (_dir, root) = root_with_links(&[]);
    links_at_mtu_1500(&root, &["eth0", "eth1", "eth2"]);
    hold_addresses(&root, &["eth1", "eth2"]);
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    for renderer in [Renderer::Networkd, Renderer::Ifupdown] {
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            Ok(())
        };
        let applied = match renderer {
            Renderer::Networkd => {
                networkd::apply_with(&root, &plan, "network_data.json", Some(&mut record))
            }
            _ => ifupdown::apply_with(&root, &plan, "network_data.json", Some(&mut record)),
        };
        assert!(
            applied.errors.is_empty(),
            "{renderer:?}: {:?}",
            applied.errors
        );
        let ip: Vec<&String> = calls.iter().filter(|c| c.starts_with("ip ")).collect();
        assert_eq!(ip, ["ip link set dev eth2 mtu 1450"], "{renderer:?}");
    }
}

/// A link with nothing to configure (a NIC of a bond left out, a port without networks) gets
/// no `10-metaboot-` file, which would sort before the image's catch-all and leave the NIC
/// unconfigured; the file metaboot wrote for it earlier is removed.
#[test]
fn networkd_writes_no_file_for_a_link_with_nothing_to_configure() {
    let mut plan = named_plan();
    plan.interfaces.push(Interface {
        mac: Some("fa:16:3e:00:00:03".into()),
        name: Some("eth2".into()),
        mtu: Some(1450),
        ..Interface::default()
    });
    plan.interfaces.push(Interface {
        mac: Some("fa:16:3e:00:00:04".into()),
        name: Some("eth3".into()),
        ..Interface::default()
    });
    let (_dir, root) = root_with_links(&[]);
    let stale = "/etc/systemd/network/10-metaboot-eth2.network";
    fs::create_dir_all(root.host_path("/etc/systemd/network")).unwrap();
    fs::write(
        root.host_path(stale),
        "[Match]\nName=eth2\n[Network]\nDHCP=no\n",
    )
    .unwrap();
    let applied = apply(&root, &plan, Renderer::Networkd, "network_data.json");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(root.exists("/etc/systemd/network/10-metaboot-eth0.network"));
    assert!(root.exists("/etc/systemd/network/10-metaboot-eth1.network"));
    assert!(!root.exists(stale), "{:?}", applied.done);
    assert!(!root.exists("/etc/systemd/network/10-metaboot-eth3.network"));
    assert!(
        applied
            .done
            .iter()
            .any(|d| d.starts_with("eth2: nothing to configure") && d.contains("removed"))
            && applied
                .done
                .iter()
                .any(|d| d.starts_with("eth3: nothing to configure")),
        "{:?}",
        applied.done
    );
}

/// The links whose files of an earlier instance were removed are not waited for after the
/// reload: one that no other file matches is unmanaged from then on, and wait-online would
/// hold the boot until its timeout for it.
#[test]
fn networkd_does_not_wait_for_the_links_whose_files_it_removed() {
    let (dir, root) =
        root_with_links(&[("eth0", "fa:16:3e:00:00:01"), ("eth1", "fa:16:3e:00:00:02")]);
    for name in ["eth0", "eth1"] {
        fs::write(
            dir.path().join("sys/class/net").join(name).join("mtu"),
            "1500\n",
        )
        .unwrap();
    }
    let network = dir.path().join("etc/systemd/network");
    fs::create_dir_all(&network).unwrap();
    fs::create_dir_all(dir.path().join("usr/lib/systemd")).unwrap();
    fs::write(
        dir.path()
            .join("usr/lib/systemd/systemd-networkd-wait-online"),
        "",
    )
    .unwrap();
    for (file, matched) in [
        ("eth0", "Name=eth0"),
        ("fa-16-3e-00-00-02", "MACAddress=FA:16:3E:00:00:02"),
    ] {
        let text = format!("[Match]\n{matched}\n\n[Network]\nAddress=198.18.9.9/24\n");
        fs::write(network.join(format!("10-metaboot-{file}.network")), text).unwrap();
    }
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!("{program} {}", args.join(" ")));
        Ok(())
    };
    let applied = networkd::apply_with(
        &root,
        &Plan::default(),
        "no network configuration",
        Some(&mut record),
    );
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(calls, ["networkctl reload"]);
}

/// The files metaboot wrote for an earlier instance's interfaces (a NoCloud clone: a file
/// matched by `Name=` alone gives the new instance's NIC the old static address) are removed,
/// and networkd reloaded so that the image's own configuration takes their links; no other
/// file of the directory is touched.
#[test]
fn networkd_removes_its_files_of_an_earlier_instance() {
    let plan = named_plan();
    let (dir, root) = root_with_links(&[]);
    let network = dir.path().join("etc/systemd/network");
    fs::create_dir_all(&network).unwrap();
    let stale = "[Match]\nName=eth7\n\n[Network]\nDHCP=no\nAddress=198.18.9.9/24\n";
    for name in [
        "10-metaboot-eth7.network",
        "10-metaboot-eth0.network",
        "10-metaboot-notes.txt",
        "50-dhcp.network",
        "10-other-eth7.network",
    ] {
        fs::write(network.join(name), stale).unwrap();
    }
    let mut calls = Vec::new();
    let mut record = |program: &str, args: &[String]| {
        calls.push(format!("{program} {}", args.join(" ")));
        Ok(())
    };
    let applied = networkd::apply_with(&root, &plan, "network-config", Some(&mut record));
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let mut left: Vec<String> = fs::read_dir(&network)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "10-metaboot-eth0.network",
            "10-metaboot-eth1.network",
            "10-metaboot-notes.txt",
            "10-other-eth7.network",
            "50-dhcp.network"
        ]
    );
    assert!(
        applied.done.contains(
            &"/etc/systemd/network/10-metaboot-eth7.network removed (no interface of this plan)"
                .to_owned()
        ),
        "{:?}",
        applied.done
    );
    assert_eq!(calls[0], "networkctl reload");
    // A plan without interfaces leaves none of metaboot's files.
    fs::write(network.join("10-metaboot-eth7.network"), stale).unwrap();
    let applied = apply(
        &root,
        &Plan::default(),
        Renderer::Networkd,
        "network-config",
    );
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(!root.exists("/etc/systemd/network/10-metaboot-eth0.network"));
    assert!(!root.exists("/etc/systemd/network/10-metaboot-eth7.network"));
    assert!(root.exists("/etc/systemd/network/10-metaboot-notes.txt"));
}

/// An instance without network configuration gets none of an earlier instance's: on a
/// networkd image metaboot's `10-metaboot-` files are removed (the image's own configure the
/// links), never another file; nothing when there is none of metaboot's, nor on an ifupdown
/// image.
#[test]
fn an_instance_without_network_configuration_keeps_no_file_of_an_earlier_ones() {
    let (dir, root) = root_with_links(&[]);
    let network = dir.path().join("etc/systemd/network");
    fs::create_dir_all(&network).unwrap();
    fs::create_dir_all(dir.path().join("usr/lib/systemd")).unwrap();
    fs::write(dir.path().join("usr/lib/systemd/systemd-networkd"), "").unwrap();
    let stale = "[Match]\nName=eth0\n\n[Network]\nDHCP=no\nAddress=198.18.9.9/24\n";
    for name in ["10-metaboot-eth0.network", "50-dhcp.network"] {
        fs::write(network.join(name), stale).unwrap();
    }
    let applied = apply_none(&root).expect("a file to remove");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        applied.done,
        ["/etc/systemd/network/10-metaboot-eth0.network removed (no interface of this plan)"]
    );
    assert!(!network.join("10-metaboot-eth0.network").exists());
    assert!(network.join("50-dhcp.network").exists());
    assert!(apply_none(&root).is_none());

    // ifupdown: its file is set aside before the network starts (`stale.rs`), not here.
    fs::write(network.join("10-metaboot-eth0.network"), stale).unwrap();
    fs::create_dir_all(root.host_path(ifupdown::DIR)).unwrap();
    fs::write(root.host_path(ifupdown::INTERFACES), "").unwrap();
    fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
    fs::write(dir.path().join("usr/sbin/ifup"), "").unwrap();
    assert_eq!(detect(&root), Renderer::Ifupdown);
    assert!(apply_none(&root).is_none());
    assert!(network.join("10-metaboot-eth0.network").exists());
}

#[test]
fn ifupdown_file() {
    let plan = named_plan();
    let (text, unnamed) = ifupdown::render(&plan, "network_data.json");
    assert!(unnamed.is_empty());
    assert_eq!(
        text,
        "# Written by metaboot from network_data.json; metaboot rewrites it for a new instance.

# metaboot: eth0 fa:16:3e:00:00:01
auto eth0
iface eth0 inet static
    mtu 1450
    address 198.18.30.5/24
    gateway 198.18.30.1
    up ip route replace 198.19.0.0/16 via 198.18.30.254 dev eth0 || true
    dns-nameservers 198.18.30.2 198.18.30.3
    dns-search lab.example
iface eth0 inet6 static
    accept_ra 0
    address 2001:db8::5/64
    gateway 2001:db8::1

# metaboot: eth1 fa:16:3e:00:00:02
auto eth1
iface eth1 inet dhcp
    dns-nameservers 198.18.30.2 198.18.30.3
    dns-search lab.example
iface eth1 inet6 auto
"
    );
    let (_dir, root) = root_with_links(&[]);
    fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        root.host_path(ifupdown::INTERFACES),
        "source /etc/network/interfaces.d/*\n",
    )
    .unwrap();
    fs::create_dir_all(root.host_path("/usr/sbin")).unwrap();
    fs::write(root.host_path("/usr/sbin/ifup"), "").unwrap();
    assert_eq!(detect(&root), Renderer::Ifupdown);
    let applied = apply(&root, &plan, Renderer::Ifupdown, "network_data.json");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        fs::read_to_string(root.host_path(ifupdown::FILE)).unwrap(),
        text
    );
}

/// ifupdown reads `interfaces.d/50-metaboot` only when the image's main file sources it
/// (`source` a glob, `source-dir…` a directory's run-parts names, the directory perhaps a
/// glob; relative to the file's directory; also through a file it sources): else the step is
/// an error that says which line to add, the file is written all the same, and `ifup`, which
/// would not know the interface, is not run. The line it asks for comes first:
/// `source-directory`, which Debian's ifupdown, ifupdown-ng and busybox all read.
#[test]
fn ifupdown_refuses_an_image_whose_interfaces_file_does_not_source_its_file() {
    let plan = named_plan();
    let image = |main: &str, more: Option<&str>| {
        let (dir, root) = root_with_links(&[]);
        fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
        fs::create_dir_all(root.host_path("/usr/sbin")).unwrap();
        fs::write(root.host_path("/usr/sbin/ifup"), "").unwrap();
        fs::write(root.host_path(ifupdown::INTERFACES), main).unwrap();
        if let Some(more) = more {
            fs::write(root.host_path("/etc/network/more"), more).unwrap();
        }
        (dir, root)
    };
    let run = |root: &Root| {
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            Ok(())
        };
        let applied = ifupdown::apply_with(root, &plan, "network_data.json", Some(&mut record));
        assert!(root.exists(ifupdown::FILE), "written all the same");
        (applied.errors, calls)
    };
    let lo = "auto lo\niface lo inet loopback\n";
    for (main, more) in [
        ("source /etc/network/interfaces.d/*\n", None),
        ("source-directory /etc/network/interfaces.d\n", None),
        ("  source-directory interfaces.d\n", None),
        // Any keyword starting with `source-dir`, as Debian's ifupdown reads it.
        ("source-dir /etc/network/interfaces.d\n", None),
        ("source-directory /etc/network/interf*.d\n", None),
        ("source interfaces.d/50-*\n", None),
        (
            "source /etc/network/more\n",
            Some("source-directory interfaces.d\n"),
        ),
        (
            "source /etc/network/mo?e\n",
            Some("source /etc/network/interfaces.d/*\n"),
        ),
    ] {
        let (_dir, root) = image(&format!("{lo}{main}"), more);
        let (errors, calls) = run(&root);
        assert!(errors.is_empty(), "{main:?}: {errors:?}");
        assert_eq!(calls, ["ifdown eth0", "ifup eth0"], "{main:?}");
    }
    for (main, more) in [
        ("", None),
        ("# source /etc/network/interfaces.d/*\n", None),
        ("source /etc/network/interfaces.d/*.cfg\n", None),
        ("source-directory /etc/network/other.d\n", None),
        ("source /etc/network/more\n", Some(lo)),
        (
            "source /etc/network/more\n",
            Some("source /etc/network/interfaces\n"),
        ),
    ] {
        let (_dir, root) = image(&format!("{lo}{main}"), more);
        let (errors, calls) = run(&root);
        assert!(
            errors.len() == 1 && asks_for_source_directory(&errors[0]),
            "{main:?}: {errors:?}"
        );
        assert!(calls.is_empty(), "{main:?}: {calls:?}");
    }
}

/// The error's advice: `source-directory` first, read by every `ifup`; `source` of a glob
/// after it.
fn asks_for_source_directory(error: &str) -> bool {
    let directory = error.find("`source-directory /etc/network/interfaces.d`");
    let glob = error.find("`source /etc/network/interfaces.d/*`");
    directory.is_some() && glob.is_some() && directory < glob
}

/// busybox's `ifup` (a link to `busybox`) reads `source FILE` literally (a file named `*` for
/// Debian's `interfaces.d/*`) and any keyword starting with `source-dir` (every name not
/// starting with `.`); ifupdown-ng's (a link to its `ifupdown`) `source` globs and exactly
/// `source-directory`; both take a relative path from their working directory, which this
/// check does not know. The step is an error only for lines the image's `ifup` reads nothing
/// of `interfaces.d/50-metaboot` through.
#[test]
fn ifupdown_judges_source_lines_as_its_ifup_reads_them() {
    let plan = named_plan();
    let image = |ifup_target: &str, main: &str, more: Option<&str>| {
        let (dir, root) = root_with_links(&[]);
        fs::create_dir_all(root.host_path("/etc/network/interfaces.d")).unwrap();
        fs::create_dir_all(root.host_path("/sbin")).unwrap();
        fs::create_dir_all(root.host_path("/bin")).unwrap();
        fs::write(root.host_path("/bin/busybox"), "").unwrap();
        fs::write(root.host_path("/sbin/ifupdown"), "").unwrap();
        std::os::unix::fs::symlink(ifup_target, root.host_path("/sbin/ifup")).unwrap();
        fs::write(root.host_path(ifupdown::INTERFACES), main).unwrap();
        if let Some(more) = more {
            fs::write(root.host_path("/etc/network/more"), more).unwrap();
        }
        (dir, root)
    };
    let run = |root: &Root| {
        let mut calls = Vec::new();
        let mut record = |program: &str, args: &[String]| {
            calls.push(format!("{program} {}", args.join(" ")));
            Ok(())
        };
        let applied = ifupdown::apply_with(root, &plan, "network_data.json", Some(&mut record));
        (applied.errors, calls)
    };
    let busybox = "/bin/busybox";
    let ng = "ifupdown";
    for (ifup, main, more) in [
        (
            busybox,
            "source-directory /etc/network/interfaces.d\n",
            None,
        ),
        (busybox, "source-dir /etc/network/interfaces.d/\n", None),
        (
            busybox,
            "source /etc/network/interfaces.d/50-metaboot\n",
            None,
        ),
        (
            busybox,
            "source /etc/network/more\n",
            Some("source-directory /etc/network/interfaces.d\n"),
        ),
        (ng, "source /etc/network/interfaces.d/*\n", None),
        (ng, "source-directory /etc/network/interfaces.d\n", None),
    ] {
        let (_dir, root) = image(ifup, main, more);
        let (errors, calls) = run(&root);
        assert!(errors.is_empty(), "{ifup} {main:?}: {errors:?}");
        assert_eq!(calls, ["ifdown eth0", "ifup eth0"], "{ifup} {main:?}");
    }
    for (ifup, main, more) in [
        (busybox, "source /etc/network/interfaces.d/*\n", None),
        (busybox, "source-directory interfaces.d\n", None),
        (
            busybox,
            "source /etc/network/mo?e\n",
            Some("source-dir /etc/network/interfaces.d\n"),
        ),
        (ng, "source-dir /etc/network/interfaces.d\n", None),
        (ng, "source-directory interfaces.d\n", None),
        (ng, "source interfaces.d/*\n", None),
    ] {
        let (_dir, root) = image(ifup, main, more);
        let (errors, calls) = run(&root);
        let name = if ifup == ng {
            "ifupdown-ng"
        } else {
            "busybox's ifup"
        };
        assert!(
            errors.len() == 1 && errors[0].contains(name) && asks_for_source_directory(&errors[0]),
            "{ifup} {main:?}: {errors:?}"
        );
        assert!(calls.is_empty(), "{ifup} {main:?}: {calls:?}");
    }
}

/// What one family alone, or DHCP and static addresses together, ask of ifupdown: nothing
/// the document gives is dropped (the MTU of an IPv6-only interface, the static addresses of a
/// DHCP one, routes of a family with no method).
#[test]
fn ifupdown_keeps_every_setting_whatever_the_mix_of_methods() {
    let address = |text: &str| {
        let (ip, prefix) = text.split_once('/').unwrap();
        Address {
            ip: ip.parse().unwrap(),
            prefix: prefix.parse().unwrap(),
        }
    };
    let route = |to: &str, via: &str| Route {
        to: address(to),
        via: via.parse().unwrap(),
    };
    let plan = Plan {
        interfaces: vec![
            Interface {
                name: Some("eth0".into()),
                mtu: Some(1400),
                addresses: vec![address("2001:db8::5/64")],
                routes: vec![route("::/0", "2001:db8::1")],
                ..Interface::default()
            },
            Interface {
                name: Some("eth1".into()),
                dhcp4: true,
                ipv6: Ipv6Auto::Slaac,
                addresses: vec![address("198.18.40.5/24"), address("2001:db8:1::5/64")],
                routes: vec![route("198.19.0.0/16", "198.18.40.254")],
                ..Interface::default()
            },
            Interface {
                name: Some("eth2".into()),
                mtu: Some(9000),
                routes: vec![route("2001:db8:2::/48", "fe80::1")],
                ..Interface::default()
            },
            Interface {
                name: Some("eth3".into()),
                ..Interface::default()
            },
        ],
        nameservers: vec!["2001:db8::53".parse().unwrap()],
        search: Vec::new(),
    };
    let (text, unnamed) = ifupdown::render(&plan, "network-config");
    assert!(unnamed.is_empty());
    assert_eq!(
        text,
        "# Written by metaboot from network-config; metaboot rewrites it for a new instance.

auto eth0
iface eth0 inet6 static
    mtu 1400
    address 2001:db8::5/64
    gateway 2001:db8::1
    dns-nameservers 2001:db8::53

auto eth1
iface eth1 inet dhcp
    dns-nameservers 2001:db8::53
iface eth1 inet static
    address 198.18.40.5/24
    up ip route replace 198.19.0.0/16 via 198.18.40.254 dev eth1 || true
iface eth1 inet6 static
    address 2001:db8:1::5/64
iface eth1 inet6 auto

auto eth2
iface eth2 inet manual
    mtu 9000
    up ip -6 route replace 2001:db8:2::/48 via fe80::1 dev eth2 || true
    dns-nameservers 2001:db8::53
"
    );
}

/// Two interfaces with a default route each: one `gateway` in the whole file, the second
/// interface's default appended; a second `gateway` would make its `ifup` fail ("File
/// exists") and skip its other lines.
#[test]
fn ifupdown_writes_one_gateway_per_file() {
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "subnets": [
            {"type": "static", "address": "198.18.1.10/24", "gateway": "198.18.1.1"}]},
        {"type": "physical", "name": "eth1", "subnets": [
            {"type": "static", "address": "198.18.2.10/24", "gateway": "198.18.2.1",
             "routes": [{"network": "198.19.0.0", "netmask": "255.255.0.0", "gateway": "198.18.2.254"}]}]}
    ]});
    let mut warnings = Vec::new();
    let (text, _) = ifupdown::render(
        &plan(&NetworkDoc::NetworkConfig(v1), &mut warnings).unwrap(),
        "network-config",
    );
    assert_eq!(text.matches("gateway ").count(), 1, "{text}");
    assert!(
        text.contains(
            "iface eth1 inet static\n    address 198.18.2.10/24\n    \
             up ip route append default via 198.18.2.1 dev eth1 || true\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("up ip route replace 198.19.0.0/16 via 198.18.2.254 dev eth1 || true"),
        "{text}"
    );
}

/// Two default routes of one family on one interface (two static subnets with a gateway each,
/// or `gateway4` and a `routes` entry to `default`) make one `gateway` line (ifup refuses a
/// second in a stanza); the other is added next to it, as cloud-init's ENI renderer adds a
/// subnet route to `default`.
#[test]
fn ifupdown_writes_one_gateway_per_stanza() {
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "subnets": [
            {"type": "static", "address": "198.18.1.10/24", "gateway": "198.18.1.1"},
            {"type": "static", "address": "198.18.2.10/24", "gateway": "198.18.2.1"},
            {"type": "static6", "address": "2001:db8::5/64", "gateway": "2001:db8::1"},
            {"type": "static6", "address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1"}
        ]}
    ]});
    let v2 = json!({"version": 2, "ethernets": {"eth0": {
        "addresses": ["198.18.1.10/24"], "gateway4": "198.18.1.1",
        "routes": [{"to": "default", "via": "198.18.1.2"},
                   {"to": "198.19.0.0/16", "via": "198.18.1.254"}]
    }}});
    let mut warnings = Vec::new();
    let (text, _) = ifupdown::render(
        &plan(&NetworkDoc::NetworkConfig(v1), &mut warnings).unwrap(),
        "network-config",
    );
    assert_eq!(
        text,
        "# Written by metaboot from network-config; metaboot rewrites it for a new instance.

auto eth0
iface eth0 inet static
    address 198.18.1.10/24
    up ip addr add 198.18.2.10/24 dev eth0
    gateway 198.18.1.1
    up ip route append default via 198.18.2.1 dev eth0 || true
iface eth0 inet6 static
    address 2001:db8::5/64
    up ip addr add 2001:db8:1::5/64 dev eth0
    gateway 2001:db8::1
    up ip -6 route append default via 2001:db8:1::1 dev eth0 || true
"
    );
    let (text, _) = ifupdown::render(
        &plan(&NetworkDoc::NetworkConfig(v2), &mut warnings).unwrap(),
        "network-config",
    );
    assert!(
        text.ends_with(
            "iface eth0 inet static
    address 198.18.1.10/24
    gateway 198.18.1.1
    up ip route append default via 198.18.1.2 dev eth0 || true
    up ip route replace 198.19.0.0/16 via 198.18.1.254 dev eth0 || true
"
        ),
        "{text}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// A gateway outside the link's subnets (a /32 address with its provider's gateway, a gateway
/// of another subnet) is taken as on the link, else the kernel refuses its route ("Nexthop
/// has invalid gateway"): systemd-networkd's `GatewayOnLink=yes`, as cloud-init's networkd
/// renderer writes it, `onlink` on ifupdown's `up` lines (ifupdown adds it to its `gateway`)
/// and on the direct renderer's `ip route`. A gateway in the subnet gets neither.
#[test]
fn a_gateway_outside_the_subnet_is_on_the_link() {
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "subnets": [
            {"type": "static", "address": "198.18.30.5/24", "gateway": "198.18.99.1",
             "routes": [{"network": "198.19.0.0/16", "gateway": "198.18.30.254"},
                        {"network": "198.20.0.0/16", "gateway": "198.18.99.2"}]}]},
        {"type": "physical", "name": "eth1", "subnets": [
            {"type": "static", "address": "203.0.113.7/32", "gateway": "203.0.113.1"}]}
    ]});
    let mut warnings = Vec::new();
    let plan = plan(&NetworkDoc::NetworkConfig(v1), &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        networkd::render(&plan.interfaces[0], &plan, "network-config"),
        "# Written by metaboot from network-config; metaboot rewrites it for a new instance.
[Match]
Name=eth0

[Network]
DHCP=no
Address=198.18.30.5/24

[Route]
Destination=0.0.0.0/0
Gateway=198.18.99.1
GatewayOnLink=yes

[Route]
Destination=198.19.0.0/16
Gateway=198.18.30.254

[Route]
Destination=198.20.0.0/16
Gateway=198.18.99.2
GatewayOnLink=yes
"
    );
    assert!(
        networkd::render(&plan.interfaces[1], &plan, "network-config")
            .ends_with("[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\nGatewayOnLink=yes\n")
    );
    assert_eq!(
        ifupdown::render(&plan, "network-config").0,
        "# Written by metaboot from network-config; metaboot rewrites it for a new instance.

auto eth0
iface eth0 inet static
    address 198.18.30.5/24
    gateway 198.18.99.1
    up ip route replace 198.19.0.0/16 via 198.18.30.254 dev eth0 || true
    up ip route replace 198.20.0.0/16 via 198.18.99.2 dev eth0 onlink || true

auto eth1
iface eth1 inet static
    address 203.0.113.7/32
    up ip route append default via 203.0.113.1 dev eth1 onlink || true
"
    );
    let routes: Vec<String> = direct::commands(&plan, |_, _| true)
        .iter()
        .map(|c| c.join(" "))
        .filter(|c| c.contains(" route "))
        .collect();
    assert_eq!(
        routes,
        [
            "-4 route replace default via 198.18.99.1 dev eth0 onlink",
            "-4 route replace 198.19.0.0/16 via 198.18.30.254 dev eth0",
            "-4 route replace 198.20.0.0/16 via 198.18.99.2 dev eth0 onlink",
            "-4 route append default via 203.0.113.1 dev eth1 onlink",
        ]
    );
    // An IPv6 gateway outside an IPv4-only link's subnets: nothing to tell it by.
    let v6 = Route {
        to: addr("::/0"),
        via: ip("2001:db8::1"),
    };
    assert!(!plan.interfaces[0].gateway_onlink(&v6));
    assert!(addr("2001:db8::5/64").contains(ip("2001:db8::1")));
    assert!(!addr("2001:db8::5/64").contains(ip("2001:db8:1::1")));
    assert!(!addr("198.18.30.5/24").contains(ip("::ffff:198.18.30.1")));
    assert!(addr("0.0.0.0/0").contains(ip("203.0.113.1")));
}

/// The renderer is what the image starts: Debian 11 and 12's genericcloud images have
/// systemd-networkd's daemon and `/etc/systemd/network` (the `systemd` package ships them) but
/// bring their network up with ifupdown; networkd wins only when `systemctl enable` linked it
/// (each of the links it makes counts, a link to a unit that is not there does not), and is
/// still used on an image with nothing else.
#[test]
fn the_renderer_is_the_one_the_image_enables() {
    let image = |files: &[&str], links: &[(&str, &str)]| {
        let (dir, root) = root_with_links(&[]);
        for file in files {
            let path = root.host_path(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if file.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::write(&path, "").unwrap();
            }
        }
        for (link, target) in links {
            let path = root.host_path(link);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &path).unwrap();
        }
        let renderer = detect(&root);
        drop(dir);
        renderer
    };
    let networkd = [
        "/lib/systemd/systemd-networkd",
        "/etc/systemd/network/",
        "/lib/systemd/system/systemd-networkd.service",
        "/lib/systemd/system/systemd-networkd.socket",
    ];
    let ifupdown = ["/etc/network/interfaces", "/sbin/ifup"];
    let both: Vec<&str> = networkd.iter().chain(&ifupdown).copied().collect();
    // Debian 12 genericcloud: networkd installed, not enabled; ifupdown.
    assert_eq!(image(&both, &[]), Renderer::Ifupdown);
    // debian-metaboot (images/debian/customize.sh enables systemd-networkd): any of the links
    // `systemctl enable systemd-networkd` makes.
    for (link, unit) in NETWORKD_ENABLED.into_iter().zip([
        "systemd-networkd.service",
        "systemd-networkd.service",
        "systemd-networkd.socket",
    ]) {
        let target = format!("/lib/systemd/system/{unit}");
        assert_eq!(
            image(&both, &[(link, target.as_str())]),
            Renderer::Networkd,
            "{link}"
        );
        assert_eq!(
            image(&networkd, &[(link, target.as_str())]),
            Renderer::Networkd
        );
        // A link left behind by a unit since removed.
        assert_eq!(
            image(&ifupdown, &[(link, "/lib/systemd/system/gone.service")]),
            Renderer::Ifupdown,
            "{link}"
        );
    }
    // networkd installed and nothing else: networkd.
    assert_eq!(image(&networkd, &[]), Renderer::Networkd);
    assert_eq!(image(&networkd[..1], &[]), Renderer::Direct, "no directory");
    // The tiny image: busybox's `ifup` applet, but no /etc/network/interfaces.
    assert_eq!(
        image(&["/sbin/ifup", "/etc/hostname"], &[]),
        Renderer::Direct
    );
}

/// An image that starts NetworkManager (Fedora, an Ubuntu desktop) is not applied to with
/// `ip`, whose changes its first reboot would undo: a static plan is an error that says what
/// to do, a DHCP-only one NetworkManager's own, with a warning for what it leaves out.
/// ifupdown and an enabled networkd come first (NetworkManager leaves their links alone); an
/// installed networkd, which nothing starts, does not.
#[test]
fn networkmanager_is_seen_and_not_written_for() {
    let image = |files: &[&str], enabled: &[&str]| {
        let (dir, root) = root_with_links(&[]);
        for file in files {
            let path = root.host_path(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if file.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::write(&path, "").unwrap();
            }
        }
        let unit = root.host_path("/usr/lib/systemd/system/NetworkManager.service");
        fs::create_dir_all(unit.parent().unwrap()).unwrap();
        fs::write(&unit, "").unwrap();
        for link in enabled {
            let path = root.host_path(link);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink("/usr/lib/systemd/system/NetworkManager.service", &path)
                .unwrap();
        }
        (dir, root)
    };
    let networkd = ["/usr/lib/systemd/systemd-networkd", "/etc/systemd/network/"];
    for link in NETWORKMANAGER_ENABLED {
        assert_eq!(
            detect(&image(&networkd, &[link]).1),
            Renderer::NetworkManager,
            "{link}"
        );
    }
    let enabled = &NETWORKMANAGER_ENABLED[..1];
    assert_eq!(
        detect(&image(&["/etc/network/interfaces", "/sbin/ifup"], enabled).1),
        Renderer::Ifupdown
    );
    assert_eq!(
        detect(&image(&[NETWORKD_ENABLED[0]], enabled).1),
        Renderer::Networkd
    );

    let (_dir, root) = image(&[], enabled);
    let applied = apply(
        &root,
        &named_plan(),
        Renderer::NetworkManager,
        "network_data.json",
    );
    assert!(
        applied.errors.len() == 1
            && applied.errors[0].contains("eth0")
            && applied.errors[0].contains("systemd-networkd or ifupdown"),
        "{:?}",
        applied.errors
    );
    assert!(!root.exists(direct::RESOLV_CONF));
    let mut dhcp = named_plan();
    dhcp.interfaces.remove(0);
    let applied = apply(&root, &dhcp, Renderer::NetworkManager, "network_data.json");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(
        applied.warnings.len() == 1 && applied.warnings[0].contains("DNS servers"),
        "{:?}",
        applied.warnings
    );
    assert!(!root.exists(direct::RESOLV_CONF));
}

#[test]
fn direct_commands_and_resolv_conf() {
    let plan = named_plan();
    let commands: Vec<String> = direct::commands(&plan, |_, _| false)
        .iter()
        .map(|c| c.join(" "))
        .collect();
    assert_eq!(
        commands,
        [
            "link set dev eth0 mtu 1450 up",
            "-4 addr add 198.18.30.5/24 dev eth0",
            "-6 addr add 2001:db8::5/64 dev eth0",
            "-4 route replace default via 198.18.30.1 dev eth0",
            "-4 route replace 198.19.0.0/16 via 198.18.30.254 dev eth0",
            "-6 route replace default via 2001:db8::1 dev eth0",
            "link set dev eth1 up",
        ]
    );
    let (_dir, root) = root_with_links(&[]);
    assert_eq!(detect(&root), Renderer::Direct);
    let applied = apply(&root, &plan, Renderer::Direct, "network_data.json");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(
        applied.done.iter().any(|d| d.contains("not run")),
        "{:?}",
        applied.done
    );
    assert_eq!(
        fs::read_to_string(root.host_path(direct::RESOLV_CONF)).unwrap(),
        "# Written by metaboot from network_data.json.\nnameserver 198.18.30.2\nnameserver 198.18.30.3\nsearch lab.example\n"
    );
    // A static interface this system does not have cannot be applied without a name.
    let mut unnamed = plan.clone();
    unnamed.interfaces[0].name = None;
    let applied = apply(&root, &unnamed, Renderer::Direct, "network_data.json");
    assert!(
        applied.errors[0].contains("fa:16:3e:00:00:01"),
        "{:?}",
        applied.errors
    );
}

/// A `/etc/resolv.conf` that is a symlink belongs to a resolver manager (systemd-resolved's
/// stub file, NetworkManager's): it is left as it is, the link and what it points to, with a
/// warning that says where DNS goes instead; also when the link's target is not there yet.
#[test]
fn a_resolv_conf_that_is_a_link_is_left_to_its_manager() {
    let plan = named_plan();
    let (_dir, root) = root_with_links(&[]);
    let stub = "/run/systemd/resolve/stub-resolv.conf";
    let target = "../run/systemd/resolve/stub-resolv.conf";
    fs::create_dir_all(root.host_path("/etc")).unwrap();
    fs::create_dir_all(root.host_path("/run/systemd/resolve")).unwrap();
    std::os::unix::fs::symlink(target, root.host_path(direct::RESOLV_CONF)).unwrap();
    for stub_there in [false, true] {
        if stub_there {
            fs::write(root.host_path(stub), "nameserver 127.0.0.53\n").unwrap();
        }
        let applied = apply(&root, &plan, Renderer::Direct, "network_data.json");
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        assert!(
            applied.warnings.len() == 1
                && applied.warnings[0].contains("network_data.json")
                && applied.warnings[0].contains(&format!("link to {target}")),
            "{:?}",
            applied.warnings
        );
        assert!(!applied.done.iter().any(|d| d == direct::RESOLV_CONF));
        assert_eq!(
            fs::read_link(root.host_path(direct::RESOLV_CONF)).unwrap(),
            Path::new(target)
        );
        assert_eq!(
            fs::read_to_string(root.host_path(stub)).ok(),
            stub_there.then(|| "nameserver 127.0.0.53\n".to_owned())
        );
    }
}

/// Search domains without servers (a NoCloud v2 `nameservers: {search: […]}` on a DHCP link)
/// keep the servers the DHCP client wrote: the guest keeps a resolver.
#[test]
fn search_domains_alone_keep_the_servers_there() {
    let mut plan = named_plan();
    plan.nameservers.clear();
    let (_dir, root) = root_with_links(&[]);
    fs::create_dir_all(root.host_path("/etc")).unwrap();
    fs::write(
        root.host_path(direct::RESOLV_CONF),
        "# udhcpc\nsearch old.example\nnameserver 198.18.10.2\noptions edns0\n",
    )
    .unwrap();
    let applied = apply(&root, &plan, Renderer::Direct, "network-config");
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        fs::read_to_string(root.host_path(direct::RESOLV_CONF)).unwrap(),
        "# Written by metaboot from network-config.\nnameserver 198.18.10.2\noptions edns0\n\
         search lab.example\n"
    );
}

/// A second default route of a family (two subnets with gateways, or two interfaces) is
/// appended: `replace` would put it in the first one's place.
#[test]
fn direct_appends_a_second_default_route() {
    let mut plan = named_plan();
    let extra = Route {
        to: addr("0.0.0.0/0"),
        via: ip("198.18.31.1"),
    };
    plan.interfaces[1].routes.push(extra);
    let commands: Vec<String> = direct::commands(&plan, |_, _| true)
        .iter()
        .map(|c| c.join(" "))
        .collect();
    assert!(
        commands.contains(&"-4 route replace default via 198.18.30.1 dev eth0".to_owned()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&"-4 route append default via 198.18.31.1 dev eth1".to_owned()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&"-6 route replace default via 2001:db8::1 dev eth0".to_owned()),
        "{commands:?}"
    );
}

#[test]
fn a_link_already_up_with_its_mtu_gets_no_ip_link_set() {
    let plan = named_plan();
    let (_dir, root) = root_with_links(&[]);
    let link = |name: &str, flags: &str, mtu: &str| {
        let path = root.host_path(Path::new(SYS_CLASS_NET).join(name));
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("flags"), flags).unwrap();
        fs::write(path.join("mtu"), mtu).unwrap();
    };
    let links = |root: &Root| -> Vec<String> {
        direct::commands(&plan, |name, mtu| links::link_in_place(root, name, mtu))
            .iter()
            .map(|c| c.join(" "))
            .filter(|c| c.starts_with("link"))
            .collect()
    };
    // Unknown state: both links are set.
    assert_eq!(
        links(&root),
        ["link set dev eth0 mtu 1450 up", "link set dev eth1 up"]
    );
    // eth0 up but with another MTU, eth1 down: both still set.
    link("eth0", "0x1003\n", "1500\n");
    link("eth1", "0x1002\n", "1500\n");
    assert_eq!(
        links(&root),
        ["link set dev eth0 mtu 1450 up", "link set dev eth1 up"]
    );
    // Both up, eth0 at the wanted MTU (eth1 wants none): nothing to set.
    link("eth0", "0x1003\n", "1450\n");
    link("eth1", "0x1003\n", "1500\n");
    assert!(links(&root).is_empty());
    let addresses = direct::commands(&plan, |name, mtu| links::link_in_place(&root, name, mtu));
    assert_eq!(
        addresses[0].join(" "),
        "-4 addr add 198.18.30.5/24 dev eth0"
    );
}

/// A name or MAC with a line break or a space in it would write lines of its own into the
/// image's configuration (an ifupdown `up` line runs as root): the document is refused whole,
/// saying which value. A search domain is one of a list: it is left out alone (below).
#[test]
fn values_that_would_add_lines_to_a_configuration_are_refused() {
    let static_eth = |extra: serde_json::Value| {
        let mut eth = json!({"type": "physical", "name": "eth0",
            "subnets": [{"type": "static", "address": "198.18.1.10/24"}]});
        eth.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"version": 1, "config": [eth]})
    };
    let cases = [
        (
            static_eth(json!({"name": "eth0\nup touch /pwned"})),
            "interface name",
        ),
        (
            static_eth(json!({"name": "a-name-far-too-long"})),
            "interface name",
        ),
        (static_eth(json!({"name": ".."})), "interface name"),
        (
            static_eth(json!({"mac_address": "fa:16:3e:00:00:01\nName=x"})),
            "MAC address",
        ),
        (
            json!({"version": 2, "ethernets": {"e": {"set-name": "en s3", "dhcp4": true,
            "match": {"macaddress": "fa:16:3e:00:00:02"}}}}),
            "interface name",
        ),
        (
            json!({"version": 2, "ethernets": {"e0 up": {"dhcp4": true}}}),
            "interface name",
        ),
        // A shell runs ifupdown's `up` lines; `ifup`, `ip` and `networkctl` take the name as
        // an argument.
        (static_eth(json!({"name": "e;reboot"})), "interface name"),
        (static_eth(json!({"name": "e$(id)"})), "interface name"),
        (static_eth(json!({"name": "e`id`"})), "interface name"),
        (static_eth(json!({"name": "e|id"})), "interface name"),
        (static_eth(json!({"name": "-a"})), "interface name"),
        (
            json!({"version": 2, "ethernets": {"e": {"dhcp4": true,
            "match": {"name": "en&id"}}}}),
            "interface name",
        ),
    ];
    for (doc, what) in cases {
        let mut warnings = Vec::new();
        match plan(&NetworkDoc::NetworkConfig(doc.clone()), &mut warnings) {
            Err(NetworkError::Invalid(message)) => {
                assert!(message.starts_with(what), "{doc}: {message}");
            }
            other => panic!("{doc}: {other:?}"),
        }
    }
}

/// A search domain that is not one (a line break that would add an ifupdown line, a comma, a
/// name that is not ASCII) is left out with a warning naming it, from either document; the
/// rest of the plan stands.
#[test]
fn a_search_domain_that_is_not_one_is_left_out_with_a_warning() {
    let bad = [
        "x.org\n    up touch /pwned",
        "bücher.de",
        "a.example,b.example",
    ];
    let v1 = json!({"version": 1, "config": [{"type": "physical", "name": "eth0",
        "subnets": [{"type": "static", "address": "198.18.1.10/24",
                     "dns_search": [bad[0], "lab.example", bad[1], bad[2]]}]}]});
    let v2 = json!({"version": 2, "ethernets": {"eth0": {"addresses": ["198.18.1.10/24"],
        "nameservers": {"search": [bad[0], "lab.example", bad[1], bad[2]]}}}});
    let nova = json!({"links": [{"id": "t", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [{"id": "n", "link": "t", "type": "ipv4", "ip_address": "198.18.1.10",
                      "netmask": "255.255.255.0",
                      "dns_search": [bad[0], "lab.example", bad[1], bad[2]]}]});
    for (doc, key) in [
        (
            NetworkDoc::NetworkConfig(v1),
            "network-config: eth0: dns_search",
        ),
        (
            NetworkDoc::NetworkConfig(v2),
            "network-config: eth0: nameservers: search",
        ),
        (NetworkDoc::OpenStack(nova), "network_data.json: dns_search"),
    ] {
        let mut warnings = Vec::new();
        let plan = plan(&doc, &mut warnings).unwrap();
        assert_eq!(plan.search, ["lab.example"], "{doc:?}");
        assert_eq!(plan.interfaces[0].addresses, [addr("198.18.1.10/24")]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        for (warning, domain) in warnings.iter().zip(bad) {
            assert!(
                warning.starts_with(&format!("{key}: {domain:?} is not a domain name; left out")),
                "{warning}"
            );
        }
    }
}

/// A DNS server of `network-config` that is not an address (a name, a line break that would
/// add an ifupdown line) is left out with a warning naming it, as `network_data.json`'s are,
/// from each key that lists servers; the rest is written.
#[test]
fn a_dns_server_that_is_not_an_address_is_left_out_with_a_warning() {
    let bad = [
        "dns.example",
        "198.18.1.300",
        "198.18.1.4\n    up touch /pwned",
    ];
    let v1 = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0",
         "subnets": [{"type": "static", "address": "198.18.1.10/24",
                      "dns_nameservers": [bad[0], "198.18.1.2", bad[1], bad[2]]}]},
        {"type": "nameserver", "address": [bad[0], "198.18.1.3", bad[1], bad[2]]}]});
    let v2 = json!({"version": 2, "ethernets": {"eth0": {"addresses": ["198.18.1.10/24"],
        "nameservers": {"addresses": [bad[0], "198.18.1.2", bad[1], bad[2]]}}}});
    for (doc, keys, servers) in [
        (
            v1,
            &[
                "network-config: eth0: dns_nameservers",
                "network-config: nameserver: address",
            ][..],
            "DNS=198.18.1.2\nDNS=198.18.1.3\n",
        ),
        (
            v2,
            &["network-config: eth0: nameservers: addresses"][..],
            "DNS=198.18.1.2\n",
        ),
    ] {
        let mut warnings = Vec::new();
        let plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
        let expected: Vec<String> = keys
            .iter()
            .flat_map(|key| {
                bad.iter()
                    .map(move |ns| format!("{key}: {ns:?} is not an address; left out"))
            })
            .collect();
        assert_eq!(warnings, expected);
        assert_eq!(
            networkd::render(&plan.interfaces[0], &plan, "network-config"),
            format!(
                "# Written by metaboot from network-config; metaboot rewrites it for a new \
                 instance.\n[Match]\nName=eth0\n\n[Network]\nDHCP=no\nAddress=198.18.1.10/24\n\
                 {servers}"
            )
        );
    }
}

#[test]
fn too_many_interfaces_are_refused() {
    let links: Vec<serde_json::Value> = (0..=MAX_INTERFACES)
        .map(|i| json!({"id": format!("t{i}"), "ethernet_mac_address": format!("fa:16:3e:00:01:{:02x}", i)}))
        .collect();
    let mut warnings = Vec::new();
    assert_eq!(
        plan(
            &NetworkDoc::OpenStack(json!({"links": links})),
            &mut warnings
        ),
        Err(NetworkError::TooMany)
    );
}

/// A name pattern (`match: name: en*`) takes the first system interface it matches that no
/// other interface of the plan has; one that matches none is left out, so no renderer ever
/// writes a pattern.
#[test]
fn name_patterns_are_resolved_against_the_system() {
    let links: Vec<(String, String)> = [
        ("ens3", "fa:16:3e:00:00:01"),
        ("ens4", "fa:16:3e:00:00:02"),
        ("lo", "00:00:00:00:00:00"),
    ]
    .iter()
    .map(|(n, m)| ((*n).to_owned(), (*m).to_owned()))
    .collect();
    let doc = json!({"version": 2, "ethernets": {
        "a": {"match": {"macaddress": "fa:16:3e:00:00:01"}, "dhcp4": true},
        "b": {"match": {"name": "en*"}, "dhcp4": true},
        "c": {"match": {"name": "e?s*"}, "dhcp4": true},
        "d": {"match": {"name": "l?"}, "dhcp4": true}
    }});
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
    name_interfaces(&mut plan, &links, &mut warnings);
    let names: Vec<&str> = plan
        .interfaces
        .iter()
        .map(|i| i.name.as_deref().unwrap())
        .collect();
    // `a` has ens3 by its MAC, `b` the next match, `c` none left, `d` never `lo`.
    assert_eq!(names, ["ens3", "ens4"]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("\"e?s*\""), "{warnings:?}");
    assert!(warnings[1].contains("\"l?\""), "{warnings:?}");
}

/// A pattern with a MAC no interface has (netplan's `match` of both) names nothing: no
/// renderer gets the pattern as a name (ifupdown's `auto en*` would fail `ifup -a` at boot);
/// the interface keeps its MAC, as one without a name.
#[test]
fn a_pattern_with_a_missing_mac_names_nothing() {
    let links = [("ens3".to_owned(), "fa:16:3e:00:00:01".to_owned())];
    let doc = json!({"version": 2, "ethernets": {
        "a": {"match": {"macaddress": "fa:16:3e:00:00:09", "name": "en*"}, "dhcp4": true},
        "b": {"match": {"macaddress": "fa:16:3e:00:00:0a", "name": "en*"},
              "addresses": ["198.18.1.10/24"]}
    }});
    let mut warnings = Vec::new();
    let mut plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
    name_interfaces(&mut plan, &links, &mut warnings);
    assert_eq!(plan.interfaces[0].name, None);
    assert_eq!(plan.interfaces[1].name, None);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let (text, unnamed) = ifupdown::render(&plan, "network-config");
    assert!(!text.contains('*'), "{text}");
    assert_eq!(unnamed, ["fa:16:3e:00:00:0a"]);
    let networkd = networkd::render(&plan.interfaces[1], &plan, "network-config");
    assert!(
        networkd.contains("[Match]\nMACAddress=fa:16:3e:00:00:0a\n\n"),
        "{networkd}"
    );
}

#[test]
fn name_patterns_match_as_globs() {
    for (pattern, name, matches) in [
        ("en*", "ens3", true),
        ("en*", "en", true),
        ("en*", "eth0", false),
        ("*", "eth0", true),
        ("e?h0", "eth0", true),
        ("e?h0", "eh0", false),
        ("*0", "eth0", true),
        ("*0", "eth1", false),
        ("e*s*3", "enp0s3", true),
        ("e*s*3", "enp0s4", false),
        ("eth0", "eth0", true),
        ("eth0", "eth00", false),
    ] {
        assert_eq!(
            links::name_matches(pattern, name),
            matches,
            "{pattern} {name}"
        );
    }
}

/// Version 1 addresses and route networks take their prefix as cloud-init does: their own
/// `/N`, else `prefix` (number or string), else `netmask`, else /24 or /64; `ip_address`
/// stands for `address`.
#[test]
fn version_1_prefixes_are_read_as_cloud_init_reads_them() {
    let doc = json!({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "subnets": [
            {"type": "static", "address": "198.18.1.10", "prefix": 16, "gateway": "198.18.0.1",
             "routes": [{"network": "198.19.0.0", "prefix": 8, "gateway": "198.18.0.2"},
                        {"destination": "198.20.0.0", "prefix": "16", "gateway": "198.18.0.3"},
                        {"network": "198.21.0.0", "gateway": "198.18.0.4"}]},
            {"type": "static", "address": "198.18.2.10"},
            {"type": "static", "ip_address": "198.18.3.10", "netmask": "255.255.255.128"},
            {"type": "static6", "address": "2001:db8::5"},
            {"type": "static6", "address": "2001:db8:1::5/48", "prefix": 64}
        ]}
    ]});
    let mut warnings = Vec::new();
    let plan = plan(&NetworkDoc::NetworkConfig(doc), &mut warnings).unwrap();
    let eth0 = &plan.interfaces[0];
    assert_eq!(
        eth0.addresses,
        [
            addr("198.18.1.10/16"),
            addr("198.18.2.10/24"),
            addr("198.18.3.10/25"),
            addr("2001:db8::5/64"),
            addr("2001:db8:1::5/48"),
        ]
    );
    let routes: Vec<String> = eth0.routes.iter().map(|r| r.to.to_string()).collect();
    assert_eq!(
        routes,
        [
            "0.0.0.0/0",
            "198.19.0.0/8",
            "198.20.0.0/16",
            "198.21.0.0/24"
        ]
    );
}

/// A live command is killed at its bound and the error says so; one that fails says its
/// standard error. The bound outlasts networkd's wait for its links, which ends on its own.
#[test]
fn a_live_command_is_killed_at_its_bound() {
    let sh = |line: &str| ["-c".to_owned(), line.to_owned()];
    assert_eq!(
        live::run_within("true", &[], Duration::from_secs(5)),
        Ok(())
    );
    assert_eq!(
        live::run_within("sh", &sh("echo broken >&2; exit 3"), Duration::from_secs(5)),
        Err("sh -c echo broken >&2; exit 3: broken".to_owned())
    );
    let started = std::time::Instant::now();
    let err = live::run_within(
        "sh",
        &sh("echo waiting >&2; exec sleep 20"),
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(
        err,
        "sh -c echo waiting >&2; exec sleep 20: killed after 0.2 s without an end (a DHCP client \
         without an answer waits that long: check the network's DHCP server): waiting"
    );
    // What the command started is killed with it (ifup's DHCP client).
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("still-running");
    let line = format!("(sleep 1; touch {}) & exec sleep 20", mark.display());
    live::run_within("sh", &sh(&line), Duration::from_millis(200)).unwrap_err();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!mark.exists(), "a process the command started outlived it");
    assert!(live::COMMAND_TIMEOUT > Duration::from_secs(networkd::WAIT_ONLINE_TIMEOUT_SECS.into()));
    assert_eq!(live::COMMAND_TIMEOUT, Duration::from_secs(35));
}
