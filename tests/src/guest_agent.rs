//! The guest agent binaries the tests run (`metaboot` in the dev profile, and as it ships in
//! images: static, guest profile; each built once per test binary), and a guest registered
//! behind a router of a running chain for them to provision.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use metaboot_harness::workspace::{self, CargoBinary};

use crate::chain::{Chain, Scope};
use crate::registry::created;

/// The guest connects from 127.0.0.1.
pub const GUEST_IP: &str = "127.0.0.1";

/// The guest agent, built once (dev profile; the static guest build is the harness's job).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            workspace::build(CargoBinary {
                package: "metaboot",
                bin: "metaboot",
                profile: None,
                target: None,
                static_crt: false,
            })
            .expect("failed to build metaboot")
        })
        .clone()
}

/// The guest agent as images ship it (static, `guest` profile), built once: what timing
/// bounds are checked on.
pub fn shipped() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            workspace::build(workspace::GUEST_AGENT).expect("failed to build the static metaboot")
        })
        .clone()
}

/// A running chain serving instance `test` at [`GUEST_IP`] behind a router, with
/// `user_data`; returns it and the address of its ns-proxy (the guest's metadata URL).
pub fn serve(user_data: &[u8]) -> (Chain, SocketAddr) {
    let mut chain = Chain::new().expect("failed to set up the chain");
    let data = chain.path().join("user_data");
    std::fs::write(&data, user_data).unwrap();
    // The agent connects from 127.0.0.1 itself: the gateway and DHCP port go elsewhere.
    let network = created(
        &chain,
        &[
            "network",
            "create",
            "guests",
            "--cidr",
            "127.0.0.0/24",
            "--gateway",
            "127.0.0.254",
            "--dhcp-ip",
            "127.0.0.253",
        ],
        "id",
    );
    let router = created(
        &chain,
        &["router", "create", "r", "--network", &network],
        "id",
    );
    created(
        &chain,
        &[
            "instance",
            "create",
            "test",
            "--network",
            &network,
            "--ip",
            GUEST_IP,
            "--user-data",
            &data.display().to_string(),
        ],
        "uuid",
    );
    chain.start().expect("failed to start the chain");
    let proxy = chain
        .start_proxy(&Scope::Router(router), &[])
        .expect("failed to start the ns-proxy");
    (chain, proxy)
}

/// A first-boot root at `root` whose metadata URL is `proxy`.
pub fn first_boot_root(root: &Path, proxy: SocketAddr) {
    crate::guest_root::first_boot(
        root,
        &[],
        &format!("metadata_url: http://{proxy}\ndeadline_secs: 20\ndisable_root: false\n"),
    );
}
