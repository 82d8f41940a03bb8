//! The chooser: the first datasource of the order that this machine has, unusable ones skipped
//! with a warning, unknown names ignored.

use std::time::{Duration, Instant};

use super::http::HttpClient;
use super::*;
use crate::retry::Retry;
use crate::root::Root;
use crate::source::drive::tests::{add_device, vfat_image};
use crate::testutil::require_tool;

fn client() -> HttpClient {
    HttpClient::new(Duration::from_secs(1), Retry::until(Instant::now()))
}

fn chosen(root: &Root, order: &[&str], warnings: &mut Vec<String>) -> Option<&'static str> {
    let client = client();
    let probe = Probe {
        root,
        urls: &["http://127.0.0.1:9".to_owned()],
        client: &client,
    };
    choose(order, &probe, warnings).map(|source| source.name())
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
    assert_eq!(
        chosen(&root, &all, &mut warnings),
        Some(metadata_service::NAME)
    );
    assert_eq!(chosen(&root, &["config-drive"], &mut warnings), None);
    assert_eq!(
        chosen(&root, &["nope", "metadata-service"], &mut warnings),
        Some(metadata_service::NAME)
    );
    assert_eq!(chosen(&root, &[], &mut warnings), None);
    assert!(warnings.is_empty(), "{warnings:?}");
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
        chosen(&root, &all, &mut warnings),
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
