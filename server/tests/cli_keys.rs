//! The registry CLI's key pair names and admin password as a user gives them: names as nova's API
//! allows them (a bad one refused with exit 2 and nothing written), `--key-name`, and
//! `--admin-pass-file` so the password stays out of argv.

mod cli_support;

use cli_support::{PUBLIC_KEY, Registry, vm};

#[test]
fn key_names_are_what_novas_api_allows_and_key_name_sets_one() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let key = format!("{PUBLIC_KEY}\n");
    // `a=b` would be served as `public-keys/0=a=b` (afterburn installs no key); a line break
    // in the name would add a key entry of its choosing to the EC2 listing.
    for name in [
        "a=b.pub",
        "evil\n1=forged.pub",
        "semi;colon.pub",
        " space.pub",
    ] {
        let file = reg.write(name, key.as_bytes());
        let message = reg.refused(&vm(&["--key-file", &file]));
        assert!(message.contains("--key-name"), "{name:?}: {message}");
    }
    // --key-name names a key apart from its file, under the same rules, one per file.
    let odd = reg.write("id=deploy.pub", key.as_bytes());
    let plain = reg.write("ops.pub", key.as_bytes());
    for bad in ["a=b", "line\nbreak", "", &"k".repeat(256)] {
        let message = reg.refused(&vm(&["--key-file", &odd, "--key-name", bad]));
        assert!(message.contains("bad --key-name"), "{bad:?}: {message}");
    }
    let message = reg.refused(&vm(&[
        "--key-file",
        &odd,
        "--key-file",
        &plain,
        "--key-name",
        "x",
    ]));
    assert!(
        message.contains("one --key-name per --key-file"),
        "{message}"
    );
    let created = reg.json(&vm(&[
        "--key-file",
        &odd,
        "--key-name",
        "deploy@ci.example",
        "--key-file",
        &plain,
        "--key-name",
        "ops key_2",
        "--json",
    ]));
    let shown = reg.shown(&created);
    assert_eq!(shown["key_pairs"][0]["name"], "deploy@ci.example");
    assert_eq!(shown["key_pairs"][1]["name"], "ops key_2");
    assert_eq!(shown["key_pairs"][0]["data"], PUBLIC_KEY);
}

#[test]
fn the_admin_password_can_come_from_a_file_instead_of_argv() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let file = reg.write("admin-pass", b"s3cret pass\n");
    let created = reg.json(&[
        "instance",
        "create",
        "vm",
        "--network",
        "net1",
        "--admin-pass-file",
        &file,
        "--json",
    ]);
    let uuid = created["uuid"].as_str().unwrap();
    let store = metaboot_server::store::open(reg.db.to_str().unwrap()).unwrap();
    assert_eq!(
        store.instance(uuid).unwrap().admin_pass.as_deref(),
        Some("s3cret pass"),
        "one trailing newline dropped, nothing else"
    );
    let shown = reg.json(&["instance", "show", uuid, "--json"]);
    assert_eq!(shown["admin_pass_set"], true);
    // A missing or empty file, or one past the password limit, is refused.
    let missing = reg.path("missing").display().to_string();
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &missing]))
            .contains("cannot read")
    );
    let empty = reg.write("empty", b"\n");
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &empty]))
            .contains("is empty")
    );
    // An empty --admin-pass alike: a config drive would leave it out, yet `instance show`
    // would say it is set.
    let refused = reg.refused(&vm(&["--admin-pass", ""]));
    assert!(refused.contains("--admin-pass is empty"), "{refused}");
    let long = reg.write("long", &vec![b'p'; 1021]);
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &long]))
            .contains("1020")
    );
    // Cut inside a character at the limit: still "too long", not "not UTF-8".
    let long = reg.write("long-text", "\u{e9}".repeat(1000).as_bytes());
    assert!(
        reg.refused(&vm(&["--admin-pass-file", &long]))
            .contains("more than 1020 bytes")
    );
    // Both at once is a usage error.
    let before = reg.state();
    let out = reg
        .cmd(&vm(&["--admin-pass", "x", "--admin-pass-file", &file]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    assert_eq!(reg.state(), before);
}
