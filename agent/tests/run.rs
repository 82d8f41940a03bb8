//! `metaboot run --root TMP` against a metadata server: every user-data form, what lands under
//! the root, and what a second run (same instance) and a new instance do.

mod support;

use base64::Engine;
use serde_json::json;
use support::*;

const CLOUD_CONFIG: &str = r#"#cloud-config
hostname: web
fqdn: web.example.org
manage_etc_hosts: localhost
ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABUserDataKey user@laptop
ssh_pwauth: no
chpasswd:
  expire: false
  users:
    - {name: root, password: r00t-pw, type: text}
users:
  - default
  - name: alice
    groups: [sudo]
    lock_passwd: false
    plain_text_passwd: alice-pw
    ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@host]
write_files:
  - path: /etc/app/app.conf
    content: |
      key=value
    permissions: 0640
    owner: alice:sudo
    defer: true
  - path: /etc/app/secret.bin
    encoding: b64
    content: aGVsbG8gd29ybGQ=
    permissions: '0600'
  - path: /etc/app/late.conf
    content: deferred
    defer: true
  - path: /home/alice/.config/app/app.conf
    content: mine
    owner: alice:alice
    append: true
    defer: true
bootcmd:
  - echo boot >> tmp/bootcmd.count
runcmd:
  - echo "runcmd $INSTANCE_ID" >> tmp/runcmd.out
  - [sh, -c, "echo argv-form >> tmp/runcmd.out"]
"#;

fn assert_done(guest: &Guest, code: i32, stderr: &str) {
    assert_eq!(code, 0, "run failed: {stderr}\n{:#}", guest.status());
    assert_eq!(guest.status()["status"], "done");
    assert!(
        stderr.contains("metaboot finished: status=done"),
        "{stderr}"
    );
}

#[test]
fn no_user_data_applies_meta_data() {
    let guest = Guest::new();
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/etc/hostname"), "test\n");
    assert_eq!(
        guest.read("/etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1 test.novalocal test\n"
    );
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    assert_eq!(
        guest.mode_owner("/root/.ssh/authorized_keys"),
        (0o600, 0, 0)
    );
    assert_eq!(guest.mode_owner("/root/.ssh").0, 0o700);
    assert_eq!(
        guest.step("user-data"),
        ("ok".into(), "no user data".into())
    );
    assert_eq!(
        guest.step("random-seed").0,
        "skipped",
        "never /dev/urandom outside /"
    );
    let status = guest.status();
    assert_eq!(status["instance_id"], UUID);
    assert_eq!(status["new_instance"], true);
    assert_eq!(status["source"], "metadata-service");
    // Files of the instance.
    let instance = format!("/var/lib/metaboot/instances/{UUID}");
    assert_eq!(
        guest.read(&format!("{instance}/result.json")),
        guest.read("/var/lib/metaboot/status.json")
    );
    assert!(
        guest
            .read(&format!("{instance}/boot-finished"))
            .ends_with(" done\n")
    );
    assert_eq!(
        guest.read("/var/lib/metaboot/data/instance-id"),
        format!("{UUID}\n")
    );
    assert!(
        guest
            .read("/var/log/metaboot.log")
            .contains("metaboot finished: status=done")
    );
    // status and query.
    let out = guest.metaboot(&["status"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("status: done\n"));
    let out = guest.metaboot(&["query", "instance-id"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{UUID}\n"));
    let out = guest.metaboot(&["query", "local-hostname"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "test.novalocal\n");
    assert_eq!(guest.metaboot(&["query", "nope"]).status.code(), Some(2));
}

fn check_cloud_config(guest: &Guest) {
    assert_eq!(guest.read("/etc/hostname"), "web\n");
    assert!(
        guest
            .read("/etc/hosts")
            .contains("\n127.0.1.1 web.example.org web\n")
    );
    // Keys: meta_data.json's and user data's, for root (disable_root: false in metaboot.yaml).
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n{USER_KEY}\n")
    );
    // Passwords verified by glibc.
    let root_hash = guest.shadow_hash("root");
    assert!(root_hash.starts_with("$6$"), "{root_hash}");
    assert!(crypt_verifies("r00t-pw", &root_hash));
    assert!(!crypt_verifies("wrong", &root_hash));
    assert!(crypt_verifies("alice-pw", &guest.shadow_hash("alice")));
    // alice: created, in sudo, with her key, owned by her.
    assert!(
        guest
            .read("/etc/passwd")
            .contains("alice:x:1000:1000::/home/alice:/bin/sh\n")
    );
    assert!(guest.read("/etc/group").contains("sudo:x:27:alice\n"));
    assert_eq!(
        guest.mode_owner("/home/alice/.ssh/authorized_keys"),
        (0o600, 1000, 1000)
    );
    assert_eq!(
        guest.mode_owner("/etc/shadow").0,
        0o640,
        "shadow keeps its mode"
    );
    // write_files, deferred included.
    assert_eq!(guest.read("/etc/app/app.conf"), "key=value\n");
    assert_eq!(guest.mode_owner("/etc/app/app.conf"), (0o640, 1000, 27));
    assert_eq!(guest.read("/etc/app/secret.bin"), "hello world");
    assert_eq!(guest.mode_owner("/etc/app/secret.bin").0, 0o600);
    assert_eq!(guest.read("/etc/app/late.conf"), "deferred");
    // The directories made for an entry are its owner's, as cloud-init's `ensure_dir` makes
    // them (deferred and appended alike); one an earlier entry made keeps root's.
    assert_eq!(guest.read("/home/alice/.config/app/app.conf"), "mine");
    assert_eq!(guest.mode_owner("/home/alice/.config"), (0o755, 1000, 1000));
    assert_eq!(
        guest.mode_owner("/home/alice/.config/app"),
        (0o755, 1000, 1000)
    );
    assert_eq!(guest.mode_owner("/etc/app"), (0o755, 0, 0));
    // Commands.
    assert_eq!(guest.read("/tmp/bootcmd.count"), "boot\n");
    assert_eq!(
        guest.read("/tmp/runcmd.out"),
        format!("runcmd {UUID}\nargv-form\n")
    );
    // ssh_pwauth: no, for dropbear images.
    assert_eq!(guest.read("/var/lib/metaboot/sshd-password-auth"), "no\n");
}

#[test]
fn cloud_config_and_a_second_boot() {
    let guest = Guest::new();
    guest.user_data(CLOUD_CONFIG);
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    check_cloud_config(&guest);
    let hash = guest.shadow_hash("root");

    // Reboot, same instance: per-instance steps do not run again, per-boot ones do.
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    check_cloud_config_after_reboot(&guest, &hash);
    assert_eq!(guest.status()["new_instance"], false);
    assert_eq!(guest.step("runcmd").1, "already ran for this instance");
    assert_eq!(guest.step("bootcmd").0, "ok");
}

fn check_cloud_config_after_reboot(guest: &Guest, hash: &str) {
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n{USER_KEY}\n"),
        "no duplicates"
    );
    assert_eq!(guest.shadow_hash("root"), hash, "password not re-set");
    assert_eq!(
        guest.read("/tmp/runcmd.out"),
        format!("runcmd {UUID}\nargv-form\n"),
        "runcmd once"
    );
    assert_eq!(
        guest.read("/tmp/bootcmd.count"),
        "boot\nboot\n",
        "bootcmd every boot"
    );
    assert_eq!(
        guest
            .read("/etc/passwd")
            .lines()
            .filter(|l| l.starts_with("alice:"))
            .count(),
        1
    );
}

#[test]
fn gzipped_cloud_config() {
    let guest = Guest::new();
    guest.user_data(gz(CLOUD_CONFIG.as_bytes()));
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    check_cloud_config(&guest);
}

const SCRIPT: &str = "#!/bin/sh\necho \"script ran for $INSTANCE_ID\" > \"$METABOOT_ROOT/tmp/script.out\"\necho to-the-log\n";

#[test]
fn shell_script_plain_and_gzipped() {
    for body in [SCRIPT.as_bytes().to_vec(), gz(SCRIPT.as_bytes())] {
        let guest = Guest::new();
        guest.user_data(&body);
        let (code, stderr) = guest.run();
        assert_done(&guest, code, &stderr);
        assert_eq!(
            guest.read("/tmp/script.out"),
            format!("script ran for {UUID}\n")
        );
        assert!(
            guest.read("/var/log/metaboot.log").contains("| to-the-log"),
            "output logged"
        );
        let status = guest.status();
        let step = status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "scripts-user")
            .unwrap()
            .clone();
        assert_eq!(step["scripts"][0]["name"], "part-001");
        assert_eq!(step["scripts"][0]["exit_code"], 0);
        assert_eq!(guest.read("/etc/hostname"), "test\n");
    }
}

#[test]
fn mime_multipart_script_and_config() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mime = format!(
        "Content-Type: multipart/mixed; boundary=\"===============123==\"\nMIME-Version: 1.0\n\n\
--===============123==\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"setup.sh\"\n\n{}\n\
--===============123==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"config.yaml\"\n\n\
#cloud-config\nhostname: mimehost\nwrite_files:\n- path: /etc/from-mime\n  content: mime\n\n\
--===============123==--\n",
        b64.encode(SCRIPT)
    );
    let guest = Guest::new();
    guest.user_data(mime);
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/etc/hostname"), "mimehost\n");
    assert_eq!(guest.read("/etc/from-mime"), "mime");
    assert_eq!(
        guest.read("/tmp/script.out"),
        format!("script ran for {UUID}\n")
    );
    assert!(
        guest
            .path(&format!(
                "/var/lib/metaboot/instances/{UUID}/scripts/setup.sh"
            ))
            .exists()
    );
}

#[test]
fn vendor_data_is_merged_under_user_data() {
    let guest = Guest::new();
    guest.serve(
        "vendor_data.json",
        json!({"cloud-init": "#cloud-config\nhostname: vendorhost\nwrite_files:\n- {path: /etc/vendor, content: v1}\nruncmd: [echo vendor >> tmp/vendor.out]\n"}).to_string().as_bytes(),
    );
    guest.serve(
        "vendor_data2.json",
        json!({"static": {}, "cloud-init": "#cloud-config\nbootcmd: [echo v2 > tmp/v2]\n"})
            .to_string()
            .as_bytes(),
    );
    guest.user_data("#cloud-config\nhostname: userhost\n");
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/etc/hostname"), "userhost\n", "user data wins");
    assert_eq!(guest.read("/etc/vendor"), "v1", "vendor-only keys apply");
    assert_eq!(guest.read("/tmp/vendor.out"), "vendor\n");
    assert_eq!(guest.read("/tmp/v2"), "v2\n");
    assert!(
        guest
            .path(&format!(
                "/var/lib/metaboot/instances/{UUID}/vendor_data.json"
            ))
            .exists()
    );
}

/// The two vendor documents as cloud-init layers them: vendor_data2.json's cloud-config over
/// vendor_data.json's, mappings merged key by key (not the second's mapping replacing the
/// first's). User data's `vendor_data: {enabled: false}` leaves vendor_data.json out, its
/// scripts with its config; `vendor_data2: {enabled: false}` the second; `disabled_handlers`
/// leaves out a document's parts of the types it names, the others applied.
#[test]
fn vendor_documents_layer_and_user_data_switches_them_off() {
    let vendor = |config: &str, hook: &str| {
        json!({"cloud-init": format!(
            "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
             --B\nContent-Type: text/cloud-config\n\n#cloud-config\n{config}\n\
             --B\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\ntouch tmp/{hook}\n--B--\n"
        )})
        .to_string()
    };
    let run = |user_data: &str| {
        let guest = Guest::new();
        guest.serve(
            "vendor_data.json",
            vendor("layers: {a: 1, b: 1, deep: {x: 1}}", "hook1").as_bytes(),
        );
        guest.serve(
            "vendor_data2.json",
            vendor("layers: {b: 2, deep: {y: 2}}", "hook2").as_bytes(),
        );
        guest.user_data(user_data);
        let (code, stderr) = guest.run();
        assert_done(&guest, code, &stderr);
        let merged: serde_json::Value = serde_json::from_str(&guest.read(&format!(
            "/var/lib/metaboot/instances/{UUID}/cloud-config.json"
        )))
        .unwrap();
        let hooks: Vec<bool> = ["hook1", "hook2"]
            .iter()
            .map(|hook| guest.path(&format!("/tmp/{hook}")).exists())
            .collect();
        (merged["layers"].clone(), hooks, guest.step("vendor-data").1)
    };
    let (layers, hooks, _) = run("#cloud-config\nhostname: h\n");
    assert_eq!(layers, json!({"a": 1, "b": 2, "deep": {"x": 1, "y": 2}}));
    assert_eq!(hooks, [true, true]);

    let (layers, hooks, said) = run("#cloud-config\nvendor_data: {enabled: false}\n");
    assert_eq!(layers, json!({"b": 2, "deep": {"y": 2}}));
    assert_eq!(hooks, [false, true]);
    assert!(
        said.contains("vendor_data.json not applied (vendor_data: {enabled: false})"),
        "{said}"
    );

    let (layers, hooks, _) = run("#cloud-config\nvendor_data2: {enabled: 'no'}\n");
    assert_eq!(layers, json!({"a": 1, "b": 1, "deep": {"x": 1}}));
    assert_eq!(hooks, [true, false]);

    let (layers, hooks, _) = run("#cloud-config\n\
         vendor_data: {disabled_handlers: [text/cloud-boothook]}\n\
         vendor_data2: {disabled_handlers: text/cloud-config}\n");
    assert_eq!(layers, json!({"a": 1, "b": 1, "deep": {"x": 1}}));
    assert_eq!(hooks, [false, true]);
}

#[test]
fn a_new_instance_reruns_per_instance_steps() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nruncmd: [echo ran >> tmp/runs]\n");
    assert_eq!(guest.run().0, 0);
    assert_eq!(guest.run().0, 0);
    assert_eq!(guest.read("/tmp/runs"), "ran\n");
    guest.meta_data(&json!({"uuid": "second-instance", "hostname": "two.novalocal", "public_keys": {"k": META_KEY}}));
    assert_eq!(guest.run().0, 0);
    assert_eq!(guest.read("/tmp/runs"), "ran\nran\n");
    assert_eq!(guest.read("/etc/hostname"), "two\n");
    assert_eq!(
        guest.read("/var/lib/metaboot/data/previous-instance-id"),
        format!("{UUID}\n")
    );
    assert_eq!(
        std::fs::read_link(guest.path("/var/lib/metaboot/instance")).unwrap(),
        std::path::Path::new("instances/second-instance")
    );
    assert_eq!(
        guest.read("/root/.ssh/authorized_keys"),
        format!("{META_KEY}\n"),
        "same key, one line"
    );
}

#[test]
fn disable_root_prefixes_root_keys_and_a_default_user_gets_them_plain() {
    let guest = Guest::new();
    guest.config("default_user: {name: debian, sudo: 'ALL=(ALL) NOPASSWD:ALL'}\n");
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(
        guest.read("/home/debian/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    let root_keys = guest.read("/root/.ssh/authorized_keys");
    assert!(root_keys.starts_with("no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \\\"debian\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" ssh-ed25519 "), "{root_keys}");
    assert!(
        guest.shadow_hash("debian").starts_with('!'),
        "default user locked"
    );
}

/// `users:` that leaves `default` out has no default user, as cloud-init's: the instance's
/// keys go to root alone (under `disable_root`'s prefix naming nobody), the listed user is
/// created, and the image's default user is neither created nor given the keys.
#[test]
fn users_without_default_leave_the_default_user_out() {
    let guest = Guest::new();
    guest.config("default_user: {name: debian}\n");
    guest.user_data("#cloud-config\nusers: [{name: alice}]\npassword: Given-pw-1\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("ssh-keys"),
        ("ok".into(), "1 key for root".into())
    );
    let root_keys = guest.read("/root/.ssh/authorized_keys");
    assert!(root_keys.contains(r#"as the user \"NONE\""#), "{root_keys}");
    let passwd = guest.read("/etc/passwd");
    assert!(
        passwd.contains("\nalice:") && !passwd.contains("debian"),
        "{passwd}"
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(warnings.contains("password: no default user"), "{warnings}");
    // `user:` names the default user and adds it to the list.
    let guest = Guest::new();
    guest.config("default_user: {name: debian}\n");
    guest.user_data("#cloud-config\nuser: ubuntu\nusers: [{name: alice}]\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.read("/home/ubuntu/.ssh/authorized_keys"),
        format!("{META_KEY}\n")
    );
    assert!(guest.read("/etc/passwd").contains("\nalice:"));
}

/// A default user whose name useradd would refuse (here with a quote and a line break): root's
/// keys still get one line each, naming no user.
#[test]
fn a_default_user_with_a_bad_name_is_not_named_in_roots_keys() {
    let guest = Guest::new();
    guest.config("default_user: {name: \"deb'ian\\nx\"}\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let root_keys = guest.read("/root/.ssh/authorized_keys");
    assert_eq!(root_keys.lines().count(), 1, "{root_keys}");
    assert!(root_keys.contains(r#"as the user \"NONE\""#), "{root_keys}");
    assert!(root_keys.trim_end().ends_with(META_KEY), "{root_keys}");
}

#[test]
fn admin_pass_sets_root_unless_user_data_does() {
    let guest = Guest::new();
    guest.meta_data(&json!({"uuid": UUID, "hostname": "h", "admin_pass": "Adm1n-pass"}));
    assert_eq!(guest.run().0, 0);
    assert!(crypt_verifies("Adm1n-pass", &guest.shadow_hash("root")));
    let cached = guest.read(&format!(
        "/var/lib/metaboot/instances/{UUID}/meta_data.json"
    ));
    assert!(!cached.contains("Adm1n-pass"), "admin_pass is not cached");
    assert!(!guest.read("/var/log/metaboot.log").contains("Adm1n-pass"));

    let guest = Guest::new();
    guest.meta_data(&json!({"uuid": UUID, "hostname": "h", "admin_pass": "Adm1n-pass"}));
    guest.user_data("#cloud-config\nchpasswd: {expire: false, users: [{name: root, password: mine, type: text}]}\n");
    assert_eq!(guest.run().0, 0);
    assert!(crypt_verifies("mine", &guest.shadow_hash("root")));
    // `users:` in its map form setting root's password: that one stays, not admin_pass.
    for users in [
        "users: {root: {plain_text_passwd: from-users, lock_passwd: false}}",
        "users: [{name: root, plain_text_passwd: from-users, lock_passwd: false}]",
    ] {
        let guest = Guest::new();
        guest.meta_data(&json!({"uuid": UUID, "hostname": "h", "admin_pass": "Adm1n-pass"}));
        guest.user_data(format!("#cloud-config\n{users}\n"));
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{users}: {stderr}");
        let hash = guest.shadow_hash("root");
        assert!(crypt_verifies("from-users", &hash), "{users}: {hash}");
    }
}

/// Random passwords go to the console, in cloud-init's words to the byte (the heading, a blank
/// line, one `user:password` line each), and nowhere else: not stderr (the journal), not the log
/// or status.json.
#[test]
fn random_passwords_go_to_the_console_only() {
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/dev")).unwrap();
    // A file stands for the device: what is written to it is what the console shows.
    std::fs::write(guest.path("/dev/console"), "").unwrap();
    guest.user_data(
        "#cloud-config\nusers: [{name: alice}]\n\
         chpasswd: {users: [{name: root, type: RANDOM}, {name: alice, type: RANDOM}]}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let console = guest.read("/dev/console");
    let lines: Vec<&str> = console.lines().collect();
    let (root_pw, alice_pw) = match lines.as_slice() {
        [_, _, root, alice] => (
            root.strip_prefix("root:").unwrap(),
            alice.strip_prefix("alice:").unwrap(),
        ),
        _ => panic!("{console:?}"),
    };
    assert_eq!(
        console,
        format!("Set the following 'random' passwords\n\nroot:{root_pw}\nalice:{alice_pw}\n")
    );
    for (user, password) in [("root", root_pw), ("alice", alice_pw)] {
        assert_eq!(password.len(), 20);
        assert!(crypt_verifies(password, &guest.shadow_hash(user)), "{user}");
        assert!(!stderr.contains(password), "stderr holds {user}'s password");
    }
    let shadow_line = guest.read("/etc/shadow").lines().next().unwrap().to_owned();
    assert_eq!(
        shadow_line.split(':').nth(2),
        Some("0"),
        "expire defaults to true"
    );
    for file in ["/var/log/metaboot.log", "/var/lib/metaboot/status.json"] {
        for password in [root_pw, alice_pw] {
            assert!(
                !guest.read(file).contains(password),
                "{file} holds a password"
            );
        }
    }
}

/// A run of an earlier boot (the status a snapshot or a reboot carries) says nothing of this
/// one: `metaboot status` is "not started" until this boot's run writes its own.
#[test]
fn a_status_of_another_boot_is_not_this_boots() {
    let guest = Guest::new();
    assert_eq!(guest.run().0, 0);
    assert_eq!(guest.metaboot(&["status"]).status.code(), Some(0));
    let path = guest.path("/var/lib/metaboot/status.json");
    let mut status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(status["boot_id"].is_string(), "{status:#}");
    status["boot_id"] = json!("00000000-0000-4000-8000-000000000000");
    std::fs::write(&path, serde_json::to_vec(&status).unwrap()).unwrap();
    let out = guest.metaboot(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "status: not started\n"
    );
    // This boot's run: its own status again.
    assert_eq!(guest.run().0, 0);
    assert_eq!(guest.metaboot(&["status"]).status.code(), Some(0));
}

#[test]
fn status_json_shape() {
    let guest = Guest::new();
    assert_eq!(
        guest.metaboot(&["status"]).status.code(),
        Some(2),
        "not started"
    );
    assert_eq!(guest.run().0, 0);
    let out = guest.metaboot(&["status", "--json"]);
    assert!(out.status.success());
    // cloud-init's `--format yaml`: the same document (JSON is YAML), and a finished run's
    // exit code, so a script polling it ends.
    let yaml = guest.metaboot(&["status", "--format", "yaml"]);
    assert_eq!((yaml.status.code(), &yaml.stdout), (Some(0), &out.stdout));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "version",
        "status",
        "instance_id",
        "new_instance",
        "source",
        "started_at",
        "finished_at",
        "duration_ms",
        "steps",
        "errors",
        "warnings",
    ] {
        assert!(status.get(key).is_some(), "missing {key}: {status:#}");
    }
    let names: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"config"));
    assert_eq!(names.last(), Some(&"power-state"));
    assert_eq!(names.len(), 46);
    // A root that is not the running system's `/` (an image being prepared, these tests)
    // never has its disk's partitions or file system grown.
    for (step, message) in [
        ("growpart", "root is not /: its disks are left alone"),
        ("resizefs", "root is not /: its file system is left alone"),
    ] {
        let step = status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == step)
            .unwrap();
        assert_eq!(step["outcome"], "skipped", "{step}");
        assert_eq!(step["message"], message, "{step}");
    }
}

/// `datasources:` orders the sources: with only the config drive listed and none attached, there
/// is no instance (and the metadata service is never asked); an unknown name is a config error
/// that names the known ones, and the others still serve.
#[test]
fn datasources_choose_and_order_the_sources() {
    let guest = Guest::new();
    guest.config("datasources: [config-drive]\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(guest.step("config").0, "ok");
    let (outcome, message) = guest.step("meta-data");
    assert_eq!(outcome, "error");
    assert!(
        message.starts_with("no datasource found (tried: config-drive;"),
        "{message}"
    );
    assert!(guest.status()["source"].is_null());
    assert_eq!(guest.server.hits("/openstack"), 0);

    guest.config("datasources: [nocloudx, metadata-service]\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "the config error makes the run an error: {stderr}");
    let (outcome, message) = guest.step("config");
    assert_eq!(outcome, "error");
    assert!(
        message
            .contains("unknown datasources [\"nocloudx\"] in `datasources` (known: config-drive")
            && message.ends_with("they are skipped"),
        "{message}"
    );
    assert_eq!(guest.step("meta-data").0, "ok");
    assert_eq!(guest.status()["source"], "metadata-service");
    assert_eq!(guest.read("/etc/hostname"), "test\n");
}

/// `network_data.json` of a static port (a `--no-dhcp` network), applied: on an image with
/// systemd-networkd a `.network` file for the interface with that MAC, named as the system
/// names it; on an image with nothing, `/etc/resolv.conf` (the `ip` commands run on `/` only);
/// `network: {config: disabled}` leaves it alone.
#[test]
fn network_data_is_rendered_for_the_image() {
    let guest = Guest::new();
    guest.serve(
        "network_data.json",
        // With a trunk's VLAN (no ethernet_mac_address) and an Ironic bond (no vif_id), as
        // nova's schema allows: left out with a warning, the rest applied.
        br#"{"links": [{"id": "tapabc", "vif_id": "p", "type": "bridge", "mtu": 1450,
              "ethernet_mac_address": "fa:16:3e:00:00:07"},
              {"id": "vlan0", "type": "vlan", "vlan_link": "tapabc", "vlan_id": 42,
               "vlan_mac_address": "fa:16:3e:00:00:07", "vif_id": "q"},
              {"id": "bond0", "type": "bond", "bond_links": ["tapabc"],
               "ethernet_mac_address": "fa:16:3e:00:00:08"}],
            "networks": [{"id": "network0", "link": "tapabc", "network_id": "n", "type": "ipv4",
              "ip_address": "198.18.30.2", "netmask": "255.255.255.0",
              "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.30.1"}],
              "services": [{"type": "dns", "address": "198.18.30.3"}]}],
            "services": []}"#,
    );
    let iface = guest.path("/sys/class/net/ens3");
    std::fs::create_dir_all(&iface).unwrap();
    std::fs::write(iface.join("address"), "fa:16:3e:00:00:07\n").unwrap();

    // No network manager: DNS in /etc/resolv.conf, the commands left for a real `/`.
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    assert_eq!(guest.step("network-data").0, "ok");
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "ok", "{message}");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("vlan0") && warnings.contains("bond0"),
        "{warnings}"
    );
    assert!(message.contains("not run"), "{message}");
    assert!(
        guest
            .read("/etc/resolv.conf")
            .contains("nameserver 198.18.30.3\n")
    );

    // systemd-networkd: a new instance id, so the per-instance step runs again.
    let guest = Guest::new();
    guest.serve(
        "network_data.json",
        br#"{"links": [{"id": "t", "vif_id": "p", "type": "bridge", "mtu": null, "ethernet_mac_address": "fa:16:3e:00:00:07"}],
            "networks": [{"id": "network0", "link": "t", "network_id": "n", "type": "ipv4", "ip_address": "198.18.30.2",
              "netmask": "255.255.255.0", "routes": [], "services": []}], "services": []}"#,
    );
    for dir in [
        "/sys/class/net/ens3",
        "/etc/systemd/network",
        "/usr/lib/systemd",
    ] {
        std::fs::create_dir_all(guest.path(dir)).unwrap();
    }
    std::fs::write(
        guest.path("/sys/class/net/ens3/address"),
        "fa:16:3e:00:00:07\n",
    )
    .unwrap();
    std::fs::write(guest.path("/usr/lib/systemd/systemd-networkd"), "").unwrap();
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "ok", "{message}");
    assert!(message.contains("systemd-networkd"), "{message}");
    let file = guest.read("/etc/systemd/network/10-metaboot-ens3.network");
    assert!(
        file.contains("MACAddress=fa:16:3e:00:00:07\nName=ens3\n")
            && file.contains("Address=198.18.30.2/24\n"),
        "{file}"
    );

    let guest = Guest::new();
    guest.config("network: {config: disabled}\n");
    guest.serve(
        "network_data.json",
        br#"{"links": [], "networks": [], "services": []}"#,
    );
    assert_eq!(guest.run().0, 0, "{}", guest.status());
    assert_eq!(guest.step("network").0, "skipped");
}

/// A new instance without network data (a NoCloud clone whose seed has none, an OpenStack
/// instance without `network_data.json`) keeps no `10-metaboot-` file of the instance the
/// image was made from, whose static address would come up on its NIC of that name; the image's
/// own files stay, and the step stays skipped (it runs again at the next boot).
#[test]
fn a_new_instance_without_network_data_keeps_no_file_of_the_earlier_one() {
    let guest = Guest::new();
    for dir in ["/etc/systemd/network", "/usr/lib/systemd"] {
        std::fs::create_dir_all(guest.path(dir)).unwrap();
    }
    std::fs::write(guest.path("/usr/lib/systemd/systemd-networkd"), "").unwrap();
    let earlier = "[Match]\nName=ens3\n\n[Network]\nDHCP=no\nAddress=198.18.30.2/24\n";
    for name in ["10-metaboot-ens3.network", "50-dhcp.network"] {
        std::fs::write(guest.path("/etc/systemd/network").join(name), earlier).unwrap();
    }
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "skipped", "{message}");
    assert!(
        message.starts_with("no network data: ")
            && message.contains("10-metaboot-ens3.network removed"),
        "{message}"
    );
    assert!(
        !guest
            .path("/etc/systemd/network/10-metaboot-ens3.network")
            .exists()
    );
    assert!(guest.path("/etc/systemd/network/50-dhcp.network").exists());

    // Not known to have none: a document that is not valid, or network data not asked for.
    for case in ["invalid", "not asked for"] {
        let guest = Guest::new();
        for dir in ["/etc/systemd/network", "/usr/lib/systemd"] {
            std::fs::create_dir_all(guest.path(dir)).unwrap();
        }
        std::fs::write(guest.path("/usr/lib/systemd/systemd-networkd"), "").unwrap();
        let file = guest.path("/etc/systemd/network/10-metaboot-ens3.network");
        std::fs::write(&file, earlier).unwrap();
        match case {
            "invalid" => guest.serve("network_data.json", br#"{"links": 1}"#),
            _ => guest.config("steps: [meta-data, network]\n"),
        }
        guest.run();
        assert_eq!(
            guest.step("network"),
            ("skipped".to_owned(), "no network data".to_owned()),
            "{case}"
        );
        assert!(file.exists(), "{case}");
    }
}

/// A guest whose meta-data has an RSA key pair (made with ssh-keygen) and whose user data sets
/// `password_postback: true`.
fn posting_guest() -> Guest {
    let guest = Guest::new();
    let key = guest.dir.path().join("id_rsa");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    guest.meta_data(&json!({
        "uuid": UUID,
        "hostname": "test.novalocal",
        "keys": [{"name": "rsa", "type": "ssh", "data": public.trim()}],
        "public_keys": {"rsa": public.trim()},
    }));
    guest.user_data("#cloud-config\npassword_postback: true\n");
    guest
}

/// `password_postback` when the post fails (here the server has no password endpoint: 404):
/// the password is still set, goes to the console (never to the log) so it is not lost, and
/// the step is an error naming the failed POST.
#[test]
fn a_failed_password_post_leaves_the_password_on_the_console() {
    if !testutil::require_tool("ssh-keygen") || !testutil::require_tool("perl") {
        return;
    }
    let guest = posting_guest();
    std::fs::create_dir_all(guest.path("/dev")).unwrap();
    std::fs::write(guest.path("/dev/console"), "").unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let (outcome, message) = guest.step("password-postback");
    assert_eq!(outcome, "error");
    assert!(
        message.contains("not posted") && message.contains("HTTP 404"),
        "{message}"
    );
    assert!(!stderr.contains("Set the following"), "{stderr}");
    let console = guest.read("/dev/console");
    let printed = console
        .split("Set the following 'random' passwords\n\nroot:")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no password on the console: {console}"));
    assert_eq!(printed.len(), 20);
    assert!(crypt_verifies(printed, &guest.shadow_hash("root")));
    assert!(!guest.read("/var/log/metaboot.log").contains(printed));
}

/// With several metadata URLs, the password goes to the one the instance's documents came
/// from, without a second search for the service: no second `GET /openstack`, nothing asked
/// at the other URL (here one where no one accepts).
#[test]
fn the_password_is_posted_where_the_documents_came_from() {
    if !testutil::require_tool("ssh-keygen") {
        return;
    }
    let guest = posting_guest();
    let next = guest.config_with_unanswered_url("");
    let (_, stderr) = guest.run();
    let (_, message) = guest.step("password-postback");
    let posted_to = format!("{}/openstack/latest/password", guest.server.url());
    assert!(message.contains(&posted_to), "{message}\n{stderr}");
    assert_eq!(guest.server.hits("/openstack/latest/password"), 1);
    assert_eq!(
        guest.server.hits("/openstack"),
        1,
        "the listing asked for once"
    );
    assert!(!next.was_asked(), "the second URL was asked: {stderr}");
}

/// A long host name that is not ASCII (user data's `hostname`, cut at 64 bytes inside a
/// character): the hostname step refuses it and the run goes on, the host name left as it was.
#[test]
fn a_long_host_name_that_is_not_ascii_is_refused_and_the_run_goes_on() {
    let guest = Guest::new();
    let name = "\u{4e2d}".repeat(30);
    guest.user_data(format!(
        "#cloud-config\nhostname: {name}\nwrite_files:\n- {{path: /etc/after, content: ran}}\n"
    ));
    let before = guest.read("/etc/hostname");
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let (outcome, message) = guest.step("hostname");
    assert_eq!(outcome, "error");
    assert!(
        message.starts_with("Invalid hostname") && message.contains('\u{4e2d}'),
        "{message}"
    );
    assert_eq!(guest.read("/etc/hostname"), before);
    assert_eq!(guest.read("/etc/after"), "ran");
}

/// `hostname: localhost` asked for in user data is set, as cloud-init sets it (it leaves alone
/// only a `localhost` no one asked for).
#[test]
fn a_localhost_asked_for_is_set() {
    let guest = Guest::new();
    std::fs::write(guest.path("/etc/hostname"), "old-name\n").unwrap();
    guest.user_data("#cloud-config\nhostname: localhost\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/etc/hostname"), "localhost\n");
    assert_eq!(guest.step("hostname").0, "ok");
}

/// A fully qualified name over the 64 bytes a host name may have: the host name is its first
/// label, and /etc/hosts has it whole (`hostname -f`), as cloud-init writes it.
#[test]
fn a_long_fqdn_is_kept_whole_in_etc_hosts() {
    let guest = Guest::new();
    let fqdn = format!("node-0123456789abcdef.{}.example.com", "c".repeat(50));
    assert!(fqdn.len() > 64);
    guest.user_data(format!(
        "#cloud-config\nfqdn: {fqdn}\nmanage_etc_hosts: localhost\n"
    ));
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/etc/hostname"), "node-0123456789abcdef\n");
    let hosts = guest.read("/etc/hosts");
    assert!(
        hosts.contains(&format!("\n127.0.1.1 {fqdn} node-0123456789abcdef\n")),
        "{hosts}"
    );
}

/// Vendor data's and user data's boothooks and per-instance scripts, each unnamed (both
/// `part-001` where each was decoded): every one of them runs.
#[test]
fn vendor_and_user_scripts_of_the_same_name_all_run() {
    let guest = Guest::new();
    let vendor = "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
                  --B\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\ntouch tmp/vendor-hook\n\
                  --B\nContent-Type: text/x-shellscript-per-instance\n\n#!/bin/sh\ntouch tmp/vendor-once\n\
                  --B--\n";
    guest.serve(
        "vendor_data.json",
        json!({"cloud-init": vendor}).to_string().as_bytes(),
    );
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\ntouch tmp/user-hook\n\
         --B\nContent-Type: text/x-shellscript-per-instance\n\n#!/bin/sh\ntouch tmp/user-once\n\
         --B--\n",
    );
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    for file in ["vendor-hook", "user-hook", "vendor-once", "user-once"] {
        assert!(
            guest.path(&format!("/tmp/{file}")).exists(),
            "{file}: {stderr}"
        );
    }
}

/// Vendor data's scripts run under `vendor_data: {prefix}` (here set by user data), as
/// cloud-init's cc_scripts_vendor runs them; user data's scripts do not.
#[test]
fn vendor_scripts_run_under_the_vendor_data_prefix() {
    let guest = Guest::new();
    guest.serve(
        "vendor_data.json",
        json!({"cloud-init": "#!/bin/sh\necho \"vendor $WORD\" >> tmp/prefixed\n"})
            .to_string()
            .as_bytes(),
    );
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/cloud-config\n\n\
         #cloud-config\nvendor_data: {enabled: true, prefix: [/usr/bin/env, WORD=prefixed]}\n\
         --B\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho \"user $WORD\" >> tmp/prefixed\n\
         --B--\n",
    );
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(
        std::fs::read_to_string(guest.path("/tmp/prefixed")).unwrap(),
        "vendor prefixed\nuser \n",
        "{stderr}"
    );
}

/// Boothooks run as cloud-init runs them, each as it is handled: user data's in the order of
/// its parts (not of their names), then vendor_data.json's and vendor_data2.json's (both
/// `part-001` where each was decoded, and both run), all before bootcmd; a hook an earlier
/// run wrote and this one's user data no longer has does not run. A user script named
/// `runcmd` or `vendor` (names metaboot's own files take) runs beside runcmd's.
#[test]
fn boothooks_run_in_cloud_inits_order_and_only_this_boots() {
    let guest = Guest::new();
    let hook = |text: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
             --B\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\necho {text} >> tmp/order\n\
             --B--\n"
        )
    };
    guest.serve(
        "vendor_data.json",
        json!({"cloud-init": hook("vendor")}).to_string().as_bytes(),
    );
    guest.serve(
        "vendor_data2.json",
        json!({"cloud-init": hook("vendor2")})
            .to_string()
            .as_bytes(),
    );
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/cloud-boothook\nContent-Disposition: attachment; filename=\"z-first\"\n\n\
         #cloud-boothook\necho user-z-first >> tmp/order\n\
         --B\nContent-Type: text/cloud-boothook\nContent-Disposition: attachment; filename=\"a-second\"\n\n\
         #cloud-boothook\necho user-a-second >> tmp/order\n\
         --B\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"runcmd\"\n\n\
         #!/bin/sh\necho part-runcmd >> tmp/scripts\n\
         --B\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"vendor\"\n\n\
         #!/bin/sh\necho part-vendor >> tmp/scripts\n\
         --B\nContent-Type: text/cloud-config\n\n\
         bootcmd: [echo bootcmd >> tmp/order]\nruncmd: [echo runcmd >> tmp/scripts]\n\
         --B--\n",
    );
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(
        guest.read("/tmp/order"),
        "user-z-first\nuser-a-second\nvendor\nvendor2\nbootcmd\n",
        "{stderr}"
    );
    let mut scripts: Vec<String> = guest
        .read("/tmp/scripts")
        .lines()
        .map(str::to_owned)
        .collect();
    scripts.sort();
    assert_eq!(
        scripts,
        ["part-runcmd", "part-vendor", "runcmd"],
        "{stderr}"
    );

    // A hook left from an earlier boot's user data: not this boot's, so it does not run.
    let stale = guest.path(&format!(
        "/var/lib/metaboot/instances/{UUID}/boothooks/old-hook"
    ));
    std::fs::write(&stale, "#!/bin/sh\necho stale >> tmp/order\n").unwrap();
    std::fs::set_permissions(
        &stale,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    std::fs::remove_file(guest.path("/tmp/order")).unwrap();
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(
        guest.read("/tmp/order"),
        "user-z-first\nuser-a-second\nvendor\nvendor2\nbootcmd\n",
        "{stderr}"
    );
}

/// A first boot cut short after it kept the instance's id but before it wrote the per-instance
/// scripts (power lost after a `bootcmd`): the next boot, the same instance, writes and runs
/// them, since their step has not run for this instance.
#[test]
fn per_instance_scripts_a_cut_first_boot_did_not_write_run_at_the_next() {
    let guest = Guest::new();
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/x-shellscript-per-instance\n\n#!/bin/sh\necho ran >> tmp/per-instance\n\
         --B--\n",
    );
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/tmp/per-instance"), "ran\n");
    // The state such a cut leaves: the id kept, neither the scripts nor their step's mark.
    let instances = guest.path("/var/lib/metaboot/instances");
    let instance = std::fs::read_dir(&instances)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(instance.join("sem/config_scripts_per_instance")).unwrap();
    std::fs::remove_dir_all(guest.path("/var/lib/metaboot/scripts/per-instance")).unwrap();
    std::fs::remove_file(guest.path("/tmp/per-instance")).unwrap();
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/tmp/per-instance"), "ran\n", "{stderr}");
    // Then once per instance, as always.
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/tmp/per-instance"), "ran\n");
}

/// A first boot cut short after it kept the instance's id but before the end of its init
/// stage (a `bootcmd` that reboots; here it kills metaboot): the next boot, the same instance,
/// writes the per-boot scripts and runs them, as every later boot does.
#[test]
fn per_boot_scripts_a_cut_first_boot_did_not_write_run_at_the_next() {
    let guest = Guest::new();
    guest.user_data(
        "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n\
         --B\nContent-Type: text/cloud-config\n\n\
         bootcmd: ['[ -e tmp/cut ] || { touch tmp/cut; kill -9 $PPID; }']\n\
         --B\nContent-Type: text/x-shellscript-per-boot\n\n#!/bin/sh\necho ran >> tmp/per-boot\n\
         --B--\n",
    );
    let (code, stderr) = guest.run();
    assert_ne!(code, 0, "the first boot is cut short: {stderr}");
    assert!(guest.path("/tmp/cut").exists(), "{stderr}");
    assert_eq!(
        guest.read("/var/lib/metaboot/data/instance-id"),
        format!("{UUID}\n")
    );
    assert!(!guest.path("/tmp/per-boot").exists());
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.status()["new_instance"], false);
    assert_eq!(guest.read("/tmp/per-boot"), "ran\n", "{stderr}");
    assert_eq!(guest.step("scripts-per-boot").0, "ok");
    // Then at every boot, written once.
    let (code, stderr) = guest.run();
    assert_done(&guest, code, &stderr);
    assert_eq!(guest.read("/tmp/per-boot"), "ran\nran\n");
}

/// A network's `dns_search` with an entry that is not a domain name (`bücher.de`,
/// `a.example,b.example`): that entry is left out with a warning, the rest of the network is
/// applied and the run succeeds (cloud-init writes what it gets).
#[test]
fn a_bad_search_domain_is_left_out_and_the_network_applied() {
    let guest = Guest::new();
    guest.serve(
        "network_data.json",
        r#"{"links": [{"id": "t", "vif_id": "p", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:07"}],
            "networks": [{"id": "network0", "link": "t", "network_id": "n", "type": "ipv4",
              "ip_address": "198.18.30.2", "netmask": "255.255.255.0", "routes": [],
              "services": [{"type": "dns", "address": "198.18.30.3"}],
              "dns_search": ["bücher.de", "lab.example", "a.example,b.example"]}],
            "services": []}"#
            .as_bytes(),
    );
    let iface = guest.path("/sys/class/net/ens3");
    std::fs::create_dir_all(&iface).unwrap();
    std::fs::write(iface.join("address"), "fa:16:3e:00:00:07\n").unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("network");
    assert_eq!(outcome, "ok", "{message}");
    assert_eq!(
        guest.read("/etc/resolv.conf"),
        "# Written by metaboot from network_data.json.\nnameserver 198.18.30.3\n\
         search lab.example\n"
    );
    let warnings = guest.status()["warnings"].to_string();
    for bad in ["bücher.de", "a.example,b.example"] {
        assert!(
            warnings.contains(&format!(
                "network: network_data.json: dns_search: \\\"{bad}\\\" is not a domain name; \
                 left out"
            )),
            "{warnings}"
        );
    }
}

/// How long the background process of
/// [`a_background_process_of_runcmd_keeps_a_reader_once_the_run_is_over`] and its output relay
/// may take, once let go, to write, be logged and end.
const BACKGROUND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The processes whose standard output is `file` (the output relay writes the log there).
fn processes_writing_to(file: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.bytes().all(|b| b.is_ascii_digit())
            && std::fs::read_link(entry.path().join("fd/1")).is_ok_and(|target| target == file)
        {
            found.push(pid);
        }
    }
    found
}

/// A process runcmd leaves in the background keeps a reader for its output once metaboot has
/// exited (cloud-init points scripts' output at a `tee` process that outlives it): it writes
/// only after the run is over, yet its lines reach the log file and the console, and it ends
/// normally instead of dying of SIGPIPE at its first write; the relay ends with it.
#[test]
fn a_background_process_of_runcmd_keeps_a_reader_once_the_run_is_over() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nruncmd:\n  - |\n    (sh -c 'while [ ! -e tmp/go ]; do sleep 0.1; done; \
         echo late; sleep 1; echo later'; echo \"exit $?\" > tmp/bg.status) &\n",
    );
    // Not `Output`: the relay keeps metaboot's standard error, as the journal's socket.
    let stderr_path = guest.dir.path().join("stderr");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_metaboot"))
        .args(["run", "--root"])
        .arg(&guest.root)
        .env_remove("http_proxy")
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .status()
        .unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr());
    assert_eq!(guest.step("runcmd").0, "ok");
    // metaboot has exited: only now does the background process write.
    std::fs::write(guest.path("/tmp/go"), "").unwrap();
    let log_path = guest.path("/var/log/metaboot.log");
    let deadline = std::time::Instant::now() + BACKGROUND_DEADLINE;
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "after {BACKGROUND_DEADLINE:?}, not {what}; log:\n{}",
                guest.read("/var/log/metaboot.log")
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("ended", &|| guest.path("/tmp/bg.status").exists());
    assert_eq!(
        guest.read("/tmp/bg.status"),
        "exit 0\n",
        "not killed by SIGPIPE"
    );
    wait_for("logged", &|| {
        guest.read("/var/log/metaboot.log").contains("| later ")
    });
    wait_for("relay ended", &|| {
        processes_writing_to(&log_path).is_empty()
    });
    let log = guest.read("/var/log/metaboot.log");
    assert!(log.contains("| late script=\"runcmd\""), "{log}");
    assert!(log.contains("| later script=\"runcmd\""), "{log}");
    assert_eq!(log.matches("| late script=").count(), 1, "{log}");
    assert!(
        stderr().contains("| later script=\"runcmd\""),
        "{}",
        stderr()
    );
    assert!(
        stderr().contains("an output relay process logs it from now on"),
        "{}",
        stderr()
    );
}

/// Whoever reads metaboot's output through a pipe (`metaboot run 2>&1 | tee`, `ssh guest
/// metaboot run`, `Command::output`) or a socket that is not the journal's (a program's
/// socketpair) gets its end when metaboot exits, not when a process runcmd left in the
/// background ends: the output relay keeps neither; its lines still reach the log file.
#[test]
fn a_background_process_does_not_hold_a_pipe_reading_metaboots_output() {
    let guest = Guest::new();
    guest.user_data(
        // It gives up waiting after ~40 s, past BACKGROUND_DEADLINE: a run that waited for it
        // fails the test instead of hanging.
        "#cloud-config\nruncmd:\n  - |\n    (sh -c 'i=0; while [ ! -e tmp/go ] && [ $i -lt 400 ]; \
         do sleep 0.1; i=$((i+1)); done; echo late') &\n",
    );
    let started = std::time::Instant::now();
    let (code, stderr) = guest.run();
    let took = started.elapsed();
    std::fs::write(guest.path("/tmp/go"), "").unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < BACKGROUND_DEADLINE,
        "metaboot's output was held for {took:?}, past the run"
    );
    assert!(
        stderr.contains("an output relay process logs it from now on"),
        "{stderr}"
    );
    let deadline = std::time::Instant::now() + BACKGROUND_DEADLINE;
    while !guest.read("/var/log/metaboot.log").contains("| late ") {
        assert!(
            std::time::Instant::now() < deadline,
            "the line never reached the log"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The same through a socketpair.
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nruncmd:\n  - |\n    (sh -c 'i=0; while [ ! -e tmp/go ] && [ $i -lt 400 ]; \
         do sleep 0.1; i=$((i+1)); done; echo late') &\n",
    );
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let started = std::time::Instant::now();
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_metaboot"))
        .args(["run", "--root"])
        .arg(&guest.root)
        .env_remove("http_proxy")
        .env_remove("JOURNAL_STREAM")
        .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut ours, &mut stderr).unwrap();
    let took = started.elapsed();
    std::fs::write(guest.path("/tmp/go"), "").unwrap();
    assert!(run.wait().unwrap().success(), "{stderr}");
    assert!(
        took < BACKGROUND_DEADLINE,
        "metaboot's socket was held for {took:?}, past the run"
    );
}

/// A symlink in a scripts directory of the image runs the executable file it leads to inside
/// the root (cloud-init's `runparts` follows links); one that leads nowhere runnable, or out of
/// the root, is skipped with a warning naming it.
#[test]
fn a_symlink_in_a_scripts_directory_runs_its_target_inside_the_root() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let guest = Guest::new();
    let app = guest.path("/opt/app");
    std::fs::create_dir_all(&app).unwrap();
    let exe = |path: &std::path::Path, body: &str, mode: u32| {
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    exe(
        &app.join("boot.sh"),
        "#!/bin/sh\necho boot > tmp/app.out\n",
        0o755,
    );
    exe(
        &app.join("data.sh"),
        "#!/bin/sh\necho data > tmp/data.out\n",
        0o644,
    );
    // An executable file outside the root, which no link may reach.
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("escaped");
    exe(
        &outside.path().join("escape.sh"),
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
        0o755,
    );
    let per_boot = guest.path("/var/lib/metaboot/scripts/per-boot");
    std::fs::create_dir_all(&per_boot).unwrap();
    symlink("/opt/app/boot.sh", per_boot.join("app")).unwrap();
    symlink("/opt/app/missing.sh", per_boot.join("dangling")).unwrap();
    symlink("/opt/app", per_boot.join("directory")).unwrap();
    symlink("../../../../../opt/app/data.sh", per_boot.join("not-exec")).unwrap();
    symlink(outside.path().join("escape.sh"), per_boot.join("out-abs")).unwrap();
    let up = "../".repeat(guest.root.components().count() + 8);
    let relative = format!("{up}{}", outside.path().join("escape.sh").display());
    symlink(relative, per_boot.join("out-rel")).unwrap();
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("scripts-per-boot"),
        ("ok".to_owned(), "1 script(s) ran".to_owned())
    );
    assert_eq!(guest.read("/tmp/app.out"), "boot\n");
    assert!(!guest.path("/tmp/data.out").exists());
    assert!(!marker.exists(), "a link was followed out of the root");
    for (name, what) in [
        ("dangling", "is missing"),
        ("directory", "is not a regular file"),
        ("not-exec", "is not executable"),
        ("out-abs", "is missing"),
        ("out-rel", "is missing"),
    ] {
        let warning = format!(
            "a symlink whose target, resolved inside {}, {what}; skipped: point it at an \
             executable file under the root script=\"{name}\"",
            guest.root.display()
        );
        assert!(stderr.contains(&warning), "{warning}\n{stderr}");
    }
}

/// A reboot of the instance the machine is (its DMI system UUID, which nova sets to the
/// instance's uuid, any case, is the last run's instance id) gives the metadata service one
/// round, not the deadline, then runs without metadata: an outage does not hold the logins
/// back on every reboot. A first boot, or a machine that is not that instance, still waits.
#[test]
fn a_reboot_of_the_known_instance_gives_discovery_one_round() {
    use std::time::{Duration, Instant};
    use support::server::Fault;
    let guest = Guest::new();
    guest.user_data(CLOUD_CONFIG);
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let dmi = guest.path("/sys/class/dmi/id/product_uuid");
    std::fs::create_dir_all(dmi.parent().unwrap()).unwrap();
    let newest = format!(
        "/openstack/{}/meta_data.json",
        metaboot_proto::OpenStackVersion::LATEST.date()
    );
    let outage = |dmi_uuid: &str| {
        std::fs::write(&dmi, format!("{dmi_uuid}\n")).unwrap();
        let asked = guest.server.hits(&newest);
        for path in [newest.as_str(), "/openstack"] {
            guest.server.fail(path, Fault::Status(503), 1000);
        }
        let started = Instant::now();
        let (code, log) = guest.run();
        assert_ne!(code, 0, "{log}");
        assert_eq!(guest.step("meta-data").0, "error", "{log}");
        (guest.server.hits(&newest) - asked, started.elapsed())
    };
    // Guest's metaboot.yaml: `deadline_secs: 5`.
    let deadline = Duration::from_secs(5);
    let booted = guest.read("/tmp/bootcmd.count");
    let (rounds, took) = outage(&support::UUID.to_uppercase());
    assert_eq!(rounds, 1);
    assert!(took < deadline, "{took:?}");
    // The every-boot steps ran with the configuration the instance merged, as cloud-init runs
    // from its cached datasource: its user data's bootcmd too.
    assert_eq!(guest.read("/tmp/bootcmd.count"), format!("{booted}boot\n"));
    let (rounds, took) = outage("00000000-0000-0000-0000-000000000000");
    assert!(rounds > 1, "{rounds}");
    assert!(took >= deadline, "{took:?}");
}
