//! Tests of `cloud_config`.
use super::*;
use crate::userdata::yaml::parse_map;

fn config(text: &str) -> (CloudConfig, Vec<KeyError>) {
    CloudConfig::from_map(&parse_map(text).unwrap())
}

#[test]
fn permissions_read_like_pyyaml() {
    let (cfg, errors) = config(
        "write_files:\n- {path: /a, permissions: 0644}\n- {path: /b, permissions: '0600'}\n\
         - {path: /c, permissions: '0o755'}\n- {path: /d, permissions: 420}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let modes: Vec<u32> = cfg
        .write_files
        .unwrap()
        .entries()
        .map(|f| f.permissions.unwrap().0)
        .collect();
    assert_eq!(modes, [0o644, 0o600, 0o755, 420]);
}

#[test]
fn a_bad_key_is_reported_and_the_others_kept() {
    let (cfg, errors) = config("hostname: web\nwrite_files: not-a-list\nmanage_etc_hosts: maybe\n");
    assert_eq!(cfg.hostname.as_deref(), Some("web"));
    let keys: Vec<&str> = errors.iter().map(|e| e.key).collect();
    assert_eq!(keys, ["manage_etc_hosts", "write_files"]);
}

#[test]
fn a_bad_write_files_entry_fails_alone() {
    let (cfg, errors) = config(
        "write_files:\n- {path: /a}\n- {path: /x, permissions: '999'}\n\
         - {path: /d, defer: true, owner: [bad]}\n- {path: /b}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let files = cfg.write_files.unwrap();
    let paths: Vec<&str> = files.entries().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b"]);
    let bad: Vec<&BadWriteFile> = files.0.iter().filter_map(|f| f.as_ref().err()).collect();
    assert_eq!(bad.len(), 2);
    assert_eq!(
        bad[0].to_string(),
        "write_files entry 2 (/x): \"999\" is not an octal mode"
    );
    assert!(!bad[0].defer && bad[1].defer);
    assert_eq!(bad[1].path.as_deref(), Some("/d"));
}

#[test]
fn yes_no_and_unchanged() {
    assert_eq!(
        config("ssh_pwauth: yes\n").0.ssh_pwauth,
        Some(SshPwauth::Yes)
    );
    assert_eq!(
        config("ssh_pwauth: off\n").0.ssh_pwauth,
        Some(SshPwauth::No)
    );
    assert_eq!(
        config("ssh_pwauth: unchanged\n").0.ssh_pwauth,
        Some(SshPwauth::Unchanged)
    );
    assert_eq!(
        config("ssh_pwauth: maybe\n").0.ssh_pwauth,
        Some(SshPwauth::Unrecognized)
    );
    let (cfg, errors) = config("ssh_pwauth: 2\n");
    assert_eq!(cfg.ssh_pwauth, None);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        config("manage_etc_hosts: localhost\n").0.manage_etc_hosts,
        Some(ManageEtcHosts::Localhost)
    );
    assert_eq!(
        config("manage_etc_hosts: yes\n").0.manage_etc_hosts,
        Some(ManageEtcHosts::Template)
    );
}

#[test]
fn numbers_become_text_where_text_is_expected() {
    let (cfg, _) = config("hostname: 1234\npassword: 0123\n");
    assert_eq!(cfg.hostname.unwrap().0, "1234");
    assert_eq!(cfg.password.unwrap().0, "0123");
}

/// A user's keys as cloud-init's `ug_util` reads them: `-` as `_`, spaces around dropped, in
/// every form a user is given (a list item, a mapping's value, `user`).
#[test]
fn users_keys_with_dashes_are_read_as_cloud_init_reads_them() {
    let (cfg, errors) = config(
        "users:\n- name: bob\n  ssh-authorized-keys: [ssh-ed25519 AAAAC3 bob]\n  \
         plain-text-passwd: pw\n  primary-group: staff\n  ' no-create-home ': true\n\
         user: {name: ann, lock-passwd: false}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Some(Users::List(list)) = cfg.users else {
        panic!("list form");
    };
    let UserEntry::Config(bob) = &list[0] else {
        panic!("bob is a mapping");
    };
    assert_eq!(
        bob.ssh_authorized_keys.as_ref().map(OneOrMany::to_vec),
        Some(vec!["ssh-ed25519 AAAAC3 bob".to_owned()])
    );
    assert_eq!(
        bob.plain_text_passwd.as_ref().map(|p| p.0.as_str()),
        Some("pw")
    );
    assert_eq!(bob.primary_group.as_deref(), Some("staff"));
    assert_eq!(bob.no_create_home, Some(true));
    let Some(UserOverride::Config(ann)) = cfg.user else {
        panic!("user as options");
    };
    assert_eq!(ann.lock_passwd, Some(false));
    let (cfg, _) = config("users: {bob: {ssh-authorized-keys: ssh-ed25519 AAAAC3 bob}}\n");
    let Some(Users::Map(map)) = cfg.users else {
        panic!("mapping form");
    };
    let Some(UserMapValue::Config(bob)) = map.get("bob") else {
        panic!("bob's options");
    };
    assert!(bob.ssh_authorized_keys.is_some());
}

#[test]
fn users_in_every_form() {
    let (cfg, errors) = config(
        "users:\n- default\n- name: bob\n  groups: [adm, sudo]\n  lock-passwd: false\n  \
         sudo: ALL=(ALL) NOPASSWD:ALL\n- alice, carol\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Some(Users::List(list)) = cfg.users else {
        panic!("list form");
    };
    assert_eq!(list.len(), 3);
    let UserEntry::Config(bob) = &list[1] else {
        panic!("bob is a mapping");
    };
    assert_eq!(bob.lock_passwd, Some(false));
    assert_eq!(bob.groups.as_ref().unwrap().items(), ["adm", "sudo"]);
    assert_eq!(
        bob.sudo.as_ref().unwrap().rules(),
        ["ALL=(ALL) NOPASSWD:ALL"]
    );
    assert!(matches!(
        config("users: default, bob\n").0.users,
        Some(Users::Text(_))
    ));
    assert!(matches!(
        config("users: {default: true, bob: {gecos: Bob}}\n")
            .0
            .users,
        Some(Users::Map(_))
    ));
}

#[test]
fn groups_in_every_form() {
    let (cfg, _) = config("groups:\n- admingroup: [root, sys]\n- cloud-users\n");
    assert_eq!(
        cfg.groups.unwrap().entries(),
        [
            (
                "admingroup".to_owned(),
                vec!["root".to_owned(), "sys".to_owned()]
            ),
            ("cloud-users".to_owned(), vec![])
        ]
    );
    let (cfg, _) = config("groups: {ops: bob, dev: null}\n");
    assert_eq!(cfg.groups.unwrap().entries().len(), 2);
}

#[test]
fn commands_are_text_or_argv_and_null_items_are_kept_as_none() {
    let (cfg, errors) = config("runcmd:\n- echo hi\n- [ls, -l, /]\n-\n- [sh, -c, 0644]\n");
    assert!(errors.is_empty(), "{errors:?}");
    let runcmd = cfg.runcmd.unwrap();
    assert_eq!(runcmd[0], Some(Command::Shell("echo hi".into())));
    assert!(matches!(&runcmd[1], Some(Command::Argv(v)) if v.len() == 3));
    assert_eq!(runcmd[2], None);
}

#[test]
fn null_values_count_as_absent() {
    let (cfg, errors) = config("runcmd:\nhostname: ~\n");
    assert!(errors.is_empty());
    assert!(cfg.runcmd.is_none() && cfg.hostname.is_none());
}

#[test]
fn true_is_read_as_cloud_init_reads_it() {
    use serde_json::json;
    for yes in [
        json!(true),
        json!("True"),
        json!(" yes "),
        json!("on"),
        json!(1),
        json!("1"),
    ] {
        assert!(is_true(&yes), "{yes}");
    }
    for no in [json!(false), json!("no"), json!(0), json!(null), json!("y")] {
        assert!(!is_true(&no), "{no}");
    }
}

#[test]
fn false_is_read_as_cloud_init_reads_it() {
    use serde_json::json;
    for value in [
        json!(false),
        json!("false"),
        json!("Off"),
        json!("no"),
        json!("0"),
        json!(" No "),
        json!(0),
    ] {
        assert!(is_false(&value), "{value}");
    }
    for value in [
        json!(true),
        json!("yes"),
        json!(0.0),
        json!(null),
        json!(""),
    ] {
        assert!(!is_false(&value), "{value}");
    }
}

/// Top-level flags written as text, as cloud-init's `get_cfg_option_bool` takes them
/// (`preserve_hostname: "true"` from a template), and `manage_etc_hosts` likewise.
#[test]
fn top_level_flags_may_be_words() {
    let (cfg, errors) = config(
        "preserve_hostname: 'true'\ndisable_root: 'false'\nssh_deletekeys: 'no'\n\
         manage_etc_hosts: 'True'\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg.preserve_hostname, Some(Flag(true)));
    assert_eq!(cfg.disable_root, Some(Flag(false)));
    assert_eq!(cfg.ssh_deletekeys, Some(Flag(false)));
    assert_eq!(cfg.manage_etc_hosts, Some(ManageEtcHosts::Template));
    let (_, errors) = config("preserve_hostname: sometimes\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
}
