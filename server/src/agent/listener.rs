//! `metaboot-server agent`: the agent on a Unix socket, forwarding to the API.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::names;
use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::relay::Agent;
use crate::http::limits::UPSTREAM_TIMEOUT;
use crate::http::{
    Answer, Body, Handler, Peer, Rejection, Reply, RequestBody, ServerLimits, Upstream,
};
use crate::model::ReadModel;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The Unix socket the namespace proxies connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// Mode of the socket, octal (the proxies must be able to write to it).
    #[arg(long, default_value = "660", value_parser = crate::http::unix::parse_mode)]
    pub socket_mode: u32,
    /// The metadata API: http://HOST:PORT or unix:/PATH.
    #[arg(long, default_value = "http://127.0.0.1:8775")]
    pub api: String,
    /// Whether the guests' reads share one pipelined connection to the API per worker thread
    /// (`on`), or each goes out alone on a pooled keep-alive connection (`off`: for an API
    /// server that mishandles pipelined requests).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub api_pipelining: String,
    /// File holding the secret shared with the API.
    #[arg(long)]
    pub shared_secret_file: PathBuf,
    /// Ignored: lookups are answered from the registry held in memory, kept current from
    /// its change log (accepted so older command lines keep working).
    #[arg(long, hide = true)]
    pub cache_ttl: Option<u64>,
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

/// Where the agent sends its signed questions: the API over HTTP ([`HttpApi`], the agent as its
/// own process), or the API in the same process (`all`'s in-process hop, in `all/chain.rs`).
pub trait ApiTarget: Clone + Send + Sync + 'static {
    /// Puts one question to the API.
    fn ask(
        &self,
        agent: &Agent,
        question: Question<'_>,
    ) -> impl Future<Output = Result<Response<Body>, Answer>> + Send;

    /// The agent's whole job for one request: resolve the guest from the proxy's headers, ask
    /// the API with the signed headers, relay the answer (see [`Agent::relay`]).
    fn relay(
        &self,
        agent: &Agent,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> impl Future<Output = Response<Body>> + Send {
        let ask_api = move |signed: HeaderMap| {
            let question = Question {
                method: method.clone(),
                path,
                signed,
                body: body.clone(),
            };
            self.ask(agent, question)
        };
        agent.relay(method, path, headers, ask_api)
    }
}

/// What the agent asks the API for one guest request.
pub struct Question<'a> {
    /// The guest's method.
    pub method: Method,
    /// The guest's path, with its query.
    pub path: &'a str,
    /// The signed headers, instead of anything the guest sent.
    pub signed: HeaderMap,
    /// The guest's body (a password POST).
    pub body: Bytes,
}

/// The API in another process, over pooled HTTP (TCP or a Unix socket).
#[derive(Clone)]
pub struct HttpApi {
    pub upstream: Upstream,
    /// How long the API has to answer before the guest gets 504.
    pub timeout: Duration,
}

impl ApiTarget for HttpApi {
    async fn ask(&self, agent: &Agent, question: Question<'_>) -> Result<Response<Body>, Answer> {
        let mut request = Request::new(Full::new(question.body));
        *request.method_mut() = question.method;
        *request.uri_mut() = self.upstream.uri(question.path).map_err(|err| {
            Answer::refused(StatusCode::BAD_REQUEST, err.to_string(), Rejection::BadPath)
        })?;
        *request.headers_mut() = question.signed;
        let started = Instant::now();
        let answered = self.upstream.send(request, self.timeout).await;
        agent.metrics.upstream_latency(started.elapsed());
        answered.map(relay_keeping_mark).map_err(|err| {
            // The guest's own fault is logged with the other refusals (`Agent::refused`).
            if !err.is_the_clients() {
                tracing::warn!(api = self.upstream.describe(), error = %err, "metadata API call failed");
            }
            Answer::refused(err.status(), err.client_text(), err.rejection())
        })
    }
}

/// The API's answer as relayed (status, content type, body), plus its mark that it does not
/// know the instance, which `Agent::relay` reads and then strips.
fn relay_keeping_mark(response: Response<Bytes>) -> Response<Body> {
    let mark = response.headers().get(names::INSTANCE_UNKNOWN).cloned();
    let mut relayed = Reply::relay(response);
    if let Some(mark) = mark {
        relayed.headers_mut().insert(names::INSTANCE_UNKNOWN, mark);
    }
    relayed
}

/// Serves the agent over HTTP: resolve, sign, ask the API, relay.
#[derive(Clone)]
pub struct AgentHandler<A: ApiTarget> {
    agent: Arc<Agent>,
    api: A,
}

impl<A: ApiTarget> AgentHandler<A> {
    pub fn new(agent: Arc<Agent>, api: A) -> Self {
        Self { agent, api }
    }
}

impl<A: ApiTarget> Handler for AgentHandler<A> {
    async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                let refusal =
                    Answer::refused(err.status(), err.reason().to_owned(), Rejection::BadBody);
                let response = self.agent.refused(refusal, &parts.method, path);
                self.agent.metrics.request(response.status());
                return response;
            }
        };
        self.api
            .relay(&self.agent, &parts.method, path, &parts.headers, &body)
            .await
    }

    fn refused_head(&self, _: Peer, status: StatusCode, rejection: Rejection) {
        self.agent.metrics.request(status);
        self.agent.metrics.reject(rejection);
    }
}

/// `metaboot-server agent`.
pub fn serve(db: &str, args: AgentArgs) -> anyhow::Result<()> {
    let secret = crate::secret::read_secret(&args.shared_secret_file)?;
    let mut api = Upstream::parse(&args.api).map_err(|err| anyhow::anyhow!("--api {err}"))?;
    if args.api_pipelining == "off" {
        api = api.without_pipelining();
    }
    // A value past what a Duration holds (e.g. 1e30) would panic in from_secs_f64 below.
    if !(args.api_timeout > 0.0 && Duration::try_from_secs_f64(args.api_timeout).is_ok()) {
        anyhow::bail!("--api-timeout must be a positive number of seconds");
    }
    let store = crate::store::open(db)
        .with_context(|| format!("failed to open the registry {}", crate::store::redacted(db)))?;
    let threads = args.threads.unwrap_or_else(crate::runtime::default_threads);
    // Bound before anything else starts or logs: a server whose socket is taken fails with
    // one line. Kept until the process stops: its lock keeps other servers off the path.
    let socket = crate::http::bind_unix(&args.socket, args.socket_mode)
        .map_err(|err| crate::http::listen_refusal::unix(err, &args.socket))?;
    let model =
        Arc::new(ReadModel::load(store.as_ref()).with_context(|| {
            format!("failed to load the registry {}", crate::store::redacted(db))
        })?);
    crate::follow::follow(store, model.clone(), Vec::new())
        .context("failed to start following the registry")?;
    crate::runtime::run_service(async move {
        let agent = Arc::new(Agent::new(model.clone(), secret));
        crate::metrics::serve_metrics(
            args.metrics_listen,
            vec![agent.metrics()],
            Some(model.status()),
        )
        .await?;
        tracing::info!(socket = %args.socket.display(), api = api.describe(), workers = threads, "agent listening");
        let api = HttpApi {
            upstream: api,
            timeout: Duration::from_secs_f64(args.api_timeout),
        };
        let limits = ServerLimits::default();
        let handler = AgentHandler::new(agent, api);
        let workers = crate::runtime::Workers::start(threads)?;
        workers.serve_unix(&socket.listener, limits, &handler)?;
        std::future::pending::<()>().await;
        drop(socket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::exchange::{MALFORMED_HEAD, answer_until_closed};

    /// A head the connection refuses before the agent sees it is in `/metrics`, as a request
    /// by its status and as a rejection by its reason.
    #[tokio::test]
    async fn a_refused_request_head_is_counted_as_a_request_and_a_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
        let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
        let agent = Arc::new(Agent::new(model, Arc::from(&b"secret"[..])));
        let api = HttpApi {
            upstream: Upstream::parse("http://127.0.0.1:1").unwrap(),
            timeout: UPSTREAM_TIMEOUT,
        };
        let handler = AgentHandler::new(agent.clone(), api);
        let answer =
            answer_until_closed(handler, Peer::Unix, ServerLimits::default(), MALFORMED_HEAD).await;
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
        let metrics = &agent.metrics;
        assert_eq!(metrics.requests_with(StatusCode::BAD_REQUEST), 1);
        assert_eq!(metrics.rejections_for(Rejection::RequestHeadMalformed), 1);
    }

    #[test]
    fn an_api_timeout_no_duration_holds_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
        std::fs::set_permissions(&secret, private).unwrap();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e30] {
            let args = AgentArgs {
                socket: dir.path().join("agent.sock"),
                socket_mode: 0o660,
                api: "http://127.0.0.1:8775".into(),
                api_pipelining: "on".into(),
                shared_secret_file: secret.clone(),
                cache_ttl: None,
                api_timeout: bad,
                metrics_listen: None,
                threads: Some(1),
            };
            let db = dir.path().join("registry.sqlite");
            let err = serve(db.to_str().unwrap(), args).unwrap_err();
            assert!(err.to_string().contains("--api-timeout"), "{bad}: {err}");
        }
    }
}
