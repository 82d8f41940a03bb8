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

/// A system call that [`pausing`] holds before it runs.
pub struct Paused {
    /// Its arguments.
    pub args: [u64; 6],
}

impl Paused {
    /// What the descriptor in argument `n` names (`/proc/self/fd`), `None` for none (`AT_FDCWD`,
    /// a closed one).
    pub fn fd_path(&self, n: usize) -> Option<std::path::PathBuf> {
        // An `int` argument is the register's low 32 bits, as the kernel reads it.
        let fd = self.args[n] as i32;
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
    }
}

/// Runs `f` on a thread of its own whose calls of `syscall` (a `libc::SYS_*` number) each wait,
/// before they run, until `meanwhile` has run on the caller's thread: what another process
/// would do in a race, done at one chosen place. A seccomp filter hands the calls over
/// (`SECCOMP_RET_USER_NOTIF`); it holds that thread alone, and ends with it. `None` (the test
/// skipped, see [`missing`]) when the kernel does not allow the filter.
pub fn pausing<T: Send>(
    syscall: libc::c_long,
    mut meanwhile: impl FnMut(&Paused),
    f: impl FnOnce() -> T + Send,
) -> Option<T> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let nr = u32::try_from(syscall).expect("a system call number");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let listener = notify_filter(nr);
            let installed = listener.is_ok();
            tx.send(listener).unwrap();
            installed.then(f)
        });
        let listener = match rx.recv().unwrap() {
            // SAFETY: seccomp(2) returned this descriptor for the caller to own.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(err) => {
                missing(
                    "seccomp user notification",
                    &format!("is not allowed: {err}"),
                );
                return worker.join().unwrap();
            }
        };
        loop {
            let mut ready = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let n = unsafe { libc::poll(&mut ready, 1, 50) };
            if n == 0 || ready.revents & libc::POLLIN == 0 {
                // Nothing to hand over: the thread may have ended (the filter with it).
                if worker.is_finished() || ready.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    break;
                }
                continue;
            }
            let mut call = libc::seccomp_notif {
                id: 0,
                pid: 0,
                flags: 0,
                data: libc::seccomp_data {
                    nr: 0,
                    arch: 0,
                    instruction_pointer: 0,
                    args: [0; 6],
                },
            };
            // SAFETY: the ioctl fills a zeroed `seccomp_notif` of the kernel's layout.
            if unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_RECV,
                    &mut call,
                )
            } != 0
            {
                continue; // The call was interrupted meanwhile (ENOENT): nothing to hold.
            }
            meanwhile(&Paused {
                args: call.data.args,
            });
            let resume = libc::seccomp_notif_resp {
                id: call.id,
                val: 0,
                error: 0,
                flags: u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap(),
            };
            // SAFETY: the ioctl reads a `seccomp_notif_resp` that lives across the call. An
            // error (the call was interrupted) leaves nothing held.
            unsafe {
                libc::ioctl(
                    listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_SEND,
                    &resume,
                )
            };
        }
        // Closed: a call the thread makes from now on fails (ENOSYS) rather than waits.
        drop(listener);
        worker.join().unwrap()
    })
}

/// Installs, on the calling thread only, a seccomp filter that hands its calls of system call
/// `nr` to the returned listener descriptor and lets every other call through.
fn notify_filter(nr: u32) -> std::io::Result<i32> {
    let code = |bits: u32| u16::try_from(bits).unwrap();
    let filter = [
        // The system call's number (`seccomp_data.nr`, at offset 0). The thread makes native
        // calls only, so the architecture is not checked.
        libc::sock_filter {
            code: code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: code(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_USER_NOTIF,
        },
        libc::sock_filter {
            code: code(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments; no_new_privs holds this thread alone, which execs
    // nothing.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `program` points at `filter`, both alive for the call, which copies them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &program,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::try_from(fd).unwrap())
}
