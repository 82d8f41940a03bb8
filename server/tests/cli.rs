//! The registry CLI as a user runs it: `metaboot-server --db FILE network|router|port|instance …`.

mod cli_support;

use assert_cmd::Command;
use serde_json::Value;

use cli_support::{Registry, USER_DATA_LIMIT, net, ssh_key, vm};

#[test]
fn network_router_instance_lifecycle() {
    let reg = Registry::new();
    let net = reg.json(&[
        "network",
        "create",
        "net1",
        "--cidr",
        "198.18.0.0/24",
        "--json",
    ]);
    assert_eq!(net["cidr"], "198.18.0.0/24");
    assert_eq!(net["gateway"], "198.18.0.1");
    assert_eq!(net["dhcp_ip"], "198.18.0.2");
    assert_eq!(net["isolated"], false);
    assert_eq!(net["project"], "admin");
    let net_id = net["id"].as_str().unwrap().to_owned();

    let iso = reg.json(&[
        "network",
        "create",
        "iso",
        "--cidr",
        "198.18.1.0/24",
        "--gateway",
        "198.18.1.254",
        "--dhcp-ip",
        "198.18.1.10",
        "--project",
        "p2",
        "--isolated",
        "--json",
    ]);
    assert_eq!(iso["isolated"], true);
    assert_eq!(iso["gateway"], "198.18.1.254");
    assert_eq!(iso["dhcp_ip"], "198.18.1.10");
    reg.ok(&["network", "create", "net3", "--cidr", "198.18.2.0/24"]);

    let router = reg.json(&["router", "create", "r1", "--network", "net1", "--json"]);
    assert_eq!(router["networks"], serde_json::json!([net_id]));
    let attached = reg.ok(&["router", "add-network", "r1", "net3"]);
    assert!(attached.contains("net3"), "{attached}");
    let router = reg.json(&["router", "show", "r1", "--json"]);
    assert_eq!(router["networks"].as_array().unwrap().len(), 2);

    let created = reg.json(&["instance", "create", "web", "--network", "net1", "--json"]);
    let uuid = created["uuid"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "web");
    assert_eq!(created["ip"], "198.18.0.3");
    assert!(created["mac"].as_str().unwrap().starts_with("fa:16:3e:"));
    assert_eq!(created["network_id"], net_id.as_str());
    let port_id = created["port_id"].as_str().unwrap().to_owned();

    let second = reg.json(&["instance", "create", "db", "--network", &net_id, "--json"]);
    assert_eq!(second["ip"], "198.18.0.4");

    let shown = reg.json(&["instance", "show", "web", "--json"]);
    assert_eq!(shown["uuid"], uuid.as_str());
    assert_eq!(shown["hostname"], "web");
    assert_eq!(shown["ports"][0]["id"], port_id.as_str());
    assert_eq!(shown["ports"][0]["network"], "net1");
    assert_eq!(reg.json(&["instance", "show", &uuid, "--json"]), shown);

    let instances = reg.json(&["instance", "list", "--json"]);
    assert_eq!(instances.as_array().unwrap().len(), 2);
    let ports = reg.json(&["port", "list", "--json"]);
    assert_eq!(ports.as_array().unwrap().len(), 2);
    let port = reg.json(&["port", "show", &port_id, "--json"]);
    assert_eq!(port["ip"], "198.18.0.3");
    let networks = reg.json(&["network", "list", "--json"]);
    assert_eq!(networks.as_array().unwrap().len(), 3);

    // Tables for people: a header and one row per record.
    let table = reg.ok(&["instance", "list"]);
    assert!(table.starts_with("UUID"), "{table}");
    assert!(table.contains("net1=198.18.0.3"), "{table}");
    assert_eq!(reg.ok(&["network", "list"]).lines().count(), 4);
    assert!(reg.ok(&["network", "show", "net1"]).contains("198.18.0.1"));

    // A second port on another network, then delete it.
    let extra = reg.json(&[
        "port",
        "create",
        "--network",
        "net3",
        "--instance",
        "web",
        "--ip",
        "198.18.2.77",
        "--json",
    ]);
    assert_eq!(extra["ip"], "198.18.2.77");
    reg.ok(&["port", "delete", extra["id"].as_str().unwrap()]);

    reg.ok(&["instance", "delete", "web"]);
    reg.ok(&["instance", "delete", second["uuid"].as_str().unwrap()]);
    assert_eq!(
        reg.json(&["instance", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(reg.json(&["port", "list", "--json"]), serde_json::json!([]));
    reg.ok(&["router", "remove-network", "r1", "net1"]);
    reg.ok(&["router", "remove-network", "r1", "net3"]);
    reg.ok(&["router", "delete", "r1"]);
    reg.ok(&["network", "delete", "net1"]);
    reg.ok(&["network", "delete", iso["id"].as_str().unwrap()]);
    assert_eq!(
        reg.json(&["router", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        reg.json(&["network", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn instance_create_takes_keys_user_data_meta_and_passwords() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let (public, _) = ssh_key(&reg, "alice");
    let user_data = reg.write("user-data", b"#cloud-config\nhostname: x\n");
    let uuid = "6f1e1f5b-5b0a-4e6c-9e0b-7b4b1d0c2a11";
    let created = reg.json(&[
        "instance",
        "create",
        "My Web_Server",
        "--network",
        "net1",
        "--ip",
        "198.18.0.50",
        "--mac",
        "FA:16:3E:00:00:01",
        "--project",
        "p1",
        "--availability-zone",
        "az1",
        "--launch-index",
        "3",
        "--key-file",
        &public,
        "--user-data",
        &user_data,
        "--meta",
        "role=web",
        "--meta",
        "tier=a=b",
        "--admin-pass",
        "s3cret",
        "--uuid",
        uuid,
        "--json",
    ]);
    assert_eq!(created["uuid"], uuid);
    assert_eq!(created["ip"], "198.18.0.50");
    assert_eq!(created["mac"], "fa:16:3e:00:00:01");

    let shown = reg.json(&["instance", "show", uuid, "--json"]);
    // Derived like nova's sanitize_hostname.
    assert_eq!(shown["hostname"], "my-web-server");
    assert_eq!(shown["project"], "p1");
    assert_eq!(shown["availability_zone"], "az1");
    assert_eq!(shown["launch_index"], 3);
    assert_eq!(shown["key_pairs"][0]["name"], "alice");
    assert_eq!(shown["key_pairs"][0]["type"], "ssh");
    let key_text = std::fs::read_to_string(&public).unwrap();
    assert_eq!(shown["key_pairs"][0]["data"], key_text.trim());
    assert_eq!(shown["meta"]["role"], "web");
    assert_eq!(shown["meta"]["tier"], "a=b");
    assert_eq!(shown["user_data_bytes"], 26);
    assert_eq!(shown["admin_pass_set"], true);
    assert_eq!(shown["password_set"], false);
    // Secrets never appear in the output.
    let everything =
        reg.ok(&["instance", "show", uuid, "--json"]) + &reg.ok(&["instance", "show", uuid]);
    assert!(!everything.contains("s3cret"), "{everything}");

    // An explicit hostname wins; the largest user data is accepted.
    let largest = reg.write("largest", &vec![b'x'; USER_DATA_LIMIT]);
    let created = reg.json(&[
        "instance",
        "create",
        "big",
        "--network",
        "net1",
        "--hostname",
        "big-1",
        "--user-data",
        &largest,
        "--json",
    ]);
    let shown = reg.shown(&created);
    assert_eq!(shown["hostname"], "big-1");
    assert_eq!(shown["user_data_bytes"], USER_DATA_LIMIT);
}

#[test]
fn bad_input_is_refused_with_exit_2_and_changes_nothing() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    reg.ok(&[
        "network",
        "create",
        "iso",
        "--cidr",
        "198.18.1.0/24",
        "--isolated",
    ]);
    reg.ok(&["network", "create", "twin", "--cidr", "198.18.2.0/24"]);
    reg.ok(&["network", "create", "twin", "--cidr", "198.18.3.0/24"]);
    reg.ok(&["router", "create", "r1", "--network", "net1"]);
    let taken = reg.json(&["instance", "create", "web", "--network", "net1", "--json"]);
    let taken_port = taken["port_id"].as_str().unwrap().to_owned();

    let (public, private) = ssh_key(&reg, "bob");
    let empty = reg.write("empty.pub", b"");
    let garbage = reg.write("garbage.pub", b"not a key at all\n");
    let too_big = reg.write("too-big", &vec![b'x'; 5 * USER_DATA_LIMIT]);
    let missing = reg.path("missing.pub").display().to_string();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["network", "create", "x", "--cidr", "198.18.9.0"],
            "ADDRESS/PREFIX",
        ),
        (
            vec!["network", "create", "x", "--cidr", "nonsense"],
            "bad CIDR",
        ),
        (
            vec!["network", "create", "x", "--cidr", "198.18.9.5/24"],
            "did you mean 198.18.9.0/24",
        ),
        (net(&["--gateway", "198.18.8.1"]), "outside"),
        (net(&["--dhcp-ip", "nope"]), "--dhcp-ip"),
        (
            vec!["network", "create", "", "--cidr", "198.18.9.0/24"],
            "name is empty",
        ),
        (
            vm(&["--ip", "198.18.1.5"]),
            "IP 198.18.1.5 is outside network net1 (198.18.0.0/24)",
        ),
        (vm(&["--ip", "198.18.0.3"]), "already used"),
        (vm(&["--ip", "198.18.0.1"]), "gateway"),
        (vm(&["--ip", "not-an-ip"]), "bad --ip"),
        (vm(&["--mac", "01:00:5e:00:00:01"]), "multicast"),
        (vm(&["--mac", "zz"]), "bad MAC"),
        (vm(&["--meta", "novalue"]), "KEY=VALUE"),
        (vm(&["--meta", "a=1", "--meta", "a=2"]), "twice"),
        (
            vm(&["--meta", "team/owner=x"]),
            "has a character nova does not allow in one",
        ),
        (
            vm(&["--meta", "\u{1b}]0;pwn\u{7}=1"]),
            "has a character nova does not allow in one",
        ),
        (vm(&["--hostname", "bad_host"]), "hostname"),
        (vm(&["--uuid", "not-a-uuid"]), "uuid"),
        (
            vm(&["--uuid", taken["uuid"].as_str().unwrap()]),
            "already exists",
        ),
        (
            vec!["instance", "create", "vm", "--network", "nosuch"],
            "network \"nosuch\" not found",
        ),
        (
            vec!["instance", "create", "vm", "--network", "twin"],
            "ambiguous",
        ),
        (vec!["network", "show", "twin"], "ambiguous"),
        (vec!["network", "delete", "net1"], &taken_port),
        (vec!["router", "add-network", "r1", "iso"], "isolated"),
        (
            vec!["router", "add-network", "r1", "net1"],
            "already attached",
        ),
        (vec!["instance", "show", "nosuch"], "not found"),
        (vec!["instance", "delete", "nosuch"], "not found"),
        (vec!["port", "show", "nosuch"], "not found"),
    ];
    for (args, expected) in &cases {
        let message = reg.refused(args);
        assert!(message.contains(expected), "{args:?}: {message}");
    }

    let files: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--user-data", &too_big],
            "is 245745 bytes: the limit is 49149 bytes, whose base64 text is the 65535 \
             characters nova's API takes",
        ),
        (vec!["--user-data", &missing], "cannot read user data file"),
        (vec!["--key-file", &missing], "cannot read key file"),
        (vec!["--key-file", &private], "private key"),
        (vec!["--key-file", &empty], "empty"),
        (vec!["--key-file", &garbage], "is not an OpenSSH public key"),
        (vec!["--key-file", &public, "--key-file", &public], "twice"),
    ];
    for (extra, expected) in &files {
        let args = vm(extra);
        let message = reg.refused(&args);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    // The refused user data left no instance behind.
    assert!(!reg.ok(&["instance", "list"]).contains("vm"));
}

#[test]
fn db_from_env_and_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/registry.sqlite");
    Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
        .env("METABOOT_DB", &nested)
        .args(["network", "create", "net1", "--cidr", "198.18.0.0/24"])
        .assert()
        .success();
    assert!(nested.exists());
    let listed = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
        .env("METABOOT_DB", format!("sqlite:{}", nested.display()))
        .args(["network", "list", "--json"])
        .output()
        .unwrap();
    let networks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(networks[0]["name"], "net1");

    // A registry that cannot be created is a failure of the system, not of the input: exit 1.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
        .env_remove("METABOOT_DB")
        .arg("--db")
        .arg(file.join("registry.sqlite"))
        .args(["network", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("cannot create the registry directory"),
        "{stderr}"
    );
}

/// A `--db` path that looks like a SQLite URI (`file:NAME`, `?mode=memory`) is a file of that
/// name in the current directory: the registry written there is the one read back, and no
/// other file (`NAME`) or in-memory registry takes the writes.
#[test]
fn a_db_path_that_looks_like_a_sqlite_uri_is_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let run = |db: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .current_dir(dir.path())
            .env_remove("METABOOT_DB")
            .args(["--db", db])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{db} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    for (db, name) in [
        ("file:reg.sqlite", "file:reg.sqlite"),
        ("file:mem.sqlite?mode=memory", "file:mem.sqlite?mode=memory"),
        ("sqlite:file:other.sqlite", "file:other.sqlite"),
    ] {
        run(
            db,
            &["network", "create", "net1", "--cidr", "198.18.0.0/24"],
        );
        let listed: Value =
            serde_json::from_slice(&run(&format!("./{name}"), &["network", "list", "--json"]))
                .unwrap();
        assert_eq!(listed[0]["name"], "net1", "{db}");
    }
    for uri_target in ["reg.sqlite", "mem.sqlite", "other.sqlite"] {
        assert!(!dir.path().join(uri_target).exists(), "{uri_target}");
    }
}

/// A PostgreSQL URL that requires TLS, which the server does not support yet, is refused
/// before any connection (exit 2: the unit does not restart it), saying how to connect.
#[test]
fn a_postgres_url_that_requires_tls_is_refused_saying_how_to_connect() {
    for mode in ["require", "verify-ca", "verify-full"] {
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .env_remove("METABOOT_DB")
            .arg("--db")
            .arg(format!("postgres://u@127.0.0.1:1/db?sslmode={mode}"))
            .args(["network", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{mode}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("not support yet"),
            "{stderr}"
        );
    }
}

/// Display names follow nova's rule for a server name: up to 255 characters (not bytes), no
/// whitespace at either end.
#[test]
fn display_names_count_characters_and_refuse_whitespace_at_either_end() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    // 255 characters of two bytes each: 510 bytes, a name nova takes.
    let long = "\u{e9}".repeat(255);
    let created = reg.json(&["instance", "create", &long, "--network", "net1", "--json"]);
    assert_eq!(created["name"], long.as_str());
    let too_long = "\u{e9}".repeat(256);
    let refused = reg.refused(&["instance", "create", &too_long, "--network", "net1"]);
    assert!(refused.contains("256 characters long"), "{refused}");
    let cases: [&[&str]; 4] = [
        &["instance", "create", " web", "--network", "net1"],
        &["instance", "create", "web\u{a0}", "--network", "net1"],
        &["network", "create", "net2 ", "--cidr", "198.18.1.0/24"],
        &["router", "create", " r1", "--network", "net1"],
    ];
    for args in cases {
        let refused = reg.refused(args);
        assert!(
            refused.contains("starts or ends with whitespace") && refused.contains("remove it"),
            "{args:?}: {refused}"
        );
    }
}

/// A name with a character nova's API does not call printable (an invisible one, a line
/// separator, an emoji) is refused with the character named.
#[test]
fn display_names_with_what_nova_refuses_are_refused() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let cases: [(&[&str], &str); 3] = [
        (
            &["instance", "create", "web\u{202e}gpj", "--network", "net1"],
            "U+202E",
        ),
        (
            &["network", "create", "a\u{2028}b", "--cidr", "198.18.1.0/24"],
            "U+2028",
        ),
        (
            &["router", "create", "r\u{1f600}", "--network", "net1"],
            "U+1F600",
        ),
    ];
    for (args, code_point) in cases {
        let refused = reg.refused(args);
        assert!(
            refused.contains(code_point) && refused.contains("use printable characters only"),
            "{args:?}: {refused}"
        );
    }
}

/// User data from a pipe (`--user-data /dev/stdin`, `<(…)`) has no size until it is read:
/// too much of it is refused as "more than" the limit, never as the pipe's size of 0.
#[test]
fn too_much_user_data_from_a_pipe_is_refused_as_more_than_the_limit() {
    use std::io::Write as _;
    use std::process::Stdio;
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
        .env_remove("METABOOT_DB")
        .arg("--db")
        .arg(&reg.db)
        .args(vm(&["--user-data", "/dev/stdin"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The server stops reading one byte past the limit: the rest meets a closed pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&vec![b'x'; USER_DATA_LIMIT + 5000]);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "user data file /dev/stdin is more than {USER_DATA_LIMIT} bytes: the limit is \
             {USER_DATA_LIMIT} bytes, whose base64 text is the 65535 characters"
        )),
        "{stderr}"
    );
    assert!(!reg.ok(&["instance", "list"]).contains("vm"));
}

/// `--help` names METABOOT_DB but never prints its value: it holds the PostgreSQL password.
#[test]
fn help_never_prints_the_registry_url_from_the_environment() {
    const PASSWORD: &str = "Hunter2-in-help";
    let url = format!("postgres://metaboot:{PASSWORD}@db.example/metaboot");
    let helps: [&[&str]; 5] = [
        &["--help"],
        &["-h"],
        &["instance", "create", "--help"],
        &["api", "--help"],
        &["help", "network"],
    ];
    for args in helps {
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .env("METABOOT_DB", &url)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("--db"), "{args:?}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "{args:?} printed the password: {text}"
        );
        assert!(
            !text.contains("db.example"),
            "{args:?} printed the URL: {text}"
        );
    }
}

/// `all --config FILE` whose `db` holds the PostgreSQL password stops at once when the file's
/// group or others may read it: one line with the `chmod` to run, exit 2, the password never
/// shown. A file without a password is read whatever its mode.
#[test]
fn a_config_file_with_a_password_others_may_read_stops_all_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt as _;
    const PASSWORD: &str = "Hunter2-in-config";
    let reg = Registry::new();
    let missing_secret = reg.path("missing-secret").display().to_string();
    let config = reg.write(
        "metaboot.toml",
        format!("db = \"postgres://metaboot:{PASSWORD}@db.invalid/metaboot\"\n").as_bytes(),
    );
    let run = |mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .env_remove("METABOOT_DB")
            .args(["all", "--config", &config])
            .args(["--shared-secret-file", &missing_secret])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for mode in [0o644, 0o640, 0o604] {
        let (code, stderr) = run(mode);
        assert_eq!(code, Some(2), "{mode:o}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("run `chmod 600 {config}`")),
            "{stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
    // Mode 0600: the file is taken, and the next check (the missing secret) speaks.
    let (code, stderr) = run(0o600);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("shared secret file") && !stderr.contains("chmod"),
        "{stderr}"
    );
    // No password: any mode is fine.
    std::fs::write(
        &config,
        "db = \"postgres://metaboot@db.invalid/metaboot\"\n",
    )
    .unwrap();
    let (code, stderr) = run(0o644);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("shared secret file") && !stderr.contains("chmod"),
        "{stderr}"
    );
}

/// `all --config FILE` with a file it cannot take (missing, a directory, too large, not UTF-8,
/// not TOML, an unknown key) stops at once with exit 2, so the unit does not restart it
/// (`RestartPreventExitStatus=2`), and one line naming the file and what is wrong with it; a
/// line it cannot parse is never quoted, as it may hold the PostgreSQL password.
#[test]
fn a_config_file_all_cannot_take_stops_it_with_exit_2_naming_the_file() {
    const PASSWORD: &str = "Hunter2-unterminated";
    let reg = Registry::new();
    let missing_secret = reg.path("missing-secret").display().to_string();
    let run = |config: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .env_remove("METABOOT_DB")
            .args(["all", "--config", config])
            .args(["--shared-secret-file", &missing_secret])
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let missing = reg.path("missing.toml").display().to_string();
    let directory = reg.dir.path().display().to_string();
    let too_large = reg.write("large.toml", &vec![b'#'; 64 * 1024 + 1]);
    let latin1 = reg.write("latin1.toml", b"# r\xe9seau\nthreads = 2\n");
    let not_toml = reg.write("not-toml.toml", b"threads = 2\ndb = \n");
    let typo = reg.write("typo.toml", b"[proxy]\nrouter_prot = 9697\n");
    let bad_value = reg.write("bad-value.toml", b"[proxy]\nrouter_port = \"x\"\n");
    let password = reg.write(
        "password.toml",
        format!("db = \"postgres://metaboot:{PASSWORD}@db.invalid/metaboot\n").as_bytes(),
    );
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for (config, what) in [
        (&missing, "cannot read the configuration file"),
        (&directory, "cannot read the configuration file"),
        (&too_large, "is larger than 65536 bytes"),
        (&latin1, "is not UTF-8"),
        (&not_toml, "is not valid at line 2, column 6"),
        (
            &typo,
            "is not valid at line 2, column 1: unknown field `router_prot`",
        ),
        (&bad_value, "is not valid at line 2, column 15"),
        (&password, "is not valid at line 1, column "),
    ] {
        let (code, stderr) = run(config);
        assert_eq!(code, Some(2), "{config}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{config}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(config.as_str()),
            "{config}: {stderr}"
        );
        assert!(stderr.contains(what), "{config}: {stderr}");
        assert!(!stderr.contains(PASSWORD), "{config}: {stderr}");
    }
}

/// Settings that parse but that `all` refuses (a limit of 0, an empty listen list, no shared
/// secret named anywhere, a bad DHCP domain) stop it with exit 2 like a file it cannot parse:
/// starting again changes nothing, so its unit does not restart on them.
#[test]
fn settings_all_refuses_stop_it_with_exit_2() {
    let reg = Registry::new();
    let secret = reg.write("secret", b"s3cret\n");
    let db = reg.path("registry.sqlite").display().to_string();
    let secret_line = format!("shared_secret_file = \"{secret}\"\n");
    for (settings, what) in [
        (
            format!("{secret_line}[proxy]\nmax_connections_per_guest = 0\n"),
            "max_connections_per_guest must be at least 1",
        ),
        (
            format!("{secret_line}[proxy]\nrate_limit = 0\n"),
            "rate_limit and rate_window must be at least 1",
        ),
        (
            format!("{secret_line}[proxy]\nisolated_listen = []\n"),
            "isolated_listen is an empty list",
        ),
        (
            format!("{secret_line}[proxy]\nmax_connections = 0\n"),
            "max_connections",
        ),
        (
            format!("{secret_line}[api]\ndhcp_domain = \"bad domain\"\n"),
            "api.dhcp_domain",
        ),
        ("threads = 2\n".to_owned(), "no shared secret"),
    ] {
        let config = reg.write("refused.toml", settings.as_bytes());
        let output = Command::new(env!("CARGO_BIN_EXE_metaboot-server"))
            .env_remove("METABOOT_DB")
            .args(["--db", &db, "all", "--config"])
            .arg(&config)
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{settings}: {stderr}");
        assert!(stderr.contains(what), "{settings}: {stderr}");
    }
}

/// A `--vendor-data` file `api` or `all` cannot take (missing, a directory, not JSON) stops it
/// at start as the configuration file does: exit 2, one line naming the file.
#[test]
fn a_vendor_data_file_api_or_all_cannot_take_stops_it_with_exit_2_naming_the_file() {
    let reg = Registry::new();
    let secret = reg.write("secret", b"s3cret\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let missing = reg.path("missing.json").display().to_string();
    let directory = reg.dir.path().display().to_string();
    let not_json = reg.write("vendor.json", b"{\"a\": ");
    for (vendor, what) in [
        (&missing, "cannot read the vendor data file"),
        (&directory, "cannot read the vendor data file"),
        (&not_json, "is not valid JSON"),
    ] {
        let api = ["api", "--identify-by-source-ip", "--listen", "127.0.0.1:0"];
        let all = ["all", "--shared-secret-file", &secret];
        for command in [&api[..], &all[..]] {
            let mut args = command.to_vec();
            args.extend(["--vendor-data", vendor]);
            let output = reg
                .cmd(&args)
                .timeout(std::time::Duration::from_secs(30))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(
                stderr.contains(what) && stderr.contains(vendor.as_str()),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// `network create --libvirt-network NAME` checks libvirt's DHCP range against `--cidr` in the
/// `--leases-dir` it is given, as `all` reads leases there: a range outside the subnet is
/// warned of on standard error naming the file read; the network is created all the same.
#[test]
fn a_libvirt_range_outside_the_cidr_is_warned_of_from_the_leases_dir_given() {
    let reg = Registry::new();
    let leases = reg.path("dnsmasq");
    std::fs::create_dir(&leases).unwrap();
    std::fs::write(
        leases.join("lab.conf"),
        "interface=virbr7\ndhcp-range=192.168.122.2,192.168.122.254,255.255.255.0\n",
    )
    .unwrap();
    let leases = leases.display().to_string();
    let output = reg
        .cmd(&[
            "network",
            "create",
            "copied",
            "--cidr",
            "198.18.9.0/24",
            "--libvirt-network",
            "lab",
            "--leases-dir",
            &leases,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: libvirt network lab hands out 192.168.122.2-192.168.122.254")
            && stderr.contains(&format!("({leases}/lab.conf)")),
        "{stderr}"
    );
    reg.ok(&["network", "delete", "copied"]);
    // The subnet libvirt hands out: nothing to say.
    let output = reg
        .cmd(&[
            "network",
            "create",
            "right",
            "--cidr",
            "192.168.122.0/24",
            "--libvirt-network",
            "lab",
            "--leases-dir",
            &leases,
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `network create --no-dhcp`: no DHCP port, so no DHCP address; the refusals name the
/// flags that contradict it.
#[test]
fn a_network_without_dhcp() {
    let reg = Registry::new();
    let net = reg.json(&[
        "network",
        "create",
        "static",
        "--cidr",
        "198.18.7.0/24",
        "--no-dhcp",
        "--json",
    ]);
    assert_eq!(net["dhcp_ip"], Value::Null);
    assert_eq!(net["gateway"], "198.18.7.1");
    let shown = reg.ok(&["network", "show", "static"]);
    assert!(shown.contains("none (no DHCP: static ports)"), "{shown}");
    let created = reg.json(&["instance", "create", "web", "--network", "static", "--json"]);
    assert_eq!(created["ip"], "198.18.7.2");
    for extra in [["--dhcp-ip", "198.18.8.2"], ["--isolated", "--json"]] {
        let mut args = vec![
            "network",
            "create",
            "bad",
            "--cidr",
            "198.18.8.0/24",
            "--no-dhcp",
        ];
        args.extend(extra);
        let output = reg.cmd(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--no-dhcp"), "{stderr}");
    }
    assert_eq!(
        reg.json(&["network", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// IPv6 and dual-stack networks: `--cidr` twice (the IPv4 subnet listed first whatever the
/// order), `--gateway` per family, `--ipv6-address-mode`, and a port's address on each subnet
/// (`--ip` twice); the refusals say what to give instead.
#[test]
fn ipv6_and_dual_stack_networks() {
    let reg = Registry::new();
    let v6 = reg.json(&[
        "network",
        "create",
        "six",
        "--cidr",
        "fdc6:1200:0:1::/64",
        "--ipv6-address-mode",
        "slaac",
        "--json",
    ]);
    assert_eq!(v6["cidr"], "fdc6:1200:0:1::/64");
    assert_eq!(v6["gateway"], "fdc6:1200:0:1::1");
    assert_eq!(v6["ipv6_address_mode"], "slaac");
    let created = reg.json(&[
        "instance",
        "create",
        "web",
        "--network",
        "six",
        "--mac",
        "fa:16:3e:12:34:56",
        "--json",
    ]);
    // SLAAC: the address the guest makes from the prefix and its MAC.
    assert_eq!(created["ip"], "fdc6:1200:0:1:f816:3eff:fe12:3456");

    let dual = reg.json(&[
        "network",
        "create",
        "dual",
        "--cidr",
        "fdc6:1200:0:2::/64",
        "--cidr",
        "198.18.2.0/24",
        "--gateway",
        "fdc6:1200:0:2::fe",
        "--json",
    ]);
    assert_eq!(dual["cidr"], "198.18.2.0/24");
    assert_eq!(dual["gateway"], "198.18.2.1");
    assert_eq!(dual["second_subnet"]["cidr"], "fdc6:1200:0:2::/64");
    assert_eq!(dual["second_subnet"]["gateway"], "fdc6:1200:0:2::fe");
    assert_eq!(dual["second_subnet"]["dhcp_ip"], "fdc6:1200:0:2::1");
    let shown = reg.ok(&["network", "show", "dual"]);
    assert!(
        shown.contains("198.18.2.0/24,fdc6:1200:0:2::/64"),
        "{shown}"
    );
    let created = reg.json(&[
        "instance",
        "create",
        "db",
        "--network",
        "dual",
        "--ip",
        "fdc6:1200:0:2::10",
        "--ip",
        "198.18.2.10",
        "--json",
    ]);
    assert_eq!(created["ip"], "198.18.2.10");
    assert_eq!(
        created["ips"],
        serde_json::json!(["198.18.2.10", "fdc6:1200:0:2::10"])
    );
    let listed = reg.ok(&["instance", "list"]);
    assert!(
        listed.contains("dual=198.18.2.10, dual=fdc6:1200:0:2::10"),
        "{listed}"
    );

    for (args, says) in [
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.3.0/24",
                "--cidr",
                "198.18.4.0/24",
            ],
            "at most one subnet per family",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.3.0/24",
                "--gateway",
                "fdc6::1",
            ],
            "no --cidr is",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "fdc6:1200:0:3::/64",
                "--ipv6-address-mode",
                "eui",
            ],
            "unknown IPv6 address mode",
        ),
        (
            vec![
                "instance",
                "create",
                "x",
                "--network",
                "six",
                "--ip",
                "198.18.0.5",
            ],
            "no IPv4 subnet",
        ),
        (
            vec![
                "instance",
                "create",
                "x",
                "--network",
                "dual",
                "--ip",
                "198.18.2.20",
                "--ip",
                "198.18.2.21",
            ],
            "one address per subnet",
        ),
    ] {
        let stderr = reg.refused(&args);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A `--dhcp-domain` that would break the host names in meta_data.json and the EC2 tree (a
/// newline splits the EC2 `hostname` leaf in two, a leading '.' gives `web..lab`) stops
/// `api`, `all` (flag or configuration file) and `instance config-drive` at start-up: exit 2,
/// one line naming the setting. An empty domain means none and is taken.
#[test]
fn a_bad_dhcp_domain_stops_every_command_that_takes_one() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    reg.ok(&["instance", "create", "web", "--network", "net1"]);
    let missing_secret = reg.path("missing-secret").display().to_string();
    let image = reg.path("drive.img").display().to_string();
    let run = |args: &[&str]| {
        let output = reg
            .cmd(args)
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (bad, why) in [
        ("lab\nx", "not a valid domain"),
        (".lab", "empty label"),
        ("lab.", "empty label"),
        ("lab_1", "not a valid domain"),
    ] {
        let api = ["api", "--identify-by-source-ip", "--listen", "127.0.0.1:0"];
        let all = ["all", "--shared-secret-file", &missing_secret];
        let drive = ["instance", "config-drive", "web", "-o", &image];
        for command in [&api[..], &all[..], &drive[..]] {
            let mut args = command.to_vec();
            args.extend(["--dhcp-domain", bad]);
            let (code, stderr) = run(&args);
            assert_eq!(code, Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(
                stderr.starts_with(&format!("error: --dhcp-domain {bad:?} "))
                    && stderr.contains(why)
                    && stderr.contains("or \"\" for no domain"),
                "{args:?}: {stderr}"
            );
        }
        let config = reg.write(
            "metaboot.toml",
            format!("[api]\ndhcp_domain = {bad:?}\n").as_bytes(),
        );
        let (code, stderr) = run(&[
            "all",
            "--config",
            &config,
            "--shared-secret-file",
            &missing_secret,
        ]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: api.dhcp_domain (in {config}) {bad:?} ")),
            "{stderr}"
        );
    }
    assert!(!reg.path("drive.img").exists());
    // Empty: no domain; the next check (the missing secret file) speaks.
    let (code, stderr) = run(&[
        "all",
        "--shared-secret-file",
        &missing_secret,
        "--dhcp-domain",
        "",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("shared secret file"), "{stderr}");
}
