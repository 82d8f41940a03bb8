//! Contract tests of the metadata API (docs/protocol.md §1 and §2.6), in process against a real
//! SQLite registry: every endpoint, status code and listing, whole documents compared.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use metaboot_proto::headers;
use metaboot_server::api::{
    Api, Identify, MetadataRequest, RANDOM_SEED_BYTES, Rendering, VendorDocs,
};
use metaboot_server::model::ReadModel;
use metaboot_server::store::{self, KeyPair, NewInstance, NewNetwork, NewPort, Store};

const SECRET: &[u8] = b"s3cret";
const UUID: &str = "d8e02d56-2648-49a3-bf97-6be8f1204f38";
const BARE_UUID: &str = "0b6c5d3e-1111-4222-8333-944455556666";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKc2R9H0dJ1rXgmyMO0DdLcJ9v9P6dgoQ3WPhBkkC0Vm user@host";
const USER_DATA: &[u8] = b"#cloud-config\nhostname: web-1\n";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    api: Api,
    network_id: String,
}

fn fixture_with(identify: Identify, rendering: Rendering) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(dir.path().join("registry.sqlite").to_str().unwrap()).unwrap();
    let network = store
        .create_network(&NewNetwork {
            name: "net1".into(),
            project: "p1".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            gateway: Some("198.18.0.1".parse().unwrap()),
            dhcp_ip: Some("198.18.0.2".parse().unwrap()),
            mtu: Some(1450),
            ..NewNetwork::default()
        })
        .unwrap();
    store
        .create_instance(
            &NewInstance {
                uuid: UUID.into(),
                project: "p1".into(),
                name: "web-1".into(),
                hostname: "web-1".into(),
                availability_zone: Some("nova".into()),
                launch_index: 0,
                key_pairs: vec![KeyPair {
                    name: "mykey".into(),
                    kind: "ssh".into(),
                    data: KEY.into(),
                }],
                user_data: Some(USER_DATA.to_vec()),
                meta: BTreeMap::from([("role".into(), "web".into())]),
                admin_pass: Some("adminpw".into()),
            },
            &NewPort {
                network_id: network.id.clone(),
                ip: Some("198.18.0.10".parse().unwrap()),
                mac: Some("fa:16:3e:00:00:0a".into()),
                instance_id: UUID.into(),
                ..NewPort::default()
            },
        )
        .unwrap();
    store
        .create_instance(
            &NewInstance {
                uuid: BARE_UUID.into(),
                project: "p1".into(),
                name: "bare".into(),
                hostname: "bare".into(),
                ..NewInstance::default()
            },
            &NewPort {
                network_id: network.id.clone(),
                ip: Some("198.18.0.11".parse().unwrap()),
                mac: Some("fa:16:3e:00:00:0b".into()),
                instance_id: BARE_UUID.into(),
                ..NewPort::default()
            },
        )
        .unwrap();
    let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
    let api = Api::new(store.clone(), model, identify, rendering);
    Fixture {
        _dir: dir,
        store,
        api,
        network_id: network.id,
    }
}

fn fixture() -> Fixture {
    fixture_with(Identify::proxy(SECRET.into()), Rendering::default())
}

fn signed(instance: &str, tenant: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        headers::INSTANCE_ID,
        HeaderValue::from_str(instance).unwrap(),
    );
    h.insert(headers::TENANT_ID, HeaderValue::from_str(tenant).unwrap());
    h.insert(
        headers::INSTANCE_ID_SIGNATURE,
        HeaderValue::from_str(&metaboot_proto::sign(SECRET, instance)).unwrap(),
    );
    h.insert(
        headers::FORWARDED_FOR,
        HeaderValue::from_static("198.18.0.10"),
    );
    h
}

struct Got {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Got {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn send(api: &Api, method: Method, path: &str, headers: HeaderMap, body: &[u8]) -> Got {
    let request = MetadataRequest {
        method,
        path: path.to_owned(),
        headers,
        peer: None,
        body: Bytes::copy_from_slice(body),
    };
    let response = api.answer(&request).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        content_type,
        body,
    }
}

async fn get(f: &Fixture, path: &str) -> Got {
    send(&f.api, Method::GET, path, signed(UUID, "p1"), b"").await
}

async fn get_ok(f: &Fixture, path: &str) -> Got {
    let got = get(f, path).await;
    assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.text());
    got
}

const TEXT: &str = "text/plain; charset=UTF-8";
const JSON: &str = "application/json";

#[tokio::test]
async fn root_lists_ec2_versions_without_identification() {
    let f = fixture();
    let got = send(&f.api, Method::GET, "/", HeaderMap::new(), b"").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.content_type, TEXT);
    assert_eq!(
        got.text(),
        "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest"
    );
    for path in ["//", "/./", "/../"] {
        assert_eq!(
            send(&f.api, Method::GET, path, HeaderMap::new(), b"")
                .await
                .body,
            got.body
        );
    }
    // Anything else needs identification.
    let unsigned = send(&f.api, Method::GET, "/openstack", HeaderMap::new(), b"").await;
    assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn openstack_version_lists() {
    let f = fixture();
    let versions = get_ok(&f, "/openstack").await;
    assert_eq!(versions.content_type, TEXT);
    insta::assert_snapshot!("openstack_versions", versions.text());
    assert_eq!(get_ok(&f, "/openstack/").await.body, versions.body);
    let latest = get_ok(&f, "/openstack/latest").await;
    assert_eq!(
        latest.text(),
        "meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
    );
    assert_eq!(
        get_ok(&f, "/openstack/2012-08-10").await.text(),
        "meta_data.json\nuser_data"
    );
    assert_eq!(
        get_ok(&f, "/openstack/2013-10-17/").await.text(),
        "meta_data.json\nuser_data\npassword\nvendor_data.json"
    );
    // nova routes `/openstack/<v>` to its `version` handler, which answers by that name too.
    for version in ["2012-08-10", "2013-10-17", "latest"] {
        assert_eq!(
            get_ok(&f, &format!("/openstack/{version}/version"))
                .await
                .body,
            get_ok(&f, &format!("/openstack/{version}")).await.body,
            "{version}"
        );
    }
    // No user data: not listed, and 404.
    let bare = send(
        &f.api,
        Method::GET,
        "/openstack/latest",
        signed(BARE_UUID, "p1"),
        b"",
    )
    .await;
    assert_eq!(
        bare.text(),
        "meta_data.json\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
    );
    let missing = send(
        &f.api,
        Method::GET,
        "/openstack/latest/user_data",
        signed(BARE_UUID, "p1"),
        b"",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

fn without_seed(mut doc: serde_json::Value) -> serde_json::Value {
    let seed = doc
        .as_object_mut()
        .unwrap()
        .remove("random_seed")
        .expect("random_seed present");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(seed.as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), RANDOM_SEED_BYTES);
    doc
}

#[tokio::test]
async fn meta_data_json_latest() {
    let f = fixture();
    let got = get_ok(&f, "/openstack/latest/meta_data.json").await;
    assert_eq!(got.content_type, JSON);
    insta::assert_json_snapshot!("meta_data_latest", without_seed(got.json()));
    // A fresh seed on every request.
    let again = get_ok(&f, "/openstack/latest/meta_data.json").await;
    assert_ne!(got.json()["random_seed"], again.json()["random_seed"]);
    assert_eq!(without_seed(got.json()), without_seed(again.json()));
}

#[tokio::test]
async fn meta_data_json_fields_follow_the_version() {
    let f = fixture();
    let folsom = get_ok(&f, "/openstack/2012-08-10/meta_data.json")
        .await
        .json();
    insta::assert_json_snapshot!("meta_data_2012_08_10", folsom);
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let grizzly = get_ok(&f, "/openstack/2013-04-04/meta_data.json")
        .await
        .json();
    assert!(grizzly.get("random_seed").is_some() && grizzly.get("project_id").is_none());
    let liberty = get_ok(&f, "/openstack/2015-10-15/meta_data.json")
        .await
        .json();
    assert_eq!(liberty["project_id"], "p1");
    assert!(liberty.get("devices").is_none());
    let newton = get_ok(&f, "/openstack/2016-06-30/meta_data.json")
        .await
        .json();
    assert_eq!(newton["devices"], serde_json::json!([]));
    assert!(newton.get("dedicated_cpus").is_none());
    let rocky = get_ok(&f, "/openstack/2018-08-27/meta_data.json")
        .await
        .json();
    assert_eq!(keys(&rocky), keys(&newton));
    let victoria = get_ok(&f, "/openstack/2020-10-14/meta_data.json")
        .await
        .json();
    assert_eq!(victoria["dedicated_cpus"], serde_json::json!([]));
    // admin_pass is for config drives only.
    assert!(victoria.get("admin_pass").is_none());
    // Without keys and meta, those fields are absent.
    let bare = send(
        &f.api,
        Method::GET,
        "/openstack/latest/meta_data.json",
        signed(BARE_UUID, "p1"),
        b"",
    )
    .await;
    let bare = bare.json();
    assert!(
        bare.get("public_keys").is_none()
            && bare.get("keys").is_none()
            && bare.get("meta").is_none()
    );
    // Registered without a zone: nova's default zone, as nova gives every scheduled instance.
    assert_eq!(bare["availability_zone"], "nova");
}

#[tokio::test]
async fn user_data_is_served_raw() {
    let f = fixture();
    let got = get_ok(&f, "/openstack/latest/user_data").await;
    assert_eq!(got.content_type, TEXT);
    assert_eq!(&got.body[..], USER_DATA);
    assert_eq!(
        get_ok(&f, "/openstack/2012-08-10/user_data").await.body,
        got.body
    );
}

#[tokio::test]
async fn vendor_data_documents() {
    let f = fixture();
    let one = get_ok(&f, "/openstack/latest/vendor_data.json").await;
    assert_eq!((one.content_type.as_str(), one.text()), (JSON, "{}"));
    let two = get_ok(&f, "/openstack/latest/vendor_data2.json").await;
    assert_eq!(
        (two.content_type.as_str(), two.text()),
        (JSON, r#"{"static":{}}"#)
    );
    assert_eq!(
        get(&f, "/openstack/2013-04-04/vendor_data.json")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f, "/openstack/2016-06-30/vendor_data2.json")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vendor.json");
    std::fs::write(
        &file,
        r##"{"cloud-init": "#cloud-config\nruncmd: [touch, /vendor]\n"}"##,
    )
    .unwrap();
    let f = fixture_with(
        Identify::proxy(SECRET.into()),
        Rendering {
            vendor: VendorDocs::load(&file).unwrap(),
            ..Rendering::default()
        },
    );
    let one = get_ok(&f, "/openstack/latest/vendor_data.json")
        .await
        .json();
    assert_eq!(
        one["cloud-init"],
        "#cloud-config\nruncmd: [touch, /vendor]\n"
    );
    let two = get_ok(&f, "/openstack/latest/vendor_data2.json")
        .await
        .json();
    assert_eq!(two["static"], one);
}

/// The file's own text is served, compact: its keys in the file's order and an integer past
/// 64 bits digit for digit (nova's Python `json` keeps both).
#[tokio::test]
async fn vendor_data_is_the_files_text_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vendor.json");
    std::fs::write(
        &file,
        "{\n  \"zeta\": \"last in order, first in the file\",\n  \"id\": 123456789012345678901234,\n  \
         \"huge\": 1e300,\n  \"alpha\": {\"b\": 2, \"a\": 1.50}\n}\n",
    )
    .unwrap();
    let f = fixture_with(
        Identify::proxy(SECRET.into()),
        Rendering {
            vendor: VendorDocs::load(&file).unwrap(),
            ..Rendering::default()
        },
    );
    let want = r#"{"zeta":"last in order, first in the file","id":123456789012345678901234,"huge":1e300,"alpha":{"b":2,"a":1.50}}"#;
    let one = get_ok(&f, "/openstack/latest/vendor_data.json").await;
    assert_eq!((one.content_type.as_str(), one.text()), (JSON, want));
    let two = get_ok(&f, "/openstack/latest/vendor_data2.json").await;
    assert_eq!(
        (two.content_type.as_str(), two.text()),
        (JSON, format!(r#"{{"static":{want}}}"#).as_str())
    );
}

#[tokio::test]
async fn network_data_json() {
    let f = fixture();
    let got = get_ok(&f, "/openstack/latest/network_data.json").await;
    // Served as text/plain like nova, although the body is JSON.
    assert_eq!(got.content_type, TEXT);
    let doc = got.json();
    let port_id = doc["links"][0]["vif_id"].as_str().unwrap().to_owned();
    assert_eq!(doc["links"][0]["id"], format!("tap{}", &port_id[..11]));
    assert_eq!(doc["networks"][0]["network_id"], f.network_id.as_str());
    insta::assert_json_snapshot!("network_data", doc, {
        ".links[].id" => "[tap name]",
        ".links[].vif_id" => "[port id]",
        ".networks[].link" => "[tap name]",
        ".networks[].network_id" => "[network id]",
    });
    // Not listed before 2015-10-15, but served under every version, as nova's
    // `_network_data` has no version check.
    for version in ["2012-08-10", "2013-10-17"] {
        let old = get_ok(&f, &format!("/openstack/{version}/network_data.json")).await;
        assert_eq!(old.content_type, TEXT);
        assert_eq!(old.body, got.body, "{version}");
    }
}

/// A port on a network made with `--no-dhcp` is static: its address, netmask and the default
/// route through the gateway, for the guest agent to apply.
#[tokio::test]
async fn network_data_json_of_a_network_without_dhcp() {
    let f = fixture();
    let network = f
        .store
        .create_network(&NewNetwork {
            name: "static".into(),
            project: "p1".into(),
            cidr: "198.18.5.0/24".parse().unwrap(),
            no_dhcp: true,
            ..NewNetwork::default()
        })
        .unwrap();
    let uuid = "5a7e1c00-0000-4000-8000-000000000001";
    f.store
        .create_instance(
            &NewInstance {
                uuid: uuid.into(),
                project: "p1".into(),
                name: "static".into(),
                hostname: "static".into(),
                ..NewInstance::default()
            },
            &NewPort {
                network_id: network.id.clone(),
                mac: Some("fa:16:3e:00:05:02".into()),
                ..NewPort::default()
            },
        )
        .unwrap();
    // Made after the fixture's model was loaded: a fresh model holds them.
    let f = Fixture {
        api: Api::new(
            f.store.clone(),
            Arc::new(ReadModel::load(f.store.as_ref()).unwrap()),
            Identify::proxy(SECRET.into()),
            Rendering::default(),
        ),
        ..f
    };
    let got = send(
        &f.api,
        Method::GET,
        "/openstack/latest/network_data.json",
        signed(uuid, "p1"),
        b"",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let doc = got.json();
    let link = doc["links"][0]["id"].clone();
    assert_eq!(
        doc["networks"],
        serde_json::json!([{
            "id": "network0",
            "link": link,
            "network_id": network.id,
            "type": "ipv4",
            "ip_address": "198.18.5.2",
            "netmask": "255.255.255.0",
            "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "198.18.5.1"}],
            "services": [],
        }])
    );
    assert_eq!(doc["links"][0]["ethernet_mac_address"], "fa:16:3e:00:05:02");
}

/// A port on a dual-stack network gives one link and two networks (IPv4 first), counted
/// across the instance's links: the IPv6 address mode becomes `ipv6_<mode>` with the address
/// the guest makes (SLAAC), an IPv6 DHCP network without a mode `ipv6_dhcp`, one without DHCP
/// a static `ipv6`.
#[tokio::test]
async fn network_data_json_of_ipv6_and_dual_stack_networks() {
    let f = fixture();
    let network = |name: &str, cidr: &str, second: Option<&str>, new: NewNetwork| {
        f.store
            .create_network(&NewNetwork {
                name: name.into(),
                project: "p1".into(),
                cidr: cidr.parse().unwrap(),
                second_subnet: second.map(|cidr| metaboot_server::store::Subnet {
                    cidr: cidr.parse().unwrap(),
                    gateway: None,
                    dhcp_ip: None,
                }),
                ..new
            })
            .unwrap()
    };
    let dual = network(
        "dual",
        "fdc6:1200:0:6::/64",
        Some("198.18.6.0/24"),
        NewNetwork {
            ipv6_address_mode: Some(metaboot_server::store::Ipv6AddressMode::Slaac),
            ..NewNetwork::default()
        },
    );
    let dhcp6 = network("dhcp6", "fdc6:1200:0:7::/64", None, NewNetwork::default());
    let static6 = network(
        "static6",
        "fdc6:1200:0:8::/64",
        None,
        NewNetwork {
            no_dhcp: true,
            ..NewNetwork::default()
        },
    );
    let uuid = "d0a15000-0000-4000-8000-000000000001";
    f.store
        .create_instance(
            &NewInstance {
                uuid: uuid.into(),
                project: "p1".into(),
                name: "dual".into(),
                hostname: "dual".into(),
                ..NewInstance::default()
            },
            &NewPort {
                network_id: dual.id.clone(),
                mac: Some("fa:16:3e:00:06:02".into()),
                ..NewPort::default()
            },
        )
        .unwrap();
    for net in [&dhcp6, &static6] {
        f.store
            .create_port(&NewPort {
                network_id: net.id.clone(),
                instance_id: uuid.into(),
                ..NewPort::default()
            })
            .unwrap();
    }
    let f = Fixture {
        api: Api::new(
            f.store.clone(),
            Arc::new(ReadModel::load(f.store.as_ref()).unwrap()),
            Identify::proxy(SECRET.into()),
            Rendering::default(),
        ),
        ..f
    };
    let got = send(
        &f.api,
        Method::GET,
        "/openstack/latest/network_data.json",
        signed(uuid, "p1"),
        b"",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let doc = got.json();
    let link = |n: usize| doc["links"][n]["id"].clone();
    assert_eq!(doc["links"].as_array().unwrap().len(), 3);
    assert_eq!(
        doc["networks"],
        serde_json::json!([
            {
                "id": "network0",
                "link": link(0),
                "network_id": dual.id,
                "type": "ipv4_dhcp",
            },
            {
                "id": "network1",
                "link": link(0),
                "network_id": dual.id,
                "type": "ipv6_slaac",
                "ip_address": "fdc6:1200:0:6:f816:3eff:fe00:602",
                "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [{"network": "::", "netmask": "::", "gateway": "fdc6:1200:0:6::1"}],
                "services": [],
            },
            {
                "id": "network2",
                "link": link(1),
                "network_id": dhcp6.id,
                "type": "ipv6_dhcp",
            },
            {
                "id": "network3",
                "link": link(2),
                "network_id": static6.id,
                "type": "ipv6",
                "ip_address": "fdc6:1200:0:8::2",
                "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [{"network": "::", "netmask": "::", "gateway": "fdc6:1200:0:8::1"}],
                "services": [],
            },
        ])
    );
}

#[tokio::test]
async fn ec2_tree() {
    let f = fixture();
    assert_eq!(
        get_ok(&f, "/2009-04-04").await.text(),
        "meta-data/\nuser-data"
    );
    assert_eq!(
        get_ok(&f, "/ec2").await.text(),
        get_ok(&f, "/ec2/").await.text()
    );
    assert!(
        get_ok(&f, "/ec2")
            .await
            .text()
            .ends_with("2009-04-04\nlatest")
    );
    let listing = get_ok(&f, "/2009-04-04/meta-data/").await;
    assert_eq!(listing.content_type, TEXT);
    insta::assert_snapshot!("ec2_meta_data_2009_04_04", listing.text());
    insta::assert_snapshot!(
        "ec2_meta_data_1_0",
        get_ok(&f, "/1.0/meta-data").await.text()
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/public-keys").await.text(),
        "0=mykey"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/public-keys/0").await.text(),
        "openssh-key"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/public-keys/0/openssh-key")
            .await
            .text(),
        KEY
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/hostname").await.text(),
        "web-1.novalocal"
    );
    assert_eq!(
        get_ok(&f, "/ec2/latest/meta-data/hostname").await.text(),
        "web-1.novalocal"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/local-ipv4").await.text(),
        "198.18.0.10"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/instance-id")
            .await
            .text()
            .len(),
        10
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/placement/availability-zone")
            .await
            .text(),
        "nova"
    );
    // Registered without a zone: nova's default zone, not an empty answer.
    let bare = send(
        &f.api,
        Method::GET,
        "/latest/meta-data/placement/availability-zone",
        signed(BARE_UUID, "p1"),
        b"",
    )
    .await;
    assert_eq!(bare.status, StatusCode::OK);
    assert_eq!(bare.text(), "nova");
    assert_eq!(
        get_ok(&f, "/latest/meta-data/block-device-mapping")
            .await
            .text(),
        "ami\nroot"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/security-groups").await.text(),
        "default"
    );
    assert_eq!(
        &get_ok(&f, "/2009-04-04/user-data").await.body[..],
        USER_DATA
    );
    // Below a leaf or a list, unknown versions and keys: 404, never 500.
    for path in [
        "/latest/meta-data/hostname/x",
        "/latest/meta-data/security-groups/default",
        "/latest/meta-data/public-keys/0/openssh-key/x",
        "/latest/meta-data/nothing",
        "/2010-01-01/meta-data",
        "/ec2/2010-01-01",
    ] {
        assert_eq!(get(&f, path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let bare = send(&f.api, Method::GET, "/latest", signed(BARE_UUID, "p1"), b"").await;
    assert_eq!(bare.text(), "meta-data/");
    let bare = send(
        &f.api,
        Method::GET,
        "/latest/meta-data/public-keys",
        signed(BARE_UUID, "p1"),
        b"",
    )
    .await;
    assert_eq!(bare.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paths_are_normalised() {
    let f = fixture();
    let reference = get_ok(&f, "/openstack/latest/meta_data.json").await.json();
    for path in [
        "//openstack//latest//meta_data.json",
        "/openstack/latest/meta_data.json/",
        "/openstack/./latest/../latest/meta_data.json",
        "/../../openstack/latest/meta_data.json",
        "/openstack/%6catest/meta_data.json",
        "/%2e%2e/openstack/latest/meta_data.json",
    ] {
        let got = get_ok(&f, path).await.json();
        assert_eq!(without_seed(got), without_seed(reference.clone()), "{path}");
    }
    for path in [
        "/openstack/2099-01-01/meta_data.json",
        "/openstack/latest/nothing",
        "/openstack/content",
        "/openstack/content/0000",
        "/openstack/2012-08-10/password",
    ] {
        assert_eq!(get(&f, path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        get(&f, "/openstack/%ff").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&f, "/openstack/a%00b").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn any_method_but_password_is_answered_like_get() {
    let f = fixture();
    let got = send(
        &f.api,
        Method::POST,
        "/openstack/latest/user_data",
        signed(UUID, "p1"),
        b"ignored",
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, USER_DATA));
    let got = send(
        &f.api,
        Method::DELETE,
        "/latest/meta-data/hostname",
        signed(UUID, "p1"),
        b"",
    )
    .await;
    assert_eq!(got.text(), "web-1.novalocal");
}

#[tokio::test]
async fn signature_checks() {
    let f = fixture();
    assert_eq!(
        get(&f, "/openstack/latest/meta_data.json").await.status,
        StatusCode::OK
    );
    // Tampered signature: 403.
    let mut h = signed(UUID, "p1");
    h.insert(
        headers::INSTANCE_ID_SIGNATURE,
        HeaderValue::from_str(&metaboot_proto::sign(b"wrong", UUID)).unwrap(),
    );
    let got = send(
        &f.api,
        Method::GET,
        "/openstack/latest/meta_data.json",
        h,
        b"",
    )
    .await;
    assert_eq!(
        (got.status, got.text()),
        (StatusCode::FORBIDDEN, "Invalid proxy request signature.\n")
    );
    // Signature of another instance under a claimed id: 403.
    let mut h = signed(UUID, "p1");
    h.insert(
        headers::INSTANCE_ID_SIGNATURE,
        HeaderValue::from_str(&metaboot_proto::sign(SECRET, BARE_UUID)).unwrap(),
    );
    assert_eq!(
        send(&f.api, Method::GET, "/latest", h, b"").await.status,
        StatusCode::FORBIDDEN
    );
    // Missing headers: 400.
    for name in [
        headers::INSTANCE_ID,
        headers::TENANT_ID,
        headers::INSTANCE_ID_SIGNATURE,
    ] {
        let mut h = signed(UUID, "p1");
        h.remove(name);
        assert_eq!(
            send(&f.api, Method::GET, "/latest", h, b"").await.status,
            StatusCode::BAD_REQUEST,
            "{name}"
        );
        let mut h = signed(UUID, "p1");
        h.append(name, HeaderValue::from_static("again"));
        assert_eq!(
            send(&f.api, Method::GET, "/latest", h, b"").await.status,
            StatusCode::BAD_REQUEST,
            "{name} repeated"
        );
    }
    // Wrong tenant: 404, like an unknown instance.
    let got = send(&f.api, Method::GET, "/latest", signed(UUID, "p2"), b"").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    let unknown = "11111111-2222-4333-8444-555555555555";
    let got = send(&f.api, Method::GET, "/latest", signed(unknown, "p1"), b"").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn password_is_write_once() {
    let f = fixture();
    let path = "/openstack/latest/password";
    let post = |body: &'static [u8]| send(&f.api, Method::POST, path, signed(UUID, "p1"), body);
    let empty = get_ok(&f, path).await;
    assert_eq!(empty.text(), "");
    assert_eq!(post(&[b'x'; 1021]).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(post(b"c2VjcmV0").await.status, StatusCode::OK);
    assert_eq!(get_ok(&f, path).await.text(), "c2VjcmV0");
    assert_eq!(post(b"b3RoZXI=").await.status, StatusCode::CONFLICT);
    assert_eq!(
        get_ok(&f, "/openstack/2013-04-04/password").await.text(),
        "c2VjcmV0"
    );
    let put = send(&f.api, Method::PUT, path, signed(UUID, "p1"), b"x").await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST);
    // 1020 bytes is the limit, inclusive.
    let full = vec![b'y'; 1020];
    let got = send(&f.api, Method::POST, path, signed(BARE_UUID, "p1"), &full).await;
    assert_eq!(got.status, StatusCode::OK);
}

/// nova's `handle_password` answers 409 for a password already set before it looks at the
/// body's size.
#[tokio::test]
async fn a_password_post_once_set_is_409_even_when_too_large() {
    let f = fixture();
    let path = "/openstack/latest/password";
    let post = |body: &'static [u8]| send(&f.api, Method::POST, path, signed(UUID, "p1"), body);
    assert_eq!(post(b"c2VjcmV0").await.status, StatusCode::OK);
    assert_eq!(post(&[b'x'; 1021]).await.status, StatusCode::CONFLICT);
    assert_eq!(get_ok(&f, path).await.text(), "c2VjcmV0");
}

/// A NUL byte is valid UTF-8 but no registry column takes it (PostgreSQL's `text` refuses it):
/// 400 saying so, never 503 "registry unavailable", and the password stays unset.
#[tokio::test]
async fn a_password_with_a_nul_byte_is_400_and_leaves_it_unset() {
    let f = fixture();
    let path = "/openstack/latest/password";
    let post = |body: &'static [u8]| send(&f.api, Method::POST, path, signed(UUID, "p1"), body);
    let refused = post(b"c2Vj\0cmV0").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text().contains("NUL"), "{}", refused.text());
    assert_eq!(get_ok(&f, path).await.text(), "");
    assert_eq!(post(b"c2VjcmV0").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_password_posts_store_exactly_one() {
    let f = Arc::new(fixture());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("password-{i}");
            send(
                &f.api,
                Method::POST,
                "/openstack/latest/password",
                signed(UUID, "p1"),
                body.as_bytes(),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        49
    );
}

#[tokio::test]
async fn source_ip_mode_finds_the_port_by_peer_address() {
    let f = fixture_with(Identify::SourceIp, Rendering::default());
    let ask = |peer: &str| {
        let request = MetadataRequest {
            method: Method::GET,
            path: "/latest/meta-data/hostname".into(),
            headers: HeaderMap::new(),
            peer: Some(peer.parse::<IpAddr>().unwrap()),
            body: Bytes::new(),
        };
        let api = &f.api;
        async move {
            let response = api.answer(&request).await;
            let status = response.status();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        }
    };
    assert_eq!(
        ask("198.18.0.10").await,
        (StatusCode::OK, Bytes::from("web-1.novalocal"))
    );
    assert_eq!(
        ask("198.18.0.11").await,
        (StatusCode::OK, Bytes::from("bare.novalocal"))
    );
    assert_eq!(ask("198.18.0.99").await.0, StatusCode::NOT_FOUND);
    // Headers a guest sends are ignored in this mode.
    let request = MetadataRequest {
        method: Method::GET,
        path: "/latest/meta-data/hostname".into(),
        headers: signed(UUID, "p1"),
        peer: Some("198.18.0.11".parse().unwrap()),
        body: Bytes::new(),
    };
    let body = f
        .api
        .answer(&request)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "bare.novalocal");
}

#[tokio::test]
async fn dhcp_domain_can_be_changed_or_dropped() {
    let f = fixture_with(
        Identify::proxy(SECRET.into()),
        Rendering {
            dhcp_domain: String::new(),
            ..Rendering::default()
        },
    );
    assert_eq!(
        get_ok(&f, "/openstack/latest/meta_data.json").await.json()["hostname"],
        "web-1"
    );
    assert_eq!(
        get_ok(&f, "/latest/meta-data/hostname").await.text(),
        "web-1"
    );
}

#[tokio::test]
async fn registry_changes_reach_the_model_at_once() {
    let f = fixture();
    let model = Arc::new(ReadModel::load(f.store.as_ref()).unwrap());
    let f = Fixture {
        api: Api::new(
            f.store.clone(),
            model.clone(),
            Identify::proxy(SECRET.into()),
            Rendering::default(),
        ),
        ..f
    };
    metaboot_server::follow::follow(f.store.clone(), model, Vec::new()).unwrap();
    assert_eq!(
        get(&f, "/openstack/latest/meta_data.json").await.status,
        StatusCode::OK
    );
    assert!(!f.api.cache().is_empty());
    f.store.delete_instance(UUID).unwrap();
    // Generous for a loaded 2-core machine (SQLite is polled every 20 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let gone = loop {
        let status = get(&f, "/openstack/latest/meta_data.json").await.status;
        if status == StatusCode::NOT_FOUND || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        gone,
        StatusCode::NOT_FOUND,
        "a deleted instance must stop being served within the freshness bound"
    );
}

/// With no proxy in front (source-IP mode), a session token PUT that a proxy inside the guest
/// relayed (it carries `X-Forwarded-For` or `Forwarded`) gets 403, as at the namespace proxy;
/// the guest's own PUT gets its token.
#[tokio::test]
async fn source_ip_mode_refuses_a_token_request_relayed_by_a_proxy() {
    let f = fixture_with(Identify::SourceIp, Rendering::default());
    let put = |relayed: Option<(&'static str, &'static str)>| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-metadata-token-ttl-seconds",
            HeaderValue::from_static("60"),
        );
        if let Some((name, value)) = relayed {
            headers.insert(name, HeaderValue::from_static(value));
        }
        MetadataRequest {
            method: Method::PUT,
            path: "/latest/api/token".into(),
            headers,
            peer: Some("198.18.0.10".parse().unwrap()),
            body: Bytes::new(),
        }
    };
    for relayed in [
        ("x-forwarded-for", "198.18.0.10"),
        ("forwarded", "for=198.18.0.10"),
    ] {
        let response = f.api.answer(&put(Some(relayed))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{relayed:?}");
    }
    let response = f.api.answer(&put(None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

/// A password another server stored (or an earlier try of the same post, whose answer was
/// lost), not yet in this server's read model: the post is 409, and the GET right after it
/// shows the stored text, so that a guest agent can tell its own password arrived.
#[tokio::test]
async fn a_409_takes_in_the_password_another_server_stored() {
    let f = fixture();
    let path = "/openstack/latest/password";
    f.store.set_password(UUID, None, "c2VjcmV0").unwrap();
    let got = send(&f.api, Method::POST, path, signed(UUID, "p1"), b"c2VjcmV0").await;
    assert_eq!(got.status, StatusCode::CONFLICT);
    assert_eq!(get_ok(&f, path).await.text(), "c2VjcmV0");
}
