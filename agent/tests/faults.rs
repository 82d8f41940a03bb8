//! Bad input and a misbehaving metadata service: a clear error in status.json / result.json, every
//! step that can still run has run, nothing torn, and a failing exit code; and a run killed
//! between any two of its renames, where every file is the old one or the new one, in the
//! order the run wrote them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// No temp file of an atomic write is left anywhere under the root.
fn assert_nothing_torn(guest: &Guest) {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(&path, found);
            } else if path.to_string_lossy().contains(".metaboot-") {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(&guest.root, &mut found);
    assert!(found.is_empty(), "temp files left: {found:?}");
}

/// The run failed, said why in status.json and result.json, and still applied meta_data.json.
fn assert_user_data_error(guest: &Guest, expected: &str) {
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let status = guest.status();
    assert_eq!(status["status"], "error");
    let (outcome, message) = guest.step("user-data");
    assert_eq!(outcome, "error");
    assert!(message.contains(expected), "{message}");
    assert!(
        status["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("user-data: "),
        "{status:#}"
    );
    // What meta_data.json asks for is still applied.
    assert_eq!(guest.read("/etc/hostname"), "test\n");
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    assert_eq!(
        guest.step("scripts-user").0,
        "skipped",
        "ran and found nothing to do"
    );
    let result = guest.read(&format!("/var/lib/metaboot/instances/{UUID}/result.json"));
    assert!(result.contains(expected));
    let out = guest.metaboot(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("status: error\n") && text.contains(expected),
        "{text}"
    );
    assert_nothing_torn(guest);
}

#[test]
fn corrupt_gzip() {
    let guest = Guest::new();
    let mut data = gz(b"#cloud-config\nhostname: never\n");
    let mid = data.len() / 2;
    data[mid] ^= 0xa5;
    guest.user_data(data);
    assert_user_data_error(&guest, "user data: Corrupt gzip data");
}

#[test]
fn gzip_bomb() {
    let guest = Guest::new();
    guest.user_data(gz(&vec![b'#'; 17 * 1024 * 1024]));
    assert_user_data_error(&guest, "gzip data decompresses to more than 16777216 bytes");
}

#[test]
fn malformed_yaml_keeps_the_other_parts() {
    let guest = Guest::new();
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n\
         --b\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [echo, 'x'\n\
         --b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho ran > tmp/other-part\n--b--\n",
    );
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    let (outcome, message) = guest.step("user-data");
    assert_eq!(outcome, "error");
    assert!(
        message.contains("part-001: cloud-config: Invalid YAML: line 2"),
        "{message}"
    );
    assert_eq!(
        guest.read("/tmp/other-part"),
        "ran\n",
        "the good part still ran"
    );
    assert_eq!(guest.read("/etc/hostname"), "test\n");
}

#[test]
fn mime_without_boundary() {
    let guest = Guest::new();
    guest
        .user_data("Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n--x\n\n#!/bin/sh\n--x--\n");
    assert_user_data_error(&guest, "MIME multipart message has no boundary parameter");
}

#[test]
fn invalid_key_types_fail_only_those_keys() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: good\nwrite_files: not-a-list\nruncmd: 5\n");
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    let (outcome, message) = guest.step("cloud-config");
    assert_eq!(outcome, "error");
    assert!(
        message.contains("invalid `runcmd`") && message.contains("invalid `write_files`"),
        "{message}"
    );
    assert_eq!(guest.read("/etc/hostname"), "good\n");
}

#[test]
fn a_failing_script_is_recorded_and_the_rest_still_runs() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nruncmd: [exit 7]\nwrite_files: [{path: /etc/still, content: written}]\n",
    );
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    let status = guest.status();
    let step = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "scripts-user")
        .unwrap()
        .clone();
    assert_eq!(step["outcome"], "error");
    assert_eq!(step["scripts"][0]["name"], "runcmd");
    assert_eq!(step["scripts"][0]["exit_code"], 7);
    assert_eq!(guest.read("/etc/still"), "written");
}

#[test]
fn api_answering_500_then_200() {
    let guest = Guest::new();
    guest
        .server
        .fail("/openstack/latest/meta_data.json", Fault::Status(500), 1);
    guest.server.fail("/openstack", Fault::Status(503), 1);
    guest
        .server
        .fail("/openstack/latest/user_data", Fault::Close, 1);
    guest.user_data("#cloud-config\nhostname: retried\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.server.hits("/openstack"), 2);
    assert_eq!(guest.server.hits("/openstack/latest/meta_data.json"), 2);
    assert_eq!(guest.server.hits("/openstack/latest/user_data"), 2);
    assert_eq!(guest.read("/etc/hostname"), "retried\n");
    assert!(
        stderr.contains("attempt=1")
            && stderr.contains("HTTP 500")
            && stderr.contains("failed; retrying"),
        "{stderr}"
    );
}

#[test]
fn api_never_answering_hits_the_deadline() {
    let guest = Guest::new();
    // The image's own configuration carries an every-boot command: it runs without metadata.
    guest.config(
        "deadline_secs: 3\nrequest_timeout_secs: 1\nbootcmd:\n  - echo ran > bootcmd-ran\n",
    );
    guest
        .server
        .fail("/openstack", Fault::Hang(Duration::from_secs(30)), 100);
    let start = Instant::now();
    let (code, stderr) = guest.run();
    let elapsed = start.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    let (outcome, message) = guest.step("meta-data");
    assert_eq!(outcome, "error");
    assert!(
        message.contains("Gave up after")
            && message.contains("deadline reached")
            && message.contains("timeout"),
        "{message}"
    );
    assert!(guest.server.hits("/openstack") >= 2, "retried");
    let status = guest.status();
    assert_eq!(status["status"], "error");
    assert!(status["instance_id"].is_null());
    // The every-boot steps need no metadata and still run, from the image's configuration;
    // everything that needs the instance is skipped, saying why.
    let every_boot = [
        "bootcmd",
        "boothooks",
        "growpart",
        "resizefs",
        "hostname",
        "etc-hosts",
        "ssh-host-keys",
        "disable-ec2-metadata",
        "scripts-per-boot",
        "final-message",
    ];
    for step in status["steps"].as_array().unwrap().iter().skip(2) {
        let name = step["name"].as_str().unwrap();
        if every_boot.contains(&name) {
            assert_ne!(step["outcome"], "error", "{step}");
            assert_ne!(
                step["message"], "no instance metadata (meta-data failed)",
                "{step}"
            );
        } else {
            assert_eq!(step["outcome"], "skipped", "{step}");
            assert_eq!(step["message"], "no instance metadata (meta-data failed)");
        }
    }
    assert_eq!(
        guest.read("/bootcmd-ran"),
        "ran\n",
        "the image's bootcmd ran"
    );
    assert_eq!(guest.read("/etc/hostname"), "localhost\n", "untouched");
    assert_eq!(guest.metaboot(&["status"]).status.code(), Some(1));
    assert_nothing_torn(&guest);
}

#[test]
fn connection_refused_is_retried_until_the_deadline() {
    let guest = Guest::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    guest.config(&format!(
        "deadline_secs: 2\nmetadata_url: http://{closed}\n"
    ));
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    let (_, message) = guest.step("meta-data");
    assert!(
        message.contains("Gave up after") && message.contains(&closed.to_string()),
        "{message}"
    );
}

#[test]
fn missing_meta_data_and_forbidden_user_data_are_not_retried() {
    let guest = Guest::new();
    guest
        .server
        .fail("/openstack/latest/user_data", Fault::Status(403), 1);
    guest.user_data("#cloud-config\nhostname: never\n");
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    assert_eq!(guest.server.hits("/openstack/latest/user_data"), 1);
    let (_, message) = guest.step("user-data");
    assert!(message.contains("HTTP 403"), "{message}");
    // A definite refusal, the same at every boot: the instance is taken up without its user
    // data, as cloud-init takes it for absent (never provisioned otherwise).
    assert_eq!(guest.read("/etc/hostname"), "test\n", "{log}");
    assert_eq!(guest.step("users-groups").0, "ok", "{log}");

    let guest = Guest::new();
    std::fs::remove_file(guest.tree.join("openstack/latest/meta_data.json")).unwrap();
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    assert_eq!(guest.server.hits("/openstack/latest/meta_data.json"), 1);
    assert!(
        guest
            .step("meta-data")
            .1
            .contains("meta_data.json is missing (404)")
    );
}

#[test]
fn optional_documents_absent_is_fine() {
    let guest = Guest::new();
    let (code, _) = guest.run();
    assert_eq!(code, 0);
    for path in [
        "/openstack/latest/user_data",
        "/openstack/latest/vendor_data.json",
        "/openstack/latest/network_data.json",
    ] {
        assert_eq!(guest.server.hits(path), 1, "{path}: 404 is not retried");
    }
}

#[test]
fn oversized_user_data_and_bad_urls() {
    let guest = Guest::new();
    guest.user_data(vec![b'#'; 1024 * 1024 + 1]);
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    assert!(
        guest
            .step("user-data")
            .1
            .contains("body larger than 1048576 bytes")
    );

    let guest = Guest::new();
    let out = guest.metaboot(&["run", "--url", "http://metadata.internal"]);
    assert_eq!(out.status.code(), Some(1));
    let (_, message) = guest.step("meta-data");
    assert!(
        message.contains("the host must be an IP address"),
        "{message}"
    );
}

#[test]
fn malformed_metaboot_yaml_is_reported_and_defaults_used() {
    let guest = Guest::new();
    std::fs::write(
        guest.path("/etc/metaboot/metaboot.yaml"),
        format!(
            "metadata_url: {}\ndeadline_secs: [oops\n",
            guest.server.url()
        ),
    )
    .unwrap();
    let out = guest.metaboot(&["run", "--url", &guest.server.url()]);
    assert_eq!(out.status.code(), Some(1));
    let (outcome, message) = guest.step("config");
    assert_eq!(outcome, "error");
    assert!(message.contains("Invalid YAML"), "{message}");
    assert_eq!(
        guest.read("/etc/hostname"),
        "test\n",
        "the rest ran on defaults"
    );
}

/// SHA-512 crypt of "app" (`openssl passwd -6 -salt saltsaltsalt app`): a fixed hash keeps
/// /etc/shadow byte-identical between runs.
const APP_HASH: &str = "$6$saltsaltsalt$MYo62ywb2xF3Gl.HK/AP/WuuzxrWzHE5uT/hSwIel8ROafB1RnHTXaeOrcrCV3ZxrgArbtzeRSXbhLse2Inap0";
/// `write_files` entries of the crash tests: enough renames that a kill lands between them.
const CRASH_FILES: usize = 40;

/// User data that changes the account files, keys, hostname and [`CRASH_FILES`] files.
fn crash_user_data() -> String {
    let mut text = format!(
        "#cloud-config\nhostname: crashed\nusers:\n  - name: app\n    passwd: '{APP_HASH}'\n    \
         lock_passwd: false\n    ssh_authorized_keys: ['{USER_KEY}']\nwrite_files:\n"
    );
    for n in 0..CRASH_FILES {
        text.push_str(&format!(
            "  - path: /etc/app.d/f{n:03}\n    content: new {n}\n"
        ));
    }
    text
}

/// One `renameat` of a run, as `strace -y` shows it: the directory and the final name.
fn renames_of(trace: &str) -> Vec<PathBuf> {
    trace
        .lines()
        .filter(|line| line.contains("renameat(") && line.ends_with("= 0"))
        .filter_map(|line| {
            // renameat(5</root/etc>, ".hosts.metaboot-1-2.tmp", 5</root/etc>, "hosts") = 0
            let args = line.split_once("renameat(")?.1;
            let dir = args.rsplit_once(", ")?.0.rsplit_once(", ")?.1;
            let dir = dir.split_once('<')?.1.trim_end_matches('>');
            let name = args.rsplit_once(", \"")?.1.split_once('"')?.0;
            Some(Path::new(dir).join(name))
        })
        .collect()
}

/// The files under `root` that a run's report does not vary (timestamps), with their bytes.
fn contents(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    files_under(root)
        .into_iter()
        .filter(|path| !path.to_string_lossy().contains(".metaboot-"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path.strip_prefix(root).unwrap().to_owned(), bytes)
        })
        .collect()
}

fn cp_a(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    testutil::run(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn a_kill_between_two_renames_leaves_each_file_old_or_new_in_write_order() {
    if !testutil::require_tool("strace") {
        return;
    }
    let guest = Guest::new();
    guest.user_data(crash_user_data());
    let work = tempfile::tempdir().unwrap();
    let pristine = work.path().join("pristine");
    cp_a(&guest.root, &pristine);
    let old = contents(&pristine);
    // A clean run, traced: which file each rename put in place, in order.
    let clean = work.path().join("clean");
    cp_a(&pristine, &clean);
    let trace = work.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=renameat,renameat2", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_metaboot"))
        .args(["run", "--root"])
        .arg(&clean)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let renames: Vec<PathBuf> = renames_of(&std::fs::read_to_string(&trace).unwrap())
        .into_iter()
        .map(|path| path.strip_prefix(&clean).unwrap().to_owned())
        .collect();
    assert!(renames.len() > CRASH_FILES, "{renames:?}");
    eprintln!("a clean run renames {} files: {renames:?}", renames.len());
    let new = contents(&clean);
    let once = |path: &PathBuf| renames.iter().filter(|p| *p == path).count() == 1;
    let killed = work.path().join("killed");
    for n in 1..=renames.len() {
        cp_a(&pristine, &killed);
        // SIGKILL on entering the n-th renameat: the n-1 before it happened, it did not.
        let out = Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=renameat,renameat2",
            ])
            .arg(format!("--inject=renameat,renameat2:signal=KILL:when={n}"))
            .arg(env!("CARGO_BIN_EXE_metaboot"))
            .args(["run", "--root"])
            .arg(&killed)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "kill at rename {n} did not stop the run"
        );
        let now = contents(&killed);
        for (path, bytes) in &now {
            if path.starts_with("var") {
                continue; // the agent's own records: times, the report
            }
            let was = old.get(path);
            let will = new.get(path);
            assert!(
                Some(bytes) == was || Some(bytes) == will,
                "kill at rename {n}: {} is neither old nor new: {:?}",
                path.display(),
                String::from_utf8_lossy(bytes)
            );
            if once(path) && was != will {
                let done = renames[..n - 1].contains(path);
                assert_eq!(
                    Some(bytes) == will,
                    done,
                    "kill at rename {n}: {} is {} though its rename came {}",
                    path.display(),
                    if done { "old" } else { "new" },
                    if done { "before" } else { "after" }
                );
            }
        }
        for path in old.keys() {
            assert!(
                now.contains_key(path),
                "kill at rename {n}: {} vanished",
                path.display()
            );
        }
        // The report says "done" only once everything else is in place.
        let status = std::fs::read_to_string(killed.join("var/lib/metaboot/status.json"))
            .unwrap_or_default();
        assert!(
            !status.contains("\"status\": \"done\""),
            "kill at rename {n}: {status}"
        );
    }
    // The run after a kill completes the job.
    let out = Command::new(env!("CARGO_BIN_EXE_metaboot"))
        .args(["run", "--root"])
        .arg(&killed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<_> = contents(&killed)
        .into_iter()
        .filter(|(path, _)| !path.starts_with("var"))
        .collect();
    let expected: Vec<_> = new
        .into_iter()
        .filter(|(path, _)| !path.starts_with("var"))
        .collect();
    assert_eq!(after, expected);
}

/// `metadata_urls`: tried in order, the first that answers wins (an unanswered one is skipped
/// at once, not retried first); when none answers, the run gives up naming them all. A
/// link-local URL without a zone, on a system with no interface to scope it to, is left out
/// with a warning.
#[test]
fn the_first_metadata_url_that_answers_wins() {
    let closed = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (first, second) = (closed(), closed());
    let write = |guest: &Guest, urls: &str| {
        std::fs::write(
            guest.path("/etc/metaboot/metaboot.yaml"),
            format!("metadata_urls: [{urls}]\ndeadline_secs: 3\nrequest_timeout_secs: 2\n"),
        )
        .unwrap();
    };
    let guest = Guest::new();
    write(
        &guest,
        &format!(
            "'http://[fe80::a9fe:a9fe]', http://{first}, {}",
            guest.server.url()
        ),
    );
    let (code, _) = guest.run();
    assert_eq!(code, 0, "{}", guest.status());
    assert_eq!(guest.status()["source"], "metadata-service");
    assert_eq!(guest.read("/etc/hostname"), "test\n");
    let (_, config) = guest.step("config");
    assert!(
        config.contains(&format!("http://{first}, {}", guest.server.url())),
        "{config}"
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("http://[fe80::a9fe:a9fe]") && warnings.contains("left out"),
        "{warnings}"
    );

    let guest = Guest::new();
    write(&guest, &format!("http://{first}, http://{second}"));
    let (code, _) = guest.run();
    assert_eq!(code, 1);
    let (_, message) = guest.step("meta-data");
    assert!(
        message.contains("none of the metadata URLs answered")
            && message.contains(&first.to_string())
            && message.contains(&second.to_string()),
        "{message}"
    );
}

/// An `#include` URL that never answers is given up after `MAX_INCLUDE_FETCH_TIME` (10 s), not
/// the run's whole deadline: the include after it is still fetched and applied.
#[test]
fn an_include_that_never_answers_leaves_the_next_its_time() {
    let guest = Guest::new();
    guest.config("deadline_secs: 120\nrequest_timeout_secs: 1\n");
    guest.serve("good.yaml", b"#cloud-config\nhostname: included\n");
    guest.serve("dead.yaml", b"never served");
    guest.server.fail(
        "/openstack/latest/dead.yaml",
        Fault::Hang(Duration::from_secs(5)),
        1000,
    );
    let base = format!("{}/openstack/latest", guest.server.url());
    guest.user_data(format!("#include\n{base}/dead.yaml\n{base}/good.yaml\n"));
    let start = Instant::now();
    let (code, stderr) = guest.run();
    let took = start.elapsed();
    assert_eq!(code, 1, "the dead include is an error: {stderr}");
    assert_eq!(guest.read("/etc/hostname"), "included\n", "{stderr}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    let (_, message) = guest.step("user-data");
    assert!(message.contains("dead.yaml"), "{message}");
}
