//! The EC2-style metadata tree and its text rendering (nova's `ec2_md_print` and
//! `find_path_in_tree`), byte for byte: sorted keys one per line, sub-directories as `key/`
//! (or their special name), lists one item per line, no trailing newline.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::path::Segment;

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory: its entries sorted by key, in one slice (a boot storm keeps a tree per
    /// guest in the API's cache, and a `BTreeMap` spends a node of ~900 bytes on every
    /// directory, even one with a single entry). `name` replaces `key/` in its parent's
    /// listing (the public-keys quirk: `0=<keyname>`).
    Dir {
        entries: Box<[(Box<str>, Node)]>,
        name: Option<Box<str>>,
    },
    /// A list, rendered one item per line.
    List(Vec<String>),
    /// A value, rendered as it is.
    Leaf(Bytes),
}

impl Node {
    pub fn dir(entries: BTreeMap<String, Node>) -> Self {
        Self::named_dir(entries, None)
    }

    /// A directory listed as `name` in its parent (instead of `key/`).
    pub fn named_dir(entries: BTreeMap<String, Node>, name: Option<String>) -> Self {
        Self::Dir {
            // A BTreeMap iterates in key order: the slice is sorted.
            entries: entries
                .into_iter()
                .map(|(key, node)| (key.into_boxed_str(), node))
                .collect(),
            name: name.map(String::into_boxed_str),
        }
    }

    pub fn leaf(text: impl Into<String>) -> Self {
        Self::Leaf(Bytes::from(text.into()))
    }

    /// Follows `path` down the tree. Going below a leaf or a list is "not found" (nova answers
    /// 500 there; docs/protocol.md §1.9 asks for 404).
    pub fn find(&self, path: &[Segment<'_>]) -> Option<&Node> {
        let mut node = self;
        for segment in path {
            match node {
                Self::Dir { entries, .. } => {
                    let at = entries
                        .binary_search_by(|(key, _)| (**key).cmp(&**segment))
                        .ok()?;
                    node = &entries[at].1;
                }
                Self::List(_) | Self::Leaf(_) => return None,
            }
        }
        Some(node)
    }

    /// The body nova renders for this node.
    pub fn render(&self) -> Bytes {
        match self {
            Self::Dir { entries, .. } => {
                // Written into one buffer of the exact length: no text of its own per line.
                fn line((key, child): &(Box<str>, Node)) -> (&str, &'static str) {
                    match child {
                        Node::Dir {
                            name: Some(name), ..
                        } => (name, ""),
                        Node::Dir { name: None, .. } => (key, "/"),
                        _ => (key, ""),
                    }
                }
                let length = entries
                    .iter()
                    .map(|entry| {
                        let (text, slash) = line(entry);
                        text.len() + slash.len() + 1
                    })
                    .sum::<usize>();
                let mut out = String::with_capacity(length.saturating_sub(1));
                for (index, entry) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push('\n');
                    }
                    let (text, slash) = line(entry);
                    out.push_str(text);
                    out.push_str(slash);
                }
                Bytes::from(out)
            }
            Self::List(items) => Bytes::from(items.join("\n")),
            Self::Leaf(value) => value.clone(),
        }
    }
}

/// Renders a listing of plain names (the version lists and `/openstack/<v>`).
pub fn listing<S: AsRef<str>>(items: &[S]) -> Bytes {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(item.as_ref());
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Node {
        let key = Node::named_dir(
            BTreeMap::from([("openssh-key".to_owned(), Node::leaf("ssh-ed25519 AAAA"))]),
            Some("0=mykey".to_owned()),
        );
        Node::dir(BTreeMap::from([
            ("hostname".to_owned(), Node::leaf("h.novalocal")),
            ("ami-launch-index".to_owned(), Node::leaf("0")),
            (
                "public-keys".to_owned(),
                Node::dir(BTreeMap::from([("0".to_owned(), key)])),
            ),
            (
                "placement".to_owned(),
                Node::dir(BTreeMap::from([(
                    "availability-zone".to_owned(),
                    Node::leaf("nova"),
                )])),
            ),
            (
                "security-groups".to_owned(),
                Node::List(vec!["default".into(), "web".into()]),
            ),
        ]))
    }

    #[test]
    fn renders_like_ec2_md_print() {
        let tree = sample();
        assert_eq!(
            tree.render(),
            "ami-launch-index\nhostname\nplacement/\npublic-keys/\nsecurity-groups"
        );
        let keys = tree.find(&["public-keys".into()]).unwrap();
        assert_eq!(keys.render(), "0=mykey");
        let key = tree.find(&["public-keys".into(), "0".into()]).unwrap();
        assert_eq!(key.render(), "openssh-key");
        let groups = tree.find(&["security-groups".into()]).unwrap();
        assert_eq!(groups.render(), "default\nweb");
    }

    #[test]
    fn below_a_leaf_or_list_is_not_found() {
        let tree = sample();
        assert!(tree.find(&["hostname".into(), "x".into()]).is_none());
        assert!(
            tree.find(&["security-groups".into(), "default".into()])
                .is_none()
        );
        assert!(tree.find(&["nothing".into()]).is_none());
    }

    #[test]
    fn listing_has_no_trailing_newline() {
        assert_eq!(listing(&["a", "b"]), "a\nb");
        assert_eq!(listing::<&str>(&[]), "");
    }

    proptest::proptest! {
        #[test]
        fn a_directory_lists_each_key_once_sorted_dirs_with_a_slash(
            entries in proptest::collection::btree_map("[a-z0-9._-]{1,12}", 0u8..3, 0..20)
        ) {
            let tree = Node::dir(
                entries
                    .iter()
                    .map(|(key, kind)| {
                        let child = match kind {
                            0 => Node::leaf(format!("value of {key}")),
                            1 => Node::List(vec![key.clone(), "x".into()]),
                            _ => Node::dir(BTreeMap::new()),
                        };
                        (key.clone(), child)
                    })
                    .collect(),
            );
            let body = tree.render();
            let text = std::str::from_utf8(&body).unwrap();
            proptest::prop_assert!(!text.ends_with('\n'));
            let expected: Vec<String> = entries
                .iter()
                .map(|(key, kind)| if *kind == 2 { format!("{key}/") } else { key.clone() })
                .collect();
            let lines: Vec<&str> = if text.is_empty() { Vec::new() } else { text.split('\n').collect() };
            proptest::prop_assert_eq!(lines, expected);
            for (key, kind) in &entries {
                let found = tree.find(&[Segment::from(key.as_str())]);
                proptest::prop_assert!(found.is_some());
                // Below a leaf or a list is nothing.
                let below = tree.find(&[Segment::from(key.as_str()), "x".into()]);
                proptest::prop_assert_eq!(below.is_some(), false, "{} {}", key, kind);
            }
        }

        #[test]
        fn a_listing_splits_back_into_its_items(items in proptest::collection::vec("[ -~]{0,20}", 1..20)) {
            let body = listing(&items);
            let text = std::str::from_utf8(&body).unwrap();
            proptest::prop_assert_eq!(text.split('\n').collect::<Vec<_>>(), items);
        }
    }
}
