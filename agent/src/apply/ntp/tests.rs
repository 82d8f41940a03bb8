use serde_json::{Value, json};

use super::*;

fn asked(value: Value) -> Request {
    request(&CloudConfig::from_json(value)).unwrap().unwrap()
}

/// A root with os-release and the given programs (executables) in it.
fn image(programs: &[&str]) -> (tempfile::TempDir, Root) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    for program in programs {
        let path = dir.path().join(program.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

#[test]
fn absent_or_disabled_asks_nothing() {
    assert_eq!(request(&CloudConfig::from_json(json!({}))).unwrap(), None);
    assert_eq!(
        request(&CloudConfig::from_json(
            json!({"ntp": {"enabled": false, "servers": ["a"]}})
        ))
        .unwrap(),
        None
    );
    assert_eq!(
        request(&CloudConfig::from_json(json!({"ntp": {"enabled": "no"}}))).unwrap(),
        None
    );
}

#[test]
fn servers_pools_client_and_overrides() {
    let request = asked(json!({"ntp": {
        "ntp_client": "chrony",
        "servers": ["198.18.0.1", "ntp.example.org"],
        "pools": "pool.example.org",
        "config": {"confpath": "/etc/chrony/other.conf", "packages": ["chrony", "extra"],
                   "service_name": "chronyd", "template": null},
    }}));
    assert_eq!(
        request,
        Request {
            client: Some("chrony".into()),
            servers: vec!["198.18.0.1".into(), "ntp.example.org".into()],
            pools: vec!["pool.example.org".into()],
            confpath: Some("/etc/chrony/other.conf".into()),
            check_exe: None,
            packages: Some(vec!["chrony".into(), "extra".into()]),
            service_name: Some("chronyd".into()),
        }
    );
    assert_eq!(asked(json!({"ntp": {"ntp_client": "auto"}})).client, None);
    // `ntp:` with no value: the defaults, as cloud-init's "empty config".
    assert_eq!(asked(json!({"ntp": null})), Request::default());
}

#[test]
fn bad_values_say_which() {
    let error = |value: Value| request(&CloudConfig::from_json(value)).unwrap_err();
    assert_eq!(
        error(json!({"ntp": {"servers": ["a b"]}})),
        "ntp: `servers` holds \"a b\", not a host name or address"
    );
    assert!(error(json!({"ntp": {"pools": ["x\nserver evil"]}})).contains("`pools`"));
    assert!(error(json!({"ntp": {"servers": [1]}})).contains("holds 1, not a name"));
    assert!(
        error(json!({"ntp": {"config": {"template": "## template:jinja\n"}}}))
            .starts_with("ntp: `config.template` is not applied")
    );
    assert!(error(json!({"ntp": {"config": {"confpath": "etc/x"}}})).contains("absolute"));
    assert!(error(json!({"ntp": {"config": {"colour": "red"}}})).contains("config.colour"));
    assert_eq!(
        error(json!({"ntp": {"config": "x"}})),
        "ntp: `config` is not a map"
    );
    let many: Vec<String> = (0..=MAX_SERVERS).map(|n| format!("s{n}")).collect();
    assert!(error(json!({"ntp": {"servers": many}})).contains(&format!("more than {MAX_SERVERS}")));
    let long = "a".repeat(MAX_NAME + 1);
    assert!(error(json!({"ntp": {"servers": [long]}})).contains("not a host name"));
    // Nothing apt-get or systemctl would read as an option.
    let option = json!({"ntp": {"config": {"packages": ["-oAPT::Update::Pre-Invoke::=touch /x"]}}});
    assert!(error(option).contains("`config.packages`"));
    let option = json!({"ntp": {"config": {"service_name": "--now"}}});
    assert!(error(option).contains("not a service name"));
    let two = json!({"ntp": {"config": {"service_name": "chrony sshd"}}});
    assert!(error(two).contains("not a service name"));
    assert!(
        request(&CloudConfig::from_json(
            json!({"ntp": {"servers": ["a".repeat(MAX_NAME)]}})
        ))
        .is_ok()
    );
}

#[test]
fn auto_takes_the_first_installed_client_as_cloud_init_does() {
    let auto = Request::default();
    // Debian's cloud image: systemd-timesyncd only.
    let (_dir, root) = image(&["/lib/systemd/systemd-timesyncd"]);
    let (client, installed) = choose(&root, &auto).unwrap();
    assert_eq!(
        (client.name.as_str(), client.confpath.as_str(), installed),
        (
            "systemd-timesyncd",
            "/etc/systemd/timesyncd.conf.d/cloud-init.conf",
            true
        )
    );
    // chrony is preferred when both are there.
    let (_dir, root) = image(&["/lib/systemd/systemd-timesyncd", "/usr/sbin/chronyd"]);
    assert_eq!(choose(&root, &auto).unwrap().0.name, "chrony");
    // ntpd found through any directory of the search path.
    let (_dir, root) = image(&["/usr/local/sbin/ntpd"]);
    assert_eq!(choose(&root, &auto).unwrap(), (client_named("ntp"), true));
    // Nothing installed: chrony, to install.
    let (_dir, root) = image(&[]);
    let (client, installed) = choose(&root, &auto).unwrap();
    assert_eq!((client, installed), (client_named("chrony"), false));
    // A file that is not executable is not a program.
    let (dir, root) = image(&[]);
    std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
    std::fs::write(dir.path().join("usr/sbin/chronyd"), "").unwrap();
    assert!(!has_program(&root, "chronyd"));
}

fn client_named(name: &str) -> Client {
    let (_, check_exe, confpath, package, service_name) =
        PREFERRED.iter().find(|c| c.0 == name).copied().unwrap();
    Client {
        name: name.into(),
        check_exe: check_exe.into(),
        confpath: confpath.into(),
        packages: package.split_whitespace().map(str::to_owned).collect(),
        service_name: service_name.into(),
    }
}

#[test]
fn a_named_client_with_overrides_and_an_unknown_one() {
    let (_dir, root) = image(&["/usr/sbin/chronyd"]);
    let request = Request {
        client: Some("ntp".into()),
        confpath: Some("/etc/ntpsec/ntp.conf".into()),
        check_exe: Some("chronyd".into()),
        ..Request::default()
    };
    let (client, installed) = choose(&root, &request).unwrap();
    assert_eq!(client.name, "ntp");
    assert_eq!(client.confpath, "/etc/ntpsec/ntp.conf");
    assert!(installed, "the check_exe given is there");
    let unknown = Request {
        client: Some("openntpd".into()),
        ..Request::default()
    };
    assert!(
        choose(&root, &unknown)
            .unwrap_err()
            .contains("unknown ntp_client \"openntpd\"")
    );
}

#[test]
fn without_servers_the_distributions_pool() {
    let (servers, pools) = servers_and_pools(&Request::default(), Some("debian"));
    assert!(servers.is_empty());
    assert_eq!(
        pools,
        [
            "0.debian.pool.ntp.org",
            "1.debian.pool.ntp.org",
            "2.debian.pool.ntp.org",
            "3.debian.pool.ntp.org"
        ]
    );
    assert_eq!(pools.len(), POOL_SERVERS);
    assert_eq!(
        servers_and_pools(&Request::default(), None).1[0],
        "0.pool.ntp.org"
    );
    let given = Request {
        servers: vec!["s".into()],
        ..Request::default()
    };
    assert_eq!(
        servers_and_pools(&given, Some("debian")),
        (vec!["s".into()], vec![])
    );
    let (dir, root) = image(&[]);
    assert_eq!(distro(&root).as_deref(), Some("debian"));
    std::fs::write(dir.path().join("etc/os-release"), "ID=\"de bian\"\n").unwrap();
    assert_eq!(distro(&root), None);
}

#[test]
fn the_pool_is_named_after_cloud_inits_distribution() {
    let (dir, root) = image(&[]);
    let pools_for = |os_release: &str| {
        std::fs::write(dir.path().join("etc/os-release"), os_release).unwrap();
        servers_and_pools(&Request::default(), distro(&root).as_deref()).1
    };
    // Kali has no zone of its own: cloud-init runs it as Debian.
    assert_eq!(
        pools_for("ID=kali\nID_LIKE=debian\n")[0],
        "0.debian.pool.ntp.org"
    );
    // Linux Mint: the first ID_LIKE word with a zone.
    assert_eq!(
        pools_for("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n")[3],
        "3.ubuntu.pool.ntp.org"
    );
    // x.sles.pool.ntp.org does not exist: openSUSE's, as cloud-init maps it.
    assert_eq!(
        pools_for("ID=\"sles\"\nID_LIKE=\"suse\"\n")[0],
        "0.opensuse.pool.ntp.org"
    );
    assert_eq!(
        pools_for("ID=\"sle-micro\"\n")[1],
        "1.opensuse.pool.ntp.org"
    );
    // Alpine and EuroLinux have no zone: the plain pool.
    assert_eq!(pools_for("ID=alpine\n")[0], "0.pool.ntp.org");
    assert_eq!(
        pools_for("ID=eurolinux\nID_LIKE=\"rhel fedora centos\"\n")[0],
        "0.pool.ntp.org"
    );
    assert_eq!(pools_for("ID=gentoo\n")[0], "0.pool.ntp.org");
    assert_eq!(
        pools_for("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n")[0],
        "0.rocky.pool.ntp.org"
    );
    assert_eq!(pools_for("ID=openEuler\n")[0], "0.openeuler.pool.ntp.org");
    assert_eq!(POOL_DISTROS.len(), 26);
    assert_eq!(PLAIN_POOL_DISTROS.len(), 2);
    assert!(
        PLAIN_POOL_DISTROS
            .iter()
            .all(|name| pool_zone(name).is_none())
    );
    assert!(
        POOL_DISTROS
            .iter()
            .all(|name| pool_zone(name) == Some(*name))
    );
}

#[test]
fn each_client_file_names_the_servers_and_pools() {
    let servers = ["198.18.0.1".to_owned(), "ntp.example.org".to_owned()];
    let pools = ["pool.example.org".to_owned()];
    let timesyncd = render(&client_named("systemd-timesyncd"), &servers, &pools);
    assert!(
        timesyncd.ends_with("[Time]\nNTP=198.18.0.1 ntp.example.org pool.example.org\n"),
        "{timesyncd}"
    );
    let chrony = render(&client_named("chrony"), &servers, &pools);
    assert!(chrony.contains(
        "pool pool.example.org iburst\nserver 198.18.0.1 iburst\nserver ntp.example.org iburst\n"
    ));
    assert!(chrony.contains("driftfile /var/lib/chrony/chrony.drift\n"));
    assert!(chrony.contains("makestep 1 3\n"));
    let ntp = render(&client_named("ntp"), &servers, &[]);
    assert!(ntp.contains("driftfile /var/lib/ntp/ntp.drift\nserver 198.18.0.1 iburst\n"));
    assert!(!ntp.contains("pool "));
    for text in [&timesyncd, &chrony, &ntp] {
        assert!(text.starts_with("# Written by metaboot"), "{text}");
    }
}

#[test]
fn the_images_file_is_kept_beside_the_new_one() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, root) = image(&[]);
    let client = client_named("chrony");
    let conf = dir.path().join("etc/chrony/chrony.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "pool 2.debian.pool.ntp.org iburst\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let kept = write(&root, &client, "new\n").unwrap();
    assert_eq!(kept.as_deref(), Some("/etc/chrony/chrony.conf.dist"));
    let dist = dir.path().join("etc/chrony/chrony.conf.dist");
    assert_eq!(
        std::fs::read_to_string(&dist).unwrap(),
        "pool 2.debian.pool.ntp.org iburst\n"
    );
    assert_eq!(
        std::fs::metadata(&dist).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "new\n");
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // No file before: nothing kept, the directory made.
    let timesyncd = client_named("systemd-timesyncd");
    assert_eq!(write(&root, &timesyncd, "[Time]\n").unwrap(), None);
    assert!(
        dir.path()
            .join("etc/systemd/timesyncd.conf.d/cloud-init.conf")
            .is_file()
    );
}

/// Root's symlink in the file's place is written through, as cloud-init's `open(path)` writes
/// it (the link kept, the target's old content kept as the `.dist`); a user's is refused,
/// never read through nor replaced, and the error names it.
#[test]
fn roots_symlink_is_written_through_and_a_users_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join("etc/ntp")).unwrap();
    std::fs::write(dir.path().join("etc/ntp/ntp.conf"), "old\n").unwrap();
    let link = dir.path().join("etc/ntp.conf");
    symlink("ntp/ntp.conf", &link).unwrap();
    let linked = Client {
        confpath: "/etc/ntp.conf".into(),
        ..client_named("ntp")
    };
    write(&root, &linked, "new\n").unwrap();
    let read = |path: &str| std::fs::read_to_string(dir.path().join(path)).unwrap();
    assert_eq!(read("etc/ntp/ntp.conf"), "new\n");
    assert_eq!(read("etc/ntp.conf.dist"), "old\n");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    if !crate::testutil::require_root() {
        return;
    }
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(dir.path().join("etc/ntp.conf.dist")).unwrap();
    std::fs::write(dir.path().join("etc/shadow"), "secret\n").unwrap();
    symlink("/etc/shadow", &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
    let err = crate::log::chain(&write(&root, &linked, "x\n").unwrap_err());
    assert!(
        err.contains(&format!(
            "{} is a symlink owned by uid 1000",
            link.display()
        )),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(!dir.path().join("etc/ntp.conf.dist").exists());
    assert_eq!(read("etc/shadow"), "secret\n");
}
