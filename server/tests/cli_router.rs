//! `router create|add-network|list|show` as a user runs them, on networks with one subnet or
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
