//! Lease lookups against real files: found, changed, expired, torn.

use std::net::IpAddr;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

fn status(entries: &[(&str, &str, u64)]) -> String {
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|(ip, mac, expiry)| {
            serde_json::json!({"ip-address": ip, "mac-address": mac, "expiry-time": expiry})
        })
        .collect();
    serde_json::to_string_pretty(&entries).unwrap()
}

/// Replaces `path` as libvirt's helper does (a new file renamed over the old one).
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn a_libvirt_network_is_found_by_its_bridge_and_follows_its_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let leases = HostLeases::new(dir.path().to_owned());
    let lab = HostBridge::LibvirtNetwork("lab".to_owned());
    // Not started: no bridge, no leases, no error.
    assert_eq!(leases.bridge_of(&lab).unwrap(), None);
    assert!(leases.macs_of(&lab, ip("198.18.5.7")).unwrap().is_empty());
    std::fs::write(
        dir.path().join("lab.conf"),
        "strict-order\nexcept-interface=lo\nbind-dynamic\ninterface=virbr7\n",
    )
    .unwrap();
    assert_eq!(leases.bridge_of(&lab).unwrap().as_deref(), Some("virbr7"));
    let file = dir.path().join("virbr7.status");
    let later = now() + 3600;
    replace(
        &file,
        &status(&[("198.18.5.7", "52:54:00:00:00:01", later)]),
    );
    assert_eq!(leases.macs_of(&lab, ip("198.18.5.7")).unwrap(), vec![MAC_A]);
    // A reboot: the MAC moves to .9 and .7 goes to another MAC.
    replace(
        &file,
        &status(&[
            ("198.18.5.9", "52:54:00:00:00:01", later),
            ("198.18.5.7", "52:54:00:00:00:02", later),
        ]),
    );
    assert_eq!(leases.macs_of(&lab, ip("198.18.5.9")).unwrap(), vec![MAC_A]);
    assert_eq!(leases.macs_of(&lab, ip("198.18.5.7")).unwrap(), vec![MAC_B]);
}

#[test]
fn an_expired_lease_names_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let leases = HostLeases::new(dir.path().to_owned());
    let br = HostBridge::Bridge("br-t".to_owned());
    let past = now() - 1;
    replace(
        &dir.path().join("br-t.status"),
        &status(&[
            ("198.18.5.7", "52:54:00:00:00:01", past),
            ("198.18.5.8", "52:54:00:00:00:02", 0),
        ]),
    );
    assert!(leases.macs_of(&br, ip("198.18.5.7")).unwrap().is_empty());
    // 0: an infinite lease.
    assert_eq!(leases.macs_of(&br, ip("198.18.5.8")).unwrap(), vec![MAC_B]);
}

#[test]
fn a_plain_dnsmasq_lease_file_is_read_when_there_is_no_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let leases = HostLeases::new(dir.path().to_owned());
    let br = HostBridge::Bridge("br-t".to_owned());
    let file = dir.path().join("br-t.leases");
    let later = now() + 3600;
    std::fs::write(
        &file,
        format!("{later} 52:54:00:00:00:01 198.18.5.7 web *\n"),
    )
    .unwrap();
    assert_eq!(leases.macs_of(&br, ip("198.18.5.7")).unwrap(), vec![MAC_A]);
    // Rewritten in place, as dnsmasq does.
    std::fs::write(
        &file,
        format!("{later} 52:54:00:00:00:02 198.18.5.7 db *\n"),
    )
    .unwrap();
    assert_eq!(leases.macs_of(&br, ip("198.18.5.7")).unwrap(), vec![MAC_B]);
}

#[test]
fn a_torn_or_oversized_file_is_an_error_not_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let leases = HostLeases::new(dir.path().to_owned());
    let br = HostBridge::Bridge("br-t".to_owned());
    let file = dir.path().join("br-t.status");
    std::fs::write(&file, "[{\"ip-address\": \"198.18.5.7\", \"mac-").unwrap();
    let err = leases.macs_of(&br, ip("198.18.5.7")).unwrap_err();
    assert!(matches!(err, HostLeaseError::Parse { .. }), "{err}");
    let big = std::fs::File::create(&file).unwrap();
    big.set_len(MAX_LEASE_FILE_BYTES + 1).unwrap();
    let err = leases.macs_of(&br, ip("198.18.5.7")).unwrap_err();
    assert!(matches!(err, HostLeaseError::TooLarge { .. }), "{err}");
}

/// A read between two of dnsmasq's writes (the new file's beginning, the old one's end: same
/// length, same tick) is not taken: the text two reads in a row agree on is.
#[test]
fn a_lease_file_is_taken_as_two_reads_in_a_row_agree_on_it() {
    let texts = ["new-begin old-end", "new whole", "new whole", "later"];
    let mut reads = texts.iter();
    let text = super::stable(|| Ok((*reads.next().unwrap()).to_owned())).unwrap();
    assert_eq!(text, "new whole");
    assert_eq!(reads.len(), 1, "no read after two agreed");
    // A file that never holds still: the last of MAX_LEASE_READS reads.
    let mut n = 0;
    let text = super::stable(|| {
        n += 1;
        Ok(n.to_string())
    })
    .unwrap();
    assert_eq!(text, super::MAX_LEASE_READS.to_string());
}
