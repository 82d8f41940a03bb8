//! cloud-init's `ssh_authkey_fingerprints` (once per instance, final stage): for each user of
//! the cloud-config's user list, the fingerprints of the keys in `~/.ssh/authorized_keys`, as
//! cloud-init 22.4's table on the console:
//!
//! ```text
//! ci-info: ++++++++++++++++++++Authorized keys from /home/debian/.ssh/authorized_keys for user debian++++++++++++++++++++
//! ci-info: +---------+-------------------------------------------------------------------------------------------------+---------+-----------+
//! ci-info: | Keytype |                                       Fingerprint (sha256)                                      | Options |  Comment  |
//! ```
//!
//! A fingerprint is the hex digest of the decoded key blob, in pairs joined by `:` (not
//! `ssh-keygen`'s base64); `?` when the blob is not base64 or the hash is not one of
//! [`HASHES`]. Lines are parsed as cloud-init's `AuthKeyLineParser` does: only a line whose key
//! type is one of [`KEY_TYPES`] gets a row.

use base64::Engine as _;
use sha2::Digest as _;

/// The hash cloud-init uses when `authkey_hash` is not set.
pub const DEFAULT_HASH: &str = "sha256";
/// The hashes `authkey_hash` may name here (cloud-init takes any of Python's `hashlib`; the
/// agent carries these two for its other work).
pub const HASHES: [&str; 2] = ["sha256", "sha512"];
/// What starts each console line (cloud-init's `ci-info: `).
pub const PREFIX: &str = "ci-info: ";
/// The key types of a line that gets a row (cloud-init's `ssh_util.VALID_KEY_TYPES`).
pub const KEY_TYPES: [&str; 22] = [
    "dsa",
    "rsa",
    "ecdsa",
    "ed25519",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-dss",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-ed25519",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-rsa",
    "ssh-xmss-cert-v01@openssh.com",
    "ssh-xmss@openssh.com",
];

/// One key line of an `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine<'a> {
    pub options: &'a str,
    pub key_type: &'a str,
    pub blob: &'a str,
    pub comment: &'a str,
}

/// `type blob [comment]` when the first word is a key type.
fn type_blob_comment(text: &str) -> Option<(&str, &str, &str)> {
    let mut rest = text.trim_start();
    let mut words = [""; 2];
    for word in &mut words {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        *word = &rest[..end];
        rest = rest[end..].trim_start();
    }
    let [key_type, blob] = words;
    (!blob.is_empty() && KEY_TYPES.contains(&key_type)).then_some((key_type, blob, rest))
}

/// The options in front of a key (cloud-init's `_extract_options`): up to the first blank
/// outside double quotes; and what follows them.
fn split_options(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let (mut quoted, mut i) = (false, 0);
    while i < bytes.len() && (quoted || !matches!(bytes[i], b' ' | b'\t')) {
        if i + 1 >= bytes.len() {
            i += 1;
            break;
        }
        if bytes[i] == b'\\' && bytes[i + 1] == b'"' {
            i += 1;
        } else if bytes[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    (&line[..i], line[i..].trim_start())
}

/// A line parsed as cloud-init's `AuthKeyLineParser.parse`: `None` for a comment, a blank line
/// or a line without a known key type.
pub fn parse_line(line: &str) -> Option<KeyLine<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if let Some((key_type, blob, comment)) = type_blob_comment(line) {
        return Some(KeyLine {
            options: "",
            key_type,
            blob,
            comment,
        });
    }
    let (options, rest) = split_options(line);
    let (key_type, blob, comment) = type_blob_comment(rest)?;
    Some(KeyLine {
        options,
        key_type,
        blob,
        comment,
    })
}

/// The fingerprint cloud-init prints for `blob` with `hash`: hex pairs joined by `:`; `?` when
/// the blob is not base64 or the hash is not one of [`HASHES`].
pub fn fingerprint(blob: &str, hash: &str) -> String {
    let kept: String = blob
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    // As Python's `base64.b64decode` does, characters outside the alphabet are dropped and
    // padding is required (unlike Python, a last character with unused bits set is refused:
    // no key writer makes one).
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(kept) else {
        return "?".to_owned();
    };
    let digest = match hash {
        "sha256" => sha2::Sha256::digest(&bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(&bytes).to_vec(),
        _ => return "?".to_owned(),
    };
    digest
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Python's `str.center(width)`: the odd space goes left when `width` is odd.
fn center(text: &str, width: usize) -> String {
    let length = text.chars().count();
    let margin = width.saturating_sub(length);
    let left = margin / 2 + (margin & width & 1);
    format!("{}{text}{}", " ".repeat(left), " ".repeat(margin - left))
}

/// Python's `format(text, "<fill>^<width>")`: the odd fill goes right.
fn center_filled(text: &str, fill: char, width: usize) -> String {
    let margin = width.saturating_sub(text.chars().count());
    let left = margin / 2;
    let fill = |n| std::iter::repeat_n(fill, n).collect::<String>();
    format!("{}{text}{}", fill(left), fill(margin - left))
}

/// What the console shows for `user` whose authorized keys file `key_file` holds `text`
/// (`None`: no such file): the table, or the line saying there are none. Every line starts
/// with [`PREFIX`] and ends with a newline.
pub fn render(user: &str, key_file: &str, text: Option<&str>, hash: &str) -> String {
    let text = text.unwrap_or_default();
    if text.lines().next().is_none() {
        return format!("{PREFIX}no authorized SSH keys fingerprints found for user {user}.\n");
    }
    let fields = [
        "Keytype".to_owned(),
        format!("Fingerprint ({hash})"),
        "Options".to_owned(),
        "Comment".to_owned(),
    ];
    // The file is the user's: its options and comments may hold a terminal's escape
    // sequences or line breaks of their own, which the console must not act on (escaped as
    // the log escapes them).
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            crate::log::escape_controls(s).into_owned()
        }
    };
    let rows: Vec<[String; 4]> = text
        .lines()
        .filter_map(parse_line)
        .map(|key| {
            [
                or_dash(key.key_type),
                or_dash(&fingerprint(key.blob, hash)),
                or_dash(key.options),
                or_dash(key.comment),
            ]
        })
        .collect();
    let mut widths = [0; 4];
    for row in std::iter::once(&fields).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let divider = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let row_line = |row: &[String; 4]| {
        format!(
            "|{}|",
            row.iter()
                .zip(widths)
                .map(|(cell, w)| center(cell, w + 2))
                .collect::<Vec<_>>()
                .join("|")
        )
    };
    let mut table = vec![divider.clone(), row_line(&fields), divider.clone()];
    table.extend(rows.iter().map(row_line));
    table.push(divider);
    let widest = table.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let title = center_filled(
        &format!("Authorized keys from {key_file} for user {user}"),
        '+',
        widest,
    );
    std::iter::once(title)
        .chain(table)
        .map(|line| format!("{PREFIX}{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGHtiVz+ZA1NX3VZlv0HGrf3c8c7bNQbWxvKuOPXv+Ri";

    #[test]
    fn lines_are_parsed_as_cloud_inits_parser_parses_them() {
        let plain = format!("ssh-ed25519 {ED25519} me@laptop  with spaces");
        assert_eq!(
            parse_line(&plain),
            Some(KeyLine {
                options: "",
                key_type: "ssh-ed25519",
                blob: ED25519,
                comment: "me@laptop  with spaces",
            })
        );
        let optioned = format!(r#"no-pty,command="echo \"hi there\"" ssh-rsa {ED25519}"#);
        let key = parse_line(&optioned).unwrap();
        assert_eq!(key.options, r#"no-pty,command="echo \"hi there\"""#);
        assert_eq!((key.key_type, key.comment), ("ssh-rsa", ""));
        for not_a_key in [
            "",
            "   ",
            "# ssh-rsa AAAA",
            "ssh-unknown AAAA c",
            "ssh-rsa",
            "no-pty ssh-unknown AAAA",
        ] {
            assert_eq!(parse_line(not_a_key), None, "{not_a_key:?}");
        }
    }

    #[test]
    fn fingerprints_are_hex_pairs_of_the_blobs_digest() {
        let sha256 = fingerprint(ED25519, "sha256");
        assert_eq!(sha256.len(), 32 * 3 - 1);
        assert!(sha256.split(':').all(|pair| pair.len() == 2));
        assert_eq!(
            sha256,
            sha2::Sha256::digest(
                base64::engine::general_purpose::STANDARD
                    .decode(ED25519)
                    .unwrap()
            )
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
        );
        assert_eq!(fingerprint(ED25519, "sha512").len(), 64 * 3 - 1);
        assert_eq!(fingerprint("AAAA", "sha256").len(), 32 * 3 - 1);
        assert_eq!(fingerprint("not base64!", "sha256"), "?");
        assert_eq!(fingerprint("AAA", "sha256"), "?", "padding is required");
        assert_eq!(fingerprint(ED25519, "md5"), "?");
        assert_eq!(fingerprint(ED25519, "sha224"), "?");
    }

    #[test]
    fn the_table_is_cloud_inits() {
        // What cloud-init 22.4's `_pprint_key_entries` printed for this file, its lines parsed
        // by its `AuthKeyLineParser` (python3 with cloudinit from the 22.4 tag).
        let file = "# a comment\nssh-rsa AAAA first key\nno-pty ssh-ed25519 AAAAAA==\n";
        let shown = render(
            "debian",
            "/home/debian/.ssh/authorized_keys",
            Some(file),
            "sha256",
        );
        let expected = "\
ci-info: ++++++++++++++++++++++++++++++++Authorized keys from /home/debian/.ssh/authorized_keys for user debian+++++++++++++++++++++++++++++++++
ci-info: +-------------+-------------------------------------------------------------------------------------------------+---------+-----------+
ci-info: |   Keytype   |                                       Fingerprint (sha256)                                      | Options |  Comment  |
ci-info: +-------------+-------------------------------------------------------------------------------------------------+---------+-----------+
ci-info: |   ssh-rsa   | 70:9e:80:c8:84:87:a2:41:1e:1e:e4:df:b9:f2:2a:86:14:92:d2:0c:47:65:15:0c:0c:79:4a:bd:70:f8:14:7c |    -    | first key |
ci-info: | ssh-ed25519 | df:3f:61:98:04:a9:2f:db:40:57:19:2d:c4:3d:d7:48:ea:77:8a:dc:52:bc:49:8c:e8:05:24:c0:14:b8:11:19 |  no-pty |     -     |
ci-info: +-------------+-------------------------------------------------------------------------------------------------+---------+-----------+
";
        assert_eq!(shown, expected);
    }

    #[test]
    fn no_file_or_an_empty_one_says_so() {
        for text in [None, Some("")] {
            assert_eq!(
                render(
                    "debian",
                    "/home/debian/.ssh/authorized_keys",
                    text,
                    DEFAULT_HASH
                ),
                "ci-info: no authorized SSH keys fingerprints found for user debian.\n"
            );
        }
    }

    /// A comment a guest user wrote with a terminal's escape sequence, a carriage return and a
    /// next-line character: printed escaped, so it can neither drive the console nor forge a
    /// line of its log.
    #[test]
    fn control_characters_of_a_users_file_are_escaped() {
        let line = format!(
            "command=\"x\u{1b}[2J\" ssh-ed25519 {ED25519} me\u{1b}]0;owned\u{7}\rci-info: forged\u{85}"
        );
        let table = render(
            "debian",
            "/home/debian/.ssh/authorized_keys",
            Some(&line),
            DEFAULT_HASH,
        );
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(table.contains(r"\x1b]0;owned"), "{table}");
        assert_eq!(table.lines().filter(|l| l.contains("forged")).count(), 1);
        assert!(table.lines().all(|l| l.starts_with(PREFIX)), "{table}");
    }
}
