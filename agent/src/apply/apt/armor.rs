//! An ASCII-armored OpenPGP key turned into the binary keyring apt reads from
//! `/etc/apt/trusted.gpg.d/NAME.gpg` (what `gpg --dearmor` makes, which cloud-init runs; the
//! image needs no gpg here). RFC 4880 §6.2: a `-----BEGIN PGP …-----` line, header lines up
//! to an empty line, the base64 body, an optional `=` line with the body's CRC-24, the `END`
//! line.

use base64::Engine;

/// The most bytes an armored key may have (a large RSA key with many signatures is ~100 KiB).
pub const MAX_ARMORED_BYTES: usize = 1024 * 1024;

/// What is wrong with an armored key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArmorError {
    #[error("not an ASCII-armored OpenPGP key: no \"-----BEGIN PGP PUBLIC KEY BLOCK-----\" line")]
    NoBegin,
    #[error("the armored key ends before its \"-----END PGP …-----\" line")]
    NoEnd,
    #[error("the armored key's body is not base64: {0}")]
    Base64(String),
    #[error("the armored key's checksum does not match its body: the key was damaged")]
    Checksum,
    #[error("the armored key is larger than {MAX_ARMORED_BYTES} bytes")]
    TooLarge,
    #[error("the armored key has an empty body")]
    Empty,
}

/// The binary packets of the armored key `text`.
pub fn dearmor(text: &str) -> Result<Vec<u8>, ArmorError> {
    if text.len() > MAX_ARMORED_BYTES {
        return Err(ArmorError::TooLarge);
    }
    let mut lines = text
        .lines()
        .map(|line| line.trim_end())
        .skip_while(|line| !(line.starts_with("-----BEGIN PGP ") && line.ends_with("-----")));
    lines.next().ok_or(ArmorError::NoBegin)?;
    // Header lines (`Version: …`, `Comment: …`) up to the empty line.
    let mut lines = lines.skip_while(|line| line.contains(": ") && !line.is_empty());
    let mut body = String::new();
    let mut checksum = None;
    let mut ended = false;
    for line in lines.by_ref() {
        if line.starts_with("-----END PGP ") {
            ended = true;
            break;
        }
        if let Some(sum) = line.strip_prefix('=').filter(|sum| sum.len() == 4) {
            checksum = Some(sum.to_owned());
        } else {
            body.push_str(line.trim());
        }
    }
    if !ended {
        return Err(ArmorError::NoEnd);
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let packets = engine
        .decode(body.as_bytes())
        .map_err(|err| ArmorError::Base64(err.to_string()))?;
    if packets.is_empty() {
        return Err(ArmorError::Empty);
    }
    if let Some(sum) = checksum {
        let sum = engine
            .decode(sum.as_bytes())
            .map_err(|err| ArmorError::Base64(err.to_string()))?;
        let crc = crc24(&packets);
        if sum != crc.to_be_bytes()[1..] {
            return Err(ArmorError::Checksum);
        }
    }
    Ok(packets)
}

/// OpenPGP's CRC-24 (RFC 4880 §6.1).
pub fn crc24(bytes: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &byte in bytes {
        crc ^= u32::from(byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armored(body: &[u8], headers: &str) -> String {
        let engine = base64::engine::general_purpose::STANDARD;
        let encoded = engine.encode(body);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let sum = engine.encode(&crc24(body).to_be_bytes()[1..]);
        format!(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n{headers}\n{}\n={sum}\n\
             -----END PGP PUBLIC KEY BLOCK-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn crc24_of_rfc_4880() {
        // The CRC of nothing is the initial value; of "123456789" the catalogue's check value.
        assert_eq!(crc24(b""), 0x00B7_04CE);
        assert_eq!(crc24(b"123456789"), 0x0021_CF02);
    }

    #[test]
    fn body_decoded_with_or_without_headers() {
        let body: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        assert_eq!(dearmor(&armored(&body, "")).unwrap(), body);
        let with_headers = armored(&body, "Version: GnuPG v2\nComment: test key\n");
        assert_eq!(dearmor(&with_headers).unwrap(), body);
        // Text around the block and CRLF line ends are tolerated.
        let around = format!(
            "key follows\r\n{}\r\ntrailing",
            with_headers.replace('\n', "\r\n")
        );
        assert_eq!(dearmor(&around).unwrap(), body);
        // Without its checksum line.
        let unsummed: String = armored(&body, "")
            .lines()
            .filter(|l| !l.starts_with('='))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(dearmor(&unsummed).unwrap(), body);
    }

    #[test]
    fn damaged_keys_are_refused() {
        let body = b"an OpenPGP packet".to_vec();
        let good = armored(&body, "");
        assert_eq!(dearmor("ssh-ed25519 AAAA"), Err(ArmorError::NoBegin));
        let cut: String = good.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(dearmor(&cut), Err(ArmorError::NoEnd));
        let flipped = good.replacen("YW4g", "YW5g", 1);
        assert_ne!(flipped, good);
        assert_eq!(dearmor(&flipped), Err(ArmorError::Checksum));
        let bad = good.replacen("YW4g", "Y*4g", 1);
        assert!(matches!(dearmor(&bad), Err(ArmorError::Base64(_))));
        let huge = "A".repeat(MAX_ARMORED_BYTES + 1);
        assert_eq!(dearmor(&huge), Err(ArmorError::TooLarge));
    }
}
