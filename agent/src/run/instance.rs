//! The instance a run works on: what the fetch phase produced, for the apply steps.

use metaboot_proto::MetaData;

use crate::apply::network::NetworkDoc;
use crate::config::Settings;
use crate::root::Root;
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
}

/// The instance id of a run without metadata and without a previous instance (cloud-init's
/// None datasource uses the same).
pub const NO_INSTANCE_ID: &str = "iid-datasource-none";

impl<'a> Instance<'a> {
    /// A run without metadata: the image's configuration only, no user or vendor data.
    pub fn without_metadata(root: &'a Root, state: &'a State, settings: &'a Settings) -> Self {
        let id = state
            .stored_instance_id()
            .unwrap_or_else(|| NO_INSTANCE_ID.to_owned());
        Self::known(root, state, settings, id)
    }

    /// The instance `id` with the image's configuration only: the final stage's, which runs
    /// the scripts the init stage wrote and needs nothing else of the instance's data.
    pub fn known(root: &'a Root, state: &'a State, settings: &'a Settings, id: String) -> Self {
        let (config, _) = CloudConfig::from_map(&settings.base);
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
        }
    }
}
