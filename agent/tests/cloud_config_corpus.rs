//! The corpus of real-world cloud-config (cloud-init's documentation examples for the keys
//! metaboot implements, and common patterns) parses without error, key by key.

mod support;

use metaboot::userdata::cloud_config::{CloudConfig, Command, SshPwauth, UserEntry, Users};
use metaboot::userdata::include::NoFetch;
use metaboot::userdata::{decode, yaml};

fn corpus() -> Vec<(String, String)> {
    let dir = support::fixtures().join("cloud-config");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_parses_as_user_data_and_as_typed_config() {
    let files = corpus();
    assert!(files.len() >= 30, "corpus has {} files", files.len());
    for (name, text) in &files {
        let decoded = decode(text.as_bytes(), None, &NoFetch);
        assert!(decoded.errors.is_empty(), "{name}: {:?}", decoded.errors);
        assert!(
            decoded.warnings.is_empty(),
            "{name}: {:?}",
            decoded.warnings
        );
        assert_eq!(decoded.configs.len(), 1, "{name}");
        let (config, errors) = CloudConfig::from_map(&decoded.configs[0]);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let bad_entries: Vec<String> = config
            .write_files
            .iter()
            .flat_map(|files| &files.0)
            .filter_map(|entry| entry.as_ref().err().map(ToString::to_string))
            .collect();
        assert!(bad_entries.is_empty(), "{name}: {bad_entries:?}");
        let used = CloudConfig::KEYS
            .iter()
            .filter(|k| decoded.configs[0].contains_key(**k))
            .count();
        assert!(used > 0, "{name} uses no key metaboot implements");
    }
}

fn config_of(name: &str) -> CloudConfig {
    let text = corpus().into_iter().find(|(n, _)| n == name).unwrap().1;
    let (config, errors) = CloudConfig::from_map(
        &yaml::parse_cloud_config(&text, &mut yaml::Allowance::default()).unwrap(),
    );
    assert!(errors.is_empty());
    config
}

#[test]
fn yaml_1_1_quirks_in_the_corpus_read_as_cloud_init_reads_them() {
    let config = config_of("anchors-and-merge-keys.yaml");
    assert_eq!(
        config.ssh_pwauth,
        Some(SshPwauth::Yes),
        "last duplicate wins"
    );
    let Some(Users::List(users)) = config.users else {
        panic!("users list")
    };
    let locks: Vec<(String, Option<bool>, Option<String>)> = users
        .iter()
        .map(|u| match u {
            UserEntry::Config(c) => (c.name.clone(), c.lock_passwd, c.shell.clone()),
            UserEntry::Name(n) => (n.clone(), None, None),
            UserEntry::Invalid(v) => panic!("unreadable user {v}"),
        })
        .collect();
    assert_eq!(
        locks,
        [
            ("alice".to_owned(), Some(true), Some("/bin/bash".to_owned())),
            ("bob".to_owned(), Some(false), Some("/bin/bash".to_owned())),
        ]
    );
    let files = config_of("write_files-octal-and-gzip.yaml")
        .write_files
        .unwrap();
    let files: Vec<_> = files.entries().collect();
    assert_eq!(files[0].permissions.unwrap().0, 0o644);
    assert_eq!(files[1].permissions.unwrap().0, 0o600);
    let binary = config_of("write_files-binary.yaml").write_files.unwrap();
    assert_eq!(
        binary.entries().next().unwrap().encoding.as_deref(),
        Some("b64"),
        "!!binary content is base64"
    );
}

#[test]
fn runcmd_argv_quoting_survives() {
    let runcmd = config_of("runcmd.yaml").runcmd.unwrap();
    assert_eq!(runcmd.len(), 5);
    let Some(Command::Argv(argv)) = &runcmd[1] else {
        panic!("argv")
    };
    assert_eq!(argv[2].0, "echo $(date) ': hello world!'");
    let script = metaboot::apply::scripts::commands_to_script(&runcmd);
    assert!(
        script.contains("sh -xc 'echo $(date) '\\'': hello world!'\\'''\n"),
        "{script}"
    );
    assert!(script.contains("ls -l /root\n"));
}
