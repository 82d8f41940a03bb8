//! Tests of the users-groups step on a temporary root.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::userdata::yaml::parse_map;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\nsudo:x:27:\nbob:x:1000:\nusers:x:100:\n";
const SHADOW: &str = "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIalice alice@host";

fn setup() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    fs::create_dir_all(root.host_path("/etc/skel")).unwrap();
    fs::create_dir_all(root.host_path("/etc/sudoers.d")).unwrap();
    fs::write(root.host_path("/etc/passwd"), PASSWD).unwrap();
    fs::write(root.host_path("/etc/group"), GROUP).unwrap();
    fs::write(root.host_path("/etc/shadow"), SHADOW).unwrap();
    fs::write(root.host_path("/etc/skel/.profile"), "# profile\n").unwrap();
    (dir, root)
}

fn config(text: &str) -> CloudConfig {
    let (cfg, errors) = CloudConfig::from_map(&parse_map(text).unwrap());
    assert!(errors.is_empty(), "{errors:?}");
    cfg
}

fn read(root: &Root, path: &str) -> String {
    fs::read_to_string(root.host_path(path)).unwrap()
}

#[test]
fn creates_a_user_with_group_home_skel_keys_sudo_and_password() {
    let (_dir, root) = setup();
    let cfg = config(&format!(
        "users:\n- name: alice\n  gecos: Alice A\n  groups: [sudo, docker]\n  shell: /bin/bash\n  \
         sudo: ALL=(ALL) NOPASSWD:ALL\n  lock_passwd: false\n  plain_text_passwd: secret\n  \
         ssh_authorized_keys: ['{KEY}']\n"
    ));
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.created, ["alice"]);
    assert!(
        read(&root, "/etc/passwd").ends_with("alice:x:1001:1001:Alice A:/home/alice:/bin/bash\n")
    );
    let group = read(&root, "/etc/group");
    assert!(group.contains("sudo:x:27:alice\n"), "{group}");
    assert!(group.contains("alice:x:1001:\n"));
    assert!(group.contains("docker:x:1002:alice\n"), "{group}");
    let shadow = read(&root, "/etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("alice:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    assert!(hash.starts_with("$6$"), "unlocked hash: {hash}");
    assert_eq!(read(&root, "/home/alice/.profile"), "# profile\n");
    assert_eq!(
        read(&root, "/home/alice/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    assert_eq!(
        read(&root, SUDOERS_FILE).lines().last(),
        Some("alice ALL=(ALL) NOPASSWD:ALL")
    );
    let meta = fs::metadata(root.host_path(SUDOERS_FILE)).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o440);
    let main = read(&root, sudoers::SUDOERS);
    assert!(main.ends_with("\n#includedir /etc/sudoers.d\n"), "{main}");
    if crate::testutil::require_root() {
        let home = fs::metadata(root.host_path("/home/alice")).unwrap();
        assert_eq!((home.uid(), home.gid()), (1001, 1001));
        let keys = fs::metadata(root.host_path("/home/alice/.ssh/authorized_keys")).unwrap();
        assert_eq!(keys.uid(), 1001);
    }
}

/// `sudo:` as cloud-init takes it: an empty rule is none (never the line `NAME`, which sudo
/// cannot parse), `true` is an error, and a later instance's rules are added to the file, the
/// earlier ones kept and none written twice.
#[test]
fn sudo_rules_are_added_never_blank_and_true_is_no_rule() {
    let (_dir, root) = setup();
    let cfg = config(
        "users:\n- {name: alice, sudo: \"\"}\n- {name: carol, sudo: ['', 'ALL=(ALL) ALL']}\n\
         - {name: dave, sudo: true}\n",
    );
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.errors.len(), 1, "{:?}", summary.errors);
    assert!(summary.errors[0].contains("dave: `sudo: true` is not a sudoers rule"));
    let sudoers = read(&root, SUDOERS_FILE);
    assert_eq!(
        sudoers,
        "# Created by metaboot from the users of user data.\ncarol ALL=(ALL) ALL\n"
    );
    // The next instance's users: carol's rule stays, once; erin's is added.
    let cfg = config(
        "users:\n- {name: erin, sudo: 'ALL=(ALL) NOPASSWD:ALL'}\n- {name: carol, sudo: 'ALL=(ALL) ALL'}\n",
    );
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(
        read(&root, SUDOERS_FILE),
        "# Created by metaboot from the users of user data.\ncarol ALL=(ALL) ALL\n\
         erin ALL=(ALL) NOPASSWD:ALL\n"
    );
}

#[test]
fn lock_passwd_defaults_to_true_and_passwd_is_for_new_users_only() {
    let (_dir, root) = setup();
    let cfg =
        config("users:\n- name: carol\n  passwd: $6$salt$hash\n- name: bob\n  passwd: $6$x$y\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.created, ["carol"]);
    assert_eq!(summary.updated, ["bob"]);
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    let shadow = read(&root, "/etc/shadow");
    assert!(shadow.contains("carol:!$6$salt$hash:"), "{shadow}");
    assert!(shadow.contains("bob:!:19000:"), "bob unchanged: {shadow}");
}

/// An existing user is not given the entry's `groups` (nor are they made), as cloud-init's
/// `add_user` skips it whole; a warning says how to add it. Its password, lock, sudo rule and
/// keys still apply (`create_user`).
#[test]
fn an_existing_user_keeps_its_groups() {
    let (_dir, root) = setup();
    let cfg = config(&format!(
        "users:\n- name: bob\n  groups: [sudo, docker, bob]\n  sudo: ALL=(ALL) ALL\n  \
         hashed_passwd: $6$s$h\n  lock_passwd: false\n  ssh_authorized_keys: ['{KEY}']\n"
    ));
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.updated, ["bob"]);
    assert_eq!(
        read(&root, "/etc/group"),
        GROUP,
        "no group added, none made"
    );
    assert_eq!(
        summary.warnings,
        [
            "bob: exists already, so `groups` is not applied, as in cloud-init (not added to \
          sudo, docker); to add an existing user, list it under the top-level `groups`: \
          `groups: [{sudo: [bob]}]`"
        ]
    );
    assert!(read(&root, "/etc/shadow").contains("\nbob:$6$s$h:"));
    assert!(read(&root, SUDOERS_FILE).ends_with("\nbob ALL=(ALL) ALL\n"));
    assert_eq!(
        read(&root, "/home/bob/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    // The top-level `groups` does add an existing user, as cloud-init's `create_group` does.
    let summary = apply(&root, &config("groups: [{sudo: [bob]}]\n"), None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(read(&root, "/etc/group").contains("sudo:x:27:bob\n"));
}

#[test]
fn hashed_passwd_applies_to_existing_users_and_unlocks() {
    let (_dir, root) = setup();
    let cfg = config("users:\n- {name: bob, hashed_passwd: $6$s$h, lock_passwd: false}\n");
    apply(&root, &cfg, None).unwrap();
    assert!(read(&root, "/etc/shadow").contains("\nbob:$6$s$h:"));
}

#[test]
fn default_user_comes_from_the_agent_config() {
    let (_dir, root) = setup();
    let default = UserConfig {
        name: "debian".into(),
        shell: Some("/bin/bash".into()),
        ..UserConfig::default()
    };
    // No `users` key: [default].
    let summary = apply(&root, &config("hostname: x\n"), Some(&default)).unwrap();
    assert_eq!(summary.created, ["debian"]);
    // Without a default user, nothing happens and `default` in users only warns.
    let (_dir2, root2) = setup();
    let summary = apply(&root2, &config("hostname: x\n"), None).unwrap();
    assert!(summary.created.is_empty() && summary.warnings.is_empty());
    let summary = apply(&root2, &config("users: [default, dave]\n"), None).unwrap();
    assert_eq!(summary.created, ["dave"]);
    assert_eq!(summary.warnings.len(), 1);
}

#[test]
fn system_users_get_system_ids_and_no_home() {
    let (_dir, root) = setup();
    let summary = apply(
        &root,
        &config("users:\n- {name: svc, system: true}\n"),
        None,
    )
    .unwrap();
    assert_eq!(summary.created, ["svc"]);
    assert!(read(&root, "/etc/passwd").contains("svc:x:999:999::/home/svc:/bin/sh"));
    assert!(!root.host_path("/home/svc").exists());
}

#[test]
fn groups_and_bad_names() {
    let (_dir, root) = setup();
    let cfg = config(
        "groups:\n- admins: [bob, ghost]\n- plain\nusers:\n- name: 'bad:name'\n- name: ok\n",
    );
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.groups, ["admins", "plain"]);
    assert_eq!(
        summary.created,
        ["ok"],
        "a bad user does not stop the others"
    );
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(read(&root, "/etc/group").contains("admins:x:1001:bob\n"));
}

/// A user named `.` or `..` (whose home would be /home itself or /), and a `homedir` naming a
/// directory that is there already (here the root's /etc): /home and /etc stay root's, as
/// useradd leaves them.
#[test]
fn no_user_takes_a_directory_that_was_there() {
    let (_dir, root) = setup();
    fs::create_dir_all(root.host_path("/home")).unwrap();
    let mode = |path: &str| fs::metadata(root.host_path(path)).unwrap().mode() & 0o7777;
    let (home_mode, etc_mode) = (mode("/home"), mode("/etc"));
    let cfg = config("users:\n- name: '.'\n- name: '..'\n- {name: eve, homedir: /etc}\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.created, ["eve"]);
    assert_eq!(summary.errors.len(), 2, "{:?}", summary.errors);
    for (path, was) in [("/home", home_mode), ("/etc", etc_mode)] {
        let meta = fs::metadata(root.host_path(path)).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (nix::unistd::getuid().as_raw(), was),
            "{path}"
        );
    }
    assert!(
        !root.host_path("/etc/.profile").exists(),
        "no skeleton copied into /etc"
    );
    // An empty home left by a run cut short before it gave it to its user: taken.
    fs::create_dir(root.host_path("/home/frank")).unwrap();
    let summary = apply(&root, &config("users:\n- name: frank\n"), None).unwrap();
    assert_eq!(summary.created, ["frank"]);
    let frank = fs::metadata(root.host_path("/home/frank")).unwrap();
    let passwd = read(&root, "/etc/passwd");
    let uid: u32 = passwd
        .lines()
        .find_map(|line| line.strip_prefix("frank:x:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .parse()
        .unwrap();
    if nix::unistd::getuid().is_root() {
        assert_eq!(frank.uid(), uid);
    }
    assert!(
        root.host_path("/home/frank/.profile").exists(),
        "the skeleton copied"
    );
}

/// A run cut short after it gave the new user the home and made the skeleton's directories,
/// before the skeleton's files it staged were published: the next run (the user is new again,
/// as the account files were not published either) copies the files the home lacks, in the
/// directories that are there.
#[test]
fn a_home_the_new_user_owns_gets_the_skeleton_files_it_lacks() {
    if !crate::testutil::require_root() {
        return;
    }
    let (_dir, root) = setup();
    fs::create_dir_all(root.host_path("/etc/skel/.config")).unwrap();
    fs::write(root.host_path("/etc/skel/.config/app"), "app\n").unwrap();
    fs::write(root.host_path("/etc/skel/.bashrc"), "# bashrc\n").unwrap();
    fs::create_dir_all(root.host_path("/home/grace/.config")).unwrap();
    // grace gets uid 1001, the first free one: the earlier run gave her the home.
    for path in ["/home/grace", "/home/grace/.config"] {
        std::os::unix::fs::chown(root.host_path(path), Some(1001), Some(1001)).unwrap();
    }
    let summary = apply(&root, &config("users:\n- name: grace\n"), None).unwrap();
    assert_eq!(summary.created, ["grace"]);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(read(&root, "/etc/passwd").contains("grace:x:1001:1001:"));
    assert_eq!(read(&root, "/home/grace/.profile"), "# profile\n");
    assert_eq!(read(&root, "/home/grace/.config/app"), "app\n");
    assert_eq!(read(&root, "/home/grace/.bashrc"), "# bashrc\n");
    let profile = fs::metadata(root.host_path("/home/grace/.profile")).unwrap();
    assert_eq!((profile.uid(), profile.gid()), (1001, 1001));
}

/// A home kept from an earlier instance (a rebuild that kept /home), owned by the uid the new
/// user gets, with files in it: left as it is, as useradd leaves it (no mode loosened, no
/// skeleton file added).
#[test]
fn a_home_kept_from_an_earlier_instance_is_left_as_it_is() {
    if !crate::testutil::require_root() {
        return;
    }
    let (_dir, root) = setup();
    fs::create_dir_all(root.host_path("/etc/skel/.config")).unwrap();
    fs::create_dir_all(root.host_path("/home/hal/.config")).unwrap();
    fs::write(root.host_path("/home/hal/.bash_history"), "ls\n").unwrap();
    for (path, mode) in [("/home/hal", 0o700), ("/home/hal/.config", 0o700)] {
        let host = root.host_path(path);
        std::os::unix::fs::chown(&host, Some(1001), Some(1001)).unwrap();
        fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let summary = apply(&root, &config("users:\n- name: hal\n"), None).unwrap();
    assert_eq!(summary.created, ["hal"]);
    let mode = |path: &str| fs::metadata(root.host_path(path)).unwrap().mode() & 0o7777;
    assert_eq!(mode("/home/hal"), 0o700);
    assert_eq!(mode("/home/hal/.config"), 0o700);
    assert!(!root.host_path("/home/hal/.profile").exists());
}

#[test]
fn a_second_run_changes_nothing() {
    let (_dir, root) = setup();
    let cfg = config(&format!(
        "users:\n- {{name: alice, groups: sudo, ssh_authorized_keys: ['{KEY}']}}\n"
    ));
    apply(&root, &cfg, None).unwrap();
    let before: Vec<String> = [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/home/alice/.ssh/authorized_keys",
    ]
    .iter()
    .map(|p| read(&root, p))
    .collect();
    apply(&root, &cfg, None).unwrap();
    let after: Vec<String> = [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/home/alice/.ssh/authorized_keys",
    ]
    .iter()
    .map(|p| read(&root, p))
    .collect();
    assert_eq!(before, after);
}

#[test]
fn the_user_key_overrides_the_default_user() {
    let base = UserConfig {
        name: "debian".into(),
        shell: Some("/bin/bash".into()),
        ..UserConfig::default()
    };
    let renamed = default_user(Some(&base), &config("user: ubuntu\n")).unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.shell.as_deref()),
        ("ubuntu", Some("/bin/bash"))
    );
    let tuned = default_user(
        Some(&base),
        &config("user: {shell: /bin/zsh, lock_passwd: false}\n"),
    )
    .unwrap();
    assert_eq!(
        (tuned.name.as_str(), tuned.shell.as_deref()),
        ("debian", Some("/bin/zsh"))
    );
    assert_eq!(tuned.lock_passwd, Some(false));
    let created = default_user(None, &config("user: {name: mynewdefault}\n")).unwrap();
    assert_eq!(created.name, "mynewdefault");
    assert!(default_user(None, &config("hostname: x\n")).is_none());
    assert!(default_user(None, &config("user: {shell: /bin/sh}\n")).is_none());
}

/// User data's `system_info: {default_user: …}` renames or tunes the image's default user, as
/// cloud-init builds its distro from the merged configuration; `user` still wins over it.
#[test]
fn user_datas_system_info_default_user_is_laid_over_the_images() {
    let base = UserConfig {
        name: "debian".into(),
        shell: Some("/bin/bash".into()),
        ..UserConfig::default()
    };
    let alice = default_user(
        Some(&base),
        &config("system_info: {default_user: {name: alice, sudo: 'ALL=(ALL) ALL'}}\n"),
    )
    .unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.shell.as_deref()),
        ("alice", Some("/bin/bash"))
    );
    assert!(alice.sudo.is_some());
    let bob = default_user(
        Some(&base),
        &config("system_info: {default_user: {name: alice}}\nuser: bob\n"),
    )
    .unwrap();
    assert_eq!(bob.name, "bob");
    let made = default_user(
        None,
        &config("system_info: {default_user: {name: carol}}\n"),
    );
    assert_eq!(made.unwrap().name, "carol");
    let kept = default_user(Some(&base), &config("system_info: {distro: debian}\n")).unwrap();
    assert_eq!(kept.name, "debian");
}

/// cloud-init reads a user's flags loosely (`lock_passwd: "false"`) and a group given as a
/// number as its name; an entry that still cannot be read is that user's error alone, and a
/// `users` of no known shape creates nobody, not the default user in its place.
#[test]
fn a_user_of_an_unexpected_shape_fails_alone_and_never_brings_the_default_user() {
    let (_dir, root) = setup();
    let default = UserConfig {
        name: "debian".into(),
        ..UserConfig::default()
    };
    let cfg = config(
        "users:\n- {name: admin, passwd: $6$a$b, lock_passwd: \"false\", system: \"no\", \
         primary_group: 100}\n\
         - {name: carol, lock_passwd: sometimes}\n- {name: dave, groups: {a: [b]}, sudo: 7}\n\
         - erin\n",
    );
    let summary = apply(&root, &cfg, Some(&default)).unwrap();
    assert_eq!(summary.created, ["admin", "erin"]);
    assert_eq!(summary.errors.len(), 2, "{:?}", summary.errors);
    assert!(
        summary.errors[0].starts_with("users: carol: ")
            && summary.errors[0].contains("expected true or false")
            && !summary.errors[0].contains("sometimes"),
        "{:?}",
        summary.errors
    );
    assert!(
        summary.errors[1].starts_with("users: dave: "),
        "{:?}",
        summary.errors
    );
    let passwd = read(&root, "/etc/passwd");
    assert!(passwd.contains("\nadmin:x:1001:100:"), "{passwd}");
    assert!(!passwd.contains("debian"), "{passwd}");
    // Unlocked, as `lock_passwd: "false"` asks.
    let shadow = read(&root, "/etc/shadow");
    assert!(shadow.contains("\nadmin:$6$a$b:"), "{shadow}");

    let (_dir2, root2) = setup();
    let summary = apply(&root2, &config("users: 5\n"), Some(&default)).unwrap();
    assert!(summary.created.is_empty(), "{:?}", summary.created);
    assert!(
        summary.errors[0].starts_with("users: not a list"),
        "{:?}",
        summary.errors
    );
    // Not with `user:` either, which otherwise adds the default user to the list.
    let renamed = default_user(Some(&default), &config("user: ubuntu\n")).unwrap();
    let summary = apply(&root2, &config("user: ubuntu\nusers: 5\n"), Some(&renamed)).unwrap();
    assert!(summary.created.is_empty(), "{:?}", summary.created);
}

/// An empty password key sets nothing, as in cloud-init: never an empty shadow field, which
/// PAM's `nullok` would let anyone log in with.
#[test]
fn an_empty_password_sets_nothing() {
    let (_dir, root) = setup();
    let cfg = config(
        "users:\n- {name: erin, passwd: '', lock_passwd: false}\n\
         - {name: bob, hashed_passwd: '', lock_passwd: false}\n\
         - {name: fred, plain_text_passwd: '', lock_passwd: false}\n",
    );
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let shadow = read(&root, "/etc/shadow");
    for user in ["erin", "bob", "fred"] {
        let field = shadow
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(field.starts_with('!'), "{user} has {field:?}: {shadow}");
    }
    assert!(shadow.contains("\nbob:!:19000:"), "bob unchanged: {shadow}");
}

/// A uid asked for that another user has: that user is not created (useradd --uid refuses
/// it), rather than created under another uid.
#[test]
fn a_uid_taken_by_another_user_is_refused() {
    let (_dir, root) = setup();
    let cfg = config("users:\n- {name: alice, uid: 1000}\n- {name: carol, uid: 2000}\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.created, ["carol"]);
    assert_eq!(
        summary.errors,
        ["alice: uid 1000 is taken by bob; not created (choose a free uid, or leave uid out)"]
    );
    let passwd = read(&root, "/etc/passwd");
    assert!(!passwd.contains("alice"), "{passwd}");
    assert!(passwd.contains("carol:x:2000:"), "{passwd}");
}

/// `{name: default, ...}` (or an entry with no name) is the default user with more options, as
/// cloud-init reads it, never a user called "default".
#[test]
fn an_entry_named_default_adds_options_to_the_default_user() {
    let default = UserConfig {
        name: "debian".into(),
        shell: Some("/bin/bash".into()),
        groups: Some(CsvList::Text("sudo".into())),
        ..UserConfig::default()
    };
    for users in [
        format!(
            "users:\n- name: default\n  groups: [docker]\n  shell: /bin/sh\n  ssh_authorized_keys: ['{KEY}']\n"
        ),
        format!("users:\n- groups: docker\n  shell: /bin/sh\n  ssh_authorized_keys: ['{KEY}']\n"),
        format!(
            "users:\n  default:\n    groups: docker\n    shell: /bin/sh\n    ssh_authorized_keys: ['{KEY}']\n"
        ),
    ] {
        let (_dir, root) = setup();
        let cfg = config(&users);
        assert!(lists_default(&cfg), "{users}");
        let summary = apply(&root, &cfg, Some(&default)).unwrap();
        assert!(summary.errors.is_empty(), "{users}: {:?}", summary.errors);
        assert_eq!(summary.created, ["debian"], "{users}");
        let passwd = read(&root, "/etc/passwd");
        assert!(!passwd.contains("default:"), "{passwd}");
        // The default user's own shell stays; the entry's groups join its own.
        assert!(passwd.ends_with(":/home/debian:/bin/bash\n"), "{passwd}");
        let group = read(&root, "/etc/group");
        assert!(group.contains("sudo:x:27:debian\n"), "{group}");
        assert!(
            group
                .lines()
                .any(|l| l.starts_with("docker:") && l.ends_with(":debian")),
            "{group}"
        );
        let keys = read(&root, "/home/debian/.ssh/authorized_keys");
        assert!(keys.contains(KEY), "{keys}");
    }
}

/// A new user never takes over a group of its name that the image has (`docker`, as good as
/// root): useradd refuses it, so the user fails alone; `primary_group` makes it the user's on
/// purpose. The group a run cut short left (with the user's shadow entry, written before
/// passwd) is the user's own, taken by the next run.
#[test]
fn a_new_user_does_not_take_over_an_existing_group() {
    let (_dir, root) = setup();
    let group = format!("{GROUP}docker:x:998:\ndora:x:1005:\n");
    fs::write(root.host_path("/etc/group"), &group).unwrap();
    let shadow = format!("{SHADOW}dora:!:19000:0:99999:7:::\n");
    fs::write(root.host_path("/etc/shadow"), shadow).unwrap();
    let cfg = config("users:\n- name: docker\n- name: carol\n- name: dora\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert_eq!(summary.created, ["carol", "dora"]);
    assert_eq!(summary.errors.len(), 1, "{:?}", summary.errors);
    assert!(
        summary.errors[0].starts_with("docker: group docker exists; not created")
            && summary.errors[0].contains("`primary_group: docker`"),
        "{:?}",
        summary.errors
    );
    let passwd = read(&root, "/etc/passwd");
    assert!(!passwd.contains("docker:"), "{passwd}");
    assert!(passwd.contains("dora:x:1002:1005:"), "{passwd}");
    assert!(read(&root, "/etc/group").starts_with(&group));

    let cfg = config("users:\n- {name: docker, primary_group: docker}\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(read(&root, "/etc/passwd").contains("docker:x:1003:998:"));
}

/// A new user's password ageing is useradd's: the image's login.defs `PASS_MIN_DAYS`,
/// `PASS_MAX_DAYS`, `PASS_WARN_AGE` (a hardened image's 90-day passwords), none for a system
/// user, as `useradd --system` writes it.
#[test]
fn password_ageing_comes_from_login_defs() {
    let (_dir, root) = setup();
    let defs = "PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 14\n";
    fs::write(root.host_path(login_defs::LOGIN_DEFS), defs).unwrap();
    let cfg = config("users:\n- name: alice\n- {name: svc, system: true}\n");
    let summary = apply(&root, &cfg, None).unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let shadow = read(&root, "/etc/shadow");
    let today = crate::apply::users::today();
    assert!(
        shadow.contains(&format!("\nalice:!:{today}:1:90:14:::\n")),
        "{shadow}"
    );
    assert!(
        shadow.ends_with(&format!("\nsvc:!:{today}::::::\n")),
        "{shadow}"
    );
}

/// A login.defs without the settings, or with `PASS_MAX_DAYS -1`, leaves the fields empty, as
/// useradd writes them (its `getdef_num(name, -1)`), not Debian's 0, 99999 and 7.
#[test]
fn password_ageing_missing_or_minus_one_is_empty() {
    let today = crate::apply::users::today();
    for (defs, want) in [
        ("", "::::::"),
        ("PASS_MAX_DAYS -1\nPASS_WARN_AGE 7\n", ":::7:::"),
    ] {
        let (_dir, root) = setup();
        fs::write(root.host_path(login_defs::LOGIN_DEFS), defs).unwrap();
        let summary = apply(&root, &config("users:\n- name: alice\n"), None).unwrap();
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        let shadow = read(&root, "/etc/shadow");
        assert!(
            shadow.ends_with(&format!("\nalice:!:{today}{want}\n")),
            "{defs:?}: {shadow}"
        );
    }
}
