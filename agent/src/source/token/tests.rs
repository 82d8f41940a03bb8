use std::time::{Duration, Instant};

use super::*;
use crate::retry::{Retry, Transient};
use crate::source::http::tests::{response, serve_recording};
use crate::source::http::{FetchError, HttpClient};
use crate::userdata::include::Fetch;

const LEFT: Duration = Duration::from_secs(5);

fn client() -> HttpClient {
    HttpClient::new(LEFT, Retry::until(Instant::now() + LEFT))
}

/// Each request's first line and its `X-metadata-token` and TTL headers.
fn seen(heads: &std::sync::Mutex<Vec<String>>) -> Vec<(String, Option<String>, Option<String>)> {
    let header = |head: &str, name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
    };
    let heads = heads.lock().unwrap();
    heads
        .iter()
        .map(|head| {
            (
                head.lines().next().unwrap_or_default().to_owned(),
                header(head, METADATA_TOKEN),
                header(head, METADATA_TOKEN_TTL),
            )
        })
        .collect()
}

fn line(
    request: &str,
    token: Option<&str>,
    ttl: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (
        format!("{request} HTTP/1.1"),
        token.map(str::to_owned),
        ttl.map(str::to_owned),
    )
}

const TTL: &str = "21600";

/// A 401 gets a token (one PUT, of [`TOKEN_TTL_SECS`]) and the GET is repeated with it; the
/// token then goes with every later request to the service, from the client's clones and from
/// a client in its session (the password post-back), a POST included; a held token the
/// service no longer takes (401: expired) is replaced once. An `#include` of the same host
/// never carries it.
#[test]
fn a_401_gets_a_token_that_goes_with_every_later_request() {
    let (addr, heads) = serve_recording(vec![
        response("401 Unauthorized", "", b"A session token is required\n"),
        response("200 OK", "", b"v1.first\n"),
        response("200 OK", "", b"{}"),
        response("200 OK", "", b"user"),
        response("204 No Content", "", b""),
        response("200 OK", "", b"#cloud-config\n"),
        response("401 Unauthorized", "", b"The session token has expired\n"),
        response("200 OK", "", b"v1.second"),
        response("200 OK", "", b"{}"),
        response("200 OK", "", b"{}"),
    ]);
    let base = format!("http://{addr}");
    let c = client();
    let doc = |c: &HttpClient, path: &str| c.get_once(&format!("{base}/{path}"), 100, LEFT);
    assert_eq!(doc(&c, "openstack/meta").unwrap().unwrap(), b"{}");
    assert_eq!(doc(&c.clone(), "openstack/user").unwrap().unwrap(), b"user");
    let poster = HttpClient::new(LEFT, Retry::for_budget(LEFT)).in_session(c.session());
    poster
        .post(
            &format!("{base}/openstack/latest/password"),
            "text/plain",
            b"x",
        )
        .unwrap();
    let include = Fetch::fetch(&c, &format!("{base}/include"), 100).unwrap();
    assert_eq!(include.unwrap(), b"#cloud-config\n");
    assert_eq!(doc(&c, "openstack/network").unwrap().unwrap(), b"{}");
    assert_eq!(doc(&c, "openstack/vendor").unwrap().unwrap(), b"{}");
    let first = Some("v1.first");
    let second = Some("v1.second");
    assert_eq!(
        seen(&heads),
        [
            line("GET /openstack/meta", None, None),
            line("PUT /latest/api/token", None, Some(TTL)),
            line("GET /openstack/meta", first, None),
            line("GET /openstack/user", first, None),
            line("POST /openstack/latest/password", first, None),
            line("GET /include", None, None),
            line("GET /openstack/network", first, None),
            line("PUT /latest/api/token", None, Some(TTL)),
            line("GET /openstack/network", second, None),
            line("GET /openstack/vendor", second, None),
        ]
    );
}

/// A service without tokens (nova) never sees a PUT nor a token header, whatever it answers.
#[test]
fn a_service_without_tokens_never_sees_a_put() {
    let (addr, heads) = serve_recording(vec![
        response("404 Not Found", "", b""),
        response("200 OK", "", b"openstack"),
        response("403 Forbidden", "", b"no\n"),
        response("204 No Content", "", b""),
    ]);
    let c = client();
    let url = format!("http://{addr}/openstack");
    assert_eq!(c.get_once(&url, 100, LEFT).unwrap(), None);
    assert!(c.get_once(&url, 100, LEFT).unwrap().is_some());
    assert!(c.get_once(&url, 100, LEFT).is_err());
    c.post_once(&url, "text/plain", b"x", LEFT).unwrap();
    let seen = seen(&heads);
    assert_eq!(seen.len(), 4);
    for (request, token, ttl) in &seen {
        assert!(request.starts_with("GET /openstack") || request.starts_with("POST /openstack"));
        assert_eq!((token, ttl), (&None, &None), "{request}");
    }
}

/// A token PUT answered other than 200 is an error naming its status and the service's reason:
/// retried when it may pass (a 5xx), not otherwise. A 200 without a usable token (over
/// [`MAX_TOKEN_BYTES`]) is refused too.
#[test]
fn a_token_the_service_refuses_to_issue_is_an_error_naming_the_status() {
    let too_long = vec![b'a'; MAX_TOKEN_BYTES as usize + 1];
    let (addr, _) = serve_recording(vec![
        response("401 Unauthorized", "", b"token required\n"),
        response(
            "403 Forbidden",
            "",
            b"A session token request must not carry X-Forwarded-For.\n",
        ),
        response("401 Unauthorized", "", b"token required\n"),
        response("503 Service Unavailable", "", b"busy\n"),
        response("401 Unauthorized", "", b"token required\n"),
        response("200 OK", "", &too_long),
    ]);
    let c = client();
    let url = format!("http://{addr}/openstack");
    let err = c.get_once(&url, 100, LEFT).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "GET http://{addr}/openstack: HTTP 401, and the metadata service refused a \
             session token (PUT /latest/api/token): HTTP 403: A session token request must not \
             carry X-Forwarded-For."
        )
    );
    assert!(!err.is_transient());
    let err = c.get_once(&url, 100, LEFT).unwrap_err();
    assert!(
        matches!(err, FetchError::TokenRefused { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    let err = c.get_once(&url, 100, LEFT).unwrap_err();
    assert!(
        matches!(err, FetchError::TokenRefused { status: 200, .. }),
        "{err}"
    );
    assert!(c.session().held(&url).is_none());
}

/// A 401 to the request repeated with a token just issued is an error, not another PUT.
#[test]
fn a_401_with_a_fresh_token_is_an_error_not_a_loop() {
    let (addr, heads) = serve_recording(vec![
        response("401 Unauthorized", "", b"token required\n"),
        response("200 OK", "", b"v1.fresh"),
        response("401 Unauthorized", "", b"The session token is not valid.\n"),
        response("200 OK", "", b"v1.again"),
    ]);
    let url = format!("http://{addr}/openstack");
    let err = client().get_once(&url, 100, LEFT).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "GET {url}: HTTP 401 with a session token just issued (The session token is not \
             valid.); check that no proxy on the way drops the X-metadata-token header"
        )
    );
    assert!(!err.is_transient());
    assert_eq!(seen(&heads).len(), 3);
}

/// The TTL is within what every token service grants (EC2, Firecracker, metaboot-server: 1 to
/// 21600 s) and outlasts the longest run; a token is kept for its service only.
#[test]
fn the_ttl_the_bound_and_the_origin() {
    const { assert!(TOKEN_TTL_SECS >= 1 && TOKEN_TTL_SECS <= 21_600) };
    const { assert!(TOKEN_TTL_SECS as u64 >= crate::config::MAX_DEADLINE_SECS) };
    // metaboot-server's token: `v1.<10-digit expiry>.<64 hex digits>`.
    const { assert!(MAX_TOKEN_BYTES >= 78) };
    assert_eq!(ttl_header().1, TTL);
    assert_eq!(
        token_url("http://[fe80::a9fe:a9fe%25eth0]:8080/openstack/latest/meta_data.json"),
        "http://[fe80::a9fe:a9fe%25eth0]:8080/latest/api/token"
    );
    assert_eq!(
        token_url("http://169.254.169.254"),
        "http://169.254.169.254/latest/api/token"
    );
    let session = Session::default();
    session.keep(
        "http://169.254.169.254/openstack",
        issued("v1.t\n").unwrap(),
    );
    assert!(
        session
            .held("http://169.254.169.254/openstack/latest/user_data")
            .is_some()
    );
    assert!(
        session
            .held("http://169.254.169.254:8080/openstack")
            .is_none()
    );
    assert!(
        session
            .held("http://[fe80::a9fe:a9fe%25eth0]/openstack")
            .is_none()
    );
    assert!(issued("").is_none() && issued("a\nb").is_none());
    assert!(format!("{:?}", issued("v1.secret").unwrap()).contains("Sensitive"));
}
