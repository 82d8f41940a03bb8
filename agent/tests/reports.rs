//! What a run reports: a literal `RANDOM` password is a warning, no password lands in a report
//! or the log, and the report tells the truth (created users, no orphan groups, escaped names,
//! one bad `write_files` entry fails alone).

mod support;

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
