//! The guest agent against the real chain: `metaboot run --root TMP` fetches through a real
//! ns-proxy → agent → API (three `metaboot-server` processes started by the test, no mock) and
//! the test checks what landed under TMP: hostname, hosts, authorized_keys (no duplicates after
//! a second run), shadow hashes verified by glibc's crypt, write_files content and modes,
//! script outputs. Faults (500s, hangs, deadlines) are covered in `agent/tests/faults.rs`,
//! where a test server can be told to fail.

#[path = "../../agent/tests/support/crypt.rs"]
mod crypt;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use metaboot_harness::scenario::userdata::gzip;
use metaboot_tests::chain::{Chain, Scope};
use metaboot_tests::guest;
use metaboot_tests::prerequisite::require_command;

use crypt::crypt_verifies;

/// The key pair of the instance.
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKD8AT/olhGf1Bd+7RQTBj5v/r1DvKKFbPsG52AG4gZU guest@chain";
/// A key added by user data.
const USER_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDuserdata user@laptop";
/// The guest's address: the agent binary connects from 127.0.0.1.
const GUEST_IP: &str = "127.0.0.1";

const CLOUD_CONFIG: &str = "#cloud-config
hostname: web
fqdn: web.example.org
manage_etc_hosts: localhost
ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDuserdata user@laptop
chpasswd:
  expire: false
  users:
    - {name: root, password: chain-pw, type: text}
write_files:
  - path: /etc/app/app.conf
    content: |
      from=chain
    permissions: 0640
  - path: /etc/app/blob
    encoding: b64
    content: aGVsbG8=
    permissions: '0600'
runcmd:
  - echo \"runcmd $INSTANCE_ID\" >> tmp/runcmd.out
";

const SCRIPT: &str =
    "#!/bin/sh\necho \"script $INSTANCE_ID\" >> \"$METABOOT_ROOT/tmp/script.out\"\n";

/// Runs the tests with this guest agent binary instead (e.g. the static one from
/// `agent/build-static.sh`).
const BINARY_ENV: &str = "METABOOT_GUEST_BIN";

/// The guest agent: `$METABOOT_GUEST_BIN`, else the tests' own build (dev profile; the static
/// guest build is the harness's job).
fn metaboot() -> PathBuf {
    std::env::var_os(BINARY_ENV).map_or_else(metaboot_tests::guest_agent::binary, PathBuf::from)
}

/// One guest served by a running chain.
struct Guest {
    chain: Chain,
    proxy: SocketAddr,
    uuid: String,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Guest {
    /// Registers instance `test` (key pair, user data) at 127.0.0.1 behind a router, starts
    /// API, agent and the router's ns-proxy, and prepares a guest root.
    fn boot(user_data: Option<&[u8]>, vendor_data: Option<serde_json::Value>) -> Guest {
        Self::boot_with_key(KEY, user_data, vendor_data)
    }

    /// [`Guest::boot`] with `key` as the instance's key pair.
    fn boot_with_key(
        key_line: &str,
        user_data: Option<&[u8]>,
        vendor_data: Option<serde_json::Value>,
    ) -> Guest {
        Self::boot_with_api_flags(key_line, user_data, vendor_data, &[])
    }

    /// [`Guest::boot_with_key`] with the API started with `api_flags` too.
    fn boot_with_api_flags(
        key_line: &str,
        user_data: Option<&[u8]>,
        vendor_data: Option<serde_json::Value>,
        api_flags: &[&str],
    ) -> Guest {
        let mut chain = Chain::new().unwrap();
        chain.api_flags = api_flags.iter().map(|flag| (*flag).to_owned()).collect();
        if let Some(vendor) = vendor_data {
            let file = chain.path().join("vendor_data.json");
            std::fs::write(&file, vendor.to_string()).unwrap();
            chain
                .api_flags
                .extend(["--vendor-data".into(), file.display().to_string()]);
        }
        let key = chain.path().join("mykey.pub");
        std::fs::write(&key, format!("{key_line}\n")).unwrap();
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
                    "--project",
                    "p1",
                ])
                .unwrap(),
            "id",
        );
        let router = id(
            chain
                .registry(&[
                    "router",
                    "create",
                    "r1",
                    "--network",
                    &net,
                    "--project",
                    "p1",
                ])
                .unwrap(),
            "id",
        );
        let mut args = vec![
            "instance".to_owned(),
            "create".into(),
            "test".into(),
            "--network".into(),
            "guests".into(),
            "--ip".into(),
            GUEST_IP.into(),
            "--project".into(),
            "p1".into(),
            "--key-file".into(),
            key.display().to_string(),
        ];
        if let Some(data) = user_data {
            let file = chain.path().join("user_data");
            std::fs::write(&file, data).unwrap();
            args.extend(["--user-data".into(), file.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let uuid = id(chain.registry(&args).unwrap(), "uuid");
        chain.start().unwrap();
        let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        metaboot_tests::guest_root::first_boot(
            &root,
            &[],
            &format!(
                "metadata_url: http://{proxy}\ndeadline_secs: 20\ndisable_root: false\nmanage_etc_hosts: localhost\n"
            ),
        );
        Guest {
            chain,
            proxy,
            uuid,
            root,
            _dir: dir,
        }
    }

    /// `metaboot run --root ROOT`; panics with the agent's log and the chain's logs on failure.
    fn run(&self) {
        let out = Command::new(metaboot())
            .arg("run")
            .arg("--root")
            .arg(&self.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "metaboot run failed via {}: {}\n{}",
            self.proxy,
            String::from_utf8_lossy(&out.stderr),
            self.chain.logs()
        );
        let status = self.read("var/lib/metaboot/status.json");
        assert!(status.contains("\"status\": \"done\""), "{status}");
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn mode(&self, path: &str) -> u32 {
        std::fs::metadata(self.path(path)).unwrap().mode() & 0o7777
    }

    fn shadow_hash(&self, user: &str) -> String {
        let shadow = self.read("/etc/shadow");
        let line = shadow
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap();
        line.split(':').nth(1).unwrap().to_owned()
    }

    /// What every boot applies from meta_data.json.
    fn check_meta_data(&self, hostname: &str) {
        assert_eq!(self.read("/etc/hostname"), format!("{hostname}\n"));
        assert_eq!(
            self.read("/var/lib/metaboot/data/instance-id"),
            format!("{}\n", self.uuid)
        );
        let keys = self.read("/root/.ssh/authorized_keys");
        assert_eq!(
            keys.lines()
                .filter(|l| l.contains("AAAAC3NzaC1lZDI1NTE5AAAAIKD8AT"))
                .count(),
            1,
            "{keys}"
        );
        assert_eq!(self.mode("/root/.ssh/authorized_keys"), 0o600);
        assert_eq!(self.mode("/root/.ssh"), 0o700);
    }

    fn check_cloud_config(&self) {
        self.check_meta_data("web");
        assert!(
            self.read("/etc/hosts")
                .contains("\n127.0.1.1 web.example.org web\n")
        );
        assert_eq!(
            self.read("/root/.ssh/authorized_keys"),
            format!("{KEY}\n{USER_KEY}\n")
        );
        let hash = self.shadow_hash("root");
        assert!(crypt_verifies("chain-pw", &hash), "glibc rejects {hash}");
        assert_eq!(self.read("/etc/app/app.conf"), "from=chain\n");
        assert_eq!(self.mode("/etc/app/app.conf"), 0o640);
        assert_eq!(self.read("/etc/app/blob"), "hello");
        assert_eq!(self.mode("/etc/app/blob"), 0o600);
        assert_eq!(
            self.read("/tmp/runcmd.out"),
            format!("runcmd {}\n", self.uuid)
        );
    }
}

fn prerequisites() -> bool {
    require_command("perl")
}

#[test]
fn no_user_data() {
    if !prerequisites() {
        return;
    }
    let guest = Guest::boot(None, None);
    guest.run();
    guest.check_meta_data("test");
    assert_eq!(
        guest.read("/etc/hosts"),
        "127.0.0.1 localhost\n127.0.1.1 test.novalocal test\n"
    );
    assert_eq!(guest.read("/root/.ssh/authorized_keys"), format!("{KEY}\n"));
    guest.run();
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{KEY}\n"),
        "no duplicates after a second run"
    );
}

#[test]
fn cloud_config_then_a_second_run() {
    if !prerequisites() {
        return;
    }
    let guest = Guest::boot(Some(CLOUD_CONFIG.as_bytes()), None);
    guest.run();
    guest.check_cloud_config();
    let hash = guest.shadow_hash("root");
    guest.run();
    guest.check_cloud_config();
    assert_eq!(
        guest.shadow_hash("root"),
        hash,
        "per-instance steps ran once"
    );
}

#[test]
fn gzipped_cloud_config() {
    if !prerequisites() {
        return;
    }
    let guest = Guest::boot(Some(&gzip(CLOUD_CONFIG.as_bytes())), None);
    guest.run();
    guest.check_cloud_config();
}

#[test]
fn shell_script_plain_and_gzipped() {
    if !prerequisites() {
        return;
    }
    for body in [SCRIPT.as_bytes().to_vec(), gzip(SCRIPT.as_bytes())] {
        let guest = Guest::boot(Some(&body), None);
        guest.run();
        guest.check_meta_data("test");
        assert_eq!(
            guest.read("/tmp/script.out"),
            format!("script {}\n", guest.uuid)
        );
        guest.run();
        assert_eq!(
            guest.read("/tmp/script.out"),
            format!("script {}\n", guest.uuid),
            "once per instance"
        );
    }
}

#[test]
fn mime_multipart_script_and_config() {
    if !prerequisites() {
        return;
    }
    let mime = format!(
        "Content-Type: multipart/mixed; boundary=\"===============42==\"\nMIME-Version: 1.0\n\n\
         --===============42==\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"boot.sh\"\n\n{SCRIPT}\n\
         --===============42==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"cloud.yaml\"\n\n{CLOUD_CONFIG}\n\
         --===============42==--\n"
    );
    let guest = Guest::boot(Some(mime.as_bytes()), None);
    guest.run();
    guest.check_cloud_config();
    assert_eq!(
        guest.read("/tmp/script.out"),
        format!("script {}\n", guest.uuid)
    );
    assert!(
        Path::new(&guest.path(&format!(
            "/var/lib/metaboot/instances/{}/scripts/boot.sh",
            guest.uuid
        )))
        .exists()
    );
}

#[test]
fn vendor_data_under_user_data() {
    if !prerequisites() {
        return;
    }
    let vendor = serde_json::json!({
        "cloud-init": "#cloud-config\nhostname: vendor\nwrite_files:\n- {path: /etc/vendor.conf, content: vendor, permissions: '0444'}\n"
    });
    let guest = Guest::boot(Some(b"#cloud-config\nhostname: userwins\n"), Some(vendor));
    guest.run();
    guest.check_meta_data("userwins");
    assert_eq!(guest.read("/etc/vendor.conf"), "vendor");
    assert_eq!(guest.mode("/etc/vendor.conf"), 0o444);
    let cached = guest.read(&format!(
        "/var/lib/metaboot/instances/{}/vendor_data.json",
        guest.uuid
    ));
    assert!(cached.contains("cloud-init"));
}

/// `password_postback: true`: the guest agent makes root's password, posts it encrypted for
/// the instance's RSA key through the chain, and `metaboot-server instance get-password`
/// decrypts it with the private key to the password glibc accepts for root. The clear text is
/// neither printed nor logged. A second run posts nothing (write-once, per instance).
#[test]
fn password_postback_through_the_chain() {
    if !prerequisites() || !require_command("ssh-keygen") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("id_rsa");
    let made = Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "admin", "-f",
        ])
        .arg(&private)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    let guest = Guest::boot_with_key(
        public.trim(),
        Some(b"#cloud-config\npassword_postback: true\n"),
        None,
    );
    let out = Command::new(metaboot())
        .arg("run")
        .arg("--root")
        .arg(&guest.root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", guest.chain.logs());
    let raw = guest
        .chain
        .run(&["instance", "get-password", "test", "--raw"])
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert_eq!(raw.trim().len(), 344, "base64 of 256 bytes: {raw}");
    let decrypted = guest
        .chain
        .run(&[
            "instance",
            "get-password",
            "test",
            "--private-key",
            private.to_str().unwrap(),
        ])
        .unwrap();
    let password = String::from_utf8(decrypted).unwrap().trim_end().to_owned();
    assert_eq!(password.len(), 20, "{password}");
    assert!(crypt_verifies(&password, &guest.shadow_hash("root")));
    let log = guest.read("/var/log/metaboot.log");
    let console = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(&password) && !console.contains(&password));
    let status = guest.read("/var/lib/metaboot/status.json");
    assert!(status.contains("posted to"), "{status}");

    guest.run();
    assert_eq!(
        guest
            .chain
            .run(&["instance", "get-password", "test", "--raw"])
            .unwrap(),
        raw.as_bytes(),
        "posted once"
    );
}

/// A first key that is not RSA: a clear step error, and root's password is left alone.
#[test]
fn password_postback_needs_an_rsa_key() {
    if !prerequisites() {
        return;
    }
    let guest = Guest::boot(Some(b"#cloud-config\npassword_postback: true\n"), None);
    let before = guest.shadow_hash("root");
    let out = Command::new(metaboot())
        .arg("run")
        .arg("--root")
        .arg(&guest.root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let status = guest.read("/var/lib/metaboot/status.json");
    assert!(
        status.contains("password-postback: ") && status.contains("not ssh-rsa"),
        "{status}"
    );
    assert_eq!(guest.shadow_hash("root"), before, "no password set");
    let stored = guest
        .chain
        .run(&["instance", "get-password", "test", "--raw"]);
    let refused = stored.expect_err("nothing posted").to_string();
    assert!(refused.contains("has no password yet"), "{refused}");
}

/// With session tokens required (`--require-token`), the guest agent gets a token after the
/// service's first 401 and provisions the instance through the chain: every document and the
/// password post-back (a POST) carry the token.
#[test]
fn session_tokens_required() {
    if !prerequisites() || !require_command("ssh-keygen") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("id_rsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    let guest = Guest::boot_with_api_flags(
        public.trim(),
        Some(b"#cloud-config\nhostname: tokens\npassword_postback: true\n"),
        None,
        &["--require-token"],
    );
    let refused = guest::get(None, guest.proxy, "/openstack", &[]).unwrap();
    assert_eq!(
        refused.status,
        401,
        "tokens are required: {}",
        refused.text()
    );
    guest.run();
    assert_eq!(guest.read("/etc/hostname"), "tokens\n");
    assert_eq!(
        guest.read("/var/lib/metaboot/data/instance-id"),
        format!("{}\n", guest.uuid)
    );
    assert_eq!(guest.read("/root/.ssh/authorized_keys"), public);
    let status = guest.read("/var/lib/metaboot/status.json");
    assert!(status.contains("posted to"), "{status}");
    let raw = guest
        .chain
        .run(&["instance", "get-password", "test", "--raw"])
        .unwrap();
    assert_eq!(String::from_utf8(raw).unwrap().trim().len(), 344);
}
