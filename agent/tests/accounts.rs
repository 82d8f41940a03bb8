//! Users and passwords from `#cloud-config` as cloud-init leaves them (docs/protocol.md §5.3,
//! §5.4): what `/etc/passwd`, `/etc/shadow`, `/etc/group` and the homes hold after a run.

mod support;

use support::*;

/// `password:` beside a `chpasswd` whose list is empty: cloud-init sets the default user's
/// password (an empty `users` or `list` names no one), and so does metaboot.
#[test]
fn an_empty_chpasswd_list_leaves_password_to_the_default_user() {
    for chpasswd in ["{users: []}", "{list: []}", "{expire: false, users: []}"] {
        let guest = Guest::with_debian();
        guest.user_data(format!(
            "#cloud-config\npassword: Given-pw-1\nchpasswd: {chpasswd}\n"
        ));
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{chpasswd}: {stderr}");
        let hash = guest.shadow_hash("debian");
        assert!(crypt_verifies("Given-pw-1", &hash), "{chpasswd}: {hash}");
    }
}

/// A `chpasswd.users` entry without a `password`: cloud-init gives it the text `RANDOM` as a
/// hash (its `type` defaults to `hash`), so the shadow field is `RANDOM`, which no password
/// opens, expired, and nothing is printed; with `type: text` the password is the word. Only
/// `type: RANDOM` makes a random password.
#[test]
fn a_chpasswd_user_without_a_password_gets_the_text_random_not_a_random_one() {
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/dev")).unwrap();
    std::fs::write(guest.path("/dev/console"), "").unwrap();
    guest.user_data(
        "#cloud-config\nusers: [{name: dave}, {name: fred}]\n\
         chpasswd: {users: [{name: dave}, {name: fred, type: text}]}\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let shadow = guest.read("/etc/shadow");
    let dave = shadow.lines().find(|l| l.starts_with("dave:")).unwrap();
    assert!(dave.starts_with("dave:RANDOM:0:"), "{dave}");
    assert!(crypt_verifies("RANDOM", &guest.shadow_hash("fred")));
    assert_eq!(guest.read("/dev/console"), "", "no random password made");
    assert!(!stderr.contains("Set the following"), "{stderr}");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("chpasswd: dave: no password given"),
        "{warnings}"
    );
}

/// `ssh_pwauth` read as cloud-init's `handle_ssh_pwauth` reads it, through `util.is_true` and
/// `util.is_false`: a number by its text (`1`, `0`), words in any case with spaces around.
#[test]
fn ssh_pwauth_takes_cloud_inits_truth_values() {
    for (value, expected) in [
        ("1", "yes"),
        ("0", "no"),
        ("' Yes '", "yes"),
        ("'OFF'", "no"),
        ("true", "yes"),
        ("false", "no"),
    ] {
        let guest = Guest::new();
        std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
        std::fs::write(guest.path("/etc/ssh/sshd_config"), "Port 22\n").unwrap();
        guest.user_data(format!("#cloud-config\nssh_pwauth: {value}\n"));
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{value}: {stderr}");
        assert_eq!(
            guest.read("/etc/ssh/sshd_config"),
            format!("Port 22\nPasswordAuthentication {expected}\n"),
            "{value}"
        );
    }
}

/// `ssh_pwauth` text that is neither true, false nor `unchanged`: cloud-init warns and leaves
/// sshd's setting alone, the run succeeds; so does metaboot's.
#[test]
fn unrecognized_ssh_pwauth_text_is_a_warning_and_changes_nothing() {
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
    std::fs::write(guest.path("/etc/ssh/sshd_config"), "Port 22\n").unwrap();
    guest.user_data("#cloud-config\nssh_pwauth: sometimes\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/etc/ssh/sshd_config"), "Port 22\n");
    assert_eq!(guest.step("cloud-config").0, "ok");
    assert_eq!(guest.step("ssh-pwauth").0, "skipped");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("ssh_pwauth: a text that is not true, false or unchanged"),
        "{warnings}"
    );
}

/// `users:` with no value: cloud-init's `normalize_users_groups` takes it as an empty list (a
/// warning), and the `null` in user data stays over the image's `users: [default]`: no user,
/// not even the default one, so the instance's key goes to root alone. `user:` still adds the
/// default user, as in cloud-init.
#[test]
fn users_null_creates_no_user_not_even_the_default_one() {
    for users in ["users:", "users: ~", "users: null"] {
        let guest = Guest::new();
        guest.config("default_user: {name: debian}\nusers: [default]\n");
        guest.user_data(format!("#cloud-config\n{users}\n"));
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{users}: {stderr}");
        let passwd = guest.read("/etc/passwd");
        assert!(!passwd.contains("debian"), "{users}: {passwd}");
        assert!(!guest.path("/home/debian").exists(), "{users}");
        assert_eq!(
            guest.step("ssh-keys"),
            ("ok".into(), "1 key for root".into()),
            "{users}"
        );
        let warnings = guest.status()["warnings"].to_string();
        assert!(warnings.contains("users: empty (null)"), "{warnings}");
    }
    let guest = Guest::new();
    guest.config("default_user: {name: debian}\n");
    guest.user_data("#cloud-config\nusers:\nuser: ubuntu\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert!(guest.read("/etc/passwd").contains("\nubuntu:"));
}

/// A `users` entry for a user the image has: cloud-init's `add_user` skips it ("already
/// exists, skipping"), so its `groups` are neither made nor joined; `create_user` still sets
/// its password and lock. The image's `/etc/group` is left as it was.
#[test]
fn an_existing_user_is_not_added_to_the_entrys_groups() {
    let guest = Guest::with_debian();
    let group_before = guest.read("/etc/group");
    guest.user_data(
        "#cloud-config\nusers:\n- name: debian\n  groups: [sudo, docker]\n  \
         plain_text_passwd: Deb-pw-1\n  lock_passwd: false\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.read("/etc/group"), group_before);
    assert!(crypt_verifies("Deb-pw-1", &guest.shadow_hash("debian")));
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("debian: exists already, so `groups` is not applied"),
        "{warnings}"
    );
}

/// A new user's home gets the mode useradd (which cloud-init runs) gives it from the image's
/// `/etc/login.defs`: `HOME_MODE`, else `0777 & ~UMASK`, else 0755.
#[test]
fn a_new_home_gets_the_mode_of_the_images_login_defs() {
    for (login_defs, mode) in [
        (None, 0o755),
        (Some("UMASK\t\t022\n#HOME_MODE\t0700\n"), 0o755),
        (Some("UMASK 027\n"), 0o750),
        (Some("UMASK 022\nHOME_MODE 0750\n"), 0o750),
        (Some("HOME_MODE \"0700\"\n"), 0o700),
    ] {
        let guest = Guest::new();
        if let Some(text) = login_defs {
            std::fs::write(guest.path("/etc/login.defs"), text).unwrap();
        }
        guest.user_data("#cloud-config\nusers: [{name: alice}]\n");
        let (code, stderr) = guest.run();
        assert_eq!(code, 0, "{login_defs:?}: {stderr}");
        let (got, uid, _) = guest.mode_owner("/home/alice");
        assert_eq!(got, mode, "{login_defs:?}: {got:o}");
        if require_root() {
            assert_eq!(uid, 1000, "{login_defs:?}");
        }
    }
}

/// `chpasswd.users` types are compared as cloud-init compares them, as written: `type: random`
/// is none of `RANDOM`, `text`, `hash`, so the entry is skipped (root's password left as it
/// was, nothing printed), with a warning saying what to write.
#[test]
fn a_chpasswd_type_in_other_case_is_skipped() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nchpasswd: {users: [{name: root, type: random}]}\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.shadow_hash("root"), "*");
    assert!(!stderr.contains("Set the following"), "{stderr}");
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("chpasswd: unknown type \\\"random\\\" for root; skipped"),
        "{warnings}"
    );
}
