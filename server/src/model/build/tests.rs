//! The builder's wait for the user data dictionary: bounded by instances as well as samples,
//! and not ended for nothing by a sample too large to be part of it.

use std::collections::BTreeMap;

use super::{Builder, DICTIONARY_BYTES, DICTIONARY_SAMPLES, DICTIONARY_WAIT_INSTANCES};
use crate::model::record::Interner;
use crate::store::{Instance, Record};

/// Instance `n`, with `user_data`, and no ports.
fn instance(n: usize, user_data: Option<Vec<u8>>) -> Record {
    Record::Instance(
        Instance {
            uuid: format!("00000000-0000-4000-8000-{n:012x}"),
            ec2_id: i64::try_from(n).unwrap() + 1,
            project: "p".into(),
            name: format!("vm{n}"),
            hostname: format!("vm{n}"),
            availability_zone: None,
            launch_index: 0,
            key_pairs: Vec::new(),
            user_data,
            meta: BTreeMap::new(),
            admin_pass: None,
            password: None,
            created: String::new(),
        },
        Vec::new(),
    )
}

/// A fleet's user data: one template, the names changed.
fn template(n: usize) -> Option<Vec<u8>> {
    Some(
        format!(
            "#cloud-config\nhostname: vm{n}\nfqdn: vm{n}.example.org\nmanage_etc_hosts: true\n\
             write_files:\n  - path: /etc/app.conf\n    content: |\n      listen=0.0.0.0:80\n"
        )
        .into_bytes(),
    )
}

#[test]
fn instances_without_user_data_are_held_back_at_most_dictionary_wait_instances() {
    const SAMPLES: usize = 8;
    const { assert!(SAMPLES < DICTIONARY_SAMPLES) };
    let mut interner = Interner::default();
    let mut builder = Builder::new(&mut interner);
    // Fewer samples than the dictionary waits for, then a fleet without user data.
    for n in 0..SAMPLES {
        builder.add(instance(n, template(n))).unwrap();
    }
    for n in SAMPLES..DICTIONARY_WAIT_INSTANCES - 1 {
        builder.add(instance(n, None)).unwrap();
    }
    assert!(builder.waiting.is_some());
    assert_eq!(builder.model.instance_count(), 0);
    builder
        .add(instance(DICTIONARY_WAIT_INSTANCES, None))
        .unwrap();
    // The dictionary is made from the samples there are; nothing is held back any more.
    assert!(builder.waiting.is_none());
    assert!(builder.model.codec.is_some());
    assert_eq!(builder.model.instance_count(), DICTIONARY_WAIT_INSTANCES);
    builder
        .add(instance(DICTIONARY_WAIT_INSTANCES + 1, None))
        .unwrap();
    assert_eq!(
        builder.finish(1).instance_count(),
        DICTIONARY_WAIT_INSTANCES + 1
    );
}

#[test]
fn a_first_sample_larger_than_the_dictionary_does_not_leave_it_unmade() {
    let mut interner = Interner::default();
    let mut builder = Builder::new(&mut interner);
    builder
        .add(instance(0, Some(vec![b'#'; DICTIONARY_BYTES + 1])))
        .unwrap();
    // It is no sample: the builder still waits for the others.
    assert!(builder.waiting.is_some());
    for n in 1..16 {
        builder.add(instance(n, template(n))).unwrap();
    }
    let model = builder.finish(1);
    assert_eq!(model.instance_count(), 16);
    assert!(
        model.codec.is_some(),
        "no dictionary from the other samples"
    );
}
