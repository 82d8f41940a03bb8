//! Tests of `merge`: each expectation is what cloud-init 22.4's mergers give for the same parts.

use serde_json::{Value, json};

use super::*;
use crate::userdata::yaml::parse_map;

fn merged(parts: &[&str]) -> Value {
    let configs: Vec<ConfigMap> = parts
        .iter()
        .map(|text| {
            let mut map = parse_map(text).unwrap();
            if let Some(mergers) = Mergers::of_part(&mut map, None).unwrap() {
                map.insert(MERGE_HOW.to_owned(), mergers.text().into());
            }
            map
        })
        .collect();
    Value::Object(super::parts(&configs))
}

#[test]
fn by_default_a_key_a_later_part_sets_replaces_the_earlier_value_whole() {
    assert_eq!(
        merged(&[
            "runcmd: [a]\nchpasswd: {expire: false}\nhostname: one\n",
            "runcmd: [b]\nchpasswd: {users: [{name: root}]}\n",
        ]),
        json!({"runcmd": ["b"], "chpasswd": {"users": [{"name": "root"}]}, "hostname": "one"})
    );
}

#[test]
fn merge_how_appends_lists_and_keeps_earlier_keys() {
    // cloud-init's documentation example.
    let how = "merge_how:\n- name: list\n  settings: [append]\n- name: dict\n  settings: [no_replace, recurse_list]\n";
    assert_eq!(
        merged(&[
            "runcmd: [bash1, bash2]\nhostname: one\n",
            &format!("{how}runcmd: [bash3, bash4]\nhostname: two\n"),
        ]),
        json!({"runcmd": ["bash1", "bash2", "bash3", "bash4"], "hostname": "one"})
    );
    // The same as text, and as a `Merge-Type` header.
    let text = "merge_how: 'list(append)+dict(no_replace,recurse_list)+str()'\n";
    assert_eq!(
        merged(&["runcmd: [a]\n", &format!("{text}runcmd: [b]\n")]),
        json!({"runcmd": ["a", "b"]})
    );
    let mut map = parse_map("runcmd: [b]\n").unwrap();
    let header = Mergers::of_part(
        &mut map,
        Some("list(prepend)+dict(no_replace,recurse_list)"),
    )
    .unwrap()
    .unwrap();
    map.insert(MERGE_HOW.to_owned(), header.text().into());
    let first = parse_map("runcmd: [a]\n").unwrap();
    assert_eq!(
        Value::Object(super::parts(&[first, map])),
        json!({"runcmd": ["b", "a"]})
    );
}

#[test]
fn the_other_settings_do_what_cloud_init_does() {
    // list(replace) replaces item by item: a longer old list keeps its tail.
    assert_eq!(
        merged(&[
            "a: [1, 2, 3]\n",
            "merge_how: 'dict(no_replace,recurse_list)+list(replace)'\na: [9]\n"
        ]),
        json!({"a": [9, 2, 3]})
    );
    // str(append) joins texts; no_replace merges new mappings into old ones.
    assert_eq!(
        merged(&[
            "s: ab\nm: {x: 1}\n",
            "merge_how: 'dict(no_replace,recurse_str)+str(append)'\ns: cd\nm: {x: 2, y: 3}\n",
        ]),
        json!({"s": "abcd", "m": {"x": 1, "y": 3}})
    );
    // allow_delete drops a key set to null.
    assert_eq!(
        merged(&[
            "a: 1\nb: 2\n",
            "merge_how: 'dict(replace,allow_delete)'\na: null\n"
        ]),
        json!({"b": 2})
    );
    // No dict merger named: the part changes nothing, as cloud-init's lookup finds none.
    assert_eq!(
        merged(&["a: 1\n", "merge_how: 'list(append)'\na: 2\nb: 3\n"]),
        json!({"a": 1})
    );
}

#[test]
fn a_merge_how_that_cannot_be_read_says_why() {
    for (how, why) in [
        ("merge_how: 'dict(replace'\n", "is not NAME(SETTINGS)"),
        ("merge_how: 'tuple(append)'\n", "unknown merger \"tuple\""),
        ("merge_how: 5\n", "text or a list"),
        ("merge_how: [{settings: [append]}]\n", "has no name"),
    ] {
        let mut map = parse_map(how).unwrap();
        let err = Mergers::of_part(&mut map, None).unwrap_err();
        assert!(err.contains(why), "{how}: {err}");
    }
}

#[test]
fn mergers_read_back_from_their_text() {
    for text in [
        DEFAULT_MERGERS,
        "list(append,recurse_dict)+dict(no_replace,recurse_list,recurse_str,allow_delete)+str(append)",
    ] {
        let mergers = Mergers::parse(text).unwrap();
        assert_eq!(Mergers::parse(&mergers.text()).unwrap(), mergers, "{text}");
    }
}
