//! Checks from outside: OpenSSH's client, run inside a namespace on the guest's tenant network,
//! logging in with a key or (driven by `SSH_ASKPASS`) with a password; a password login counts
//! only when ssh asked the askpass helper for it ([`ASKED_ENV`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::atomic;
use crate::check::ssh_log;
use crate::lab::netns;
use crate::process::output_with_timeout;
use crate::wait::wait_until_ok;

/// Deadline of one ssh command (connect + login + command).
pub const SSH_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// ssh's own TCP connect timeout, in seconds.
pub const CONNECT_TIMEOUT_SECS: u32 = 5;

/// Attempts at a command whose connection failed (a loaded guest's sshd may miss ssh's banner
/// deadline while the provisioner runs): the first and this many more.
pub const CONNECTION_RETRIES: u32 = 3;

/// Pause between those attempts.
pub const CONNECTION_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How long the guest's SSH server may take to accept the first key login after "provisioned".
pub const SSH_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable the askpass helper reads the password from (not visible in `ps`).
pub const PASSWORD_ENV: &str = "METABOOT_SSH_PASSWORD";

/// The environment variable naming the file the askpass helper creates when ssh asks it for
/// the password: a login by `keyboard-interactive` may ask nothing (a PAM stack that lets the
/// user in without a prompt), and counts as a password login only when the file is there.
pub const ASKED_ENV: &str = "METABOOT_SSH_ASKED";

/// Numbers each password login's [`ASKED_ENV`] file apart (checks run side by side).
static ASKED_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Namespace on the guest's network the client runs in.
    pub netns: String,
    /// The guest's address.
    pub ip: IpAddr,
    /// The user.
    pub user: String,
}

/// What a remote command did.
#[derive(Debug, Clone)]
pub struct SshOutput {
    /// ssh's exit code: the remote command's, or 255 when ssh itself failed.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error: ssh's errors and the remote command's, without ssh's `-v` log
    /// ([`ssh_log::without_log`]).
    pub stderr: String,
    /// The method ssh logged in with (`publickey`, `password`, …); `None` when it did not.
    pub method: Option<String>,
}

impl SshOutput {
    /// Whether ssh and the remote command succeeded.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// A one-line summary for reports.
    pub fn summary(&self) -> String {
        let err = self.stderr.trim();
        let out = self.stdout.trim();
        let text = if err.is_empty() { out } else { err };
        format!(
            "exit {}: {}",
            self.code,
            text.lines().take(3).collect::<Vec<_>>().join(" | ")
        )
    }
}

fn ssh(target: &SshTarget) -> Command {
    let mut cmd = netns::exec(&target.netns, "ssh");
    cmd.args(["-F", "/dev/null"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        // Its log, for the line naming the method that logged in ([`ssh_log`]); reports show
        // what `LogLevel=ERROR` would.
        .arg("-v")
        .args(["-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}")]);
    cmd
}

impl SshOutput {
    /// This output, or when ssh logged in with none of `methods` (or the command ran and ssh
    /// names no method), a failure of ssh (exit 255) that says so.
    fn logged_in_with(self, methods: &[&str]) -> Self {
        let ran = self.method.is_some() || self.code != 255;
        match ssh_log::wrong_method(self.method.as_deref(), methods) {
            Some(why) if ran => Self {
                code: 255,
                stderr: format!("{why}\n{}", self.stderr),
                ..self
            },
            _ => self,
        }
    }

    /// This output, or when ssh logged in with a password method (the command ran) but never
    /// asked the askpass helper for the password (`asked` false), a failure of ssh (exit 255)
    /// that says so: the guest let the user in without checking a password.
    fn password_asked(self, asked: bool) -> Self {
        let by_password = self
            .method
            .as_deref()
            .is_some_and(|m| PASSWORD_METHODS.contains(&m));
        if asked || !by_password || self.code == 255 {
            return self;
        }
        let method = self.method.as_deref().unwrap_or_default();
        Self {
            code: 255,
            stderr: format!(
                "ssh logged in with \"{method}\" but never asked for the password (the askpass \
                 helper did not run): the guest lets the user in without checking one, so this \
                 login proves nothing; make its PAM stack ask for the password\n{}",
                self.stderr
            ),
            ..self
        }
    }

    /// Whether ssh failed before the command ran because the connection did not come up (not
    /// a refused login, not the command's own failure).
    pub fn connection_failed(&self) -> bool {
        const SIGNS: [&str; 5] = [
            "Connection timed out",
            "banner exchange",
            "Connection refused",
            "Connection reset",
            "Connection closed",
        ];
        self.code == 255 && SIGNS.iter().any(|sign| self.stderr.contains(sign))
    }

    /// The authentication methods the server still offered when it refused the login, from
    /// ssh's `user@host: Permission denied (publickey,password).`; `None` when ssh failed
    /// otherwise (or the command ran).
    pub fn refused_methods(&self) -> Option<Vec<&str>> {
        if self.code != 255 {
            return None;
        }
        let (_, after) = self.stderr.rsplit_once("Permission denied (")?;
        let (methods, _) = after.split_once(')')?;
        Some(methods.split(',').map(str::trim).collect())
    }

    /// Whether the server refused the login and offers no way to log in with a password
    /// ([`PASSWORD_METHODS`]): a wrong password alone is refused too, but with `password`
    /// still in the list.
    pub fn password_logins_off(&self) -> bool {
        self.refused_methods()
            .is_some_and(|methods| !methods.iter().any(|m| PASSWORD_METHODS.contains(m)))
    }
}

/// The SSH authentication methods that take a password (RFC 4252 section 8, RFC 4256).
pub const PASSWORD_METHODS: [&str; 2] = ["password", "keyboard-interactive"];

/// The SSH authentication method of a key login (RFC 4252 section 7).
pub const KEY_METHODS: [&str; 1] = ["publickey"];

/// Whether a command whose connection fails is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempts {
    /// Once (a caller that polls on its own).
    Once,
    /// Up to [`CONNECTION_RETRIES`] more times.
    Retried,
}

/// Runs `command` with the ssh `make` makes, logging in with one of `methods`: a command that
/// ran after a login with another (ssh tries `none` first) is reported as ssh failing
/// (exit 255), saying why ([`ssh_log::wrong_method`]).
fn run(
    mut make: impl FnMut() -> Command,
    target: &SshTarget,
    command: &str,
    methods: &[&str],
    attempts: Attempts,
) -> anyhow::Result<SshOutput> {
    let mut tries = 0;
    loop {
        let mut cmd = make();
        // The user apart from the host, after `--`: neither is ever read as an option.
        cmd.args(["-l", &target.user, "--", &target.ip.to_string()])
            .arg(command);
        let out = output_with_timeout(&mut cmd, SSH_COMMAND_TIMEOUT)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let out = SshOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: ssh_log::without_log(&stderr),
            method: ssh_log::authenticated_with(&stderr).map(str::to_owned),
        };
        if attempts == Attempts::Once || !out.connection_failed() || tries >= CONNECTION_RETRIES {
            return Ok(out.logged_in_with(methods));
        }
        tries += 1;
        std::thread::sleep(CONNECTION_RETRY_PAUSE);
    }
}

fn key_login(target: &SshTarget, key: &Path) -> Command {
    let mut cmd = ssh(target);
    cmd.arg("-i")
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "PasswordAuthentication=no",
        ]);
    cmd
}

/// Runs `command` on the guest, logging in with the private key `key` only; a connection that
/// does not come up is tried again ([`CONNECTION_RETRIES`]).
pub fn with_key(target: &SshTarget, key: &Path, command: &str) -> anyhow::Result<SshOutput> {
    run(
        || key_login(target, key),
        target,
        command,
        &KEY_METHODS,
        Attempts::Retried,
    )
}

/// Runs `command` on the guest with the private key `key`, one attempt whatever becomes of the
/// connection: for a caller that polls on its own, whose poll is then the only pause between
/// attempts (a refused connection is not retried [`CONNECTION_RETRY_PAUSE`] later).
pub fn with_key_once(target: &SshTarget, key: &Path, command: &str) -> anyhow::Result<SshOutput> {
    run(
        || key_login(target, key),
        target,
        command,
        &KEY_METHODS,
        Attempts::Once,
    )
}

/// Runs `command` on the guest, logging in with `password` only (through `askpass`, made by
/// [`write_askpass`]): a login that never asked for the password is a failure.
pub fn with_password(
    target: &SshTarget,
    askpass: &Path,
    password: &str,
    command: &str,
) -> anyhow::Result<SshOutput> {
    password_login(|| ssh(target), target, askpass, password, command)
}

/// [`with_password`] with the ssh `base` makes (before its options for a password login).
fn password_login(
    base: impl Fn() -> Command,
    target: &SshTarget,
    askpass: &Path,
    password: &str,
    command: &str,
) -> anyhow::Result<SshOutput> {
    let serial = ASKED_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let asked = askpass.with_file_name(format!("askpass-asked-{}-{serial}", std::process::id()));
    let make = || {
        // Each attempt starts without it: one that asked and then lost its connection proves
        // nothing about the next.
        let _ = std::fs::remove_file(&asked);
        let mut cmd = base();
        cmd.args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityFile=/dev/null",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(PASSWORD_ENV, password)
        .env(ASKED_ENV, &asked)
        .env_remove("DISPLAY");
        cmd
    };
    let out = run(make, target, command, &PASSWORD_METHODS, Attempts::Retried);
    let was_asked = asked.exists();
    let _ = std::fs::remove_file(&asked);
    Ok(out?.password_asked(was_asked))
}

/// Waits until a key login runs `true`; returns how long it took.
pub fn wait_for_key_login(
    target: &SshTarget,
    key: &Path,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    wait_until_ok(start + timeout, Duration::from_millis(250), || {
        // One attempt per poll: this loop is the retry, and its time is what is measured.
        let out = with_key_once(target, key, "true")?;
        if out.success() {
            Ok(())
        } else {
            anyhow::bail!("ssh {}", out.summary())
        }
    })
    .with_context(|| format!("no key login to {} within {timeout:?}", target.ip))?;
    Ok(start.elapsed())
}

/// Writes the askpass helper into `dir`: it creates the file [`ASKED_ENV`] names (ssh asked
/// for the password) and prints the password from [`PASSWORD_ENV`].
pub fn write_askpass(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("askpass");
    let script = format!(
        "#!/bin/sh\n# ssh askpass for the harness's password checks: it says it was asked, then \
         answers\nif [ -n \"${ASKED_ENV}\" ]; then : > \"${ASKED_ENV}\"; fi\n\
         printf '%s\\n' \"${PASSWORD_ENV}\"\n"
    );
    atomic::write(&path, script.as_bytes(), 0o700)?;
    Ok(path)
}

/// Makes an ed25519 key pair `dir/name` (+ `.pub`) with `ssh-keygen`.
pub fn keygen(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    keygen_of(dir, name, "ed25519")
}

/// Makes an SSH key pair of `kind` (`ed25519`, `rsa`: 2048 bits) at `dir/name` (and `.pub`).
pub fn keygen_of(dir: &Path, name: &str, kind: &str) -> anyhow::Result<PathBuf> {
    let key = dir.join(name);
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    crate::process::check(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&key),
    )
    .context("failed to make an SSH key pair")?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn askpass_prints_the_password_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let askpass = write_askpass(dir.path()).unwrap();
        // Another test thread forking while the script was open for writing leaves its child
        // with the write end until it execs: exec fails with ETXTBSY for that moment. (A run
        // writes the script before any check starts, seconds before ssh runs it.)
        let out = crate::wait::wait_until_ok(
            std::time::Instant::now() + std::time::Duration::from_secs(5),
            crate::wait::POLL_INTERVAL,
            || {
                Command::new(&askpass)
                    .env(PASSWORD_ENV, "s3cret 'x'")
                    .output()
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "s3cret 'x'\n");
        // Asked, it leaves its mark where it is told.
        let mark = dir.path().join("asked");
        let out = Command::new(&askpass)
            .env(PASSWORD_ENV, "pw")
            .env(ASKED_ENV, &mark)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "pw\n");
        assert!(mark.is_file());
    }

    /// A stand-in for ssh: says it logged in with `$FAKE_METHOD`, asking the askpass helper
    /// for the password first only when `$FAKE_ASKS` is 1 (a PAM stack that lets the user in
    /// without a prompt does not), then runs the "command" (prints the user).
    const FAKE_SSH: &str = r#"
if [ "$FAKE_ASKS" = 1 ]; then
    pw=$("$SSH_ASKPASS" "debian@198.18.1.10's password: ")
    if [ "$pw" != "s3cret" ]; then
        echo "debian@198.18.1.10: Permission denied (publickey,$FAKE_METHOD)." >&2
        exit 255
    fi
fi
echo "Authenticated to 198.18.1.10 ([198.18.1.10]:22) using \"$FAKE_METHOD\"." >&2
echo debian
"#;

    /// A password login counts only when ssh asked the askpass helper for the password: a
    /// `keyboard-interactive` login that asked nothing is a failure that says why.
    #[test]
    fn a_password_login_counts_only_when_the_password_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let askpass = write_askpass(dir.path()).unwrap();
        // Until it runs (see above: a fork elsewhere may hold it open for writing a moment).
        crate::wait::wait_until_ok(
            Instant::now() + Duration::from_secs(5),
            crate::wait::POLL_INTERVAL,
            || Command::new(&askpass).output(),
        )
        .unwrap();
        let fake = dir.path().join("fake-ssh");
        std::fs::write(&fake, FAKE_SSH).unwrap();
        let target = SshTarget {
            netns: "unused".into(),
            ip: "198.18.1.10".parse().unwrap(),
            user: "debian".into(),
        };
        let login = |method: &str, asks: bool, password: &str| {
            let base = || {
                let mut cmd = Command::new("sh");
                cmd.arg(&fake)
                    .env("FAKE_METHOD", method)
                    .env("FAKE_ASKS", if asks { "1" } else { "0" });
                cmd
            };
            password_login(base, &target, &askpass, password, "id -un").unwrap()
        };
        for method in PASSWORD_METHODS {
            let out = login(method, true, "s3cret");
            assert!(
                out.success() && out.stdout.trim() == "debian",
                "{method}: {}",
                out.summary()
            );
            let out = login(method, false, "s3cret");
            assert_eq!(out.code, 255, "{method}: {}", out.summary());
            assert!(
                out.summary().contains(&format!(
                    "ssh logged in with \"{method}\" but never asked for the password"
                )),
                "{}",
                out.summary()
            );
            // A wrong password is refused as before, methods and all.
            let out = login(method, true, "wrong");
            assert_eq!(out.refused_methods(), Some(vec!["publickey", method]));
        }
        // No mark is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().starts_with("askpass-asked-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn only_a_connection_that_did_not_come_up_is_tried_again() {
        let out = |code: i32, stderr: &str| SshOutput {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
            method: None,
        };
        // What OpenSSH prints when the guest's sshd is not there yet or too slow to greet.
        for stderr in [
            "Connection timed out during banner exchange",
            "ssh: connect to host 198.18.1.10 port 22: Connection refused",
            "kex_exchange_identification: read: Connection reset by peer",
            "kex_exchange_identification: Connection closed by remote host",
        ] {
            assert!(out(255, stderr).connection_failed(), "{stderr}");
        }
        // A refused login and the command's own failure are answers, not connection trouble.
        assert!(
            !out(255, "debian@198.18.1.10: Permission denied (publickey).").connection_failed()
        );
        assert!(!out(1, "Connection refused").connection_failed());
        const { assert!(CONNECTION_RETRIES >= 1 && CONNECTION_RETRIES <= 5) };
        assert!(CONNECTION_RETRY_PAUSE * CONNECTION_RETRIES < SSH_READY_TIMEOUT);
    }

    #[test]
    fn password_logins_are_off_only_when_no_password_method_is_offered() {
        let out = |code: i32, stderr: &str| SshOutput {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
            method: None,
        };
        let off = out(255, "root@198.18.1.10: Permission denied (publickey).");
        assert_eq!(off.refused_methods(), Some(vec!["publickey"]));
        assert!(off.password_logins_off());
        // A refused password on a server that takes passwords: it still offers them.
        for methods in [
            "publickey,password",
            "publickey,keyboard-interactive",
            "password",
        ] {
            let on = out(
                255,
                &format!("root@198.18.1.10: Permission denied ({methods})."),
            );
            assert!(!on.password_logins_off(), "{methods}");
        }
        // ssh failed for another reason, or the login worked.
        assert!(!out(255, "Connection refused").password_logins_off());
        assert!(!out(0, "Permission denied (publickey).").password_logins_off());
    }

    /// A key check passes only on a key login, a password check only on a password login:
    /// ssh tries `none` first, and a guest that lets the user in without anything would
    /// otherwise pass both.
    #[test]
    fn a_login_counts_only_with_the_method_checked() {
        let ran = |method: Option<&str>| SshOutput {
            code: 0,
            stdout: "root\n".into(),
            stderr: String::new(),
            method: method.map(str::to_owned),
        };
        assert!(
            ran(Some("publickey"))
                .logged_in_with(&KEY_METHODS)
                .success()
        );
        assert!(
            ran(Some("password"))
                .logged_in_with(&PASSWORD_METHODS)
                .success()
        );
        assert!(
            ran(Some("keyboard-interactive"))
                .logged_in_with(&PASSWORD_METHODS)
                .success()
        );
        for (method, methods) in [
            (Some("none"), &KEY_METHODS[..]),
            (Some("none"), &PASSWORD_METHODS[..]),
            (Some("password"), &KEY_METHODS[..]),
            (None, &KEY_METHODS[..]),
        ] {
            let out = ran(method).logged_in_with(methods);
            assert_eq!(out.code, 255, "{method:?} for {methods:?}");
            assert!(out.summary().contains("ssh "), "{}", out.summary());
        }
        // A refused login stays what it was (the password check reads its methods).
        let refused = SshOutput {
            code: 255,
            stdout: String::new(),
            stderr: "root@198.18.1.10: Permission denied (publickey).\n".into(),
            method: None,
        }
        .logged_in_with(&PASSWORD_METHODS);
        assert!(refused.password_logins_off());
        // The remote command's own failure after a key login is its own.
        let failed = SshOutput {
            code: 1,
            ..ran(Some("publickey"))
        }
        .logged_in_with(&KEY_METHODS);
        assert_eq!(failed.code, 1);
    }

    #[test]
    fn keygen_makes_an_ed25519_pair() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "g1").unwrap();
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
    }
}
