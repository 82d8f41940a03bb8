//! The distribution's sources in deb822 format (Ubuntu 24.04, Debian 13): the files written
//! compared with what cloud-init 25.x renders from its `sources.list.*.deb822.tmpl` for the same
//! mirrors and keys (its own comments, and the blank line its `disable_suites` doubles, aside).

use serde_json::{Value, json};

use super::*;
use crate::userdata::cloud_config::CloudConfig;

const KEY: &str = include_str!("../../../tests/fixtures/apt/key.asc");
const NOBLE_OS_RELEASE: &str = include_str!("../../../tests/fixtures/apt/ubuntu-24.04/os-release");
const NOBLE_SOURCES: &str = include_str!("../../../tests/fixtures/apt/ubuntu-24.04/ubuntu.sources");
const NOBLE_SOURCES_LIST: &str =
    include_str!("../../../tests/fixtures/apt/ubuntu-24.04/sources.list");
const TRIXIE_OS_RELEASE: &str = include_str!("../../../tests/fixtures/apt/debian-13/os-release");
const UBUNTU_SOURCES: &str = "/etc/apt/sources.list.d/ubuntu.sources";
const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

fn asked(value: Value) -> (Request, Vec<String>) {
    let mut warnings = Vec::new();
    let request = request(&CloudConfig::from_json(value), &mut warnings).unwrap();
    (request, warnings)
}

/// A root holding `files` (path, contents).
fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

/// Ubuntu 24.04 as its cloud images ship: os-release, ubuntu.sources, the note in sources.list.
fn noble_root() -> (tempfile::TempDir, Root) {
    root_with(&[
        (OS_RELEASE, NOBLE_OS_RELEASE),
        (UBUNTU_SOURCES, NOBLE_SOURCES),
        (SOURCES_LIST, NOBLE_SOURCES_LIST),
    ])
}

fn read(dir: &tempfile::TempDir, path: &str) -> Option<String> {
    std::fs::read_to_string(dir.path().join(path.trim_start_matches('/'))).ok()
}

/// What apt reads of a sources text: its lines but the explaining comments (`## …`, those of
/// `disable_suites` kept), blank lines at the ends dropped and runs of them made one.
fn sections(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("## ") && !line.starts_with("## Entry disabled") {
            continue;
        }
        if line.trim().is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end_matches('\n').to_owned() + "\n"
}

fn mirrors(primary: &str, security: Option<&str>) -> Value {
    let mut apt = json!({
        "preserve_sources_list": false,
        "primary": [{"arches": ["default"], "uri": primary}],
    });
    if let Some(security) = security {
        apt["security"] = json!([{"arches": ["default"], "uri": security}]);
    }
    apt
}

#[test]
fn ubuntu_24_04s_sources_are_rewritten_in_its_deb822_file_with_the_mirror() {
    let (dir, root) = noble_root();
    let (request, warnings) = asked(json!({"apt": mirrors("http://mirror.example/ubuntu", None)}));
    assert!(warnings.is_empty(), "{warnings:?}");
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);
    // Only ubuntu.sources is written: sources.list holds Ubuntu's note already.
    assert_eq!(applied.written, [UBUNTU_SOURCES]);
    assert!(applied.superseded.is_empty());
    let written = read(&dir, UBUNTU_SOURCES).unwrap();
    assert!(written.starts_with("## Note, this file is written by metaboot"));
    // cloud-init's rendering of sources.list.ubuntu.deb822.tmpl, mirror and security
    // http://mirror.example/ubuntu, codename noble.
    assert_eq!(
        sections(&written),
        "Types: deb\n\
         URIs: http://mirror.example/ubuntu\n\
         Suites: noble noble-updates noble-backports\n\
         Components: main universe restricted multiverse\n\
         Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n\
         \n\
         Types: deb\n\
         URIs: http://mirror.example/ubuntu\n\
         Suites: noble-security\n\
         Components: main universe restricted multiverse\n\
         Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n"
    );
    assert_eq!(read(&dir, SOURCES_LIST).unwrap(), NOBLE_SOURCES_LIST);
    // No one-line source anywhere: apt reads each source once, from the new mirror only.
    assert!(
        !dir.path()
            .join("etc/apt/sources.list.d/ubuntu.list")
            .exists()
    );
    assert!(!read(&dir, SOURCES_LIST).unwrap().contains("deb "));

    // Without mirrors: Ubuntu's, for this architecture.
    let (dir, root) = noble_root();
    let (request, _) = asked(json!({"apt": {"preserve_sources_list": false}}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let (mirror, security) = Distro::Ubuntu.mirrors(dpkg_architecture());
    let written = sections(&read(&dir, UBUNTU_SOURCES).unwrap());
    assert!(written.contains(&format!("URIs: {mirror}\nSuites: noble noble-updates")));
    assert!(written.contains(&format!("URIs: {security}\nSuites: noble-security\n")));
}

#[test]
fn a_one_line_sources_list_gives_way_to_ubuntus_note_and_mirror_keys_sign_the_sections() {
    // An image captured before the move (or after an upgrade) still has one-line sources.
    let (dir, root) = root_with(&[
        (OS_RELEASE, NOBLE_OS_RELEASE),
        (SOURCES_LIST, "deb http://old.example/ubuntu noble main\n"),
    ]);
    let mut apt = mirrors(
        "http://mirror.example/ubuntu",
        Some("http://security.example/ubuntu"),
    );
    apt["primary"][0]["key"] = json!(KEY);
    apt["disable_suites"] = json!(["backports", "security"]);
    let (request, warnings) = asked(json!({ "apt": apt }));
    assert!(warnings.is_empty(), "{warnings:?}");
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        applied.written,
        [
            "/etc/apt/trusted.gpg.d/primary.gpg",
            UBUNTU_SOURCES,
            SOURCES_LIST
        ]
    );
    // cloud-init's sources.list.ubuntu.deb822.tmpl with primary_key, then its disable_suites
    // (its name for metaboot's in the comments).
    assert_eq!(
        sections(&read(&dir, UBUNTU_SOURCES).unwrap()),
        "Types: deb\n\
         URIs: http://mirror.example/ubuntu\n\
         # metaboot disable_suites redacted: Suites: noble noble-updates noble-backports\n\
         Suites: noble noble-updates\n\
         Components: main universe restricted multiverse\n\
         Signed-By: /etc/apt/trusted.gpg.d/primary.gpg\n\
         \n\
         ## Entry disabled by metaboot, due to disable_suites\n\
         # disabled by metaboot: Types: deb\n\
         # disabled by metaboot: URIs: http://security.example/ubuntu\n\
         # disabled by metaboot: Suites: noble-security\n\
         # disabled by metaboot: Components: main universe restricted multiverse\n\
         # disabled by metaboot: Signed-By: /etc/apt/trusted.gpg.d/primary.gpg\n"
    );
    // The old file is replaced by the note pointing to the new one, as cloud-init does.
    assert_eq!(read(&dir, SOURCES_LIST).unwrap(), NOBLE_SOURCES_LIST);
}

#[test]
fn debian_13s_sources_go_to_debian_sources_and_its_sources_list_is_removed() {
    let (dir, root) = root_with(&[
        (OS_RELEASE, TRIXIE_OS_RELEASE),
        (
            SOURCES_LIST,
            "deb https://deb.debian.org/debian bookworm main\n",
        ),
    ]);
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "security": [{"arches": ["default"], "uri": DEFAULT_SECURITY, "key": KEY}],
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        applied.written,
        ["/etc/apt/trusted.gpg.d/security.gpg", DEBIAN_SOURCES]
    );
    assert_eq!(applied.superseded, [SOURCES_LIST]);
    assert!(!dir.path().join("etc/apt/sources.list").exists());
    // cloud-init's sources.list.debian.deb822.tmpl, Debian's mirrors, security_key.
    assert_eq!(
        sections(&read(&dir, DEBIAN_SOURCES).unwrap()),
        "Types: deb deb-src\n\
         URIs: https://deb.debian.org/debian\n\
         Suites: trixie trixie-updates trixie-backports\n\
         Components: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
         \n\
         Types: deb deb-src\n\
         URIs: https://deb.debian.org/debian-security\n\
         Suites: trixie-security\n\
         Components: main\n\
         Signed-By: /etc/apt/trusted.gpg.d/security.gpg\n"
    );

    // A section left with no suite is commented out whole.
    let (dir, root) = root_with(&[(OS_RELEASE, TRIXIE_OS_RELEASE)]);
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "disable_suites": ["release", "updates", "backports"],
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(applied.superseded.is_empty());
    assert_eq!(
        sections(&read(&dir, DEBIAN_SOURCES).unwrap()),
        "## Entry disabled by metaboot, due to disable_suites\n\
         # disabled by metaboot: Types: deb deb-src\n\
         # disabled by metaboot: URIs: https://deb.debian.org/debian\n\
         # disabled by metaboot: Suites: trixie trixie-updates trixie-backports\n\
         # disabled by metaboot: Components: main\n\
         # disabled by metaboot: Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
         \n\
         Types: deb deb-src\n\
         URIs: https://deb.debian.org/debian-security\n\
         Suites: trixie-security\n\
         Components: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
}

#[test]
fn the_format_follows_the_release_or_the_deb822_file_the_image_has() {
    let release = |text: &str| {
        let (_dir, root) = root_with(&[]);
        default_is_deb822(&root, Distro::of_os_release(text).unwrap(), text)
    };
    assert!(release(NOBLE_OS_RELEASE));
    assert!(release(TRIXIE_OS_RELEASE));
    assert!(release("ID=ubuntu\nVERSION_ID=\"26.04\"\n"));
    assert!(release("ID=ubuntu\nVERSION_ID=\"24.10\"\n"));
    // Their cloud-init writes the one-line sources.list (Ubuntu's package turns deb822 off
    // before 24.04; Debian 12's cloud-init, 22.4, has no deb822).
    assert!(!release("ID=ubuntu\nVERSION_ID=\"23.10\"\n"));
    assert!(!release("ID=ubuntu\nVERSION_ID=\"22.04\"\n"));
    assert!(!release("ID=debian\nVERSION_ID=\"12\"\n"));
    // Debian's testing has no VERSION_ID; a derivative numbers its own releases.
    assert!(!release("ID=debian\nVERSION_CODENAME=forky\n"));
    assert!(!release(
        "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"22\"\n"
    ));
    // The distribution's deb822 file decides on any release.
    let bookworm = "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
    let (dir, root) = root_with(&[(OS_RELEASE, bookworm), (DEBIAN_SOURCES, "Types: deb\n")]);
    assert!(default_is_deb822(&root, Distro::Debian, bookworm));
    let (request, _) = asked(json!({"apt": {"preserve_sources_list": false}}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(applied.written, [DEBIAN_SOURCES]);
    assert!(sections(&read(&dir, DEBIAN_SOURCES).unwrap()).contains("Suites: bookworm-security\n"));
    assert!(!dir.path().join("etc/apt/sources.list").exists());
}

#[test]
fn sources_list_goes_where_its_format_says_as_cloud_init_writes_it() {
    // A deb822 `sources_list` on Ubuntu 22.04 goes to ubuntu.sources, with the note.
    let jammy = "ID=ubuntu\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n";
    let (dir, root) = root_with(&[
        (OS_RELEASE, jammy),
        (SOURCES_LIST, "deb http://old/ jammy main\n"),
    ]);
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "sources_list": "Types: deb\nURIs: $MIRROR\nSuites: $RELEASE\nComponents: main\n",
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let (mirror, _) = Distro::Ubuntu.mirrors(dpkg_architecture());
    assert_eq!(
        read(&dir, UBUNTU_SOURCES).unwrap(),
        format!("Types: deb\nURIs: {mirror}\nSuites: jammy\nComponents: main\n")
    );
    assert_eq!(read(&dir, SOURCES_LIST).unwrap(), NOBLE_SOURCES_LIST);

    // A one-line `sources_list` on Ubuntu 24.04 goes to sources.list; ubuntu.sources is kept,
    // and the warning says apt reads both.
    let (dir, root) = noble_root();
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "sources_list": "deb http://mirror.example/ubuntu $RELEASE main\n",
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(applied.written, [SOURCES_LIST]);
    assert_eq!(
        read(&dir, SOURCES_LIST).unwrap(),
        "deb http://mirror.example/ubuntu noble main\n"
    );
    assert_eq!(read(&dir, UBUNTU_SOURCES).unwrap(), NOBLE_SOURCES);
    assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
    assert!(
        applied.warnings[0].contains("beside the image's /etc/apt/sources.list.d/ubuntu.sources"),
        "{:?}",
        applied.warnings
    );

    // Another distribution: the file is named by its os-release ID.
    let (dir, root) = root_with(&[(OS_RELEASE, "ID=pureos\nVERSION_CODENAME=byzantium\n")]);
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "sources_list": "Types: deb\nURIs: http://m/\nSuites: $RELEASE\nComponents: main\n",
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(read(&dir, "/etc/apt/sources.list.d/pureos.sources").is_some());
    let (_dir, root) = root_with(&[(OS_RELEASE, "NAME=x\n")]);
    let (request, _) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "sources_list": "Types: deb\nURIs: http://m/\nSuites: x\nComponents: main\n",
    }}));
    let applied = apply(&root, &request);
    assert_eq!(applied.errors.len(), 1, "{:?}", applied.errors);
    assert!(
        applied.errors[0].to_string().contains("names none"),
        "{}",
        applied.errors[0]
    );
}

#[test]
fn sources_entries_stay_one_line_list_files_on_ubuntu_24_04() {
    let (dir, root) = noble_root();
    let (request, warnings) = asked(json!({"apt": {"sources": {
        "lab": {"source": "deb http://lab.example/ubuntu $RELEASE main"},
        "stanza": {"source": "Types: deb\nURIs: http://s/\nSuites: noble\nComponents: main"},
    }}}));
    // cloud-init writes a deb822 `source` into its .list file too, where apt cannot read it.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("apt: sources: \"stanza\": `source` is in deb822 format"));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/lab.list").unwrap(),
        "deb http://lab.example/ubuntu noble main\n"
    );
    assert!(read(&dir, "/etc/apt/sources.list.d/stanza.list").is_some());
    assert_eq!(read(&dir, UBUNTU_SOURCES).unwrap(), NOBLE_SOURCES);
    assert_eq!(read(&dir, SOURCES_LIST).unwrap(), NOBLE_SOURCES_LIST);
}

#[test]
fn deb822_is_told_from_one_line_sources_as_cloud_init_tells_it() {
    assert!(deb822::is_deb822(NOBLE_SOURCES));
    assert!(deb822::is_deb822("URIs: http://x/\n"));
    assert!(!deb822::is_deb822("deb http://x/ ./\nTypes: deb\n"));
    assert!(!deb822::is_deb822("deb-src http://x/ ./\n"));
    assert!(!deb822::is_deb822(NOBLE_SOURCES_LIST));
    assert!(!deb822::is_deb822("Types:deb\n"));
    // A section whose Suites keeps a suite stays; a file without a final newline keeps none.
    let text = "Types: deb\nURIs: http://x/\nSuites: a b\nComponents: main";
    assert_eq!(
        deb822::disable_suites(text, &["b".into()]),
        "Types: deb\nURIs: http://x/\n# metaboot disable_suites redacted: Suites: a b\n\
         Suites: a\nComponents: main"
    );
}
