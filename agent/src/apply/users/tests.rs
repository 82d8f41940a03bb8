//! Tests of `users`.
use super::*;

const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n# comment kept\n\
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\n";
const SHADOW_TEXT: &str = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n\
    bob:!:19000:0:99999:7:::\n";
const GROUP_TEXT: &str = "root:x:0:\nsudo:x:27:\nbob:x:1000:\n";

fn root_with(shadow: bool) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    std::fs::create_dir_all(root.host_path("/etc")).unwrap();
    std::fs::write(root.host_path(PASSWD), PASSWD_TEXT).unwrap();
    std::fs::write(root.host_path(GROUP), GROUP_TEXT).unwrap();
    if shadow {
        std::fs::write(root.host_path(SHADOW), SHADOW_TEXT).unwrap();
    }
    (dir, root)
}

#[test]
fn colon_file_edits_in_place_and_keeps_other_lines() {
    let mut file = ColonFile::parse(PASSWD_TEXT.as_bytes(), 7);
    assert!(file.set("daemon", 6, "/bin/false"));
    assert!(!file.set("nobody", 6, "/bin/false"));
    assert_eq!(
        file.render(),
        PASSWD_TEXT
            .replace(
                "daemon:/usr/sbin:/usr/sbin/nologin",
                "daemon:/usr/sbin:/bin/false"
            )
            .into_bytes()
    );
    let mut same = ColonFile::parse(PASSWD_TEXT.as_bytes(), 7);
    same.set("root", 6, "/bin/sh");
    assert!(!same.changed());
}

#[test]
fn sets_password_and_expiry_in_shadow() {
    let (_dir, root) = root_with(true);
    let mut accounts = Accounts::load(&root).unwrap();
    accounts
        .set_password_hash("root", "$6$salt$hash", true)
        .unwrap();
    accounts.save().unwrap();
    let shadow = std::fs::read_to_string(root.host_path(SHADOW)).unwrap();
    assert!(
        shadow.starts_with("root:$6$salt$hash:0:0:99999:7:::\n"),
        "{shadow}"
    );
    assert!(shadow.contains("daemon:*:19000:0:99999:7:::\n"));

    let mut accounts = Accounts::load(&root).unwrap();
    accounts.set_password_hash("bob", "$6$a$b", false).unwrap();
    let bob = accounts.shadow.as_ref().unwrap().get("bob").unwrap();
    assert_eq!(bob[2], today().to_string());
    assert!(accounts.set_password_hash("bob", "a:b", false).is_err());
    assert!(matches!(
        accounts.set_password_hash("nobody", "x", false),
        Err(UsersError::NoSuchUser(_))
    ));
}

#[test]
fn without_shadow_a_shadow_file_is_created() {
    let (_dir, root) = root_with(false);
    let mut accounts = Accounts::load(&root).unwrap();
    accounts.set_password_hash("root", "$6$s$h", false).unwrap();
    accounts.save().unwrap();
    let shadow = std::fs::read_to_string(root.host_path(SHADOW)).unwrap();
    assert!(shadow.starts_with("root:$6$s$h:"), "{shadow}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(root.host_path(SHADOW)).unwrap().mode() & 0o777,
        0o640
    );
    assert!(
        std::fs::read_to_string(root.host_path(PASSWD))
            .unwrap()
            .starts_with("root:x:0:0:")
    );
}

#[test]
fn inline_passwd_hash_moves_to_shadow() {
    let (_dir, root) = root_with(false);
    std::fs::write(
        root.host_path(PASSWD),
        "root:$6$old$h:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    let mut accounts = Accounts::load(&root).unwrap();
    accounts.lock("root").unwrap();
    assert_eq!(
        accounts.password_field("root").as_deref(),
        Some("!$6$old$h")
    );
    assert_eq!(accounts.passwd.get("root").unwrap()[1], "x");
}

#[test]
fn lock_and_unlock_like_passwd() {
    let (_dir, root) = root_with(true);
    let mut accounts = Accounts::load(&root).unwrap();
    accounts.set_password_hash("bob", "$6$a$b", false).unwrap();
    accounts.lock("bob").unwrap();
    accounts.lock("bob").unwrap();
    assert_eq!(accounts.password_field("bob").as_deref(), Some("!$6$a$b"));
    assert!(accounts.unlock("bob").unwrap());
    assert_eq!(accounts.password_field("bob").as_deref(), Some("$6$a$b"));
    // `!` alone and `*` are not unlocked to an empty or no password.
    accounts.set_password_hash("bob", "!", false).unwrap();
    assert!(!accounts.unlock("bob").unwrap());
    assert!(!accounts.unlock("root").unwrap());
}

#[test]
fn creates_users_and_groups_with_free_ids() {
    let (_dir, root) = root_with(true);
    let mut accounts = Accounts::load(&root).unwrap();
    let gid = accounts.ensure_group("alice", false, None).unwrap();
    assert_eq!(gid, 1001);
    let uid_pref = accounts.next_uid(false, Some(gid)).unwrap();
    let alice = accounts
        .create_user(&NewUser {
            name: "alice".into(),
            uid: Some(uid_pref),
            gid,
            gecos: "Alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
            system: false,
            // Debian's login.defs.
            ageing: Some(PasswordAgeing {
                min_days: Some(0),
                max_days: Some(99_999),
                warn_days: Some(7),
            }),
        })
        .unwrap();
    assert_eq!((alice.uid, alice.gid), (1001, 1001));
    assert_eq!(accounts.ensure_group("sudo", false, None).unwrap(), 27);
    accounts.add_member("sudo", "alice");
    accounts.add_member("sudo", "bob");
    accounts.add_member("sudo", "alice");
    assert_eq!(
        accounts.ensure_group("svc", true, None).unwrap(),
        SYS_UID_MAX
    );
    accounts.save().unwrap();
    let group = std::fs::read_to_string(root.host_path(GROUP)).unwrap();
    assert!(group.contains("\nsudo:x:27:alice,bob\n"), "{group}");
    assert!(group.contains("\nalice:x:1001:\n"));
    let passwd = std::fs::read_to_string(root.host_path(PASSWD)).unwrap();
    assert!(
        passwd.ends_with("alice:x:1001:1001:Alice:/home/alice:/bin/sh\n"),
        "{passwd}"
    );
    assert!(passwd.contains("# comment kept\n"));
    let shadow = std::fs::read_to_string(root.host_path(SHADOW)).unwrap();
    assert!(
        shadow.contains(&format!("alice:!:{}:0:99999:7:::", today())),
        "{shadow}"
    );
}

#[test]
fn names_are_checked() {
    for ok in ["bob", "a.b_c-d", "machine$"] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-x", "a:b", "a b", "a\nb"] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn names_are_at_most_max_name_len_bytes() {
    assert_eq!(MAX_NAME_LEN, 32);
    assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
    assert!(check_name(&format!("{}$", "x".repeat(MAX_NAME_LEN - 1))).is_ok());
    let err = check_name(&"x".repeat(MAX_NAME_LEN + 1)).unwrap_err();
    assert!(err.to_string().ends_with("; at most 32 bytes)"), "{err}");
    assert!(check_name(&format!("{}$", "x".repeat(MAX_NAME_LEN))).is_err());
}

#[test]
fn fields_in_another_encoding_are_kept_byte_for_byte() {
    // A Latin-1 gecos ("Jörg", 0xF6), as useradd and chfn store what they are given.
    let (_dir, root) = root_with(true);
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n\
        jorg:x:1001:1001:J\xf6rg,Raum 4:/home/jorg:/bin/sh\n";
    let shadow = b"root:*:19000:0:99999:7:::\njorg:$6$a$b:19000:0:99999:7:::\n";
    std::fs::write(root.host_path(PASSWD), passwd).unwrap();
    std::fs::write(root.host_path(SHADOW), shadow).unwrap();
    let mut accounts = Accounts::load(&root).unwrap();
    // An edit of that user's own entry keeps its other fields' bytes.
    accounts.passwd.set("jorg", 6, "/bin/bash");
    accounts.lock("jorg").unwrap();
    accounts
        .create_user(&NewUser {
            name: "alice".into(),
            uid: None,
            gid: 100,
            gecos: String::new(),
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
            system: false,
            ageing: Some(PasswordAgeing::default()),
        })
        .unwrap();
    accounts.save().unwrap();
    let written = std::fs::read(root.host_path(PASSWD)).unwrap();
    let expected: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        jorg:x:1001:1001:J\xf6rg,Raum 4:/home/jorg:/bin/bash\n\
        alice:x:1002:100::/home/alice:/bin/sh\n";
    assert_eq!(written, expected, "{}", String::from_utf8_lossy(&written));
}
