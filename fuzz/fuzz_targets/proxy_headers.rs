//! The namespace proxy's header sanitising: whatever headers a guest sends (any names, values,
//! repeats), what goes upstream holds exactly one `X-Forwarded-For` (the peer), exactly one
//! scope header (the proxy's), no identity or hop-by-hop header of the guest's, and the agent
//! reads the peer back from it. The token-PUT check never panics.

#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use metaboot_proto::headers;
use metaboot_server::api::token::is_forwarded_token_request;
use metaboot_server::proxy::{ProxyScope, upstream_headers};

/// Turns `name: value` lines into a header map, skipping what HTTP could not carry.
fn header_map(text: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let guest = header_map(&text);
    let peer: IpAddr = if selector & 1 == 0 {
        IpAddr::from([198, 18, 0, selector])
    } else {
        "::ffff:198.18.0.10".parse().expect("mapped address")
    };
    let scope = if selector & 2 == 0 {
        ProxyScope::Router("r1".into())
    } else {
        ProxyScope::Network("n1".into())
    };
    let out = upstream_headers(&guest, peer, &scope);
    let forwarded: Vec<&HeaderValue> = out.get_all(headers::FORWARDED_FOR).iter().collect();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0], peer.to_canonical().to_string().as_str());
    let (mine, other) = match scope {
        ProxyScope::Router(_) => (headers::ROUTER_ID, headers::NETWORK_ID),
        ProxyScope::Network(_) => (headers::NETWORK_ID, headers::ROUTER_ID),
    };
    assert_eq!(out.get_all(mine).iter().count(), 1);
    assert!(out.get(other).is_none());
    for name in out.keys() {
        let name = name.as_str();
        assert!(
            name == headers::FORWARDED_FOR || name == mine || !headers::is_guest_forbidden(name),
            "{name} passed"
        );
        assert!(!headers::HOP_BY_HOP.contains(&name), "{name} passed");
        assert_ne!(name, "content-length");
    }
    assert_eq!(
        metaboot_server::agent::guest_address(&out),
        Ok(peer.to_canonical())
    );
    for method in [Method::PUT, Method::GET] {
        let _ = is_forwarded_token_request(&method, &text, &guest);
    }
});
