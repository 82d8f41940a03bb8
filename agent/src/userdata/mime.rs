//! MIME multipart user data (what cloud-init's `make-mime` writes), split with mailparse into
//! leaf parts; transfer encodings (base64, quoted-printable) are decoded here.

use mailparse::ParsedMail;

/// How far into user data cloud-init looks for `MIME-Version:` to decide it is MIME.
pub const MIME_SNIFF_BYTES: usize = 4096;
/// Most leaf parts one message may have.
pub const MAX_MIME_PARTS: usize = 256;
/// Deepest nesting of multipart inside multipart.
pub const MAX_MIME_DEPTH: usize = 8;

/// A leaf part of a MIME message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePart {
    /// Lower-case MIME type (`text/cloud-config`, …).
    pub content_type: String,
    /// The `filename` of its Content-Disposition, if any.
    pub filename: Option<String>,
    /// The body after transfer decoding.
    pub body: Vec<u8>,
}

/// A MIME message that could not be split.
#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    #[error("Malformed MIME message")]
    Parse(#[source] mailparse::MailParseError),
    #[error("MIME multipart message has no boundary parameter in its Content-Type")]
    NoBoundary,
    #[error("MIME multipart message has no parts (boundary {0:?} never appears)")]
    NoParts(String),
    #[error("MIME message has more than {MAX_MIME_PARTS} parts")]
    TooManyParts,
    #[error("MIME multipart nested more than {MAX_MIME_DEPTH} levels deep")]
    TooDeep,
}

/// True when `MIME-Version:` appears (any case) in the first [`MIME_SNIFF_BYTES`] bytes.
pub fn looks_like_mime(data: &[u8]) -> bool {
    let head = &data[..data.len().min(MIME_SNIFF_BYTES)];
    head.windows(b"mime-version:".len())
        .any(|w| w.eq_ignore_ascii_case(b"mime-version:"))
}

/// Splits a MIME message into its leaf parts, in order.
pub fn split(data: &[u8]) -> Result<Vec<MimePart>, MimeError> {
    let mail = mailparse::parse_mail(data).map_err(MimeError::Parse)?;
    let mut parts = Vec::new();
    collect(&mail, 0, &mut parts)?;
    Ok(parts)
}

fn collect(mail: &ParsedMail<'_>, depth: usize, out: &mut Vec<MimePart>) -> Result<(), MimeError> {
    if depth > MAX_MIME_DEPTH {
        return Err(MimeError::TooDeep);
    }
    let content_type = mail.ctype.mimetype.to_ascii_lowercase();
    if content_type.starts_with("multipart/") {
        let Some(boundary) = mail.ctype.params.get("boundary") else {
            return Err(MimeError::NoBoundary);
        };
        if mail.subparts.is_empty() {
            return Err(MimeError::NoParts(boundary.clone()));
        }
        for sub in &mail.subparts {
            collect(sub, depth + 1, out)?;
        }
        return Ok(());
    }
    if out.len() >= MAX_MIME_PARTS {
        return Err(MimeError::TooManyParts);
    }
    let filename = mail
        .get_content_disposition()
        .params
        .get("filename")
        .cloned();
    let body = mail.get_body_raw().map_err(MimeError::Parse)?;
    out.push(MimePart {
        content_type,
        filename,
        body,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python's email package (cloud-init's `make-mime`) emits, base64 script included.
    const TWO_PARTS: &str = "Content-Type: multipart/mixed; boundary=\"===============5555==\"\n\
MIME-Version: 1.0\n\
\n\
--===============5555==\n\
Content-Type: text/x-shellscript; charset=\"utf-8\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: base64\n\
Content-Disposition: attachment; filename=\"hello.sh\"\n\
\n\
IyEvYmluL3NoCmVjaG8gaGVsbG8K\n\
\n\
--===============5555==\n\
Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\n\
Content-Disposition: attachment; filename=\"config.yaml\"\n\
\n\
#cloud-config\n\
hostname: mime\n\
\n\
--===============5555==--\n";

    #[test]
    fn sniffs_mime_version_case_insensitively_in_the_head_only() {
        assert!(looks_like_mime(b"Content-Type: x\nmime-VERSION: 1.0\n"));
        assert!(!looks_like_mime(b"#cloud-config\nhostname: x\n"));
        let mut late = vec![b' '; MIME_SNIFF_BYTES];
        late.extend(b"MIME-Version: 1.0");
        assert!(!looks_like_mime(&late));
    }

    #[test]
    fn splits_make_mime_output_and_decodes_base64() {
        let parts = split(TWO_PARTS.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/x-shellscript");
        assert_eq!(parts[0].filename.as_deref(), Some("hello.sh"));
        assert_eq!(parts[0].body, b"#!/bin/sh\necho hello\n");
        assert_eq!(parts[1].content_type, "text/cloud-config");
        assert!(String::from_utf8_lossy(&parts[1].body).contains("hostname: mime"));
    }

    #[test]
    fn multipart_without_boundary_is_an_error() {
        let msg = "Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n--x\n\nbody\n";
        assert!(matches!(split(msg.as_bytes()), Err(MimeError::NoBoundary)));
        let msg = "Content-Type: multipart/mixed; boundary=zz\nMIME-Version: 1.0\n\nno parts\n";
        assert!(matches!(split(msg.as_bytes()), Err(MimeError::NoParts(b)) if b == "zz"));
    }

    #[test]
    fn a_single_part_message_is_one_part() {
        let msg = "Content-Type: text/cloud-config\nMIME-Version: 1.0\n\n#cloud-config\n";
        let parts = split(msg.as_bytes()).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].content_type, "text/cloud-config");
    }

    fn many_parts(n: usize) -> String {
        let mut msg =
            String::from("Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n");
        for i in 0..n {
            msg.push_str(&format!(
                "--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho {i}\n"
            ));
        }
        msg.push_str("--b--\n");
        msg
    }

    #[test]
    fn the_part_count_is_bounded() {
        assert_eq!(
            split(many_parts(MAX_MIME_PARTS).as_bytes()).unwrap().len(),
            MAX_MIME_PARTS
        );
        assert!(matches!(
            split(many_parts(MAX_MIME_PARTS + 1).as_bytes()),
            Err(MimeError::TooManyParts)
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut msg = String::from("Content-Type: text/plain\n\nleaf\n");
        for level in 0..=MAX_MIME_DEPTH {
            msg = format!(
                "Content-Type: multipart/mixed; boundary=b{level}\nMIME-Version: 1.0\n\n--b{level}\n{msg}--b{level}--\n"
            );
        }
        assert!(matches!(split(msg.as_bytes()), Err(MimeError::TooDeep)));
    }
}
