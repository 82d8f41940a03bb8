//! `metaboot-server agent`: the agent on a Unix socket, forwarding to the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use clap::Args;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{Agent, DEFAULT_LOOKUP_TTL};
use crate::http::limits::UPSTREAM_TIMEOUT;
use crate::http::{Answer, Body, Handler, Peer, Reply, ServerLimits, Upstream, read_body};
use crate::watch::ChangeListener;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The Unix socket the namespace proxies connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// Mode of the socket, octal (the proxies must be able to write to it).
    #[arg(long, default_value = "660", value_parser = crate::cli::parse_mode)]
    pub socket_mode: u32,
    /// The metadata API: http://HOST:PORT or unix:/PATH.
    #[arg(long, default_value = "http://127.0.0.1:8775")]
    pub api: String,
    /// File holding the secret shared with the API.
    #[arg(long)]
    pub shared_secret_file: PathBuf,
    /// Seconds a port lookup is cached (0 disables; registry changes drop it at once).
    #[arg(long, default_value_t = DEFAULT_LOOKUP_TTL.as_secs())]
    pub cache_ttl: u64,
    /// Seconds the API has to answer before the guest gets 504.
    #[arg(long, default_value_t = UPSTREAM_TIMEOUT.as_secs_f64())]
    pub api_timeout: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Serves the agent over HTTP: resolve, sign, ask the API, relay.
#[derive(Clone)]
pub struct AgentHandler {
    agent: Arc<Agent>,
    api: Upstream,
    api_timeout: Duration,
    limits: ServerLimits,
}

impl AgentHandler {
    pub fn new(
        agent: Arc<Agent>,
        api: Upstream,
        api_timeout: Duration,
        limits: ServerLimits,
    ) -> Self {
        Self {
            agent,
            api,
            api_timeout,
            limits,
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Result<Response<Body>, Answer> {
        let (parts, body) = request.into_parts();
        let body = read_body(
            &parts.headers,
            body,
            self.limits.max_body_bytes,
            self.limits.body_read_timeout,
        )
        .await
        .map_err(|err| Answer::refused(err.status(), err.reason().to_owned(), "bad_body"))?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut use_cache = true;
        loop {
            let resolved = self.agent.resolve(&parts.headers, use_cache).await?;
            let mut upstream = Request::new(Full::new(body.clone()));
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = self.api.uri(path).map_err(|err| {
                Answer::refused(StatusCode::BAD_REQUEST, err.to_string(), "bad_path")
            })?;
            *upstream.headers_mut() = self.agent.signed_headers(&resolved);
            let started = Instant::now();
            let answered = self.api.send(upstream, self.api_timeout).await;
            self.agent.metrics.upstream_latency(started.elapsed());
            match answered {
                Ok(response) if response.status() == StatusCode::NOT_FOUND && resolved.cached => {
                    // The cached owner may be stale: ask once more with a fresh lookup.
                    self.agent.forget(&resolved);
                    use_cache = false;
                }
                Ok(response) => return Ok(Reply::relay(response)),
                Err(err) => {
                    tracing::warn!(api = self.api.describe(), error = %err, "metadata API call failed");
                    return Err(Answer::refused(err.status(), err.to_string(), err.label()));
                }
            }
        }
    }
}

impl Handler for AgentHandler {
    async fn handle(&self, request: Request<Incoming>, _: Peer) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = match self.answer(request).await {
            Ok(response) => response,
            Err(refusal) => {
                if let Some(label) = refusal.rejection() {
                    self.agent.metrics.reject(label);
                }
                tracing::info!(status = refusal.status.as_u16(), reason = refusal.reason(), %method, %path, "refused");
                refusal.into_response()
            }
        };
        self.agent.metrics.request(response.status());
        response
    }
}

/// `metaboot-server agent`.
pub fn serve(db: &str, args: AgentArgs) -> anyhow::Result<()> {
    let secret = crate::secret::read_secret(&args.shared_secret_file)?;
    let api = Upstream::parse(&args.api).map_err(|err| anyhow::anyhow!("--api {err}"))?;
    if !(args.api_timeout > 0.0 && args.api_timeout.is_finite()) {
        anyhow::bail!("--api-timeout must be a positive number of seconds");
    }
    let store =
        crate::store::open(db).with_context(|| format!("failed to open the registry {db}"))?;
    let threads = args.threads.unwrap_or_else(crate::runtime::default_threads);
    crate::runtime::run_service(threads, async move {
        let agent = Arc::new(Agent::new(
            store.clone(),
            secret,
            Duration::from_secs(args.cache_ttl),
        ));
        let cache: Arc<dyn ChangeListener> = agent.cache();
        tokio::spawn(crate::watch::follow(store, vec![cache]));
        crate::metrics::serve_metrics(args.metrics_listen, vec![agent.metrics()]).await?;
        let listener = crate::http::bind_unix(&args.socket, args.socket_mode)
            .with_context(|| format!("failed to listen on {}", args.socket.display()))?;
        tracing::info!(socket = %args.socket.display(), api = api.describe(), "agent listening");
        let handler = AgentHandler::new(
            agent,
            api,
            Duration::from_secs_f64(args.api_timeout),
            ServerLimits::default(),
        );
        crate::http::serve(listener, ServerLimits::default(), handler).await;
        Ok(())
    })
}
