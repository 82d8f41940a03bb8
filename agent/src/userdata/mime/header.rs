//! A MIME entity's header section (RFC 5322 §2.2, RFC 2045 §5.1, RFC 2231), as much of it as
//! user data needs: the fields by name, folded lines joined, and the parameters of
//! `Content-Type` and `Content-Disposition` with quoted strings, backslash escapes, and RFC 2231
//! continuations (`name*0`, `name*1`) and extended values (`name*=utf-8''hello%20world.sh`).

use std::collections::BTreeMap;

/// An entity's header fields, in order: (lower-case name, value with folds joined), and where
/// its body starts.
pub struct Head {
    fields: Vec<(String, String)>,
    /// Offset of the body in the entity.
    pub body: usize,
}

/// The line of `data` at `at`: (the line without its line break, the offset after it).
pub(super) fn line(data: &[u8], at: usize) -> (&[u8], usize) {
    let rest = &data[at..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let text = &rest[..end];
            (text.strip_suffix(b"\r").unwrap_or(text), at + end + 1)
        }
        None => (rest, data.len()),
    }
}

impl Head {
    /// Reads the header section of `entity`: up to the first empty line (which belongs to
    /// neither part), or the whole entity when there is none. A line that starts with a space
    /// or a tab continues the field before it; a line without a colon is the body's first line
    /// (as Python's email package, which cloud-init uses, takes it).
    pub fn parse(entity: &[u8]) -> Head {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut at = 0;
        while at < entity.len() {
            let (text, next) = line(entity, at);
            if text.is_empty() {
                return Head { fields, body: next };
            }
            if text[0] == b' ' || text[0] == b'\t' {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(String::from_utf8_lossy(text).trim());
                    at = next;
                    continue;
                }
                return Head { fields, body: at };
            }
            let Some(colon) = text.iter().position(|&b| b == b':') else {
                return Head { fields, body: at };
            };
            let name = String::from_utf8_lossy(&text[..colon])
                .trim()
                .to_ascii_lowercase();
            let value = String::from_utf8_lossy(&text[colon + 1..])
                .trim()
                .to_owned();
            fields.push((name, value));
            at = next;
        }
        Head {
            fields,
            body: entity.len(),
        }
    }

    /// The first field called `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parameterised field value (`text/x-shellscript; charset="utf-8"`): its lower-case value
/// and its parameters by lower-case name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parameterised {
    pub value: String,
    pub params: BTreeMap<String, String>,
}

/// Splits on `;` outside quoted strings.
fn split_unquoted(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// A parameter value without its quotes and escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// An RFC 2231 extended value (`charset'language'percent-encoded`), decoded as UTF-8 (what
/// the charsets user data carries, `utf-8` and `us-ascii`, are); `first` says whether the
/// charset and language come first.
fn extended(value: &str, first: bool) -> String {
    let encoded = if first {
        value.splitn(3, '\'').nth(2).unwrap_or(value)
    } else {
        value
    };
    metaboot_proto::percent::decoded_text(encoded)
}

impl Parameterised {
    /// Parses `value; name=value; …`.
    pub fn parse(text: &str) -> Parameterised {
        let mut pieces = split_unquoted(text).into_iter();
        let value = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        // RFC 2231 sections: (name, index) → (value, extended).
        let mut sections: BTreeMap<(String, usize), (String, bool)> = BTreeMap::new();
        let mut params = BTreeMap::new();
        for piece in pieces {
            let Some((name, raw)) = piece.split_once('=') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let raw = raw.trim();
            let (base, star) = match name.strip_suffix('*') {
                Some(base) => (base, true),
                None => (name.as_str(), false),
            };
            match base.rsplit_once('*').map(|(b, n)| (b, n.parse::<usize>())) {
                Some((base, Ok(index))) => {
                    let text = if star { raw.to_owned() } else { unquote(raw) };
                    sections.insert((base.to_owned(), index), (text, star));
                }
                _ if star => {
                    params.insert(base.to_owned(), extended(&unquote(raw), true));
                }
                _ => {
                    params
                        .entry(base.to_owned())
                        .or_insert_with(|| unquote(raw));
                }
            }
        }
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for ((base, index), (text, star)) in sections {
            let part = if star {
                extended(&text, index == 0)
            } else {
                text
            };
            joined.entry(base).or_default().push_str(&part);
        }
        // A value given whole (`name=` or `name*=`) wins over pieces of the same name.
        for (base, value) in joined {
            params.entry(base).or_insert(value);
        }
        Parameterised { value, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_fold_and_end_at_the_empty_line() {
        let entity =
            b"Content-Type: multipart/mixed;\r\n\tboundary=\"b\"\r\nX-Empty:\r\n\r\nbody\r\n";
        let head = Head::parse(entity);
        assert_eq!(
            head.get("content-type"),
            Some("multipart/mixed; boundary=\"b\"")
        );
        assert_eq!(head.get("x-empty"), Some(""));
        assert_eq!(&entity[head.body..], b"body\r\n");
        let no_body = Head::parse(b"Content-Type: text/plain\n");
        assert_eq!(no_body.body, 25);
        let no_head = Head::parse(b"\nbody");
        assert_eq!((no_head.get("content-type"), no_head.body), (None, 1));
        // A line without a colon starts the body.
        let early = Head::parse(b"Content-Type: text/plain\n#!/bin/sh\n");
        assert_eq!(early.body, 25);
    }

    #[test]
    fn parameters_are_unquoted_and_joined() {
        let ct = Parameterised::parse(
            "Text/Cloud-Config; charset=\"us-ascii\"; Boundary=\"a;b\\\"c\"; empty=; novalue",
        );
        assert_eq!(ct.value, "text/cloud-config");
        assert_eq!(ct.params["charset"], "us-ascii");
        assert_eq!(ct.params["boundary"], "a;b\"c");
        assert_eq!(ct.params["empty"], "");
        assert!(!ct.params.contains_key("novalue"));
        let cd = Parameterised::parse(
            "attachment; filename*=utf-8''hello%20w%C3%B6rld.sh; title*0=\"a \"; title*1=b",
        );
        assert_eq!(cd.params["filename"], "hello wörld.sh");
        assert_eq!(cd.params["title"], "a b");
        let cont = Parameterised::parse("attachment; filename*0*=utf-8''one%20; filename*1*=two");
        assert_eq!(cont.params["filename"], "one two");
        // Only two hex digits are an escape (Python's `unquote`): `%+A` stays as written.
        let signed = Parameterised::parse("attachment; filename*=utf-8''50%+Aoff.sh");
        assert_eq!(signed.params["filename"], "50%+Aoff.sh");
        assert_eq!(Parameterised::parse("").value, "");
    }
}
