//! `instance create` once its write succeeded: whatever the registry does next, the command
//! succeeds (a failure would have the user retry and register the instance twice).

use std::sync::Arc;

use super::*;
use crate::admin::fails_after_write::FailsAfterWrite;

fn create_args(name: &str, json: bool) -> InstanceCreate {
    InstanceCreate {
        name: name.to_owned(),
        network: "net1".to_owned(),
        ip: Vec::new(),
        mac: None,
        hostname: None,
        project: "admin".to_owned(),
        availability_zone: None,
        launch_index: 0,
        key_files: Vec::new(),
        key_names: Vec::new(),
        user_data: None,
        meta: Vec::new(),
        admin_pass: None,
        admin_pass_file: None,
        uuid: None,
        output: Output { json },
    }
}

#[test]
fn create_succeeds_once_its_write_did_whatever_the_registry_does_next() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.sqlite");
    let db = db.to_str().unwrap();
    let args = [
        "metaboot-server",
        "--db",
        db,
        "network",
        "create",
        "net1",
        "--cidr",
    ];
    crate::cli::run(crate::Cli::try_parse_from(args.iter().chain(&["198.18.0.0/24"])).unwrap())
        .unwrap();
    let inner = crate::store::open(db).unwrap();
    for (name, json) in [("table", false), ("json", true)] {
        let store = FailsAfterWrite::new(Arc::clone(&inner));
        create(&store, create_args(name, json)).unwrap();
        assert!(store.written());
        assert_eq!(inner.instance(name).unwrap().name, name);
    }
}
