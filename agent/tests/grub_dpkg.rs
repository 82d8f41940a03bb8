//! The answers the `grub-dpkg` step gives debconf, read by the real `debconf-set-selections`
//! into a debconf database of the test's own (`DEBCONF_SYSTEMRC`), then shown by `debconf-show`
//! as an administrator would look at them.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use metaboot::apply::grub_dpkg::{self, Selections};
use support::testutil::require_tool;

#[test]
fn debconf_takes_the_answers_as_written() {
    if !require_tool("debconf-set-selections") || !require_tool("debconf-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = |name: &str| dir.path().join(name).display().to_string();
    let rc = dir.path().join("debconf.conf");
    std::fs::write(
        &rc,
        format!(
            "Config: configdb\nTemplates: templatedb\n\n\
             Name: configdb\nDriver: File\nFilename: {}\n\n\
             Name: templatedb\nDriver: File\nFilename: {}\n",
            db("config.dat"),
            db("templates.dat")
        ),
    )
    .unwrap();
    let selections = grub_dpkg::selections(None, || Ok("/dev/vda".to_owned())).unwrap();
    assert_eq!(
        selections,
        Selections {
            devices: "/dev/vda".to_owned(),
            empty: false
        }
    );
    let mut child = Command::new(grub_dpkg::SET_SELECTIONS)
        .env("DEBCONF_SYSTEMRC", &rc)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(selections.text().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let shown = Command::new("debconf-show")
        .arg("grub-pc")
        .env("DEBCONF_SYSTEMRC", &rc)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let mut lines: Vec<&str> = shown.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "* grub-pc/install_devices: /dev/vda",
            "* grub-pc/install_devices_empty: false"
        ]
    );
}
