//! The `all` configuration file (TOML). Every key also has a flag; a flag wins over the file,
//! the file over the built-in default.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::{FORBIDDEN_SECRET_MODE_BITS, SECRET_FILE_MODE};

/// Largest configuration file read, in bytes.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the configuration file {}: give the path of a TOML file the user this \
         runs as can read",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the configuration file {} is larger than {MAX_CONFIG_BYTES} bytes, the limit: is it \
         the right file?",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error(
        "the configuration file {} is not UTF-8 (TOML is UTF-8): save it as UTF-8",
        path.display()
    )]
    NotUtf8 {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// Not TOML, or a key or value `all` does not take. The message is the parser's without
    /// the line it quotes, which may hold the PostgreSQL password.
    #[error(
        "the configuration file {} is not valid at line {line}, column {column}: {message}; \
         fix it (docs/server.md lists the keys)",
        path.display()
    )]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Its `db` holds the PostgreSQL password and its group or others may read it: libpq
    /// ignores a `.pgpass` with any of those bits (`passwordFromFile` in its `fe-connect.c`),
    /// and `all` refuses such a file as it refuses the shared secret's.
    #[error(
        "the configuration file {} holds the PostgreSQL password (in db) and has mode \
         {mode:04o}: its group and other users must not be able to read it; run `chmod \
         {SECRET_FILE_MODE:o} {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

impl ConfigError {
    /// The user's file is at fault: the CLI exits 2, as for the shared secret file, and the
    /// systemd unit does not restart (`RestartPreventExitStatus=2`).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Unreadable { .. }
                | Self::TooLarge { .. }
                | Self::NotUtf8 { .. }
                | Self::Invalid { .. }
                | Self::TooOpen { .. }
        )
    }

    /// The error for `source`, met opening or reading `path`: a missing file, one the process
    /// may not read and a directory are the user's to fix; anything else is the machine's.
    fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        if crate::user_file::is_users_fault(source.kind()) {
            Self::Unreadable { path, source }
        } else {
            Self::Read { path, source }
        }
    }

    /// The error for the parser's `err` on `text`: where it is (1-based line and column, in
    /// characters) and what, on one line.
    fn invalid(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let at = err.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..at).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        Self::Invalid {
            path: path.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: err.message().replace('\n', " "),
        }
    }
}

/// The file's contents; every key optional.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The registry: a SQLite path or a postgres:// URL.
    pub db: Option<String>,
    pub shared_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Worker threads.
    pub threads: Option<usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Also serve the API over TCP (for agents on other hosts).
    pub listen: Option<Vec<SocketAddr>>,
    pub dhcp_domain: Option<String>,
    pub vendor_data: Option<PathBuf>,
    pub cache_ttl: Option<u64>,
    /// Require an IMDSv2-style session token on every request (default false).
    pub require_token: Option<bool>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Also serve the agent on this Unix socket (for proxies in other processes, e.g. haproxy).
    pub socket: Option<PathBuf>,
    pub cache_ttl: Option<u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Port the router proxies listen on (behind the REDIRECT of the metadata address's
    /// port 80).
    pub router_port: Option<u16>,
    /// Addresses the DHCP-namespace proxies listen on: a list, or one address (the form
    /// before the list, still accepted).
    #[serde(default, deserialize_with = "one_or_many")]
    pub isolated_listen: Option<Vec<SocketAddr>>,
    pub rate_limit: Option<u32>,
    pub rate_window: Option<u64>,
    pub max_connections: Option<usize>,
    /// Connections one guest address may hold at once on a proxy listener.
    pub max_connections_per_guest: Option<usize>,
    /// Where the DHCP leases of host networks (`--libvirt-network`, `--bridge`) are read:
    /// libvirt's dnsmasq directory.
    pub leases_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<SocketAddr>,
}

/// A list of socket addresses, or a single one written as a string.
fn one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<SocketAddr>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Addresses;

    impl<'de> serde::de::Visitor<'de> for Addresses {
        type Value = Vec<SocketAddr>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let ipv4 = metaboot_proto::METADATA_IPV4_LISTEN;
            let ipv6 = SocketAddr::new(
                metaboot_proto::METADATA_IPV6.into(),
                metaboot_proto::METADATA_PORT,
            );
            write!(
                f,
                "an address such as \"{ipv4}\", or a list of them such as [\"{ipv4}\", \"{ipv6}\"]"
            )
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.parse()
                .map(|addr| vec![addr])
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(text), &self))
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut addrs = Vec::new();
            while let Some(addr) = seq.next_element()? {
                addrs.push(addr);
            }
            Ok(addrs)
        }
    }

    deserializer.deserialize_any(Addresses).map(Some)
}

impl ConfigFile {
    /// Reads and checks the file; the error names the file and where in it the fault is.
    /// A file that holds the PostgreSQL password ([`crate::store::holds_password`]) must be
    /// private to its owner ([`ConfigError::TooOpen`]); one without may be readable by all.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::io(path, source);
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file read, not of whatever the path names a moment later.
        let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
        let text = crate::user_file::read_at_most(&mut file, MAX_CONFIG_BYTES)
            .map_err(read_error)?
            .ok_or_else(|| ConfigError::TooLarge {
                path: path.to_owned(),
            })?;
        let text = String::from_utf8(text).map_err(|source| ConfigError::NotUtf8 {
            path: path.to_owned(),
            source,
        })?;
        let config: Self =
            toml::from_str(&text).map_err(|err| ConfigError::invalid(path, &text, &err))?;
        let password = config
            .db
            .as_deref()
            .is_some_and(crate::store::holds_password);
        if password && mode & FORBIDDEN_SECRET_MODE_BITS != 0 {
            return Err(ConfigError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example_and_refuses_typos() {
        let example = r#"
db = "/var/lib/metaboot-server/registry.sqlite"
shared_secret_file = "/etc/metaboot/secret"
threads = 2

[api]
listen = ["127.0.0.1:8775"]
dhcp_domain = "novalocal"
cache_ttl = 15
require_token = false

[agent]
socket = "/run/metaboot/agent.sock"
cache_ttl = 5

[proxy]
router_port = 9697
isolated_listen = ["169.254.169.254:80"]
rate_limit = 100
rate_window = 10
max_connections = 4096
max_connections_per_guest = 8

[metrics]
listen = "127.0.0.1:9100"
"#;
        let config: ConfigFile = toml::from_str(example).unwrap();
        assert_eq!(config.proxy.router_port, Some(9697));
        assert_eq!(config.proxy.max_connections_per_guest, Some(8));
        assert_eq!(
            config.api.listen.as_deref(),
            Some(&["127.0.0.1:8775".parse().unwrap()][..])
        );
        assert_eq!(
            config.proxy.isolated_listen,
            Some(vec![metaboot_proto::METADATA_IPV4_LISTEN])
        );
        let typo = toml::from_str::<ConfigFile>("[proxy]\nrouter_prot = 1\n").unwrap_err();
        assert!(typo.to_string().contains("router_prot"), "{typo}");
    }

    #[test]
    fn a_file_holding_the_password_that_others_may_read_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metaboot.toml");
        let with_password = [
            "db = \"postgres://metaboot:s3cret@db.example/metaboot\"\n",
            "db = \"postgresql://metaboot@db.example/metaboot?password=s3cret\"\n",
            // Where the driver reads a password, not where a URL's path would begin.
            "db = \"postgres://metaboot:s3/cret@db.example/metaboot\"\n",
            "db = \"postgres://metaboot@db.example/metaboot?pass%77ord=s3cret\"\n",
        ];
        for text in with_password {
            std::fs::write(&file, text).unwrap();
            for mode in [0o640, 0o604, 0o644, 0o620, 0o660, 0o601] {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
                let err = ConfigFile::load(&file).unwrap_err();
                assert!(
                    matches!(err, ConfigError::TooOpen { .. }) && err.is_user_error(),
                    "{err}"
                );
                let line = format!("{err:#}");
                assert!(
                    line.contains(&format!("run `chmod 600 {}`", file.display())),
                    "{line}"
                );
                assert!(line.contains(&format!("{mode:04o}")), "{line}");
                assert!(!line.contains("s3cret") && !line.contains('\n'), "{line}");
            }
            for mode in [0o600, 0o400] {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
                assert!(ConfigFile::load(&file).is_ok(), "{mode:o}: {text}");
            }
        }
        // Without a password the file may be read by anyone.
        for text in [
            "db = \"postgres://metaboot@db.example/metaboot?sslmode=require\"\n",
            "db = \"/var/lib/metaboot-server/registry.sqlite\"\n",
            "threads = 2\n",
        ] {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let config = ConfigFile::load(&file).unwrap();
            assert_eq!(config, toml::from_str::<ConfigFile>(text).unwrap());
        }
    }

    #[test]
    fn a_file_up_to_the_limit_is_read_and_one_byte_more_refused_as_the_users_fault() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metaboot.toml");
        let mut text = vec![b'#'; MAX_CONFIG_BYTES - 1];
        text.push(b'\n');
        std::fs::write(&file, &text).unwrap();
        assert_eq!(ConfigFile::load(&file).unwrap(), ConfigFile::default());
        text.push(b'\n');
        std::fs::write(&file, &text).unwrap();
        let err = ConfigFile::load(&file).unwrap_err();
        assert!(
            matches!(err, ConfigError::TooLarge { .. }) && err.is_user_error(),
            "{err}"
        );
    }

    #[test]
    fn what_cannot_be_parsed_is_placed_by_line_and_character_column_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metaboot.toml");
        std::fs::write(&file, "# réseau\n[api]\ndhcp_domain = \"é\" x\n").unwrap();
        let err = ConfigFile::load(&file).unwrap_err();
        let ConfigError::Invalid { line, column, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!((*line, *column), (3, 19), "{err}");
        assert!(
            err.is_user_error() && !err.to_string().contains('\n'),
            "{err}"
        );
        assert!(!err.to_string().contains("dhcp_domain = "), "{err}");
        let missing = ConfigFile::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Unreadable { .. }) && missing.is_user_error());
        let directory = ConfigFile::load(dir.path()).unwrap_err();
        assert!(
            matches!(directory, ConfigError::Unreadable { .. }),
            "{directory}"
        );
    }

    #[test]
    fn isolated_listen_is_a_list_or_one_address() {
        let list: ConfigFile = toml::from_str(
            "[proxy]\nisolated_listen = [\"169.254.169.254:80\", \"[fe80::a9fe:a9fe]:80\"]\n",
        )
        .unwrap();
        let both: Vec<SocketAddr> = metaboot_proto::METADATA_ADDRESSES
            .iter()
            .map(|ip| SocketAddr::new(*ip, metaboot_proto::METADATA_PORT))
            .collect();
        assert_eq!(list.proxy.isolated_listen, Some(both));
        let one: ConfigFile =
            toml::from_str("[proxy]\nisolated_listen = \"169.254.169.254:80\"\n").unwrap();
        assert_eq!(
            one.proxy.isolated_listen,
            Some(vec![metaboot_proto::METADATA_IPV4_LISTEN])
        );
        assert_eq!(ConfigFile::default().proxy.isolated_listen, None);
        for bad in [
            "isolated_listen = \"169.254.169.254\"",
            "isolated_listen = [\"nowhere:80\"]",
            "isolated_listen = 80",
        ] {
            let err = toml::from_str::<ConfigFile>(&format!("[proxy]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains("isolated_listen"), "{bad}: {err}");
        }
    }
}
