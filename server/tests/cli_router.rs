//! `router create|add-network|remove-network|list|show|delete` as a user runs them, on networks with one subnet or
//! two (dual stack).

mod cli_support;

use cli_support::Registry;

#[test]
fn router_commands_name_every_subnet_of_a_dual_stack_network() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "v4", "--cidr", "198.18.0.0/24"]);
    for (name, v4, v6) in [
        ("dual", "198.18.4.0/24", "fdc6:1200:0:41::/64"),
        ("dual2", "198.18.5.0/24", "fdc6:1200:0:42::/64"),
    ] {
        reg.ok(&["network", "create", name, "--cidr", v4, "--cidr", v6]);
    }
    let both = "dual (198.18.4.0/24,fdc6:1200:0:41::/64)";
    let created = reg.ok(&["router", "create", "r1", "--network", "dual"]);
    assert!(created.contains(both), "{created}");
    let attached = reg.ok(&["router", "add-network", "r1", "dual2"]);
    assert!(
        attached.contains("dual2 (198.18.5.0/24,fdc6:1200:0:42::/64)"),
        "{attached}"
    );
    for listed in [
        reg.ok(&["router", "show", "r1"]),
        reg.ok(&["router", "list"]),
    ] {
        assert!(listed.contains(both), "{listed}");
        assert!(listed.contains("fdc6:1200:0:42::/64"), "{listed}");
    }
}

#[test]
fn router_remove_network_detaches_one_network() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    reg.ok(&["network", "create", "net2", "--cidr", "198.18.1.0/24"]);
    reg.ok(&[
        "network",
        "create",
        "dual",
        "--cidr",
        "198.18.4.0/24",
        "--cidr",
        "fdc6:1200:0:41::/64",
    ]);
    reg.ok(&[
        "router",
        "create",
        "r1",
        "--network",
        "net1",
        "--network",
        "dual",
    ]);
    reg.ok(&["instance", "create", "web", "--network", "dual"]);

    let removed = reg.ok(&["router", "remove-network", "r1", "dual"]);
    assert!(
        removed.starts_with(
            "removed network dual (198.18.4.0/24,fdc6:1200:0:41::/64) from router r1 ("
        ),
        "{removed}"
    );
    let net1 = reg.json(&["network", "show", "net1", "--json"]);
    let router = reg.json(&["router", "show", "r1", "--json"]);
    assert_eq!(router["networks"], serde_json::json!([net1["id"]]));
    // The network and its instance stay.
    reg.ok(&["network", "show", "dual"]);
    reg.ok(&["instance", "show", "web"]);

    for (args, expected) in [
        (
            vec!["router", "remove-network", "r1", "net2"],
            "network net2 is not attached to router r1",
        ),
        (
            vec!["router", "remove-network", "r1", "dual"],
            "network dual is not attached to router r1",
        ),
        (
            vec!["router", "remove-network", "r1", "nope"],
            "network \"nope\" not found",
        ),
        (
            vec!["router", "remove-network", "r2", "net1"],
            "router \"r2\" not found",
        ),
    ] {
        let msg = reg.refused(&args);
        assert!(msg.contains(expected), "{args:?}: {msg}");
    }
}

#[test]
fn router_delete_is_refused_while_networks_are_attached() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    reg.ok(&["network", "create", "net2", "--cidr", "198.18.1.0/24"]);
    let router = reg.json(&[
        "router",
        "create",
        "r1",
        "--network",
        "net1",
        "--network",
        "net2",
        "--json",
    ]);
    let id = router["id"].as_str().unwrap();

    // Neutron's RouterInUse: the refusal names the networks and how to detach them.
    let msg = reg.refused(&["router", "delete", "r1"]);
    for expected in [
        "router r1 still has 2 network(s) attached",
        "net1 (198.18.0.0/24)",
        "net2 (198.18.1.0/24)",
        &format!("metaboot-server router remove-network {id} NETWORK"),
    ] {
        assert!(msg.contains(expected), "{expected:?} missing from {msg}");
    }

    reg.ok(&["router", "remove-network", "r1", "net1"]);
    let msg = reg.refused(&["router", "delete", "r1"]);
    assert!(
        msg.contains("router r1 still has 1 network(s) attached: net2 (198.18.1.0/24);"),
        "{msg}"
    );
    reg.ok(&["router", "remove-network", "r1", "net2"]);
    let deleted = reg.ok(&["router", "delete", "r1"]);
    assert!(deleted.starts_with("deleted router r1 ("), "{deleted}");
    assert_eq!(
        reg.json(&["router", "list", "--json"]),
        serde_json::json!([])
    );
    // The networks stay.
    assert_eq!(
        reg.json(&["network", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn network_delete_is_refused_while_a_router_has_it() {
    let reg = Registry::new();
    let net = reg.json(&[
        "network",
        "create",
        "net1",
        "--cidr",
        "198.18.0.0/24",
        "--json",
    ]);
    let net_id = net["id"].as_str().unwrap();
    let r1 = reg.json(&["router", "create", "r1", "--network", "net1", "--json"]);
    let r2 = reg.json(&["router", "create", "r2", "--network", "net1", "--json"]);

    // Neutron's NetworkInUse: the refusal names the routers and how to detach the network.
    let msg = reg.refused(&["network", "delete", "net1"]);
    for expected in [
        "network net1 is still attached to 2 router(s)",
        &format!("r1 ({})", r1["id"].as_str().unwrap()),
        &format!("r2 ({})", r2["id"].as_str().unwrap()),
        &format!("metaboot-server router remove-network ROUTER {net_id}"),
    ] {
        assert!(msg.contains(expected), "{expected:?} missing from {msg}");
    }

    reg.ok(&["router", "remove-network", "r1", "net1"]);
    reg.ok(&["router", "remove-network", "r2", "net1"]);
    let deleted = reg.ok(&["network", "delete", "net1"]);
    assert!(deleted.starts_with("deleted network net1 ("), "{deleted}");
    // The routers stay.
    assert_eq!(
        reg.json(&["router", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
