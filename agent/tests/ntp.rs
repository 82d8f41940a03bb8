//! `ntp` under another root: the time client chosen as cloud-init 22.4 chooses it on Debian and
//! its configuration written; installing and restarting it are left to the running system (the
//! Debian guests of the end-to-end suite check systemd-timesyncd's servers:
//! `harness/src/scenario/cloud_image/`).

mod support;

use std::os::unix::fs::PermissionsExt;

use support::Guest;

/// A Debian root with `programs` installed (executable files).
fn debian_guest(programs: &[&str]) -> Guest {
    let guest = Guest::new();
    std::fs::write(
        guest.path("/etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    for program in programs {
        let path = guest.path(program);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    guest
}

#[test]
fn servers_go_to_the_time_client_the_image_has() {
    let guest = debian_guest(&["/lib/systemd/systemd-timesyncd"]);
    guest.user_data(
        "#cloud-config\nntp:\n  servers: [198.18.0.1, ntp.example.org]\n  pools: [pool.example.org]\n",
    );
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("ntp");
    assert_eq!(outcome, "ok", "{message}");
    assert_eq!(
        message,
        "systemd-timesyncd in /etc/systemd/timesyncd.conf.d/cloud-init.conf: 198.18.0.1 \
         ntp.example.org pool.example.org; root is not /: nothing installed or restarted"
    );
    let conf = guest.read("/etc/systemd/timesyncd.conf.d/cloud-init.conf");
    assert!(
        conf.ends_with("[Time]\nNTP=198.18.0.1 ntp.example.org pool.example.org\n"),
        "{conf}"
    );
    let mode = std::fs::metadata(guest.path("/etc/systemd/timesyncd.conf.d/cloud-init.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn chrony_replaces_the_images_file_and_keeps_it() {
    let guest = debian_guest(&["/usr/sbin/chronyd", "/lib/systemd/systemd-timesyncd"]);
    std::fs::create_dir_all(guest.path("/etc/chrony")).unwrap();
    std::fs::write(
        guest.path("/etc/chrony/chrony.conf"),
        "pool 2.debian.pool.ntp.org iburst\n",
    )
    .unwrap();
    // No servers: the distribution's pool, as cloud-init writes it.
    guest.user_data("#cloud-config\nntp: {enabled: true}\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    let (outcome, message) = guest.step("ntp");
    assert_eq!(outcome, "ok", "{message}");
    assert!(
        message.contains("the image's file kept as /etc/chrony/chrony.conf.dist"),
        "{message}"
    );
    let conf = guest.read("/etc/chrony/chrony.conf");
    for n in 0..4 {
        assert!(
            conf.contains(&format!("pool {n}.debian.pool.ntp.org iburst\n")),
            "{conf}"
        );
    }
    assert_eq!(
        guest.read("/etc/chrony/chrony.conf.dist"),
        "pool 2.debian.pool.ntp.org iburst\n"
    );
}

#[test]
fn a_bad_ntp_fails_its_step_alone_and_writes_nothing() {
    let guest = debian_guest(&["/lib/systemd/systemd-timesyncd"]);
    guest.user_data("#cloud-config\nhostname: kept\nntp:\n  servers: [\"a b\"]\n");
    let (code, _) = guest.run();
    assert_eq!(code, 1, "a step's error is the run's");
    let (outcome, message) = guest.step("ntp");
    assert_eq!(outcome, "error");
    assert_eq!(
        message,
        "ntp: `servers` holds \"a b\", not a host name or address"
    );
    assert!(!guest.path("/etc/systemd/timesyncd.conf.d").exists());
    assert_eq!(guest.step("hostname").0, "ok");
}

#[test]
fn no_ntp_skips_the_step() {
    let guest = debian_guest(&["/lib/systemd/systemd-timesyncd"]);
    guest.user_data("#cloud-config\nhostname: plain\n");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.step("ntp").0, "skipped");
    assert!(!guest.path("/etc/systemd/timesyncd.conf.d").exists());
}
