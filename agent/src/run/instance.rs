//! The instance a run works on: what the fetch phase produced, for the apply steps.

use metaboot_proto::MetaData;

use crate::apply::network::NetworkDoc;
use crate::config::Settings;
use crate::root::Root;
use crate::source::token::Session;
use crate::state::State;
use crate::userdata::Decoded;
use crate::userdata::cloud_config::CloudConfig;

/// What the fetch phase produced, for the apply steps.
pub struct Instance<'a> {
    pub root: &'a Root,
    pub state: &'a State,
    pub settings: &'a Settings,
    pub id: String,
    pub new_instance: bool,
    pub meta: MetaData,
    pub config: CloudConfig,
    pub user: Decoded,
    pub vendor: Decoded,
    /// The network configuration the source gave (parsed), for the `network` step.
    pub network: Option<NetworkDoc>,
    /// Whether the source said it has no network configuration (the `network-data` step
    /// fetched none); not when that step is off or failed, or the document is not valid.
    pub network_absent: bool,
    /// The datasource the data came from (`metadata-service`, …), when one was found.
    pub source: Option<String>,
    /// The metadata service's base URL the data was read from, when it came from the service.
    pub service_url: Option<String>,
    /// The metadata service's session token the run holds (when the service requires one),
    /// for the password post-back.
    pub session: Session,
}

/// The merged cloud-config the fetch phase caches under the instance's directory.
pub const CLOUD_CONFIG_CACHE: &str = "cloud-config.json";
/// The instance's `meta_data.json` (its secrets redacted), cached there by the fetch phase.
pub const META_DATA_CACHE: &str = "meta_data.json";

/// The instance id of a run without metadata and without a previous instance (cloud-init's
/// None datasource uses the same).
pub const NO_INSTANCE_ID: &str = "iid-datasource-none";

impl<'a> Instance<'a> {
    /// A run without metadata: the image's configuration only, no user or vendor data.
    pub fn without_metadata(root: &'a Root, state: &'a State, settings: &'a Settings) -> Self {
        let id = state
            .stored_instance_id()
            .unwrap_or_else(|| NO_INSTANCE_ID.to_owned());
        let (config, _) = CloudConfig::from_map(&settings.base);
        Self::with_config(root, state, settings, id, config)
    }

    /// The instance `id` as the init stage left it, for the final stage: the cloud-config it
    /// merged (`instances/<id>/cloud-config.json`, passwords and private keys redacted; the
    /// image's configuration when it is missing) and its meta-data (`instances/<id>/
    /// meta_data.json`, redacted: the host name `phone_home` posts), and nothing else of the
    /// instance's data (the scripts are on disk).
    pub fn resumed(root: &'a Root, state: &'a State, settings: &'a Settings, id: String) -> Self {
        let cached = |name: &str| {
            root.read_optional(state.instance_dir(&id).join(name))
                .ok()
                .flatten()
        };
        let merged_json = cached(CLOUD_CONFIG_CACHE)
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        let merged = match &merged_json {
            Some(serde_json::Value::Object(map)) => map,
            _ => &settings.base,
        };
        let (config, _) = CloudConfig::from_map(merged);
        let meta = cached(META_DATA_CACHE)
            .and_then(|bytes| serde_json::from_slice::<MetaData>(&bytes).ok())
            .filter(|meta| meta.uuid == id);
        let mut instance = Self::with_config(root, state, settings, id, config);
        if let Some(meta) = meta {
            instance.meta = meta;
        }
        instance
    }

    fn with_config(
        root: &'a Root,
        state: &'a State,
        settings: &'a Settings,
        id: String,
        config: CloudConfig,
    ) -> Self {
        Instance {
            root,
            state,
            settings,
            meta: MetaData {
                uuid: id.clone(),
                ..MetaData::default()
            },
            id,
            new_instance: false,
            config,
            user: Decoded::default(),
            vendor: Decoded::default(),
            network: None,
            network_absent: false,
            source: None,
            service_url: None,
            session: Session::default(),
        }
    }
}
