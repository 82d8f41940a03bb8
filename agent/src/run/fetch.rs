//! The fetch phase of a run, one step per document: fetch it from the source, decode it; then
//! merge the cloud-config of metaboot.yaml, vendor data and user data. Only meta-data is
//! required: without it there is no instance. A document that could not be fetched (a timeout,
//! a broken connection, a 5xx: anything but a definite answer) leaves the set incomplete: the
//! run then takes up no instance (no switch, nothing cached, no per-instance step), as without
//! meta-data, and the next boot fetches again. A definite refusal (a 4xx other than 408 and
//! 429, a 3xx, 501, a document over its size limit: the source will answer the same at every
//! boot) fails that document's step
//! alone, as cloud-init takes an optional document it cannot read for absent: the instance is
//! taken up without it, and its cached copy is left as it was. Only a complete set switches the
//! instance and is cached in its directory.

use std::cell::RefCell;

use metaboot_proto::{MetaData, NetworkData as OpenStackNetworkData};

use super::instance::{CLOUD_CONFIG_CACHE, Instance, META_DATA_CACHE};
use crate::apply::network::NetworkDoc;
use crate::config::Settings;
use crate::log::chain;
use crate::root::Root;
use crate::source::http::HttpClient;
use crate::source::{NetworkData, Source, SourceError, VendorData};
use crate::state::redact;
use crate::state::result::{Done, Report, count};
use crate::state::{State, check_instance_id};
use crate::userdata::cloud_config::{CloudConfig, not_applied};
use crate::userdata::yaml::ConfigMap;
use crate::userdata::{self, Decoded, merge, yaml};

/// Why a step the configuration switched off did not run.
const DISABLED: &str = "disabled by `steps` in metaboot.yaml";
/// The `network-data` step's word for a `network-config` of `config: disabled`.
pub(super) const NETWORK_CONFIG_DISABLED: &str = "network-config: {config: disabled}";

/// Fetches, decodes and merges what `source` has; `None` when its meta-data failed (or was
/// refused: not `known`, the machine's own instance) or another document could not be
/// fetched.
pub(super) fn fetch<'a>(
    root: &'a Root,
    state: &'a State,
    settings: &'a Settings,
    source: &mut dyn Source,
    client: &HttpClient,
    known: Option<&str>,
    report: &mut Report,
) -> Option<Instance<'a>> {
    let (meta, new_instance, launch_index, cached_meta) = meta_data(state, source, known, report)?;
    let id = meta.uuid.clone();
    let docs = Documents {
        state,
        id: &id,
        launch_index,
        failed: RefCell::default(),
        pending: RefCell::new(vec![(META_DATA_CACHE, Some(cached_meta))]),
    };
    let mut user = Decoded::default();
    let mut vendor = Decoded::default();
    let mut network = None;
    let mut network_absent = false;
    let enabled = |name: &str| settings.agent.step_enabled(name);
    if enabled("user-data") {
        report.step("user-data", || docs.user_data(source, client, &mut user));
    } else {
        report.skip("user-data", DISABLED);
    }
    // User data's parts merged once: the vendor switches read it, the cloud-config step uses it.
    let user_config = merge::parts(&user.configs);
    if enabled("vendor-data") {
        let switches = vendor_switches(settings, &user_config);
        report.step("vendor-data", || {
            docs.vendor_data(source, client, &switches, &mut vendor)
        });
    } else {
        report.skip("vendor-data", DISABLED);
    }
    if enabled("network-data") {
        report.step("network-data", || {
            docs.network_data(source, &mut network, &mut network_absent)
        });
    } else {
        report.skip("network-data", DISABLED);
    }
    report
        .warnings
        .extend(user.warnings.iter().chain(&vendor.warnings).cloned());
    if let Err(why) = docs.take_up(report) {
        not_taken_up(report, &id, &why);
        report.skip("cloud-config", &why);
        return None;
    }
    report.instance_id = Some(id.clone());
    report.new_instance = Some(new_instance);
    let config = merge(settings, &docs, user_config, &user, &vendor, report);
    Some(Instance {
        root,
        state,
        settings,
        id,
        new_instance,
        meta,
        config,
        user,
        vendor,
        network,
        network_absent,
        source: Some(source.name().to_owned()),
        service_url: source.service_url(),
        session: client.session().clone(),
    })
}

/// The `meta-data` step: fetch, decode, check the instance id. Returns the meta-data, whether
/// the instance is new, its launch index if it has one, and the document without its secrets
/// (cached once the set is complete). On a reboot of the machine's own instance (the last
/// instance id is its DMI system UUID), nova's documents for another instance are refused:
/// they are not this machine's (a proxy that misidentifies it, an address reused), and
/// cloud-init's OpenStack `check_instance_id` keeps the cached instance on such a boot. A
/// NoCloud seed's new `instance-id` is taken, as cloud-init takes it.
fn meta_data(
    state: &State,
    source: &mut dyn Source,
    known: Option<&str>,
    report: &mut Report,
) -> Option<(MetaData, bool, Option<i64>, Vec<u8>)> {
    let mut meta = None;
    report.step("meta-data", || {
        let raw = match source.meta_data() {
            Ok(raw) => raw,
            Err(err) => return Done::error(chain(err.as_ref())),
        };
        let parsed: MetaData = match serde_json::from_slice(&raw) {
            Ok(parsed) => parsed,
            Err(err) => return Done::error(format!("meta_data.json is not valid: {err}")),
        };
        if let Err(err) = check_instance_id(&parsed.uuid) {
            return Done::error(chain(&err));
        }
        if let Some(known) = known
            && !known.eq_ignore_ascii_case(&parsed.uuid)
            && source.name() != crate::source::nocloud::NAME
        {
            return Done::error(format!(
                "refused: the source answered for instance {}, but this machine is instance \
                 {known} (its DMI product_uuid); the run goes on as {known}: check what answers \
                 at the metadata URL",
                parsed.uuid
            ));
        }
        let new = state.stored_instance_id().as_deref() != Some(parsed.uuid.as_str());
        let message = format!(
            "instance {} ({})",
            parsed.uuid,
            if new { "new" } else { "same as last boot" }
        );
        meta = Some((parsed, new, launch_index(&raw), redact::meta_data(&raw)));
        Done::ok_with(message)
    });
    report.warnings.extend(source.take_warnings());
    meta
}

/// Makes the `meta-data` step say that instance `id` was not taken up, and why, where it said
/// "new" or "same as last boot" before the other documents came (or did not).
fn not_taken_up(report: &mut Report, id: &str, why: &str) {
    if let Some(step) = report
        .steps
        .iter_mut()
        .find(|step| step.name == "meta-data")
    {
        step.message = Some(format!("instance {id} (not taken up: {why})"));
    }
}

/// The instance's launch index, when its meta-data has one: `launch_index` (nova always
/// gives it; a NoCloud seed's `launch-index` is carried there). A document without it (or
/// with `null`) has none, and then no user-data part is left out for another index, as in
/// cloud-init.
fn launch_index(raw: &[u8]) -> Option<i64> {
    let doc: serde_json::Value = serde_json::from_slice(raw).ok()?;
    doc.get("launch_index").and_then(userdata::launch_index_of)
}

/// Caches a fetched document; a failure costs only `metaboot query`, so it is a log line.
fn cache(state: &State, id: &str, name: &str, raw: &[u8]) {
    if let Err(err) = state.cache(id, name, raw) {
        tracing::warn!("{}", chain(&err));
    }
}

/// Removes the cached copies `names` of a document the source definitely does not have (or
/// has under another name), as cloud-init rewrites its copies every boot: a document a
/// rebuild removed is not shown by `metaboot query` as if it were still there. A fetch error
/// keeps them. A failure is a log line, as [`cache`]'s.
fn uncache(state: &State, id: &str, names: &[&str]) {
    for name in names {
        match state.uncache(id, name) {
            Ok(true) => {
                tracing::info!(document = name, "cached copy of an absent document removed")
            }
            Ok(false) => {}
            Err(err) => tracing::warn!("{}", chain(&err)),
        }
    }
}

/// The optional documents of one instance: fetched, decoded, and cached under the instance
/// once every one is in ([`Documents::take_up`]).
struct Documents<'a> {
    state: &'a State,
    id: &'a str,
    /// The instance's launch index: user-data parts marked for another are left out.
    launch_index: Option<i64>,
    /// The documents that could not be fetched (anything but a definite absence).
    failed: RefCell<Vec<&'static str>>,
    /// The changes to the instance's cached copies, in order, made by [`Documents::take_up`].
    pending: RefCell<Vec<CacheChange>>,
}

/// Whether `err` is an answer the source will give at every boot: a 4xx status other than
/// 408 (timeout) and 429 (too many requests), 501 (not implemented), a permanent redirect
/// (301, 308: document requests follow none); a document over its size limit (from the
/// service or the drive); one the drive refuses for what it holds ([`DriveError::is_definite`]:
/// a drive does not change between boots); a redirect refused; a URL that cannot be. A
/// temporary redirect (302, 303, 307: a load balancer during maintenance) and any other
/// status may differ at the next boot.
fn definite_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    use crate::retry::RetryError;
    use crate::source::drive::DriveError;
    use crate::source::http::FetchError;
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(drive) = err.downcast_ref::<DriveError>() {
            return drive.is_definite();
        }
        // A failure not retried is transparent: its own `source` skips the fetch error.
        let fetch = match (err.downcast_ref(), err.downcast_ref()) {
            (Some(fetch), _) | (_, Some(RetryError::Permanent(fetch))) => fetch,
            _ => {
                next = err.source();
                continue;
            }
        };
        return match fetch {
            FetchError::Status { status, .. } => {
                matches!(status, 400..=499 if *status != 408 && *status != 429)
                    || matches!(status, 301 | 308 | 501)
            }
            FetchError::TooLarge { .. }
            | FetchError::Redirected { .. }
            | FetchError::TooManyRedirects { .. }
            | FetchError::Url(_) => true,
            _ => false,
        };
    }
    false
}

/// A change to a cached copy: the document to write (`Some`), or one the source definitely
/// does not have (`None`).
type CacheChange = (&'static str, Option<Vec<u8>>);

impl Documents<'_> {
    /// An optional document's fetch; its error, for the step's message, leaves the set
    /// incomplete, but for a definite refusal ([`definite_refusal`]).
    fn fetched<T>(
        &self,
        result: Result<Option<T>, SourceError>,
        what: &'static str,
    ) -> Result<Option<T>, String> {
        result.map_err(|err| {
            if !definite_refusal(err.as_ref()) {
                self.failed.borrow_mut().push(what);
            }
            format!("{what}: {}", chain(err.as_ref()))
        })
    }

    /// Keeps `raw` as the cached copy `name`, once the set is complete.
    fn cache(&self, name: &'static str, raw: &[u8]) {
        self.pending.borrow_mut().push((name, Some(raw.to_vec())));
    }

    /// Removes the cached copies `names`, once the set is complete ([`uncache`]).
    fn uncache(&self, names: &[&'static str]) {
        self.pending
            .borrow_mut()
            .extend(names.iter().map(|name| (*name, None)));
    }

    /// Takes up the instance when every document was fetched: switches the current instance
    /// to it and updates its cached copies. Otherwise (or when the switch fails) why not, and
    /// nothing is written: the instance's cached data stays as the last complete set left it.
    fn take_up(&self, report: &mut Report) -> Result<(), String> {
        let failed = self.failed.borrow();
        if !failed.is_empty() {
            return Err(format!(
                "{} could not be fetched: the instance's steps wait for a boot that fetches \
                 every document",
                failed.join(", ")
            ));
        }
        if let Err(err) = self.state.switch_instance(self.id) {
            let why = format!("cannot switch to instance {}: {}", self.id, chain(&err));
            report.errors.push(format!("meta-data: {why}"));
            return Err(why);
        }
        for (name, raw) in self.pending.take() {
            match raw {
                Some(raw) => cache(self.state, self.id, name, &raw),
                None => uncache(self.state, self.id, &[name]),
            }
        }
        Ok(())
    }

    /// The `user-data` step.
    fn user_data(&self, source: &mut dyn Source, client: &HttpClient, out: &mut Decoded) -> Done {
        let raw = match self.fetched(source.user_data(), "user_data") {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                self.uncache(&["user_data"]);
                return Done::ok_with("no user data");
            }
            Err(err) => return Done::error(err),
        };
        self.cache("user_data", &raw);
        *out = userdata::decode(&raw, self.launch_index, client);
        decoded_done(out)
    }

    /// The `vendor-data` step: both of OpenStack's documents (or a source's one), in order,
    /// each fetched and cached, and decoded when its switch says so (without the parts of the
    /// types its `disabled_handlers` names). vendor_data2.json's
    /// cloud-config lies over vendor_data.json's, mappings merged recursively (cloud-init's
    /// `ConfigMerger` layers `vendor2_cloud_config` over `vendor_cloud_config`).
    fn vendor_data(
        &self,
        source: &mut dyn Source,
        client: &HttpClient,
        switches: &[VendorSwitch; 2],
        out: &mut Decoded,
    ) -> Done {
        let mut errors = Vec::new();
        let mut left_out = Vec::new();
        let mut layers = Vec::new();
        // (OpenStack's name, the cache's name for plain vendor data, the document)
        let docs = [
            (
                "vendor_data.json",
                "vendor_data",
                self.fetched(source.vendor_data(), "vendor_data.json"),
            ),
            (
                "vendor_data2.json",
                "vendor_data2",
                self.fetched(source.vendor_data2(), "vendor_data2.json"),
            ),
        ];
        for ((json_name, plain_name, doc), (switch, key)) in
            docs.into_iter().zip(switches.iter().zip(VENDOR_SWITCHES))
        {
            let consume = switch.consumed;
            let mut decoded = match doc {
                Ok(Some(VendorData::Json(raw))) => {
                    self.uncache(&[plain_name]);
                    self.cache(json_name, &raw);
                    consume.then(|| userdata::decode_vendor(&raw, json_name, client))
                }
                Ok(Some(VendorData::Plain(raw))) => {
                    self.uncache(&[json_name]);
                    self.cache(plain_name, &raw);
                    consume.then(|| userdata::decode(&raw, None, client))
                }
                Ok(None) => {
                    self.uncache(&[json_name, plain_name]);
                    continue;
                }
                Err(err) => {
                    errors.push(err);
                    continue;
                }
            };
            if let Some(decoded) = &mut decoded {
                decoded.without_types(&switch.disabled_handlers);
            }
            match &mut decoded {
                Some(decoded) => layers.push(merge::parts(&std::mem::take(&mut decoded.configs))),
                None => left_out.push(format!(
                    "{json_name} not applied ({key}: {{enabled: false}})"
                )),
            }
            out.extend(decoded.unwrap_or_default());
        }
        let mut layered = layers.into_iter();
        if let Some(mut config) = layered.next() {
            for over in layered {
                yaml::merge(&mut config, over);
            }
            out.configs = vec![config];
        }
        out.errors.splice(0..0, errors);
        let mut done = decoded_done(out);
        if !left_out.is_empty() {
            let said = done.message.take().unwrap_or_default();
            done.message = Some(format!("{}; {said}", left_out.join("; ")));
        }
        done
    }

    /// The `network-data` step: fetched, cached, parsed (the `network` step applies it);
    /// `absent` when the source has none.
    fn network_data(
        &self,
        source: &mut dyn Source,
        out: &mut Option<NetworkDoc>,
        absent: &mut bool,
    ) -> Done {
        match self.fetched(source.network_data(), "network_data.json") {
            Ok(Some(NetworkData::Json(raw))) => {
                self.uncache(&[NETWORK_CONFIG]);
                self.cache(NETWORK_DATA_JSON, &raw);
                match serde_json::from_slice::<OpenStackNetworkData>(&raw) {
                    Ok(data) => {
                        // Checked against the typed document; the `network` step reads it
                        // leniently (cloud-init's types beyond nova's).
                        *out = serde_json::from_slice(&raw).ok().map(NetworkDoc::OpenStack);
                        Done::ok_with(count(data.links.len(), "link"))
                    }
                    Err(err) => Done::error(format!("network_data.json is not valid: {err}")),
                }
            }
            Ok(Some(NetworkData::NetworkConfig(raw))) => {
                self.uncache(&[NETWORK_DATA_JSON]);
                self.cache(NETWORK_CONFIG, &raw);
                let text = String::from_utf8_lossy(&raw);
                match yaml::parse_map(&text) {
                    Ok(map) => {
                        let inner = map
                            .get("network")
                            .and_then(|n| n.get("version"))
                            .or_else(|| map.get("version"))
                            .cloned();
                        let doc = NetworkDoc::NetworkConfig(serde_json::Value::Object(map));
                        // cloud-init's way to turn networking off has no `version`: the
                        // `network` step skips it.
                        if doc.disabled() {
                            *out = Some(doc);
                            return Done::ok_with(NETWORK_CONFIG_DISABLED);
                        }
                        let Some(version) = inner else {
                            return Done::error(
                                "network-config has no `version`: give `version: 1` or \
                                 `version: 2`, or `config: disabled` to leave the network alone",
                            );
                        };
                        *out = Some(doc);
                        Done::ok_with(format!("network-config version {version}"))
                    }
                    Err(err) => Done::error(format!("network-config: {err}")),
                }
            }
            Ok(None) => {
                self.uncache(&[NETWORK_DATA_JSON, NETWORK_CONFIG]);
                *absent = true;
                Done::ok_with("no network data")
            }
            Err(err) => Done::error(err),
        }
    }
}

/// The cache's names of the two network documents (OpenStack's, a NoCloud seed's).
const NETWORK_DATA_JSON: &str = "network_data.json";
const NETWORK_CONFIG: &str = "network-config";

/// The switches of the two vendor documents in cloud-config, as cloud-init reads them.
const VENDOR_SWITCHES: [&str; 2] = ["vendor_data", "vendor_data2"];

/// What one vendor document's switch says.
struct VendorSwitch {
    /// Whether the document is applied.
    consumed: bool,
    /// The MIME types of the parts left out of it (`disabled_handlers`).
    disabled_handlers: Vec<String>,
}

/// Each vendor document's switch: cloud-init consumes vendor data only when the configuration
/// without it (metaboot.yaml, then user data's cloud-config) has `vendor_data: {enabled: …}`
/// (`vendor_data2` for the second document) true, which it is unless set otherwise, and then
/// skips its parts of the types `disabled_handlers` lists (`[text/x-shellscript]`; a string is
/// one type); a switch that is not a mapping turns the document off, as in cloud-init
/// (`_consume_vendordata`).
fn vendor_switches(settings: &Settings, user_config: &ConfigMap) -> [VendorSwitch; 2] {
    VENDOR_SWITCHES.map(|key| match switch(key, settings, user_config) {
        None => VendorSwitch {
            consumed: true,
            disabled_handlers: Vec::new(),
        },
        Some(serde_json::Value::Object(switch)) => VendorSwitch {
            consumed: switch
                .get("enabled")
                .is_none_or(crate::userdata::cloud_config::is_true),
            disabled_handlers: match switch.get("disabled_handlers") {
                Some(serde_json::Value::String(mime)) => vec![mime.clone()],
                Some(serde_json::Value::Array(mimes)) => mimes
                    .iter()
                    .filter_map(|mime| mime.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
        },
        Some(_) => {
            tracing::warn!("`{key}` is not a mapping: its vendor data is not applied");
            VendorSwitch {
                consumed: false,
                disabled_handlers: Vec::new(),
            }
        }
    })
}

/// The switch `key` as the merged configuration has it: metaboot.yaml's, user data's merged over.
fn switch(key: &str, settings: &Settings, user_config: &ConfigMap) -> Option<serde_json::Value> {
    let layer = |config: &ConfigMap| {
        config
            .get(key)
            .map(|value| ConfigMap::from_iter([(key.to_owned(), value.clone())]))
            .unwrap_or_default()
    };
    let mut config = layer(&settings.base);
    yaml::merge(&mut config, layer(user_config));
    config.remove(key)
}

fn describe(decoded: &Decoded) -> String {
    format!(
        "{}, {}",
        count(decoded.configs.len(), "cloud-config part"),
        count(decoded.script_count(), "script")
    )
}

fn decoded_done(decoded: &Decoded) -> Done {
    if decoded.errors.is_empty() {
        Done::ok_with(describe(decoded))
    } else {
        Done::error(format!(
            "{}; the rest is still used: {}",
            decoded.errors.join("; "),
            describe(decoded)
        ))
    }
}

/// The `cloud-config` step: metaboot.yaml, then vendor data, then user data, later keys winning.
fn merge(
    settings: &Settings,
    docs: &Documents<'_>,
    user_config: ConfigMap,
    user: &Decoded,
    vendor: &Decoded,
    report: &mut Report,
) -> CloudConfig {
    // The parts of each merge as cloud-init's part handler merges them; the layers merge as
    // its `mergemanydict` does, user data over vendor data over the image's configuration.
    let mut merged = settings.base.clone();
    yaml::merge(&mut merged, merge::parts(&vendor.configs));
    yaml::merge(&mut merged, user_config);
    // What the instance's data asks for and metaboot does not do (not the image's own
    // metaboot.yaml, whose author knows).
    let mut skipped: Vec<String> = vendor
        .configs
        .iter()
        .chain(&user.configs)
        .flat_map(|doc| doc.keys())
        .filter_map(|key| not_applied::warning(key))
        .collect();
    skipped.extend(
        vendor
            .configs
            .iter()
            .chain(&user.configs)
            .flat_map(not_applied::user_warnings),
    );
    skipped.sort_unstable();
    skipped.dedup();
    report
        .warnings
        .extend(skipped.into_iter().map(|w| format!("cloud-config: {w}")));
    let (config, key_errors) = CloudConfig::from_map(&merged);
    report.step("cloud-config", || {
        let json = serde_json::to_vec_pretty(&redact::cloud_config(&merged)).unwrap_or_default();
        cache(docs.state, docs.id, CLOUD_CONFIG_CACHE, &json);
        if key_errors.is_empty() {
            Done::ok_with(format!("{} merged", count(merged.len(), "key")))
        } else {
            let errors: Vec<String> = key_errors.iter().map(ToString::to_string).collect();
            Done::error(format!("{}; the other keys still apply", errors.join("; ")))
        }
    });
    config
}

#[cfg(test)]
mod tests;
