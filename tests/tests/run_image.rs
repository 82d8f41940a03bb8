//! `metaboot-harness run --image FILE`, run as the real binary: bad files get one line and
//! exit 2 before anything starts; a disk that boots but never provisions is reported as such,
//! with its console log, and its lab is gone afterwards; the built `debian-cloud-init` image,
//! brought as a user's own, is provisioned through the chain and passes the checks from
//! outside. The image file is never changed (checksum and modification time).
//!
//! The bad-input test needs only qemu-img; the boots need root, QEMU and the lab's tools
//! (fail in CI when missing, skip elsewhere), the never-provisioning disk also boots through
//! libvirt, and the Debian boot needs the image build's tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

use metaboot_harness::cli::{AgentArgs, build_debian};
use metaboot_harness::guest::libvirtd;
use metaboot_harness::image::debian::{self, Flavour};
use metaboot_harness::{progress, scenario, workspace};
use metaboot_tests::prerequisite::{require, require_command};

/// The harness binary, built once.
fn harness() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| workspace::build(workspace::HARNESS).expect("metaboot-harness builds"))
        .clone()
}

fn run(args: &[&std::ffi::OsStr], state_root: &Path) -> Output {
    Command::new(harness())
        .arg("run")
        .args(args)
        .env("METABOOT_LAB_STATE", state_root)
        .env(
            "METABOOT_SERVER_BIN",
            workspace::build(workspace::SERVER).expect("metaboot-server builds"),
        )
        .output()
        .expect("metaboot-harness runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a file is: its SHA-256, size and modification time.
fn fingerprint(path: &Path) -> (String, u64, SystemTime) {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let meta = std::fs::metadata(path).unwrap();
    (sum, meta.len(), meta.modified().unwrap())
}

#[test]
fn a_missing_file_or_one_that_is_not_a_disk_image_gets_one_line_and_exit_2() {
    if !require_command("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a disk image\n".repeat(64)).unwrap();
    // A qcow2 version 3 header with no backing file and no feature bits, garbage elsewhere
    // (its cluster size): qemu-img cannot open it.
    let broken = dir.path().join("broken.qcow2");
    let mut header = b"QFI\xfb".to_vec();
    header.extend([0xffu8; 508]);
    header[4..8].copy_from_slice(&3u32.to_be_bytes());
    header[8..20].fill(0);
    header[72..80].fill(0);
    std::fs::write(&broken, &header).unwrap();
    let missing = dir.path().join("missing.qcow2");
    // A qcow2 whose backing file is gone (-u: qemu-img create would look for it).
    let orphan = dir.path().join("orphan.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-u", "-b", "missing.qcow2"])
        .args(["-F", "qcow2"])
        .arg(&orphan)
        .arg("1M")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let before = fingerprint(&notes);
    for (file, says) in [
        (&missing, "no such file"),
        (
            &orphan,
            &*format!("its backing file {} cannot be opened", missing.display()),
        ),
        (
            &notes,
            "not a disk image: qemu-img sees raw data with no boot sector",
        ),
        (&broken, "not a disk image qemu-img can open"),
        (&dir.path().to_owned(), "not a regular file"),
    ] {
        let out = run(
            &["--image".as_ref(), file.as_os_str()],
            &dir.path().join("state"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            file.display(),
            text(&out)
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("metaboot-harness: {}: {says}", file.display())),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", text(&out));
    }
    assert_eq!(
        fingerprint(&notes),
        before,
        "a refused file is left as it was"
    );
    assert!(
        !dir.path().join("state").exists(),
        "no lab is brought up for a bad file"
    );
}

/// Names that go into paths and command lines are checked before anything is done: a guest
/// name that would leave the lab's directory, a user name ssh would take for an option, and an
/// image file whose name starts with `-` (read as the file it is, not as qemu-img's option).
#[test]
fn names_that_would_be_read_as_paths_or_options_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let notes = dir.path().join("-notes.qcow2");
    std::fs::write(&notes, "not a disk image\n".repeat(64)).unwrap();
    let harness_in = |args: &[&str]| {
        Command::new(harness())
            .args(args)
            .current_dir(dir.path())
            .env("METABOOT_LAB_STATE", &state)
            .output()
            .expect("metaboot-harness runs")
    };
    for (args, says) in [
        (
            &["boot", "--lab-id", "abc", "--name", "../../root/.ssh"][..],
            "must be 1 to 63 characters of letters, digits, - and _",
        ),
        (&["boot", "--lab-id", "../x"][..], "lab id \"../x\" must be"),
        (
            &[
                "run",
                "--image=-notes.qcow2",
                "--user=-oProxyCommand=touch /x",
            ][..],
            "is not a user name",
        ),
    ] {
        let out = harness_in(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    if require_command("qemu-img") {
        let out = harness_in(&["run", "--image=-notes.qcow2"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("-notes.qcow2: not a disk image: qemu-img sees raw data"),
            "{}",
            text(&out)
        );
    }
    assert!(!state.exists(), "nothing was brought up");
}

/// A BIOS boot sector that prints [`NEVER_MESSAGE`] on COM1 and halts: a real bootable disk
/// with nothing on it that could provision.
fn never_provisioning_disk(path: &Path) {
    #[rustfmt::skip]
    let code: [u8; 23] = [
        0x31, 0xc0,             // xor ax, ax
        0x8e, 0xd8,             // mov ds, ax
        0xfc,                   // cld
        0xbe, 0x17, 0x7c,       // mov si, 0x7c17 (the message, right after the code)
        0xba, 0xf8, 0x03,       // mov dx, 0x3f8 (COM1)
        0xac,                   // next: lodsb
        0x84, 0xc0,             // test al, al
        0x74, 0x03,             // jz halt
        0xee,                   // out dx, al
        0xeb, 0xf8,             // jmp next
        0xfa,                   // halt: cli
        0xf4,                   // hlt
        0xeb, 0xfc,             // jmp halt
    ];
    let mut disk = vec![0u8; 1 << 20];
    disk[..code.len()].copy_from_slice(&code);
    let message = format!("{NEVER_MESSAGE}\r\n\0");
    disk[code.len()..code.len() + message.len()].copy_from_slice(message.as_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(path, disk).unwrap();
}

/// What the never-provisioning disk prints.
const NEVER_MESSAGE: &str = "metaboot test disk: booted, nothing here provisions";

/// `--timeout` of the never-provisioning run.
const NEVER_TIMEOUT_SECS: u64 = 20;

fn require_lab() -> bool {
    require(
        "root, QEMU and the lab tools",
        scenario::preflight().err().map(|e| format!("{e:#}")),
    )
}

/// The lab id from the run's last words ("lab ID is down; …").
fn lab_id(output: &str) -> String {
    output
        .lines()
        .find_map(|l| {
            l.strip_prefix("lab ")?
                .split_once(" is down")
                .map(|(id, _)| id)
        })
        .unwrap_or_else(|| panic!("no `lab ID is down` line in\n{output}"))
        .to_owned()
}

/// Processes whose command line contains `needle`, and processes named `name`.
fn processes(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle) || comm.trim() == needle
        })
        .collect()
}

#[test]
fn an_image_that_never_provisions_is_reported_with_its_console_and_the_lab_is_torn_down() {
    if !require_lab() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("never-provisions.raw");
    never_provisioning_disk(&disk);
    let before = fingerprint(&disk);
    // Through the harness's QEMU, then through libvirt: its domain is destroyed and the
    // daemons it started are stopped although the guest failed.
    let with_libvirt = libvirtd::preflight().is_ok()
        || require(
            "libvirt",
            libvirtd::preflight().err().map(|e| format!("{e:#}")),
        );
    let daemons_before = (processes("libvirtd"), processes("virtlogd"));
    for via in ["qemu", "libvirt"] {
        if via == "libvirt" && !with_libvirt {
            continue;
        }
        let state = dir.path().join(format!("state-{via}"));
        let run_dir = dir.path().join(format!("run-{via}"));
        let out = run(
            &[
                "--image".as_ref(),
                disk.as_os_str(),
                "--timeout".as_ref(),
                NEVER_TIMEOUT_SECS.to_string().as_ref(),
                "--run-dir".as_ref(),
                run_dir.as_os_str(),
                "--via".as_ref(),
                via.as_ref(),
            ],
            &state,
        );
        let output = text(&out);
        assert_eq!(out.status.code(), Some(1), "{via}: {output}");
        assert!(
            output.contains(&format!(
                "no provisioning seen in {NEVER_TIMEOUT_SECS} s (no key login as debian"
            )),
            "{via}: {output}"
        );
        let console = output
            .lines()
            .find_map(|l| l.split_once("console log: ").map(|(_, p)| p.trim()))
            .unwrap_or_else(|| panic!("{via}: no console log path in\n{output}"));
        let console_text = std::fs::read_to_string(console).expect("the console log exists");
        assert!(
            console_text.contains(NEVER_MESSAGE),
            "{via}: {console_text}"
        );
        let id = lab_id(&output);
        assert!(
            !Path::new(&format!("/run/netns/metaboot-{id}")).exists(),
            "{via}: lab {id}'s namespaces are gone"
        );
        let left: Vec<_> = std::fs::read_dir(&state)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{via}: no lab state left: {left:?}");
        assert!(
            processes("guest=router-never-provisions").is_empty(),
            "{via}: no QEMU of the guest is left"
        );
        assert_eq!(
            (processes("libvirtd"), processes("virtlogd")),
            daemons_before,
            "{via}: the daemons the run started are stopped"
        );
        assert_eq!(
            fingerprint(&disk),
            before,
            "{via}: the image is never written"
        );
    }
}

#[test]
fn the_built_debian_image_brought_as_a_users_own_passes_the_checks_from_outside() {
    let missing = scenario::preflight()
        .and_then(|()| debian::preflight())
        .err()
        .map(|e| format!("{e:#}"));
    if !require("root, QEMU, the lab and image build tools", missing) {
        return;
    }
    let images = build_debian(
        &metaboot_harness::image::cache::default_dir(),
        None,
        &AgentArgs { agent: None },
        &Flavour::ALL,
        &progress::Lines::new(),
    )
    .expect("the Debian images build (or come from the cache)");
    let image = images
        .iter()
        .find(|i| i.manifest.kind == Flavour::CloudInit.name())
        .expect("debian-cloud-init is built");
    // The path a user is shown: the image's link to its newest build.
    let disk = image
        .dir
        .parent()
        .unwrap()
        .join(Flavour::CloudInit.name())
        .join(metaboot_harness::image::disk::DISK);
    assert_eq!(
        std::fs::canonicalize(&disk).unwrap(),
        std::fs::canonicalize(&image.disk).unwrap()
    );
    let before = fingerprint(&disk);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = run(
        &[
            "--image".as_ref(),
            disk.as_os_str(),
            "--report".as_ref(),
            report.as_os_str(),
            "--run-dir".as_ref(),
            dir.path().join("run").as_os_str(),
        ],
        &dir.path().join("state"),
    );
    let output = text(&out);
    eprintln!("{output}");
    assert_eq!(out.status.code(), Some(0), "{output}");
    let reports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let guest = &reports[0];
    assert_eq!(guest["passed"], true, "{guest:#}");
    assert_eq!(guest["name"], "router/debian-cloud-init");
    assert_eq!(guest["provisioner"], "cloud-init", "found in the guest");
    let names: Vec<&str> = guest["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "key login as debian",
        "cloud-init status --long: done, no errors",
        "hostname",
        "password login as cloudy",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let id = lab_id(&output);
    assert!(!Path::new(&format!("/run/netns/metaboot-{id}")).exists());
    assert_eq!(
        fingerprint(&disk),
        before,
        "{} is never written",
        disk.display()
    );
}
