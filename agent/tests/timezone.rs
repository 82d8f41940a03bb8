//! `timezone` in user data, as a user of cloud-init writes it: `/etc/localtime` becomes the
//! zone's file (a symlink, or a copy where the image keeps a copy) and `/etc/timezone` names
//! it; a zone the image has no file for, or a name that is no zone, is an error that changes
//! nothing.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use support::Guest;

/// A guest whose image has a Debian zoneinfo tree (`UTC` a symlink into `Etc`, as tzdata
/// ships it) and `/etc/localtime` linked to UTC.
fn guest() -> Guest {
    let guest = Guest::new();
    let zoneinfo = guest.path("/usr/share/zoneinfo");
    fs::create_dir_all(zoneinfo.join("Europe")).unwrap();
    fs::create_dir_all(zoneinfo.join("Etc")).unwrap();
    fs::write(zoneinfo.join("Europe/Berlin"), "TZif berlin").unwrap();
    fs::write(zoneinfo.join("Etc/UTC"), "TZif utc").unwrap();
    symlink("Etc/UTC", zoneinfo.join("UTC")).unwrap();
    fs::write(guest.path("/etc/debian_version"), "12.8\n").unwrap();
    fs::write(guest.path("/etc/timezone"), "Etc/UTC\n").unwrap();
    symlink("/usr/share/zoneinfo/Etc/UTC", guest.path("/etc/localtime")).unwrap();
    guest
}

#[test]
fn a_zone_is_linked_and_named() {
    let guest = guest();
    guest.user_data("#cloud-config\ntimezone: Europe/Berlin\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("timezone"),
        (
            "ok".into(),
            "Europe/Berlin: /etc/localtime -> /usr/share/zoneinfo/Europe/Berlin".into()
        )
    );
    assert_eq!(
        fs::read_link(guest.path("/etc/localtime")).unwrap(),
        PathBuf::from("/usr/share/zoneinfo/Europe/Berlin")
    );
    // The link is absolute, as the image's own: it names the file inside the guest.
    assert_eq!(
        guest.read("/usr/share/zoneinfo/Europe/Berlin"),
        "TZif berlin"
    );
    assert_eq!(guest.read("/etc/timezone"), "Europe/Berlin\n");
}

#[test]
fn a_copy_of_localtime_stays_a_copy() {
    let guest = guest();
    fs::remove_file(guest.path("/etc/localtime")).unwrap();
    fs::write(guest.path("/etc/localtime"), "TZif utc").unwrap();
    // A zone name that is a symlink in the tree (tzdata's `UTC`).
    guest.user_data("#cloud-config\ntimezone: UTC\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("timezone").1,
        "UTC: /etc/localtime is a copy of /usr/share/zoneinfo/UTC"
    );
    let meta = fs::symlink_metadata(guest.path("/etc/localtime")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(guest.read("/etc/localtime"), "TZif utc");
    assert_eq!(guest.read("/etc/timezone"), "UTC\n");
}

#[test]
fn an_unknown_or_malformed_zone_changes_nothing() {
    for (zone, message) in [
        (
            "Mars/Olympus_Mons",
            "Invalid timezone Mars/Olympus_Mons, no file found at {root}/usr/share/zoneinfo/Mars/Olympus_Mons",
        ),
        (
            "../../../etc/shadow",
            "timezone \"../../../etc/shadow\" is not a zone name: want one like Europe/Berlin or \
             UTC (letters, digits, '/', '_', '-', '+', at most 64 characters)",
        ),
        // A directory of the tree is no zone.
        (
            "Europe",
            "Invalid timezone Europe, no file found at {root}/usr/share/zoneinfo/Europe",
        ),
    ] {
        let guest = guest();
        guest.user_data(format!("#cloud-config\ntimezone: {zone}\n"));
        let (code, _) = guest.run();
        assert_eq!(code, 1);
        let root = guest.root.display().to_string();
        assert_eq!(
            guest.step("timezone"),
            ("error".into(), message.replace("{root}", &root))
        );
        assert_eq!(
            fs::read_link(guest.path("/etc/localtime")).unwrap(),
            PathBuf::from("/usr/share/zoneinfo/Etc/UTC")
        );
        assert_eq!(guest.read("/etc/timezone"), "Etc/UTC\n");
    }
}

#[test]
fn without_timezone_nothing_is_touched() {
    let guest = guest();
    guest.user_data("#cloud-config\nhostname: plain\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("timezone"),
        ("skipped".into(), "no timezone".into())
    );
    assert_eq!(guest.read("/etc/timezone"), "Etc/UTC\n");
}
