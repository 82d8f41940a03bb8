//! The `Date` header of every response, formatted once a second per thread (as hyper sends
//! it: IMF-fixdate).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Wed, 02 Dec 2026 13:47:47 GMT`.
pub const DATE_LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const {
        RefCell::new(Cached { second: u64::MAX, text: [b' '; DATE_LEN] })
    };
}

/// Appends the current date to `out`.
pub fn append(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            }
        }
        out.extend_from_slice(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut out = Vec::new();
        append(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), DATE_LEN);
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let skew = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(skew.as_secs() <= 2, "{text}");
    }
}
