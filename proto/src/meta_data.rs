//! `meta_data.json` (docs/protocol.md §1.4): what nova's `_metadata_as_json` renders and what a
//! guest reads.
//!
//! The API serialises it; the guest agent deserialises it leniently (every field but `uuid` may
//! be missing, unknown fields are ignored), as cloud-init does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The document served at `/openstack/<version>/meta_data.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaData {
    /// The instance UUID (cloud-init's instance-id). Required.
    pub uuid: String,
    /// Server metadata (`--property k=v`); absent when the server has none. nova's values are
    /// text; a value of another kind (a config drive made by other tools) is read as its JSON
    /// text, not refused with the whole document.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "meta_as_text"
    )]
    pub meta: Option<BTreeMap<String, String>>,
    /// `{ key pair name: public key text }`; absent without a key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<BTreeMap<String, String>>,
    /// The same key pairs with their type; absent without a key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyPair>>,
    /// `<hostname>.<dhcp_domain>` (nova's default domain is `novalocal`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub hostname: String,
    /// The display name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Index within a multi-create request.
    #[serde(default, deserialize_with = "null_as_default")]
    pub launch_index: u32,
    /// Always present; `null` when unset.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Base64 of 512 fresh random bytes, new on every request (>= 2013-04-04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_seed: Option<String>,
    /// The owning project (>= 2015-10-15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Tagged devices (>= 2016-06-30); an empty list when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    /// Pinned host CPUs (>= 2020-10-14); an empty list when not pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_cpus: Option<Vec<u32>>,
    /// The admin password: on a config drive only, never from the metadata service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_pass: Option<String>,
    /// Injected files (config drive only): `content_path` points under `/openstack/content/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<InjectedFile>>,
}

/// A field a guest reads as its default when it is `null` (a metadata service other than nova
/// may write one where nova writes a value).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `meta`, each value as text: a string as it is, anything else as its JSON.
fn meta_as_text<'de, D>(deserializer: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let map = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?;
    Ok(map.map(|map| {
        map.into_iter()
            .map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, text)
            })
            .collect()
    }))
}

/// One entry of `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyPair {
    pub name: String,
    /// `ssh` or `x509`.
    #[serde(rename = "type", default = "KeyPair::default_type")]
    pub kind: String,
    pub data: String,
}

impl KeyPair {
    fn default_type() -> String {
        "ssh".to_owned()
    }

    /// Whether this is an OpenSSH public key (not an `x509` certificate).
    pub fn is_ssh(&self) -> bool {
        self.kind == "ssh"
    }
}

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// `nic`, `disk` or `share`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub bus: String,
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// One entry of `files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFile {
    pub path: String,
    pub content_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_optional_fields_are_omitted_and_az_is_null() {
        let md = MetaData {
            uuid: "u".into(),
            hostname: "h.novalocal".into(),
            name: "h".into(),
            ..MetaData::default()
        };
        assert_eq!(
            serde_json::to_string(&md).unwrap(),
            r#"{"uuid":"u","hostname":"h.novalocal","name":"h","launch_index":0,"availability_zone":null}"#
        );
    }

    #[test]
    fn nulls_and_devices_without_an_address_are_read_as_their_defaults() {
        let doc = r#"{"uuid": "u", "hostname": null, "name": null, "launch_index": null,
            "devices": [{"type": "nic", "mac": "fa:16:3e:00:00:01"}]}"#;
        let md: MetaData = serde_json::from_str(doc).unwrap();
        assert_eq!((md.hostname.as_str(), md.launch_index), ("", 0));
        assert_eq!(md.devices.unwrap()[0].bus, "");
    }

    /// A `meta` value that is not text (a config drive from other tools) is its JSON text; the
    /// document is still read.
    #[test]
    fn meta_values_of_other_kinds_are_read_as_their_json() {
        let doc = r#"{"uuid": "u", "meta": {"role": "web", "replicas": 3, "on": true,
            "tags": ["a"], "none": null}}"#;
        let md: MetaData = serde_json::from_str(doc).unwrap();
        let meta = md.meta.unwrap();
        assert_eq!(meta["role"], "web");
        assert_eq!(meta["replicas"], "3");
        assert_eq!(meta["on"], "true");
        assert_eq!(meta["tags"], r#"["a"]"#);
        assert_eq!(meta["none"], "null");
        let absent: MetaData = serde_json::from_str(r#"{"uuid": "u", "meta": null}"#).unwrap();
        assert_eq!(absent.meta, None);
    }

    #[test]
    fn reads_a_nova_document_and_ignores_unknown_fields() {
        let doc = r#"{"uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "meta": {"role": "web"},
            "public_keys": {"mykey": "ssh-ed25519 AAAA user@host"},
            "keys": [{"name": "mykey", "type": "ssh", "data": "ssh-ed25519 AAAA user@host"}],
            "hostname": "test.novalocal", "name": "test", "launch_index": 0,
            "availability_zone": "nova", "random_seed": "cmFuZG9t", "project_id": "p1",
            "devices": [], "dedicated_cpus": [], "something_new": {"x": 1}}"#;
        let md: MetaData = serde_json::from_str(doc).unwrap();
        assert_eq!(md.uuid, "d8e02d56-2648-49a3-bf97-6be8f1204f38");
        assert_eq!(
            md.public_keys.unwrap()["mykey"],
            "ssh-ed25519 AAAA user@host"
        );
        assert_eq!(md.availability_zone.as_deref(), Some("nova"));
        assert_eq!(md.keys.unwrap()[0].kind, "ssh");
    }

    #[test]
    fn uuid_is_required() {
        assert!(serde_json::from_str::<MetaData>(r#"{"hostname": "x"}"#).is_err());
    }
}
