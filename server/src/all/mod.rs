//! `metaboot-server all`: every role in one process — the API, the agent, one namespace proxy
//! per router and per isolated network, and a listener on the bridge of each host network,
//! following the registry.

mod chain;
pub mod config;
pub mod host;
pub mod host_pass;
pub mod registry_lock;
pub mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

pub use chain::{InProcess, InProcessApi};
pub use config::ConfigFile;

use crate::agent::{Agent, AgentHandler};
use crate::api::{Api, ApiHandler, Identify, Rendering, VendorDocs};
use crate::follow::ChangeListener;
use crate::http::ServerLimits;
use crate::leases::HostLeases;
use crate::metrics::Metrics;
use crate::model::ReadModel;
use crate::proxy::rate_limit::DEFAULT_WINDOW;
use crate::proxy::{ProxyHandler, RateLimit};
use host::HostBridges;
use supervisor::{NamedNetns, RECONCILE_INTERVAL, Supervisor, Wake};

/// Port of the router proxies (Neutron's `metadata_port`).
pub const DEFAULT_ROUTER_PORT: u16 = metaboot_proto::ROUTER_PROXY_PORT;
/// Addresses of the DHCP-namespace proxies: both metadata addresses on port 80, each on the
/// networks with a subnet of its family (`[fe80::a9fe:a9fe]:80` bound on the interface that
/// holds it).
pub const DEFAULT_ISOLATED_LISTEN: [SocketAddr; 2] = [
    metaboot_proto::METADATA_IPV4_LISTEN,
    metaboot_proto::METADATA_IPV6_LISTEN,
];
/// Mode of `agent.socket`: the owner and its group (the proxies) may connect.
pub const AGENT_SOCKET_MODE: u32 = 0o660;

/// Flags of `all`; each overrides the same key of `--config`.
#[derive(Debug, Args, Default)]
pub struct AllArgs {
    /// The configuration file (TOML; see docs/server.md, "One process: all").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// File holding the shared secret (`shared_secret_file`).
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// Also serve the API over TCP; repeatable (`api.listen`).
    #[arg(long)]
    pub api_listen: Vec<SocketAddr>,
    /// `api.dhcp_domain` (default novalocal; empty for none).
    #[arg(long)]
    pub dhcp_domain: Option<String>,
    /// `api.vendor_data`: a JSON file.
    #[arg(long)]
    pub vendor_data: Option<PathBuf>,
    /// Ignored (answers come from the registry in memory); kept for older command lines.
    #[arg(long, hide = true)]
    pub api_cache_ttl: Option<u64>,
    /// `api.require_token`: require an IMDSv2-style session token on every request.
    #[arg(long, overrides_with = "no_require_token")]
    pub require_token: bool,
    /// Serve without session tokens, whatever `api.require_token` says (the flag wins, as
    /// every flag does over the file).
    #[arg(long, overrides_with = "require_token")]
    pub no_require_token: bool,
    /// Also serve the agent on this Unix socket (`agent.socket`).
    #[arg(long)]
    pub agent_socket: Option<PathBuf>,
    /// Ignored (lookups come from the registry in memory); kept for older command lines.
    #[arg(long, hide = true)]
    pub lookup_cache_ttl: Option<u64>,
    /// `proxy.router_port`.
    #[arg(long)]
    pub router_port: Option<u16>,
    /// `proxy.isolated_listen`: an address the DHCP-namespace proxies listen on; repeatable
    /// [default: 169.254.169.254:80 and [fe80::a9fe:a9fe]:80].
    #[arg(long)]
    pub isolated_listen: Vec<SocketAddr>,
    /// `proxy.rate_limit`: requests per guest per window (default: none).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// `proxy.rate_window`, seconds.
    #[arg(long)]
    pub rate_window: Option<u64>,
    /// `proxy.max_connections` per listener.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// `proxy.max_connections_per_guest`: connections one guest address may hold at once on a
    /// proxy listener; more are closed at once [default: 8].
    #[arg(long)]
    pub max_connections_per_guest: Option<usize>,
    /// `proxy.leases_dir`: where host networks' DHCP leases are read (libvirt's
    /// `<network>.conf` and `<bridge>.status`, or a dnsmasq `<bridge>.leases`)
    /// [default: /var/lib/libvirt/dnsmasq].
    #[arg(long)]
    pub leases_dir: Option<PathBuf>,
    /// `metrics.listen`.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// `threads`.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The settings in force: flag, else file, else default.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: String,
    pub shared_secret_file: PathBuf,
    pub api_listen: Vec<SocketAddr>,
    pub dhcp_domain: String,
    pub vendor_data: Option<PathBuf>,
    pub require_token: bool,
    pub agent_socket: Option<PathBuf>,
    pub router_listen: SocketAddr,
    /// Every isolated network's DHCP namespace gets a listener on each.
    pub isolated_listen: Vec<SocketAddr>,
    pub rate_limit: Option<(u32, Duration)>,
    pub max_connections: usize,
    pub max_connections_per_guest: usize,
    /// Where host networks' DHCP leases are read.
    pub leases_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub threads: usize,
}

impl Settings {
    pub fn resolve(
        db_flag: Option<&str>,
        args: &AllArgs,
        file: &ConfigFile,
    ) -> anyhow::Result<Self> {
        let shared_secret_file = args
            .shared_secret_file
            .clone()
            .or_else(|| file.shared_secret_file.clone())
            .context("no shared secret: set shared_secret_file in the config file or pass --shared-secret-file")?;
        let router_port = args
            .router_port
            .or(file.proxy.router_port)
            .unwrap_or(DEFAULT_ROUTER_PORT);
        let isolated_listen = if args.isolated_listen.is_empty() {
            file.proxy
                .isolated_listen
                .clone()
                .unwrap_or_else(|| DEFAULT_ISOLATED_LISTEN.to_vec())
        } else {
            args.isolated_listen.clone()
        };
        if isolated_listen.is_empty() {
            anyhow::bail!(
                "isolated_listen is an empty list: give at least one address, e.g. \"{}\"",
                metaboot_proto::METADATA_IPV4_LISTEN
            );
        }
        // Each list is bound in one namespace (a DHCP namespace's, the host's): a wildcard
        // beside an address it takes would fail as if another server held the address.
        let (api_listen, api_what) = if args.api_listen.is_empty() {
            (file.api.listen.clone().unwrap_or_default(), "api.listen")
        } else {
            (args.api_listen.clone(), "--api-listen")
        };
        let isolated_what = if args.isolated_listen.is_empty() {
            "proxy.isolated_listen"
        } else {
            "--isolated-listen"
        };
        for (what, addresses) in [(api_what, &api_listen), (isolated_what, &isolated_listen)] {
            crate::http::listen::check_distinct(what, addresses)
                .map_err(crate::admin::InputError)?;
        }
        let rate_window = args
            .rate_window
            .or(file.proxy.rate_window)
            .unwrap_or(DEFAULT_WINDOW.as_secs());
        let rate_limit = args.rate_limit.or(file.proxy.rate_limit);
        let max_connections_per_guest = args
            .max_connections_per_guest
            .or(file.proxy.max_connections_per_guest)
            .unwrap_or(crate::http::limits::MAX_CONNECTIONS_PER_GUEST);
        if max_connections_per_guest == 0 {
            anyhow::bail!("max_connections_per_guest must be at least 1");
        }
        let max_connections = args
            .max_connections
            .or(file.proxy.max_connections)
            .unwrap_or(crate::http::limits::MAX_CONNECTIONS);
        crate::http::limits::check_max_connections("max_connections", max_connections)
            .map_err(anyhow::Error::msg)?;
        if rate_limit == Some(0) || rate_window == 0 {
            anyhow::bail!(
                "rate_limit and rate_window must be at least 1 (leave rate_limit out for no limit)"
            );
        }
        let dhcp_domain = match (&args.dhcp_domain, &file.api.dhcp_domain) {
            (Some(flag), _) => {
                crate::store::validate::dhcp_domain("--dhcp-domain", flag)?;
                flag.clone()
            }
            (None, Some(in_file)) => {
                let setting = match &args.config {
                    Some(path) => format!("api.dhcp_domain (in {})", path.display()),
                    None => "api.dhcp_domain".to_owned(),
                };
                crate::store::validate::dhcp_domain(&setting, in_file)?;
                in_file.clone()
            }
            (None, None) => crate::api::DEFAULT_DHCP_DOMAIN.to_owned(),
        };
        Ok(Self {
            db: match db_flag.map(str::to_owned).or_else(|| file.db.clone()) {
                Some(db) => db,
                None => crate::store::default_db()?.to_owned(),
            },
            shared_secret_file,
            api_listen,
            dhcp_domain,
            vendor_data: args
                .vendor_data
                .clone()
                .or_else(|| file.api.vendor_data.clone()),
            require_token: if args.no_require_token {
                false
            } else {
                args.require_token || file.api.require_token.unwrap_or(false)
            },
            agent_socket: args
                .agent_socket
                .clone()
                .or_else(|| file.agent.socket.clone()),
            // Both families, as haproxy's `:::9697`; IPv4 alone on a kernel without IPv6.
            router_listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, router_port)),
            isolated_listen,
            rate_limit: rate_limit.map(|limit| (limit, Duration::from_secs(rate_window))),
            max_connections,
            max_connections_per_guest,
            leases_dir: args
                .leases_dir
                .clone()
                .or_else(|| file.proxy.leases_dir.clone())
                .unwrap_or_else(|| PathBuf::from(crate::leases::DEFAULT_LEASES_DIR)),
            metrics_listen: args.metrics_listen.or(file.metrics.listen),
            threads: args
                .threads
                .or(file.threads)
                .unwrap_or_else(crate::runtime::default_threads),
        })
    }
}

/// `metaboot-server all`.
pub fn serve(db_flag: Option<&str>, args: &AllArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    // It reads nothing: whatever it refuses is the flags' and the file's, and starting again
    // changes nothing (exit 2, the unit does not restart on it).
    let settings = Settings::resolve(db_flag, args, &file)
        .map_err(|err| crate::admin::InputError(format!("{err:#}")))?;
    let secret = crate::secret::read_secret(&settings.shared_secret_file)?;
    let vendor = match &settings.vendor_data {
        Some(path) => VendorDocs::load(path)?,
        None => VendorDocs::default(),
    };
    let store = crate::store::open(&settings.db).with_context(|| {
        format!(
            "failed to open the registry {}",
            crate::store::redacted(&settings.db)
        )
    })?;
    let model = Arc::new(ReadModel::load(store.as_ref()).with_context(|| {
        format!(
            "failed to load the registry {}",
            crate::store::redacted(&settings.db)
        )
    })?);
    let threads = settings.threads.max(1);
    // The API addresses and the agent socket are bound before anything else starts or logs: a
    // second `all` whose addresses are taken fails with one line.
    let mut api_tcp = Vec::with_capacity(settings.api_listen.len());
    for addr in &settings.api_listen {
        let listeners = crate::http::listen::tcp_listeners(*addr, threads)
            .map_err(|err| crate::http::listen_refusal::tcp(err, *addr))?;
        api_tcp.push((*addr, listeners));
    }
    // Kept until the process stops: the socket's lock keeps other servers off its path.
    let agent_socket = match &settings.agent_socket {
        Some(path) => Some(
            crate::http::bind_unix(path, AGENT_SOCKET_MODE)
                .map_err(|err| crate::http::listen_refusal::unix(err, path))?,
        ),
        None => None,
    };
    // Kept until the process stops: a second `all` over this registry in this network
    // namespace is refused here, before it serves a namespace the first one has not bound.
    let registry_lock = registry_lock::take(
        &registry_lock::runtime_dir(),
        &settings.db,
        &crate::store::redacted(&settings.db),
    )?;
    crate::runtime::run_service(async move {
        let workers = crate::runtime::Workers::start(threads)?;
        let rendering = Rendering {
            dhcp_domain: settings.dhcp_domain.clone(),
            vendor,
        };
        let api = Arc::new(
            Api::new(
                store.clone(),
                model.clone(),
                Identify::proxy(secret.clone()),
                rendering,
            )
            .require_token(settings.require_token),
        );
        let leases = Arc::new(HostLeases::new(settings.leases_dir.clone()));
        let agent = Arc::new(Agent::new(model.clone(), secret).with_leases(leases.clone()));
        let proxy_metrics = Metrics::new("proxy");
        let wake = Arc::new(tokio::sync::Notify::new());
        let listeners: Vec<Arc<dyn ChangeListener>> = vec![Arc::new(Wake(wake.clone()))];
        crate::follow::follow(store.clone(), model.clone(), listeners)
            .context("failed to start following the registry")?;
        crate::metrics::serve_metrics(
            settings.metrics_listen,
            vec![api.metrics(), agent.metrics(), proxy_metrics.clone()],
            Some(model.status()),
        )
        .await?;

        let limits = ServerLimits::default();
        for (addr, listeners) in api_tcp {
            tracing::info!(listen = %addr, "api listening");
            let what = format!("api {addr}");
            workers.serve_tcp(listeners, &what, limits, &ApiHandler::new(api.clone()));
        }
        let in_process = InProcessApi(api.clone());
        if let (Some(path), Some(bound)) = (&settings.agent_socket, &agent_socket) {
            tracing::info!(socket = %path.display(), "agent listening");
            let handler = AgentHandler::new(agent.clone(), in_process.clone());
            workers.serve_unix(&bound.listener, limits, &handler)?;
        }

        let proxy_limits = ServerLimits {
            max_connections: settings.max_connections,
            max_connections_per_peer: Some(settings.max_connections_per_guest),
            pipelined_at_once: 1,
            ..limits
        };
        let rate_limit = settings
            .rate_limit
            .map(|(limit, window)| Arc::new(RateLimit::new(limit, window)));
        let make_handler = {
            let metrics = proxy_metrics.clone();
            Arc::new(move |scope, forward| {
                ProxyHandler::new(scope, forward, rate_limit.clone(), metrics.clone())
            })
        };
        let served = Supervisor {
            registry: crate::store::redacted(&settings.db),
            model,
            workers,
            forward: InProcess {
                agent,
                api: in_process,
            },
            make_handler,
            limits: proxy_limits,
            router_listen: settings.router_listen,
            isolated_listen: settings.isolated_listen,
            wake,
            namespaces: Arc::new(NamedNetns),
            metrics: proxy_metrics.clone(),
        }
        .run(HostBridges::new(leases, RECONCILE_INTERVAL, proxy_metrics))
        .await;
        drop(agent_socket);
        drop(registry_lock);
        served
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &AllArgs, file: &str) -> anyhow::Result<Settings> {
        let file: ConfigFile = toml::from_str(file).unwrap();
        Settings::resolve(None, args, &file)
    }

    #[test]
    fn a_connection_limit_of_zero_or_past_the_ceiling_is_refused() {
        let secret = "shared_secret_file = \"/etc/metaboot/secret\"\n";
        for bad in ["0", "100000000000"] {
            let err = resolve(
                &AllArgs::default(),
                &format!("{secret}[proxy]\nmax_connections = {bad}\n"),
            )
            .map(|_| ())
            .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("max_connections must be from 1 to"),
                "{err}"
            );
        }
        let flag = AllArgs {
            max_connections: Some(0),
            ..AllArgs::default()
        };
        assert!(resolve(&flag, secret).is_err());
        assert_eq!(
            resolve(&AllArgs::default(), secret)
                .unwrap()
                .max_connections,
            4096
        );
    }

    /// `[::]:80` beside `169.254.169.254:80` in a DHCP namespace, `0.0.0.0:8775` beside
    /// `127.0.0.1:8775` on the host: refused (exit 2), naming where the list came from.
    #[test]
    fn a_wildcard_beside_an_address_it_takes_is_refused() {
        let secret = "shared_secret_file = \"/etc/metaboot/secret\"\n";
        let isolated =
            format!("{secret}[proxy]\nisolated_listen = [\"[::]:80\", \"169.254.169.254:80\"]\n");
        let api = format!("{secret}[api]\nlisten = [\"0.0.0.0:8775\", \"127.0.0.1:8775\"]\n");
        for (file, what) in [
            (
                isolated.as_str(),
                "proxy.isolated_listen [::]:80 already takes 169.254.169.254:80",
            ),
            (
                api.as_str(),
                "api.listen 0.0.0.0:8775 already takes 127.0.0.1:8775",
            ),
        ] {
            let err = resolve(&AllArgs::default(), file).map(|_| ()).unwrap_err();
            assert!(err.to_string().starts_with(what), "{err}");
            assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
        }
        let flags = AllArgs {
            api_listen: vec!["[::]:8775".parse().unwrap(), "[::1]:8775".parse().unwrap()],
            isolated_listen: vec!["169.254.169.254:80".parse().unwrap()],
            ..AllArgs::default()
        };
        let err = resolve(&flags, secret).map(|_| ()).unwrap_err();
        assert!(
            err.to_string().starts_with("--api-listen [::]:8775"),
            "{err}"
        );
        // Distinct addresses, and the defaults, are fine.
        assert!(resolve(&AllArgs::default(), secret).is_ok());
        let both = format!("{secret}[api]\nlisten = [\"127.0.0.1:8775\", \"[::1]:8775\"]\n");
        assert_eq!(
            resolve(&AllArgs::default(), &both)
                .unwrap()
                .api_listen
                .len(),
            2
        );
    }

    #[test]
    fn require_token_is_turned_off_by_its_flag_too() {
        let secret = "shared_secret_file = \"/etc/metaboot/secret\"\n";
        let on = format!("{secret}[api]\nrequire_token = true\n");
        assert!(resolve(&AllArgs::default(), &on).unwrap().require_token);
        let off = AllArgs {
            no_require_token: true,
            ..AllArgs::default()
        };
        assert!(!resolve(&off, &on).unwrap().require_token);
        let flag = AllArgs {
            require_token: true,
            ..AllArgs::default()
        };
        assert!(resolve(&flag, secret).unwrap().require_token);
    }

    #[test]
    fn isolated_listen_defaults_to_both_addresses_and_flags_win() {
        let secret = "shared_secret_file = \"/etc/metaboot/secret\"\n";
        let defaults = resolve(&AllArgs::default(), secret).unwrap();
        assert_eq!(
            defaults.isolated_listen,
            vec![
                "169.254.169.254:80".parse::<SocketAddr>().unwrap(),
                "[fe80::a9fe:a9fe]:80".parse::<SocketAddr>().unwrap()
            ]
        );
        assert_eq!(
            defaults.router_listen,
            "[::]:9697".parse::<SocketAddr>().unwrap()
        );

        let both =
            "[proxy]\nisolated_listen = [\"169.254.169.254:80\", \"[fe80::a9fe:a9fe]:80\"]\n";
        let from_file = resolve(&AllArgs::default(), &format!("{secret}{both}")).unwrap();
        assert_eq!(from_file.isolated_listen.len(), 2);

        let flag = AllArgs {
            isolated_listen: vec!["198.18.1.2:8080".parse().unwrap()],
            ..AllArgs::default()
        };
        let from_flag = resolve(&flag, &format!("{secret}{both}")).unwrap();
        assert_eq!(
            from_flag.isolated_listen,
            vec!["198.18.1.2:8080".parse::<SocketAddr>().unwrap()]
        );

        let empty = resolve(
            &AllArgs::default(),
            &format!("{secret}[proxy]\nisolated_listen = []\n"),
        )
        .unwrap_err();
        assert!(empty.to_string().contains("isolated_listen"), "{empty}");
    }
}
