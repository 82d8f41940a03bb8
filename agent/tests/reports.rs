//! What a run reports: a literal `RANDOM` password is a warning, no password lands in a report
//! or the log, and the report tells the truth (created users, no orphan groups, escaped names,
//! one bad `write_files` entry fails alone, a cloud-init key metaboot does not apply is named).

mod support;

use std::os::unix::fs::MetadataExt;

use serde_json::json;
use support::*;

#[test]
fn a_literal_random_password_is_set_as_text_with_a_warning() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nusers: [{name: alice}]\n\
         chpasswd: {expire: false, users: [{name: alice, password: RANDOM, type: text}]}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        crypt_verifies("RANDOM", &guest.shadow_hash("alice")),
        "the literal text, as cloud-init 22.4 sets it"
    );
    assert!(!stderr.contains("Set the following 'random' passwords"));
    let warning =
        "set-passwords: chpasswd: alice: password is the literal text RANDOM; use type: RANDOM";
    let warnings = guest.status()["warnings"].clone();
    assert!(
        warnings.as_array().unwrap().iter().any(|w| w == warning),
        "{warnings:#}"
    );
    let out = guest.metaboot(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("warnings:\n  - {warning}\n")),
        "{text}"
    );
}

/// A random password, on a root without a console and with stderr no terminal (the units send
/// it to the journal): shown nowhere, as cloud-init, and a warning says so.
#[test]
fn a_random_password_without_a_console_is_not_written_to_stderr() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nusers: [{name: alice}]\n\
         chpasswd: {expire: false, users: [{name: alice, type: RANDOM}]}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("Set the following"), "{stderr}");
    assert!(!stderr.contains("alice:"), "{stderr}");
    assert!(
        stderr.contains("could not be shown on /dev/console"),
        "{stderr}"
    );
}

/// Every password planted below, each in a field that must never be reported.
const PLANTED: &[&str] = &[
    "Pw-Passwd-2222",
    "Pw-Plain-3333",
    "Pw-Plain-Bad-4444",
    "Pw-Hashed-5555",
    "Pw-Passwd-Bad-6666",
    "Pw-List-NoColon-7777",
    "Pw-List-8888",
    "Pw-Users-9999",
    "Pw-Users-Typo-1212",
    "Pw-Top-1313",
    "Pw-Alone-NoColon-1515",
    "Pw-Unterminated-1717",
    "Pw-Shape-String-2121",
    "Pw-Shape-Users-2323",
    "Pw-Url-2525",
    "Pw-Admin-1818",
    "Pw-Wrong-Shape-1919",
];

const SECRETS_USERS: &str = r#"#cloud-config
users:
  - default
  - {name: alice, passwd: "$6$Pw-Passwd-2222$abcdefgh"}
  - {name: bob, plain_text_passwd: Pw-Plain-3333, lock_passwd: false}
  - {name: carol, plain_text_passwd: "Pw-Plain-Bad-4444\nsecond line"}
  - {name: dave, hashed_passwd: "Pw-Hashed-5555:x"}
  - {name: erin, passwd: "Pw-Passwd-Bad-6666:x"}
chpasswd:
  expire: false
  list: |
    root:Pw-List-8888
    frank Pw-List-NoColon-7777
    Pw-Alone-NoColon-1515
  users:
    - {name: ghost, password: Pw-Users-9999, type: text}
    - {name: root, password: Pw-Users-Typo-1212, type: txet}
"#;

/// Runs `user_data` on a fresh guest whose default user is `debian`; returns the guest and
/// everything the run and `metaboot status` printed.
fn run_with(user_data: &str, meta: Option<serde_json::Value>) -> (Guest, String) {
    let guest = Guest::new();
    guest.config("default_user: {name: debian}\ndisable_root: false\n");
    if let Some(meta) = meta {
        guest.meta_data(&meta);
    }
    guest.user_data(user_data);
    let run = guest.metaboot(&["run"]);
    let mut printed = String::from_utf8_lossy(&run.stdout).into_owned();
    printed += &String::from_utf8_lossy(&run.stderr);
    for args in [&["status"][..], &["status", "--json"]] {
        let out = guest.metaboot(args);
        printed += &String::from_utf8_lossy(&out.stdout);
        printed += &String::from_utf8_lossy(&out.stderr);
    }
    (guest, printed)
}

#[test]
fn no_password_is_kept_in_a_report_the_log_or_the_output() {
    let runs = [
        run_with(SECRETS_USERS, None),
        run_with(
            "#cloud-config\npassword: Pw-Top-1313\n",
            Some(json!({"uuid": UUID, "hostname": "h", "admin_pass": "Pw-Admin-1818"})),
        ),
        run_with(
            "#cloud-config\nusers: [default]\npassword: \"Pw-Unterminated-1717\n",
            None,
        ),
        run_with(
            "#cloud-config\nchpasswd: {users: [{name: root, password: [Pw-Wrong-Shape-1919]}]}\n",
            None,
        ),
        // Values of the wrong shape: what serde would quote in its message.
        run_with(
            "#cloud-config\nchpasswd: \"root:Pw-Shape-String-2121\"\n",
            None,
        ),
        run_with(
            "#cloud-config\nchpasswd: {users: \"root:Pw-Shape-Users-2323\"}\n",
            None,
        ),
        run_with(
            "#include\nhttp://admin:Pw-Url-2525@10.0.0.1/user-data\n",
            None,
        ),
    ];
    let raw_caches = ["user_data", "vendor_data.json", "vendor_data2.json"];
    for (guest, printed) in &runs {
        for secret in PLANTED {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        for file in files_under(&guest.root) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let mode = std::fs::metadata(&file).unwrap().mode() & 0o777;
            if file == guest.path("/etc/shadow") {
                continue;
            }
            if raw_caches.contains(&name.as_str()) {
                // The raw input, kept for `metaboot query user-data` as cloud-init keeps
                // user-data.txt: root only.
                assert_eq!(mode, 0o600, "{}", file.display());
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            for secret in PLANTED {
                assert!(!text.contains(secret), "{} holds {secret}", file.display());
            }
        }
        assert_eq!(guest.mode_owner("/var/log/metaboot.log").0, 0o600);
        let cloud_config = format!("/var/lib/metaboot/instances/{UUID}/cloud-config.json");
        if guest.path(&cloud_config).exists() {
            assert_eq!(guest.mode_owner(&cloud_config).0, 0o600);
        }
    }
    // A `write_files` entry that is not a map: its text (a file's content, often a secret)
    // is not quoted in what the run reports.
    let (guest, printed) = run_with("#cloud-config\nwrite_files: [\"Pw-Content-2424\"]\n", None);
    let status = guest.read("/var/lib/metaboot/status.json");
    assert!(status.contains("write_files"), "{status}");
    for said in [&status, &printed] {
        assert!(!said.contains("Pw-Content-2424"), "{said}");
    }

    // The passwords themselves were applied.
    let first = &runs[0].0;
    assert!(crypt_verifies("Pw-Plain-3333", &first.shadow_hash("bob")));
    assert!(crypt_verifies("Pw-List-8888", &first.shadow_hash("root")));
    assert!(crypt_verifies(
        "Pw-Top-1313",
        &runs[1].0.shadow_hash("debian")
    ));
    // Messages name the user and the line, never the value.
    let warnings = first.status()["warnings"].to_string();
    assert!(
        warnings.contains("chpasswd.list: line 2 is not user:password; skipped"),
        "{warnings}"
    );
    assert!(
        warnings.contains("chpasswd.list: line 3 is not user:password; skipped"),
        "{warnings}"
    );
}

#[test]
fn created_users_are_reported_and_a_failed_user_leaves_no_group() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nusers:\n- {name: alice}\n- {name: bob, gecos: \"B:ob\"}\n\
         - {name: carol, homedir: /etc/hostname}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let (outcome, message) = guest.step("users-groups");
    assert_eq!(outcome, "error");
    assert!(message.contains("created [alice, carol]"), "{message}");
    assert!(message.contains("bob: "), "{message}");
    assert!(message.contains("carol: home /etc/hostname"), "{message}");
    for file in ["/etc/passwd", "/etc/group", "/etc/shadow"] {
        assert!(
            !guest.read(file).lines().any(|l| l.starts_with("bob:")),
            "{file} keeps a trace of bob"
        );
    }
    assert!(guest.read("/etc/passwd").contains("\ncarol:x:"));
    assert!(guest.read("/etc/group").contains("\ncarol:x:"));
}

#[test]
fn control_characters_in_names_cannot_forge_log_lines() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\ngroups: [\"ops\\nFORGED-1 metaboot finished: status=done\"]\n\
         chpasswd: {expire: false, users: [{name: \"nobody\\nFORGED-2\", password: x, type: text}]}\n\
         write_files: [{path: \"/tmp/a\\nFORGED-3\\u001b[2J\", content: x}]\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    let status = guest.metaboot(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    let log = guest.read("/var/log/metaboot.log");
    for (what, text) in [("log", &log), ("console", &stderr), ("status", &shown)] {
        for line in text.lines() {
            assert!(
                !line.trim_start().starts_with("FORGED"),
                "{what} has a forged line: {line:?}"
            );
            assert!(!line.contains('\u{1b}'), "{what} has an escape: {line:?}");
        }
    }
    assert!(log.contains("ops\\nFORGED-1"), "{log}");
    assert!(log.contains("nobody\\nFORGED-2"), "{log}");
    assert!(log.contains("/tmp/a\\nFORGED-3\\x1b[2J"), "{log}");
}

#[test]
fn one_bad_write_files_entry_fails_alone() {
    let guest = Guest::new();
    guest.user_data(
        "#cloud-config\nwrite_files:\n- {path: /etc/a, content: a}\n\
         - {path: /etc/b, content: b, permissions: rwx}\n- {path: /etc/c, content: c}\n\
         - {path: /etc/d, content: d, defer: true, owner: [bad]}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(guest.read("/etc/a"), "a");
    assert_eq!(guest.read("/etc/c"), "c");
    assert!(!guest.path("/etc/b").exists());
    assert!(!guest.path("/etc/d").exists());
    assert_eq!(guest.step("cloud-config").0, "ok");
    let (outcome, message) = guest.step("write-files");
    assert_eq!(outcome, "error");
    assert!(message.contains("/etc/b"), "{message}");
    assert!(message.contains("wrote 2"), "{message}");
    let (outcome, message) = guest.step("write-files-deferred");
    assert_eq!(outcome, "error");
    assert!(message.contains("/etc/d"), "{message}");
}

#[test]
fn cloud_init_keys_metaboot_does_not_apply_are_warnings_that_say_why() {
    let guest = Guest::new();
    // metaboot.yaml's own keys are the image author's business: not reported.
    guest.config("disable_root: false\ngrub_dpkg: {enabled: false}\n");
    guest.user_data(
        "#cloud-config\nhostname: kept\nsnap: {commands: [install hello]}\n\
         package_reboot_if_required: true\nbyobu_by_default: enable\nmerge_how: dict(recurse_array)\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let warnings: Vec<String> = serde_json::from_value(guest.status()["warnings"].clone()).unwrap();
    assert_eq!(
        warnings,
        [
            "cloud-config: `byobu_by_default` is a cloud-init key metaboot does not apply: \
             metaboot leaves this system setting to the image",
            "cloud-config: `package_reboot_if_required` is a cloud-init key metaboot does not \
             apply: metaboot does not reboot after installing packages (`power_state` reboots)",
            "cloud-config: `snap` is a cloud-init key metaboot does not apply: metaboot installs \
             packages with apt-get (`packages`), no snaps or drivers",
        ]
    );
    assert_eq!(guest.read("/etc/hostname"), "kept\n");
}
