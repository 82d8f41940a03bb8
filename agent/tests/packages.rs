//! `packages`, `package_update`, `package_upgrade`: read as cloud-init reads them, run with
//! apt-get on the running system only (the Debian guests of the end-to-end suite install a
//! package from the lab's repository: `harness/src/scenario/cloud_image/guest.rs`).

mod support;

use support::Guest;

#[test]
fn packages_under_another_root_are_named_and_not_installed() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\npackages: [hello, [tree, 2.1.0-1]]\npackage_update: true\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("packages"),
        (
            "skipped".to_owned(),
            "root is not /: apt-get installs on the running system only (asked: hello \
             tree=2.1.0-1)"
                .to_owned()
        )
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(!warnings.contains("packages"), "{warnings}");
}

#[test]
fn no_packages_is_a_skip_and_a_bad_entry_an_error_naming_it() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: kept\n");
    guest.run();
    assert_eq!(guest.step("packages").0, "skipped");

    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: kept\npackages: [hello, {name: tree}]\n");
    let (code, _) = guest.run();
    assert_ne!(code, 0);
    assert_eq!(
        guest.step("packages"),
        (
            "error".to_owned(),
            "packages[1]: a package is a name or a [name, version] list".to_owned()
        )
    );
    // The other steps still applied.
    assert_eq!(guest.read("/etc/hostname"), "kept\n");
}
