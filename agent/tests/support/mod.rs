//! Shared fixtures of the guest agent's integration tests: the test metadata server, a fake
//! guest root, and helpers to run the `metaboot` binary against them.

#![allow(dead_code)]

pub mod crypt;
pub mod recorder;
pub mod server;
/// The unit tests' helpers for system tools, shared rather than copied.
#[path = "../../src/testutil.rs"]
pub mod testutil;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

#[allow(unused_imports)] // Not every test binary checks hashes.
pub use crypt::crypt_verifies;
#[allow(unused_imports)] // Not every test binary injects faults.
pub use server::{Fault, MetadataServer};

/// The instance every test boots (unless it changes it).
pub const UUID: &str = "d8e02d56-2648-49a3-bf97-6be8f1204f38";
/// The uid and gid of the default user of [`Guest::with_debian`].
#[allow(dead_code)] // Not every test binary boots the default user.
pub const DEBIAN: u32 = 1000;
/// The key pair of meta_data.json.
pub const META_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMetaDataKey nova@host";
/// A key given in user data.
pub const USER_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABUserDataKey user@laptop";

/// gzip of `data`.
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A guest: a root directory with Debian-like account files, and a metadata tree served over
/// HTTP by [`MetadataServer`].
pub struct Guest {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub tree: PathBuf,
    pub server: MetadataServer,
}

impl Guest {
    /// A guest whose metadata has `meta_data.json` for [`UUID`] (hostname `test.novalocal`,
    /// one key pair) and nothing else; metaboot.yaml points at the server, root gets keys
    /// unprefixed (as on the tiny image) and the deadline is short.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let tree = dir.path().join("srv");
        for sub in ["etc/metaboot", "root", "var", "home", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\ndaemon:x:1:\nsudo:x:27:\nusers:x:100:\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/shadow"),
            "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/hostname"), "localhost\n").unwrap();
        std::fs::write(
            root.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("etc/shadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir_all(tree.join("openstack/latest")).unwrap();
        let server = MetadataServer::start(&tree);
        let guest = Guest {
            dir,
            root,
            tree,
            server,
        };
        guest.config("disable_root: false\nmanage_etc_hosts: localhost\n");
        guest.meta_data(&json!({
            "uuid": UUID,
            "hostname": "test.novalocal",
            "name": "test",
            "launch_index": 0,
            "availability_zone": "nova",
            "project_id": "p-1",
            "public_keys": {"mykey": META_KEY},
            "random_seed": "cmFuZG9tIHNlZWQ=",
        }));
        guest
    }

    /// A guest whose image has user `debian` ([`DEBIAN`], the default user) with a home it
    /// owns.
    #[allow(dead_code)] // Not every test binary boots the default user.
    pub fn with_debian() -> Self {
        let guest = Self::new();
        guest.config("default_user: {name: debian}\ndisable_root: false\n");
        guest.append("/etc/passwd", "debian:x:1000:1000::/home/debian:/bin/sh");
        guest.append("/etc/group", "debian:x:1000:");
        guest.append("/etc/shadow", "debian:!:19000:0:99999:7:::");
        std::fs::create_dir_all(guest.path("/home/debian")).unwrap();
        std::os::unix::fs::lchown(guest.path("/home/debian"), Some(DEBIAN), Some(DEBIAN)).unwrap();
        guest
    }

    /// Appends `line` to the file at `path` under the root.
    pub fn append(&self, path: &str, line: &str) {
        let text = self.read(path) + line + "\n";
        std::fs::write(self.path(path), text).unwrap();
    }

    /// Writes metaboot.yaml: the server URL, a 5 s deadline, then `extra` (YAML).
    pub fn config(&self, extra: &str) {
        self.write_config(&format!("metadata_url: {}", self.server.url()), extra);
    }

    /// Writes metaboot.yaml as [`Guest::config`] does, with the server's URL followed by an
    /// [`Unanswered`] one, which it returns.
    pub fn config_with_unanswered_url(&self, extra: &str) -> Unanswered {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let urls = format!(
            "metadata_urls: [{}, 'http://{}']",
            self.server.url(),
            listener.local_addr().unwrap()
        );
        self.write_config(&urls, extra);
        Unanswered(listener)
    }

    /// Writes metaboot.yaml as [`Guest::config`] does, with `urls` in this order.
    pub fn config_urls(&self, urls: &[String], extra: &str) {
        let quoted: Vec<String> = urls.iter().map(|url| format!("'{url}'")).collect();
        self.write_config(&format!("metadata_urls: [{}]", quoted.join(", ")), extra);
    }

    fn write_config(&self, urls: &str, extra: &str) {
        let text = format!("{urls}\ndeadline_secs: 5\nrequest_timeout_secs: 2\n{extra}");
        std::fs::write(self.root.join("etc/metaboot/metaboot.yaml"), text).unwrap();
    }

    /// Serves `name` under `openstack/latest`.
    pub fn serve(&self, name: &str, body: &[u8]) {
        std::fs::write(self.tree.join("openstack/latest").join(name), body).unwrap();
    }

    /// Serves meta_data.json.
    pub fn meta_data(&self, doc: &Value) {
        self.serve("meta_data.json", doc.to_string().as_bytes());
    }

    /// Serves user_data.
    pub fn user_data(&self, body: impl AsRef<[u8]>) {
        self.serve("user_data", body.as_ref());
    }

    /// A path under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A file under the root.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Mode bits and owner of a file under the root.
    pub fn mode_owner(&self, path: &str) -> (u32, u32, u32) {
        let meta = std::fs::metadata(self.path(path)).unwrap();
        (meta.mode() & 0o7777, meta.uid(), meta.gid())
    }

    /// `metaboot <args> --root <root>`.
    pub fn metaboot(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_metaboot"))
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .env_remove("http_proxy")
            .output()
            .unwrap();
        if std::env::var_os("METABOOT_TEST_VERBOSE").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        out
    }

    /// One `metaboot run`; returns (exit code, stderr).
    pub fn run(&self) -> (i32, String) {
        self.run_args(&["run"])
    }

    /// One `metaboot run --stage STAGE`; returns (exit code, stderr).
    pub fn run_stage(&self, stage: &str) -> (i32, String) {
        self.run_args(&["run", "--stage", stage])
    }

    /// One `metaboot run -v` (the debug lines logged too); returns (exit code, stderr).
    pub fn run_verbose(&self) -> (i32, String) {
        self.run_args(&["run", "-v"])
    }

    fn run_args(&self, args: &[&str]) -> (i32, String) {
        let out = self.metaboot(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `status.json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.read("/var/lib/metaboot/status.json")).unwrap()
    }

    /// Asserts that `secret` is in none of the run's reports: status.json, result.json, the
    /// log file, and `log` (what the run printed).
    pub fn assert_not_reported(&self, log: &str, secret: &str) {
        for path in [
            "/var/lib/metaboot/status.json".to_owned(),
            format!("/var/lib/metaboot/instances/{UUID}/result.json"),
            "/var/log/metaboot.log".to_owned(),
        ] {
            let text = self.read(&path);
            assert!(!text.contains(secret), "{path}: {text}");
        }
        assert!(!log.contains(secret), "{log}");
    }

    /// The names of the steps in status.json, in their order.
    pub fn step_names(&self) -> Vec<String> {
        self.status()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The outcome and message of step `name` in status.json.
    pub fn step(&self, name: &str) -> (String, String) {
        let status = self.status();
        let step = status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {status:#}"))
            .clone();
        (
            step["outcome"].as_str().unwrap().to_owned(),
            step["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// The shadow password field of `user`.
    pub fn shadow_hash(&self, user: &str) -> String {
        self.read("/etc/shadow")
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap_or_else(|| panic!("no {user} in shadow"))
            .split(':')
            .nth(1)
            .unwrap()
            .to_owned()
    }
}

/// A metadata URL where no one answers: a listener nothing accepts from, so a request there
/// would wait for its timeout.
pub struct Unanswered(std::net::TcpListener);

impl Unanswered {
    /// Whether anything connected to it.
    pub fn was_asked(&self) -> bool {
        !matches!(self.0.accept(), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// The root of the fixture corpus.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// True when the test runs as root; see `testutil::require_root`.
pub fn require_root() -> bool {
    testutil::require_root()
}

/// Every regular file under `dir` (symlinks are listed, never followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}
