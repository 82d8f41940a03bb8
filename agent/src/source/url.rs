//! The URLs the guest agent accepts: `http://` with an IP literal host (the static binary has
//! no name lookup and no TLS), an IPv6 host in brackets with, for a link-local address, its
//! zone (`http://[fe80::a9fe:a9fe%25eth0]`, RFC 6874, as cloud-init writes it); and the zone a
//! link-local URL without one gets: the interface cloud-init would pick (`fallback_nic.rs`).
//!
//! A user name and password before the host (`http://user:pw@10.0.0.1/x`) are taken out of the
//! URL, percent-decoded, and sent as HTTP basic authentication, as python-requests (cloud-init's
//! HTTP client) sends them: never in the request line or the `Host` header, and never in a
//! message ([`shown`]). A redirect's target is resolved against the URL it came from
//! ([`join`]) and checked as any URL is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;

/// A URL the guest agent refuses before sending anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?}: TLS is not supported, use an http:// URL")]
    Https(String),
    #[error("{0:?}: only http:// URLs are supported")]
    Scheme(String),
    #[error(
        "{0:?}: the host must be an IP address (the static guest agent has no name lookup), e.g. http://169.254.169.254"
    )]
    NotIpLiteral(String),
    #[error("{0:?}: invalid port")]
    Port(String),
    #[error(
        "{0:?}: a zone (%25IFACE) belongs to a link-local IPv6 address only, e.g. http://[fe80::a9fe:a9fe%25eth0]"
    )]
    Zone(String),
    /// HTTP basic authentication carries Latin-1 (requests encodes the user name and password
    /// so, and fails on any other character).
    #[error(
        "{0:?}: the user name or password has a character outside Latin-1, which HTTP basic \
         authentication cannot carry"
    )]
    NotLatin1(String),
}

/// The host of a URL's authority: the address, and the zone of a link-local IPv6 one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub ip: IpAddr,
    /// The interface name after `%25` (or a bare `%`), when there is one.
    pub zone: Option<String>,
}

/// `url` as messages show it: a user name and password before the host (`http://user:pw@…`,
/// which the agent sends only in an `Authorization` header) replaced by `…@`, as the message
/// goes to `status.json`. A password with a `/`, `?` or `#` not written as `%2F`, `%3F`,
/// `%23` ends the authority early (`http://user:p#ss@10.0.0.1/`, which no URL parser reads as
/// meant): unless the host after the authority's last `@` (or the whole authority, without
/// one) is an IP address with an optional port, as every URL the agent fetches has,
/// everything up to the URL's last `@` is taken for user info and masked, as a password may
/// hold any character. A URL the agent refuses anyway may so be masked more than needed.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let user_info_end = match authority.rfind('@') {
        Some(at) if is_ip_authority(&authority[at + 1..]) => Some(at),
        None if is_ip_authority(authority) => None,
        _ => rest.rfind('@'),
    };
    match user_info_end {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Whether `authority` (no user info) is an IP address and an optional port, as a URL the
/// agent fetches has: `10.0.0.1`, `10.0.0.1:80`, `[fe80::1%25eth0]:80`.
fn is_ip_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((inside, after)) = v6.split_once(']') else {
                return false;
            };
            let address = inside.split('%').next().unwrap_or_default();
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (address.parse::<Ipv6Addr>().is_ok(), port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host.parse::<Ipv4Addr>().is_ok(), Some(port)),
            None => (authority.parse::<Ipv4Addr>().is_ok(), None),
        },
    };
    host_ok && port.is_none_or(|port| port.parse::<u16>().is_ok())
}

/// What follows `http://` (the scheme matched in any case); `https://` and any other scheme
/// are refused.
fn after_scheme(url: &str) -> Result<&str, UrlError> {
    let scheme = |name: &str| {
        url.get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
    };
    if scheme("http://") {
        Ok(&url[7..])
    } else if scheme("https://") {
        Err(UrlError::Https(shown(url)))
    } else {
        Err(UrlError::Scheme(shown(url)))
    }
}

/// `rest` (what follows `http://`) split at the end of its authority: the user info (before
/// the last `@` of the authority, as Python's `urlsplit` reads it), the host and port, and the
/// path, query and fragment.
fn split_rest(rest: &str) -> (Option<&str>, &str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..], tail),
        None => (None, authority, tail),
    }
}

/// Parses the host of an authority (`169.254.169.254:80`, `[fe80::a9fe:a9fe%25eth0]`, no user
/// info) and returns it with the port text, if any. `url` is for messages.
fn parse_authority<'a>(url: &str, authority: &'a str) -> Result<(Host, Option<&'a str>), UrlError> {
    let not_ip = || UrlError::NotIpLiteral(shown(url));
    if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or_else(not_ip)?;
        let host = bracketed(url, inside)?;
        return Ok((host, after.strip_prefix(':')));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let ip: Ipv4Addr = host.parse().map_err(|_| not_ip())?;
    Ok((
        Host {
            ip: IpAddr::V4(ip),
            zone: None,
        },
        port,
    ))
}

/// What is inside the brackets of an IPv6 host: the address and its zone.
fn bracketed(url: &str, inside: &str) -> Result<Host, UrlError> {
    let (address, zone) = match inside.split_once('%') {
        Some((address, zone)) => {
            // RFC 6874 writes the `%` itself as `%25`; a bare `%` is accepted as browsers do.
            let zone = zone.strip_prefix("25").unwrap_or(zone);
            (address, Some(zone))
        }
        None => (inside, None),
    };
    let ip: Ipv6Addr = address
        .parse()
        .map_err(|_| UrlError::NotIpLiteral(shown(url)))?;
    if let Some(zone) = zone {
        let plain = !zone.is_empty()
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ip.is_unicast_link_local() || !plain {
            return Err(UrlError::Zone(shown(url)));
        }
    }
    Ok(Host {
        ip: IpAddr::V6(ip),
        zone: zone.map(str::to_owned),
    })
}

/// Checks that `url` is `http://[user[:password]@]<IPv4 or [IPv6[%25zone]]>[:port][/path]`.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    target(url).map(drop)
}

/// The host of a checked URL.
pub fn host(url: &str) -> Result<Host, UrlError> {
    target(url).map(|target| target.host)
}

/// Whether `url` has user info (`user:password@`) before its host.
pub fn has_user_info(url: &str) -> bool {
    // Also one cut short by a `/`, `?` or `#` in its password: what [`shown`] masks.
    shown(url) != url
}

/// A checked URL, as the HTTP client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL without its user info: what the request line and the `Host` header are made of.
    pub url: String,
    /// The URL as messages show it ([`shown`]).
    pub shown: String,
    pub host: Host,
    /// The port, 80 when the URL has none.
    pub port: u16,
    credentials: Option<Credentials>,
}

/// The user name and password of a URL, percent-decoded. Never printed: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(…)")
    }
}

/// Checks `url` and takes its user info out.
pub fn target(url: &str) -> Result<Target, UrlError> {
    let rest = after_scheme(url)?;
    let (user_info, authority, tail) = split_rest(rest);
    let (host, port) = parse_authority(url, authority)?;
    let port = match port {
        None => 80,
        Some(port) => port.parse().map_err(|_| UrlError::Port(shown(url)))?,
    };
    Ok(Target {
        url: format!("{}{authority}{tail}", &url[..url.len() - rest.len()]),
        shown: shown(url),
        host,
        port,
        credentials: user_info.and_then(credentials),
    })
}

/// The credentials of a URL's user info, as requests' `get_auth_from_url` reads them: the user
/// name before the first `:`, the password after it, each percent-decoded. Without a `:` (a
/// user name alone) requests sends no authentication, and neither does the agent.
fn credentials(user_info: &str) -> Option<Credentials> {
    let (user, password) = user_info.split_once(':')?;
    // `http://:@host`: requests sends no authentication for an empty pair either.
    if user.is_empty() && password.is_empty() {
        return None;
    }
    Some(Credentials {
        user: metaboot_proto::percent::decoded_text(user),
        password: metaboot_proto::percent::decoded_text(password),
    })
}

impl Target {
    /// The `Authorization` header value of the URL's user info, `Basic base64(user:password)`
    /// with both encoded as Latin-1, as requests' `_basic_auth_str` makes it; `None` without
    /// credentials.
    pub fn authorization(&self) -> Result<Option<String>, UrlError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let pair = format!("{}:{}", credentials.user, credentials.password);
        let latin1: Option<Vec<u8>> = pair.chars().map(|c| u8::try_from(c).ok()).collect();
        let latin1 = latin1.ok_or_else(|| UrlError::NotLatin1(self.shown.clone()))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(latin1);
        Ok(Some(format!("Basic {encoded}")))
    }

    /// Whether a redirect from this URL to `next` keeps the `Authorization` header: only to the
    /// same host and port, as requests' `should_strip_auth` decides (both URLs are `http://`).
    pub fn same_origin(&self, next: &Target) -> bool {
        self.host == next.host && self.port == next.port
    }
}

/// `reference` (a redirect's `Location`) resolved against `base`, as RFC 3986 §5.2 (and
/// Python's `urljoin`, which requests uses) resolves it: a URL with a scheme as it is, `//host/x`
/// with `base`'s scheme, `/x` on `base`'s authority, `x` or `../x` beside `base`'s path, `?q`
/// on `base`'s path. `base` has a scheme and an authority.
pub fn join(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    // A scheme: a letter, then letters, digits, `+`, `-`, `.`, before the first `:` (RFC 3986
    // §3.1), itself before any `/`, `?` or `#`.
    let is_scheme = |name: &str| {
        name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic() || (i > 0 && matches!(b, b'0'..=b'9' | b'+' | b'-' | b'.'))
        })
    };
    let delimiter = reference.find(['/', '?', '#']).unwrap_or(reference.len());
    if let Some(colon) = reference.find(':')
        && colon > 0
        && colon < delimiter
        && is_scheme(&reference[..colon])
    {
        return reference.to_owned();
    }
    let Some((scheme, rest)) = base.split_once("://") else {
        return reference.to_owned();
    };
    if let Some(network_path) = reference.strip_prefix("//") {
        return format!("{scheme}://{network_path}");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, base_tail) = rest.split_at(authority_end);
    let base_tail = base_tail.split('#').next().unwrap_or_default();
    let (base_path, base_query) = match base_tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base_tail, None),
    };
    let (reference_rest, fragment) = match reference.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (reference, None),
    };
    let (reference_path, query) = match reference_rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (reference_rest, None),
    };
    let (path, query) = if reference_path.is_empty() {
        (base_path.to_owned(), query.or(base_query))
    } else if reference_path.starts_with('/') {
        (without_dot_segments(reference_path), query)
    } else {
        let directory = match base_path.rfind('/') {
            Some(slash) => &base_path[..=slash],
            None => "/",
        };
        (
            without_dot_segments(&format!("{directory}{reference_path}")),
            query,
        )
    };
    let mut joined = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        joined.push('?');
        joined.push_str(query);
    }
    if let Some(fragment) = fragment {
        joined.push('#');
        joined.push_str(fragment);
    }
    joined
}

/// An absolute path without its `.` and `..` segments (RFC 3986 §5.2.4).
fn without_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// The host of a URL's authority as `http::Uri` hands it over (`[fe80::1%25eth0]` or
/// `169.254.169.254`), for the resolver.
pub fn host_of_authority(authority_host: &str) -> Option<Host> {
    let host = if authority_host.starts_with('[') {
        bracketed("", authority_host.strip_prefix('[')?.strip_suffix(']')?).ok()?
    } else {
        Host {
            ip: IpAddr::V4(authority_host.parse().ok()?),
            zone: None,
        }
    };
    Some(host)
}

/// Whether `url`'s host is a link-local IPv6 address without a zone (it cannot be called so:
/// [`with_zone`] names the interface).
pub fn needs_zone(url: &str) -> bool {
    host(url).is_ok_and(|host| {
        host.zone.is_none() && matches!(host.ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
    })
}

/// `url` with `%25<interface>` after its (link-local IPv6) address:
/// `http://[fe80::a9fe:a9fe]/x` → `http://[fe80::a9fe:a9fe%25eth0]/x`.
pub fn with_zone(url: &str, interface: &str) -> String {
    match url.split_once(']') {
        Some((before, after)) => format!("{before}%25{interface}]{after}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            shown("http://user:S3cret@10.0.0.1/x?a=b@c"),
            "http://…@10.0.0.1/x?a=b@c"
        );
        assert_eq!(shown("http://10.0.0.1/a@b"), "http://10.0.0.1/a@b");
        assert_eq!(shown("no scheme"), "no scheme");
        for url in [
            "http://user:S3cret@10.0.0.1:99999/",
            "https://user:S3cret@10.0.0.1/",
            "ftp://user:S3cret@10.0.0.1/",
            "http://user:S3cret@name.example/",
            "http://user:S3cret@[fe80::1%25a b]/",
        ] {
            let refused = host(url).unwrap_err().to_string();
            assert!(!refused.contains("S3cret"), "{refused}");
        }
    }

    #[test]
    fn a_password_cut_short_by_a_delimiter_is_never_shown() {
        for (url, masked) in [
            ("http://user:p#S3c@10.0.0.1/up", "http://…@10.0.0.1/up"),
            ("http://user:pa/S3c@10.0.0.1/", "http://…@10.0.0.1/"),
            ("http://user:p?S3c@10.0.0.1", "http://…@10.0.0.1"),
            ("http://user:pa/S3c@10.0.0.1/x@y", "http://…@y"),
            // What comes before the delimiter looks like a host and a port.
            ("http://admin:#S3c@10.0.0.1/", "http://…@10.0.0.1/"),
            ("http://u:/S3c@10.0.0.1/", "http://…@10.0.0.1/"),
            ("http://u:1234/S3c@10.0.0.1/", "http://…@10.0.0.1/"),
            // An `@` in the password as well.
            ("http://u:p@S3c/S3c@10.0.0.1/", "http://…@10.0.0.1/"),
            ("http://[u]x:p/S3c@10.0.0.1/", "http://…@10.0.0.1/"),
        ] {
            assert_eq!(shown(url), masked);
            assert!(has_user_info(url), "{url}");
            let refused = check_url(url).unwrap_err().to_string();
            assert!(!refused.contains("S3c"), "{refused}");
        }
        // A host and port before the delimiter: an `@` after it belongs to the path.
        for plain in [
            "http://10.0.0.1:8080/a@b",
            "http://[fe80::1%25eth0]/a@b",
            "http://10.0.0.1?to=a@b",
        ] {
            assert_eq!(shown(plain), plain);
            assert!(!has_user_info(plain), "{plain}");
        }
    }

    #[test]
    fn an_empty_pair_or_a_signed_escape_is_read_as_requests_reads_it() {
        // `http://:@host` sends no authentication, as requests (`any(("", ""))` is false).
        let empty = target("http://:@10.0.0.1/").unwrap();
        assert_eq!(empty.authorization(), Ok(None));
        // `%+A` is no escape for Python's `unquote`: it stays as written.
        assert_eq!(
            metaboot_proto::percent::decoded_text("p%+Ass%41"),
            "p%+AssA"
        );
    }

    #[test]
    fn ip_literal_http_urls_only() {
        for ok in [
            "http://169.254.169.254",
            "http://169.254.169.254/",
            "HTTP://127.0.0.1:8080/openstack",
            "http://[::1]:80/x",
            "http://[fe80::a9fe:a9fe]",
            "http://[fe80::a9fe:a9fe%25eth0]",
            "http://[fe80::a9fe:a9fe%25ens3]:80/openstack",
            "http://[fe80::a9fe:a9fe%eth0]/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        assert!(matches!(
            check_url("https://169.254.169.254"),
            Err(UrlError::Https(_))
        ));
        assert!(matches!(
            check_url("ftp://1.2.3.4"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("http://metadata.google.internal/x"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://localhost"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://[nothex]/"),
            Err(UrlError::NotIpLiteral(_))
        ));
        assert!(matches!(
            check_url("http://1.2.3.4:99999"),
            Err(UrlError::Port(_))
        ));
        assert_eq!(check_url("http://user@1.2.3.4"), Ok(()));
        assert!(matches!(
            check_url("http://user:pw@example.org/"),
            Err(UrlError::NotIpLiteral(_))
        ));
        for zone in [
            "http://[::1%25lo]/",
            "http://[fe80::1%25]/",
            "http://[fe80::1%25eth0/x]/",
            "http://[fe80::1%25a b]/",
        ] {
            assert!(check_url(zone).is_err(), "{zone}");
        }
        assert!(matches!(
            check_url("http://[2001:db8::1%25eth0]"),
            Err(UrlError::Zone(_))
        ));
    }

    /// The user info is taken out of the URL sent, percent-decoded and made a basic
    /// `Authorization` as requests makes it (`_basic_auth_str`: Latin-1, base64).
    #[test]
    fn user_info_is_taken_out_and_sent_as_basic_authentication() {
        let auth = |url: &str| target(url).unwrap().authorization().unwrap();
        let got = target("http://user:S3cret@10.0.0.1:8080/x?a=b@c").unwrap();
        assert_eq!(got.url, "http://10.0.0.1:8080/x?a=b@c");
        assert_eq!(got.shown, "http://…@10.0.0.1:8080/x?a=b@c");
        assert_eq!((got.host.ip, got.port), (IpAddr::from([10, 0, 0, 1]), 8080));
        assert!(!format!("{got:?}").contains("S3cret"), "{got:?}");
        // base64("user:S3cret")
        assert_eq!(
            auth("http://user:S3cret@10.0.0.1/").as_deref(),
            Some("Basic dXNlcjpTM2NyZXQ=")
        );
        // Percent-decoded (`p@ss:w/rd`, `ü` as Latin-1), and the last `@` ends the user info.
        let expected = base64::engine::general_purpose::STANDARD.encode(b"\xfcser:p@ss:w/rd%zz");
        assert_eq!(
            auth("HTTP://%C3%BCser:p@ss%3Aw%2Frd%zz@[::1]/").unwrap(),
            format!("Basic {expected}")
        );
        assert_eq!(target("HTTP://u:p@[::1]/x").unwrap().url, "HTTP://[::1]/x");
        // An empty user name or password is still sent; a user name alone is not (requests
        // reads no password as none at all).
        assert_eq!(auth("http://:pw@10.0.0.1").as_deref(), Some("Basic OnB3"));
        assert_eq!(
            auth("http://user:@10.0.0.1").as_deref(),
            Some("Basic dXNlcjo=")
        );
        assert_eq!(auth("http://user@10.0.0.1"), None);
        assert_eq!(auth("http://@10.0.0.1"), None);
        assert_eq!(
            target("http://user@10.0.0.1/").unwrap().url,
            "http://10.0.0.1/"
        );
        assert_eq!(auth("http://10.0.0.1/a@b"), None);
        // A character outside Latin-1 (`€`) cannot be sent: refused, the password not shown.
        let err = target("http://user:%E2%82%ACuro@10.0.0.1/")
            .unwrap()
            .authorization()
            .unwrap_err();
        assert!(matches!(err, UrlError::NotLatin1(_)), "{err:?}");
        assert!(!err.to_string().contains("uro"), "{err}");
    }

    #[test]
    fn a_redirect_s_location_is_resolved_against_the_url_it_came_from() {
        let base = "http://10.0.0.1:8080/a/b/c?q=1";
        for (location, expected) in [
            ("http://10.0.0.2/x", "http://10.0.0.2/x"),
            ("https://10.0.0.2/x", "https://10.0.0.2/x"),
            ("//10.0.0.3/y", "http://10.0.0.3/y"),
            ("/root?z", "http://10.0.0.1:8080/root?z"),
            ("d", "http://10.0.0.1:8080/a/b/d"),
            ("./d/", "http://10.0.0.1:8080/a/b/d/"),
            ("../d", "http://10.0.0.1:8080/a/d"),
            ("../../../../d", "http://10.0.0.1:8080/d"),
            ("/a/./b/../c", "http://10.0.0.1:8080/a/c"),
            ("?other", "http://10.0.0.1:8080/a/b/c?other"),
            ("", "http://10.0.0.1:8080/a/b/c?q=1"),
            ("d#frag", "http://10.0.0.1:8080/a/b/d#frag"),
            (" /spaced ", "http://10.0.0.1:8080/spaced"),
        ] {
            assert_eq!(join(base, location), expected, "{location}");
        }
        assert_eq!(join("http://10.0.0.1", "x"), "http://10.0.0.1/x");
        let (a, b) = (
            target(base).unwrap(),
            target("http://10.0.0.1:8080/z").unwrap(),
        );
        assert!(a.same_origin(&b));
        assert!(!a.same_origin(&target("http://10.0.0.1/z").unwrap()));
        assert!(!a.same_origin(&target("http://10.0.0.2:8080/z").unwrap()));
        assert!(
            target("http://10.0.0.1/")
                .unwrap()
                .same_origin(&target("http://10.0.0.1:80/x").unwrap())
        );
    }

    #[test]
    fn zones_are_read_and_added_to_link_local_urls() {
        assert_eq!(
            host("http://[fe80::a9fe:a9fe%25eth0]:80/openstack").unwrap(),
            Host {
                ip: "fe80::a9fe:a9fe".parse().unwrap(),
                zone: Some("eth0".into())
            }
        );
        assert!(needs_zone("http://[fe80::a9fe:a9fe]"));
        assert!(!needs_zone("http://[fe80::a9fe:a9fe%25eth0]"));
        assert!(!needs_zone("http://169.254.169.254"));
        assert!(!needs_zone("http://[fdc6::1]"));
        assert_eq!(
            with_zone("http://[fe80::a9fe:a9fe]", "eth0"),
            "http://[fe80::a9fe:a9fe%25eth0]"
        );
        assert_eq!(
            with_zone("http://[fe80::a9fe:a9fe]:80/x", "ens3"),
            "http://[fe80::a9fe:a9fe%25ens3]:80/x"
        );
        assert_eq!(
            host_of_authority("[fe80::a9fe:a9fe%25eth0]").unwrap().zone,
            Some("eth0".into())
        );
        assert_eq!(
            host_of_authority("169.254.169.254").unwrap().ip,
            IpAddr::from([169, 254, 169, 254])
        );
        assert_eq!(host_of_authority("metadata"), None);
    }
}
