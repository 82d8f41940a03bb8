//! The IMDSv2-style session tokens through the chain (the test profile with `--require-token`;
//! off by default): 401 without a token, a token bound to its instance and expiring, stateless
//! across API restarts, TTL bounds, and the proxy's SSRF defence — a token PUT carrying
//! `X-Forwarded-For` is refused before the proxy replaces the guest's headers.

mod attack_support;

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use attack_support::{Instance, World, assert_no_leak, world, world_with};
use metaboot_proto::METADATA_IPV4;
use metaboot_server::api::token::{MAX_TTL_SECS, MIN_TTL_SECS};
use metaboot_tests::chain::Scope;
use metaboot_tests::guest::{self, Reply};

const META_DATA: &str = "/openstack/latest/meta_data.json";
const TOKEN_PATH: &str = "/latest/api/token";

fn put_token(me: &Instance, proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    guest::send(Some(me.ip()), proxy, "PUT", path, headers, b"").unwrap()
}

fn token_for(me: &Instance, proxy: SocketAddr, ttl: u64) -> String {
    let reply = put_token(
        me,
        proxy,
        TOKEN_PATH,
        &[("X-metadata-token-ttl-seconds", &ttl.to_string())],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

fn get_with(me: &Instance, proxy: SocketAddr, path: &str, token: &str) -> Reply {
    guest::get(Some(me.ip()), proxy, path, &[("X-metadata-token", token)]).unwrap()
}

fn tokens_required() -> World {
    world_with(&["--require-token"], &[])
}

#[test]
fn without_a_token_every_path_is_401_and_with_one_the_guest_is_served() {
    let w = tokens_required();
    let me = &w.alpha;
    for path in [META_DATA, "/", "/openstack", "/latest/meta-data/hostname"] {
        let reply = guest::get(Some(me.ip()), w.router_a, path, &[]).unwrap();
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("PUT /latest/api/token"),
            "{}",
            reply.text()
        );
    }
    let token = token_for(me, w.router_a, 60);
    let reply = get_with(me, w.router_a, META_DATA, &token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uuid"], me.uuid.as_str());
    // Header names are case-insensitive.
    let reply = guest::get(
        Some(me.ip()),
        w.router_a,
        "/latest/meta-data/hostname",
        &[("x-METADATA-Token", &token)],
    )
    .unwrap();
    assert_eq!(reply.text(), "alpha.novalocal");
    // The same token through the DHCP-namespace proxy: same instance, accepted.
    assert_eq!(get_with(me, w.network_a, META_DATA, &token).status, 200);
    // Two tokens at once are refused rather than guessed.
    let reply = guest::get(
        Some(me.ip()),
        w.router_a,
        META_DATA,
        &[("X-metadata-token", &token), ("X-metadata-token", &token)],
    )
    .unwrap();
    assert_eq!(reply.status, 401);
}

#[test]
fn a_token_is_bound_to_its_instance() {
    let w = tokens_required();
    let token = token_for(&w.alpha, w.router_a, 300);
    // charlie (same tenant) and bravo (same address, other tenant) cannot use it.
    for (me, proxy) in [(&w.charlie, w.router_a), (&w.bravo, w.router_b)] {
        let reply = get_with(me, proxy, META_DATA, &token);
        assert_eq!(reply.status, 401, "{}: {}", me.name, reply.text());
        assert_no_leak(&reply, &w.instances(), me.name);
    }
    // Tampered tokens are refused.
    let (head, mac) = token.rsplit_once('.').unwrap();
    let flipped = if mac.starts_with('0') { "1" } else { "0" };
    for bad in [
        format!("{head}.{flipped}{}", &mac[1..]),
        token.replace("v1.", "v2."),
        format!("{token}{token}"),
        "v1.99999999999.".to_owned() + mac,
        String::new(),
    ] {
        let reply = get_with(&w.alpha, w.router_a, META_DATA, &bad);
        assert_eq!(reply.status, 401, "{bad}: {}", reply.text());
    }
}

#[test]
fn token_lifetimes_are_bounded_and_tokens_expire() {
    let w = tokens_required();
    let me = &w.alpha;
    for bad in ["0", "21601", "-5", "1e3", "", "ten"] {
        let reply = put_token(
            me,
            w.router_a,
            TOKEN_PATH,
            &[("X-metadata-token-ttl-seconds", bad)],
        );
        assert_eq!(reply.status, 400, "ttl {bad:?}: {}", reply.text());
    }
    assert_eq!(put_token(me, w.router_a, TOKEN_PATH, &[]).status, 400);
    for good in [MIN_TTL_SECS, MAX_TTL_SECS] {
        token_for(me, w.router_a, good);
    }
    // Only PUT hands out tokens.
    let reply = guest::get(Some(me.ip()), w.router_a, TOKEN_PATH, &[]).unwrap();
    assert_eq!(reply.status, 405, "{}", reply.text());
    let short = token_for(me, w.router_a, 1);
    std::thread::sleep(Duration::from_millis(2100));
    let reply = get_with(me, w.router_a, META_DATA, &short);
    assert_eq!(reply.status, 401);
    assert!(reply.text().contains("expired"), "{}", reply.text());
}

#[test]
fn tokens_are_stateless_across_api_restarts() {
    let mut w = tokens_required();
    let token = token_for(&w.alpha, w.router_a, 600);
    w.chain.start_api().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get_with(&w.alpha, w.router_a, META_DATA, &token);
        if reply.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_proxy_refuses_a_forwarded_token_request() {
    // The defence holds whether or not tokens are required.
    for w in [tokens_required(), world()] {
        let me = &w.alpha;
        let ttl = ("X-metadata-token-ttl-seconds", "60");
        for path in [
            TOKEN_PATH,
            "//latest/api/token/",
            "/latest/./api/token",
            "/latest/api/%74oken",
            "/latest/x/../api/token",
        ] {
            for forwarded in [
                ("X-Forwarded-For", "10.1.2.3"),
                ("x-forwarded-for", "127.20.0.10"),
                ("X-FORWARDED-FOR", ""),
                ("Forwarded", "for=10.1.2.3"),
            ] {
                let reply = put_token(me, w.router_a, path, &[ttl, forwarded]);
                assert_eq!(reply.status, 403, "{path} {forwarded:?}: {}", reply.text());
                assert!(!reply.text().starts_with("v1."), "a token leaked");
            }
            // The absolute form a forward proxy may send.
            let raw = format!(
                "PUT http://{METADATA_IPV4}{path} HTTP/1.1\r\nHost: {METADATA_IPV4}\r\n\
                 Connection: close\r\nContent-Length: 0\r\nX-metadata-token-ttl-seconds: 60\r\n\
                 X-Forwarded-For: 10.1.2.3\r\n\r\n"
            );
            let reply = guest::exchange(Some(me.ip()), w.router_a, raw.as_bytes()).unwrap();
            assert_eq!(reply.status, 403, "absolute {path}: {}", reply.text());
            // Without the header the same request gets a token.
            let reply = put_token(me, w.router_a, path, &[ttl]);
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert!(reply.text().starts_with("v1."));
        }
    }
}

#[test]
fn tokens_are_optional_by_default() {
    let w = world();
    let me = &w.alpha;
    let reply = guest::get(Some(me.ip()), w.router_a, META_DATA, &[]).unwrap();
    assert_eq!(reply.status, 200);
    // A guest that already speaks tokens still works.
    let token = token_for(me, w.router_a, 60);
    assert_eq!(get_with(me, w.router_a, META_DATA, &token).status, 200);
}

#[test]
fn all_in_one_process_requires_tokens_from_its_config_file() {
    let (mut chain, [_, _, router_a_id, _], [alpha, ..]) = attack_support::registry();
    let config = chain.path().join("metaboot.toml");
    std::fs::write(
        &config,
        format!(
            "shared_secret_file = \"{}\"\n[api]\nrequire_token = true\n",
            chain.secret_file.display()
        ),
    )
    .unwrap();
    let socket = chain.agent_socket.clone();
    let config_arg = config.display().to_string();
    let socket_arg = socket.display().to_string();
    chain
        .start_role(
            "all",
            &[
                "all",
                "--config",
                &config_arg,
                "--agent-socket",
                &socket_arg,
                "--router-port",
                "1",
            ],
            || UnixStream::connect(&socket).is_ok(),
        )
        .unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router_a_id), &[]).unwrap();
    let reply = guest::get(Some(alpha.ip()), proxy, META_DATA, &[]).unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    let token = token_for(&alpha, proxy, 60);
    let reply = get_with(&alpha, proxy, META_DATA, &token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uuid"], alpha.uuid.as_str());
}
