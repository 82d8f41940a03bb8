//! The instance's SSH host keys: the ed25519 key `metaboot run` makes when the image has sshd
//! and no key (`agent/src/apply/ssh_host_key.rs`): OpenSSH reads it back, it is made once, a
//! half key is made anew, a planted symlink is replaced and never written through; and on a new
//! instance the image's host keys deleted and the keys `ssh_keys` gives written
//! (`agent/src/apply/instance_host_keys.rs`), and the other types `ssh_genkeytypes` names made by
//! ssh-keygen (`agent/src/apply/ssh_genkeytypes.rs`), as cloud-init's `cc_ssh` does.

mod support;

use std::os::unix::fs::symlink;
use std::process::Command;

use support::*;

const PRIVATE: &str = "/etc/ssh/ssh_host_ed25519_key";
const PUBLIC: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// A guest whose image has OpenSSH's server configuration and no host keys.
fn guest_with_sshd() -> Guest {
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
    std::fs::write(
        guest.path("/etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    )
    .unwrap();
    guest
}

fn run_done(guest: &Guest) {
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "run failed: {stderr}\n{:#}", guest.status());
    assert_eq!(guest.status()["status"], "done");
}

/// Runs `ssh-keygen` with `args` and returns what it printed (None when it is missing outside
/// CI); it must succeed.
fn ssh_keygen(args: &[&std::ffi::OsStr]) -> Option<String> {
    if !testutil::require_tool("ssh-keygen") {
        return None;
    }
    let out = Command::new("ssh-keygen").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// `ssh-keygen -y`: the public key OpenSSH derives from the private key file.
fn openssh_public_of(guest: &Guest) -> Option<String> {
    let private = guest.path(PRIVATE);
    ssh_keygen(&["-y".as_ref(), "-f".as_ref(), private.as_os_str()])
}

#[test]
fn an_image_with_sshd_gets_an_ed25519_host_key_that_openssh_reads() {
    let guest = guest_with_sshd();
    run_done(&guest);
    assert_eq!(
        guest.step("instance-host-keys"),
        ("ok".into(), "no host keys in /etc/ssh to delete".into())
    );
    assert_eq!(
        guest.step("ssh-host-keys"),
        ("ok".into(), format!("ed25519: {PRIVATE}"))
    );
    let public = guest.read(PUBLIC);
    assert!(
        public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
        "{public}"
    );
    assert!(public.ends_with(" root@test\n"), "{public}");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
    let (private_mode, public_mode) = (guest.mode_owner(PRIVATE), guest.mode_owner(PUBLIC));
    assert_eq!(
        private_mode.0, 0o600,
        "sshd refuses a private key others can read"
    );
    assert_eq!(public_mode.0, 0o644);
    if let Some(derived) = openssh_public_of(&guest) {
        let words = |line: &str| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(&derived), words(&public));
    }

    // The next boot keeps the key.
    let private = guest.read(PRIVATE);
    run_done(&guest);
    assert_eq!(guest.step("ssh-host-keys").0, "skipped");
    assert_eq!(guest.read(PRIVATE), private);
    assert_eq!(guest.read(PUBLIC), public);
}

#[test]
fn ssh_genkeytypes_makes_the_types_it_names_with_ssh_keygen() {
    if !testutil::require_tool("ssh-keygen") {
        return;
    }
    let guest = guest_with_sshd();
    guest.user_data("#cloud-config\nssh_genkeytypes: [ecdsa, ed25519]\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("ssh-host-keys"),
        (
            "ok".into(),
            format!("ecdsa: /etc/ssh/ssh_host_ecdsa_key, ed25519: {PRIVATE}")
        )
    );
    // OpenSSH derives the public half written beside the private one.
    let ecdsa = guest.path("/etc/ssh/ssh_host_ecdsa_key");
    let derived = ssh_keygen(&["-y".as_ref(), "-f".as_ref(), ecdsa.as_os_str()]).unwrap();
    let public = guest.read("/etc/ssh/ssh_host_ecdsa_key.pub");
    assert!(public.starts_with(derived.trim()), "{public} / {derived}");
    assert!(public.trim_end().ends_with(" root@test"), "{public}");
    assert_eq!(guest.mode_owner("/etc/ssh/ssh_host_ecdsa_key").0, 0o600);
    assert_eq!(guest.mode_owner("/etc/ssh/ssh_host_ecdsa_key.pub").0, 0o644);
    // ssh-keygen's own words on the console, as cloud-init shows them.
    assert!(stderr.contains("The key fingerprint is"), "{stderr}");
    assert!(guest.read(PUBLIC).starts_with("ssh-ed25519 "));
}

#[test]
fn ssh_genkeytypes_without_ed25519_makes_only_what_it_names_quietly() {
    if !testutil::require_tool("ssh-keygen") {
        return;
    }
    let guest = guest_with_sshd();
    guest.user_data("#cloud-config\nssh_genkeytypes: ecdsa\nssh_quiet_keygen: true\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("ssh-host-keys").1,
        "ecdsa: /etc/ssh/ssh_host_ecdsa_key"
    );
    assert!(!guest.path(PRIVATE).exists(), "ed25519 was not asked for");
    assert!(!stderr.contains("The key fingerprint is"), "{stderr}");
    // The next boot finds it there.
    let (code, _) = guest.run();
    assert_eq!(code, 0);
    assert_eq!(
        guest.step("ssh-host-keys"),
        ("skipped".into(), "the ecdsa host key is there".into())
    );
}

#[test]
fn two_instances_get_two_keys() {
    let (one, two) = (guest_with_sshd(), guest_with_sshd());
    run_done(&one);
    run_done(&two);
    assert_ne!(one.read(PUBLIC), two.read(PUBLIC));
}

#[test]
fn no_sshd_no_host_key() {
    let guest = Guest::new();
    run_done(&guest);
    assert_eq!(
        guest.step("ssh-host-keys"),
        ("skipped".into(), "no /etc/ssh/sshd_config".into())
    );
    assert!(!guest.path(PRIVATE).exists());
}

#[test]
fn a_private_key_file_that_is_no_key_is_made_anew() {
    let guest = guest_with_sshd();
    std::fs::write(guest.path(PRIVATE), "left by a boot cut short\n").unwrap();
    run_done(&guest);
    assert_eq!(guest.step("ssh-host-keys").0, "ok");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
    if let Some(derived) = openssh_public_of(&guest) {
        assert!(guest.read(PUBLIC).starts_with(derived.trim_end()));
    }
}

/// `ssh_keys` gives an ed25519 private key in PKCS#8 (as `openssl genpkey` writes it), whose
/// public line cannot be read without a key parser: it is the user's key, which their
/// known_hosts may pin, and no boot replaces it (cloud-init never makes a key `ssh_keys` gave).
#[test]
fn a_given_private_key_without_its_public_half_is_kept() {
    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKekVhJl9yHW77qsVc1nj6Z6eCPCIErbY99l3464ACgw
-----END PRIVATE KEY-----
";
    let guest = guest_with_sshd();
    guest.user_data(format!(
        "#cloud-config\nssh_keys:\n  ed25519_private: |\n{}",
        PKCS8
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    ));
    for _boot in 0..2 {
        run_done(&guest);
        assert_eq!(guest.read(PRIVATE), PKCS8);
        assert!(!guest.path(PUBLIC).exists());
        assert_eq!(guest.step("ssh-host-keys").0, "skipped");
    }
}

/// A private key in OpenSSH's format without its public half (deleted by hand): kept, and its
/// public half written from it.
#[test]
fn a_private_key_alone_gets_its_public_half_back() {
    let guest = guest_with_sshd();
    run_done(&guest);
    let private = guest.read(PRIVATE);
    let public = guest.read(PUBLIC);
    std::fs::remove_file(guest.path(PUBLIC)).unwrap();
    run_done(&guest);
    assert_eq!(guest.step("ssh-host-keys").0, "ok");
    assert_eq!(guest.read(PRIVATE), private);
    assert_eq!(guest.read(PUBLIC), public);
}

#[test]
fn a_symlink_planted_at_the_key_is_replaced_not_written_through() {
    let guest = guest_with_sshd();
    let shadow = guest.read("/etc/shadow");
    symlink("/etc/shadow", guest.path(PRIVATE)).unwrap();
    symlink("../shadow", guest.path(PUBLIC)).unwrap();
    run_done(&guest);
    assert_eq!(guest.read("/etc/shadow"), shadow);
    let meta = std::fs::symlink_metadata(guest.path(PRIVATE)).unwrap();
    assert!(meta.is_file(), "the key is a file of its own");
    assert!(
        guest
            .read(PRIVATE)
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    );
}

/// Host keys an image was built with (every instance of it would share them).
fn image_keys(guest: &Guest) {
    for (name, text) in [
        ("ssh_host_ed25519_key", "image ed25519 private\n"),
        (
            "ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAAimage root@builder\n",
        ),
        ("ssh_host_rsa_key", "image rsa private\n"),
        ("ssh_host_rsa_key.pub", "ssh-rsa AAAAimage root@builder\n"),
        ("ssh_host_ecdsa_key-cert.pub", "image certificate\n"),
    ] {
        std::fs::write(guest.path(&format!("/etc/ssh/{name}")), text).unwrap();
    }
}

fn host_key_files(guest: &Guest) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(guest.path("/etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_instance_deletes_the_images_host_keys_and_makes_its_own() {
    let guest = guest_with_sshd();
    image_keys(&guest);
    std::fs::write(guest.path("/etc/ssh/moduli"), "kept\n").unwrap();
    run_done(&guest);
    let (outcome, message) = guest.step("instance-host-keys");
    assert_eq!(outcome, "ok");
    assert_eq!(
        message,
        "deleted the image's ssh_host_ecdsa_key-cert.pub, ssh_host_ed25519_key, \
         ssh_host_ed25519_key.pub, ssh_host_rsa_key, ssh_host_rsa_key.pub"
    );
    assert_eq!(guest.step("ssh-host-keys").0, "ok", "a new ed25519 key");
    assert_eq!(
        host_key_files(&guest),
        ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    );
    assert!(
        guest
            .read(PUBLIC)
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
    );
    assert_eq!(guest.read("/etc/ssh/moduli"), "kept\n");

    // The same instance's next boot keeps its keys, and keys made later (the image's RSA key).
    let private = guest.read(PRIVATE);
    std::fs::write(
        guest.path("/etc/ssh/ssh_host_rsa_key"),
        "made after the login\n",
    )
    .unwrap();
    run_done(&guest);
    assert_eq!(guest.step("instance-host-keys").0, "skipped");
    assert_eq!(guest.read(PRIVATE), private);
    assert_eq!(
        guest.read("/etc/ssh/ssh_host_rsa_key"),
        "made after the login\n"
    );

    // Another instance booted from this disk gets keys of its own again.
    guest.meta_data(&serde_json::json!({"uuid": "second-instance", "hostname": "two.novalocal"}));
    run_done(&guest);
    assert_eq!(guest.step("instance-host-keys").0, "ok");
    assert_ne!(guest.read(PRIVATE), private);
    assert!(!guest.path("/etc/ssh/ssh_host_rsa_key").exists());
    assert!(
        guest.read(PUBLIC).ends_with(" root@two\n"),
        "{}",
        guest.read(PUBLIC)
    );
}

#[test]
fn ssh_deletekeys_false_keeps_the_images_keys() {
    let guest = guest_with_sshd();
    image_keys(&guest);
    guest.user_data("#cloud-config\nssh_deletekeys: false\n");
    run_done(&guest);
    assert_eq!(
        guest.step("instance-host-keys"),
        (
            "skipped".into(),
            "ssh_deletekeys is false and no ssh_keys".into()
        )
    );
    assert_eq!(guest.read(PRIVATE), "image ed25519 private\n");
    assert_eq!(
        guest.read("/etc/ssh/ssh_host_rsa_key"),
        "image rsa private\n"
    );
}

#[test]
fn a_planted_symlink_is_deleted_not_its_target() {
    let guest = guest_with_sshd();
    let shadow = guest.read("/etc/shadow");
    // Relative: a deletion that followed it would take the guest's shadow, not the host's.
    symlink("../shadow", guest.path("/etc/ssh/ssh_host_rsa_key")).unwrap();
    std::fs::create_dir(guest.path("/etc/ssh/ssh_host_keys.d")).unwrap();
    run_done(&guest);
    assert_eq!(guest.read("/etc/shadow"), shadow);
    assert!(std::fs::symlink_metadata(guest.path("/etc/ssh/ssh_host_rsa_key")).is_err());
    assert!(
        guest.path("/etc/ssh/ssh_host_keys.d").is_dir(),
        "a directory is left"
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("ssh_host_keys.d is a directory"),
        "{warnings}"
    );
}

#[test]
fn ssh_keys_are_written_with_ssh_keygens_modes_and_a_missing_public_half_derived() {
    let Some(private) = ssh_keygen_ed25519() else {
        return;
    };
    let guest = guest_with_sshd();
    image_keys(&guest);
    let indented = |text: &str| {
        text.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    guest.user_data(format!(
        "#cloud-config\nssh_keys:\n  ed25519_private: |\n{}  rsa_public: ssh-rsa AAAAgiven root@given\n  \
         rsa_certificate: ssh-rsa-cert-v01@openssh.com AAAA\n  ed25519-sk_private: x\n",
        indented(&private)
    ));
    run_done(&guest);
    let (outcome, message) = guest.step("instance-host-keys");
    assert_eq!(outcome, "ok", "{message}");
    assert!(
        message.ends_with(
            "wrote /etc/ssh/ssh_host_ed25519_key.pub, /etc/ssh/ssh_host_rsa_key.pub, \
             /etc/ssh/ssh_host_ed25519_key from ssh_keys"
        ),
        "{message}"
    );
    assert_eq!(
        guest.step("ssh-host-keys").0,
        "skipped",
        "the given key is kept"
    );
    assert_eq!(guest.read(PRIVATE), private);
    assert_eq!(guest.mode_owner(PRIVATE).0, 0o600);
    assert_eq!(guest.mode_owner(PUBLIC).0, 0o644);
    let derived = openssh_public_of(&guest).unwrap();
    let words = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        words(&guest.read(PUBLIC)) == words(&derived)
            && guest.read(PUBLIC).ends_with(" root@test\n"),
        "{}",
        guest.read(PUBLIC)
    );
    assert_eq!(
        guest.read("/etc/ssh/ssh_host_rsa_key.pub"),
        "ssh-rsa AAAAgiven root@given\n"
    );
    assert!(!guest.path("/etc/ssh/ssh_host_rsa_key-cert.pub").exists());
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("rsa_certificate")
            && warnings.contains("unsupported ssh_keys entry `ed25519-sk_private`"),
        "{warnings}"
    );
}

/// A private ed25519 key made by `ssh-keygen` (None when it is missing outside CI).
fn ssh_keygen_ed25519() -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    let args = ["-q", "-t", "ed25519", "-N", "", "-C", "given", "-f"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    args.push(key.as_os_str());
    ssh_keygen(&args)?;
    Some(std::fs::read_to_string(key).unwrap())
}

/// The lines of a run's `-----BEGIN SSH HOST KEY <WHAT>-----` block on the console (its
/// stderr), as cloud-init's `keys_to_console` prints it; `None` when there is none.
fn console_block(stderr: &str, what: &str) -> Option<Vec<String>> {
    let start = stderr.find(&format!("-----BEGIN SSH HOST KEY {what}-----\n"))?;
    let block = &stderr[start..];
    let end = block.find(&format!("-----END SSH HOST KEY {what}-----\n"))?;
    Some(block[..end].lines().skip(1).map(str::to_owned).collect())
}

/// The keys block.
fn console_keys(stderr: &str) -> Option<Vec<String>> {
    console_block(stderr, "KEYS")
}

#[test]
fn the_host_keys_are_printed_on_the_console_at_the_end_of_the_run() {
    let guest = guest_with_sshd();
    // The image's other keys (as the debian-metaboot image makes them after sshd starts): a
    // DSA key is left out, as cloud-init's default ssh_key_console_blacklist does.
    let keys = [
        (
            "ssh_host_ecdsa_key.pub",
            "ecdsa-sha2-nistp256 AAAAecdsa root@image\n",
        ),
        ("ssh_host_dsa_key.pub", "ssh-dss AAAAdsa root@image\n"),
    ];
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let printed = console_keys(&stderr).expect("a host key block");
    assert_eq!(printed, [guest.read(PUBLIC).trim_end()]);
    assert_eq!(
        guest.step("keys-to-console"),
        ("ok".into(), "1 host key on the console".into())
    );
    // After the user scripts, before the final message and the power state (cloud-init's
    // cloud-final order).
    let names = guest.step_names();
    let at = |step: &str| names.iter().position(|n| n == step).unwrap();
    assert!(at("scripts-user") < at("keys-to-console"));
    assert_eq!(
        names[at("keys-to-console")..],
        [
            "keys-to-console",
            "phone-home",
            "final-message",
            "power-state"
        ]
    );

    // Once per instance: the next boot prints nothing.
    for (name, line) in keys {
        std::fs::write(guest.path(&format!("/etc/ssh/{name}")), line).unwrap();
    }
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(console_keys(&stderr), None);

    // A new instance from the same disk: its final stage prints the keys there then (its own
    // ed25519 key, and the ECDSA key made after it), in name order, never the DSA key.
    guest.meta_data(&serde_json::json!({
        "uuid": "c0000000-0000-4000-8000-00000000000c",
        "hostname": "test",
    }));
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        console_keys(&stderr),
        None,
        "printed before the final stage"
    );
    for (name, line) in keys {
        std::fs::write(guest.path(&format!("/etc/ssh/{name}")), line).unwrap();
    }
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        console_keys(&stderr).expect("a host key block"),
        [
            "ecdsa-sha2-nistp256 AAAAecdsa root@image",
            guest.read(PUBLIC).trim_end()
        ]
    );
}

#[test]
fn user_data_chooses_which_host_keys_the_final_stage_shows() {
    let ecdsa = "ecdsa-sha2-nistp256 AAAAecdsa root@image";
    let dsa = "ssh-dss AAAAdsa root@image";
    for (config, shown) in [
        // The init stage merges user data; the final stage reads what it merged.
        ("ssh:\n  emit_keys_to_console: false\n", None),
        ("ssh:\n  emit_keys_to_console: 'off'\n", None),
        // A list given replaces the default (ssh-dss), as in cloud-init.
        (
            "ssh_key_console_blacklist: [ssh-ed25519]\n",
            Some(vec![dsa, ecdsa]),
        ),
        (
            "ssh_key_console_blacklist: []\n",
            Some(vec![dsa, ecdsa, "ed25519"]),
        ),
    ] {
        let guest = guest_with_sshd();
        guest.user_data(format!("#cloud-config\n{config}"));
        let (code, stderr) = guest.run_stage("init");
        assert_eq!(code, 0, "{stderr}");
        for (name, line) in [
            ("ssh_host_ecdsa_key.pub", ecdsa),
            ("ssh_host_dsa_key.pub", dsa),
        ] {
            std::fs::write(guest.path(&format!("/etc/ssh/{name}")), format!("{line}\n")).unwrap();
        }
        let (code, stderr) = guest.run_stage("final");
        assert_eq!(code, 0, "{config}: {stderr}");
        let printed = console_keys(&stderr);
        match shown {
            None => {
                assert_eq!(printed, None, "{config}");
                assert_eq!(
                    guest.step("keys-to-console"),
                    (
                        "skipped".into(),
                        "ssh: emit_keys_to_console is false".into()
                    ),
                    "{config}"
                );
            }
            Some(shown) => {
                let ed25519 = guest.read(PUBLIC).trim_end().to_owned();
                let shown: Vec<&str> = shown
                    .into_iter()
                    .map(|line| {
                        if line == "ed25519" {
                            ed25519.as_str()
                        } else {
                            line
                        }
                    })
                    .collect();
                assert_eq!(printed.expect("a host key block"), shown, "{config}");
            }
        }
    }
}

#[test]
fn the_console_fingerprints_are_ssh_keygens() {
    let guest = Guest::new();
    let (code, stderr) = guest.run_stage("init");
    assert_eq!(code, 0, "{stderr}");
    let ssh = guest.path("/etc/ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let mut expected = Vec::new();
    // In name order, as the console lists them (OpenSSH 9.2 still makes DSA keys).
    for (kind, bits) in [
        ("dsa", "1024"),
        ("ecdsa", "384"),
        ("ed25519", "256"),
        ("rsa", "1024"),
    ] {
        let file = ssh.join(format!("ssh_host_{kind}_key"));
        let made = ssh_keygen(&[
            "-q".as_ref(),
            "-t".as_ref(),
            kind.as_ref(),
            "-b".as_ref(),
            bits.as_ref(),
            "-N".as_ref(),
            "".as_ref(),
            "-C".as_ref(),
            "root@made by ssh-keygen".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
        ]);
        if made.is_none() {
            return; // no ssh-keygen, outside CI
        }
        let listed = ssh_keygen(&[
            "-l".as_ref(),
            "-f".as_ref(),
            file.with_extension("pub").as_os_str(),
        ])
        .unwrap();
        expected.push(listed.trim_end().to_owned());
    }
    let (code, stderr) = guest.run_stage("final");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        console_block(&stderr, "FINGERPRINTS").expect("a fingerprint block"),
        expected
    );
    // The keys block leaves DSA out by default; the fingerprints keep it, as cloud-init's.
    assert_eq!(console_keys(&stderr).unwrap().len(), 3);
}
