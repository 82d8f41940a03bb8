//! Requests straight to the metadata API, without the agent (someone who reached the API's port):
//! missing, repeated, wrong, truncated, upper-case and empty signatures get 400/403/404 as nova
//! does (docs/protocol.md §2.6), never 200, never 500; and the agent's own socket never lets a
//! caller's identity headers through.

mod attack_support;

use std::io::{Read, Write};

use attack_support::{World, assert_no_leak, world};
use metaboot_tests::chain::SECRET;
use metaboot_tests::guest::{self, Reply};

const META_DATA: &str = "/openstack/latest/meta_data.json";

fn sign(id: &str) -> String {
    metaboot_proto::sign(SECRET.as_bytes(), id)
}

/// `GET path` straight to the API with these header lines.
fn direct(w: &World, path: &str, lines: &[String]) -> Reply {
    let mut raw =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for line in lines {
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    guest::exchange(None, w.chain.api_addr, &raw).unwrap()
}

fn lines(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect()
}

#[test]
fn bad_signatures_and_headers_get_novas_status_never_200_or_500() {
    let w = world();
    let (id, tenant) = (w.alpha.uuid.as_str(), w.alpha.project);
    let good = sign(id);
    // The control: what the agent sends gets the document.
    let ok = direct(
        &w,
        META_DATA,
        &lines(&[
            ("X-Instance-ID", id),
            ("X-Tenant-ID", tenant),
            ("X-Instance-ID-Signature", &good),
        ]),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["uuid"], id);

    let other_secret = metaboot_proto::sign(b"not-the-secret", id);
    let of_bravo = sign(&w.bravo.uuid);
    let upper = good.to_uppercase();
    let non_hex = "g".repeat(64);
    let long_id = "x".repeat(8000);
    let long_sig = sign(&long_id);
    let unknown = "00000000-0000-4000-8000-000000000000";
    let unknown_sig = sign(unknown);
    let cases: Vec<(u16, &str, Vec<String>)> = vec![
        (400, "no headers", vec![]),
        (400, "instance only", lines(&[("X-Instance-ID", id)])),
        (
            400,
            "no tenant",
            lines(&[("X-Instance-ID", id), ("X-Instance-ID-Signature", &good)]),
        ),
        (
            400,
            "no signature",
            lines(&[("X-Instance-ID", id), ("X-Tenant-ID", tenant)]),
        ),
        (
            400,
            "only an address and a provider (no source-IP fallback)",
            lines(&[
                ("X-Forwarded-For", &w.alpha.ip().to_string()),
                ("X-Metadata-Provider", "lb"),
            ]),
        ),
        (
            400,
            "repeated instance id",
            lines(&[
                ("X-Instance-ID", id),
                ("X-Instance-ID", id),
                ("X-Tenant-ID", tenant),
                ("X-Instance-ID-Signature", &good),
            ]),
        ),
        (
            400,
            "repeated tenant",
            lines(&[
                ("X-Instance-ID", id),
                ("X-Tenant-ID", tenant),
                ("x-tenant-id", tenant),
                ("X-Instance-ID-Signature", &good),
            ]),
        ),
        (
            400,
            "repeated signature",
            lines(&[
                ("X-Instance-ID", id),
                ("X-Tenant-ID", tenant),
                ("X-Instance-ID-Signature", &good),
                ("X-INSTANCE-ID-SIGNATURE", &good),
            ]),
        ),
        (
            400,
            "a second instance id of another instance",
            lines(&[
                ("X-Instance-ID", id),
                ("X-Instance-ID", &w.bravo.uuid),
                ("X-Tenant-ID", tenant),
                ("X-Instance-ID-Signature", &good),
            ]),
        ),
    ];
    let mut all = cases;
    for (what, signature) in [
        ("wrong secret", other_secret.as_str()),
        ("another instance's signature", of_bravo.as_str()),
        ("upper-case hex", upper.as_str()),
        ("truncated to 63", &good[..63]),
        ("truncated to 32", &good[..32]),
        ("empty", ""),
        ("not hex", non_hex.as_str()),
    ] {
        all.push((
            403,
            what,
            lines(&[
                ("X-Instance-ID", id),
                ("X-Tenant-ID", tenant),
                ("X-Instance-ID-Signature", signature),
            ]),
        ));
    }
    let extended = format!("{good}0");
    all.push((
        403,
        "one extra character",
        lines(&[
            ("X-Instance-ID", id),
            ("X-Tenant-ID", tenant),
            ("X-Instance-ID-Signature", &extended),
        ]),
    ));
    all.push((
        404,
        "tenant mismatch",
        lines(&[
            ("X-Instance-ID", id),
            ("X-Tenant-ID", w.bravo.project),
            ("X-Instance-ID-Signature", &good),
        ]),
    ));
    all.push((
        404,
        "unknown instance",
        lines(&[
            ("X-Instance-ID", unknown),
            ("X-Tenant-ID", tenant),
            ("X-Instance-ID-Signature", &unknown_sig),
        ]),
    ));
    all.push((
        404,
        "a long instance id, signed",
        lines(&[
            ("X-Instance-ID", &long_id),
            ("X-Tenant-ID", tenant),
            ("X-Instance-ID-Signature", &long_sig),
        ]),
    ));
    let everyone = w.instances();
    for (want, what, headers) in &all {
        for path in [
            META_DATA,
            "/openstack/latest/user_data",
            "/latest/meta-data/hostname",
            "/openstack/latest/password",
        ] {
            let reply = direct(&w, path, headers);
            assert_eq!(reply.status, *want, "{what} {path}: {}", reply.text());
            assert_no_leak(&reply, &everyone, what);
        }
    }
    // A header value that is not text.
    let mut raw = format!(
        "GET {META_DATA} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Tenant-ID: pa\r\nX-Instance-ID-Signature: {good}\r\nX-Instance-ID: "
    )
    .into_bytes();
    raw.extend_from_slice(b"\xff\xfe\r\n\r\n");
    let reply = guest::exchange(None, w.chain.api_addr, &raw).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    // Still serving.
    let ok = direct(
        &w,
        META_DATA,
        &lines(&[
            ("X-Instance-ID", id),
            ("X-Tenant-ID", tenant),
            ("X-Instance-ID-Signature", &good),
        ]),
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn a_deleted_instance_is_404_even_with_a_good_signature() {
    let w = world();
    let charlie = &w.charlie;
    let headers = lines(&[
        ("X-Instance-ID", &charlie.uuid),
        ("X-Tenant-ID", charlie.project),
        ("X-Instance-ID-Signature", &sign(&charlie.uuid)),
    ]);
    assert_eq!(direct(&w, META_DATA, &headers).status, 200, "cached now");
    w.chain.run(&["instance", "delete", &charlie.uuid]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let reply = direct(&w, META_DATA, &headers);
        if reply.status == 404 {
            assert_no_leak(&reply, &w.instances(), "deleted");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            reply.status
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_agent_socket_never_forwards_a_callers_identity() {
    let w = world();
    let raw = format!(
        "GET {META_DATA} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         X-Forwarded-For: {}\r\nX-Neutron-Router-ID: {}\r\n\
         X-Instance-ID: {}\r\nX-Tenant-ID: {}\r\nX-Instance-ID-Signature: {}\r\n\r\n",
        w.alpha.ip(),
        w.router_a_id,
        w.charlie.uuid,
        w.charlie.project,
        sign(&w.charlie.uuid),
    );
    let mut stream = std::os::unix::net::UnixStream::connect(&w.chain.agent_socket).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let reply = guest::parse(&bytes).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uuid"], w.alpha.uuid.as_str());
    assert_no_leak(&reply, &[&w.charlie, &w.bravo], "agent socket");
}
