//! The registry CLI as a user runs it, for the CLI test binaries: a registry file in a temp dir,
//! commands run on it, and what a refused command must look like.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The store's user data limit in raw bytes, repeated here as the number a user reads in the
/// docs: the most whose base64 text fits nova's 65535 characters.
pub const USER_DATA_LIMIT: usize = 49_149;

/// A registry file in a temp dir, and helpers to run commands on it.
pub struct Registry {
    pub dir: TempDir,
    pub db: PathBuf,
}

impl Registry {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("registry.sqlite");
        Self { dir, db }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path.display().to_string()
    }

    /// `metaboot-server --db REGISTRY ARGS`; an `all` keeps its lock under [`Registry::run`].
    pub fn cmd(&self, args: &[&str]) -> Command {
        Command::from_std(self.std_cmd(args))
    }

    /// [`Registry::cmd`] as a process to start and keep running.
    pub fn std_cmd(&self, args: &[&str]) -> std::process::Command {
        self.std_cmd_under(&[], args)
    }

    /// [`Registry::std_cmd`] run by `runner` (a command that runs the one after it, e.g.
    /// `setpriv --reuid=… --`); none: run directly.
    pub fn std_cmd_under(&self, runner: &[&str], args: &[&str]) -> std::process::Command {
        let binary = env!("CARGO_BIN_EXE_metaboot-server");
        let mut cmd = match runner.split_first() {
            Some((first, rest)) => {
                let mut cmd = std::process::Command::new(first);
                cmd.args(rest).arg(binary);
                cmd
            }
            None => std::process::Command::new(binary),
        };
        cmd.env_remove("METABOOT_DB")
            .env("RUNTIME_DIRECTORY", self.run())
            .arg("--db")
            .arg(&self.db)
            .args(args);
        cmd
    }

    /// The runtime directory `all` is given (systemd's `RuntimeDirectory=`).
    pub fn run(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: {err}: {stdout}"))
    }

    /// `instance show --json` of the instance a `--json` create printed.
    #[track_caller]
    pub fn shown(&self, created: &Value) -> Value {
        let uuid = created["uuid"]
            .as_str()
            .expect("the created instance has a uuid");
        self.json(&["instance", "show", uuid, "--json"])
    }

    /// Runs a command that must be refused as bad input: exit code 2, nothing on stdout, one
    /// `error:` line on stderr, and the registry unchanged. Returns the message.
    #[track_caller]
    pub fn refused(&self, args: &[&str]) -> String {
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
    pub fn state(&self) -> String {
        ["network", "router", "port", "instance"]
            .iter()
            .map(|kind| self.ok(&[kind, "list", "--json"]))
            .collect()
    }
}

/// A valid ed25519 public key line (its private half was never kept).
pub const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJIFrYLX9BtjdM9NxVzVWSuP9qCrzyUZerOmZAj3Xz48 test@metaboot";

/// A public key file `NAME.pub` and a file `NAME` shaped like its private key.
pub fn ssh_key(reg: &Registry, name: &str) -> (String, String) {
    let public = reg.write(&format!("{name}.pub"), format!("{PUBLIC_KEY}\n").as_bytes());
    let private = reg.write(
        name,
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    (public, private)
}

/// `network create x --cidr 198.18.9.0/24` plus `extra`.
pub fn net<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "x", "--cidr", "198.18.9.0/24"];
    args.extend_from_slice(extra);
    args
}

/// `instance create vm --network net1` plus `extra`.
pub fn vm<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["instance", "create", "vm", "--network", "net1"];
    args.extend_from_slice(extra);
    args
}
