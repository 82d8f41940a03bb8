//! Request path normalisation (docs/protocol.md §1.1): percent-decoding, then POSIX `normpath` —
//! `//` collapses, `.` and `..` resolve (never above the root), trailing slashes do not matter.

use std::borrow::Cow;

/// Longest path accepted after decoding, in bytes.
pub const MAX_PATH_BYTES: usize = 2048;
/// Most raw bytes one decoded byte comes from: a `%XX` escape.
pub const PERCENT_ESCAPE_BYTES: usize = 3;
/// Longest path accepted before decoding, in bytes: [`MAX_PATH_BYTES`] bytes, every one
/// escaped. A longer one cannot decode to a path short enough, so it is refused undecoded.
pub const MAX_RAW_PATH_BYTES: usize = MAX_PATH_BYTES * PERCENT_ESCAPE_BYTES;

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotUtf8,
    NulByte,
    TooLong,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotUtf8 => "request path is not valid UTF-8 once percent-decoded",
            Self::NulByte => "request path contains a NUL byte",
            Self::TooLong => "request path is too long",
        }
    }
}

/// One segment of a normalised path: a slice of the request's path when the path has no
/// `%` escape (nothing is copied), else decoded text of its own.
pub type Segment<'a> = Cow<'a, str>;

/// Splits a raw request path (without the query) into its normalised segments: `/` gives none.
pub fn segments(raw: &str) -> Result<Vec<Segment<'_>>, PathError> {
    if raw.len() > MAX_RAW_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if !raw.contains('%') {
        // Decoding would change nothing: the same checks on the path as it is.
        check(raw.as_bytes())?;
        return Ok(normalise(raw.split('/').map(Cow::Borrowed)));
    }
    let decoded = percent_decode(raw.as_bytes());
    check(&decoded)?;
    let text = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    Ok(normalise(
        text.split('/').map(|part| Cow::Owned(part.to_owned())),
    ))
}

/// The checks on a decoded path: its length and no NUL byte.
fn check(decoded: &[u8]) -> Result<(), PathError> {
    if decoded.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if decoded.contains(&0) {
        return Err(PathError::NulByte);
    }
    Ok(())
}

/// POSIX `normpath` of the parts between slashes: empty parts and `.` go, `..` drops the
/// segment before it (never above the root).
fn normalise<'a>(parts: impl Iterator<Item = Segment<'a>>) -> Vec<Segment<'a>> {
    let mut out = Vec::new();
    for part in parts {
        match &*part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(part),
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is (like Python's
/// `unquote`).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(hi), Some(lo)) = (hex_value(input[i + 1]), hex_value(input[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(raw: &str) -> Vec<Segment<'_>> {
        segments(raw).unwrap()
    }

    #[test]
    fn normalises_like_posix_normpath() {
        assert!(seg("/").is_empty());
        assert!(seg("").is_empty());
        assert!(seg("//").is_empty());
        assert_eq!(seg("/openstack/"), ["openstack"]);
        assert_eq!(seg("//openstack//latest/"), ["openstack", "latest"]);
        assert_eq!(
            seg("/openstack/latest/../2012-08-10/./meta_data.json"),
            ["openstack", "2012-08-10", "meta_data.json"]
        );
        assert_eq!(seg("/../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(seg("/%2e%2e/%2E%2E/openstack"), ["openstack"]);
        assert_eq!(seg("/open%73tack"), ["openstack"]);
        assert_eq!(seg("/a%2fb"), ["a", "b"]);
        assert_eq!(seg("/100%"), ["100%"]);
        assert_eq!(seg("/%zz"), ["%zz"]);
    }

    #[test]
    fn refuses_bad_bytes_and_long_paths() {
        assert_eq!(segments("/%ff%fe"), Err(PathError::NotUtf8));
        assert_eq!(segments("/a%00b"), Err(PathError::NulByte));
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES + 1));
        assert_eq!(segments(&long), Err(PathError::TooLong));
        let ok = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(segments(&ok).is_ok());
        // Escaped, the longest path is MAX_RAW_PATH_BYTES long before decoding.
        let escaped = format!("%2F{}", "%61".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(escaped.len(), MAX_RAW_PATH_BYTES);
        assert!(segments(&escaped).is_ok());
        assert_eq!(segments(&format!("{escaped}a")), Err(PathError::TooLong));
    }

    proptest! {
        #[test]
        fn never_yields_dot_segments_or_empty_ones(raw in "[/a-z.%0-9]{0,64}") {
            if let Ok(parts) = segments(&raw) {
                for part in parts {
                    prop_assert!(part != "." && part != ".." && !part.is_empty() && !part.contains('/'));
                }
            }
        }
    }
}
