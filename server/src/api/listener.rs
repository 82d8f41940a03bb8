//! `metaboot-server api`: the API on TCP (and optionally a Unix socket).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use http::{Request, Response, StatusCode};

use super::identify::Identify;
use super::metadata::{Api, MetadataRequest};
use super::rendering::{DEFAULT_DHCP_DOMAIN, Rendering};
use super::vendor::VendorDocs;
use crate::http::{Body, Handler, Peer, Rejection, Reply, RequestBody, ServerLimits};
use crate::model::ReadModel;

/// Default TCP address (nova's metadata port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8775";

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// TCP address to serve on; repeatable, or several separated by commas.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,
    /// Also serve on this Unix socket (agents on the same host can use `--api unix:PATH`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Mode of the Unix socket, octal.
    #[arg(long, default_value = "660", value_parser = crate::http::unix::parse_mode)]
    pub socket_mode: u32,
    /// File holding the secret shared with the agents (required unless --identify-by-source-ip).
    #[arg(long, required_unless_present = "identify_by_source_ip")]
    pub shared_secret_file: Option<PathBuf>,
    /// Identify instances by the TCP peer address instead of the agent's signed headers
    /// (only when guests reach the API directly, without proxy and agent).
    #[arg(long)]
    pub identify_by_source_ip: bool,
    /// Domain appended to host names (`<hostname>.<domain>`); empty for none.
    #[arg(long, default_value = DEFAULT_DHCP_DOMAIN)]
    pub dhcp_domain: String,
    /// A JSON file served as vendor_data.json and under "static" in vendor_data2.json.
    #[arg(long)]
    pub vendor_data: Option<PathBuf>,
    /// Ignored: instances are answered from the registry held in memory, kept current from
    /// its change log (accepted so older command lines keep working).
    #[arg(long, hide = true)]
    pub cache_ttl: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Require an IMDSv2-style session token (`PUT /latest/api/token`, then
    /// `X-metadata-token`) on every request; without one the guest gets 401.
    #[arg(long)]
    pub require_token: bool,
}

impl ApiArgs {
    /// The identification mode these flags ask for.
    pub fn identify(&self) -> anyhow::Result<Identify> {
        if self.identify_by_source_ip {
            return Ok(Identify::SourceIp);
        }
        let file = self
            .shared_secret_file
            .as_ref()
            .context("--shared-secret-file is required in proxy mode")?;
        Ok(Identify::proxy(crate::secret::read_secret(file)?))
    }

    /// The listener's limits: guests reach the API directly when it identifies them by their
    /// address, and then get the namespace proxy's caps per guest.
    pub fn limits(&self) -> ServerLimits {
        if self.identify_by_source_ip {
            ServerLimits::guest_facing()
        } else {
            ServerLimits::default()
        }
    }

    /// The rendering settings these flags ask for.
    pub fn rendering(&self) -> anyhow::Result<Rendering> {
        crate::store::validate::dhcp_domain("--dhcp-domain", &self.dhcp_domain)?;
        let vendor = match &self.vendor_data {
            Some(path) => VendorDocs::load(path)?,
            None => VendorDocs::default(),
        };
        Ok(Rendering {
            dhcp_domain: self.dhcp_domain.clone(),
            vendor,
        })
    }
}

/// Serves the API over HTTP: refuses a body that could not be read, then asks the API.
#[derive(Clone)]
pub struct ApiHandler {
    api: Arc<Api>,
}

impl ApiHandler {
    pub fn new(api: Arc<Api>) -> Self {
        Self { api }
    }
}

impl Handler for ApiHandler {
    async fn handle(&self, request: Request<RequestBody>, peer: Peer) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                self.api.metrics.request(err.status());
                self.api.metrics.reject(Rejection::BadBody);
                return Reply::refuse(err.status(), err.reason());
            }
        };
        let request = MetadataRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            peer: peer.ip(),
            body,
        };
        self.api.answer(&request).await
    }

    fn refused_head(&self, _: Peer, status: StatusCode, rejection: Rejection) {
        self.api.metrics.request(status);
        self.api.metrics.reject(rejection);
    }
}

/// `metaboot-server api`.
pub fn serve(db: &str, args: ApiArgs) -> anyhow::Result<()> {
    crate::http::listen::check_distinct("--listen", &args.listen)
        .map_err(crate::admin::InputError)?;
    let identify = args.identify()?;
    let rendering = args.rendering()?;
    let store = crate::store::open(db)
        .with_context(|| format!("failed to open the registry {}", crate::store::redacted(db)))?;
    let threads = args
        .threads
        .unwrap_or_else(crate::runtime::default_threads)
        .max(1);
    // Every address and the socket are bound before anything else starts or logs: a server
    // whose address is taken fails with one line.
    let mut tcp = Vec::with_capacity(args.listen.len());
    for addr in &args.listen {
        let listeners = crate::http::listen::tcp_listeners(*addr, threads)
            .map_err(|err| crate::http::listen_refusal::tcp(err, *addr))?;
        tcp.push((*addr, listeners));
    }
    // Kept until the process stops: the socket's lock keeps other servers off its path.
    let socket = match &args.socket {
        Some(path) => Some(
            crate::http::bind_unix(path, args.socket_mode)
                .map_err(|err| crate::http::listen_refusal::unix(err, path))?,
        ),
        None => None,
    };
    let model =
        Arc::new(ReadModel::load(store.as_ref()).with_context(|| {
            format!("failed to load the registry {}", crate::store::redacted(db))
        })?);
    crate::follow::follow(store.clone(), model.clone(), Vec::new())
        .context("failed to start following the registry")?;
    crate::runtime::run_service(async move {
        let api = Arc::new(
            Api::new(store, model.clone(), identify, rendering).require_token(args.require_token),
        );
        crate::metrics::serve_metrics(
            args.metrics_listen,
            vec![api.metrics()],
            Some(model.status()),
        )
        .await?;
        let limits = args.limits();
        let handler = ApiHandler::new(api);
        let workers = crate::runtime::Workers::start(threads)?;
        for (addr, listeners) in tcp {
            tracing::info!(listen = %addr, workers = workers.count(), "api listening");
            workers.serve_tcp(listeners, &format!("api {addr}"), limits, &handler);
        }
        if let (Some(path), Some(bound)) = (&args.socket, &socket) {
            tracing::info!(socket = %path.display(), workers = workers.count(), "api listening");
            workers.serve_unix(&bound.listener, limits, &handler)?;
        }
        std::future::pending::<()>().await;
        drop(socket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::http::h1::exchange::{MALFORMED_HEAD, answer_until_closed};

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        api: ApiArgs,
    }

    /// A head the connection refuses before the API sees it is in `/metrics`, as a request by
    /// its status and as a rejection by its reason.
    #[tokio::test]
    async fn a_refused_request_head_is_counted_as_a_request_and_a_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
        let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
        let rendering = Rendering::default();
        let api = Arc::new(Api::new(store, model, Identify::SourceIp, rendering));
        let handler = ApiHandler::new(api.clone());
        let peer = Peer::Tcp("198.18.0.10:40000".parse().unwrap());
        let limits = ServerLimits::guest_facing();
        let answer = answer_until_closed(handler, peer, limits, MALFORMED_HEAD).await;
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
        let metrics = api.metrics();
        assert_eq!(metrics.requests_with(StatusCode::BAD_REQUEST), 1);
        assert_eq!(metrics.rejections_for(Rejection::RequestHeadMalformed), 1);
    }

    #[test]
    fn guests_reaching_the_api_directly_get_the_guest_caps() {
        let direct = Command::parse_from(["api", "--identify-by-source-ip"]).api;
        assert_eq!(direct.limits(), ServerLimits::guest_facing());
        let chained = Command::parse_from(["api", "--shared-secret-file", "/s"]).api;
        assert_eq!(chained.limits(), ServerLimits::default());
    }

    /// `0.0.0.0:8775` beside `127.0.0.1:8775`: refused before anything is opened (exit 2),
    /// not stopped by an "address in use" that blames another server.
    #[test]
    fn a_wildcard_beside_an_address_it_takes_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("0.0.0.0:{port},127.0.0.1:{port}");
        let args = ["api", "--shared-secret-file", "/s", "--listen", &listen];
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.sqlite");
        let err = serve(db.to_str().unwrap(), Command::parse_from(args).api).unwrap_err();
        assert_eq!(
            crate::cli::exit_code(&err),
            crate::cli::EXIT_REFUSED,
            "{err:#}"
        );
        assert!(err.to_string().contains("already takes"), "{err:#}");
    }
}
