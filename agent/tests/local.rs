//! `metaboot local` (metaboot-local.service, before the network starts) on an ifupdown image
//! made from an instance: the `interfaces.d` file metaboot wrote for that instance's NIC is set
//! aside when the NIC with its MAC is gone (a new instance), so its static addresses never
//! come up on the new instance's NIC of the same name; on the same instance, and for a file
//! of an older metaboot that records no MAC, it stays.

mod support;

use std::fs;
use std::process::Output;

use support::Guest;

/// The file ifupdown reads, and where `metaboot local` sets it aside.
const FILE: &str = "/etc/network/interfaces.d/50-metaboot";
const SET_ASIDE: &str = "/var/lib/metaboot/50-metaboot.set-aside";

/// An ifupdown image (Debian's `/etc/network/interfaces`, `ifup`) whose NIC `ens3` has `mac`.
fn ifupdown_guest(mac: &str) -> Guest {
    let guest = Guest::new();
    fs::create_dir_all(guest.path("/etc/network/interfaces.d")).unwrap();
    fs::write(
        guest.path("/etc/network/interfaces"),
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    )
    .unwrap();
    fs::create_dir_all(guest.path("/usr/sbin")).unwrap();
    fs::write(guest.path("/usr/sbin/ifup"), "").unwrap();
    set_mac(&guest, mac);
    guest
}

/// Gives `ens3` of the guest's `/sys/class/net` the MAC `mac`.
fn set_mac(guest: &Guest, mac: &str) {
    set_link(guest, "ens3", mac);
}

/// Gives interface `name` of the guest's `/sys/class/net` the MAC `mac`.
fn set_link(guest: &Guest, name: &str, mac: &str) {
    let iface = guest.path(&format!("/sys/class/net/{name}"));
    fs::create_dir_all(&iface).unwrap();
    fs::write(iface.join("address"), format!("{mac}\n")).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_previous_instances_ifupdown_file_is_set_aside_before_the_network_starts() {
    let guest = ifupdown_guest("fa:16:3e:00:00:07");
    // nova's document for a port on OVN: a static `ipv4` network.
    guest.serve(
        "network_data.json",
        br#"{"links": [{"id": "tapabc", "vif_id": "p", "type": "ovs", "mtu": 1442,
              "ethernet_mac_address": "fa:16:3e:00:00:07"}],
            "networks": [{"id": "network0", "link": "tapabc", "network_id": "n", "type": "ipv4",
              "ip_address": "198.18.30.2", "netmask": "255.255.255.0",
              "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.30.1"}],
              "services": []}],
            "services": []}"#,
    );
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "ok", "{message}");
    let written = guest.read(FILE);
    assert!(
        written.contains("# metaboot: ens3 fa:16:3e:00:00:07\nauto ens3\niface ens3 inet static\n"),
        "{written}"
    );

    // The same instance boots again: its NIC is there, the file stays, nothing is said.
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(FILE), written);
    assert!(!guest.path(SET_ASIDE).exists());

    // An image made from it boots as a new instance: its NIC has another MAC.
    set_mac(&guest, "fa:16:3e:00:00:99");
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains(FILE)
            && said.contains("ens3 with MAC fa:16:3e:00:00:07")
            && said.contains(&format!("set aside as {SET_ASIDE}")),
        "{said}"
    );
    assert!(!guest.path(FILE).exists(), "ifupdown would still read it");
    assert!(
        fs::read_dir(guest.path("/etc/network/interfaces.d"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left for `source /etc/network/interfaces.d/*`"
    );
    assert_eq!(guest.read(SET_ASIDE), written);

    // Nothing left to set aside on the next boot.
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(SET_ASIDE), written);
}

/// A file written by an older metaboot records no MAC: there is no telling whom it was written
/// for, and it is left as it is.
#[test]
fn a_file_that_records_no_mac_is_left_alone() {
    let guest = ifupdown_guest("fa:16:3e:00:00:99");
    let old = "# Written by metaboot from network_data.json; metaboot rewrites it for a new \
               instance.\n\nauto ens3\niface ens3 inet static\n    address 198.18.30.2/24\n";
    fs::write(guest.path(FILE), old).unwrap();
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(FILE), old);
    assert!(!guest.path(SET_ASIDE).exists());
}

/// A NoCloud guest whose `network-config` (version 1) names two NICs by MAC: `eth0` with
/// `52-54-00-12-34-56` (the `-` form, which the image's NIC `ens3` has as
/// `52:54:00:12:34:56`), and `eth1`, which no NIC of the guest has (the document's name is
/// kept). `50-metaboot` records only ens3's MAC, as the system writes it, and on the next boot
/// of the same instance `metaboot local` keeps the file: the network step runs once per
/// instance and would never write it again.
#[test]
fn a_plain_reboot_keeps_a_file_with_a_dash_mac_and_a_nic_that_is_not_there() {
    let guest = ifupdown_guest("52:54:00:12:34:56");
    let seed = guest.path("/var/lib/cloud/seed/nocloud");
    fs::create_dir_all(&seed).unwrap();
    fs::write(seed.join("meta-data"), "instance-id: iid-local-1\n").unwrap();
    fs::write(seed.join("user-data"), "").unwrap();
    fs::write(
        seed.join("network-config"),
        "version: 1\nconfig:\n\
         - {type: physical, name: eth0, mac_address: 52-54-00-12-34-56,\n   \
         subnets: [{type: static, address: 198.18.30.2/24}]}\n\
         - {type: physical, name: eth1, mac_address: 52-54-00-ab-cd-ef,\n   \
         subnets: [{type: static, address: 198.18.31.2/24}]}\n",
    )
    .unwrap();
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "ok", "{message}");
    let written = guest.read(FILE);
    let recorded: Vec<&str> = written
        .lines()
        .filter(|line| line.starts_with("# metaboot: "))
        .collect();
    assert_eq!(
        recorded,
        ["# metaboot: ens3 52:54:00:12:34:56"],
        "{written}"
    );
    assert!(
        written.contains("auto ens3\niface ens3 inet static\n")
            && written.contains("auto eth1\niface eth1 inet static\n"),
        "{written}"
    );

    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(FILE), written);
    assert!(!guest.path(SET_ASIDE).exists());
}

/// Both NICs of the instance are there, but named the other way round (`net.ifnames=0`, a NIC
/// hot-added before the reboot probed first): `eth0`'s stanzas would come up on the NIC of
/// `eth1`'s MAC. The file is set aside, with how to have metaboot write it again for the
/// names as they are; done so, the new file is kept.
#[test]
fn nics_named_the_other_way_round_set_the_file_aside() {
    let guest = ifupdown_guest("fa:16:3e:00:00:01");
    fs::remove_dir_all(guest.path("/sys/class/net/ens3")).unwrap();
    set_link(&guest, "eth0", "fa:16:3e:00:00:01");
    set_link(&guest, "eth1", "fa:16:3e:00:00:02");
    guest.serve(
        "network_data.json",
        br#"{"links": [
              {"id": "a", "vif_id": "p", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"},
              {"id": "b", "vif_id": "q", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:02"}],
            "networks": [
              {"id": "n0", "link": "a", "network_id": "n", "type": "ipv4",
               "ip_address": "198.18.30.2", "netmask": "255.255.255.0", "services": []},
              {"id": "n1", "link": "b", "network_id": "m", "type": "ipv4",
               "ip_address": "198.18.31.2", "netmask": "255.255.255.0", "services": []}],
            "services": []}"#,
    );
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    let written = guest.read(FILE);
    assert!(
        written.contains("# metaboot: eth0 fa:16:3e:00:00:01\nauto eth0\n")
            && written.contains("    address 198.18.30.2/24\n")
            && written.contains("# metaboot: eth1 fa:16:3e:00:00:02\nauto eth1\n"),
        "{written}"
    );

    set_link(&guest, "eth0", "fa:16:3e:00:00:02");
    set_link(&guest, "eth1", "fa:16:3e:00:00:01");
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    let semaphore = "/var/lib/metaboot/instance/sem/config_network";
    assert!(
        said.contains("written for eth0 with MAC fa:16:3e:00:00:01, which is eth1's now")
            && said.contains(&format!("set aside as {SET_ASIDE}"))
            && said.contains(&format!(
                "remove {semaphore} and run `metaboot run --stage init && metaboot run --stage final`"
            )),
        "{said}"
    );
    assert!(!guest.path(FILE).exists(), "ifupdown would still read it");
    assert_eq!(guest.read(SET_ASIDE), written);

    // What the message says to do writes the file for the names as they are.
    fs::remove_file(guest.path(semaphore)).unwrap();
    assert_eq!(guest.run_stage("init").0, 0, "{}", guest.status());
    let rewritten = guest.read(FILE);
    assert!(
        rewritten.contains("# metaboot: eth1 fa:16:3e:00:00:01\nauto eth1\n")
            && rewritten.contains("# metaboot: eth0 fa:16:3e:00:00:02\nauto eth0\n"),
        "{rewritten}"
    );
    let out = guest.metaboot(&["local"]);
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(FILE), rewritten);
}

/// The instance's NIC is there, but under another name (`net.ifnames` turned on in the image,
/// another PCI slot): no interface has the name the file's stanzas give, which would configure
/// nothing and leave the NIC unconfigured. The file is set aside as when the NICs swap names,
/// with how to have metaboot write it again for the name as it is; done so, it is kept.
#[test]
fn a_nic_under_a_name_no_stanza_gives_sets_the_file_aside() {
    let guest = ifupdown_guest("fa:16:3e:00:00:01");
    fs::remove_dir_all(guest.path("/sys/class/net/ens3")).unwrap();
    set_link(&guest, "eth0", "fa:16:3e:00:00:01");
    guest.serve(
        "network_data.json",
        br#"{"links": [
              {"id": "a", "vif_id": "p", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
            "networks": [
              {"id": "n0", "link": "a", "network_id": "n", "type": "ipv4",
               "ip_address": "198.18.30.2", "netmask": "255.255.255.0", "services": []}],
            "services": []}"#,
    );
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    let written = guest.read(FILE);
    assert!(
        written.contains("# metaboot: eth0 fa:16:3e:00:00:01\nauto eth0\niface eth0 inet static\n"),
        "{written}"
    );

    fs::remove_dir_all(guest.path("/sys/class/net/eth0")).unwrap();
    set_mac(&guest, "fa:16:3e:00:00:01");
    let out = guest.metaboot(&["local"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    let semaphore = "/var/lib/metaboot/instance/sem/config_network";
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("written for eth0 with MAC fa:16:3e:00:00:01, which is ens3's now")
            && said.contains("no interface is eth0")
            && said.contains(&format!("set aside as {SET_ASIDE}"))
            && said.contains(&format!(
                "remove {semaphore} and run `metaboot run --stage init && metaboot run --stage final`"
            )),
        "{said}"
    );
    assert!(!guest.path(FILE).exists(), "ifupdown would still read it");
    assert_eq!(guest.read(SET_ASIDE), written);

    // What the message says to do writes the file for the name as it is.
    fs::remove_file(guest.path(semaphore)).unwrap();
    assert_eq!(guest.run_stage("init").0, 0, "{}", guest.status());
    let rewritten = guest.read(FILE);
    assert!(
        rewritten
            .contains("# metaboot: ens3 fa:16:3e:00:00:01\nauto ens3\niface ens3 inet static\n"),
        "{rewritten}"
    );
    let out = guest.metaboot(&["local"]);
    assert_eq!(stderr(&out), "");
    assert_eq!(guest.read(FILE), rewritten);
}
