//! Host names: the rule a name given with `--hostname` follows (RFC 1123), and the name nova
//! (23.0 and later) derives from an instance's display name when none is given, character for
//! character, so a guest sees the same `hostname` in meta_data.json as on OpenStack.

use crate::store::error::{StoreError, StoreResult};

/// Longest host name, in bytes (RFC 1123 with the trailing dot left out).
pub const MAX_HOSTNAME_BYTES: usize = 253;
/// Longest label of a host name, in bytes (RFC 1123).
pub const MAX_HOSTNAME_LABEL_BYTES: usize = 63;
/// Longest `--dhcp-domain`, in bytes: a one-letter host name and its '.' still fit in
/// [`MAX_HOSTNAME_BYTES`].
pub const MAX_DHCP_DOMAIN_BYTES: usize = MAX_HOSTNAME_BYTES - 2;
/// Characters nova keeps of a display name before it cleans it (`sanitize_hostname`: the
/// lowest of dnsmasq's 63, Linux's 64 and Windows' 255).
pub const NOVA_HOSTNAME_CHARS: usize = 63;
/// Prefix of the host name nova gives an instance whose display name leaves nothing usable
/// (`Server-<uuid>`).
pub const NOVA_FALLBACK_PREFIX: &str = "Server-";

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// A host name: dot-separated RFC 1123 labels (letters, digits, '-', not at either end of a
/// label), each at most [`MAX_HOSTNAME_LABEL_BYTES`], at most [`MAX_HOSTNAME_BYTES`] in all;
/// or a name nova derives from a display name (one label that may keep Latin-1 letters, see
/// [`sanitize_hostname`]).
pub fn hostname(hostname: &str) -> StoreResult<()> {
    if !hostname.is_empty() && sanitize_hostname(hostname) == hostname {
        return Ok(());
    }
    let fix = "use letters, digits and '-' in dot-separated labels, or omit it to derive one \
               from the name";
    if hostname.is_empty() {
        return Err(invalid(format!("hostname is empty: {fix}")));
    }
    if hostname.len() > MAX_HOSTNAME_BYTES {
        return Err(invalid(format!(
            "hostname is {} bytes long: the limit is {MAX_HOSTNAME_BYTES}",
            hostname.len()
        )));
    }
    for label in hostname.split('.') {
        match label_fault(label) {
            None => {}
            Some(LabelFault::Empty) => {
                return Err(invalid(format!(
                    "hostname {hostname:?} has an empty label: {fix}"
                )));
            }
            Some(LabelFault::TooLong) => {
                return Err(invalid(format!(
                    "hostname label {label:?} is {} bytes long: the limit is \
                     {MAX_HOSTNAME_LABEL_BYTES}",
                    label.len()
                )));
            }
            Some(LabelFault::Character) => {
                return Err(invalid(format!(
                    "hostname {hostname:?} is not a valid host name: {fix}"
                )));
            }
        }
    }
    Ok(())
}

/// The domain appended to every host name (`--dhcp-domain`, `api.dhcp_domain`): empty for
/// none (nova appends `[api] dhcp_domain` only when it is set), else dot-separated RFC 1123
/// labels as [`hostname`] takes them, at most [`MAX_DHCP_DOMAIN_BYTES`]. `setting` names
/// where the value was given, for the message.
pub fn dhcp_domain(setting: &str, domain: &str) -> StoreResult<()> {
    if domain.is_empty() {
        return Ok(());
    }
    let fix = "use letters, digits and '-' in dot-separated labels (e.g. novalocal), or \"\" \
               for no domain";
    if domain.len() > MAX_DHCP_DOMAIN_BYTES {
        return Err(invalid(format!(
            "{setting} is {} bytes long: the limit is {MAX_DHCP_DOMAIN_BYTES}, so that a host \
             name and its domain fit in {MAX_HOSTNAME_BYTES}",
            domain.len()
        )));
    }
    for label in domain.split('.') {
        match label_fault(label) {
            None => {}
            Some(LabelFault::Empty) => {
                return Err(invalid(format!(
                    "{setting} {domain:?} has an empty label (a '.' at either end or two in a \
                     row): {fix}"
                )));
            }
            Some(LabelFault::TooLong) => {
                return Err(invalid(format!(
                    "{setting} label {label:?} is {} bytes long: the limit is \
                     {MAX_HOSTNAME_LABEL_BYTES}",
                    label.len()
                )));
            }
            Some(LabelFault::Character) => {
                return Err(invalid(format!(
                    "{setting} {domain:?} is not a valid domain (a label has a character other \
                     than a letter, digit or '-', or a '-' at either end): {fix}"
                )));
            }
        }
    }
    Ok(())
}

/// What breaks RFC 1123 in one label of a name.
enum LabelFault {
    Empty,
    TooLong,
    /// A character other than an ASCII letter, digit or '-', or a '-' at either end.
    Character,
}

fn label_fault(label: &str) -> Option<LabelFault> {
    if label.is_empty() {
        Some(LabelFault::Empty)
    } else if label.len() > MAX_HOSTNAME_LABEL_BYTES {
        Some(LabelFault::TooLong)
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || label.starts_with('-')
        || label.ends_with('-')
    {
        Some(LabelFault::Character)
    } else {
        None
    }
}

/// nova's `sanitize_hostname` without a default: drops every character past U+00FF, keeps
/// the first [`NOVA_HOSTNAME_CHARS`], turns spaces, '_' and '.' into '-', drops what is not a
/// word character or '-' (a Latin-1 letter or digit is a word character, as in Python),
/// lower-cases, and strips '-' from both ends. May be empty.
pub fn sanitize_hostname(name: &str) -> String {
    let kept = name
        .chars()
        .filter(|c| u32::from(*c) <= 0xFF)
        .take(NOVA_HOSTNAME_CHARS);
    let mut out = String::with_capacity(NOVA_HOSTNAME_CHARS);
    for c in kept {
        match c {
            ' ' | '_' | '.' => out.push('-'),
            '-' => out.push('-'),
            c if is_word(c) => out.extend(c.to_lowercase()),
            _ => {}
        }
    }
    out.trim_matches(['-', '.']).to_owned()
}

/// Python's `\w` for a character up to U+00FF: a letter or a digit in the Unicode sense
/// (`ª`, `µ`, `º`, `²`, `¼`, `À`…`ÿ` but not `×` or `÷`), or '_'.
fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The host name nova (23.0 and later) gives an instance named `name` with id `uuid` when no
/// host name is asked for: [`sanitize_hostname`] of the name, or `Server-<uuid>` when nothing
/// usable is left.
pub fn default_hostname(name: &str, uuid: &str) -> String {
    let sanitized = sanitize_hostname(name);
    if sanitized.is_empty() {
        return format!("{NOVA_FALLBACK_PREFIX}{uuid}");
    }
    sanitized
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "3f9a1c5e-7b2d-4e8f-9a01-23456789abcd";

    #[test]
    fn rfc_1123_names_and_what_nova_derives() {
        let label = "a".repeat(MAX_HOSTNAME_LABEL_BYTES);
        let longest = [label.as_str(); 4].join(".")[..MAX_HOSTNAME_BYTES].to_owned();
        assert!(hostname(&longest).is_ok(), "{longest}");
        assert!(hostname(&format!("{longest}a")).is_err());
        assert!(hostname("web-1").is_ok());
        assert!(hostname("web-1.example").is_ok());
        assert!(hostname(&"a".repeat(MAX_HOSTNAME_LABEL_BYTES)).is_ok());
        assert!(hostname(&"a".repeat(MAX_HOSTNAME_LABEL_BYTES + 1)).is_err());
        assert!(hostname("-web").is_err());
        assert!(hostname("web_1").is_err());
        assert!(hostname("a..b").is_err());
        assert!(hostname("").is_err());
        assert!(hostname("web\nhost").is_err());
        // Whatever nova derives is accepted, Latin-1 letters and the fallback included.
        for name in ["Café Olé", "ÀÉÎ_Õ", "web.prod.01", "", "µ²¼"] {
            let derived = default_hostname(name, UUID);
            assert!(hostname(&derived).is_ok(), "{name:?} → {derived:?}");
        }
        let longest_latin1 = "é".repeat(NOVA_HOSTNAME_CHARS);
        assert!(hostname(&longest_latin1).is_ok());
        assert!(hostname(&format!("{longest_latin1}é")).is_err());
        assert!(
            hostname("Café").is_err(),
            "not lower case: nova never derives it"
        );
    }

    #[test]
    fn a_dhcp_domain_is_rfc_1123_labels_or_empty() {
        for good in [
            "",
            "novalocal",
            "lab",
            "example.org",
            "my-lab.Example.org",
            "a1",
        ] {
            assert!(dhcp_domain("--dhcp-domain", good).is_ok(), "{good:?}");
        }
        let label = "a".repeat(MAX_HOSTNAME_LABEL_BYTES);
        let longest = [label.as_str(); 4].join(".")[..MAX_DHCP_DOMAIN_BYTES].to_owned();
        assert!(dhcp_domain("--dhcp-domain", &longest).is_ok());
        let message = dhcp_domain("--dhcp-domain", &format!("{longest}a"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("the limit is 251"), "{message}");
        assert!(dhcp_domain("--dhcp-domain", &label).is_ok());
        let message = dhcp_domain("--dhcp-domain", &format!("{label}a"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("the limit is 63"), "{message}");
        for (bad, why) in [
            (".lab", "empty label"),
            ("lab.", "empty label"),
            ("a..b", "empty label"),
            ("lab\nx", "not a valid domain"),
            ("lab x", "not a valid domain"),
            ("-lab", "not a valid domain"),
            ("lab_1", "not a valid domain"),
            ("café", "not a valid domain"),
        ] {
            let message = dhcp_domain("--dhcp-domain", bad).unwrap_err().to_string();
            assert!(message.starts_with("--dhcp-domain "), "{message}");
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    /// nova's own unit tests of `sanitize_hostname` (nova/tests/unit/test_utils.py).
    #[test]
    fn sanitize_hostname_gives_what_nova_gives() {
        for (name, want) in [
            ("\u{7684}myamazinghostname", "myamazinghostname"),
            ("....test.example.com...", "test-example-com"),
            ("----my-amazing-hostname---", "my-amazing-hostname"),
            (
                "(#@&$!(@*--#&91)(__=+--test-host.example!!.com-0+",
                "91----test-host-example-com-0",
            ),
            ("<}\x1fh\x10e\x08l\x02l\x05o\x12!{>", "hello"),
            ("\u{7684}", ""),
            ("---...", ""),
            (" a b c ", "a-b-c"),
        ] {
            assert_eq!(sanitize_hostname(name), want, "{name:?}");
        }
        assert_eq!(sanitize_hostname(&"a".repeat(64)).chars().count(), 63);
        // Cut at 63 first, then the trailing '-' goes.
        let cut = sanitize_hostname(&format!("{}-a", "a".repeat(62)));
        assert_eq!(cut, "a".repeat(62));
    }

    /// Every character up to U+00FF: which ones nova keeps and what it lower-cases them to
    /// (Python 3's `re` `\w` and `str.lower()` over that range).
    #[test]
    fn latin1_letters_are_kept_as_nova_keeps_them() {
        const WORD: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz\
            ª²³µ¹º¼½¾ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ";
        const LOWER: &str = "0123456789abcdefghijklmnopqrstuvwxyz_abcdefghijklmnopqrstuvwxyz\
            ª²³µ¹º¼½¾àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ";
        let word: String = (0..=0xFFu32)
            .filter_map(char::from_u32)
            .filter(|c| is_word(*c))
            .collect();
        assert_eq!(word, WORD);
        let lower: String = WORD.chars().flat_map(char::to_lowercase).collect();
        assert_eq!(lower, LOWER);
    }

    #[test]
    fn default_hostname_follows_nova_23() {
        // Dots become dashes (nova < 23 kept them, and cloud-init then took "web").
        assert_eq!(default_hostname("web.prod.01", UUID), "web-prod-01");
        assert_eq!(default_hostname("My Web_Server", UUID), "my-web-server");
        // Latin-1 letters stay, lower-cased; what lies past U+00FF goes.
        assert_eq!(default_hostname("Café Olé", UUID), "café-olé");
        assert_eq!(default_hostname("ÀÉÎÕÜ", UUID), "àéîõü");
        assert_eq!(default_hostname("Straße×2÷3", UUID), "straße23");
        assert_eq!(default_hostname("ünïcode→☃!", UUID), "ünïcode");
        assert_eq!(default_hostname("ªµº²¼", UUID), "ªµº²¼");
        // Symbols are dropped, not turned into dashes; runs of dashes stay.
        assert_eq!(default_hostname("a..b", UUID), "a--b");
        assert_eq!(default_hostname("a + b", UUID), "a--b");
        // Nothing usable: Server-<uuid>, as nova names it.
        for empty in ["", "!!!", "---...", "☃☃", " "] {
            assert_eq!(
                default_hostname(empty, UUID),
                format!("Server-{UUID}"),
                "{empty:?}"
            );
        }
        // The cut is in characters, before the cleaning.
        let long = default_hostname(&format!("{}xyz", "é".repeat(62)), UUID);
        assert_eq!(long, format!("{}x", "é".repeat(62)));
        let long = default_hostname(&"x".repeat(100), UUID);
        assert_eq!(long.len(), NOVA_HOSTNAME_CHARS);
    }
}
