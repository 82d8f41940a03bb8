//! The guest agent's own configuration: `<root>/etc/metaboot/metaboot.yaml` (the role of
//! cloud.cfg) and `metaboot.url=` on the kernel command line. The metadata service is tried
//! at each of `metadata_urls` in order (default: IPv4, then IPv6), as cloud-init's
//! `metadata_urls`.
//!
//! metaboot.yaml holds the agent's keys (below) and may hold any cloud-config key as a default
//! (`disable_root`, `ssh_pwauth`, `manage_etc_hosts`, …): vendor data and user data override it,
//! as they override cloud.cfg.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::retry::DEFAULT_DEADLINE;
use crate::root::Root;
use crate::source::{self, http::DEFAULT_REQUEST_TIMEOUT};
use crate::userdata::cloud_config::{UserConfig, shape_error};
use crate::userdata::yaml::{self, ConfigMap};

/// Default configuration file, under the root.
pub const CONFIG_PATH: &str = "/etc/metaboot/metaboot.yaml";
/// The kernel command line, under the root.
pub const CMDLINE_PATH: &str = "/proc/cmdline";
/// Kernel command-line parameter naming the metadata service URL.
pub const CMDLINE_URL_KEY: &str = "metaboot.url";
/// The metadata service of OpenStack, at both addresses, IPv4 first.
pub const DEFAULT_METADATA_URLS: [&str; 2] = metaboot_proto::METADATA_URLS;
/// Most metadata URLs tried.
pub const MAX_METADATA_URLS: usize = 8;
/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Longest deadline accepted from the configuration (one hour).
pub const MAX_DEADLINE_SECS: u64 = 3600;
/// Longest bound of one request accepted from the configuration (ten minutes): the steps
/// that retry multiply it by their attempts, which a larger value would overflow.
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 600;

/// The agent's own keys in metaboot.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// One metadata service base URL (an IP literal): the key from before `metadata_urls`.
    pub metadata_url: Option<String>,
    /// The metadata service's base URLs, tried in order; the first that answers wins.
    pub metadata_urls: Option<Vec<String>>,
    /// How long to keep retrying the metadata service, in seconds (0: one round, each request
    /// with its full timeout).
    pub deadline_secs: u64,
    /// Bound of one HTTP request, in seconds.
    pub request_timeout_secs: u64,
    /// The datasources to look for, in order (default: every one, in [`source::DATASOURCES`]
    /// order).
    pub datasources: Option<Vec<String>>,
    /// `false` leaves the config drive out of the datasources (the key from before
    /// `datasources:`).
    pub config_drive: bool,
    /// The distro's default user (cloud.cfg `system_info.default_user`); none by default.
    pub default_user: Option<UserConfig>,
    /// Set root's password from the config drive's `admin_pass` when nothing else sets it.
    pub apply_admin_pass: bool,
    /// The steps that run (default: all of them).
    pub steps: Option<Vec<String>>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            metadata_url: None,
            metadata_urls: None,
            deadline_secs: DEFAULT_DEADLINE.as_secs(),
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT.as_secs(),
            datasources: None,
            config_drive: true,
            default_user: None,
            apply_admin_pass: true,
            steps: None,
        }
    }
}

impl AgentConfig {
    /// The retry deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }

    /// The per-request timeout (at least one second).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// The datasources to try, in order: `datasources:` (its unknown names left out, see
    /// [`load`]) or every known one; without the config drive when `config_drive: false`.
    pub fn datasources(&self) -> Vec<&str> {
        let known: Vec<&str> = source::names().collect();
        let listed: Vec<&str> = match &self.datasources {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(String::as_str)
                .filter(|name| known.contains(name))
                .collect(),
            _ => known,
        };
        listed
            .into_iter()
            .filter(|name| self.config_drive || *name != source::config_drive::NAME)
            .collect()
    }

    /// True when `step` is enabled.
    pub fn step_enabled(&self, step: &str) -> bool {
        self.steps
            .as_ref()
            .is_none_or(|steps| steps.iter().any(|s| s == step))
    }
}

/// The loaded configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub agent: AgentConfig,
    /// The whole file, as the lowest layer of the cloud-config.
    pub base: ConfigMap,
    /// The metadata URLs to try, in order, and where they came from.
    pub urls: Vec<String>,
    pub url_origin: &'static str,
    /// Problems found; the defaults were used for the affected keys.
    pub errors: Vec<String>,
}

/// The agent's keys of metaboot.yaml, each read on its own: a key of the wrong shape
/// (`deadline_secs: soon`) is an error and keeps its default, and the others still apply (the
/// `steps` an operator turned off stay off).
fn agent_config(map: &ConfigMap, path: &Path, errors: &mut Vec<String>) -> AgentConfig {
    let mut readable = serde_json::Map::new();
    for (key, value) in map {
        let alone = serde_json::Map::from_iter([(key.clone(), value.clone())]);
        match serde_json::from_value::<AgentConfig>(serde_json::Value::Object(alone)) {
            Ok(_) => {
                readable.insert(key.clone(), value.clone());
            }
            Err(err) => errors.push(format!(
                "{}: `{key}`: {}; its default is used",
                path.display(),
                shape_error::without_values(&err)
            )),
        }
    }
    // Each key read alone, so together they read too.
    serde_json::from_value(serde_json::Value::Object(readable)).unwrap_or_default()
}

/// Loads metaboot.yaml (`config_path` as given, else under the root), then the kernel command
/// line, then `cli_url`, each overriding the previous for the URL. `steps:` may name only
/// `known_steps`.
pub fn load(
    root: &Root,
    config_path: Option<&Path>,
    cli_url: Option<&str>,
    known_steps: &[&str],
) -> Settings {
    let mut settings = Settings::default();
    // `--config FILE` is the operator's own file, read as given; the default is under the root.
    let (path, bytes) = match config_path {
        Some(path) => (
            path.to_owned(),
            std::fs::read(path)
                .map(Some)
                .map_err(|err| match err.kind() {
                    std::io::ErrorKind::NotFound => {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
                    }
                    _ => err,
                }),
        ),
        None => (root.host_path(CONFIG_PATH), root.read_optional(CONFIG_PATH)),
    };
    match read_config(&path, bytes) {
        Ok(Some(map)) => {
            settings.agent = agent_config(&map, &path, &mut settings.errors);
            settings.base = map;
        }
        Ok(None) => {}
        Err(err) => settings.errors.push(err),
    }
    check(&mut settings, known_steps);
    let from_file = match (&settings.agent.metadata_urls, &settings.agent.metadata_url) {
        (Some(urls), one) => {
            if one.is_some() {
                settings.errors.push(
                    "both metadata_url and metadata_urls are set: metadata_urls is used; keep one"
                        .to_owned(),
                );
            }
            Some(urls.clone())
        }
        (None, Some(one)) => Some(vec![one.clone()]),
        (None, None) => None,
    };
    settings.urls = DEFAULT_METADATA_URLS.map(str::to_owned).to_vec();
    settings.url_origin = "default";
    if let Some(urls) = from_file {
        settings.urls = urls;
        settings.url_origin = "metaboot.yaml";
    }
    if let Some(url) = cmdline_url(root) {
        settings.urls = vec![url];
        settings.url_origin = "kernel command line";
    }
    if let Some(url) = cli_url {
        settings.urls = vec![url.to_owned()];
        settings.url_origin = "--url";
    }
    for url in &mut settings.urls {
        *url = url.trim_end_matches('/').to_owned();
    }
    settings
}

fn read_config(
    path: &Path,
    bytes: std::io::Result<Option<Vec<u8>>>,
) -> Result<Option<ConfigMap>, String> {
    let bytes = match bytes {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "{}: larger than {MAX_CONFIG_BYTES} bytes; using defaults",
            path.display()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    yaml::parse_map(&text)
        .map(Some)
        .map_err(|err| format!("{}: {err}; using defaults", path.display()))
}

fn check(settings: &mut Settings, known_steps: &[&str]) {
    let agent = &mut settings.agent;
    if agent.deadline_secs > MAX_DEADLINE_SECS {
        settings.errors.push(format!(
            "deadline_secs {} is above {MAX_DEADLINE_SECS}; using {MAX_DEADLINE_SECS}",
            agent.deadline_secs
        ));
        agent.deadline_secs = MAX_DEADLINE_SECS;
    }
    if agent.request_timeout_secs > MAX_REQUEST_TIMEOUT_SECS {
        settings.errors.push(format!(
            "request_timeout_secs {} is above {MAX_REQUEST_TIMEOUT_SECS}; using \
             {MAX_REQUEST_TIMEOUT_SECS}",
            agent.request_timeout_secs
        ));
        agent.request_timeout_secs = MAX_REQUEST_TIMEOUT_SECS;
    }
    if let Some(listed) = &agent.datasources {
        let known: Vec<&str> = source::names().collect();
        let unknown: Vec<&String> = listed
            .iter()
            .filter(|s| !known.contains(&s.as_str()))
            .collect();
        if listed.is_empty() {
            settings.errors.push(format!(
                "`datasources` is empty; using every one: {}",
                known.join(", ")
            ));
        } else if !unknown.is_empty() {
            settings.errors.push(format!(
                "unknown datasources {unknown:?} in `datasources` (known: {}); they are skipped",
                known.join(", ")
            ));
        }
    }
    if let Some(urls) = &agent.metadata_urls {
        if urls.is_empty() {
            settings.errors.push(format!(
                "`metadata_urls` is empty; using the default: {}",
                DEFAULT_METADATA_URLS.join(", ")
            ));
            agent.metadata_urls = None;
        } else if urls.len() > MAX_METADATA_URLS {
            settings.errors.push(format!(
                "`metadata_urls` lists {} URLs; only the first {MAX_METADATA_URLS} are tried",
                urls.len()
            ));
            agent.metadata_urls = Some(urls[..MAX_METADATA_URLS].to_vec());
        }
    }
    if let Some(steps) = &agent.steps {
        let unknown: Vec<&String> = steps
            .iter()
            .filter(|s| !known_steps.contains(&s.as_str()))
            .collect();
        if !unknown.is_empty() {
            settings.errors.push(format!(
                "unknown steps {unknown:?} in `steps` (known: {})",
                known_steps.join(", ")
            ));
        }
    }
}

/// `metaboot.url=` from `<root>/proc/cmdline`, if present.
pub fn cmdline_url(root: &Root) -> Option<String> {
    let cmdline = root.read_optional_string(CMDLINE_PATH).ok()??;
    parse_cmdline(&cmdline, CMDLINE_URL_KEY)
}

/// The value of `key=value` among whitespace-separated kernel parameters (last one wins, as
/// for the kernel's own parameters); double quotes around the value are removed.
pub fn parse_cmdline(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|param| param.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .next_back()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Step names, as the run passes them.
    const STEPS: &[&str] = &["hostname", "ssh-keys", "runcmd"];

    #[test]
    fn defaults_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let settings = load(&Root::open(dir.path()).unwrap(), None, None, STEPS);
        assert!(settings.errors.is_empty());
        assert_eq!(
            settings.urls,
            ["http://169.254.169.254", "http://[fe80::a9fe:a9fe]"]
        );
        assert_eq!(settings.url_origin, "default");
        assert_eq!(settings.agent.deadline(), DEFAULT_DEADLINE);
        assert!(settings.agent.step_enabled("runcmd"));
        assert!(settings.agent.default_user.is_none());
    }

    #[test]
    fn file_then_cmdline_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        fs::create_dir_all(root.host_path("/etc/metaboot")).unwrap();
        fs::write(
            root.host_path(CONFIG_PATH),
            "metadata_url: http://10.0.0.1/\ndeadline_secs: 5\ndisable_root: false\n\
             default_user: {name: debian, sudo: 'ALL=(ALL) NOPASSWD:ALL'}\nsteps: [hostname, ssh-keys]\n",
        )
        .unwrap();
        let settings = load(&root, None, None, STEPS);
        assert!(settings.errors.is_empty(), "{:?}", settings.errors);
        assert_eq!(settings.urls, ["http://10.0.0.1"]);
        assert_eq!(settings.agent.deadline_secs, 5);
        assert_eq!(settings.base["disable_root"], serde_json::json!(false));
        assert_eq!(settings.agent.default_user.as_ref().unwrap().name, "debian");
        assert!(!settings.agent.step_enabled("runcmd"));

        fs::create_dir_all(root.host_path("/proc")).unwrap();
        fs::write(
            root.host_path(CMDLINE_PATH),
            "console=ttyS0 metaboot.url=http://10.0.0.2:8080 quiet\n",
        )
        .unwrap();
        let settings = load(&root, None, None, STEPS);
        assert_eq!(settings.urls, ["http://10.0.0.2:8080"]);
        assert_eq!(settings.url_origin, "kernel command line");
        let settings = load(&root, None, Some("http://10.0.0.3"), STEPS);
        assert_eq!(
            (settings.urls.as_slice(), settings.url_origin),
            (&["http://10.0.0.3".to_owned()][..], "--url")
        );
    }

    #[test]
    fn bad_files_are_reported_and_defaults_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        fs::write(&path, "deadline_secs: [1\n").unwrap();
        let settings = load(&Root::open(dir.path()).unwrap(), Some(&path), None, STEPS);
        assert!(
            settings.errors[0].contains("Invalid YAML"),
            "{:?}",
            settings.errors
        );
        assert_eq!(settings.agent.deadline(), DEFAULT_DEADLINE);

        // A key of the wrong shape keeps its default; the others still apply.
        fs::write(
            &path,
            "deadline_secs: soon\nsteps: [hostname]\napply_admin_pass: [no]\n",
        )
        .unwrap();
        let settings = load(&Root::open(dir.path()).unwrap(), Some(&path), None, STEPS);
        assert_eq!(settings.errors.len(), 2, "{:?}", settings.errors);
        assert!(
            settings.errors[0].contains("`apply_admin_pass`: invalid type: sequence")
                && settings.errors[1].contains("`deadline_secs`: invalid type: string")
                && settings.errors[1].ends_with("its default is used"),
            "{:?}",
            settings.errors
        );
        assert_eq!(settings.agent.deadline(), DEFAULT_DEADLINE);
        assert!(!settings.agent.step_enabled("runcmd"), "steps still apply");

        fs::write(
            &path,
            "steps: [hostname, nope]\ndeadline_secs: 99999\n\
             request_timeout_secs: 18446744073709551615\n",
        )
        .unwrap();
        let settings = load(&Root::open(dir.path()).unwrap(), Some(&path), None, STEPS);
        assert_eq!(settings.errors.len(), 3, "{:?}", settings.errors);
        assert_eq!(settings.agent.deadline_secs, MAX_DEADLINE_SECS);
        assert_eq!(
            settings.agent.request_timeout_secs,
            MAX_REQUEST_TIMEOUT_SECS
        );

        let missing = load(
            &Root::open(dir.path()).unwrap(),
            Some(&dir.path().join("none")),
            None,
            STEPS,
        );
        assert!(missing.errors[0].contains("no such file"));

        fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES + 1]).unwrap();
        let settings = load(&Root::open(dir.path()).unwrap(), Some(&path), None, STEPS);
        assert!(settings.errors[0].contains("larger than"));
    }

    #[test]
    fn datasources_are_ordered_checked_and_default_to_every_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaboot.yaml");
        let root = Root::open(dir.path()).unwrap();
        let load_text = |text: &str| {
            fs::write(&path, text).unwrap();
            load(&root, Some(&path), None, STEPS)
        };
        let all: Vec<&str> = source::names().collect();
        assert_eq!(load_text("{}\n").agent.datasources(), all);

        let settings = load_text("datasources: [metadata-service, config-drive]\n");
        assert!(settings.errors.is_empty(), "{:?}", settings.errors);
        assert_eq!(
            settings.agent.datasources(),
            ["metadata-service", "config-drive"]
        );

        let settings = load_text("datasources: [config-drive, ConfigDrive, metadata-service]\n");
        assert_eq!(
            settings.errors,
            [format!(
                "unknown datasources [\"ConfigDrive\"] in `datasources` (known: {}); they are skipped",
                all.join(", ")
            )]
        );
        assert_eq!(
            settings.agent.datasources(),
            ["config-drive", "metadata-service"]
        );

        let settings = load_text("datasources: []\n");
        assert!(settings.errors[0].contains("`datasources` is empty"));
        assert_eq!(settings.agent.datasources(), all);

        // The key from before `datasources:` still leaves the config drive out.
        let settings = load_text("config_drive: false\n");
        assert!(!settings.agent.datasources().contains(&"config-drive"));
    }

    #[test]
    fn metadata_urls_are_tried_in_order_and_the_old_key_is_one_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaboot.yaml");
        let root = Root::open(dir.path()).unwrap();
        let load_text = |text: &str| {
            fs::write(&path, text).unwrap();
            load(&root, Some(&path), None, STEPS)
        };
        let settings = load_text(
            "metadata_urls: ['http://[fe80::a9fe:a9fe%25eth1]/', http://169.254.169.254]\n",
        );
        assert!(settings.errors.is_empty(), "{:?}", settings.errors);
        assert_eq!(
            settings.urls,
            ["http://[fe80::a9fe:a9fe%25eth1]", "http://169.254.169.254"]
        );
        assert_eq!(settings.url_origin, "metaboot.yaml");

        let settings = load_text(
            "metadata_url: http://10.0.0.1\nmetadata_urls: [http://10.0.0.2, http://10.0.0.3]\n",
        );
        assert_eq!(settings.urls, ["http://10.0.0.2", "http://10.0.0.3"]);
        assert!(
            settings.errors[0].contains("keep one"),
            "{:?}",
            settings.errors
        );

        let settings = load_text("metadata_urls: []\n");
        assert!(
            settings.errors[0].contains("empty"),
            "{:?}",
            settings.errors
        );
        assert_eq!(settings.urls.len(), 2);

        let many: Vec<String> = (0..=MAX_METADATA_URLS)
            .map(|i| format!("http://10.0.0.{i}"))
            .collect();
        let settings = load_text(&format!("metadata_urls: [{}]\n", many.join(", ")));
        assert_eq!(settings.urls.len(), MAX_METADATA_URLS);
        assert!(
            settings.errors[0].contains("only the first"),
            "{:?}",
            settings.errors
        );
    }

    #[test]
    fn cmdline_parsing() {
        assert_eq!(
            parse_cmdline("a=1 metaboot.url=\"http://1.2.3.4\" b", CMDLINE_URL_KEY).as_deref(),
            Some("http://1.2.3.4")
        );
        assert_eq!(parse_cmdline("metaboot.urlx=1", CMDLINE_URL_KEY), None);
        assert_eq!(
            parse_cmdline("metaboot.url=a metaboot.url=b", CMDLINE_URL_KEY).as_deref(),
            Some("b")
        );
    }
}
