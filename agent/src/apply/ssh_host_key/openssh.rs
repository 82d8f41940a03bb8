//! An ed25519 key pair in OpenSSH's own formats, as `ssh-keygen -t ed25519 -N ""` writes them:
//! the private key file (`openssh-key-v1`, unencrypted) and the public key line; and the public
//! key line read back from a private key file of any type (as `ssh-keygen -y` prints it). The layout is
//! OpenSSH's PROTOCOL.key: a header naming no cipher and no KDF, the public key blob, then a
//! section holding two equal check words, the key (type, public half, seed followed by public
//! half), the comment, and padding 1, 2, 3, … up to a multiple of the cipher's block size (8 for
//! "none").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The key type, in blobs and on the public line.
pub const KEY_TYPE: &str = "ssh-ed25519";
/// The private key file's magic, NUL included.
const MAGIC: &[u8] = b"openssh-key-v1\0";
/// The block size the private section is padded to when it is not encrypted.
const BLOCK_SIZE: usize = 8;
/// Base64 characters per line of the private key file, as ssh-keygen writes it.
const LINE_CHARS: usize = 70;
const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
const END: &str = "-----END OPENSSH PRIVATE KEY-----\n";

/// An ed25519 key pair: the 32-byte seed and the 32-byte public key derived from it.
pub struct KeyPair {
    pub seed: [u8; 32],
    pub public: [u8; 32],
}

/// Appends an SSH `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("an SSH string under 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The public key blob: `string "ssh-ed25519"`, `string public`.
fn public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(4 + KEY_TYPE.len() + 4 + public.len());
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_string(&mut blob, public);
    blob
}

/// The public key file's line: `ssh-ed25519 <base64 blob> <comment>`.
pub fn public_line(pair: &KeyPair, comment: &str) -> String {
    format!(
        "{KEY_TYPE} {} {comment}\n",
        STANDARD.encode(public_blob(&pair.public))
    )
}

/// The private key file. `check` is the random word OpenSSH repeats twice in the private
/// section (a wrong passphrase shows as a mismatch when the file is encrypted).
pub fn private_file(pair: &KeyPair, comment: &str, check: u32) -> String {
    let mut section = Vec::with_capacity(160 + comment.len());
    section.extend_from_slice(&check.to_be_bytes());
    section.extend_from_slice(&check.to_be_bytes());
    put_string(&mut section, KEY_TYPE.as_bytes());
    put_string(&mut section, &pair.public);
    let mut secret = [0u8; 64];
    secret[..32].copy_from_slice(&pair.seed);
    secret[32..].copy_from_slice(&pair.public);
    put_string(&mut section, &secret);
    secret.fill(0);
    put_string(&mut section, comment.as_bytes());
    let mut pad = 1u8;
    while section.len() % BLOCK_SIZE != 0 {
        section.push(pad);
        pad += 1;
    }

    let mut body = Vec::with_capacity(MAGIC.len() + 64 + section.len());
    body.extend_from_slice(MAGIC);
    put_string(&mut body, b"none"); // cipher
    put_string(&mut body, b"none"); // KDF
    put_string(&mut body, b""); // KDF options
    body.extend_from_slice(&1u32.to_be_bytes()); // one key
    put_string(&mut body, &public_blob(&pair.public));
    put_string(&mut body, &section);
    section.fill(0);

    let encoded = STANDARD.encode(&body);
    body.fill(0);
    let mut file = String::with_capacity(BEGIN.len() + encoded.len() * 71 / 70 + 1 + END.len());
    file.push_str(BEGIN);
    for line in encoded.as_bytes().chunks(LINE_CHARS) {
        // Base64 is ASCII: every chunk is valid UTF-8.
        file.push_str(std::str::from_utf8(line).unwrap_or_default());
        file.push('\n');
    }
    file.push_str(END);
    file
}

/// Reads an SSH `string` at the start of `bytes`: its content and what follows it.
fn split_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The public key line of an OpenSSH private key file (`openssh-key-v1`, of any key type,
/// encrypted or not: the public key is stored in the clear ahead of the private section), as
/// `ssh-keygen -y` prints it, with `comment`; `None` for another format (PEM's `BEGIN RSA
/// PRIVATE KEY`, …) or a damaged file.
pub fn public_line_of_private(file: &str, comment: &str) -> Option<String> {
    let inner = file.trim().strip_prefix(BEGIN.trim_end())?;
    let inner = inner.strip_suffix(END.trim_end())?;
    let encoded: String = inner.split_whitespace().collect();
    let body = STANDARD.decode(encoded).ok()?;
    let rest = body.strip_prefix(MAGIC)?;
    let (_cipher, rest) = split_string(rest)?;
    let (_kdf, rest) = split_string(rest)?;
    let (_kdf_options, rest) = split_string(rest)?;
    let keys = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    if keys == 0 {
        return None;
    }
    let (blob, _) = split_string(&rest[4..])?;
    let (key_type, _) = split_string(blob)?;
    let key_type = std::str::from_utf8(key_type).ok()?;
    if key_type.is_empty() || !key_type.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(format!("{key_type} {} {comment}\n", STANDARD.encode(blob)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> KeyPair {
        KeyPair {
            seed: [7; 32],
            public: [9; 32],
        }
    }

    #[test]
    fn the_public_line_is_read_back_from_the_private_file() {
        let file = private_file(&pair(), "root@web-1", 7);
        assert_eq!(
            public_line_of_private(&file, "root@web-2"),
            Some(public_line(&pair(), "root@web-2"))
        );
        assert_eq!(
            public_line_of_private(
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
                "c"
            ),
            None,
            "PEM is not read"
        );
        let cut = &file[..file.len() / 2];
        assert_eq!(public_line_of_private(&format!("{cut}\n{END}"), "c"), None);
        assert_eq!(public_line_of_private("", "c"), None);
    }

    #[test]
    fn the_public_line_is_type_blob_and_comment() {
        let line = public_line(&pair(), "root@web-1");
        let mut words = line.trim_end().split(' ');
        assert_eq!(words.next(), Some(KEY_TYPE));
        let blob = STANDARD.decode(words.next().unwrap()).unwrap();
        assert_eq!(blob, public_blob(&[9; 32]));
        assert_eq!(&blob[..4], &11u32.to_be_bytes());
        assert_eq!(words.next(), Some("root@web-1"));
        assert!(line.ends_with('\n'));
    }

    /// Reads an SSH `string` at `at`, moving past it.
    fn take<'a>(body: &'a [u8], at: &mut usize) -> &'a [u8] {
        let len = u32::from_be_bytes(body[*at..*at + 4].try_into().unwrap()) as usize;
        *at += 4 + len;
        &body[*at - len..*at]
    }

    #[test]
    fn the_private_file_is_armoured_in_lines_of_70_and_padded_to_the_block_size() {
        let file = private_file(&pair(), "root@web-1", 0x0102_0304);
        assert!(file.starts_with(BEGIN) && file.ends_with(END));
        let inner: Vec<&str> = file[BEGIN.len()..file.len() - END.len()].lines().collect();
        assert!(
            inner[..inner.len() - 1]
                .iter()
                .all(|l| l.len() == LINE_CHARS)
        );
        let body = STANDARD.decode(inner.concat()).unwrap();
        assert!(body.starts_with(MAGIC));
        let mut at = MAGIC.len();
        assert_eq!(take(&body, &mut at), b"none");
        assert_eq!(take(&body, &mut at), b"none");
        assert_eq!(take(&body, &mut at), b"");
        assert_eq!(body[at..at + 4], 1u32.to_be_bytes());
        at += 4;
        assert_eq!(take(&body, &mut at), public_blob(&[9; 32]));
        let section = take(&body, &mut at);
        assert_eq!(at, body.len());
        assert_eq!(section.len() % BLOCK_SIZE, 0);
        assert_eq!(section[..8], [1, 2, 3, 4, 1, 2, 3, 4]);
        let mut at = 8;
        assert_eq!(take(section, &mut at), KEY_TYPE.as_bytes());
        assert_eq!(take(section, &mut at), [9; 32]);
        assert_eq!(take(section, &mut at), [[7; 32], [9; 32]].concat());
        assert_eq!(take(section, &mut at), b"root@web-1");
        let padding: Vec<u8> = (1..=u8::try_from(section.len() - at).unwrap()).collect();
        assert_eq!(section[at..], padding);
    }
}
