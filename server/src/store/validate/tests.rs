//! Tests of the input rules.

use super::*;

/// An ed25519 public key line (its private half is not kept anywhere).
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKc2R9H0dJ1rXgmyMO0DdLcJ9v9P6dgoQ3WPhBkkC0Vm";

fn message(result: StoreResult<impl std::fmt::Debug>) -> String {
    match result {
        Err(StoreError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn cidr_refuses_host_bits_and_tiny_networks() {
    assert!(parse_cidr("198.18.0.0/24").is_ok());
    let msg = message(parse_cidr("198.18.0.5/24"));
    assert!(msg.contains("did you mean 198.18.0.0/24"), "{msg}");
    let msg = message(parse_cidr("198.18.0.0/30"));
    assert!(msg.contains("/29"), "{msg}");
    assert!(parse_cidr("198.18.0.0/29").is_ok());
    assert!(parse_cidr("fd00::/64").is_ok());
    assert!(parse_cidr("fd00::/126").is_err());
    let msg = message(parse_cidr("198.18.0.0"));
    assert!(msg.contains("ADDRESS/PREFIX"), "{msg}");
}

/// Ranges neutron refuses, and where learned addresses' placeholders live.
#[test]
fn cidr_refuses_reserved_ranges() {
    for (cidr, named) in [
        ("0.0.0.0/24", "0.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/8"),
        ("224.0.0.0/24", "multicast"),
        ("240.0.0.0/24", "multicast and reserved"),
        ("::/64", "::/8"),
        ("ff02::/64", "IPv6 multicast"),
    ] {
        let msg = message(parse_cidr(cidr));
        assert!(
            msg.contains(named) && msg.contains("pick another range"),
            "{cidr}: {msg}"
        );
    }
    // Loopback stays: a chain in one namespace stands its guests there.
    for fine in [
        "10.0.0.0/8",
        "198.18.0.0/15",
        "223.255.255.0/24",
        "127.20.0.0/24",
        "2001:db8::/64",
        "fd00::/8",
    ] {
        assert!(parse_cidr(fine).is_ok(), "{fine}");
    }
}

#[test]
fn host_ip_names_the_network_and_the_fix() {
    let net: IpNet = "198.18.0.0/24".parse().unwrap();
    let msg = message(host_ip("IP", "198.18.1.5".parse().unwrap(), "net1", net));
    assert_eq!(
        msg,
        "IP 198.18.1.5 is outside network net1 (198.18.0.0/24): pick an address in that \
         CIDR (198.18.0.1 to 198.18.0.254) or omit the IP to get a free one"
    );
    let msg = message(host_ip("IP", "198.18.0.0".parse().unwrap(), "net1", net));
    assert!(msg.contains("network address"), "{msg}");
    let msg = message(host_ip("IP", "198.18.0.255".parse().unwrap(), "net1", net));
    assert!(msg.contains("broadcast address"), "{msg}");
    assert!(host_ip("IP", "198.18.0.254".parse().unwrap(), "net1", net).is_ok());
    assert!(host_ip("IP", "fd00::1".parse().unwrap(), "net1", net).is_err());
}

#[test]
fn mac_is_normalised_and_multicast_refused() {
    assert_eq!(mac("FA-16-3E-0A-0b-0C").unwrap(), "fa:16:3e:0a:0b:0c");
    assert!(message(mac("01:00:5e:00:00:01")).contains("multicast"));
    assert!(mac("00:00:00:00:00:00").is_err());
    assert!(mac("fa:16:3e:0a:0b").is_err());
    assert!(mac("fa:16:3e:0a:0b:0g").is_err());
    assert!(mac("fa:16:3e:0a:0b:123").is_err());
    // Hex digits only: `from_str_radix` alone takes a sign.
    for text in [
        "+a:16:3e:00:00:01",
        "fa:16:3e:00:00:+1",
        "fa:16:3e:00:00:-1",
    ] {
        assert!(message(mac(text)).contains("six hex pairs"), "{text}");
    }
}

#[test]
fn user_data_and_password_limits() {
    // Nova's limit is on the base64 text: the largest raw user data whose text fits it.
    assert_eq!(MAX_USER_DATA_BASE64_CHARS, 65_535);
    assert_eq!(MAX_USER_DATA_BYTES, 49_149);
    assert!(base64_len(MAX_USER_DATA_BYTES) <= MAX_USER_DATA_BASE64_CHARS);
    assert!(base64_len(MAX_USER_DATA_BYTES + 1) > MAX_USER_DATA_BASE64_CHARS);
    assert_eq!(
        [0, 1, 2, 3, 4].map(base64_len),
        [0, 4, 4, 4, 8],
        "as base64 pads the last group"
    );
    assert!(user_data(Some(&vec![0; MAX_USER_DATA_BYTES])).is_ok());
    let msg = message(user_data(Some(&vec![0; MAX_USER_DATA_BYTES + 1])));
    assert!(
        msg.contains("is 49150 bytes: the limit is 49149 bytes")
            && msg.contains("65535 characters nova's API takes"),
        "{msg}"
    );
    assert!(password("password", &"p".repeat(MAX_PASSWORD_BYTES)).is_ok());
    assert!(password("password", &"p".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    assert!(password("password", "c2Vj\0cmV0").is_err());
}

#[test]
fn name_and_project_limits() {
    assert!(name("network", &"n".repeat(MAX_NAME_CHARS)).is_ok());
    assert!(message(name("network", &"n".repeat(MAX_NAME_CHARS + 1))).contains("255"));
    assert!(name("network", "  ").is_err());
    assert!(name("network", "a\nb").is_err());
    assert!(project(&"p".repeat(MAX_PROJECT_BYTES)).is_ok());
    assert!(project(&"p".repeat(MAX_PROJECT_BYTES + 1)).is_err());
    assert!(project("").is_err());
    assert!(project("my project").is_err());
}

#[test]
fn meta_and_key_pair_limits() {
    let mut map = BTreeMap::new();
    map.insert(
        "k".repeat(MAX_META_KEY_CHARS),
        "v".repeat(MAX_META_VALUE_CHARS),
    );
    assert!(meta(&map).is_ok());
    map.insert("k".repeat(MAX_META_KEY_CHARS + 1), String::new());
    assert!(meta(&map).is_err());
    // nova counts a value's characters: 255 two-byte characters fit, 256 do not.
    let one = |key: &str, value: &str| meta(&BTreeMap::from([(key.to_owned(), value.to_owned())]));
    assert!(one("note", &"é".repeat(MAX_META_VALUE_CHARS)).is_ok());
    assert!(one("note", &"é".repeat(MAX_META_VALUE_CHARS + 1)).is_err());
    // A key has the characters nova's schema allows, no others (a terminal escape, a '/').
    assert!(one("Team-1_a:b.c d", "x").is_ok());
    for key in ["team/owner", "\u{1b}]0;pwn\u{7}", "ключ", "a\nb"] {
        assert!(
            message(one(key, "x")).contains("has a character nova does not allow"),
            "{key:?}"
        );
    }
    let many: BTreeMap<_, _> = (0..=MAX_META_ITEMS)
        .map(|i| (i.to_string(), String::new()))
        .collect();
    assert!(meta(&many).is_err());

    let pair = |name: &str| KeyPair {
        name: name.to_owned(),
        kind: "ssh".to_owned(),
        data: ED25519.to_owned(),
    };
    assert!(key_pairs(&[pair("a"), pair("b")]).is_ok());
    assert!(message(key_pairs(&[pair("a"), pair("a")])).contains("twice"));
    let too_many: Vec<_> = (0..=MAX_KEY_PAIRS).map(|i| pair(&i.to_string())).collect();
    assert!(key_pairs(&too_many).is_err());
    let mut big = pair("big");
    big.data = format!("{ED25519} ");
    big.data += &"k".repeat(MAX_KEY_DATA_BYTES - big.data.len());
    assert!(key_pairs(std::slice::from_ref(&big)).is_ok());
    big.data.push('k');
    assert!(key_pairs(&[big]).is_err());
    // The limit counts the bytes as served: a '"' or '\\' is escaped to two.
    for escaped in ['"', '\\'] {
        let mut quoted = pair("quoted");
        quoted.data = format!("{ED25519} {}", escaped.to_string().repeat(8_200));
        assert!(quoted.data.len() < MAX_KEY_DATA_BYTES);
        assert!(
            message(key_pairs(&[quoted])).contains("as meta_data.json serves it"),
            "{escaped:?}"
        );
    }
    // One line of text for an ssh key (a trailing line break is fine); a PEM certificate has
    // lines; nothing else that is a control character.
    let with = |kind: &str, data: &str| KeyPair {
        kind: kind.to_owned(),
        data: data.to_owned(),
        ..pair("k")
    };
    assert!(key_pairs(&[with("ssh", &format!("{ED25519} me@host\n"))]).is_ok());
    assert!(key_pairs(&[with("ssh", &format!("{ED25519}\tme"))]).is_ok());
    for bad in [
        "ssh-ed25519 AAAA x\0k2\0ssh\0ssh-ed25519 BBBB",
        "ssh-ed25519 AAAA\nssh-rsa BBBB",
        "a\rb",
        "a\u{1b}[2Jb",
    ] {
        assert!(
            message(key_pairs(&[with("ssh", bad)])).contains("control character"),
            "{bad:?}"
        );
    }
    // An ssh key is an OpenSSH public key line: a key type, then a base64 blob of that type
    // (options before it as sshd reads them); nothing else, so no '"' of it can swell a
    // document, whatever the limit.
    let with_options = format!("no-pty,command=\"echo hi\" {ED25519} me@host");
    assert!(key_pairs(&[with("ssh", &with_options)]).is_ok());
    let blob = ED25519.split_whitespace().nth(1).unwrap();
    for bad in [
        "\"\"\"\"".to_owned(),
        "hello".to_owned(),
        "ssh-ed25519".to_owned(),
        "ssh-ed25519 AAAA".to_owned(),
        "ssh-ed25519 not-base64!".to_owned(),
        format!("ssh-rsa {blob}"),
    ] {
        let why = message(key_pairs(&[with("ssh", &bad)]));
        assert!(
            why.contains("is not an OpenSSH public key") && why.contains(".pub"),
            "{bad:?}: {why}"
        );
    }
    // A certificate is not an ssh key: it is not read as one.
    assert!(key_pairs(&[with("x509", "\"\"\"\"")]).is_ok());
    let pem = "-----BEGIN CERTIFICATE-----\r\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(key_pairs(&[with("x509", pem)]).is_ok());
    assert!(key_pairs(&[with("x509", "MIIB\0AAAA")]).is_err());
}

#[test]
fn a_network_with_an_ipv6_subnet_has_at_least_the_ipv6_minimum_mtu() {
    let v6: IpNet = "fdc6:1200:0:1::/64".parse().unwrap();
    let v4: IpNet = "198.18.0.0/24".parse().unwrap();
    let with = |cidr: IpNet, second: Option<IpNet>, mtu: u32| NewNetwork {
        name: "net".to_owned(),
        project: "admin".to_owned(),
        cidr,
        second_subnet: second.map(|cidr| crate::store::Subnet {
            cidr,
            gateway: None,
            dhcp_ip: None,
        }),
        mtu: Some(mtu),
        ..NewNetwork::default()
    };
    assert_eq!(IPV6_MIN_MTU, 1280);
    for (cidr, second) in [(v6, None), (v4, Some(v6))] {
        assert!(new_network(&with(cidr, second, IPV6_MIN_MTU)).is_ok());
        let msg = message(new_network(&with(cidr, second, IPV6_MIN_MTU - 1)));
        assert!(msg.contains("use 1280 or more"), "{msg}");
        assert!(msg.contains("fdc6:1200:0:1::/64"), "{msg}");
    }
    // An IPv4 network keeps the IPv4 minimum.
    assert!(new_network(&with(v4, None, MIN_MTU)).is_ok());
}

#[test]
fn mtu_and_uuid() {
    assert!(mtu(Some(MIN_MTU)).is_ok());
    assert!(mtu(Some(MAX_MTU)).is_ok());
    assert!(mtu(Some(MIN_MTU - 1)).is_err());
    assert!(mtu(Some(MAX_MTU + 1)).is_err());
    assert_eq!(
        uuid("6F1E1F5B-5B0A-4E6C-9E0B-7B4B1D0C2A11").unwrap(),
        "6f1e1f5b-5b0a-4e6c-9e0b-7b4b1d0c2a11"
    );
    assert!(uuid("nope").is_err());
}

#[test]
fn key_names_are_what_novas_api_allows() {
    for good in ["mykey", "alice@laptop", "ci key-2_v1.0", "A"] {
        assert!(key_name(good).is_ok(), "{good:?}");
    }
    assert!(key_name(&"k".repeat(MAX_KEY_NAME_CHARS)).is_ok());
    assert!(message(key_name(&"k".repeat(MAX_KEY_NAME_CHARS + 1))).contains("255"));
    for bad in [
        "", "a=b", "a\nb", "a\rb", "a/b", "tab\tkey", "é", " lead", "trail ",
    ] {
        assert!(key_name(bad).is_err(), "{bad:?}");
    }
    assert!(message(key_name("a=b")).contains("'='"));
    let pair = |name: &str| KeyPair {
        name: name.to_owned(),
        kind: "ssh".to_owned(),
        data: ED25519.to_owned(),
    };
    assert!(key_pairs(&[pair("0=forged")]).is_err());
}

/// Nova's API schema for a server name: 1 to 255 characters (not bytes), printable, no
/// whitespace at either end (parameter_types.name's valid_name_regex).
#[test]
fn display_names_follow_novas_rules() {
    // 255 two-byte characters are 510 bytes: still a name nova takes.
    assert!(name("instance", &"\u{e9}".repeat(MAX_NAME_CHARS)).is_ok());
    assert!(name("instance", &"\u{ffe9}".repeat(MAX_NAME_CHARS)).is_ok());
    let msg = message(name("instance", &"\u{e9}".repeat(MAX_NAME_CHARS + 1)));
    assert!(
        msg.contains("256 characters long") && msg.contains("at most 255"),
        "{msg}"
    );
    assert!(name("instance", "My Web Server").is_ok());
    for bad in [
        " web",
        "web ",
        "\u{a0}web",
        "web\u{3000}",
        "\u{2003}web\u{2003}",
    ] {
        let msg = message(name("instance", bad));
        assert!(
            msg.contains("starts or ends with whitespace") && msg.contains("remove it"),
            "{bad:?}: {msg}"
        );
    }
    assert!(message(name("instance", "")).contains("is empty"));
}

/// Nova's printable: no control, format, surrogate, private-use or unassigned character, no
/// line or paragraph separator, nothing past the Basic Multilingual Plane; letters, marks,
/// numbers, punctuation, symbols and spaces inside.
#[test]
fn display_names_hold_only_what_nova_calls_printable() {
    for good in [
        "web",
        "caf\u{e9}",
        "a b",
        "a\u{a0}b",
        "\u{4e2d}\u{6587}",
        "e\u{301}",
        "\u{fffd}",
    ] {
        assert!(name("instance", good).is_ok(), "{good:?}");
    }
    assert_eq!(LAST_NAME_CHAR, '\u{fffe}');
    for (bad, what) in [
        ("a\u{7}b", "U+0007, a control character"),
        ("a\u{85}b", "U+0085, a control character"),
        ("a\u{202e}b", "U+202E, an invisible formatting character"),
        ("a\u{200b}b", "U+200B, an invisible formatting character"),
        ("a\u{ad}b", "U+00AD, an invisible formatting character"),
        ("a\u{feff}b", "U+FEFF, an invisible formatting character"),
        ("a\u{e000}b", "U+E000, a private-use character"),
        ("a\u{378}b", "U+0378, not an assigned character"),
        ("a\u{2028}b", "U+2028, a line break"),
        ("a\u{2029}b", "U+2029, a line break"),
        (
            "a\u{1f600}b",
            "U+1F600, outside the Basic Multilingual Plane",
        ),
        (
            "a\u{10000}b",
            "U+10000, outside the Basic Multilingual Plane",
        ),
    ] {
        let msg = message(name("instance", bad));
        assert!(
            msg.contains(what) && msg.contains("use printable characters only"),
            "{bad:?}: {msg}"
        );
    }
}
