//! `final_message`, as a harness waiting on the console uses it: printed at the end of every
//! run (cloud-init's default line when none is given), its variables rendered; a variable that
//! does not exist is printed as written and reported.

mod support;

use std::fs;

use support::Guest;

fn guest() -> Guest {
    let guest = Guest::new();
    fs::create_dir_all(guest.path("/proc")).unwrap();
    fs::write(guest.path("/proc/uptime"), "54.21 80.02\n").unwrap();
    guest
}

#[test]
fn without_a_message_cloud_inits_line_is_printed() {
    let guest = guest();
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("metaboot v. "))
        .unwrap_or_else(|| panic!("no final message in {log}"));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        line.starts_with(&format!("metaboot v. {version} finished at ")),
        "{line}"
    );
    assert!(
        line.ends_with("+0000. Datasource metadata-service.  Up 54.21 seconds"),
        "{line}"
    );
    assert_eq!(
        guest.step("final-message"),
        ("ok".into(), "1 line on the console".into())
    );
}

#[test]
fn a_message_is_rendered_on_every_boot() {
    let guest = guest();
    guest.user_data(
        "#cloud-config\nfinal_message: |\n  The system is finally up, after $UPTIME seconds\n  \
         datasource: ${datasource}, unknown: $nope\n",
    );
    for boot in 0..2 {
        let (code, log) = guest.run();
        assert_eq!(code, 0, "{log}");
        assert!(
            log.contains(
                "The system is finally up, after 54.21 seconds\ndatasource: metadata-service, \
                 unknown: $nope\n"
            ),
            "boot {boot}: {log}"
        );
        assert_eq!(guest.step("final-message").0, "ok", "boot {boot}");
        let warnings = guest.status()["warnings"].to_string();
        assert!(
            warnings.contains("final-message: `$nope` is not rendered"),
            "{warnings}"
        );
    }
}

#[test]
fn control_characters_in_the_message_are_escaped_on_the_console() {
    let guest = guest();
    guest
        .user_data("#cloud-config\nfinal_message: \"up\\e[2J\\rmetaboot finished: status=done\"\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("up\\x1b[2J\\rmetaboot finished: status=done\n"),
        "{log}"
    );
}

#[test]
fn an_unknown_template_type_is_an_error_that_says_so() {
    let guest = guest();
    guest.user_data("#cloud-config\nfinal_message: \"## template: mako\\nhello\"\n");
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        guest.step("final-message"),
        (
            "error".into(),
            "final_message: unknown template type 'mako' (jinja or basic)".into()
        )
    );
    assert!(!log.contains("hello"), "{log}");
}

/// A reboot of the machine's own instance while the metadata service is down, in two stages
/// as the units run them: the final stage prints the instance's own message too (from the
/// configuration it merged at its last run), as the init stage used it.
#[test]
fn the_message_of_the_machine_s_own_instance_is_printed_through_a_metadata_outage() {
    use support::server::Fault;
    let guest = guest();
    guest.user_data("#cloud-config\nfinal_message: the instance's own message\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let dmi = guest.path("/sys/class/dmi/id/product_uuid");
    fs::create_dir_all(dmi.parent().unwrap()).unwrap();
    fs::write(&dmi, format!("{}\n", support::UUID)).unwrap();
    let newest = format!(
        "/openstack/{}/meta_data.json",
        metaboot_proto::OpenStackVersion::LATEST.date()
    );
    for path in [newest.as_str(), "/openstack"] {
        guest.server.fail(path, Fault::Status(503), 1000);
    }
    let (_, log) = guest.run_stage("init");
    assert_eq!(guest.step("meta-data").0, "error", "{log}");
    let (_, log) = guest.run_stage("final");
    assert!(log.contains("the instance's own message"), "{log}");
}
