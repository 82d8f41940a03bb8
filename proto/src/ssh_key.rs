//! OpenSSH keys as far as the password post-back needs them (docs/protocol.md §9.7): the RSA
//! public key (`e`, `n`) inside an `ssh-rsa AAAA… comment` line, read from the SSH wire format
//! (RFC 4253 §6.6: string "ssh-rsa", mpint e, mpint n). The guest agent encrypts the password
//! with it; the server checks that an admin's private key belongs to it.

use base64::Engine as _;

/// The key type of an RSA key.
pub const SSH_RSA: &str = "ssh-rsa";
/// Longest key line read (an 16384-bit RSA key is about 2.8 KB of base64).
pub const MAX_KEY_LINE_BYTES: usize = 16 * 1024;

/// Why a key line gives no RSA public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshKeyError {
    #[error("The key is {0}, not ssh-rsa: the password can only be encrypted with an RSA key")]
    NotRsa(String),
    #[error("The key line has no key type and base64 blob")]
    NoKey,
    #[error("The key line is longer than {MAX_KEY_LINE_BYTES} bytes")]
    TooLong,
    #[error("The key's base64 blob does not decode")]
    Base64,
    #[error("The key blob is truncated or malformed ({0})")]
    Malformed(&'static str),
    #[error("The key line says {named} but its base64 blob holds a {blob} key")]
    TypeMismatch { named: String, blob: String },
}

/// An RSA public key: big-endian magnitudes without leading zero bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    pub e: Vec<u8>,
    pub n: Vec<u8>,
}

impl RsaPublicKey {
    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        match self.n.first() {
            Some(top) => self.n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        }
    }
}

/// Reads the SSH wire format: length-prefixed strings and mpints.
#[derive(Debug)]
pub struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, SshKeyError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(SshKeyError::Malformed(what))?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    /// A length-prefixed byte string.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], SshKeyError> {
        let len = usize::try_from(self.u32(what)?).map_err(|_| SshKeyError::Malformed(what))?;
        if len > self.rest.len() {
            return Err(SshKeyError::Malformed(what));
        }
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    /// A non-negative mpint, as its magnitude without leading zero bytes.
    pub fn mpint(&mut self, what: &'static str) -> Result<Vec<u8>, SshKeyError> {
        let raw = self.string(what)?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(SshKeyError::Malformed(what));
        }
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        Ok(raw[start..].to_vec())
    }
}

/// Splits a key line into whitespace-separated tokens; double quotes (in options such as
/// `command="…"`) protect spaces, and `\"` inside them does not end the quote.
pub fn line_tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// Whether `token` is an OpenSSH key type (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `sk-…`).
pub fn is_key_type(token: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"]
        .iter()
        .any(|prefix| token.starts_with(prefix))
}

/// Where the key type is among a line's [`line_tokens`]: first, or second after the options
/// (which are one token: spaces in them are quoted), as sshd reads an authorized_keys line.
pub fn type_position(tokens: &[&str]) -> Option<usize> {
    tokens.iter().take(2).position(|t| is_key_type(t))
}

/// The RSA public key of an OpenSSH public key line (`[options] ssh-rsa AAAA… [comment]`).
pub fn rsa_public_key(line: &str) -> Result<RsaPublicKey, SshKeyError> {
    if line.len() > MAX_KEY_LINE_BYTES {
        return Err(SshKeyError::TooLong);
    }
    let tokens = line_tokens(line);
    let at = type_position(&tokens).ok_or(SshKeyError::NoKey)?;
    let kind = tokens[at];
    if kind != SSH_RSA {
        return Err(SshKeyError::NotRsa(kind.to_owned()));
    }
    let blob = tokens.get(at + 1).ok_or(SshKeyError::NoKey)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| SshKeyError::Base64)?;
    rsa_public_key_blob(&bytes)
}

/// Checks that `line` is an OpenSSH public key line as sshd reads one from authorized_keys
/// (`[options] type base64 [comment]`): a key type, then a base64 blob that decodes and
/// names the same type first. Returns the key type.
pub fn check_public_key_line(line: &str) -> Result<&str, SshKeyError> {
    if line.len() > MAX_KEY_LINE_BYTES {
        return Err(SshKeyError::TooLong);
    }
    let tokens = line_tokens(line);
    let at = type_position(&tokens).ok_or(SshKeyError::NoKey)?;
    let kind = tokens[at];
    let blob = tokens.get(at + 1).ok_or(SshKeyError::NoKey)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| SshKeyError::Base64)?;
    let named = WireReader::new(&bytes).string("key type")?;
    if named != kind.as_bytes() {
        return Err(SshKeyError::TypeMismatch {
            named: kind.to_owned(),
            blob: String::from_utf8_lossy(named).into_owned(),
        });
    }
    Ok(kind)
}

/// The RSA public key of a key blob (the base64-decoded middle of a key line).
pub fn rsa_public_key_blob(blob: &[u8]) -> Result<RsaPublicKey, SshKeyError> {
    let mut reader = WireReader::new(blob);
    let kind = reader.string("key type")?;
    if kind != SSH_RSA.as_bytes() {
        return Err(SshKeyError::NotRsa(
            String::from_utf8_lossy(kind).into_owned(),
        ));
    }
    let e = reader.mpint("exponent")?;
    let n = reader.mpint("modulus")?;
    if e.is_empty() || n.is_empty() || !reader.rest().is_empty() {
        return Err(SshKeyError::Malformed("ssh-rsa blob"));
    }
    Ok(RsaPublicKey { e, n })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t rsa -b 1024 -f k -N '' -C test`, public half.
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDvzE1vURrSfGGgOLqdxmWudW9OCpWVrNNuVYIWndF4Qe4d8Ih1X81a/HL1kUgfA/Cc0x6/JEfupDR2gD82dURavLBbnPmb+NGid0Gjnv3asztLW+TT6zQocmHiyCf+/lRrXpckGGOix9d3Zvqe6RPwpptHG6l48L+jrC9BsU+WNw== test";

    #[test]
    fn reads_e_and_n_of_an_rsa_key() {
        let key = rsa_public_key(RSA_1024).unwrap();
        assert_eq!(key.e, [1, 0, 1]);
        assert_eq!(key.bits(), 1024);
        assert_eq!(key.n.len(), 128);
        // Options in front are skipped.
        let with_options = format!("no-pty,command=\"x\" {RSA_1024}");
        assert_eq!(rsa_public_key(&with_options).unwrap(), key);
        // Quoted options are one token, whatever words they hold.
        let quoted = format!("command=\"exec ssh-agent \\\"a b\\\" bash\",no-pty {RSA_1024}");
        assert_eq!(rsa_public_key(&quoted).unwrap(), key);
    }

    #[test]
    fn public_key_lines_are_checked_as_sshd_reads_them() {
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKc2R9H0dJ1rXgmyMO0DdLcJ9v9P6dgoQ3WPhBkkC0Vm u@h";
        assert_eq!(check_public_key_line(ed), Ok("ssh-ed25519"));
        assert_eq!(check_public_key_line(RSA_1024), Ok(SSH_RSA));
        let with_options = format!("no-pty,command=\"echo \\\"hi\\\"\" {ed}");
        assert_eq!(check_public_key_line(&with_options), Ok("ssh-ed25519"));
        for garbage in [
            "",
            "hello",
            "\"\"\"\"",
            "ssh-ed25519",
            "AAAAC3NzaC1lZDI1NTE5 u@h",
        ] {
            assert_eq!(
                check_public_key_line(garbage),
                Err(SshKeyError::NoKey),
                "{garbage:?}"
            );
        }
        assert_eq!(
            check_public_key_line("ssh-ed25519 \"\"\"\""),
            Err(SshKeyError::Base64)
        );
        assert!(matches!(
            check_public_key_line("ssh-ed25519 AAAA"),
            Err(SshKeyError::Malformed(_))
        ));
        let lie = format!("ssh-rsa {}", ed.split_whitespace().nth(1).unwrap());
        assert_eq!(
            check_public_key_line(&lie),
            Err(SshKeyError::TypeMismatch {
                named: SSH_RSA.into(),
                blob: "ssh-ed25519".into()
            })
        );
        assert_eq!(
            check_public_key_line(&"x".repeat(MAX_KEY_LINE_BYTES + 1)),
            Err(SshKeyError::TooLong)
        );
    }

    #[test]
    fn other_keys_and_garbage_are_refused_with_the_reason() {
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKc2R9H0dJ1rXgmyMO0DdLcJ9v9P6dgoQ3WPhBkkC0Vm u@h";
        assert_eq!(
            rsa_public_key(ed),
            Err(SshKeyError::NotRsa("ssh-ed25519".into()))
        );
        assert!(
            rsa_public_key(ed)
                .unwrap_err()
                .to_string()
                .contains("not ssh-rsa")
        );
        assert_eq!(rsa_public_key("hello"), Err(SshKeyError::NoKey));
        assert_eq!(rsa_public_key("ssh-rsa"), Err(SshKeyError::NoKey));
        assert_eq!(rsa_public_key("ssh-rsa !!!"), Err(SshKeyError::Base64));
        // A blob cut short.
        let cut = &RSA_1024[..60];
        assert!(matches!(
            rsa_public_key(cut),
            Err(SshKeyError::Malformed(_) | SshKeyError::Base64)
        ));
        // An ed25519 blob under an ssh-rsa label.
        let lie = format!("ssh-rsa {}", ed.split_whitespace().nth(1).unwrap());
        assert_eq!(
            rsa_public_key(&lie),
            Err(SshKeyError::NotRsa("ssh-ed25519".into()))
        );
        assert_eq!(
            rsa_public_key(&"x".repeat(MAX_KEY_LINE_BYTES + 1)),
            Err(SshKeyError::TooLong)
        );
    }
}
