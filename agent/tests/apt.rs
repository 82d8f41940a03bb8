//! `apt` and `apt_pipelining` under another root: apt's sources, keys and configuration files
//! written as cloud-init writes them, `apt-get update` left to the running system (the Debian
//! guests of the end-to-end suite take the lab's signed repository this way:
//! `harness/src/check/apt_repo.rs`).

mod support;

use support::{Guest, fixtures};

/// The user data's `key:` block: the fixture key indented under `key: |`.
fn key_block(indent: usize) -> String {
    let key = std::fs::read_to_string(fixtures().join("apt/key.asc")).unwrap();
    key.lines()
        .map(|line| format!("{:indent$}{line}\n", ""))
        .collect()
}

fn debian_guest() -> Guest {
    let guest = Guest::new();
    std::fs::write(
        guest.path("/etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    guest
}

#[test]
fn sources_keys_and_configuration_written_as_cloud_init_writes_them() {
    let guest = debian_guest();
    std::fs::create_dir_all(guest.path("/etc/apt")).unwrap();
    std::fs::write(
        guest.path("/etc/apt/sources.list"),
        "deb http://image/ bookworm main\n",
    )
    .unwrap();
    guest.user_data(format!(
        "#cloud-config
apt_pipelining: false
apt:
  preserve_sources_list: false
  primary:
    - arches: [default]
      uri: http://mirror.invalid/debian
  sources_list: |
    deb $MIRROR $RELEASE main
    deb $SECURITY $RELEASE-updates main
  disable_suites: [updates]
  proxy: http://proxy.invalid:3128
  sources:
    lab:
      source: deb [signed-by=$KEY_FILE] $MIRROR $RELEASE contrib
      key: |
{}packages: [hello]
",
        key_block(8)
    ));
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("apt-configure");
    assert_eq!(outcome, "ok", "{message}");
    assert!(
        message.ends_with("root is not /: apt-get update not run"),
        "{message}"
    );
    assert_eq!(
        guest.read("/etc/apt/sources.list"),
        "deb http://mirror.invalid/debian bookworm main\n\
         # suite disabled by metaboot: deb http://mirror.invalid/debian bookworm-updates main\n"
    );
    assert_eq!(
        guest.read("/etc/apt/sources.list.d/lab.list"),
        "deb [signed-by=/etc/apt/cloud-init.gpg.d/lab.gpg] http://mirror.invalid/debian \
         bookworm contrib\n"
    );
    assert_eq!(
        std::fs::read(guest.path("/etc/apt/cloud-init.gpg.d/lab.gpg")).unwrap(),
        std::fs::read(fixtures().join("apt/key.gpg")).unwrap(),
        "the key as gpg --dearmor makes it"
    );
    assert_eq!(
        guest.read("/etc/apt/apt.conf.d/90cloud-init-aptproxy"),
        "Acquire::http::Proxy \"http://proxy.invalid:3128\";\n"
    );
    assert!(
        guest
            .read("/etc/apt/apt.conf.d/90cloud-init-pipelining")
            .ends_with("Acquire::http::Pipeline-Depth \"0\";\n")
    );
    // After the sources: the packages (not installed under another root).
    assert_eq!(guest.step("packages").0, "skipped");
    let warnings = guest.status()["warnings"].to_string();
    assert!(!warnings.contains("apt"), "{warnings}");
}

#[test]
fn a_damaged_key_fails_its_source_alone() {
    let guest = debian_guest();
    let damaged = key_block(8).replacen('m', "M", 2);
    guest.user_data(format!(
        "#cloud-config
hostname: kept
apt:
  sources:
    good:
      source: deb http://good.invalid/ ./
    lab:
      source: deb [signed-by=$KEY_FILE] http://lab.invalid/ ./
      key: |
{damaged}"
    ));
    let (code, _) = guest.run();
    assert_ne!(code, 0);
    let (outcome, message) = guest.step("apt-configure");
    assert_eq!(outcome, "error");
    assert!(
        message.starts_with("the key of sources: \"lab\": the armored key"),
        "{message}"
    );
    assert_eq!(
        guest.read("/etc/apt/sources.list.d/good.list"),
        "deb http://good.invalid/ ./\n"
    );
    assert!(!guest.path("/etc/apt/sources.list.d/lab.list").exists());
    assert_eq!(guest.read("/etc/hostname"), "kept\n");
}

#[test]
fn no_apt_leaves_the_image_alone() {
    let guest = debian_guest();
    guest.user_data("#cloud-config\nhostname: kept\n");
    guest.run();
    assert_eq!(
        guest.step("apt-configure"),
        ("skipped".to_owned(), "no apt or apt_pipelining".to_owned())
    );
    assert!(!guest.path("/etc/apt").exists());
}

/// User data written for an older cloud-init (`apt_proxy`, `apt_mirror` before `apt:`) still
/// configures apt, with a warning that names the key to write instead.
#[test]
fn cloud_inits_older_apt_keys_are_read_as_apt() {
    let guest = debian_guest();
    guest.user_data("#cloud-config\napt_proxy: http://proxy.invalid:3128\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.read("/etc/apt/apt.conf.d/90cloud-init-aptproxy"),
        "Acquire::http::Proxy \"http://proxy.invalid:3128\";\n"
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("apt_proxy → apt.proxy): write them under `apt`"),
        "{warnings}"
    );
}

/// An image made with a build proxy (`apt: {proxy: …}` on the instance it was captured from),
/// booted as an instance that asks for none: the proxy and configuration files go, as
/// cloud-init removes them, so apt does not keep going through a proxy that is not there.
#[test]
fn a_proxy_and_configuration_no_instance_asks_for_are_removed() {
    let guest = debian_guest();
    let dir = guest.path("/etc/apt/apt.conf.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("90cloud-init-aptproxy"),
        "Acquire::http::Proxy \"http://build-proxy:3142\";\n",
    )
    .unwrap();
    std::fs::write(dir.join("94cloud-init-config"), "APT::Get::Foo \"1\";\n").unwrap();
    std::fs::write(dir.join("99image"), "kept\n").unwrap();
    guest.user_data("#cloud-config\nhostname: vm\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        guest.step("apt-configure"),
        (
            "ok".into(),
            "removed /etc/apt/apt.conf.d/90cloud-init-aptproxy, \
             /etc/apt/apt.conf.d/94cloud-init-config (not asked for by this instance)"
                .into()
        )
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["99image"]);
}
