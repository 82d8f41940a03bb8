//! The systemd units the repository ships (`agent/systemd/`, `server/systemd/`): each loads
//! cleanly in systemd (`systemd-analyze verify` against a root holding systemd's own units and
//! the real binaries), its command line is one the binary accepts, and each keeps the ordering
//! and the privileges its role needs and no more.
//!
//! Needs `systemd-analyze` (Debian's systemd package; no running systemd): fails in CI when
//! missing, skips elsewhere.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use metaboot_harness::workspace::{self, CargoBinary};
use metaboot_tests::prerequisite::require_command;

/// systemd's own units on a Debian host (/lib is a link to /usr/lib).
const SYSTEM_UNITS: &str = "/usr/lib/systemd/system";

/// Every unit shipped, with the instance name templates are checked with.
const UNITS: [(&str, &str); 8] = [
    ("agent/systemd/metaboot.service", "metaboot.service"),
    (
        "agent/systemd/metaboot-local.service",
        "metaboot-local.service",
    ),
    (
        "agent/systemd/metaboot-final.service",
        "metaboot-final.service",
    ),
    (
        "server/systemd/metaboot-server.service",
        "metaboot-server.service",
    ),
    (
        "server/systemd/metaboot-api.service",
        "metaboot-api.service",
    ),
    (
        "server/systemd/metaboot-agent.service",
        "metaboot-agent.service",
    ),
    (
        "server/systemd/metaboot-ns-proxy-router@.service",
        "metaboot-ns-proxy-router@r1.service",
    ),
    (
        "server/systemd/metaboot-ns-proxy-network@.service",
        "metaboot-ns-proxy-network@n1.service",
    ),
];

/// A unit file's `[Section] Key=value` lines (a key given twice keeps every value, in order).
fn parse(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            map.entry((section.clone(), key.to_owned()))
                .or_default()
                .push(value.to_owned());
        }
    }
    map
}

fn unit(path: &str) -> BTreeMap<(String, String), Vec<String>> {
    let text = fs::read_to_string(workspace::root().join(path)).expect("the unit is readable");
    parse(&text)
}

fn get(unit: &BTreeMap<(String, String), Vec<String>>, section: &str, key: &str) -> String {
    unit.get(&(section.to_owned(), key.to_owned()))
        .map(|values| values.join(" "))
        .unwrap_or_default()
}

fn words(unit: &BTreeMap<(String, String), Vec<String>>, section: &str, key: &str) -> Vec<String> {
    get(unit, section, key)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn binaries() -> (PathBuf, PathBuf) {
    let server = metaboot_tests::chain::server_binary().expect("metaboot-server builds");
    let agent = workspace::build(CargoBinary {
        package: "metaboot",
        bin: "metaboot",
        profile: None,
        target: None,
        static_crt: false,
    })
    .expect("the guest agent builds");
    (agent, server)
}

/// A root for `systemd-analyze verify --root`: systemd's units, ours, and the real binaries
/// where the units' ExecStart= expects them.
fn verify_root(dir: &Path, agent: &Path, server: &Path) -> PathBuf {
    let root = dir.join("root");
    let units = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for entry in fs::read_dir(SYSTEM_UNITS).expect("systemd's units are installed") {
        let entry = entry.unwrap();
        let target = units.join(entry.file_name());
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if meta.is_file() {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::copy(agent, root.join("usr/bin/metaboot")).unwrap();
    fs::copy(server, root.join("usr/bin/metaboot-server")).unwrap();
    for (source, _) in UNITS {
        let name = Path::new(source).file_name().unwrap();
        fs::copy(workspace::root().join(source), units.join(name)).unwrap();
    }
    root
}

/// `systemd-analyze verify`'s exit code and everything it printed.
fn verify(root: &Path, units: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(format!("--root={}", root.display()))
        .args(units)
        .output()
        .expect("systemd-analyze runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    if !require_command("systemd-analyze") {
        return;
    }
    let (agent, server) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let root = verify_root(dir.path(), &agent, &server);
    let names: Vec<&str> = UNITS.iter().map(|(_, name)| *name).collect();
    let (ok, text) = verify(&root, &names);
    // verify exits 0 on mere warnings (an unknown directive is ignored): silence is the bar.
    assert!(ok && text.is_empty(), "systemd-analyze verify: {text}");

    // The same check catches a misspelt directive and a missing binary.
    let units = root.join("usr/lib/systemd/system");
    let api = units.join("metaboot-api.service");
    let text = fs::read_to_string(&api).unwrap();
    fs::write(&api, text.replace("ProtectSystem=", "ProtectSystm=")).unwrap();
    let (_, warned) = verify(&root, &["metaboot-api.service"]);
    assert!(warned.contains("ProtectSystm"), "{warned}");
    fs::write(&api, text).unwrap();
    fs::remove_file(root.join("usr/bin/metaboot")).unwrap();
    let (ok, text) = verify(&root, &["metaboot.service"]);
    assert!(!ok && text.contains("/usr/bin/metaboot"), "{text}");
}

/// The unit's `Environment=` defaults, by name.
fn environment(unit: &BTreeMap<(String, String), Vec<String>>) -> BTreeMap<String, String> {
    words(unit, "Service", "Environment")
        .iter()
        .map(|assignment| {
            let (name, value) = assignment
                .split_once('=')
                .unwrap_or_else(|| panic!("Environment={assignment}: no NAME=VALUE"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// ExecStart= as systemd runs it for `instance` (`%i`), with `set` (what an `EnvironmentFile=`
/// holds) over the unit's `Environment=` defaults, as systemd lets the file win: `${NAME}` is
/// one word, the value; `$NAME` is the value's words, none when it is unset or empty.
fn command_line(source: &str, instance: &str, set: &[(&str, &str)]) -> Vec<String> {
    let unit = unit(source);
    let mut env = environment(&unit);
    for (name, value) in set {
        env.insert((*name).to_owned(), (*value).to_owned());
    }
    let exec = get(&unit, "Service", "ExecStart").replace("%i", instance);
    let mut argv = Vec::new();
    for word in exec.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            let value = env.get(name).unwrap_or_else(|| {
                panic!("{source}: ExecStart uses ${{{name}}}, which no Environment= sets")
            });
            argv.push(value.clone());
        } else if let Some(name) = word.strip_prefix('$') {
            let value = env.get(name).map_or("", String::as_str);
            argv.extend(value.split_whitespace().map(str::to_owned));
        } else {
            assert!(!word.contains('$'), "{source}: a variable inside {word}");
            argv.push(word.to_owned());
        }
    }
    argv
}

/// Runs `argv` (ExecStart's words) with `--help` after every argument: each is parsed (a bad
/// one refused) before the help. The error the binary printed when it refuses them.
fn accepted(argv: &[String], agent: &Path, server: &Path) -> Result<(), String> {
    let (program, args) = argv.split_first().expect("an ExecStart with a program");
    let binary = match program.as_str() {
        "/usr/bin/metaboot" => agent,
        "/usr/bin/metaboot-server" => server,
        other => panic!("unexpected program {other}"),
    };
    let out = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The instance name a unit is checked with (`r1` of `…@r1.service`; none for a plain unit).
fn instance_of(name: &str) -> &str {
    name.split_once('@')
        .and_then(|(_, rest)| rest.strip_suffix(".service"))
        .unwrap_or("")
}

/// Every ExecStart= is a command line the binary accepts (flags and values), with templates'
/// `%i` filled in, the unit's `Environment=` defaults and the optional `$…_ARGS` left empty.
#[test]
fn every_exec_start_is_accepted_by_the_binary() {
    let (agent, server) = binaries();
    for (source, name) in UNITS {
        let argv = command_line(source, instance_of(name), &[]);
        if let Err(err) = accepted(&argv, &agent, &server) {
            panic!("{source}: `{}` is refused: {err}", argv.join(" "));
        }
        let mut bad = argv.clone();
        bad.push("--no-such-flag".to_owned());
        assert!(
            accepted(&bad, &agent, &server).is_err(),
            "{source}: a bad flag must be refused"
        );
    }
}

/// What the units' comments tell users to set in /etc/metaboot/server.env (a variable, with
/// the example value they give) reaches the flag it is for, once, in a command line the
/// binary accepts: a flag ExecStart passes is overridden through its variable, never given a
/// second time (one the binary refuses, and the unit restart-loops).
#[test]
fn the_documented_overrides_reach_a_command_line_the_binary_accepts() {
    let (agent, server) = binaries();
    // (unit, instance, variable, the comments' example value, the flag it goes to)
    let overrides = [
        (
            "server/systemd/metaboot-agent.service",
            "",
            "METABOOT_API",
            "http://API-HOST:8775",
            "--api",
        ),
        (
            "server/systemd/metaboot-agent.service",
            "",
            "METABOOT_API",
            "unix:/run/metaboot/api.sock",
            "--api",
        ),
        (
            "server/systemd/metaboot-api.service",
            "",
            "METABOOT_API_LISTEN",
            "127.0.0.1:8775,192.0.2.10:8775",
            "--listen",
        ),
        // Both metadata addresses, as `all` serves a network with an IPv6 subnet.
        (
            "server/systemd/metaboot-ns-proxy-network@.service",
            "n1",
            "METABOOT_ISOLATED_LISTEN",
            "169.254.169.254:80,[fe80::a9fe:a9fe]:80",
            "--listen",
        ),
    ];
    for (source, instance, variable, value, flag) in overrides {
        let text = comments(source);
        assert!(
            text.contains(&format!("{variable}={value}")),
            "{source}: the comments give no `{variable}={value}`: {text}"
        );
        let argv = command_line(source, instance, &[(variable, value)]);
        let given: Vec<&String> = argv
            .windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| &pair[1])
            .collect();
        assert_eq!(given, [value], "{source}: {flag} in `{}`", argv.join(" "));
        if let Err(err) = accepted(&argv, &agent, &server) {
            panic!("{source}: `{}` is refused: {err}", argv.join(" "));
        }
    }
}

/// The roles that serve a Unix socket (the agent; the API with `--socket`, for `agent --api
/// unix:PATH`) can make it: ProtectSystem=strict leaves /run read-only but the runtime
/// directory. The API's and the agent's units share /run/metaboot, so each keeps it when it
/// stops (the other's socket is there).
#[test]
fn the_roles_serving_a_unix_socket_share_a_runtime_directory_both_keep() {
    for source in [
        "server/systemd/metaboot-api.service",
        "server/systemd/metaboot-agent.service",
    ] {
        let unit = unit(source);
        assert_eq!(get(&unit, "Service", "ProtectSystem"), "strict", "{source}");
        for (key, value) in [
            ("RuntimeDirectory", "metaboot"),
            ("RuntimeDirectoryMode", "0750"),
            ("RuntimeDirectoryPreserve", "yes"),
        ] {
            assert_eq!(get(&unit, "Service", key), value, "{source}: {key}");
        }
    }
    // The socket the API's comments suggest is in it, and the agent's name the same one.
    let socket = "/run/metaboot/api.sock";
    assert!(
        comments("server/systemd/metaboot-api.service").contains(&format!("--socket {socket}"))
    );
    for source in [
        "server/systemd/metaboot-api.service",
        "server/systemd/metaboot-agent.service",
    ] {
        let text = comments(source);
        assert!(
            text.contains(&format!("METABOOT_API=unix:{socket}")),
            "{source}: {text}"
        );
    }
}

/// A network's proxy takes its addresses from the network's own file over server.env (systemd
/// reads the files in order, the later one winning), so that one network's IPv6 leaves the
/// IPv4-only ones alone.
#[test]
fn a_network_proxy_reads_its_own_file_after_server_env() {
    let unit = unit("server/systemd/metaboot-ns-proxy-network@.service");
    assert_eq!(
        words(&unit, "Service", "EnvironmentFile"),
        [
            "-/etc/metaboot/server.env",
            "-/etc/metaboot/ns-proxy-network-%i.env"
        ]
    );
    assert!(
        comments("server/systemd/metaboot-ns-proxy-network@.service")
            .contains("/etc/metaboot/ns-proxy-network-<network id>.env")
    );
}

/// A flag the comments mention that ExecStart also passes takes its value from a variable
/// (`--api ${METABOOT_API}`): given again in `$…_ARGS` it would be refused (clap: "cannot be
/// used multiple times") or added to, never replace, the unit's own.
#[test]
fn no_comment_suggests_a_flag_exec_start_fixes() {
    for (source, _) in UNITS {
        let unit = unit(source);
        let exec: Vec<String> = words(&unit, "Service", "ExecStart");
        for flag in comments(source)
            .split_whitespace()
            .map(|word| word.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
            .filter(|word| word.starts_with("--"))
        {
            for pair in exec.windows(2).filter(|pair| pair[0] == flag) {
                assert!(
                    pair[1].starts_with("${"),
                    "{source}: the comments suggest {flag}, which ExecStart passes as \
                     `{flag} {}`: take its value from a variable with a default in Environment=",
                    pair[1]
                );
            }
        }
    }
}

#[test]
fn the_guest_agent_runs_once_per_boot_before_logins() {
    let unit = unit("agent/systemd/metaboot.service");
    assert_eq!(get(&unit, "Service", "Type"), "oneshot");
    assert_eq!(get(&unit, "Service", "RemainAfterExit"), "yes");
    assert_eq!(
        get(&unit, "Service", "ExecStart"),
        "/usr/bin/metaboot run --stage init"
    );
    for key in ["After", "Wants"] {
        assert!(
            words(&unit, "Unit", key).contains(&"network-online.target".to_owned()),
            "{key}=network-online.target"
        );
    }
    // The user scripts' stage comes with it, even when only this unit is enabled.
    assert!(words(&unit, "Unit", "Wants").contains(&"metaboot-final.service".to_owned()));
    let before = words(&unit, "Unit", "Before");
    for login in [
        "ssh.service",
        "sshd.service",
        "sshd-keygen.service",
        "sshd-keygen@rsa.service",
        "sshd-keygen@ecdsa.service",
        "sshd-keygen@ed25519.service",
        "systemd-user-sessions.service",
        "getty.target",
    ] {
        assert!(
            before.contains(&login.to_owned()),
            "Before={login}: {before:?}"
        );
    }
    // Provisioning goes first on a guest with one CPU: the logins wait for it (the user's
    // commands go back to nice 0, agent/src/apply/scripts.rs).
    assert_eq!(get(&unit, "Service", "Nice"), "-10");
    assert_eq!(get(&unit, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn the_user_scripts_run_once_per_boot_after_the_boots_services() {
    let unit = unit("agent/systemd/metaboot-final.service");
    assert_eq!(get(&unit, "Service", "Type"), "oneshot");
    assert_eq!(get(&unit, "Service", "RemainAfterExit"), "yes");
    assert_eq!(
        get(&unit, "Service", "ExecStart"),
        "/usr/bin/metaboot run --stage final"
    );
    // Scripts may run for long and start daemons that outlive them, as under cloud-final.
    assert_eq!(get(&unit, "Service", "TimeoutStartSec"), "infinity");
    assert_eq!(get(&unit, "Service", "KillMode"), "process");
    // What they leave running stays in the unit's cgroup: uncapped, as under cloud-final.
    assert_eq!(get(&unit, "Service", "TasksMax"), "infinity");
    let after = words(&unit, "Unit", "After");
    for first in [
        "metaboot.service",
        "network-online.target",
        "ssh.service",
        "sshd.service",
        "systemd-user-sessions.service",
        // The boot's services first, as cloud-final.service, and the clock set.
        "multi-user.target",
        "time-sync.target",
    ] {
        assert!(
            after.contains(&first.to_owned()),
            "After={first}: {after:?}"
        );
    }
    assert_eq!(
        words(&unit, "Unit", "Before"),
        ["apt-daily.service"],
        "only apt's daily run waits for it (dpkg's lock), as for cloud-final.service"
    );
    // Wanted by multi-user.target, the target would be ordered after it: a cycle.
    assert_eq!(get(&unit, "Install", "WantedBy"), "metaboot.service");
}

/// The local stage runs early, as cloud-init-local.service (not ordered quite like it:
/// agent/README.md, "Installing into an image", step 7): no default dependencies,
/// before anything brings the network up (`network-pre.target`, which ifupdown's and networkd's
/// units come after), once the root is writable and udev's coldplug has started, once per boot.
#[test]
fn the_local_stage_runs_before_the_network_starts() {
    let unit = unit("agent/systemd/metaboot-local.service");
    assert_eq!(get(&unit, "Unit", "DefaultDependencies"), "no");
    assert_eq!(get(&unit, "Unit", "Wants"), "network-pre.target");
    assert_eq!(
        words(&unit, "Unit", "Before"),
        ["network-pre.target", "shutdown.target"]
    );
    assert_eq!(get(&unit, "Unit", "Conflicts"), "shutdown.target");
    let after = words(&unit, "Unit", "After");
    // A NIC whose driver /etc/modules-load.d loads is not there before
    // systemd-modules-load.service (Debian's networking.service comes after it too).
    for first in [
        "systemd-remount-fs.service",
        "systemd-udev-trigger.service",
        "systemd-modules-load.service",
    ] {
        assert!(
            after.contains(&first.to_owned()),
            "After={first}: {after:?}"
        );
    }
    assert!(
        !after.iter().any(|unit| unit.starts_with("network")),
        "nothing of the network before it: {after:?}"
    );
    assert_eq!(get(&unit, "Unit", "RequiresMountsFor"), "/var/lib/metaboot");
    assert_eq!(get(&unit, "Service", "Type"), "oneshot");
    assert_eq!(get(&unit, "Service", "RemainAfterExit"), "yes");
    assert_eq!(
        get(&unit, "Service", "ExecStart"),
        "/usr/bin/metaboot local"
    );
    assert_eq!(get(&unit, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn each_server_role_gets_only_the_privileges_it_needs() {
    // (unit, capabilities) — setns needs CAP_SYS_ADMIN, port 80 CAP_NET_BIND_SERVICE; `all`
    // also serves host bridges: `ip addr` on the bridge (CAP_NET_ADMIN) and libvirt's dnsmasq
    // configuration, mode 0600 root (CAP_DAC_READ_SEARCH).
    let roles: [(&str, &[&str]); 5] = [
        (
            "server/systemd/metaboot-server.service",
            &[
                "CAP_SYS_ADMIN",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_ADMIN",
                "CAP_DAC_READ_SEARCH",
            ],
        ),
        ("server/systemd/metaboot-api.service", &[]),
        ("server/systemd/metaboot-agent.service", &[]),
        (
            "server/systemd/metaboot-ns-proxy-router@.service",
            &["CAP_SYS_ADMIN"],
        ),
        (
            "server/systemd/metaboot-ns-proxy-network@.service",
            &["CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"],
        ),
    ];
    for (source, caps) in roles {
        let unit = unit(source);
        let want: Vec<String> = caps.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(
            words(&unit, "Service", "CapabilityBoundingSet"),
            want,
            "{source}"
        );
        assert_eq!(
            words(&unit, "Service", "AmbientCapabilities"),
            want,
            "{source}"
        );
        assert_eq!(get(&unit, "Service", "User"), "metaboot", "{source}");
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("SystemCallArchitectures", "native"),
        ] {
            assert_eq!(get(&unit, "Service", key), value, "{source}: {key}");
        }
        let namespaces = get(&unit, "Service", "RestrictNamespaces");
        if caps.contains(&"CAP_SYS_ADMIN") {
            assert_eq!(
                namespaces, "net",
                "{source}: setns into network namespaces only"
            );
        } else {
            assert_eq!(namespaces, "yes", "{source}: no namespaces at all");
            assert_eq!(get(&unit, "Service", "PrivateUsers"), "yes", "{source}");
        }
        // `all` and a DHCP namespace's proxy find the interface holding fe80::a9fe:a9fe
        // (getifaddrs), `all` runs `ip addr`: both over netlink. The others have no use for it.
        let exec = get(&unit, "Service", "ExecStart");
        let mut families = vec!["AF_UNIX", "AF_INET", "AF_INET6"];
        if exec.contains(" all ") || exec.contains("--network-id") {
            families.push("AF_NETLINK");
        }
        assert_eq!(
            words(&unit, "Service", "RestrictAddressFamilies"),
            families,
            "{source}"
        );
        // A router's proxy takes both families (the binary's default `[::]:9697`).
        if exec.contains("--router-id") {
            assert!(!exec.contains("--listen"), "{source}: {exec}");
        }
        let needs_state = !exec.contains(" ns-proxy ");
        assert_eq!(
            get(&unit, "Service", "StateDirectory") == "metaboot-server",
            needs_state,
            "{source}: only the roles that open the registry get /var/lib/metaboot-server (never \
             the guest agent's /var/lib/metaboot)"
        );
    }
}

/// A server role that refuses its configuration exits with `EXIT_REFUSED` and is not
/// restarted (nothing changes until the user fixes it): the unit fails once. Any other failure
/// (a backend, a namespace not there yet) is retried.
#[test]
fn refused_configuration_fails_the_unit_once() {
    use metaboot_server::cli::EXIT_REFUSED;
    let (_, server) = binaries();
    for (source, name) in UNITS
        .iter()
        .filter(|(source, _)| source.starts_with("server/"))
    {
        let unit = unit(source);
        assert_eq!(get(&unit, "Service", "Restart"), "on-failure", "{source}");
        assert_eq!(
            get(&unit, "Service", "RestartPreventExitStatus"),
            EXIT_REFUSED.to_string(),
            "{source}"
        );
        // A flag the role refuses, added through `$…_ARGS`, exits with that code.
        let mut argv = command_line(source, instance_of(name), &[]);
        argv.push("--no-such-flag".to_owned());
        assert_eq!(argv[0], "/usr/bin/metaboot-server", "{source}");
        let out = Command::new(&server).args(&argv[1..]).output().unwrap();
        assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{source}");
    }
    // So does a missing shared secret.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&server)
        .args([
            "--db",
            &dir.path().join("registry.sqlite").display().to_string(),
        ])
        .args(["api", "--listen", "127.0.0.1:0", "--shared-secret-file"])
        .arg(dir.path().join("no-secret"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(i32::from(EXIT_REFUSED)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file's comment lines as one line of text (wrapped phrases joined back up).
fn comments(path: &str) -> String {
    let text = fs::read_to_string(workspace::root().join(path)).expect("the file is readable");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_shipped_files_describe_a_shared_secret_the_roles_accept() {
    use metaboot_server::secret::{FORBIDDEN_SECRET_MODE_BITS, SECRET_FILE_MODE};
    // The roles refuse a secret file its group or others may read (server/src/secret.rs), so
    // the units tell the user to give it to the user they run as, with the mode asked.
    for source in [
        "server/systemd/metaboot-server.service",
        "server/systemd/metaboot-api.service",
        "server/systemd/metaboot-agent.service",
    ] {
        let text = comments(source);
        let user = get(&unit(source), "Service", "User");
        let install = format!("install -m {SECRET_FILE_MODE:o} -o {user} -g {user} ");
        let at = text
            .find(&install)
            .unwrap_or_else(|| panic!("{source}: no `{install}…` for the secret: {text}"));
        assert!(
            text[at..].contains("/etc/metaboot/secret"),
            "{source}: {text}"
        );
        assert!(
            text.contains(&format!("owned by {user}, mode {SECRET_FILE_MODE:04o}")),
            "{source}: {text}"
        );
    }
    for source in [
        "server/systemd/metaboot-server.service",
        "server/systemd/metaboot-api.service",
        "server/systemd/metaboot-agent.service",
        "server/systemd/metaboot.sysusers",
    ] {
        let text = comments(source);
        // Every mode a sentence about the secret gives is one the roles accept.
        for sentence in text.split(". ").filter(|s| s.contains("secret")) {
            for (at, _) in sentence.match_indices("mode 0") {
                let digits: String = sentence[at + "mode ".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let mode = u32::from_str_radix(&digits, 8).unwrap();
                assert_eq!(
                    mode & FORBIDDEN_SECRET_MODE_BITS,
                    0,
                    "{source}: the roles refuse a secret of mode {digits}: {sentence}"
                );
            }
        }
        assert!(
            text.contains(&format!("mode {SECRET_FILE_MODE:04o}")),
            "{source}: says no mode for the secret: {text}"
        );
        assert!(!text.contains("root:metaboot"), "{source}: {text}");
    }
}

/// `metaboot-server all`'s ExecStopPost= takes off, after a stop that skipped the process's
/// own clean-up (SIGKILL), the 169.254.169.254 it put on host bridges (under its label
/// `BRIDGE:mb`), and nothing else: run as systemd would split it, in a network namespace of
/// the test's own (`unshare -n`), on a bridge holding also an unlabelled 169.254.169.254 on
/// another device and another address under the same label.
#[test]
fn the_servers_stop_takes_off_only_the_bridge_address_it_labelled() {
    if !metaboot_tests::prerequisite::require_root() || !require_command("unshare") {
        return;
    }
    let unit = unit("server/systemd/metaboot-server.service");
    let stop = get(&unit, "Service", "ExecStopPost");
    let command = stop
        .strip_prefix('-')
        .expect("a failed clean-up must not fail the stop");
    // systemd splits on spaces and expands no pattern; `ip` matches the label itself.
    let setup = "ip link add mbtest0 type bridge \
        && ip link add mbtest1 type bridge \
        && ip address add 169.254.169.254/32 dev mbtest0 label mbtest0:mb \
        && ip address add 198.18.7.1/24 dev mbtest0 label mbtest0:mb \
        && ip address add 169.254.169.254/32 dev mbtest1";
    // `set -f`: the shell expands no pattern either.
    let script = format!("set -f && {setup} && {command} && ip -4 -o address show");
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .expect("runs unshare");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !shown.contains("169.254.169.254/32 scope global mbtest0:mb"),
        "the labelled address stayed: {shown}"
    );
    assert!(
        shown.contains("198.18.7.1/24"),
        "another address went: {shown}"
    );
    assert!(
        shown
            .lines()
            .any(|line| line.contains("mbtest1") && line.contains("169.254.169.254")),
        "an address without the label went: {shown}"
    );
}
