//! `phone_home`, as a test harness waiting for its guests uses it: once per instance the
//! guest POSTs its id, names and host keys as a form to the URL (its `$INSTANCE_ID` filled
//! in), retrying 3 s apart; a POST that never succeeds is a warning, and the run is done.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use support::{Guest, UUID};

/// One request the receiver got: its request line, content type, `Host`, `Authorization`
/// (if any) and body.
#[derive(Debug, Clone)]
struct Posted {
    line: String,
    content_type: String,
    host: String,
    authorization: Option<String>,
    body: String,
}

/// A phone-home receiver on loopback: answers each request with the next status of
/// `statuses` (200 once they are used up) and keeps what it got.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Posted>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Self {
        Receiver::answering(
            statuses
                .iter()
                .map(|&status| (status, String::new()))
                .collect(),
        )
    }

    /// A receiver answering each request with the next status and its header lines (each
    /// ending in `\r\n`: a redirect's `Location`), 200 once they are used up.
    fn answering(answers: Vec<(u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (kept, mut statuses) = (got.clone(), answers);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let (mut length, mut content_type) = (0usize, String::new());
                let (mut host, mut authorization) = (String::new(), None);
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "content-type" => value.trim().clone_into(&mut content_type),
                        "host" => value.trim().clone_into(&mut host),
                        "authorization" => authorization = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock().unwrap().push(Posted {
                    line: line.trim_end().to_owned(),
                    content_type,
                    host,
                    authorization,
                    body: String::from_utf8(body).unwrap(),
                });
                let (status, headers) = if statuses.is_empty() {
                    (200, String::new())
                } else {
                    statuses.remove(0)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { addr, got }
    }

    fn got(&self) -> Vec<Posted> {
        self.got.lock().unwrap().clone()
    }
}

/// The form's fields, decoded (`+` is a space, `%XX` a byte).
fn fields(body: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&text[at + 1..at + 3], 16).unwrap());
                    at += 2;
                }
                byte => out.push(byte),
            }
            at += 1;
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (decode(name), decode(value))
        })
        .collect()
}

const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhoneHomeTestKey root@test\n";

#[test]
fn every_field_is_posted_once_per_instance() {
    let receiver = Receiver::start(&[]);
    let guest = Guest::new();
    std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
    std::fs::write(guest.path("/etc/ssh/ssh_host_ed25519_key.pub"), ED25519).unwrap();
    guest.user_data(format!(
        "#cloud-config\nfqdn: web.example.org\nssh_deletekeys: false\nphone_home:\n  url: http://{}/booted/$INSTANCE_ID/?again=${{INSTANCE_ID}}\n  post: all\n",
        receiver.addr
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].line,
        format!("POST /booted/{UUID}/?again={UUID} HTTP/1.1")
    );
    assert_eq!(got[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(got[0].authorization, None);
    let posted = fields(&got[0].body);
    let names: Vec<&str> = posted.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pub_key_dsa",
            "pub_key_rsa",
            "pub_key_ecdsa",
            "pub_key_ed25519",
            "instance_id",
            "hostname",
            "fqdn"
        ]
    );
    let value = |name: &str| {
        posted
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(value("pub_key_ed25519"), ED25519);
    assert_eq!(value("pub_key_rsa"), "N/A");
    assert_eq!(value("instance_id"), UUID);
    // The datasource's names (meta_data's `hostname`), as cloud-init posts them, not the
    // cloud-config's `fqdn`.
    assert_eq!(value("hostname"), "test");
    assert_eq!(value("fqdn"), "test.novalocal");
    assert_eq!(
        guest.step("phone-home"),
        (
            "ok".into(),
            format!(
                "posted 7 fields to http://{}/booted/{UUID}/?again={UUID}",
                receiver.addr
            )
        )
    );
    // The missing key files are named in the warnings.
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains("no /etc/ssh/ssh_host_rsa_key.pub: N/A posted"),
        "{warnings}"
    );
    // Once per instance.
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(receiver.got().len(), 1);
}

#[test]
fn a_list_posts_its_fields_and_an_unknown_one_as_not_available() {
    let receiver = Receiver::start(&[]);
    let guest = Guest::new();
    // A key file larger than a public key is not posted.
    std::fs::create_dir_all(guest.path("/etc/ssh")).unwrap();
    let huge = "x".repeat(metaboot::apply::keys_to_console::MAX_PUBLIC_KEY_BYTES + 1);
    std::fs::write(guest.path("/etc/ssh/ssh_host_ecdsa_key.pub"), huge).unwrap();
    guest.user_data(format!(
        "#cloud-config\nssh_deletekeys: false\nphone_home:\n  url: http://{}/\n  post: [instance_id, colour, hostname, pub_key_ecdsa]\n",
        receiver.addr
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let got = receiver.got();
    assert_eq!(
        fields(&got[0].body),
        [
            ("instance_id".to_owned(), UUID.to_owned()),
            ("colour".to_owned(), "N/A".to_owned()),
            ("hostname".to_owned(), "test".to_owned()),
            ("pub_key_ecdsa".to_owned(), "N/A".to_owned()),
        ]
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(warnings.contains("no field colour"), "{warnings}");
    assert!(
        warnings.contains("ssh_host_ecdsa_key.pub is larger than a public key"),
        "{warnings}"
    );
    // Key files not asked for are not read, so not reported.
    assert!(!warnings.contains("ssh_host_rsa_key.pub"), "{warnings}");
}

#[test]
fn a_failure_is_tried_again_3_s_later() {
    let receiver = Receiver::start(&[503]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://{}/up\n  tries: 3\n",
        receiver.addr
    ));
    let started = std::time::Instant::now();
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(receiver.got().len(), 2);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(guest.step("phone-home").0, "ok");
}

#[test]
fn a_refusal_or_a_url_the_agent_cannot_reach_is_a_warning_and_the_run_is_done() {
    let receiver = Receiver::start(&[404]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://{}/up\n",
        receiver.addr
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    // A 404 is not tried again.
    assert_eq!(receiver.got().len(), 1);
    let (outcome, message) = guest.step("phone-home");
    assert_eq!(outcome, "ok");
    assert!(message.starts_with("not posted to http://"), "{message}");
    assert_eq!(guest.status()["status"], "done");
    let warnings = guest.status()["warnings"].to_string();
    assert!(warnings.contains("HTTP 404"), "{warnings}");

    let named = Guest::new();
    named.user_data("#cloud-config\nphone_home:\n  url: http://harness.example/up\n");
    let (code, log) = named.run();
    assert_eq!(code, 0, "{log}");
    let warnings = named.status()["warnings"].to_string();
    assert!(
        warnings.contains("the host must be an IP address"),
        "{warnings}"
    );
}

/// A `phone_home` URL with a user name and password (`http://user:secret@…`), as cloud-init's
/// requests posts it: they are sent as basic authentication (percent-decoded), never in the
/// request line or `Host`, and masked in the step's message, so they are in neither
/// status.json nor result.json (mode 0644) nor the log.
#[test]
fn a_password_in_the_url_is_sent_as_basic_authentication_and_masked_in_every_report() {
    let receiver = Receiver::start(&[]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://harness:s%40cret@{}/up/$INSTANCE_ID\n  tries: 1\n",
        receiver.addr
    ));
    let (code, log) = guest.run_verbose();
    assert_eq!(code, 0, "{log}");
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].line, format!("POST /up/{UUID} HTTP/1.1"));
    assert_eq!(got[0].host, receiver.addr.to_string());
    // base64("harness:s@cret")
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Basic aGFybmVzczpzQGNyZXQ=")
    );
    let (outcome, message) = guest.step("phone-home");
    assert_eq!(outcome, "ok");
    assert_eq!(
        message,
        format!("posted 7 fields to http://…@{}/up/{UUID}", receiver.addr)
    );
    assert!(log.contains("POST"), "the debug lines are logged: {log}");
    guest.assert_not_reported(&log, "cret");

    // Refused (401) and so not posted: still masked.
    let refusing = Receiver::start(&[401]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://harness:secret@{}/up/$INSTANCE_ID\n  tries: 1\n",
        refusing.addr
    ));
    let (code, log) = guest.run_verbose();
    assert_eq!(code, 0, "{log}");
    assert_eq!(refusing.got().len(), 1);
    assert_eq!(
        guest.step("phone-home").1,
        format!(
            "not posted to http://…@{}/up/{UUID} (see the warnings)",
            refusing.addr
        )
    );
    let warnings = guest.status()["warnings"].to_string();
    assert!(warnings.contains("HTTP 401"), "{warnings}");
    guest.assert_not_reported(&log, "secret");
}

#[test]
fn in_the_final_stage_the_meta_data_names_are_posted() {
    // As metaboot-final.service runs it: the init stage sets the user data's host name, the
    // final stage posts meta_data's, from what the init stage cached.
    let receiver = Receiver::start(&[]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nhostname: ud-name\nphone_home:\n  url: http://{}/$INSTANCE_ID\n  post: [hostname, fqdn]\n",
        receiver.addr
    ));
    let (code, log) = guest.run_stage("init");
    assert_eq!(code, 0, "{log}");
    assert!(receiver.got().is_empty(), "posted in the init stage");
    assert_eq!(guest.read("/etc/hostname").trim(), "ud-name");
    let (code, log) = guest.run_stage("final");
    assert_eq!(code, 0, "{log}");
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].line, format!("POST /{UUID} HTTP/1.1"));
    assert_eq!(
        fields(&got[0].body),
        [
            ("hostname".to_owned(), "test".to_owned()),
            ("fqdn".to_owned(), "test.novalocal".to_owned()),
        ]
    );
}

/// A redirect of `status` to `location`, as [`Receiver::answering`] takes it.
fn redirect(status: u16, location: &str) -> (u16, String) {
    (status, format!("Location: {location}\r\n"))
}

/// Redirects are followed as cloud-init's requests follows them: after a 302 (or a 301, 303)
/// the URL it names is read with a GET without the body; after a 307 (or 308) the form is
/// POSTed there again. The basic authentication goes along to the same host and port only.
#[test]
fn a_redirect_is_followed_as_requests_follows_it() {
    let elsewhere = Receiver::start(&[]);
    let receiver = Receiver::answering(vec![
        redirect(302, "/found"),
        (200, String::new()),
        redirect(307, &format!("http://{}/moved", elsewhere.addr)),
    ]);
    let url = format!("http://harness:s%40cret@{}/up/$INSTANCE_ID", receiver.addr);
    // base64("harness:s@cret")
    let basic = Some("Basic aGFybmVzczpzQGNyZXQ=");

    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: {url}\n  tries: 1\n"
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].line, format!("POST /up/{UUID} HTTP/1.1"));
    assert!(
        got[0].body.contains(&format!("instance_id={UUID}")),
        "{got:?}"
    );
    assert_eq!(got[1].line, "GET /found HTTP/1.1");
    assert_eq!(
        (got[1].body.as_str(), got[1].content_type.as_str()),
        ("", "")
    );
    for request in &got {
        assert_eq!(request.authorization.as_deref(), basic, "{request:?}");
    }
    assert_eq!(guest.step("phone-home").0, "ok");

    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: {url}\n  tries: 1\n"
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let (first, moved) = (receiver.got()[2].clone(), elsewhere.got());
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].line, "POST /moved HTTP/1.1");
    assert_eq!(moved[0].body, first.body);
    assert_eq!(moved[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(first.authorization.as_deref(), basic);
    assert_eq!(moved[0].authorization, None, "another port: not sent");
    assert_eq!(guest.step("phone-home").0, "ok");
}

/// A redirect loop ends after [`metaboot::apply::phone_home::MAX_REDIRECTS`] redirects with a
/// warning saying so; a redirect to a URL the agent cannot reach names it, its password
/// masked.
#[test]
fn a_redirect_loop_or_a_target_the_agent_cannot_reach_is_a_warning_naming_it() {
    let limit = metaboot::apply::phone_home::MAX_REDIRECTS;
    assert_eq!(limit, 30, "requests' DEFAULT_REDIRECT_LIMIT");
    let looping = Receiver::answering(vec![redirect(302, "/again"); limit as usize + 5]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://{}/up\n  tries: 1\n",
        looping.addr
    ));
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(looping.got().len(), limit as usize + 1);
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "POST http://{}/up: more than {limit} redirects; point the URL at where the \
             request is received",
            looping.addr
        )),
        "{warnings}"
    );

    let refused = Receiver::answering(vec![redirect(307, "https://harness:S3cret@127.0.0.1/up")]);
    let guest = Guest::new();
    guest.user_data(format!(
        "#cloud-config\nphone_home:\n  url: http://harness:S3cret@{}/up\n  tries: 1\n",
        refused.addr
    ));
    let (code, log) = guest.run_verbose();
    assert_eq!(code, 0, "{log}");
    assert_eq!(refused.got().len(), 1);
    let warnings = guest.status()["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "POST http://…@{}/up: redirected to a URL the guest agent cannot fetch: \
             \\\"https://…@127.0.0.1/up\\\": TLS is not supported",
            refused.addr
        )),
        "{warnings}"
    );
    guest.assert_not_reported(&log, "S3cret");
}
