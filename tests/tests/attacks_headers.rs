//! Identity forgery through the real chain, as a guest would send it: every header a guest
//! could use to pose as another instance, alone and in every combination, repeated, in odd
//! case, folded, with stray spaces; overlapping tenant addresses; an address that moved to
//! another port; a deleted instance. The answer is always a refusal or the guest's own data.

mod attack_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use attack_support::{Instance, World, assert_no_leak, assert_own_or_refused, get_raw, world};
use metaboot_tests::chain::SECRET;

const META_DATA: &str = "/openstack/latest/meta_data.json";

/// Every identity header a guest can forge, with a value that names `victim` (and, for the
/// scope headers, the victim's router or network).
fn forged(w: &World, victim: &Instance) -> Vec<(&'static str, String)> {
    let (router, network) = if victim.project == w.bravo.project {
        (w.router_b_id.clone(), w.net_b.clone())
    } else {
        (w.router_a_id.clone(), w.net_a.clone())
    };
    vec![
        ("X-Instance-ID", victim.uuid.clone()),
        ("X-Tenant-ID", victim.project.to_owned()),
        // The worst case: the guest somehow knows the shared secret.
        (
            "X-Instance-ID-Signature",
            metaboot_proto::sign(SECRET.as_bytes(), &victim.uuid),
        ),
        ("X-Neutron-Router-ID", router),
        ("X-Neutron-Network-ID", network.clone()),
        ("X-Forwarded-For", victim.ip().to_string()),
        ("X-OVN-Network-ID", network),
        ("X-Metadata-Provider", "lb-provider".to_owned()),
    ]
}

/// Each (attacker, proxy the attacker is behind, victim) the suite plays.
fn plays(w: &World) -> Vec<(&Instance, SocketAddr, &Instance)> {
    vec![
        (&w.alpha, w.router_a, &w.charlie),
        (&w.alpha, w.router_a, &w.bravo),
        (&w.alpha, w.network_a, &w.charlie),
        (&w.alpha, w.network_a, &w.bravo),
        (&w.bravo, w.router_b, &w.alpha),
        (&w.charlie, w.router_a, &w.alpha),
    ]
}

#[test]
fn every_combination_of_forged_identity_headers_is_ignored() {
    let w = world();
    let mut requests = 0;
    for (me, proxy, victim) in plays(&w) {
        let headers = forged(&w, victim);
        let others = w.others(me);
        for subset in 0u32..(1 << headers.len()) {
            let lines: Vec<String> = headers
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(_, (name, value))| format!("{name}: {value}"))
                .collect();
            let reply = get_raw(me, proxy, META_DATA, &lines);
            // The proxy drops every one of these headers: the guest always gets its own data.
            assert_eq!(reply.status, 200, "{lines:?}: {}", reply.text());
            assert_own_or_refused(&reply, me, &others, &format!("{lines:?}"));
            requests += 1;
        }
    }
    assert_eq!(requests, 6 * 256);
}

/// The spellings a header line can take on the wire.
fn spellings(name: &str, value: &str, own: &str) -> Vec<Vec<String>> {
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    vec![
        vec![format!("{}: {value}", name.to_ascii_lowercase())],
        vec![format!("{}: {value}", name.to_ascii_uppercase())],
        vec![format!("{mixed}: {value}")],
        vec![format!("{name}: {value}   ")],
        vec![format!("{name}:\t{value}\t")],
        vec![format!("{name}: {value}"), format!("{name}: {value}")],
        vec![format!("{name}: {value}"), format!("{name}: {own}")],
        vec![format!("{name}: {own}"), format!("{name}: {value}")],
        vec![format!("{name}: {value}, {own}")],
        vec![format!("{name}: {own}, {value}")],
        // WSGI maps `_` to `-`: some stacks read this as the real header.
        vec![format!("{}: {value}", name.replace('-', "_"))],
        // Obsolete line folding (RFC 9112 5.2): a continuation line.
        vec![format!("{name}: {own}"), format!(" {value}")],
        vec![format!("{name}:"), format!("\t{value}")],
        // Whitespace between name and colon is forbidden (RFC 9112 5.1).
        vec![format!("{name} : {value}")],
        vec![format!("{name}\t: {value}")],
        vec![format!(" {name}: {value}")],
    ]
}

#[test]
fn odd_spellings_repeats_and_folding_never_pass_an_identity() {
    let w = world();
    for (me, proxy, victim) in plays(&w) {
        let others = w.others(me);
        let headers = forged(&w, victim);
        let own = forged(&w, me);
        for ((name, value), (_, own_value)) in headers.iter().zip(&own) {
            for lines in spellings(name, value, own_value) {
                for path in [
                    META_DATA,
                    "/openstack/latest/user_data",
                    "/latest/meta-data/",
                ] {
                    let reply = get_raw(me, proxy, path, &lines);
                    assert_no_leak(&reply, &others, &format!("{path} {lines:?}"));
                    if path == META_DATA {
                        assert_own_or_refused(&reply, me, &others, &format!("{lines:?}"));
                    } else {
                        assert!(
                            [200, 400].contains(&reply.status),
                            "{path} {lines:?}: {} {}",
                            reply.status,
                            reply.text()
                        );
                    }
                }
            }
        }
        // All of them at once, in every single-line spelling (within the 64-header limit).
        let all: Vec<String> = headers
            .iter()
            .zip(&own)
            .flat_map(|((name, value), (_, own_value))| {
                spellings(name, value, own_value)
                    .into_iter()
                    .take(5)
                    .flatten()
            })
            .collect();
        let reply = get_raw(me, proxy, META_DATA, &all);
        assert_own_or_refused(&reply, me, &others, "every spelling at once");
    }
}

#[test]
fn overlapping_addresses_stay_with_their_tenant() {
    let w = world();
    assert_eq!(w.alpha.ip(), w.bravo.ip(), "the world overlaps on purpose");
    for round in 0..50 {
        for (me, proxy) in [
            (&w.alpha, w.router_a),
            (&w.bravo, w.router_b),
            (&w.alpha, w.network_a),
        ] {
            let reply = get_raw(me, proxy, META_DATA, &[]);
            assert_eq!(reply.status, 200, "round {round}: {}", reply.text());
            assert_own_or_refused(&reply, me, &w.others(me), &format!("round {round}"));
            let user_data = get_raw(me, proxy, "/openstack/latest/user_data", &[]);
            assert!(user_data.text().contains(&me.marker));
            assert_no_leak(&user_data, &w.others(me), "user data");
        }
    }
    // charlie's address exists on net-a only: behind tenant B's router it is nobody.
    let reply = get_raw(&w.charlie, w.router_b, META_DATA, &[]);
    assert_eq!(reply.status, 404);
    assert_no_leak(&reply, &w.instances(), "charlie behind r-b");
}

/// How long a registry write takes to reach the running chain: the read models of agent and
/// API follow the change log (150 ms on SQLite at p99), with margin for a loaded machine. A new
/// owner of an address cannot boot sooner.
fn propagation() -> Duration {
    Duration::from_millis(500)
}

/// Asks from `me`'s address for `window` and hands every answer to `check`.
fn ask_for(
    me: &Instance,
    proxy: SocketAddr,
    window: Duration,
    check: impl Fn(&attack_support::Instance, u16, &metaboot_tests::guest::Reply),
) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let reply = get_raw(me, proxy, META_DATA, &[]);
        check(me, reply.status, &reply);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_address_moved_to_another_tenants_port_serves_only_the_new_owner() {
    let w = world();
    // Warm every cache with charlie's answer for 127.20.0.11.
    for _ in 0..5 {
        let reply = get_raw(&w.charlie, w.router_a, META_DATA, &[]);
        assert_own_or_refused(&reply, &w.charlie, &w.others(&w.charlie), "warm");
        assert_eq!(reply.status, 200);
    }
    let shown = w
        .chain
        .registry(&["instance", "show", &w.charlie.uuid])
        .unwrap();
    let port = shown["ports"][0]["id"].as_str().unwrap().to_owned();
    w.chain.run(&["port", "delete", &port]).unwrap();
    // The address goes to a new instance of tenant B, on a port of net-a.
    let delta = attack_support::create_instance(&w.chain, "delta", &w.net_a, "pb", 12);
    w.chain
        .run(&[
            "port",
            "create",
            "--network",
            &w.net_a,
            "--instance",
            &delta.uuid,
            "--ip",
            "127.20.0.11",
        ])
        .unwrap();
    std::thread::sleep(propagation());
    let new_owner = Instance {
        last: 11,
        ..delta.clone()
    };
    let others = vec![&w.alpha, &w.bravo, &w.charlie];
    ask_for(
        &new_owner,
        w.router_a,
        Duration::from_secs(1),
        |me, status, reply| {
            assert_eq!(status, 200, "{}", reply.text());
            assert_own_or_refused(reply, me, &others, "moved address");
        },
    );
    // charlie still exists, without an address: nothing reaches it.
    for proxy in [w.router_a, w.router_b, w.network_a] {
        let reply = get_raw(&w.charlie, proxy, "/openstack/latest/user_data", &[]);
        assert_no_leak(&reply, &[&w.charlie, &w.alpha, &w.bravo], "old owner");
    }
}

#[test]
fn a_deleted_instance_is_never_served() {
    let w = world();
    let reply = get_raw(&w.charlie, w.router_a, "/openstack/latest/user_data", &[]);
    assert!(reply.text().contains(&w.charlie.marker), "cache warmed");
    w.chain
        .run(&["instance", "delete", &w.charlie.uuid])
        .unwrap();
    std::thread::sleep(propagation());
    let everyone = w.instances();
    ask_for(
        &w.charlie,
        w.router_a,
        Duration::from_secs(1),
        |_, status, reply| {
            assert_eq!(status, 404, "{}", reply.text());
            assert_no_leak(reply, &everyone, "deleted instance");
        },
    );
    // Forged headers do not bring it back either.
    let lines: Vec<String> = forged(&w, &w.charlie)
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    let reply = get_raw(&w.alpha, w.router_a, META_DATA, &lines);
    assert_own_or_refused(&reply, &w.alpha, &w.others(&w.alpha), "forged deleted");
}
