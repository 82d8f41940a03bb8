use serde_json::{Value, json};

use super::sources::{is_repository_shorthand, stem};
use super::sources_list::suite_of;
use super::*;
use crate::userdata::cloud_config::CloudConfig;

/// A key gpg made, and what `gpg --dearmor` makes of it.
const KEY: &str = include_str!("../../../tests/fixtures/apt/key.asc");
const KEY_GPG: &[u8] = include_bytes!("../../../tests/fixtures/apt/key.gpg");

fn asked(value: Value) -> (Request, Vec<String>) {
    let mut warnings = Vec::new();
    let request = request(&CloudConfig::from_json(value), &mut warnings).unwrap();
    (request, warnings)
}

fn debian_root() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

fn read(dir: &tempfile::TempDir, path: &str) -> String {
    std::fs::read_to_string(dir.path().join(path.trim_start_matches('/'))).unwrap()
}

#[test]
fn the_key_gpg_made_is_dearmored_as_gpg_does() {
    assert_eq!(armor::dearmor(KEY).unwrap(), KEY_GPG);
}

#[test]
fn nothing_asked_without_the_keys() {
    let (request, warnings) = asked(json!({"packages": ["hello"]}));
    assert!(request.is_empty());
    assert!(warnings.is_empty());
    // `os` and its synonyms leave apt's default.
    for os in ["os", "none", "UNCHANGED"] {
        assert!(asked(json!({"apt_pipelining": os})).0.is_empty(), "{os}");
    }
}

#[test]
fn pipelining_as_cloud_init_reads_it() {
    assert_eq!(
        asked(json!({"apt_pipelining": false})).0.pipeline_depth,
        Some(0)
    );
    assert_eq!(
        asked(json!({"apt_pipelining": "False"})).0.pipeline_depth,
        Some(0)
    );
    assert_eq!(
        asked(json!({"apt_pipelining": 3})).0.pipeline_depth,
        Some(3)
    );
    assert_eq!(
        asked(json!({"apt_pipelining": "5"})).0.pipeline_depth,
        Some(5)
    );
    for bad in [json!(true), json!(6), json!("deep")] {
        let (request, warnings) = asked(json!({"apt_pipelining": bad}));
        assert_eq!(request.pipeline_depth, None);
        assert_eq!(warnings.len(), 1, "{bad}: {warnings:?}");
    }
    let (_dir, root) = debian_root();
    let applied = apply(&root, &asked(json!({"apt_pipelining": 0})).0);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(applied.written, [PIPELINING_FILE]);
    assert!(!applied.refresh);
}

#[test]
fn sources_with_their_keys() {
    let (dir, root) = debian_root();
    std::fs::create_dir_all(dir.path().join("etc/apt/sources.list.d")).unwrap();
    std::fs::write(
        dir.path().join("etc/apt/sources.list.d/extra.list"),
        "deb http://old/ ./",
    )
    .unwrap();
    let (request, warnings) = asked(json!({"apt": {
        "primary": [{"arches": ["default"], "uri": "http://mirror.example/debian"}],
        "sources": {
            "lab": {"source": "deb [signed-by=$KEY_FILE] $MIRROR $RELEASE main", "key": KEY},
            "extra": {"source": "deb http://new/ ./"},
            "replaced.list": {"source": "deb http://only/ ./", "append": false,
                              "filename": "/etc/apt/sources.list.d/replaced"},
            "trusted-key": {"key": KEY},
        },
    }}));
    assert!(warnings.is_empty(), "{warnings:?}");
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(applied.refresh);
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/lab.list"),
        "deb [signed-by=/etc/apt/cloud-init.gpg.d/lab.gpg] http://mirror.example/debian \
         bookworm main\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("etc/apt/cloud-init.gpg.d/lab.gpg")).unwrap(),
        KEY_GPG
    );
    // A line is added to a file that has one; `append: false` replaces it.
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/extra.list"),
        "deb http://old/ ./\ndeb http://new/ ./\n"
    );
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/replaced.list"),
        "deb http://only/ ./\n"
    );
    // A key without a source trusts it for every source.
    assert_eq!(
        std::fs::read(dir.path().join("etc/apt/trusted.gpg.d/trusted-key.gpg")).unwrap(),
        KEY_GPG
    );
    // The image's sources.list is kept (Debian's preserve_sources_list: true).
    assert!(!dir.path().join("etc/apt/sources.list").exists());
}

/// A user's symlink in `sources.list.d` is refused, never followed; a hard link there is
/// never appended to (its other name, root's file, would part from it). Each points at a file
/// of its own, so that each refusal is seen by itself. Without root the test's link is the
/// agent's own, as root's is on a guest: followed, and the line appended to its target.
#[test]
fn a_source_is_never_appended_through_a_users_symlink_or_a_hard_link() {
    let (dir, root) = debian_root();
    let sources = dir.path().join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&sources).unwrap();
    let linked = dir.path().join("etc/shadow");
    std::fs::write(&linked, "root:secret:::::::\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", sources.join("linked.list")).unwrap();
    let users = nix::unistd::geteuid().is_root();
    if users {
        std::os::unix::fs::lchown(sources.join("linked.list"), Some(1000), Some(1000)).unwrap();
    }
    let hard = dir.path().join("etc/gshadow");
    std::fs::write(&hard, "root:*::\n").unwrap();
    std::fs::hard_link(&hard, sources.join("hard.list")).unwrap();
    let (request, _) = asked(json!({"apt": {"sources": {
        "hard": {"source": "deb http://h/ ./"},
        "linked": {"source": "deb http://l/ ./"},
        "plain": {"source": "deb http://p/ ./"},
    }}}));
    let applied = apply(&root, &request);
    let errors: Vec<String> = applied
        .errors
        .iter()
        .map(|e| crate::log::chain(e))
        .collect();
    let hard_list = sources.join("hard.list");
    let said = format!("{} has 2 hard links; not used", hard_list.display());
    assert!(errors[0].contains(&said), "{errors:?}");
    assert_eq!(std::fs::read_to_string(&hard).unwrap(), "root:*::\n");
    let links = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&hard).unwrap());
    assert_eq!(links, 2);
    if users {
        assert_eq!(errors.len(), 2, "{errors:?}");
        let link = sources.join("linked.list");
        let said = format!("{} is a symlink owned by uid 1000", link.display());
        assert!(errors[1].contains(&said), "{errors:?}");
        assert_eq!(read(&dir, "/etc/shadow"), "root:secret:::::::\n");
    } else {
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            read(&dir, "/etc/shadow"),
            "root:secret:::::::\ndeb http://l/ ./\n"
        );
    }
    assert!(sources.join("linked.list").is_symlink());
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/plain.list"),
        "deb http://p/ ./\n"
    );
}

#[test]
fn a_bad_source_fails_alone() {
    let (dir, root) = debian_root();
    let (request, _) = asked(json!({"apt": {"sources": {
        "a-damaged-key": {"source": "deb [signed-by=$KEY_FILE] http://a/ ./",
                          "key": KEY.replacen('A', "B", 3)},
        "b-no-key": {"source": "deb [signed-by=$KEY_FILE] http://b/ ./"},
        "c-unknown": {"source": "deb $NOWHERE ./"},
        "d-good": {"source": "deb http://d/ ./"},
    }}}));
    let applied = apply(&root, &request);
    let errors: Vec<String> = applied
        .errors
        .iter()
        .map(|e| crate::log::chain(e))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("the key of sources: \"a-damaged-key\""),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        "sources: \"b-no-key\" uses $KEY_FILE but gives no `key`"
    );
    assert!(
        errors[2].contains("unknown variable \"NOWHERE\""),
        "{errors:?}"
    );
    assert_eq!(
        read(&dir, "/etc/apt/sources.list.d/d-good.list"),
        "deb http://d/ ./\n"
    );
    for name in ["a-damaged-key", "b-no-key", "c-unknown"] {
        assert!(
            !dir.path()
                .join(format!("etc/apt/sources.list.d/{name}.list"))
                .exists()
        );
    }
    assert!(!dir.path().join("etc/apt/cloud-init.gpg.d").exists());
}

#[test]
fn sources_list_rewritten_from_the_template_with_the_mirrors() {
    let (dir, root) = debian_root();
    let (request, warnings) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "primary": [
            {"arches": ["s390x"], "uri": "http://wrong/"},
            {"arches": ["default"], "uri": "http://primary/debian", "key": KEY},
        ],
        "sources_list": "deb $MIRROR $RELEASE main\ndeb ${SECURITY} $RELEASE-security main\n",
        "disable_suites": ["security"],
    }}));
    assert!(warnings.is_empty(), "{warnings:?}");
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(
        !applied.refresh,
        "no `sources`: the lists are refreshed by `packages`"
    );
    // The security mirror defaults to the primary.
    assert_eq!(
        read(&dir, SOURCES_LIST),
        "deb http://primary/debian bookworm main\n\
         # suite disabled by metaboot: deb http://primary/debian bookworm-security main\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("etc/apt/trusted.gpg.d/primary.gpg")).unwrap(),
        KEY_GPG
    );

    // Without a template: Debian's, with Debian's mirrors.
    let (dir, root) = debian_root();
    let (request, _) = asked(json!({"apt": {"preserve_sources_list": "false",
                                            "disable_suites": ["backports", "release"]}}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let lines: Vec<String> = read(&dir, SOURCES_LIST)
        .lines()
        .filter(|l| !l.starts_with("##"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "# suite disabled by metaboot: deb https://deb.debian.org/debian bookworm main",
            "# suite disabled by metaboot: deb-src https://deb.debian.org/debian bookworm main",
            "deb https://deb.debian.org/debian-security bookworm-security main",
            "deb-src https://deb.debian.org/debian-security bookworm-security main",
            "deb https://deb.debian.org/debian bookworm-updates main",
            "deb-src https://deb.debian.org/debian bookworm-updates main",
            "# suite disabled by metaboot: deb https://deb.debian.org/debian bookworm-backports main",
            "# suite disabled by metaboot: deb-src https://deb.debian.org/debian bookworm-backports main",
        ]
    );
}

#[test]
fn the_default_sources_are_the_distributions() {
    let (dir, root) = debian_root();
    let os_release = dir.path().join("etc/os-release");
    let (request, _) = asked(json!({"apt": {"preserve_sources_list": false}}));
    std::fs::write(
        &os_release,
        "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\n",
    )
    .unwrap();
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let (mirror, security) = Distro::Ubuntu.mirrors(dpkg_architecture());
    let lines: Vec<String> = read(&dir, SOURCES_LIST)
        .lines()
        .filter(|l| !l.starts_with("##"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            format!("deb {mirror} jammy main restricted universe multiverse"),
            format!("deb {mirror} jammy-updates main restricted universe multiverse"),
            format!("deb {mirror} jammy-backports main restricted universe multiverse"),
            format!("deb {security} jammy-security main restricted universe multiverse"),
        ]
    );
    // The archive on amd64 and i386, the ports archive for both elsewhere.
    assert_eq!(
        Distro::Ubuntu.mirrors("amd64"),
        (
            "http://archive.ubuntu.com/ubuntu",
            "http://security.ubuntu.com/ubuntu"
        )
    );
    assert_eq!(
        Distro::Ubuntu.mirrors("arm64"),
        (
            "http://ports.ubuntu.com/ubuntu-ports",
            "http://ports.ubuntu.com/ubuntu-ports"
        )
    );
    assert_eq!(UBUNTU_ARCHIVE_ARCHES, ["amd64", "i386"]);
    // A derivative naming Ubuntu in ID_LIKE is Ubuntu; Debian's only under ID=debian.
    assert_eq!(
        Distro::of_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
        Ok(Distro::Ubuntu)
    );
    assert_eq!(Distro::of_os_release("ID=debian\n"), Ok(Distro::Debian));

    // Another distribution: the rewrite is refused, the image's file left as it is.
    std::fs::write(&os_release, "ID=fedora\nVERSION_CODENAME=\"\"\n").unwrap();
    std::fs::write(dir.path().join("etc/apt/sources.list"), "kept\n").unwrap();
    let applied = apply(&root, &request);
    assert_eq!(applied.errors.len(), 1, "{:?}", applied.errors);
    let said = applied.errors[0].to_string();
    assert!(said.contains("os-release ID is \"fedora\""), "{said}");
    assert!(said.contains("give the file as `sources_list`"), "{said}");
    assert_eq!(read(&dir, SOURCES_LIST), "kept\n");
    // With its own template the rewrite is done there too.
    let (request, _) = asked(json!({"apt": {"preserve_sources_list": false,
                                            "sources_list": "deb http://m/ x main\n"}}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(read(&dir, SOURCES_LIST), "deb http://m/ x main\n");
}

#[test]
fn what_a_kept_sources_list_leaves_unused_is_said() {
    let (_, warnings) = asked(json!({"apt": {
        "primary": [{"arches": ["default"], "uri": "http://primary/", "key": KEY}],
        "security": [{"arches": ["default"], "uri": "http://security/"}],
        "sources_list": "deb $MIRROR $RELEASE main\n",
        "disable_suites": ["backports"],
        "sources": {"lab": {"source": "deb $MIRROR ./"}},
    }}));
    assert_eq!(
        warnings,
        [
            "apt: `sources_list`, `disable_suites`, `primary`'s `key`, `security` not applied: the \
          image's sources list (/etc/apt/sources.list, or sources.list.d/ubuntu.sources or \
          debian.sources) is kept (`preserve_sources_list` is true by default); set \
          `preserve_sources_list: false` to rewrite it with them"
        ]
    );
    // The mirrors a `sources` line uses are applied: no warning. Without `security`, the
    // primary fills in `$SECURITY` too.
    for line in [
        "deb ${PRIMARY} ./\n",
        "deb $SECURITY ./",
        "## template:jinja\ndeb {{ mirror }} ./",
    ] {
        let (_, warnings) = asked(json!({"apt": {
            "primary": [{"arches": ["default"], "uri": "http://primary/"}],
            "sources": {"lab": {"source": line}},
        }}));
        assert!(warnings.is_empty(), "{line}: {warnings:?}");
    }
    let (_, warnings) = asked(json!({"apt": {
        "preserve_sources_list": true,
        "primary": [{"arches": ["default"], "uri": "http://primary/"}],
        "security": [{"arches": ["default"], "uri": "http://security/"}],
        "sources": {"lab": {"source": "deb $SECURITY ./"}},
    }}));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("apt: `primary` not applied"),
        "{warnings:?}"
    );
    // Rewritten, all of them are used.
    let (_, warnings) = asked(json!({"apt": {
        "preserve_sources_list": false,
        "primary": [{"arches": ["default"], "uri": "http://primary/", "key": KEY}],
        "sources_list": "deb $MIRROR $RELEASE main\n",
        "disable_suites": ["backports"],
    }}));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        template::variables("deb [signed-by=$KEY_FILE] ${MIRROR} $RELEASE-x $"),
        ["KEY_FILE", "MIRROR", "RELEASE"]
    );
}

#[test]
fn proxies_and_conf_in_cloud_init_files() {
    let (dir, root) = debian_root();
    let (request, _) = asked(json!({"apt": {
        "https_proxy": "http://proxy:3128",
        "proxy": "http://proxy:3128",
        "conf": "APT::Install-Recommends \"0\";\n",
    }}));
    let applied = apply(&root, &request);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(
        read(&dir, PROXY_FILE),
        "Acquire::http::Proxy \"http://proxy:3128\";\nAcquire::https::Proxy \"http://proxy:3128\";\n"
    );
    assert_eq!(read(&dir, CONF_FILE), "APT::Install-Recommends \"0\";\n");
}

#[test]
fn what_metaboot_does_not_do_is_said() {
    let (request, warnings) = asked(json!({"apt": {
        "primary": [{"arches": ["default"], "search": ["http://a/"]}],
        "sources": {"ppa": {"keyid": "F75C41181B10AFB6", "source": "deb http://p/ ./"}},
        "debconf_selections": {"x": "x x/y boolean true"},
        "mystery": 1,
    }}));
    // The fifth: `primary` is unused, the image's sources list being kept.
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`search` is not applied"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("give the key itself as `key`"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`debconf_selections` is not applied"))
    );
    assert!(warnings.iter().any(|w| w.contains("unknown key `mystery`")));
    assert_eq!(request.sources.unwrap().len(), 1);
    // Shapes that are wrong are the step's error.
    let mut warnings = Vec::new();
    for bad in [
        json!({"apt": {"sources": ["deb http://x/ ./"]}}),
        json!({"apt": {"primary": {"uri": "http://x/"}}}),
        json!({"apt": {"sources_list": ["x"]}}),
    ] {
        assert!(
            super::request(&CloudConfig::from_json(bad.clone()), &mut warnings).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn suites_stems_and_shorthands() {
    assert_eq!(suite_of("deb http://x/ bookworm main"), Some("bookworm"));
    assert_eq!(
        suite_of("deb [ arch=amd64 signed-by=/k.gpg ] http://x/ bookworm-updates main"),
        Some("bookworm-updates")
    );
    assert_eq!(suite_of("deb [arch=amd64] http://x/ ./"), Some("./"));
    assert_eq!(suite_of("deb"), None);
    assert_eq!(stem("lab.list"), "lab");
    assert_eq!(stem("/etc/apt/sources.list.d/x.y.list"), "x.y");
    assert_eq!(stem("lab"), "lab");
    assert!(is_repository_shorthand("ppa:owner/name"));
    assert!(is_repository_shorthand("cloud-archive:queens"));
    assert!(!is_repository_shorthand("deb http://x/ ./"));
    assert!(!is_repository_shorthand("http://x/"));
}
