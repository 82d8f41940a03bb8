//! What the namespace proxy passes on (docs/protocol.md §2.2): the guest's request minus every
//! identity header it could forge and every hop-by-hop header, plus `X-Forwarded-For` (replaced,
//! never appended) and the router or network id.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use metaboot_proto::headers;

use crate::http::h1::has_token;
use crate::http::names;

/// Which namespace the proxy serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxyScope {
    /// `qrouter-<id>`: the agent searches the networks behind this router.
    Router(String),
    /// `qdhcp-<id>`: the agent searches this network.
    Network(String),
}

impl ProxyScope {
    /// The header the proxy sets for this scope, built once per listener.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let (name, id) = match self {
            Self::Router(id) => (headers::ROUTER_ID, id),
            Self::Network(id) => (headers::NETWORK_ID, id),
        };
        // Checked at start ([`Self::check`]); registry ids are uuids the registry made.
        let value = HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static(""));
        (HeaderName::from_static(name), value)
    }

    /// Refuses an id the proxy cannot pass on (`flag` names where it came from): an empty one,
    /// or one with a character a header value cannot carry (a control character, non-ASCII).
    /// The agent would answer every guest 400, as no port is found by it.
    pub fn check(&self, flag: &str) -> Result<(), String> {
        let (Self::Router(id) | Self::Network(id)) = self;
        let kind = match self {
            Self::Router(_) => "router",
            Self::Network(_) => "network",
        };
        if id.trim().is_empty() {
            return Err(format!(
                "{flag} is empty: give the {kind}'s id (`metaboot-server {kind} list`)"
            ));
        }
        // Visible ASCII only: a header value may carry other bytes, but the agent reads the id
        // as text.
        if !HeaderValue::from_str(id).is_ok_and(|value| value.to_str().is_ok()) {
            return Err(format!(
                "{flag} {id:?} has a character an HTTP header cannot carry: give the {kind}'s id \
                 as `metaboot-server {kind} list` shows it"
            ));
        }
        Ok(())
    }
}

/// Hop-by-hop headers a proxy must not forward, as header names; and `Expect`: the proxy has
/// the whole body before it forwards (the guest got its 100 from the proxy), so a
/// `100-continue` passed on would only make the agent answer an interim 100 and end its batch
/// of pipelined reads there.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::EXPECT,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Turns a guest's headers into the ones sent upstream, in place: drops every identity header
/// it could forge, every hop-by-hop header (and those `Connection` names) and its
/// `Content-Length` (recomputed), then sets `X-Forwarded-For` to the peer and the scope header.
pub fn sanitize(headers: &mut HeaderMap, peer: IpAddr, scope: &(HeaderName, HeaderValue)) {
    // One pass over the guest's names (each `Connection` value read once per name), then the
    // removals: the list is allocated only when there is something to drop. Rescanning after
    // each removal would cost (names dropped × names kept) reads of `Connection`, which a
    // guest can make 16 KiB long. The names `Connection` lists are read while it is still
    // there; it goes last.
    let mut drop: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if *name != header::CONNECTION && dropped(headers, name) {
            drop.push(name.clone());
        }
    }
    for name in &drop {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    headers.insert(names::FORWARDED_FOR, address_value(peer));
    headers.insert(scope.0.clone(), scope.1.clone());
}

/// Whether the proxy drops the guest's header `name` (see [`sanitize`]).
fn dropped(headers: &HeaderMap, name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || *name == header::CONTENT_LENGTH
        || headers::is_guest_forbidden(name.as_str())
        || named_in_connection(headers, name)
}

/// Whether a `Connection` header of the guest names `name` (hop-by-hop too), compared as
/// text: nothing is allocated for the tokens.
fn named_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|value| has_token(value.as_bytes(), name.as_str().as_bytes()))
}

/// Longest IPv4 address as text (`255.255.255.255`).
const IPV4_TEXT_MAX: usize = 15;

/// `peer` as the `X-Forwarded-For` value: canonical (an IPv4-mapped address as IPv4), the
/// text `Display` writes. An IPv4 address is written digit by digit: the formatting machinery
/// cost more than the rest of the proxy's work on the headers.
pub fn address_value(peer: IpAddr) -> HeaderValue {
    let v4 = match peer.to_canonical() {
        IpAddr::V4(v4) => v4,
        // An IP address is always a valid header value.
        IpAddr::V6(v6) => {
            return HeaderValue::from_str(&v6.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
    };
    let mut text = [0u8; IPV4_TEXT_MAX];
    let mut len = 0;
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    // Digits and dots are always a valid header value.
    HeaderValue::from_bytes(&text[..len]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The headers to send upstream for a guest request (a sanitised copy).
pub fn upstream_headers(guest: &HeaderMap, peer: IpAddr, scope: &ProxyScope) -> HeaderMap {
    let mut out = guest.clone();
    sanitize(&mut out, peer, &scope.header());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn guest(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forged_identity_headers_never_pass() {
        let forged = guest(&[
            ("X-Instance-ID", "other"),
            ("x-instance-id-signature", "abc"),
            ("X-TENANT-ID", "p2"),
            ("X-Neutron-Router-ID", "r2"),
            ("X-Neutron-Network-ID", "n2"),
            ("X-Forwarded-For", "198.18.0.99"),
            ("X-Forwarded-Host", "evil"),
            ("Forwarded", "for=198.18.0.99"),
            ("X-OVN-Network-ID", "n2"),
            ("X-Metadata-Provider", "lb"),
            ("X-Metadata-Provider-Signature", "sig"),
            ("Connection", "keep-alive, X-Custom"),
            ("X-Custom", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("Expect", "100-continue"),
            ("User-Agent", "Cloud-Init/22.4"),
            ("Accept", "*/*"),
        ]);
        let out = upstream_headers(
            &forged,
            "198.18.0.10".parse().unwrap(),
            &ProxyScope::Router("r1".into()),
        );
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "user-agent",
                "x-forwarded-for",
                "x-neutron-router-id"
            ]
        );
        assert_eq!(out.get_all(headers::FORWARDED_FOR).iter().count(), 1);
        assert_eq!(out[headers::FORWARDED_FOR], "198.18.0.10");
        assert_eq!(out[headers::ROUTER_ID], "r1");
    }

    /// Many names to drop among many to keep, with a long `Connection` (the request a guest
    /// would send to make a rescan after each removal expensive): every forged name goes,
    /// every other stays, in one pass.
    #[test]
    fn many_dropped_and_kept_names_with_a_long_connection() {
        let mut pairs: Vec<(String, String)> =
            (0..32).map(|i| (format!("a{i}"), "x".to_owned())).collect();
        pairs.extend((0..31).map(|i| (format!("x-tenant-{i}"), "x".to_owned())));
        pairs.push(("Connection".into(), format!("{}, a5", ",".repeat(15_000))));
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = upstream_headers(
            &guest(&borrowed),
            "198.18.0.10".parse().unwrap(),
            &ProxyScope::Router("r1".into()),
        );
        assert_eq!(out.len(), 31 + 2, "{out:?}");
        assert!(out.get("a5").is_none() && out.get("a4").is_some());
        assert!(
            out.keys()
                .all(|name| !name.as_str().starts_with("x-tenant"))
        );
    }

    #[test]
    fn network_scope_and_mapped_addresses() {
        let out = upstream_headers(
            &guest(&[("X-Neutron-Router-ID", "r2")]),
            "::ffff:198.18.0.10".parse().unwrap(),
            &ProxyScope::Network("n1".into()),
        );
        assert_eq!(out[headers::FORWARDED_FOR], "198.18.0.10");
        assert_eq!(out[headers::NETWORK_ID], "n1");
        assert!(out.get(headers::ROUTER_ID).is_none());
    }

    #[test]
    fn the_forwarded_address_is_the_text_display_writes() {
        for (peer, text) in [
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("10.0.100.9", "10.0.100.9"),
            ("::ffff:198.18.0.10", "198.18.0.10"),
            ("2001:db8::1", "2001:db8::1"),
            ("fe80::f816:3eff:fe00:a", "fe80::f816:3eff:fe00:a"),
        ] {
            assert_eq!(address_value(peer.parse().unwrap()), text, "{peer}");
        }
    }

    proptest! {
        #[test]
        fn every_ipv4_address_is_written_as_display_writes_it(bits in any::<u32>()) {
            let ip = std::net::Ipv4Addr::from(bits);
            let text = ip.to_string();
            prop_assert_eq!(address_value(IpAddr::V4(ip)), text.as_str());
        }

        #[test]
        fn only_the_proxy_sets_identity(name in "[A-Za-z-]{1,24}", value in "[ -~]{0,40}") {
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else { return Ok(()) };
            let Ok(header_value) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.append(header_name, header_value);
            let out = upstream_headers(&h, "198.18.0.10".parse().unwrap(), &ProxyScope::Router("r1".into()));
            prop_assert_eq!(out.get_all(headers::FORWARDED_FOR).iter().count(), 1);
            prop_assert_eq!(&out[headers::FORWARDED_FOR], "198.18.0.10");
            prop_assert_eq!(&out[headers::ROUTER_ID], "r1");
            prop_assert!(out.get(headers::INSTANCE_ID).is_none() && out.get(headers::TENANT_ID).is_none());
            prop_assert!(out.get(headers::INSTANCE_ID_SIGNATURE).is_none() && out.get(headers::NETWORK_ID).is_none());
        }
    }
}
