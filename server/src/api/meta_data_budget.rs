//! The largest `meta_data.json` an instance the registry accepts can have still fits what an
//! agent relays from the API (`MAX_UPSTREAM_BODY_BYTES`, `server/src/http/limits.rs`); one that
//! did not would be a 502 on every boot of that instance.

use std::collections::BTreeMap;

use metaboot_proto::OpenStackVersion;

use super::openstack::render_meta_data;
use super::random_seed::RANDOM_SEED_TEXT_LEN;
use super::rendering::Rendering;
use super::view::InstanceView;
use crate::http::limits::MAX_UPSTREAM_BODY_BYTES;
use crate::store::validate::{
    MAX_DHCP_DOMAIN_BYTES, MAX_HOSTNAME_BYTES, MAX_HOSTNAME_LABEL_BYTES, MAX_KEY_DATA_BYTES,
    MAX_KEY_NAME_CHARS, MAX_KEY_PAIRS, MAX_META_ITEMS, MAX_META_KEY_CHARS, MAX_META_VALUE_CHARS,
    MAX_NAME_CHARS, MAX_PROJECT_BYTES, dhcp_domain, key_pairs, new_instance,
};
use crate::store::{Instance, KeyPair, NewInstance};

/// Copies of each key pair's data in `meta_data.json`: `public_keys` and `keys`.
const KEY_DATA_COPIES: usize = 2;
/// Most bytes one character takes in a JSON string: a control character is `\u00XX`.
const MAX_JSON_CHAR_BYTES: usize = 6;
/// Most bytes of a UTF-8 character (a display name's, the zone's).
const MAX_UTF8_CHAR_BYTES: usize = 4;
/// Punctuation and field names around each key pair (`"name":`, `"type":"x509"`, quotes).
const KEY_PAIR_SYNTAX_BYTES: usize = 64;
/// Quotes, colon and comma of one `meta` entry.
const META_ENTRY_SYNTAX_BYTES: usize = 6;
/// Every other field (uuid, launch index, the empty lists, field names), generously.
const OTHER_FIELDS_BYTES: usize = 1024;

/// The bound, from the registry's limits alone.
const WORST_META_DATA_BYTES: usize = MAX_KEY_PAIRS
    * (KEY_DATA_COPIES * (MAX_KEY_DATA_BYTES + MAX_KEY_NAME_CHARS) + KEY_PAIR_SYNTAX_BYTES)
    + MAX_META_ITEMS
        * (MAX_META_KEY_CHARS + MAX_META_VALUE_CHARS * MAX_JSON_CHAR_BYTES + META_ENTRY_SYNTAX_BYTES)
    + 2 * MAX_NAME_CHARS * MAX_UTF8_CHAR_BYTES // name and zone
    + 2 * MAX_PROJECT_BYTES // project, every byte a '"'
    + MAX_HOSTNAME_BYTES + 1 + MAX_DHCP_DOMAIN_BYTES
    + RANDOM_SEED_TEXT_LEN
    + OTHER_FIELDS_BYTES;

// The bound fits the relay, checked when the tests compile.
const _: () = assert!(WORST_META_DATA_BYTES <= MAX_UPSTREAM_BODY_BYTES);

/// Dot-separated labels of the longest length a host name allows, `len` bytes in all.
fn longest_name(len: usize) -> String {
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            name.push('.');
        }
        let room = (len - name.len()).min(MAX_HOSTNAME_LABEL_BYTES);
        name.push_str(&"a".repeat(room));
    }
    name
}

/// A key pair whose data is `len` times '"', which JSON serves as two bytes each.
fn quotes_key(name: String, len: usize) -> KeyPair {
    KeyPair {
        name,
        kind: "x509".to_owned(),
        data: "\"".repeat(len),
    }
}

/// The most '"' a key pair's data may hold, as the registry's validation says.
fn most_quotes_accepted() -> usize {
    let accepted = |len| key_pairs(&[quotes_key("k".to_owned(), len)]).is_ok();
    let (mut low, mut high) = (1, MAX_KEY_DATA_BYTES + 1);
    assert!(accepted(low) && !accepted(high));
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if accepted(mid) { low = mid } else { high = mid }
    }
    low
}

/// The instance with every field at its limit in the characters JSON makes longest.
fn largest_instance() -> NewInstance {
    let quotes = most_quotes_accepted();
    let key_pairs = (0..MAX_KEY_PAIRS)
        .map(|i| quotes_key(format!("{i:k>MAX_KEY_NAME_CHARS$}"), quotes))
        .collect();
    let meta = (0..MAX_META_ITEMS)
        .map(|i| {
            let key = format!("{i:m>MAX_META_KEY_CHARS$}");
            (key, "\u{1}".repeat(MAX_META_VALUE_CHARS))
        })
        .collect::<BTreeMap<_, _>>();
    NewInstance {
        uuid: "d8e02d56-2648-49a3-bf97-6be8f1204f38".to_owned(),
        project: "\"".repeat(MAX_PROJECT_BYTES),
        // The longest characters a name takes: three UTF-8 bytes (names stop at U+FFFE, as
        // nova's printable check; MAX_UTF8_CHAR_BYTES above stays the bound).
        name: "\u{4E00}".repeat(MAX_NAME_CHARS),
        hostname: longest_name(MAX_HOSTNAME_BYTES),
        availability_zone: Some("\u{4E00}".repeat(MAX_NAME_CHARS)),
        launch_index: u32::MAX,
        key_pairs,
        user_data: None,
        meta,
        admin_pass: None,
    }
}

#[test]
fn the_largest_valid_instance_s_meta_data_json_fits_the_relay() {
    let new = largest_instance();
    let uuid = new_instance(&new).expect("the largest instance is valid");
    let domain = longest_name(MAX_DHCP_DOMAIN_BYTES);
    dhcp_domain("--dhcp-domain", &domain).expect("the longest domain is valid");
    let rendering = Rendering {
        dhcp_domain: domain,
        ..Rendering::default()
    };
    let instance = Instance {
        uuid,
        ec2_id: i64::MAX,
        project: new.project,
        name: new.name,
        hostname: new.hostname,
        availability_zone: new.availability_zone,
        launch_index: new.launch_index,
        key_pairs: new.key_pairs,
        user_data: None,
        meta: new.meta,
        admin_pass: None,
        password: None,
        created: "now".to_owned(),
    };
    let view = InstanceView::new(instance, Vec::new());
    let body = render_meta_data(&view, OpenStackVersion::LATEST, &rendering).body();
    assert!(
        body.len() <= WORST_META_DATA_BYTES,
        "{} bytes: the bound {WORST_META_DATA_BYTES} misses something",
        body.len()
    );
    assert!(
        body.len() <= MAX_UPSTREAM_BODY_BYTES,
        "{} bytes",
        body.len()
    );
}
