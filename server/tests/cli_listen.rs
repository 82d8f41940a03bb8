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

/// The lock file `all` (`running`) holds under the registry's runtime directory, once it has
/// taken it (its pid in it), within 30 s.
fn lock_taken_by(reg: &Registry, running: &mut std::process::Child) -> std::path::PathBuf {
    let pid = running.id().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = std::fs::read_dir(reg.run()).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .find(|path| std::fs::read_to_string(path).is_ok_and(|text| text.trim() == pid))
        });
        if let Some(path) = held {
            return path;
        }
        assert!(
            std::time::Instant::now() < deadline && running.try_wait().unwrap().is_none(),
            "all (pid {pid}) never took its lock in {}",
            reg.run().display()
        );
        std::thread::sleep(Duration::from_millis(50));
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
    lock_taken_by(&reg, &mut first.0);
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

/// The user the unit's `all` stands for here (`User=metaboot` in
/// `server/systemd/metaboot-server.service`): nobody.
const UNIT_USER: u32 = 65534;

/// Gives `dir` and everything under it to [`UNIT_USER`], but `keep`.
fn give_to_unit_user(dir: &std::path::Path, keep: &std::path::Path) {
    if dir != keep {
        std::os::unix::fs::lchown(dir, Some(UNIT_USER), Some(UNIT_USER)).unwrap();
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            give_to_unit_user(&entry.path(), keep);
        }
    }
}

/// A root `all` run by hand in the unit's runtime directory and killed (SIGKILL) leaves its
/// lock file there, root's and mode 0640, which the unit's `all` (its user, with
/// `CAP_DAC_READ_SEARCH` as the unit gives it) may read but not write. While the root one
/// runs, the unit's is refused naming it (exit 2); once it is gone, the unit's removes the
/// stale file and takes the lock, where it used to stop (exit 1) at every restart. Needs root
/// (to be both users) and `setpriv`.
#[test]
fn a_lock_file_a_root_all_left_behind_does_not_stop_the_units() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !nix::unistd::geteuid().is_root() || !has_setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let reg = Registry::new();
    reg.ok(&["network", "list"]);
    let secret = reg.write("secret", b"s3cret\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let all = ["all", "--shared-secret-file", &secret, "--threads", "1"];
    let quiet = |mut cmd: std::process::Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let mut by_hand = Killed(quiet(reg.std_cmd(&all)).spawn().unwrap());
    let lock = lock_taken_by(&reg, &mut by_hand.0);
    let meta = std::fs::metadata(&lock).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o640));
    // The registry, the secret and the runtime directory are the unit user's, as the unit's
    // StateDirectory and RuntimeDirectory are; the lock file stays root's.
    std::fs::set_permissions(reg.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    give_to_unit_user(reg.dir.path(), &lock);
    let unit = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
    ];
    let refused = reg
        .std_cmd_under(&unit, &all)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: another metaboot-server all (pid {}) already serves the registry",
            by_hand.0.id()
        )),
        "{stderr}"
    );
    drop(by_hand);
    assert!(lock.exists(), "a killed all removed its lock file");
    give_to_unit_user(reg.dir.path(), &lock);
    let mut units = Killed(quiet(reg.std_cmd_under(&unit, &all)).spawn().unwrap());
    let taken = lock_taken_by(&reg, &mut units.0);
    assert_eq!(taken, lock);
    assert_eq!(std::fs::metadata(&taken).unwrap().uid(), UNIT_USER);
}
