//! Host networks from the CLI as a libvirt host's user runs it: `network create
//! --libvirt-network NAME` / `--bridge BR`, instances known by `--mac` (address learned, or
//! fixed with `--ip` and the `virsh net-update` line printed), the refusals with one line and
//! exit code 2, and `network delete`.

mod cli_support;

use cli_support::{PUBLIC_KEY, Registry};

#[test]
fn a_libvirt_network_and_instances_known_by_mac() {
    let reg = Registry::new();
    let lan = reg.json(&[
        "network",
        "create",
        "lan",
        "--cidr",
        "198.18.30.0/24",
        "--libvirt-network",
        "default",
        "--json",
    ]);
    assert_eq!(lan["host"]["libvirt_network"], "default", "{lan}");
    assert_eq!(lan["gateway"], "198.18.30.1");
    let shown = reg.ok(&["network", "show", "lan"]);
    assert!(
        shown.contains("host (metadata on the libvirt network default)"),
        "{shown}"
    );
    assert!(reg.ok(&["network", "list"]).contains(" host"));
    reg.ok(&[
        "network",
        "create",
        "br",
        "--cidr",
        "198.18.31.0/24",
        "--bridge",
        "br0",
    ]);

    let key = reg.write("web.pub", format!("{PUBLIC_KEY}\n").as_bytes());
    let user_data = reg.write("user-data", b"#cloud-config\npassword: secret\n");
    let web = reg.json(&[
        "instance",
        "create",
        "web",
        "--network",
        "lan",
        "--mac",
        "52:54:00:AA:BB:01",
        "--user-data",
        &user_data,
        "--key-file",
        &key,
        "--json",
    ]);
    assert_eq!(web["mac"], "52:54:00:aa:bb:01");
    assert_eq!(web["ip"], "leased");
    assert!(reg.ok(&["instance", "list"]).contains("lan=leased"));
    // The port commands show it as the instance commands do, never its placeholder.
    let ports = reg.json(&["port", "list", "--json"]);
    assert_eq!(ports[0]["ip"], "leased", "{ports}");
    let port_id = ports[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reg.json(&["port", "show", &port_id, "--json"])["ip"],
        "leased"
    );
    let table = reg.ok(&["port", "list"]);
    assert!(
        table.contains("leased") && !table.contains("0.0.0."),
        "{table}"
    );
    assert!(reg.ok(&["port", "show", &port_id]).contains("leased"));

    // A fixed address: the line that makes libvirt's DHCP server hand it out.
    let fixed = reg.ok(&[
        "instance",
        "create",
        "db",
        "--network",
        "lan",
        "--mac",
        "52:54:00:aa:bb:02",
        "--ip",
        "198.18.30.10",
    ]);
    assert!(
        fixed.contains(
            "virsh net-update default add ip-dhcp-host \
             \"<host mac='52:54:00:aa:bb:02' ip='198.18.30.10'/>\" --live --config"
        ),
        "{fixed}"
    );

    for (args, expected) in [
        (
            vec!["instance", "create", "x", "--network", "lan"],
            "pass --mac",
        ),
        (
            vec![
                "instance",
                "create",
                "x",
                "--network",
                "lan",
                "--mac",
                "52:54:00:aa:bb",
            ],
            "bad MAC",
        ),
        (
            vec![
                "instance",
                "create",
                "x",
                "--network",
                "lan",
                "--mac",
                "52:54:00:aa:bb:01",
            ],
            "already used",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.32.0/24",
                "--bridge",
                "a/b",
            ],
            "bad bridge name",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.32.0/24",
                "--libvirt-network",
                "default",
            ],
            "network lan is already served on the libvirt network default",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.33.0/24",
                "--bridge",
                "br-x",
                "--ipv6-address-mode",
                "slaac",
            ],
            "drop --ipv6-address-mode",
        ),
        (
            vec!["router", "create", "r", "--network", "lan"],
            "no router",
        ),
        (vec!["network", "delete", "lan"], "still has 2 port(s)"),
    ] {
        let message = reg.refused(&args);
        assert!(message.contains(expected), "{args:?}: {message}");
    }

    // Both kinds at once: clap refuses it (exit code 2), naming both flags.
    let output = reg
        .cmd(&[
            "network",
            "create",
            "x",
            "--cidr",
            "198.18.32.0/24",
            "--bridge",
            "br1",
            "--libvirt-network",
            "default",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--bridge") && stderr.contains("--libvirt-network"),
        "{stderr}"
    );

    reg.ok(&["instance", "delete", "web"]);
    reg.ok(&["instance", "delete", "db"]);
    reg.ok(&["network", "delete", "lan"]);
    let left = reg.json(&["network", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
}
