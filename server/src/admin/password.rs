//! `instance get-password NAME --private-key FILE` (nova's `get-password`, docs/protocol.md
//! §9.7): the password a guest agent posted, encrypted for the instance's first SSH key,
//! decrypted here with the matching private key (or `--raw`: the stored base64 as it is).
//!
//! The private key is read from an OpenSSH (`ssh-keygen`'s default), PKCS#1 or PKCS#8 PEM
//! file without a passphrase. It must be the pair of the instance's first key pair, which is
//! checked before decrypting: PKCS#1 v1.5 decryption with a wrong key gives no error, only
//! garbage (the `rsa` crate's implicit rejection, its defence against Marvin-style timing
//! attacks; decryption is also blinded).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use metaboot_proto::ssh_key::{self, SshKeyError, WireReader};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{BoxedUint, Pkcs1v15Encrypt, PrivateKey};

use super::input::InputError;
use super::output;
use crate::store::Store;

/// Largest private key file read.
pub const MAX_PRIVATE_KEY_BYTES: u64 = 64 * 1024;

/// `instance get-password`'s arguments.
#[derive(Debug, Args)]
pub struct GetPasswordArgs {
    /// The instance (uuid or unique name).
    pub instance: String,
    /// The private key of the instance's first key pair (RSA, no passphrase).
    #[arg(long = "private-key", required_unless_present = "raw")]
    pub private_key: Option<PathBuf>,
    /// Print the stored text (base64 of the RSA ciphertext) instead of decrypting it.
    #[arg(long, conflicts_with = "private_key")]
    pub raw: bool,
}

/// Prints the instance's posted password.
pub fn run(store: &dyn Store, args: &GetPasswordArgs) -> anyhow::Result<()> {
    let instance = store.instance(&args.instance)?;
    let stored = instance.password.clone().unwrap_or_default();
    if stored.is_empty() {
        anyhow::bail!(
            "instance {} has no password yet: its guest agent posts one at first boot when \
             `password_postback: true` is in its user data or metaboot.yaml",
            instance.name
        );
    }
    if args.raw {
        return print_stored_lines(stored.trim_end_matches(['\r', '\n']));
    }
    let Some(path) = &args.private_key else {
        return Err(InputError("give --private-key FILE, or --raw".to_owned()).into());
    };
    // The key the guest agent encrypts with: the first SSH key pair (an x509 one is none).
    let Some(first) = instance.key_pairs.iter().find(|pair| pair.is_ssh()) else {
        return Err(InputError(format!(
            "instance {} has no SSH key pair, so nothing can decrypt its password: see the \
             stored text with --raw",
            instance.name
        ))
        .into());
    };
    let public = ssh_key::rsa_public_key(&first.data).map_err(|err| {
        InputError(format!(
            "the first SSH key pair of instance {} ({}) is not RSA: {err}",
            instance.name, first.name
        ))
    })?;
    let key = read_private_key(path)?;
    if key.n().to_be_bytes_trimmed_vartime().as_ref() != public.n.as_slice() {
        return Err(InputError(format!(
            "{} is not the private key of key pair {} (the first SSH key of instance {}), \
             which the password is encrypted with",
            path.display(),
            first.name,
            instance.name
        ))
        .into());
    }
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(without_whitespace(&stored))
        .map_err(|_| {
            anyhow::anyhow!(
                "the stored password of instance {} is not base64 (it was not posted \
                 encrypted; see it with --raw)",
                instance.name
            )
        })?;
    let plain = key
        .decrypt(Pkcs1v15Encrypt, &ciphertext)
        .map_err(|err| anyhow::anyhow!("failed to decrypt the password: {err}"))?;
    let password = String::from_utf8(plain).map_err(|_| {
        anyhow::anyhow!(
            "the decrypted password is not text: it was not encrypted for key pair {}",
            first.name
        )
    })?;
    // A password a shell agent posted as `echo "$PW" | openssl … | base64` ends with the line
    // break `echo` adds, which is not part of it.
    let password = password
        .strip_suffix('\n')
        .map(|text| text.strip_suffix('\r').unwrap_or(text))
        .unwrap_or(&password);
    print_posted("decrypted password", password)
}

/// Base64 text without the line breaks and spaces it may be wrapped with (`base64` wraps at 76
/// columns; a key file written on Windows ends its lines with CR), which novaclient and OpenSSH
/// skip too.
fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Prints what a guest posted. The guest chose every byte of it (it has the public key), so
/// text with a control character, such as a terminal's escape sequence or a line break inside
/// a password, is not printed as it is: the error shows it escaped.
fn print_posted(what: &str, text: &str) -> anyhow::Result<()> {
    print_posted_lines(what, text, false)
}

/// [`print_posted`] for the stored base64, which may be wrapped over lines (LF or CRLF): each
/// line is printed as it is stored, which `base64 -d` reads back.
fn print_stored_lines(text: &str) -> anyhow::Result<()> {
    print_posted_lines("stored text", text, true)
}

fn print_posted_lines(what: &str, text: &str, wrapped: bool) -> anyhow::Result<()> {
    let lines: Vec<&str> = if wrapped {
        text.lines().collect()
    } else {
        vec![text]
    };
    if text.is_empty() || lines.iter().any(|line| line.chars().any(char::is_control)) {
        anyhow::bail!(
            "the {what} is empty or holds control characters, so it is not printed as it is: \
             \"{}\"",
            text.escape_default()
        );
    }
    lines.into_iter().try_for_each(output::line)
}

/// Reads an RSA private key file: OpenSSH, PKCS#1 or PKCS#8, without a passphrase. Reads one
/// byte past [`MAX_PRIVATE_KEY_BYTES`] so a larger file is refused for its size, not cut
/// short and refused as a malformed key.
fn read_private_key(path: &Path) -> Result<PrivateKey, InputError> {
    use std::io::Read as _;
    let shown = path.display();
    let cannot_read =
        |err: std::io::Error| InputError(format!("cannot read the private key {shown}: {err}"));
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_PRIVATE_KEY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_PRIVATE_KEY_BYTES {
        return Err(InputError(format!(
            "the private key {shown} is larger than {MAX_PRIVATE_KEY_BYTES} bytes, which no RSA \
             key file is: give the key file itself (as ssh-keygen writes it)"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        InputError(format!(
            "{shown}: not a private key (not text; expected OpenSSH, PKCS#1 or PKCS#8 PEM, as \
             ssh-keygen writes)"
        ))
    })?;
    let bad = |why: &str| InputError(format!("{shown}: {why}"));
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return openssh_private_key(&text).map_err(|why| bad(&why));
    }
    if text.contains("ENCRYPTED") {
        return Err(bad(
            "the key has a passphrase: decrypt a copy first (ssh-keygen -p -N '' -f COPY)",
        ));
    }
    if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return PrivateKey::from_pkcs1_pem(&text)
            .map_err(|err| bad(&format!("not a usable PKCS#1 RSA key ({err})")));
    }
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        return PrivateKey::from_pkcs8_pem(&text)
            .map_err(|err| bad(&format!("not a usable PKCS#8 RSA key ({err})")));
    }
    Err(bad(
        "not a private key (expected OpenSSH, PKCS#1 or PKCS#8 PEM, as ssh-keygen writes)",
    ))
}

/// The magic at the start of an OpenSSH private key (PROTOCOL.key).
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// An unencrypted `openssh-key-v1` RSA key: after the magic, the cipher ("none"), the KDF,
/// its options, the key count, the public keys, then the private section (two equal check
/// words, "ssh-rsa", n, e, d, iqmp, p, q, comment).
fn openssh_private_key(text: &str) -> Result<PrivateKey, String> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(without_whitespace(&body))
        .map_err(|_| "the OpenSSH key's base64 does not decode".to_owned())?;
    let malformed = |err: SshKeyError| format!("a malformed OpenSSH key ({err})");
    let rest = bytes
        .strip_prefix(OPENSSH_MAGIC)
        .ok_or("not an openssh-key-v1 key")?;
    let mut reader = WireReader::new(rest);
    let cipher = reader.string("cipher").map_err(malformed)?;
    if cipher != b"none" {
        return Err(
            "the key has a passphrase: decrypt a copy first (ssh-keygen -p -N '' -f COPY)"
                .to_owned(),
        );
    }
    reader.string("kdf").map_err(malformed)?;
    reader.string("kdf options").map_err(malformed)?;
    if reader.u32("key count").map_err(malformed)? != 1 {
        return Err("the file holds several keys; give a file with one".to_owned());
    }
    reader.string("public key").map_err(malformed)?;
    let private = reader.string("private section").map_err(malformed)?;
    let mut reader = WireReader::new(private);
    let check = (
        reader.u32("check word").map_err(malformed)?,
        reader.u32("check word").map_err(malformed)?,
    );
    if check.0 != check.1 {
        return Err("a malformed OpenSSH key (check words differ)".to_owned());
    }
    let kind = reader.string("key type").map_err(malformed)?;
    if kind != ssh_key::SSH_RSA.as_bytes() {
        return Err(format!(
            "the key is {}, not ssh-rsa",
            String::from_utf8_lossy(kind)
        ));
    }
    let mut next = |what| reader.mpint(what).map_err(malformed);
    let (n, e, d) = (next("n")?, next("e")?, next("d")?);
    let _iqmp = next("iqmp")?;
    let (p, q) = (next("p")?, next("q")?);
    let bits = u32::try_from(n.len() * 8).map_err(|_| "the modulus is too large".to_owned())?;
    let uint = |value: &[u8], bits: u32| {
        BoxedUint::from_be_slice(value, bits).map_err(|_| "a malformed RSA component".to_owned())
    };
    let e_bits = u32::try_from(e.len() * 8).map_err(|_| "the exponent is too large".to_owned())?;
    PrivateKey::from_components(
        uint(&n, bits)?,
        uint(&e, e_bits)?,
        uint(&d, bits)?,
        vec![uint(&p, bits)?, uint(&q, bits)?],
    )
    .map_err(|err| format!("not a usable RSA key ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PEM-looking RSA key file of exactly `size` bytes (its base64 made up).
    fn pem_of_size(size: usize) -> String {
        const BEGIN: &str = "-----BEGIN RSA PRIVATE KEY-----\n";
        const END: &str = "-----END RSA PRIVATE KEY-----\n";
        let mut body: String = "A".repeat(size - BEGIN.len() - END.len() - 1);
        body.push('\n');
        format!("{BEGIN}{body}{END}")
    }

    #[test]
    fn a_private_key_file_larger_than_the_limit_is_refused_for_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_rsa");
        let limit = usize::try_from(MAX_PRIVATE_KEY_BYTES).unwrap();
        std::fs::write(&path, pem_of_size(limit + 1)).unwrap();
        let Err(InputError(msg)) = read_private_key(&path) else {
            panic!("a key file over the limit was taken");
        };
        assert!(
            msg.contains(&format!("larger than {MAX_PRIVATE_KEY_BYTES} bytes")),
            "{msg}"
        );
        // At the limit it is read whole, and refused for what it holds.
        std::fs::write(&path, pem_of_size(limit)).unwrap();
        let Err(InputError(msg)) = read_private_key(&path) else {
            panic!("made-up key material was taken");
        };
        assert!(msg.contains("not a usable PKCS#1 RSA key"), "{msg}");
    }
}
