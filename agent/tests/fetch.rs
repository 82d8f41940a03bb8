//! The metadata service's documents: the service is found by asking it for `meta_data.json`
//! at the newest version metaboot knows, and an older one by its listing
//! (`agent/src/source/metadata_service.rs`). Once the service has answered, the documents a run
//! reads after `meta_data.json` are asked for ahead, while `meta_data.json` is on its way
//! (`agent/src/source/prefetch.rs`), each once, and the run uses each as if it had fetched it in
//! its own step. With one CPU, each is fetched in its own step.

mod support;

use std::time::Duration;

use support::recorder::{self, Recorder};
use support::server::Fault;
use support::*;

/// How long the test server holds `meta_data.json` back: long enough for the other four
/// requests, answered at once, to arrive while it is on its way on a busy machine, and half
/// the request timeout the guest's metaboot.yaml sets (2 s), so that it is not asked again.
const HELD_BACK: Duration = Duration::from_secs(1);

/// The documents fetched ahead, in the order the run reads them.
const AHEAD: [&str; 4] = [
    "user_data",
    "vendor_data.json",
    "vendor_data2.json",
    "network_data.json",
];

/// Where meta_data.json's answer went out among the test server's events, and where each
/// document of [`AHEAD`] arrived, each asked for once.
fn arrivals(guest: &Guest, meta_data: &str) -> (usize, Vec<(String, usize)>) {
    let (_, answered) = guest.server.arrived_and_answered(meta_data);
    let arrived = AHEAD
        .iter()
        .map(|name| {
            let path = format!("/openstack/latest/{name}");
            assert_eq!(guest.server.hits(&path), 1, "{path}: asked for once");
            let (arrived, _) = guest.server.arrived_and_answered(&path);
            (path, arrived)
        })
        .collect();
    (answered, arrived)
}

/// The newest version metaboot knows (`2025-04-04`).
fn newest() -> &'static str {
    metaboot_proto::OpenStackVersion::LATEST.date()
}

/// The path of document `name` at the newest version.
fn at_newest(name: &str) -> String {
    format!("/openstack/{}/{name}", newest())
}

/// Serves the documents of `openstack/latest` under `openstack/<version>` too.
fn serve_as(guest: &Guest, version: &str) {
    let latest = guest.tree.join("openstack/latest");
    let dated = guest.tree.join("openstack").join(version);
    std::fs::create_dir_all(&dated).unwrap();
    for entry in std::fs::read_dir(&latest).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dated.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_service_that_serves_the_newest_version_is_found_by_its_meta_data() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: found-at-once\n");
    serve_as(&guest, newest());
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let meta_data = at_newest("meta_data.json");
    assert_eq!(guest.server.hits(&meta_data), 1, "{log}");
    assert_eq!(
        guest.server.arrived_and_answered(&meta_data).0,
        0,
        "the first request"
    );
    assert_eq!(guest.server.hits("/openstack"), 0, "no listing asked for");
    assert_eq!(guest.server.hits("/openstack/latest/meta_data.json"), 0);
    assert_eq!(guest.server.hits(&at_newest("user_data")), 1);
    assert_eq!(guest.read("/etc/hostname"), "found-at-once\n");
    assert!(log.contains(&format!("version=\"{}\"", newest())), "{log}");
}

#[test]
fn an_older_service_is_read_at_the_newest_version_of_its_listing() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: from-rocky\n");
    serve_as(&guest, "2018-08-27");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let first = at_newest("meta_data.json");
    let rocky = "/openstack/2018-08-27/meta_data.json";
    for path in [first.as_str(), "/openstack", rocky] {
        assert_eq!(guest.server.hits(path), 1, "{path}: {log}");
    }
    let arrived = |path: &str| guest.server.arrived_and_answered(path).0;
    assert!(
        arrived(&first) < arrived("/openstack") && arrived("/openstack") < arrived(rocky),
        "the newest version, then the listing, then the pick: {log}"
    );
    assert_eq!(guest.server.hits("/openstack/latest/meta_data.json"), 0);
    assert_eq!(guest.read("/etc/hostname"), "from-rocky\n");
    assert!(log.contains("version=\"2018-08-27\""), "{log}");
}

#[test]
fn an_older_service_at_the_first_url_is_read_without_asking_the_next_one() {
    let guest = Guest::new();
    // A URL that would hold a request until its timeout: the run must not connect to it, as
    // an older service's listing at the first URL is the answer.
    let next = guest.config_with_unanswered_url("disable_root: false\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.server.hits(&at_newest("meta_data.json")), 1);
    assert_eq!(guest.server.hits("/openstack"), 1);
    assert_eq!(guest.server.hits("/openstack/latest/meta_data.json"), 1);
    assert!(!next.was_asked(), "the second URL was asked: {log}");
}

#[test]
fn the_other_documents_are_asked_for_while_meta_data_is_on_its_way() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        testutil::missing("a second CPU", "is not there to fetch ahead on");
        return;
    }
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: side-by-side\n");
    guest.serve(
        "vendor_data.json",
        br##"{"cloud-init": "#cloud-config\nruncmd: [[touch, /tmp/vendor-ran]]\n"}"##,
    );
    let meta_data = "/openstack/latest/meta_data.json";
    guest.server.fail(meta_data, Fault::Delay(HELD_BACK), 1);
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.server.hits(meta_data), 1);
    let (meta_data_answered, ahead) = arrivals(&guest, meta_data);
    for (path, arrived) in ahead {
        assert!(
            arrived < meta_data_answered,
            "{path}: asked for before meta_data.json was answered"
        );
    }
    assert_eq!(guest.read("/etc/hostname"), "side-by-side\n");
    assert_eq!(guest.step("vendor-data").0, "ok", "{log}");
}

/// A document that fails side by side fails its own step, and leaves the set incomplete: the
/// instance's data is not applied on half of it (`agent/src/run/fetch.rs`).
#[test]
fn a_document_that_fails_side_by_side_fails_its_own_step_and_holds_the_instance_back() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: still-set\n");
    let attempts = metaboot::source::http::DOCUMENT_ATTEMPTS as usize;
    guest.server.fail(
        "/openstack/latest/vendor_data.json",
        Fault::Status(503),
        attempts,
    );
    let (code, log) = guest.run();
    assert_ne!(code, 0, "{log}");
    let (outcome, message) = guest.step("vendor-data");
    assert_eq!(outcome, "error", "{log}");
    assert!(message.contains("vendor_data.json"), "{message}");
    assert_eq!(guest.step("user-data").0, "ok", "{log}");
    let (outcome, message) = guest.step("cloud-config");
    assert_eq!(outcome, "skipped", "{log}");
    assert!(
        message.starts_with("vendor_data.json could not be fetched"),
        "{message}"
    );
    assert_eq!(guest.read("/etc/hostname"), "localhost\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.read("/etc/hostname"), "still-set\n");
}

/// A document the service refuses for good (403: the same at every boot) fails its own step
/// alone: the instance is taken up without it, as cloud-init takes it for absent; held back,
/// it would never be provisioned.
#[test]
fn a_document_refused_for_good_fails_its_own_step_only() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: still-set\n");
    guest
        .server
        .fail("/openstack/latest/vendor_data.json", Fault::Status(403), 1);
    let (code, log) = guest.run();
    assert_ne!(code, 0, "{log}");
    let (outcome, message) = guest.step("vendor-data");
    assert_eq!(outcome, "error", "{log}");
    assert!(message.contains("HTTP 403"), "{message}");
    assert_eq!(guest.read("/etc/hostname"), "still-set\n");
    assert!(!guest.status()["instance_id"].is_null(), "{log}");
}

/// Other answers that stay the same at every boot (a permanent redirect, which document
/// requests do not follow; a document over its size limit) fail their own step alone too:
/// held back, the instance would never be provisioned.
#[test]
fn a_permanent_redirect_or_an_oversized_document_fails_its_own_step_only() {
    let too_large = vec![b' '; metaboot::source::http::MAX_METADATA_BYTES as usize + 1];
    for case in ["301", "too large"] {
        let guest = Guest::new();
        guest.user_data("#cloud-config\nhostname: still-set\n");
        if case == "301" {
            guest
                .server
                .fail("/openstack/latest/vendor_data.json", Fault::Status(301), 1);
        } else {
            guest.serve("vendor_data.json", &too_large);
        }
        let (code, log) = guest.run();
        assert_ne!(code, 0, "{case}: {log}");
        assert_eq!(guest.step("vendor-data").0, "error", "{case}: {log}");
        assert_eq!(guest.read("/etc/hostname"), "still-set\n", "{case}: {log}");
        assert!(!guest.status()["instance_id"].is_null(), "{case}: {log}");
    }
}

/// A temporary redirect (a load balancer during maintenance) may be gone at the next boot:
/// the instance waits for it, as for a 503, rather than being taken up without its user data.
#[test]
fn a_temporary_redirect_holds_the_instance_back() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: later\n");
    let user_data = "/openstack/latest/user_data";
    guest.server.fail(user_data, Fault::Status(307), 1);
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    assert!(guest.status()["instance_id"].is_null(), "{log}");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.read("/etc/hostname"), "later\n");
}

/// User data that does not come on the first boot (the service answers 503 to every attempt)
/// is not taken for none: the per-instance steps and the user scripts wait, unmarked, for the
/// next boot, which applies the user data whole; a failure on a later boot leaves the
/// instance's cached cloud-config as the last complete set made it.
#[test]
fn user_data_that_fails_on_the_first_boot_is_applied_whole_at_the_next() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nusers: [{name: dave}]\nruncmd: ['echo ran >> runcmd-ran']\n");
    let user_data = "/openstack/latest/user_data";
    let attempts = metaboot::source::http::DOCUMENT_ATTEMPTS as usize;
    guest.server.fail(user_data, Fault::Status(503), attempts);
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    assert_eq!(guest.server.hits(user_data), attempts, "{log}");
    assert_eq!(guest.step("user-data").0, "error", "{log}");
    for step in ["users-groups", "ssh-keys", "runcmd", "scripts-user"] {
        let (outcome, message) = guest.step(step);
        assert_eq!(outcome, "skipped", "{step}: {log}");
        assert!(message.contains("incomplete"), "{step}: {message}");
    }
    assert!(!guest.read("/etc/passwd").contains("dave:"));
    assert!(!guest.path("/runcmd-ran").exists());
    assert!(guest.status()["instance_id"].is_null());
    assert!(!guest.path("/var/lib/metaboot/data/instance-id").exists());
    // Not "(new)": the instance was not taken up, and the message says why.
    let (outcome, message) = guest.step("meta-data");
    assert_eq!(outcome, "ok", "{log}");
    let said = format!("instance {UUID} (not taken up: user_data could not be fetched");
    assert!(message.starts_with(&said), "{message}");

    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert!(guest.read("/etc/passwd").contains("dave:"), "{log}");
    assert_eq!(guest.read("/runcmd-ran"), "ran\n", "{log}");
    let cached = format!("/var/lib/metaboot/instances/{UUID}/cloud-config.json");
    assert!(guest.read(&cached).contains("runcmd"));

    // A later boot whose user data fails keeps the cached cloud-config, and runs nothing again.
    guest.server.fail(user_data, Fault::Status(503), attempts);
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    assert!(guest.read(&cached).contains("runcmd"), "{log}");
    assert_eq!(guest.read("/runcmd-ran"), "ran\n", "{log}");
    let message = guest.step("meta-data").1;
    assert!(message.starts_with(&said), "{message}");
}

#[test]
fn with_one_cpu_each_document_is_fetched_in_its_own_step() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: one-cpu\n");
    let meta_data = "/openstack/latest/meta_data.json";
    guest.server.fail(meta_data, Fault::Delay(HELD_BACK), 1);
    let (code, log) = testutil::on_one_cpu(|| guest.run());
    assert_eq!(code, 0, "{log}");
    let (meta_data_answered, ahead) = arrivals(&guest, meta_data);
    for (path, arrived) in ahead {
        assert!(
            meta_data_answered < arrived && arrived != usize::MAX,
            "{path}: asked for after meta_data.json, in its own step"
        );
    }
    assert_eq!(guest.read("/etc/hostname"), "one-cpu\n");
}

/// Writes metaboot.yaml with the guest's server, `deadline_secs` and `request_timeout_secs`.
fn timing(guest: &Guest, deadline_secs: u64, request_timeout_secs: u64) {
    std::fs::write(
        guest.path("/etc/metaboot/metaboot.yaml"),
        format!(
            "metadata_url: {}\ndeadline_secs: {deadline_secs}\n\
             request_timeout_secs: {request_timeout_secs}\ndisable_root: false\n",
            guest.server.url()
        ),
    )
    .unwrap();
}

/// `deadline_secs: 0` is one round whose requests each have the full request timeout, not
/// requests given 1 ms each.
#[test]
fn a_zero_deadline_is_one_round_with_full_request_timeouts() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: at-once\n");
    timing(&guest, 0, 5);
    guest
        .server
        .fail("/openstack", Fault::Delay(Duration::from_millis(300)), 1);
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.server.hits("/openstack"), 1, "{log}");
    assert_eq!(guest.read("/etc/hostname"), "at-once\n");
}

/// A service that answers just before the deadline still has its documents read, its
/// `#include` URLs too: each has a budget of its own (`DOCUMENT_ATTEMPTS` attempts with the
/// full request timeout, `MAX_INCLUDE_FETCH_TIME`), not what is left of the deadline.
#[test]
fn documents_of_a_service_found_late_have_their_own_time() {
    let guest = Guest::new();
    let base = format!("{}/openstack/latest", guest.server.url());
    guest.user_data(format!("#include\n{base}/late.yaml\n"));
    guest.serve("late.yaml", b"#cloud-config\nhostname: found-late\n");
    timing(&guest, 2, 3);
    let slow = |path: &str, millis| {
        guest
            .server
            .fail(path, Fault::Delay(Duration::from_millis(millis)), 1);
    };
    slow("/openstack", 1500);
    for name in ["meta_data.json", "user_data", "late.yaml"] {
        slow(&format!("/openstack/latest/{name}"), 1000);
    }
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    for name in ["meta_data.json", "user_data", "late.yaml"] {
        assert_eq!(guest.server.hits(&format!("/openstack/latest/{name}")), 1);
    }
    assert_eq!(guest.read("/etc/hostname"), "found-late\n");
}

/// An empty 200 for `meta_data.json` is no answer (cloud-init's `wait_for_url` takes it for
/// "not ready"): the next URL, which answers, is the service.
#[test]
fn an_empty_answer_is_not_the_metadata_service() {
    let guest = Guest::new();
    let empty = guest.dir.path().join("empty");
    let dated = empty.join("openstack").join(newest());
    std::fs::create_dir_all(&dated).unwrap();
    std::fs::write(dated.join("meta_data.json"), "").unwrap();
    let first = MetadataServer::start(&empty);
    guest.config_urls(&[first.url(), guest.server.url()], "");
    let (code, stderr) = guest.run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(guest.status()["source"], "metadata-service");
    assert_eq!(
        first.hits(&at_newest("meta_data.json")),
        1,
        "asked, then passed over"
    );
}

/// `#include` URLs with a user name and password (`http://inc:s3cr%40t@…`), as cloud-init's
/// requests reads them: sent as basic authentication (percent-decoded) to their own host and
/// port, also after a redirect there, and dropped on a redirect elsewhere; a redirect to a URL
/// the agent cannot fetch (TLS, a host name) is an error saying why and naming it. The
/// password is never in the request line, `Host`, status.json, result.json or the log.
#[test]
fn include_urls_send_their_user_info_as_basic_authentication_and_never_show_it() {
    let elsewhere = Recorder::start(vec![(
        "/b.yaml".to_owned(),
        recorder::response("200 OK", "", b"#cloud-config\nhostname: from-b\n"),
    )]);
    let found =
        |location: &str| recorder::response("302 Found", &format!("Location: {location}\r\n"), b"");
    let includes = Recorder::start(vec![
        (
            "/a.yaml".to_owned(),
            recorder::response(
                "200 OK",
                "",
                b"#cloud-config\nhostname: from-a\nfqdn: a.example\n",
            ),
        ),
        ("/again".to_owned(), found("/a.yaml")),
        (
            "/elsewhere".to_owned(),
            found(&format!("http://{}/b.yaml", elsewhere.addr)),
        ),
        ("/tls".to_owned(), found("https://127.0.0.1/a.yaml")),
        ("/named".to_owned(), found("http://example.invalid/")),
        // Not gzip after all: the error names the document by its URL, masked.
        (
            "/broken".to_owned(),
            recorder::response("200 OK", "", b"\x1f\x8b\x08 not gzip"),
        ),
    ]);
    let guest = Guest::new();
    let base = format!("http://inc:s3cr%40t@{}", includes.addr);
    guest.user_data(format!(
        "#include\n{base}/a.yaml\n{base}/again\n{base}/elsewhere\n{base}/tls\n{base}/named\n{base}/broken\n"
    ));
    let (code, log) = guest.run_verbose();
    assert_eq!(
        code, 1,
        "the refused redirects and the bad gzip are errors: {log}"
    );
    assert!(log.contains("GET"), "the debug lines are logged: {log}");
    assert_eq!(guest.read("/etc/hostname"), "from-b\n", "{log}");

    let heads = includes.heads();
    let lines: Vec<&str> = heads.iter().filter_map(|h| h.lines().next()).collect();
    assert_eq!(
        lines,
        [
            "GET /a.yaml HTTP/1.1",
            "GET /again HTTP/1.1",
            "GET /a.yaml HTTP/1.1",
            "GET /elsewhere HTTP/1.1",
            "GET /tls HTTP/1.1",
            "GET /named HTTP/1.1",
            "GET /broken HTTP/1.1",
        ]
    );
    for head in &heads {
        // base64("inc:s3cr@t")
        assert_eq!(
            recorder::header(head, "authorization"),
            Some("Basic aW5jOnMzY3JAdA=="),
            "{head}"
        );
        assert_eq!(
            recorder::header(head, "host"),
            Some(includes.addr.to_string().as_str())
        );
        assert!(!head.contains("s3cr"), "{head}");
    }
    let other = elsewhere.heads();
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(
        recorder::header(&other[0], "authorization"),
        None,
        "{other:?}"
    );

    let (outcome, message) = guest.step("user-data");
    assert_eq!(outcome, "error");
    let masked = format!("http://…@{}", includes.addr);
    for expected in [
        format!(
            "include {masked}/tls: GET {masked}/tls: redirected to a URL the guest agent cannot \
             fetch: \"https://127.0.0.1/a.yaml\": TLS is not supported, use an http:// URL"
        ),
        format!(
            "include {masked}/named: GET {masked}/named: redirected to a URL the guest agent \
             cannot fetch: \"http://example.invalid/\": the host must be an IP address"
        ),
        format!("{masked}/broken: "),
    ] {
        assert!(message.contains(&expected), "{expected}\nin: {message}");
    }
    guest.assert_not_reported(&log, "s3cr");
}

/// A metadata URL with a user name and password is left out, with a warning that names it
/// masked: the metadata service asks for none, and its URLs are in status.json and the log.
/// The next URL is the service.
#[test]
fn a_metadata_url_with_user_info_is_left_out_and_never_shown() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: served\n");
    let with_password = guest
        .server
        .url()
        .replace("http://", "http://meta:Zq8pass@");
    guest.config_urls(&[with_password, guest.server.url()], "");
    let (code, log) = guest.run_verbose();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.read("/etc/hostname"), "served\n");
    let warnings = guest.status()["warnings"].to_string();
    let masked = guest.server.url().replace("http://", "http://…@");
    assert!(
        warnings.contains(&format!(
            "{masked}: a metadata URL takes no user name or password"
        )),
        "{warnings}"
    );
    assert_eq!(
        guest.step("config").1,
        format!("metadata URLs {} (from metaboot.yaml)", guest.server.url())
    );
    guest.assert_not_reported(&log, "Zq8pass");

    // With that URL alone none is usable: the service is not looked for, and the step says
    // why each URL was left out (not that none of no URLs answered).
    let guest = Guest::new();
    let masked = guest.server.url().replace("http://", "http://…@");
    let with_password = masked.replace('…', "meta:Zq8pass");
    guest.config_urls(&[with_password], "");
    let (code, log) = guest.run_verbose();
    assert_eq!(code, 1, "{log}");
    let (_, message) = guest.step("meta-data");
    assert!(
        message.contains(&format!(
            "metadata-service: No usable metadata URL: {masked}: a metadata URL takes no user \
             name or password"
        )),
        "{message}"
    );
    let status = guest.read("/var/lib/metaboot/status.json");
    assert!(
        !log.contains("Zq8pass") && !status.contains("Zq8pass"),
        "{status}"
    );
}

/// A document the service no longer has (a rebuild that dropped the user data, keeping the
/// instance's uuid) leaves no cached copy behind for `metaboot query`, as cloud-init rewrites
/// its copies every boot; one that fails to come keeps the copy of the boot before.
#[test]
fn a_document_now_absent_is_no_longer_cached_and_one_that_fails_keeps_its_copy() {
    let guest = Guest::new();
    guest.user_data("#cloud-config\nhostname: before-rebuild\n");
    guest.serve(
        "vendor_data.json",
        br##"{"cloud-init": "#cloud-config\n{}"}"##,
    );
    guest.serve(
        "network_data.json",
        br#"{"links": [], "networks": [], "services": []}"#,
    );
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let cached = |name: &str| guest.path(&format!("/var/lib/metaboot/instance/{name}"));
    let query = || {
        let out = guest.metaboot(&["query", "user-data"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for name in ["user_data", "vendor_data.json", "network_data.json"] {
        assert!(cached(name).exists(), "{name}");
    }
    assert_eq!(query(), "#cloud-config\nhostname: before-rebuild\n");

    // The user data fails (permanently) this boot: its copy stays.
    guest
        .server
        .fail("/openstack/latest/user_data", Fault::Status(403), 1);
    let (code, log) = guest.run();
    assert_ne!(code, 0, "{log}");
    assert_eq!(guest.step("user-data").0, "error", "{log}");
    assert_eq!(query(), "#cloud-config\nhostname: before-rebuild\n");

    // Then every optional document is gone (404): so are their copies.
    for name in ["user_data", "vendor_data.json", "network_data.json"] {
        std::fs::remove_file(guest.tree.join("openstack/latest").join(name)).unwrap();
    }
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(guest.step("user-data").1, "no user data", "{log}");
    for name in ["user_data", "vendor_data.json", "network_data.json"] {
        assert!(!cached(name).exists(), "{name}: {log}");
    }
    assert_eq!(query(), "");
    assert!(cached("meta_data.json").exists());
}

/// On a reboot of the machine's own instance (its DMI system UUID), a service that answers
/// for another instance (a proxy that misidentifies the machine) is refused: none of that
/// instance's steps run, and the machine stays its own instance.
#[test]
fn a_service_answering_for_another_instance_on_a_reboot_is_refused() {
    let guest = Guest::new();
    let dmi = guest.path("/sys/class/dmi/id/product_uuid");
    std::fs::create_dir_all(dmi.parent().unwrap()).unwrap();
    std::fs::write(&dmi, format!("{}\n", UUID.to_uppercase())).unwrap();
    guest.user_data("#cloud-config\nbootcmd: ['echo boot >> boots']\n");
    let (code, log) = guest.run();
    assert_eq!(code, 0, "{log}");
    let other = "0b5c7d5e-0000-4000-8000-000000000001";
    guest.meta_data(&serde_json::json!({
        "uuid": other,
        "hostname": "other.novalocal",
        "name": "other",
        "public_keys": {"theirs": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther other@host"},
    }));
    guest.user_data("#cloud-config\nruncmd: ['echo theirs > theirs-ran']\n");
    let (code, log) = guest.run();
    assert_eq!(code, 1, "{log}");
    let (outcome, message) = guest.step("meta-data");
    assert_eq!(outcome, "error", "{log}");
    assert!(
        message.starts_with("refused: the source answered for instance 0b5c7d5e")
            && message.contains(&format!("this machine is instance {UUID}")),
        "{message}"
    );
    assert_eq!(
        guest.read("/var/lib/metaboot/data/instance-id"),
        format!("{UUID}\n")
    );
    assert!(!guest.path("/theirs-ran").exists(), "{log}");
    assert!(
        !guest
            .read("/root/.ssh/authorized_keys")
            .contains("other@host")
    );
    assert_eq!(guest.read("/etc/hostname"), "test\n");
    assert_eq!(
        guest.read("/boots"),
        "boot\nboot\n",
        "its own bootcmd, from its cache"
    );
}
