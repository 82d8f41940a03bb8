//! Helpers for tests that need a system tool: the unit tests' (`crate::testutil`) and the
//! integration tests' (`tests/support` includes this file).

/// True when `tool` runs (`tool --version` or any exit status). When it does not: under
/// `CI=true` the test fails; elsewhere it is skipped with a printed reason.
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        missing(tool, "is not installed");
    }
    found
}

/// A test's prerequisite `what` is missing (`why`): under `CI=true` (or `CI=1`, as the
/// end-to-end suite's `tests/src/prerequisite.rs` reads it) the test fails; elsewhere
/// it is skipped with a printed reason (the caller returns).
pub fn missing(what: &str, why: &str) {
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "{what} is required in CI (scripts/install-test-deps installs what the tests need)"
    );
    eprintln!("skipping: {what} {why}");
}

/// True when the test runs as root (owners are only changed, and only observable, as root).
/// Without root: under `CI=true` the test fails; elsewhere it is skipped (or its owner checks
/// left out) with a printed reason.
pub fn require_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        missing("root", "is needed: the test is not running as root");
    }
    root
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Partitions the disk image `image` with the sfdisk `script` (the image file is not a
/// device: the kernel is not told).
pub fn sfdisk(image: &std::path::Path, script: &str) {
    let mut child = std::process::Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sfdisk: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk refused {script}");
}

/// Runs `f` on a thread that, like every process it starts, may run on CPU 0 only.
pub fn on_one_cpu<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut only = nix::sched::CpuSet::new();
                only.set(0).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &only).unwrap();
                f()
            })
            .join()
            .unwrap()
    })
}
