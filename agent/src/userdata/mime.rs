//! MIME multipart user data (what cloud-init's `make-mime` writes, RFC 2046 §5.1), split into
//! its leaf parts as Python's email package splits it for cloud-init: a part starts after a
//! line `--BOUNDARY` (trailing blanks allowed) and ends before the line break of the next one,
//! `--BOUNDARY--` ends the parts, the preamble and the epilogue are not parts, and a message
//! whose closing line is missing ends its last part at its end. Headers: `mime/header.rs`;
//! transfer encodings (base64, quoted-printable): `mime/transfer.rs`.

mod header;
mod transfer;

use header::{Head, Parameterised, line};

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
    /// The `filename` of its Content-Disposition, else the `name` of its Content-Type.
    pub filename: Option<String>,
    /// Its `Merge-Type` (or `X-Merge-Type`) header: how a cloud-config part merges.
    pub merge_type: Option<String>,
    /// Its `Launch-Index` header: the one instance of a multi-create request it is for.
    pub launch_index: Option<String>,
    /// The body after transfer decoding.
    pub body: Vec<u8>,
}

/// A part of a MIME message that could not be read (the others are still read).
#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    #[error("MIME part {0} is not valid base64; ignored")]
    Base64(usize),
    #[error("MIME multipart message has no boundary parameter in its Content-Type")]
    NoBoundary,
    #[error("MIME multipart message has no parts (boundary {0:?} never appears)")]
    NoParts(String),
    #[error("MIME message has more than {MAX_MIME_PARTS} parts; the rest is ignored")]
    TooManyParts,
    #[error("MIME multipart nested more than {MAX_MIME_DEPTH} levels deep; ignored")]
    TooDeep,
}

/// True when `MIME-Version:` appears (any case) in the first [`MIME_SNIFF_BYTES`] bytes.
pub fn looks_like_mime(data: &[u8]) -> bool {
    let head = &data[..data.len().min(MIME_SNIFF_BYTES)];
    head.windows(b"mime-version:".len())
        .any(|w| w.eq_ignore_ascii_case(b"mime-version:"))
}

/// A MIME message split: the leaf parts read, in order, and what could not be read.
#[derive(Debug, Default)]
pub struct Split {
    pub parts: Vec<MimePart>,
    /// One per part (or multipart) left out; a bad part never hides the good ones.
    pub errors: Vec<MimeError>,
    /// Leaf parts met, read or not (a part's number in an error).
    leaves: usize,
}

/// Splits a MIME message into its leaf parts, in order.
pub fn split(data: &[u8]) -> Split {
    let mut split = Split::default();
    collect(data, 0, &mut split);
    split
}

/// A delimiter line of `boundary` (its line break gone): `Some(true)` for the closing one
/// (`--BOUNDARY--`), `Some(false)` for the others.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (closing, tail) = match rest.strip_prefix(b"--") {
        Some(tail) => (true, tail),
        None => (false, rest),
    };
    tail.iter()
        .all(|b| b.is_ascii_whitespace())
        .then_some(closing)
}

/// `part` without the line break that ends it (it belongs to the delimiter after it).
fn without_line_break(part: &[u8]) -> &[u8] {
    let part = part.strip_suffix(b"\n").unwrap_or(part);
    part.strip_suffix(b"\r").unwrap_or(part)
}

/// The body parts of a multipart body: what lies between its delimiter lines; with no
/// closing delimiter the last part ends at the end.
fn body_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut at = 0;
    while at < body.len() {
        let (text, next) = line(body, at);
        if let Some(closing) = delimiter(text, boundary) {
            if let Some(from) = start {
                parts.push(without_line_break(&body[from..at]));
            }
            if closing {
                return parts;
            }
            start = Some(next);
        }
        at = next;
    }
    if let Some(from) = start {
        parts.push(without_line_break(&body[from..]));
    }
    parts
}

fn collect(entity: &[u8], depth: usize, out: &mut Split) {
    if depth > MAX_MIME_DEPTH {
        return out.errors.push(MimeError::TooDeep);
    }
    let head = Head::parse(entity);
    let body = &entity[head.body..];
    let mut content_type = head
        .get("content-type")
        .map(Parameterised::parse)
        .unwrap_or_default();
    let mimetype = if content_type.value.contains('/') {
        content_type.value
    } else {
        "text/plain".to_owned()
    };
    if mimetype.starts_with("multipart/") {
        let Some(boundary) = content_type.params.get("boundary") else {
            return out.errors.push(MimeError::NoBoundary);
        };
        let parts = body_parts(body, boundary.as_bytes());
        if parts.is_empty() {
            return out.errors.push(MimeError::NoParts(boundary.clone()));
        }
        for part in parts {
            collect(part, depth + 1, out);
        }
        return;
    }
    out.leaves += 1;
    if out.leaves > MAX_MIME_PARTS {
        if out.leaves == MAX_MIME_PARTS + 1 {
            out.errors.push(MimeError::TooManyParts);
        }
        return;
    }
    // As Python's `get_filename`: Content-Disposition's `filename`, else Content-Type's `name`,
    // blanks around taken off; an empty one is none (the part gets a `part-NNN` name).
    let filename = head
        .get("content-disposition")
        .map(Parameterised::parse)
        .and_then(|mut disposition| disposition.params.remove("filename"))
        .or_else(|| content_type.params.remove("name"))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    match transfer::decode(head.get("content-transfer-encoding"), body) {
        Some(body) => out.parts.push(MimePart {
            content_type: mimetype,
            filename,
            merge_type: head
                .get("merge-type")
                .or_else(|| head.get("x-merge-type"))
                .map(str::to_owned),
            launch_index: head.get("launch-index").map(str::to_owned),
            body,
        }),
        None => out.errors.push(MimeError::Base64(out.leaves)),
    }
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
        let parts = split(TWO_PARTS.as_bytes()).parts;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/x-shellscript");
        assert_eq!(parts[0].filename.as_deref(), Some("hello.sh"));
        assert_eq!(parts[0].body, b"#!/bin/sh\necho hello\n");
        assert_eq!(parts[1].content_type, "text/cloud-config");
        assert!(String::from_utf8_lossy(&parts[1].body).contains("hostname: mime"));
    }

    #[test]
    fn a_part_is_named_as_get_filename_names_it() {
        let message = |headers: &str| {
            format!(
                "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\n{headers}\n\
                 #!/bin/sh\n--B--\n"
            )
        };
        let name = |headers: &str| split(message(headers).as_bytes()).parts[0].filename.clone();
        assert_eq!(
            name("Content-Type: text/x-shellscript; name=\"10-first.sh\"\n").as_deref(),
            Some("10-first.sh")
        );
        assert_eq!(
            name(
                "Content-Type: text/x-shellscript; name=b.sh\n\
                 Content-Disposition: attachment; filename=\" a.sh \"\n"
            )
            .as_deref(),
            Some("a.sh")
        );
        assert_eq!(
            name(
                "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\" \"\n"
            ),
            None
        );
    }

    #[test]
    fn multipart_without_boundary_is_an_error() {
        let msg = "Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n--x\n\nbody\n";
        assert!(matches!(
            &split(msg.as_bytes()).errors[..],
            [MimeError::NoBoundary]
        ));
        let msg = "Content-Type: multipart/mixed; boundary=zz\nMIME-Version: 1.0\n\nno parts\n";
        assert!(matches!(&split(msg.as_bytes()).errors[..], [MimeError::NoParts(b)] if b == "zz"));
    }

    #[test]
    fn a_single_part_message_is_one_part() {
        let msg = "Content-Type: text/cloud-config\nMIME-Version: 1.0\n\n#cloud-config\n";
        let parts = split(msg.as_bytes()).parts;
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
        let all = split(many_parts(MAX_MIME_PARTS).as_bytes());
        assert_eq!(all.parts.len(), MAX_MIME_PARTS);
        assert!(all.errors.is_empty());
        // The first ones are kept, the rest reported once.
        let over = split(many_parts(MAX_MIME_PARTS + 2).as_bytes());
        assert_eq!(over.parts.len(), MAX_MIME_PARTS);
        assert!(matches!(&over.errors[..], [MimeError::TooManyParts]));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut msg = String::from("Content-Type: text/plain\n\nleaf\n");
        for level in 0..=MAX_MIME_DEPTH {
            msg = format!(
                "Content-Type: multipart/mixed; boundary=b{level}\nMIME-Version: 1.0\n\n--b{level}\n{msg}--b{level}--\n"
            );
        }
        let split = split(msg.as_bytes());
        assert!(matches!(&split.errors[..], [MimeError::TooDeep]));
        assert!(split.parts.is_empty());
    }

    /// Messages split by Python's email package as cloud-init splits user data
    /// (`email.message_from_string`, `walk()`, `get_content_type()`, `get_filename()`,
    /// `get_payload(decode=True)`): what it gave is what is expected here.
    #[test]
    fn splits_as_pythons_email_package() {
        type Expected<'a> = &'a [(&'a str, Option<&'a str>, &'a str)];
        let cases: [(&str, &str, Expected<'_>); 11] = [
            (
                "CRLF, preamble and epilogue",
                "Content-Type: multipart/mixed; boundary=\"XX\"\r\nMIME-Version: 1.0\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/x-shellscript\r\n\r\n#!/bin/sh\r\necho a\r\n--XX\r\nContent-Type: text/cloud-config\r\n\r\n#cloud-config\r\n--XX--\r\nepilogue\r\n",
                &[
                    ("text/x-shellscript", None, "#!/bin/sh\r\necho a"),
                    ("text/cloud-config", None, "#cloud-config"),
                ],
            ),
            (
                "no closing delimiter",
                "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\nContent-Type: text/plain\n\none\n--b\nContent-Type: text/plain\n\ntwo\n",
                &[("text/plain", None, "one"), ("text/plain", None, "two")],
            ),
            (
                "a longer boundary is not a delimiter; trailing blanks are",
                "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\nContent-Type: text/plain\n\none\n--bb\nstill one\n--b \nContent-Type: text/plain\n\ntwo\n--b--\n",
                &[
                    ("text/plain", None, "one\n--bb\nstill one"),
                    ("text/plain", None, "two"),
                ],
            ),
            (
                "a part without headers",
                "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\n\nbare\n--b--\n",
                &[("text/plain", None, "bare")],
            ),
            (
                "folded headers, an RFC 2231 file name",
                "Content-Type: multipart/mixed;\n boundary=\"fold\"\nMIME-Version: 1.0\n\n--fold\nContent-Type: text/x-shellscript;\n\tcharset=utf-8\nContent-Disposition: attachment;\n filename*=utf-8''my%20script.sh\n\n#!/bin/sh\n--fold--\n",
                &[("text/x-shellscript", Some("my script.sh"), "#!/bin/sh")],
            ),
            (
                "base64 without its padding",
                "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVs\nbG8\n--b--\n",
                &[("text/plain", None, "hello")],
            ),
            (
                "quoted-printable",
                "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9 =3D x=\ny\n--b--\n",
                &[("text/plain", None, "café = xy")],
            ),
            (
                "one part, its type in any case",
                "MIME-Version: 1.0\nContent-Type: Text/Cloud-Config\n\n#cloud-config\nhostname: x\n",
                &[("text/cloud-config", None, "#cloud-config\nhostname: x\n")],
            ),
            (
                "no Content-Type",
                "MIME-Version: 1.0\n\n#!/bin/sh\necho\n",
                &[("text/plain", None, "#!/bin/sh\necho\n")],
            ),
            (
                "multipart in multipart",
                "Content-Type: multipart/mixed; boundary=o\nMIME-Version: 1.0\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\nContent-Type: text/plain\n\ninner1\n--i\nContent-Type: text/x-shellscript\n\ninner2\n--i--\n--o\nContent-Type: text/cloud-config\n\nouter\n--o--\n",
                &[
                    ("text/plain", None, "inner1"),
                    ("text/x-shellscript", None, "inner2"),
                    ("text/cloud-config", None, "outer"),
                ],
            ),
            (
                "a type without a slash",
                "MIME-Version: 1.0\nContent-Type: garbage\n\nbody\n",
                &[("text/plain", None, "body\n")],
            ),
        ];
        for (what, message, expected) in cases {
            let split = split(message.as_bytes());
            assert!(split.errors.is_empty(), "{what}: {:?}", split.errors);
            let parts = split.parts;
            let got: Vec<(&str, Option<&str>, String)> = parts
                .iter()
                .map(|p| {
                    (
                        p.content_type.as_str(),
                        p.filename.as_deref(),
                        String::from_utf8_lossy(&p.body).into_owned(),
                    )
                })
                .collect();
            let want: Vec<(&str, Option<&str>, String)> = expected
                .iter()
                .map(|(t, f, b)| (*t, *f, (*b).to_owned()))
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn base64_that_does_not_decode_names_its_part_and_hides_no_other() {
        let msg = "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n--b\n\nok\n--b\nContent-Transfer-Encoding: base64\n\naGVsbG8x\nx\n--b\n\nafter\n--b--\n";
        let split = split(msg.as_bytes());
        let errors: Vec<String> = split.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors, ["MIME part 2 is not valid base64; ignored"]);
        let bodies: Vec<&[u8]> = split.parts.iter().map(|p| p.body.as_slice()).collect();
        assert_eq!(bodies, [&b"ok"[..], &b"after"[..]]);
    }
}
