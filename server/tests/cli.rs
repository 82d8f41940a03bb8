//! The registry CLI as a user runs it: `metaboot-server --db FILE network|router|port|instance …`.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The store's user data limit, repeated here as the number a user reads in the docs.
const USER_DATA_LIMIT: usize = 65_535;

/// A registry file in a temp dir, and helpers to run commands on it.
struct Registry {
    dir: TempDir,
    db: PathBuf,
}

impl Registry {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("registry.sqlite");
        Self { dir, db }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path.display().to_string()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metaboot-server"));
        cmd.env_remove("METABOOT_DB")
            .arg("--db")
            .arg(&self.db)
            .args(args);
        cmd
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd(args).output().expect("run metaboot-server");
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a `--json` command that must succeed; returns the parsed JSON.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: {err}: {stdout}"))
    }

    /// Runs a command that must be refused as bad input: exit code 2, nothing on stdout, one
    /// `error:` line on stderr, and the registry unchanged. Returns the message.
    #[track_caller]
    fn refused(&self, args: &[&str]) -> String {
        let before = self.state();
        let output = self.cmd(args).output().expect("run metaboot-server");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} printed to stdout");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(self.state(), before, "{args:?} changed the registry");
        stderr.trim_end().to_owned()
    }

    /// Everything in the registry, as the list commands print it.
    fn state(&self) -> String {
        ["network", "router", "port", "instance"]
            .iter()
            .map(|kind| self.ok(&[kind, "list", "--json"]))
            .collect()
    }
}

/// A valid ed25519 public key line (its private half was never kept).
const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJIFrYLX9BtjdM9NxVzVWSuP9qCrzyUZerOmZAj3Xz48 test@metaboot";

/// A public key file `NAME.pub` and a file `NAME` shaped like its private key.
fn ssh_key(reg: &Registry, name: &str) -> (String, String) {
    let public = reg.write(&format!("{name}.pub"), format!("{PUBLIC_KEY}\n").as_bytes());
    let private = reg.write(
        name,
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    (public, private)
}

/// `instance create vm --network net1` plus `extra`.
fn vm<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["instance", "create", "vm", "--network", "net1"];
    args.extend_from_slice(extra);
    args
}

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
    let shown = reg.json(&[
        "instance",
        "show",
        created["uuid"].as_str().unwrap(),
        "--json",
    ]);
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
    let too_big = reg.write("too-big", &vec![b'x'; USER_DATA_LIMIT + 1]);
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
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.9.0/24",
                "--gateway",
                "198.18.8.1",
            ],
            "outside",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--cidr",
                "198.18.9.0/24",
                "--dhcp-ip",
                "nope",
            ],
            "--dhcp-ip",
        ),
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
        (vec!["--user-data", &too_big], "65536 bytes"),
        (vec!["--user-data", &missing], "cannot read user data file"),
        (vec!["--key-file", &missing], "cannot read key file"),
        (vec!["--key-file", &private], "private key"),
        (vec!["--key-file", &empty], "empty"),
        (vec!["--key-file", &garbage], "not an SSH public key"),
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

#[test]
fn key_names_are_what_novas_api_allows_and_key_name_sets_one() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let key = format!("{PUBLIC_KEY}\n");
    // `a=b` would be served as `public-keys/0=a=b` (afterburn installs no key); a line break
    // in the name would add a key entry of its choosing to the EC2 listing.
    for name in [
        "a=b.pub",
        "evil\n1=forged.pub",
        "semi;colon.pub",
        " space.pub",
    ] {
        let file = reg.write(name, key.as_bytes());
        let message = reg.refused(&vm(&["--key-file", &file]));
        assert!(message.contains("--key-name"), "{name:?}: {message}");
    }
    // --key-name names a key apart from its file, under the same rules, one per file.
    let odd = reg.write("id=deploy.pub", key.as_bytes());
    let plain = reg.write("ops.pub", key.as_bytes());
    for bad in ["a=b", "line\nbreak", "", &"k".repeat(256)] {
        let message = reg.refused(&vm(&["--key-file", &odd, "--key-name", bad]));
        assert!(message.contains("bad --key-name"), "{bad:?}: {message}");
    }
    let message = reg.refused(&vm(&[
        "--key-file",
        &odd,
        "--key-file",
        &plain,
        "--key-name",
        "x",
    ]));
    assert!(
        message.contains("one --key-name per --key-file"),
        "{message}"
    );
    let created = reg.json(&vm(&[
        "--key-file",
        &odd,
        "--key-name",
        "deploy@ci.example",
        "--key-file",
        &plain,
        "--key-name",
        "ops key_2",
        "--json",
    ]));
    let shown = reg.json(&[
        "instance",
        "show",
        created["uuid"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(shown["key_pairs"][0]["name"], "deploy@ci.example");
    assert_eq!(shown["key_pairs"][1]["name"], "ops key_2");
    assert_eq!(shown["key_pairs"][0]["data"], PUBLIC_KEY);
}

#[test]
fn the_admin_password_can_come_from_a_file_instead_of_argv() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let file = reg.write("admin-pass", b"s3cret pass\n");
    let created = reg.json(&[
        "instance",
        "create",
        "vm",
        "--network",
        "net1",
        "--admin-pass-file",
        &file,
        "--json",
    ]);
    let uuid = created["uuid"].as_str().unwrap();
    let store = metaboot_server::store::open(reg.db.to_str().unwrap()).unwrap();
    assert_eq!(
        store.instance(uuid).unwrap().admin_pass.as_deref(),
        Some("s3cret pass"),
        "one trailing newline dropped, nothing else"
    );
    let shown = reg.json(&["instance", "show", uuid, "--json"]);
    assert_eq!(shown["admin_pass_set"], true);
    // A missing or empty file, or one past the password limit, is refused.
    let missing = reg.path("missing").display().to_string();
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &missing]))
            .contains("cannot read")
    );
    let empty = reg.write("empty", b"\n");
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &empty]))
            .contains("empty")
    );
    let long = reg.write("long", &vec![b'p'; 1021]);
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &long]))
            .contains("1020")
    );
    // Both at once is a usage error.
    let before = reg.state();
    let out = reg
        .cmd(&vm(&["--admin-pass", "x", "--admin-pass-file", &file]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    assert_eq!(reg.state(), before);
}
