//! A listener the configuration cannot have (a socket path whose directory cannot be made)
//! stops `all`, `api` and `agent` with exit 2, as refused input: their units do not restart
//! them (`RestartPreventExitStatus=2`). An address this host does not hold stops them with exit
//! 1, the error saying so: at boot it may come up after the server, and the restart takes it.

mod cli_support;

use std::time::Duration;

use cli_support::Registry;

/// TEST-NET-1: no interface here holds it.
const ABSENT: &str = "192.0.2.1";

/// Whether the kernel refuses an address no interface holds (it takes any with
/// `ip_nonlocal_bind`, and then these servers would start).
fn refuses_nonlocal_addresses() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .is_ok_and(|value| value.trim() == "0")
}

#[test]
fn a_listener_the_configuration_cannot_have_stops_the_server_saying_why() {
    if !refuses_nonlocal_addresses() {
        return;
    }
    let reg = Registry::new();
    reg.ok(&["network", "list"]);
    let secret = reg.write("secret", b"s3cret\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = reg.write("file", b"");
    let under_a_file = format!("{file}/run/agent.sock");
    let api_at = format!("{ABSENT}:8775");
    let metrics_at = format!("{ABSENT}:9100");
    let all = ["all", "--shared-secret-file", &secret];
    let cases: Vec<(Vec<&str>, &str, i32)> = vec![
        (
            [&all[..], &["--api-listen", &api_at]].concat(),
            "no interface of this host holds 192.0.2.1",
            1,
        ),
        (
            [&all[..], &["--metrics-listen", &metrics_at]].concat(),
            "no interface of this host holds 192.0.2.1",
            1,
        ),
        (
            [&all[..], &["--agent-socket", &under_a_file]].concat(),
            "give a path in a directory that exists",
            2,
        ),
        (
            vec!["api", "--identify-by-source-ip", "--listen", &api_at],
            "no interface of this host holds 192.0.2.1",
            1,
        ),
        (
            vec![
                "agent",
                "--shared-secret-file",
                &secret,
                "--socket",
                &under_a_file,
            ],
            "give a path in a directory that exists",
            2,
        ),
    ];
    for (args, what, code) in cases {
        let output = reg
            .cmd(&args)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(what), "{args:?}: {stderr}");
    }
}

/// A process killed when dropped, the test passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second `all` over the registry of one running in this network namespace is refused at
/// start (exit 2, one line naming the registry and the running one's pid), though it finds
/// nothing of the first's to collide on: no router, no host network, no API address.
#[test]
fn a_second_all_over_the_same_registry_is_refused_naming_the_first() {
    let reg = Registry::new();
    reg.ok(&["network", "list"]);
    let secret = reg.write("secret", b"s3cret\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let all = ["all", "--shared-secret-file", &secret, "--threads", "1"];
    let mut first = Killed(
        reg.std_cmd(&all)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = first.0.id().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let holds_its_lock = || {
        std::fs::read_dir(reg.run()).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                std::fs::read_to_string(entry.path()).is_ok_and(|text| text.trim() == pid)
            })
        })
    };
    while !holds_its_lock() {
        assert!(
            std::time::Instant::now() < deadline && first.0.try_wait().unwrap().is_none(),
            "the first all never took its lock in {}",
            reg.run().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = reg
        .cmd(&all)
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    drop(first);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let db = reg.db.display().to_string();
    assert!(
        stderr.starts_with(&format!(
            "error: another metaboot-server all (pid {pid}) already serves the registry {db} "
        )),
        "{stderr}"
    );
}
