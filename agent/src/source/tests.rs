//! The chooser: the first datasource of the order that this machine has, unusable ones skipped
//! with a warning, unknown names ignored.

use std::time::{Duration, Instant};

use super::http::HttpClient;
use super::http::tests::{response, serve};
use super::*;
use crate::retry::Retry;
use crate::root::Root;
use crate::source::drive::tests::{add_device, vfat_image};
use crate::testutil::require_tool;

/// How long a test's local metadata service is given to answer: its thread may wait seconds
/// for a CPU on a loaded host, and a test that gets its answer never waits this out.
const ANSWER_TIME: Duration = Duration::from_secs(30);

/// A client for a service that answers: one round of discovery, each request given
/// [`ANSWER_TIME`] (a zero budget, `retry.rs`: not a past deadline, whose one round has 1 ms).
fn answered_client() -> HttpClient {
    HttpClient::new(ANSWER_TIME, Retry::for_budget(Duration::ZERO))
}

/// A client for a URL where nothing listens: one round past its deadline, refused at once (and
/// at most 1 ms should a listener take the port meanwhile), so the chooser moves on quickly.
fn unanswered_client() -> HttpClient {
    HttpClient::new(Duration::from_secs(1), Retry::until(Instant::now()))
}

/// A metadata service that answers `meta_data.json` `times` times.
fn service(times: usize) -> String {
    let answers = vec![response("200 OK", "", br#"{"uuid": "u"}"#); times];
    format!("http://{}", serve("127.0.0.1:0", answers).unwrap())
}

/// A metadata URL where nothing listens.
fn no_service() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", closed.local_addr().unwrap())
}

fn chosen(
    root: &Root,
    client: &HttpClient,
    url: &str,
    order: &[&str],
    warnings: &mut Vec<String>,
) -> Option<&'static str> {
    let probe = Probe {
        root,
        urls: &[url.to_owned()],
        left_out: &[],
        client,
    };
    choose(order, &probe, warnings)
        .ok()
        .map(|source| source.name())
}

#[test]
fn the_default_order_is_cloud_init_s_config_drive_nocloud_then_the_metadata_service() {
    assert_eq!(
        names().collect::<Vec<_>>(),
        [config_drive::NAME, nocloud::NAME, metadata_service::NAME]
    );
}

#[test]
fn the_first_datasource_present_wins_and_unknown_names_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let mut warnings = Vec::new();
    let all: Vec<&str> = names().collect();
    let url = service(2);
    let client = answered_client();
    assert_eq!(
        chosen(&root, &client, &url, &all, &mut warnings),
        Some(metadata_service::NAME)
    );
    assert_eq!(
        chosen(&root, &client, &url, &["config-drive"], &mut warnings),
        None
    );
    assert_eq!(
        chosen(
            &root,
            &client,
            &url,
            &["nope", "metadata-service"],
            &mut warnings
        ),
        Some(metadata_service::NAME)
    );
    assert_eq!(chosen(&root, &client, &url, &[], &mut warnings), None);
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// A metadata service that never answers within the deadline passes to the next datasource
/// (here a NoCloud seed directory), with a warning; with none after it, the chooser says why
/// it was passed over.
#[test]
fn a_metadata_service_never_found_passes_to_the_next_datasource() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let seed = root.host_path(nocloud::SEED_DIRS[0]);
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: seeded\n").unwrap();
    std::fs::write(seed.join("user-data"), "").unwrap();
    let mut warnings = Vec::new();
    let url = no_service();
    let client = unanswered_client();
    assert_eq!(
        chosen(
            &root,
            &client,
            &url,
            &[metadata_service::NAME, nocloud::NAME],
            &mut warnings
        ),
        Some(nocloud::NAME)
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("metadata-service: Metadata service not found (check")
            && warnings[0].contains(&url)
            && warnings[0].ends_with("; trying the next datasource"),
        "{warnings:?}"
    );

    let urls = [url.clone()];
    let probe = Probe {
        root: &root,
        urls: &urls,
        left_out: &[],
        client: &client,
    };
    let Err(unusable) = choose(&[metadata_service::NAME], &probe, &mut Vec::new()) else {
        panic!("no metadata service there");
    };
    assert_eq!(unusable.len(), 1, "{unusable:?}");
    assert!(unusable[0].starts_with("metadata-service: Metadata service not found"));
}

/// A config drive that cannot be mounted (here: an image file, not a block device) is a
/// warning, and the next datasource is used.
#[test]
fn an_unusable_datasource_is_a_warning_and_the_next_one_is_tried() {
    if !require_tool("mkfs.vfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    add_device(
        &root,
        "vdb",
        Some(&vfat_image(dir.path(), "config-2", false)),
    );
    let mut warnings = Vec::new();
    let all: Vec<&str> = names().collect();
    assert_eq!(
        chosen(&root, &answered_client(), &service(1), &all, &mut warnings),
        Some(metadata_service::NAME)
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let expected = format!(
        "config-drive: Config drive: Failed to mount {}",
        root.host_path("/dev/vdb").display()
    );
    assert!(warnings[0].starts_with(&expected), "{warnings:?}");
    assert!(warnings[0].ends_with("; trying the next datasource"));
}
