//! The API's path normalisation and routing, through `Api::answer` over a real SQLite
//! registry: any method and raw path, asked as instance A, must never panic, never give a 500,
//! and never carry anything of instance B. Some inputs go to an API that requires session
//! tokens, with a valid token or with one taken from the input.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use metaboot_proto::headers;
use metaboot_server::api::{Api, Identify, MetadataRequest, Rendering, Tokens};
use metaboot_server::model::ReadModel;
use metaboot_server::store::{self, NewInstance, NewNetwork, NewPort};

const SECRET: &[u8] = b"fuzz-secret";
const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const B_MARKER: &str = "MARKER-OF-B";

struct World {
    runtime: tokio::runtime::Runtime,
    /// Tokens off (the default).
    open: Api,
    /// Tokens required.
    strict: Api,
    signed: HeaderMap,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let store = store::open(path.to_str().expect("UTF-8 temp path")).expect("registry");
        let network = store
            .create_network(&NewNetwork {
                name: "net".into(),
                project: "p1".into(),
                cidr: "198.18.0.0/24".parse().expect("cidr"),
                ..NewNetwork::default()
            })
            .expect("network");
        for (uuid, ip, marker) in [(A, "198.18.0.10", "a"), (B, "198.18.0.11", B_MARKER)] {
            store
                .create_instance(
                    &NewInstance {
                        uuid: uuid.into(),
                        project: "p1".into(),
                        name: uuid.into(),
                        hostname: "host".into(),
                        user_data: Some(format!("#cloud-config\n# {marker}\n").into_bytes()),
                        meta: BTreeMap::from([("m".into(), marker.into())]),
                        ..NewInstance::default()
                    },
                    &NewPort {
                        network_id: network.id.clone(),
                        ip: Some(ip.parse().expect("ip")),
                        instance_id: uuid.into(),
                        ..NewPort::default()
                    },
                )
                .expect("instance");
        }
        let store: Arc<dyn store::Store> = store;
        let model = Arc::new(ReadModel::load(store.as_ref()).expect("read model"));
        let api = || {
            Api::new(
                store.clone(),
                model.clone(),
                Identify::proxy(SECRET.into()),
                Rendering::default(),
            )
        };
        let (open, strict) = (api(), api().require_token(true));
        let mut signed = HeaderMap::new();
        signed.insert(headers::INSTANCE_ID, HeaderValue::from_static(A));
        signed.insert(headers::TENANT_ID, HeaderValue::from_static("p1"));
        signed.insert(
            headers::INSTANCE_ID_SIGNATURE,
            HeaderValue::from_str(&metaboot_proto::sign(SECRET, A)).expect("hex"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        World {
            runtime,
            open,
            strict,
            signed,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = match selector % 5 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        _ => Method::DELETE,
    };
    let w = world();
    let mut headers = w.signed.clone();
    let path = String::from_utf8_lossy(rest).into_owned();
    let api = if selector & 0x20 == 0 {
        &w.open
    } else {
        &w.strict
    };
    if selector & 0x40 != 0 {
        // A valid token for A, as a guest that asked first would send.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = Tokens::new(SECRET).issue_at(A, 600, now);
        headers.insert(
            headers::METADATA_TOKEN,
            HeaderValue::from_str(&token).expect("tokens are header text"),
        );
    } else if selector & 0x10 != 0
        && let Ok(value) = HeaderValue::from_str(&path)
    {
        // A token and a TTL taken from the input.
        headers.insert(headers::METADATA_TOKEN, value.clone());
        headers.insert(headers::METADATA_TOKEN_TTL, value);
    }
    let request = MetadataRequest {
        method,
        path,
        headers,
        peer: None,
        body: Bytes::copy_from_slice(rest),
    };
    let (status, body) = w.runtime.block_on(async {
        let response = api.answer(&request).await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, body)
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{request:?}");
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains(B) && !text.contains(B_MARKER),
        "B leaked for {request:?}: {text}"
    );
});
