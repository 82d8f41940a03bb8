//! Content-Transfer-Encoding (RFC 2045 §6): `base64` and `quoted-printable` decoded, leniently
//! as Python's email package decodes them for cloud-init (characters outside the alphabet are
//! skipped, a broken `=` escape is kept as written); `7bit`, `8bit`, `binary` and unknown
//! encodings are the body as it is.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64 with or without padding, trailing bits ignored.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A part's body, decoded by its `Content-Transfer-Encoding`; `None` for base64 that does not
/// decode (a lone character left over).
pub fn decode(encoding: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let alphabet: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                .collect();
            LENIENT.decode(alphabet).ok()
        }
        Some("quoted-printable") => Some(quoted_printable(body)),
        _ => Some(body.to_vec()),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `=XX` bytes and soft line breaks (`=` at a line's end, trailing blanks allowed).
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'=' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        if let (Some(hi), Some(lo)) = (
            body.get(i + 1).copied().and_then(hex),
            body.get(i + 2).copied().and_then(hex),
        ) {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        let blanks = body[i + 1..]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        match &body[i + 1 + blanks..] {
            [b'\r', b'\n', ..] => i += 3 + blanks,
            [b'\n', ..] => i += 2 + blanks,
            [] => i += 1 + blanks,
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_skips_what_is_not_its_alphabet() {
        let body = b"IyEvYmluL3NoCmVj\r\naG8gaGVsbG8K\n";
        assert_eq!(
            decode(Some("Base64"), body).unwrap(),
            b"#!/bin/sh\necho hello\n"
        );
        assert_eq!(decode(Some("base64"), b"aGk=\n").unwrap(), b"hi");
        assert_eq!(decode(Some("base64"), b"aGk").unwrap(), b"hi");
        assert_eq!(decode(Some("base64"), b"aGk*!").unwrap(), b"hi");
        assert_eq!(decode(Some("base64"), b"aGkxa"), None);
    }

    #[test]
    fn quoted_printable_decodes_escapes_and_soft_breaks() {
        let body = b"caf=C3=A9 =3D x=\r\ny=  \nz= broken =ZZ";
        assert_eq!(
            decode(Some("quoted-printable"), body).unwrap(),
            "café = xyz= broken =ZZ".as_bytes()
        );
    }

    #[test]
    fn other_encodings_keep_the_body() {
        for encoding in [
            None,
            Some("7bit"),
            Some("8bit"),
            Some("binary"),
            Some("x-uue"),
        ] {
            assert_eq!(decode(encoding, b"=41\n").unwrap(), b"=41\n");
        }
    }
}
