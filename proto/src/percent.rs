//! Percent-decoding (`%XX`, two hex digits, to the byte), as Python's `urllib.parse.unquote`
//! reads it: any other `%` (`%zz`, `%+A`, a `%` at the end) stays as written. For the guest
//! agent's URL user info (`agent/src/source/url.rs`) and RFC 2231 header values
//! (`agent/src/userdata/mime/header.rs`), the server's PostgreSQL URLs
//! (`server/src/store/location.rs`) and the harness's phone-home forms
//! (`harness/src/check/phone_home.rs`).

/// The bytes `text` decodes to.
pub fn decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = match (bytes[at], bytes.get(at + 1..at + 3)) {
            (b'%', Some(&[high, low])) => hex(high).zip(hex(low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match byte {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    out
}

/// `text` decoded and read as UTF-8, invalid sequences replaced (`unquote`'s default).
pub fn decoded_text(text: &str) -> String {
    String::from_utf8_lossy(&decoded(text)).into_owned()
}

/// The value of one hex digit.
fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_hex_digits_after_a_percent_are_an_escape() {
        assert_eq!(decoded_text("p%40ss%2Fw%2fd"), "p@ss/w/d");
        for kept in ["%", "a%4", "%zz", "%+A", "%-1", "100%"] {
            assert_eq!(decoded_text(kept), kept);
        }
        assert_eq!(decoded_text("%E2%82%AC"), "€");
        assert_eq!(decoded_text("%FF"), "\u{fffd}");
        assert_eq!(decoded("%00%ff"), [0, 0xff]);
    }
}
