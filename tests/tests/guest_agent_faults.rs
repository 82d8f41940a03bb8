//! The guest agent (`metaboot run --root TMP`) against the real chain when things go wrong:
//! the metadata service down at boot and then up (retries to success), down past the deadline
//! (a clear failure), killed with SIGKILL at random points (every system file is the old or the
//! new one, never a mix, files are new in the order the run wrote them, and the next run
//! completes), and a full disk (the old file is kept, the error reported).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use metaboot_tests::chain::{Chain, Scope, free_port};
use metaboot_tests::prerequisite::{require_command, require_root};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKD8AT/olhGf1Bd+7RQTBj5v/r1DvKKFbPsG52AG4gZU guest@faults";
/// SHA-512 crypt of "faults" (`openssl passwd -6 -salt saltsaltsalt faults`): a fixed hash
/// keeps /etc/shadow byte-identical between runs.
const HASH: &str = "$6$saltsaltsalt$ZU3k6oX3Op1wvlwTViJNfkWIgkE1hfbi1yy2B86ojcPicIQyQ/whr6nl1W/omwP.xB.iP987NpkQPbH8RTv9s1";
/// The guest connects from 127.0.0.1.
const GUEST_IP: &str = "127.0.0.1";
/// The system files a run rewrites, each exactly once.
const WATCHED: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/hostname",
    "root/.ssh/authorized_keys",
];
/// SIGKILLs at random points, each from the old state.
const KILLS: usize = 50;
/// `write_files` entries (`/etc/app.d/fNNN`) of each run: they widen the window in which the
/// run renames its files into place, and are written in this order.
const APP_FILES: usize = 100;
/// SIGKILLs in a row on the same root, each run resuming what the last one left.
const KILLS_IN_A_ROW: usize = 20;

fn user_data() -> String {
    format!(
        "#cloud-config
hostname: survivor
manage_etc_hosts: true
disable_root: false
ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfaults user@laptop
users:
  - name: app
    passwd: '{HASH}'
    lock_passwd: false
    shell: /bin/sh
write_files:
  - path: /etc/app.conf
    content: new
{}",
        (0..APP_FILES)
            .map(|n| format!("  - path: /etc/app.d/f{n:03}\n    content: new {n}\n"))
            .collect::<String>()
    )
}

/// How many of the `/etc/app.d` files are new under `root`; panics unless each is absent
/// (old) or complete, and unless the new ones are the first ones written.
fn app_files_new(root: &Path, what: &str) -> usize {
    let new: Vec<bool> = (0..APP_FILES)
        .map(
            |n| match std::fs::read_to_string(root.join(format!("etc/app.d/f{n:03}"))) {
                Err(_) => false,
                Ok(text) => {
                    assert_eq!(text, format!("new {n}"), "{what}: f{n:03} is torn");
                    true
                }
            },
        )
        .collect();
    let count = new.iter().filter(|n| **n).count();
    assert!(
        new[..count].iter().all(|n| *n),
        "{what}: files are new out of the order they were written: {new:?}"
    );
    count
}

/// The guest agent, built once (dev profile).
fn metaboot() -> PathBuf {
    metaboot_tests::guest_agent::binary()
}

/// The registry of one guest at 127.0.0.1 behind a router (no process yet).
fn registry(user_data: &[u8]) -> (Chain, String) {
    let chain = Chain::new().unwrap();
    let key = chain.path().join("mykey.pub");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let data = chain.path().join("user_data");
    std::fs::write(&data, user_data).unwrap();
    let id = |v: serde_json::Value, field: &str| v[field].as_str().unwrap().to_owned();
    let net = id(
        chain
            .registry(&[
                "network",
                "create",
                "guests",
                "--cidr",
                "127.0.0.0/24",
                "--gateway",
                "127.0.0.254",
                "--dhcp-ip",
                "127.0.0.253",
            ])
            .unwrap(),
        "id",
    );
    let router = id(
        chain
            .registry(&["router", "create", "r1", "--network", &net])
            .unwrap(),
        "id",
    );
    chain
        .registry(&[
            "instance",
            "create",
            "test",
            "--network",
            "guests",
            "--ip",
            GUEST_IP,
            "--key-file",
            key.to_str().unwrap(),
            "--user-data",
            data.to_str().unwrap(),
        ])
        .unwrap();
    (chain, router)
}

/// A guest root in its first-boot state, its metadata URL `url`, retrying until `deadline`.
fn make_root(dir: &Path, url: &str, deadline_secs: u64) {
    metaboot_tests::guest_root::first_boot(
        dir,
        &[
            ("etc/app.conf", "old\n"),
            ("root/.ssh/authorized_keys", "ssh-ed25519 AAAAold old@key\n"),
        ],
        &format!("metadata_url: {url}\ndeadline_secs: {deadline_secs}\nrequest_timeout_secs: 2\n"),
    );
}

fn run_command(root: &Path) -> Command {
    let mut cmd = Command::new(metaboot());
    cmd.arg("run")
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn status(root: &Path) -> (Option<i32>, String) {
    let out = Command::new(metaboot())
        .args(["status", "--root"])
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn snapshot(root: &Path) -> Vec<Option<Vec<u8>>> {
    WATCHED
        .iter()
        .map(|path| std::fs::read(root.join(path)).ok())
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_ran(out: &Output, chain: &Chain) {
    assert!(
        out.status.success(),
        "metaboot run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        chain.logs()
    );
}

#[test]
fn service_down_at_boot_then_up_is_retried_to_success() {
    let (mut chain, router) = registry(user_data().as_bytes());
    chain.start().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path(), &format!("http://{addr}"), 60);
    // Nothing listens yet: the guest boots into connection refused.
    let started = Instant::now();
    let run = run_command(dir.path()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    chain
        .start_proxy_at(addr, &Scope::Router(router), &[])
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_ran(&out, &chain);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(),
        "survivor\n"
    );
    let (code, text) = status(dir.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "it did retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn api_down_behind_a_running_proxy_then_up_is_retried_to_success() {
    let (mut chain, router) = registry(user_data().as_bytes());
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    chain.stop_api();
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path(), &format!("http://{proxy}"), 60);
    let run = run_command(dir.path()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    chain.start_api().unwrap();
    let out = run.wait_with_output().unwrap();
    assert_ran(&out, &chain);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("503"), "it saw the 503: {stderr}");
    assert_eq!(status(dir.path()).0, Some(0));
}

#[test]
fn service_down_past_the_deadline_fails_clearly_and_touches_nothing() {
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path(), &format!("http://{closed}"), 3);
    let before = snapshot(dir.path());
    let started = Instant::now();
    let out = run_command(dir.path()).output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let (code, text) = status(dir.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("status: error"), "{text}");
    assert!(
        text.contains("Gave up after") && text.contains(&closed.to_string()),
        "the reason names the service: {text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("var/lib/metaboot/status.json")).unwrap(),
    )
    .unwrap();
    let steps = json["steps"].as_array().unwrap();
    // What needs no metadata (reading the configuration, the final message on the console)
    // is done; the rest says why not.
    assert_eq!(steps[0]["name"], "config");
    assert_eq!(steps[0]["outcome"], "ok", "{json:#}");
    assert_eq!(steps[1]["outcome"], "error");
    for step in &steps[2..] {
        let expected = if step["name"] == "final-message" {
            "ok"
        } else {
            "skipped"
        };
        assert_eq!(step["outcome"], expected, "{step}");
    }
    assert_eq!(snapshot(dir.path()), before, "system files untouched");
    // The service comes back: the next boot completes.
    let (mut chain, router) = registry(user_data().as_bytes());
    chain.start().unwrap();
    chain
        .start_proxy_at(closed, &Scope::Router(router), &[])
        .unwrap();
    let out = run_command(dir.path()).output().unwrap();
    assert_ran(&out, &chain);
    assert_eq!(status(dir.path()).0, Some(0));
}

/// Sends SIGKILL to our own child.
fn kill9(child: &std::process::Child) {
    // The PID is our child's and it has not been reaped yet: it cannot be reused.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

/// A pseudo-random number in 0..n (xorshift; reproducible from the printed seed).
fn next(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % n.max(1)
}

fn describe(files: &[Option<Vec<u8>>]) -> String {
    WATCHED
        .iter()
        .zip(files)
        .map(|(path, bytes)| {
            format!(
                "{path}: {:?}",
                bytes.as_deref().map(String::from_utf8_lossy)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sigkill_at_random_points_never_tears_a_file() {
    let (mut chain, router) = registry(user_data().as_bytes());
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pristine = work.path().join("pristine");
    make_root(&pristine, &format!("http://{proxy}"), 20);
    let old = snapshot(&pristine);
    // The new state, and how long a clean run takes (the fastest of a few).
    let clean = work.path().join("clean");
    let mut run_time = Duration::MAX;
    for _ in 0..3 {
        copy_tree(&pristine, &clean);
        let started = Instant::now();
        let out = run_command(&clean).output().unwrap();
        run_time = run_time.min(started.elapsed());
        assert_ran(&out, &chain);
    }
    let new = snapshot(&clean);
    for (i, path) in WATCHED.iter().enumerate() {
        assert_ne!(
            old[i], new[i],
            "{path} must change for the test to mean anything"
        );
    }
    let seed = u64::from(std::process::id()) * 2_654_435_761 + 1;
    eprintln!("kill seed {seed}, clean run {run_time:?}");
    let mut rng = seed;
    let window = u64::try_from(run_time.as_micros()).unwrap_or(u64::MAX);
    let delay_in = move |rng: &mut u64| next(rng, window);
    // Kills that landed while the run was renaming its files into place.
    let mid_rename = std::cell::Cell::new(0);
    let check = |root: &Path, what: &str| -> usize {
        let now = snapshot(root);
        for (i, path) in WATCHED.iter().enumerate() {
            assert!(
                now[i] == old[i] || now[i] == new[i],
                "{what}: {path} is neither old nor new:\n{:?}\nold/new:\n{}\n{}",
                now[i].as_deref().map(String::from_utf8_lossy),
                describe(&old),
                describe(&new)
            );
        }
        // passwd goes after shadow and group: a user never exists without them.
        let is_new = |path: &str| {
            let i = WATCHED.iter().position(|p| *p == path).unwrap();
            now[i] == new[i]
        };
        if is_new("etc/passwd") {
            assert!(
                is_new("etc/shadow") && is_new("etc/group"),
                "{what}: passwd is new before shadow and group:\n{}",
                describe(&now)
            );
        }
        let apps = app_files_new(root, what);
        if apps > 0 && apps < APP_FILES {
            mid_rename.set(mid_rename.get() + 1);
        }
        let status =
            std::fs::read_to_string(root.join("var/lib/metaboot/status.json")).unwrap_or_default();
        if status.contains("\"status\": \"done\"") {
            assert!(
                now == new && apps == APP_FILES,
                "{what}: status.json says done before every file is in place"
            );
        }
        now.iter().zip(&new).filter(|(a, b)| a == b).count()
    };
    let root = work.path().join("root");
    let mut killed_early = 0;
    // How many files were already new at each kill: kills mid-way leave some of each.
    let mut progress = vec![0; WATCHED.len() + 1];
    for kill in 0..KILLS {
        copy_tree(&pristine, &root);
        let child = run_command(&root).spawn().unwrap();
        let delay = delay_in(&mut rng);
        std::thread::sleep(Duration::from_micros(delay));
        kill9(&child);
        let out = child.wait_with_output().unwrap();
        if out.status.code().is_some() {
            killed_early += 1;
        }
        progress[check(&root, &format!("kill {kill} after {delay} µs"))] += 1;
    }
    eprintln!(
        "system files already new at each kill (0..={}): {progress:?}",
        WATCHED.len()
    );
    eprintln!(
        "{killed_early} of {KILLS} runs finished before their kill, {} were killed between \
         two renames of /etc/app.d",
        mid_rename.get()
    );
    assert!(killed_early < KILLS / 2, "most runs must really be killed");
    // Kills in a row on one root, then a clean run: it ends in the new state.
    copy_tree(&pristine, &root);
    for kill in 0..KILLS_IN_A_ROW {
        let child = run_command(&root).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(delay_in(&mut rng)));
        kill9(&child);
        let _ = child.wait_with_output();
        check(&root, &format!("kill {kill} in a row"));
    }
    let out = run_command(&root).output().unwrap();
    assert_ran(&out, &chain);
    assert_eq!(
        describe(&snapshot(&root)),
        describe(&new),
        "the run after the kills completes the job"
    );
    assert_eq!(status(&root).0, Some(0));
    // The killed runs' temp files are gone: the clean run cleared each directory it wrote to.
    let leftovers = temp_files(&root);
    assert!(
        leftovers.is_empty(),
        "temp files after the kills: {leftovers:?}"
    );
}

/// Temp files of atomic writes (`.metaboot-` in the name) anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains(".metaboot-") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Size of the small file system the disk-full test runs on.
const TMPFS_SIZE: &str = "8m";
/// What is left free on it when the guest agent starts.
const FREE_KIB: u64 = 512;

#[test]
fn a_full_disk_keeps_the_old_file_and_reports_the_error() {
    if !(require_root() && require_command("unshare") && require_command("mount")) {
        return;
    }
    // write_files content that cannot fit in what is left free.
    let big = "x".repeat(40_000);
    let user_data = format!(
        "#cloud-config\nhostname: survivor\nwrite_files:\n  - path: /etc/app.conf\n    content: |\n{}\n",
        (0..30)
            .map(|_| format!("      {big}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The user data itself must stay under the registry's limit: gzip it.
    let gz = {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), user_data.as_bytes()).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap().stdout
    };
    let (mut chain, router) = registry(&gz);
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    make_root(&source, &format!("http://{proxy}"), 20);
    let mountpoint = work.path().join("small");
    let result = work.path().join("result");
    std::fs::create_dir_all(&mountpoint).unwrap();
    std::fs::create_dir_all(&result).unwrap();
    // Everything happens in a private mount namespace: the tmpfs never shows outside it and
    // goes away with it; the outcome is copied out first.
    let script = format!(
        "set -e
mount -t tmpfs -o size={TMPFS_SIZE} tmpfs \"$1\"
cp -a \"$2/.\" \"$1/\"
head -c {FREE_KIB}k /dev/zero > \"$1/reserve\"
head -c 64m /dev/zero > \"$1/filler\" 2>/dev/null || true
rm \"$1/reserve\"
set +e
\"$3\" run --root \"$1\" 2> \"$4/stderr\"
echo $? > \"$4/exit\"
df -k \"$1\" > \"$4/df\"
rm -f \"$1/filler\"
cp -a \"$1/.\" \"$4/root\"
"
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(&mountpoint)
        .arg(&source)
        .arg(metaboot())
        .arg(&result)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |path: &str| std::fs::read_to_string(result.join(path)).unwrap_or_default();
    let stderr = read("stderr");
    assert_eq!(
        read("exit").trim(),
        "1",
        "the run failed: {stderr}\n{}",
        read("df")
    );
    let root = result.join("root");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "old\n",
        "the old file is kept"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "survivor\n",
        "what fits is still written"
    );
    let (code, text) = status(&root);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("write-files") && text.contains("No space left on device"),
        "{text}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(root.join("etc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".metaboot-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert!(
        !Path::new(&mountpoint).join("etc").exists(),
        "the tmpfs stayed private"
    );
}
