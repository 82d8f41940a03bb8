use serde_json::{Value, json};

use super::*;

fn asked(value: Value) -> (Option<Request>, Vec<String>) {
    let mut warnings = Vec::new();
    let request = request(&CloudConfig::from_json(value), &mut warnings).unwrap();
    (request, warnings)
}

#[test]
fn remotes_are_rendered_as_cloud_init_renders_them() {
    // Each expected line is what cloud-init 22.4's `parse_remotes_line` gives.
    for (line, name, expected) in [
        ("192.168.1.1", Some("maas"), "*.* @192.168.1.1 # maas"),
        (
            "@@[fd00::1]:514",
            Some("tcp6"),
            "*.* @@[fd00::1]:514 # tcp6",
        ),
        (
            "kern.* @logs.example.org:10514 # kernel",
            Some("filtered"),
            "kern.* @logs.example.org:10514 # filtered",
        ),
        ("x # c", None, "*.* @x # c"),
        ("h:0514", None, "*.* @h:514"),
        ("@@@h", None, "*.* @@@h"),
        ("[::1]:5", None, "*.* @[::1]:5"),
    ] {
        assert_eq!(remote_line(line, name).as_deref(), Ok(expected), "{line}");
    }
    for bad in [
        "a b c",
        "@@[fd00::1",
        "host:port",
        "",
        "fd00::2",
        "@@",
        "h:",
        "a # b # c",
    ] {
        assert!(remote_line(bad, None).is_err(), "{bad:?}");
    }
}

#[test]
fn configs_and_remotes_in_order_with_their_files() {
    let (request, warnings) = asked(json!({"rsyslog": {
        "configs": [
            "*.* @@192.0.2.1",
            {"content": "*.*   @@192.0.2.1:10514", "filename": "01-example.conf"},
            {"content": "*.*   @@syslogd.example.com\n"},
            {"filename": "no-content.conf"},
            {"content": "x", "filename": "  "},
        ],
        "remotes": {"maas": "192.168.1.1", "juju": "10.0.4.1", "bad": "fd00::2", "none": ""},
    }}));
    let request = request.unwrap();
    assert_eq!(
        warnings,
        [
            "rsyslog: configs entry 4 has no content",
            "rsyslog: configs entry 5 has an empty filename",
            "rsyslog: remote bad: fd00::2: invalid host specification \"fd00::2\"",
        ]
    );
    let default = Path::new("/etc/rsyslog.d/20-cloud-config.conf");
    let entries: Vec<(&Path, &str)> = request
        .entries
        .iter()
        .map(|(p, c)| (p.as_path(), c.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            (default, "*.* @@192.0.2.1"),
            (
                Path::new("/etc/rsyslog.d/01-example.conf"),
                "*.*   @@192.0.2.1:10514"
            ),
            (default, "*.*   @@syslogd.example.com\n"),
            // In name order (cloud-init: the YAML's order).
            (
                default,
                "# begin remotes\n*.* @10.0.4.1 # juju\n*.* @192.168.1.1 # maas\n# end remotes\n"
            ),
        ]
    );
    assert_eq!(request.reload, Reload::Auto);
}

#[test]
fn the_old_list_form_and_the_settings() {
    let (request, _) = asked(json!({
        "rsyslog": ["*.* @@10.0.0.1"],
        "rsyslog_filename": "50-old.conf",
        "rsyslog_dir": "/etc/old.d",
    }));
    assert_eq!(
        request.unwrap().entries,
        [(
            PathBuf::from("/etc/old.d/50-old.conf"),
            "*.* @@10.0.0.1".to_owned()
        )]
    );
    // The top-level names belong to the list form only.
    let (request, _) = asked(json!({
        "rsyslog": {"configs": ["a"], "config_dir": "/opt/rsyslog.d",
                    "config_filename": "99-late.conf",
                    "service_reload_command": ["your", "restart", "command"]},
        "rsyslog_filename": "ignored.conf",
    }));
    let request = request.unwrap();
    assert_eq!(
        request.entries[0].0,
        Path::new("/opt/rsyslog.d/99-late.conf")
    );
    assert_eq!(
        reload_command(&request.reload),
        ["your", "restart", "command"]
    );
    let (request, _) = asked(json!({"rsyslog": {"configs": ["a"],
                                                "service_reload_command": "pkill -HUP rsyslogd"}}));
    assert_eq!(
        reload_command(&request.unwrap().reload),
        ["/bin/sh", "-c", "pkill -HUP rsyslogd"]
    );
    assert_eq!(
        reload_command(&Reload::Auto),
        ["systemctl", "reload-or-try-restart", "rsyslog"]
    );
}

#[test]
fn nothing_to_write_and_wrong_types() {
    assert_eq!(asked(json!({})).0, None);
    assert_eq!(asked(json!({"rsyslog": {}})).0, None);
    assert_eq!(asked(json!({"rsyslog": {"remotes": {}}})).0, None);
    let error =
        |value: Value| request(&CloudConfig::from_json(value), &mut Vec::new()).unwrap_err();
    assert_eq!(
        error(json!({"rsyslog": "x"})),
        "rsyslog: neither a map nor a list"
    );
    assert!(error(json!({"rsyslog": {"configs": "x"}})).contains("`configs`"));
    assert!(error(json!({"rsyslog": {"config_dir": 1}})).contains("`config_dir`"));
    assert!(error(json!({"rsyslog": {"remotes": ["x"]}})).contains("`remotes`"));
    assert!(error(json!({"rsyslog": {"service_reload_command": 3}})).contains("service_reload"));
    let many: Vec<String> = (0..=MAX_ENTRIES).map(|n| format!("*.* @h{n}")).collect();
    assert!(
        error(json!({"rsyslog": {"configs": many}})).contains(&format!("more than {MAX_ENTRIES}"))
    );
}

#[test]
fn a_file_named_again_is_appended_to_and_each_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let conf = dir.path().join("etc/rsyslog.d/20-cloud-config.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "from the image\n").unwrap();
    let (request, _) = asked(json!({"rsyslog": {"configs": [
        "first", {"content": "other", "filename": "30-other.conf"}, "second\n",
    ]}}));
    let files = write(&root, &request.unwrap()).unwrap();
    assert_eq!(
        files,
        [
            PathBuf::from("/etc/rsyslog.d/20-cloud-config.conf"),
            PathBuf::from("/etc/rsyslog.d/30-other.conf")
        ]
    );
    // Replaced (the image's line gone), then appended to within the run.
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "first\nsecond\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/rsyslog.d/30-other.conf")).unwrap(),
        "other\n"
    );
}
