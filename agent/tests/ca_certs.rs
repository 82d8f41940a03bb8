//! `ca_certs` in user data, as a user of a cloud with a private CA writes it: each trusted
//! certificate lands where the image's trust store takes local ones (Debian's, or the RHEL
//! family's when the image has `update-ca-trust`), `remove_defaults` deselects the
//! distribution's CAs, and an entry that is no certificate is refused on its own. (The store's
//! rebuild runs on the host root only: the QEMU Debian guests check it from outside.)

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::Guest;

/// A self-signed test CA (P-256, valid until 2126).
const CA: &str = include_str!("fixtures/ca/test-ca.pem");

/// `CA` as an item of a YAML block list, indented under `trusted:`.
fn item(pem: &str) -> String {
    let body: String = pem.lines().map(|l| format!("      {l}\n")).collect();
    format!("    - |\n{body}")
}

#[test]
fn trusted_certificates_are_written_for_the_store() {
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nca_certs:\n  trusted:\n{}{}",
        item(CA),
        item(CA)
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("ca-certs"),
        (
            "ok".into(),
            "wrote metaboot-ca-cert-1.crt, metaboot-ca-cert-2.crt to \
             /usr/local/share/ca-certificates; root is not /: update-ca-certificates not run"
                .into()
        )
    );
    for n in [1, 2] {
        let path = format!("/usr/local/share/ca-certificates/metaboot-ca-cert-{n}.crt");
        assert_eq!(guest.read(&path), CA);
        let mode = fs::metadata(guest.path(&path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

/// An image captured from an instance that trusted three CAs, booted as an instance that
/// trusts one: the other two are trusted no longer; a certificate the image's maker put there
/// under another name stays.
#[test]
fn certificates_an_earlier_instance_trusted_are_removed() {
    let guest = Guest::new();
    let dir = "/usr/local/share/ca-certificates";
    fs::create_dir_all(guest.path(dir)).unwrap();
    for name in [
        "metaboot-ca-cert-1.crt",
        "metaboot-ca-cert-2.crt",
        "metaboot-ca-cert-3.crt",
        "corp.crt",
        "metaboot-ca-cert-old.crt",
    ] {
        fs::write(guest.path(&format!("{dir}/{name}")), "an older CA\n").unwrap();
    }
    guest.user_data(format!(
        "#cloud-config\nca_certs:\n  trusted:\n{}",
        item(CA)
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("ca-certs"),
        (
            "ok".into(),
            "wrote metaboot-ca-cert-1.crt to /usr/local/share/ca-certificates; removed \
             metaboot-ca-cert-2.crt, metaboot-ca-cert-3.crt (no longer trusted) from \
             /usr/local/share/ca-certificates; root is not /: update-ca-certificates not run"
                .into()
        )
    );
    let mut left: Vec<String> = fs::read_dir(guest.path(dir))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "corp.crt",
            "metaboot-ca-cert-1.crt",
            "metaboot-ca-cert-old.crt"
        ]
    );
    assert_eq!(guest.read(&format!("{dir}/metaboot-ca-cert-1.crt")), CA);
}

#[test]
fn remove_defaults_deselects_the_distributions_cas() {
    let guest = Guest::new();
    fs::write(
        guest.path("/etc/ca-certificates.conf"),
        "# This file lists certificates that you wish to use\nmozilla/A_Root.crt\n!mozilla/Old.crt\nmozilla/B_Root.crt\n",
    )
    .unwrap();
    // cloud-init's older spellings.
    guest.user_data("#cloud-config\nca-certs:\n  remove-defaults: true\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("ca-certs").1,
        "deselected 2 default CAs; root is not /: update-ca-certificates not run"
    );
    assert_eq!(
        guest.read("/etc/ca-certificates.conf"),
        "# This file lists certificates that you wish to use\n\
         # Modified by metaboot to deselect certs due to user-data (remove_defaults)\n\
         !mozilla/A_Root.crt\n!mozilla/Old.crt\n!mozilla/B_Root.crt\n"
    );
}

#[test]
fn an_entry_that_is_no_certificate_is_refused_and_the_others_written() {
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nca_certs:\n  trusted:\n    - not a certificate\n{}",
        item(CA)
    ));
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    assert_eq!(
        guest.step("ca-certs"),
        (
            "error".into(),
            "trusted entry 1 has no -----BEGIN CERTIFICATE----- block: not written; wrote \
             metaboot-ca-cert-2.crt to /usr/local/share/ca-certificates; root is not /: \
             update-ca-certificates not run"
                .into()
        )
    );
    assert!(
        !guest
            .path("/usr/local/share/ca-certificates/metaboot-ca-cert-1.crt")
            .exists()
    );
    assert_eq!(
        guest.read("/usr/local/share/ca-certificates/metaboot-ca-cert-2.crt"),
        CA
    );
}

#[test]
fn a_rhel_family_image_gets_its_anchors() {
    let guest = Guest::new();
    fs::create_dir_all(guest.path("/usr/bin")).unwrap();
    fs::write(guest.path("/usr/bin/update-ca-trust"), "#!/bin/sh\n").unwrap();
    guest.user_data(format!(
        "#cloud-config\nca_certs:\n  remove_defaults: true\n  trusted:\n{}",
        item(CA)
    ));
    let (code, _) = guest.run();
    assert_eq!(
        code, 1,
        "remove_defaults has no selection file to edit there"
    );
    let (outcome, message) = guest.step("ca-certs");
    assert_eq!(outcome, "error");
    assert!(
        message.starts_with(
            "remove_defaults: this image's store (update-ca-trust) has no selection file"
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "wrote metaboot-ca-cert-1.crt to /usr/share/pki/ca-trust-source/anchors; root is \
             not /: update-ca-trust not run"
        ),
        "{message}"
    );
    assert_eq!(
        guest.read("/usr/share/pki/ca-trust-source/anchors/metaboot-ca-cert-1.crt"),
        CA
    );
}

#[test]
fn without_ca_certs_nothing_is_written() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: plain\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        guest.step("ca-certs"),
        ("skipped".into(), "no ca_certs".into())
    );
    assert!(!guest.path("/usr/local/share/ca-certificates").exists());
}

#[test]
fn the_certificates_come_with_the_final_stage_before_the_scripts() {
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nca_certs:\n  trusted:\n{}runcmd:\n  - \"true\"\n",
        item(CA)
    ));
    let cert = "/usr/local/share/ca-certificates/metaboot-ca-cert-1.crt";
    let (code, log) = guest.run_stage("init");
    assert_eq!(code, 0, "{log}");
    assert!(!guest.path(cert).exists(), "not before the logins");
    let (code, log) = guest.run_stage("final");
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.read(cert), CA);
    let status = guest.status();
    let names: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(at("ca-certs") < at("scripts-user"), "{names:?}");
}
