//! `mounts` and `swap` in user data as cloud-init's users write them: fstab gets the entries
//! (marked `comment=cloudconfig`), the mount points exist, a swap file is made, and the next
//! instance on the same disk replaces the earlier instance's entries instead of adding to them.

mod support;

use std::fs;

use support::Guest;

const USER_DATA: &str = "#cloud-config\nmounts:\n  - [nas:/export, /srv/nfs, nfs, \"ro,soft\", \"0\", \"0\"]\n  \
                         - [vdz, /data]\nswap:\n  filename: /swapfile\n  size: 1M\n";

#[test]
fn fstab_gets_the_entries_once_per_instance() {
    let guest = Guest::new();
    fs::write(guest.path("/etc/fstab"), "UUID=r / ext4 defaults 0 1\n").unwrap();
    guest.user_data(USER_DATA);
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let fstab = guest.read("/etc/fstab");
    assert_eq!(
        fstab,
        "UUID=r / ext4 defaults 0 1\n\
         nas:/export\t/srv/nfs\tnfs\tro,soft,comment=cloudconfig\t0\t0\n\
         vdz\t/data\tauto\tdefaults,nofail,comment=cloudconfig\t0\t2\n\
         /swapfile\tnone\tswap\tsw,comment=cloudconfig\t0\t0\n"
    );
    let (outcome, message) = guest.step("mounts");
    assert_eq!(outcome, "ok", "{message}");
    assert!(
        message.starts_with("/etc/fstab: 3 lines added, 0 of an earlier instance dropped"),
        "{message}"
    );
    assert!(guest.path("/srv/nfs").is_dir() && guest.path("/data").is_dir());
    assert_eq!(
        fs::metadata(guest.path("/swapfile")).unwrap().len(),
        1 << 20
    );

    // Once per instance: the next boot leaves fstab alone.
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.step("mounts").0, "skipped");
    assert_eq!(guest.read("/etc/fstab"), fstab);
}

#[test]
fn a_malformed_entry_list_is_the_steps_error_and_changes_nothing() {
    let guest = Guest::new();
    fs::write(guest.path("/etc/fstab"), "UUID=r / ext4 defaults 0 1\n").unwrap();
    guest.user_data("#cloud-config\nmounts: /dev/vdb\nhostname: kept\n");
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    let (outcome, message) = guest.step("mounts");
    assert_eq!(outcome, "error");
    assert!(
        message.starts_with("mounts must be a list of entries"),
        "{message}"
    );
    assert_eq!(guest.read("/etc/fstab"), "UUID=r / ext4 defaults 0 1\n");
    assert_eq!(guest.read("/etc/hostname"), "kept\n");
}
