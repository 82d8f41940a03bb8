//! `metaboot-server instance get-password NAME --private-key FILE | --raw` as a user runs it,
//! on a password encrypted by openssl (what cloudbase-init and metaboot's guest agent post:
//! base64 of RSA PKCS#1 v1.5) and stored through the registry, as the password endpoint does.

mod cli_support;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use metaboot_server::store;

use cli_support::Registry;

fn tools() -> bool {
    for tool in ["ssh-keygen", "openssl"] {
        if Command::new(tool).arg("-V").output().is_err()
            && Command::new(tool).arg("version").output().is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{tool} is required in CI"
            );
            eprintln!("skipping: {tool} is not installed");
            return false;
        }
    }
    true
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ssh-keygen` into the registry's directory: `(private key, public key line)`.
fn keygen(reg: &Registry, name: &str, args: &[&str]) -> (PathBuf, String) {
    let key = reg.path(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .args(args));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// `password` encrypted with openssl for the public half of `key`, base64.
fn encrypt(reg: &Registry, key: &std::path::Path, password: &str) -> String {
    let pem = reg.path("public.pem");
    let out = run(Command::new("ssh-keygen")
        .args(["-e", "-m", "PKCS8", "-f"])
        .arg(key.with_extension("pub")));
    std::fs::write(&pem, out).unwrap();
    let plain = reg.path("plain");
    std::fs::write(&plain, password).unwrap();
    let cipher = run(Command::new("openssl")
        .args([
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-inkey",
        ])
        .arg(&pem)
        .arg("-in")
        .arg(&plain));
    base64::engine::general_purpose::STANDARD.encode(cipher)
}

fn instance(reg: &Registry, name: &str, keys: &[&PathBuf]) -> String {
    let mut args = vec!["instance", "create", name, "--network", "net1", "--json"];
    let files: Vec<String> = keys
        .iter()
        .map(|k| k.with_extension("pub").display().to_string())
        .collect();
    for file in &files {
        args.extend(["--key-file", file]);
    }
    reg.json(&args)["uuid"].as_str().unwrap().to_owned()
}

#[test]
fn decrypts_with_the_first_key_pair_and_refuses_others() {
    if !tools() {
        return;
    }
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let (openssh, _) = keygen(&reg, "rsa-openssh", &["-t", "rsa", "-b", "2048"]);
    let (pem, _) = keygen(&reg, "rsa-pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"]);
    let (ed, _) = keygen(&reg, "ed", &["-t", "ed25519"]);
    let uuid = instance(&reg, "web", &[&openssh, &pem]);
    let db = store::open(reg.db.to_str().unwrap()).unwrap();

    // Nothing posted yet.
    let out = reg
        .cmd(&["instance", "get-password", "web", "--raw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password_postback"));

    let posted = encrypt(&reg, &openssh, "Gen3rated-pw!");
    assert!(matches!(
        db.set_password(&uuid, None, &posted).unwrap(),
        store::PasswordSet::Stored { .. }
    ));
    assert_eq!(
        reg.ok(&["instance", "get-password", "web", "--raw"]).trim(),
        posted
    );
    let key = openssh.display().to_string();
    assert_eq!(
        reg.ok(&["instance", "get-password", "web", "--private-key", &key]),
        "Gen3rated-pw!\n"
    );

    // The second key pair's private key is not the one the password is encrypted with.
    let other = pem.display().to_string();
    let refused = reg.refused(&["instance", "get-password", "web", "--private-key", &other]);
    assert!(refused.contains("rsa-openssh"), "{refused}");

    // PEM (PKCS#1) keys work too: an instance whose first key is the PEM one.
    let second = instance(&reg, "db", &[&pem]);
    db.set_password(&second, None, &encrypt(&reg, &pem, "pem-pw"))
        .unwrap();
    assert_eq!(
        reg.ok(&["instance", "get-password", "db", "--private-key", &other]),
        "pem-pw\n"
    );

    // base64 wrapped at 76 columns (`openssl … | base64`), and a key file with CRLF line
    // ends: novaclient and OpenSSH read both, so does get-password.
    let wrapped_posted: String = encrypt(&reg, &openssh, "wrapped-pw")
        .as_bytes()
        .chunks(76)
        .map(|line| format!("{}\n", String::from_utf8_lossy(line)))
        .collect();
    let wrapped = instance(&reg, "wrapped", &[&openssh]);
    db.set_password(&wrapped, None, &wrapped_posted).unwrap();
    let crlf = reg.write(
        "rsa-openssh-crlf",
        std::fs::read_to_string(&openssh)
            .unwrap()
            .replace('\n', "\r\n")
            .as_bytes(),
    );
    assert_eq!(
        reg.ok(&[
            "instance",
            "get-password",
            "wrapped",
            "--private-key",
            &crlf
        ]),
        "wrapped-pw\n"
    );
    // --raw prints it as it is stored, which `base64 -d` reads back.
    assert_eq!(
        reg.ok(&["instance", "get-password", "wrapped", "--raw"]),
        wrapped_posted
    );

    // A shell agent's `echo "$PW" | openssl … | base64` encrypts echo's line break too: it is
    // not part of the password, and the password is printed.
    let echoed = instance(&reg, "echoed", &[&openssh]);
    db.set_password(&echoed, None, &encrypt(&reg, &openssh, "echoed-pw\n"))
        .unwrap();
    assert_eq!(
        reg.ok(&["instance", "get-password", "echoed", "--private-key", &key]),
        "echoed-pw\n"
    );
    // A line break inside a password, or nothing but echo's: refused, shown escaped.
    for (name, posted) in [("two-lines", "ab\ncd"), ("only-newline", "\n")] {
        let uuid = instance(&reg, name, &[&openssh]);
        db.set_password(&uuid, None, &encrypt(&reg, &openssh, posted))
            .unwrap();
        let out = reg
            .cmd(&["instance", "get-password", name, "--private-key", &key])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("not printed as it is"), "{said}");
    }

    // A non-RSA first key, or no SSH key pair at all: nothing can decrypt, exit 2 for both;
    // a non-key file: said so.
    let third = instance(&reg, "ed", &[&ed]);
    db.set_password(&third, None, "c29tZXRoaW5n").unwrap();
    let refused = reg.refused(&["instance", "get-password", "ed", "--private-key", &key]);
    assert!(refused.contains("not RSA"), "{refused}");
    let keyless = instance(&reg, "keyless", &[]);
    db.set_password(&keyless, None, "c29tZXRoaW5n").unwrap();
    let refused = reg.refused(&["instance", "get-password", "keyless", "--private-key", &key]);
    assert!(refused.contains("has no SSH key pair"), "{refused}");
    let junk = reg.write("junk", b"hello\n");
    let refused = reg.refused(&["instance", "get-password", "web", "--private-key", &junk]);
    assert!(refused.contains("not a private key"), "{refused}");
    // A passphrase-protected key: said so, with what to do.
    let (locked, _) = keygen(&reg, "locked", &["-t", "rsa", "-b", "2048"]);
    run(Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "secret", "-f"])
        .arg(&locked));
    let locked = locked.display().to_string();
    let refused = reg.refused(&["instance", "get-password", "web", "--private-key", &locked]);
    assert!(refused.contains("passphrase"), "{refused}");

    // The guest chooses every byte of what it posts: a terminal's escape sequence is never
    // printed as it is, decrypted or raw; the error shows it escaped.
    let escape = instance(&reg, "esc", &[&openssh]);
    db.set_password(
        &escape,
        None,
        &encrypt(&reg, &openssh, "pw\u{1b}]0;owned\u{7}"),
    )
    .unwrap();
    // Exit 1, nothing on stdout, the text escaped on stderr and no escape character.
    let shown_escaped = |args: &[&str], escaped: &str| {
        let out = reg.cmd(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(escaped) && !said.contains('\u{1b}'), "{said}");
    };
    shown_escaped(
        &["instance", "get-password", "esc", "--private-key", &key],
        r"pw\u{1b}]0;owned\u{7}",
    );
    let raw = instance(&reg, "raw", &[&openssh]);
    db.set_password(&raw, None, "\u{1b}[2J").unwrap();
    shown_escaped(&["instance", "get-password", "raw", "--raw"], r"\u{1b}[2J");
}

/// `instance clear-password` (nova's clear-password): the posted password is gone, so the
/// guest may post a new one, which `get-password` then shows; clearing nothing says so.
#[test]
fn clear_password_lets_the_guest_post_a_new_one() {
    let reg = Registry::new();
    reg.ok(&["network", "create", "net1", "--cidr", "198.18.0.0/24"]);
    let uuid = instance(&reg, "web", &[]);
    let db = store::open(reg.db.to_str().unwrap()).unwrap();
    db.set_password(&uuid, None, "Zmlyc3Q=").unwrap();

    let said = reg.ok(&["instance", "clear-password", "web"]);
    assert_eq!(
        said,
        format!("cleared the password of instance web ({uuid})\n")
    );
    let out = reg
        .cmd(&["instance", "get-password", "web", "--raw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no password yet"));
    assert!(matches!(
        db.set_password(&uuid, None, "c2Vjb25k").unwrap(),
        store::PasswordSet::Stored { .. }
    ));
    assert_eq!(
        reg.ok(&["instance", "get-password", "web", "--raw"]).trim(),
        "c2Vjb25k"
    );

    reg.ok(&["instance", "clear-password", "web"]);
    let said = reg.ok(&["instance", "clear-password", "web"]);
    assert_eq!(
        said,
        format!("no password to clear: none is stored for instance web ({uuid})\n")
    );
    let refused = reg.refused(&["instance", "clear-password", "nobody"]);
    assert!(refused.contains("nobody"), "{refused}");
}
