//! `rsyslog` under another root: the configuration files written as cloud-init 22.4 writes them,
//! the reload left to the running system.

mod support;

use support::Guest;

#[test]
fn configs_and_remotes_are_written_and_the_reload_left_to_the_running_system() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config
rsyslog:
  configs:
    - \"*.* @@192.0.2.1\"
    - content: \"*.*   @@192.0.2.1:10514\"
      filename: 01-example.conf
  remotes:
    central: \"@@[fd00::514]:6514\"
",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("rsyslog");
    assert_eq!(outcome, "ok", "{message}");
    assert_eq!(
        message,
        "wrote /etc/rsyslog.d/20-cloud-config.conf, /etc/rsyslog.d/01-example.conf; root is \
         not /: rsyslog not reloaded"
    );
    assert_eq!(
        guest.read("/etc/rsyslog.d/20-cloud-config.conf"),
        "*.* @@192.0.2.1\n# begin remotes\n*.* @@[fd00::514]:6514 # central\n# end remotes\n"
    );
    assert_eq!(
        guest.read("/etc/rsyslog.d/01-example.conf"),
        "*.*   @@192.0.2.1:10514\n"
    );
    assert_eq!(guest.mode_owner("/etc/rsyslog.d/01-example.conf").0, 0o644);
}

#[test]
fn a_bad_remote_is_a_warning_and_a_bad_rsyslog_an_error() {
    let guest = Guest::new();
    guest
        .user_data("#cloud-config\nrsyslog:\n  remotes:\n    good: 10.0.0.1\n    bad: \"a b c\"\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.step("rsyslog").0, "ok");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("rsyslog: remote bad: a b c"),
        "{warnings}"
    );
    assert_eq!(
        guest.read("/etc/rsyslog.d/20-cloud-config.conf"),
        "# begin remotes\n*.* @10.0.0.1 # good\n# end remotes\n"
    );

    let guest = Guest::new();
    guest.user_data("#cloud-config\nrsyslog: {configs: nope}\n");
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    assert_eq!(
        guest.step("rsyslog"),
        (
            "error".into(),
            "rsyslog: `configs` is \"nope\", not a list".into()
        )
    );
    assert!(!guest.path("/etc/rsyslog.d").exists());
}
