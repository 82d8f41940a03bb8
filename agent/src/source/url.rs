//! The metadata URLs the guest agent accepts: `http://` with an IP literal host (the static
//! binary has no name lookup and no TLS), an IPv6 host in brackets with, for a link-local
//! address, its zone (`http://[fe80::a9fe:a9fe%25eth0]`, RFC 6874, as cloud-init writes it);
//! and the zone a link-local URL without one gets: the interface cloud-init would pick
//! (`fallback_nic.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
}

/// The host of a URL's authority: the address, and the zone of a link-local IPv6 one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub ip: IpAddr,
    /// The interface name after `%25` (or a bare `%`), when there is one.
    pub zone: Option<String>,
}

/// `url` as messages show it: a user name and password before the host (`http://user:pw@…`,
/// which the agent never sends) replaced by `…@`, as the message goes to `status.json`.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The authority of `http://AUTHORITY/…` (what comes before the path, query or fragment).
fn authority(url: &str) -> Result<&str, UrlError> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        return Err(UrlError::Https(shown(url)));
    } else {
        return Err(UrlError::Scheme(shown(url)));
    };
    Ok(rest.split(['/', '?', '#']).next().unwrap_or_default())
}

/// Parses the host of an authority (`169.254.169.254:80`, `[fe80::a9fe:a9fe%25eth0]`) and
/// returns it with the port text, if any. `url` is for messages.
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

/// Checks that `url` is `http://<IPv4 or [IPv6[%25zone]]>[:port][/path]`.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    host(url).map(drop)
}

/// The host of a checked URL.
pub fn host(url: &str) -> Result<Host, UrlError> {
    let (host, port) = parse_authority(url, authority(url)?)?;
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(UrlError::Port(shown(url)));
    }
    Ok(host)
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
        let refused = host("http://user:S3cret@10.0.0.1/")
            .unwrap_err()
            .to_string();
        assert!(!refused.contains("S3cret"), "{refused}");
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
        assert!(check_url("http://user@1.2.3.4").is_err());
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
