//! Reading the guest's address from `X-Forwarded-For`.
//!
//! Our proxy replaces the header, but Neutron's haproxy (`option forwardfor`) appends its own
//! value after whatever the guest sent. Only the last address — the one the proxy added — is
//! trusted, so a guest cannot pose as another by sending the header itself.

use std::net::{IpAddr, Ipv4Addr};

use crate::http::names;
use http::{HeaderMap, HeaderValue};

/// Why no guest address could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedError {
    Missing,
    NotAnAddress,
}

/// The last address of all `X-Forwarded-For` lines, IPv4-mapped IPv6 turned into IPv4.
pub fn guest_address(headers: &HeaderMap) -> Result<IpAddr, ForwardedError> {
    guest(headers).map(|(ip, _)| ip)
}

/// The guest's address (see [`guest_address`]) and `X-Forwarded-For` as the agent passes it
/// to the API: that address, canonical. The proxy's line is reused when it is exactly that
/// text already (an IPv4 address, as our proxy writes it: `Ipv4Addr` parses only the form it
/// prints), sparing a format and a copy; the line is read and parsed once.
pub fn guest(headers: &HeaderMap) -> Result<(IpAddr, HeaderValue), ForwardedError> {
    let last_line = headers
        .get_all(names::FORWARDED_FOR)
        .iter()
        .next_back()
        .ok_or(ForwardedError::Missing)?;
    let text = last_line
        .to_str()
        .map_err(|_| ForwardedError::NotAnAddress)?;
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Ok((IpAddr::V4(v4), last_line.clone()));
    }
    let last = text.rsplit(',').next().unwrap_or_default().trim();
    if last.is_empty() {
        return Err(ForwardedError::Missing);
    }
    let ip = parse_address(last).ok_or(ForwardedError::NotAnAddress)?;
    // An IP address is always a valid header value.
    let value =
        HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""));
    Ok((ip, value))
}

/// An IP address as proxies write it: plain, or IPv6 in brackets.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use metaboot_proto::headers;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(headers::FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn trusts_only_the_last_address() {
        let ip = |v: &[&str]| guest_address(&with(v));
        assert_eq!(ip(&["198.18.0.10"]), Ok("198.18.0.10".parse().unwrap()));
        // haproxy appended its value after the guest's forged one.
        assert_eq!(
            ip(&["198.18.0.99, 198.18.0.10"]),
            Ok("198.18.0.10".parse().unwrap())
        );
        assert_eq!(
            ip(&["198.18.0.99", "198.18.0.10"]),
            Ok("198.18.0.10".parse().unwrap())
        );
        assert_eq!(ip(&[" 198.18.0.10 "]), Ok("198.18.0.10".parse().unwrap()));
        assert_eq!(
            ip(&["::ffff:198.18.0.10"]),
            Ok("198.18.0.10".parse().unwrap())
        );
        assert_eq!(ip(&["[2001:db8::1]"]), Ok("2001:db8::1".parse().unwrap()));
        assert_eq!(ip(&[]), Err(ForwardedError::Missing));
        assert_eq!(ip(&["198.18.0.10, "]), Err(ForwardedError::Missing));
        assert_eq!(ip(&["not-an-ip"]), Err(ForwardedError::NotAnAddress));
        assert_eq!(
            ip(&["198.18.0.10, evil"]),
            Err(ForwardedError::NotAnAddress)
        );
    }

    #[test]
    fn the_api_gets_the_address_in_canonical_form() {
        for (sent, passed) in [
            (&["198.18.0.10"][..], "198.18.0.10"),
            (&["198.18.0.99, 198.18.0.10"], "198.18.0.10"),
            (&["198.18.0.99", "198.18.0.10"], "198.18.0.10"),
            (&[" 198.18.0.10 "], "198.18.0.10"),
            (&["::ffff:198.18.0.10"], "198.18.0.10"),
            (&["[2001:DB8:0::1]"], "2001:db8::1"),
            (&["fe80::f816:3eff:fe00:a"], "fe80::f816:3eff:fe00:a"),
        ] {
            let headers = with(sent);
            let (ip, value) = guest(&headers).unwrap();
            assert_eq!(value, passed, "{sent:?}");
            assert_eq!(ip, passed.parse::<IpAddr>().unwrap(), "{sent:?}");
        }
    }
}
