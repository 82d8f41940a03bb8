//! `metaboot-server ns-proxy`: one listener (optionally inside a named namespace) forwarding to
//! the agent's Unix socket over pooled connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{ArgGroup, Args};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use metaboot_proto::ROUTER_PROXY_PORT;

use super::addresses::{self, ADDRESS_WAIT_LIMIT, Bind as _, InNamespace};
use super::namespace::Identity;
use super::rate_limit::{DEFAULT_WINDOW, RateLimit};
use super::sanitize::{ProxyScope, sanitize};
use crate::http::limits::{
    BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_GUEST,
    PROXY_AGENT_TIMEOUT, WRITE_TIMEOUT,
};
use crate::http::{
    Answer, Body, Handler, Peer, Refusal, Rejection, Reply, RequestBody, ServerLimits, Upstream,
};
use crate::metrics::Metrics;

/// Where a guest's sanitised request goes next.
pub trait Forward: Clone + Send + Sync + 'static {
    fn forward(&self, request: Request<Full<Bytes>>)
    -> impl Future<Output = Response<Body>> + Send;
}

/// Forwarding to the agent's Unix socket (the three-process chain).
#[derive(Clone)]
pub struct ToAgent {
    agent: Upstream,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl ToAgent {
    pub fn new(agent: Upstream, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            agent,
            timeout,
            metrics,
        }
    }
}

impl Forward for ToAgent {
    async fn forward(&self, mut request: Request<Full<Bytes>>) -> Response<Body> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        match self.agent.uri(path) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(err) => {
                self.metrics.reject(Rejection::BadPath);
                return Reply::refuse(StatusCode::BAD_REQUEST, &err.to_string());
            }
        }
        let started = Instant::now();
        let answered = self.agent.send(request, self.timeout).await;
        self.metrics.upstream_latency(started.elapsed());
        match answered {
            Ok(response) => Reply::relay(response),
            Err(err) => {
                if err.is_the_clients() {
                    tracing::info!(status = err.status().as_u16(), rejection = %err.rejection(), reason = %err, "refused");
                } else {
                    tracing::warn!(agent = self.agent.describe(), error = %err, "agent call failed");
                }
                self.metrics.reject(err.rejection());
                Answer::refused(err.status(), err.client_text(), err.rejection()).into_response()
            }
        }
    }
}

/// Serves guests: rate limit, bounded body, sanitised headers, then forward.
#[derive(Clone)]
pub struct ProxyHandler<F: Forward> {
    scope: Arc<ProxyScope>,
    /// The router or network header, built once.
    scope_header: Arc<(HeaderName, HeaderValue)>,
    forward: F,
    rate_limit: Option<Arc<RateLimit>>,
    metrics: Arc<Metrics>,
}

impl<F: Forward> ProxyHandler<F> {
    pub fn new(
        scope: ProxyScope,
        forward: F,
        rate_limit: Option<Arc<RateLimit>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            scope_header: Arc::new(scope.header()),
            scope: Arc::new(scope),
            forward,
            rate_limit,
            metrics,
        }
    }

    fn refuse(&self, status: StatusCode, reason: &str, rejection: Rejection) -> Response<Body> {
        self.metrics.reject(rejection);
        tracing::info!(status = status.as_u16(), %rejection, reason, scope = ?self.scope, "refused");
        Reply::refuse(status, reason)
    }

    async fn answer(&self, request: Request<RequestBody>, peer: Peer) -> Response<Body> {
        let Some(guest) = peer.ip() else {
            return self.refuse(
                StatusCode::BAD_REQUEST,
                "the proxy serves TCP clients only",
                Rejection::NoAddress,
            );
        };
        if let Some(limit) = &self.rate_limit
            && !limit.allow(guest)
        {
            return self.refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many metadata requests: slow down.",
                Rejection::RateLimited,
            );
        }
        let (mut parts, body) = request.into_parts();
        // Before the guest's headers are replaced: a token PUT relayed by a proxy inside the
        // guest (it adds X-Forwarded-For) is an SSRF and gets no token.
        if crate::api::token::is_forwarded_token_request(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
        ) {
            return self.refuse(
                StatusCode::FORBIDDEN,
                crate::api::token::FORWARDED_TOKEN_REFUSAL,
                Rejection::TokenForwarded,
            );
        }
        let body = match body {
            Ok(body) => body,
            Err(err) => return self.refuse(err.status(), err.reason(), Rejection::BadBody),
        };
        sanitize(&mut parts.headers, guest, &self.scope_header);
        let mut upstream = Request::new(Full::new(body));
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = parts.uri;
        *upstream.headers_mut() = parts.headers;
        self.forward.forward(upstream).await
    }
}

impl<F: Forward> Handler for ProxyHandler<F> {
    /// `sanitize` adds `X-Forwarded-For` and the scope header, and the upstream client sets
    /// `Host` (`HeaderMap::insert` wants a free slot even when it replaces a value).
    const ADDED_HEADERS: usize = 3;

    async fn handle(&self, request: Request<RequestBody>, peer: Peer) -> Response<Body> {
        let response = self.answer(request, peer).await;
        self.metrics.request(response.status());
        response
    }

    fn refused_connection(&self, _: Peer, refusal: Refusal) {
        self.metrics.reject(refusal.rejection());
    }

    fn refused_head(&self, _: Peer, status: StatusCode, rejection: Rejection) {
        self.metrics.request(status);
        self.metrics.reject(rejection);
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["router_id", "network_id"])))]
pub struct ProxyArgs {
    /// The agent's Unix socket.
    #[arg(long)]
    pub socket: PathBuf,
    /// Address to take guests' requests on; repeatable, or several separated by commas (a
    /// router namespace: [::]:9697, both families, behind the iptables and ip6tables
    /// REDIRECT; a DHCP namespace: 169.254.169.254:80 and, with an IPv6 subnet,
    /// [fe80::a9fe:a9fe]:80, bound on the interface that holds it).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, ROUTER_PROXY_PORT))]
    )]
    pub listen: Vec<SocketAddr>,
    /// Serve a router namespace: guests are searched on this router's networks.
    #[arg(long)]
    pub router_id: Option<String>,
    /// Serve a DHCP namespace: guests are searched on this network.
    #[arg(long)]
    pub network_id: Option<String>,
    /// Bind the listener inside this named network namespace (/run/netns/NAME).
    #[arg(long)]
    pub netns: Option<String>,
    /// Most requests per guest address per --rate-window; past it, 429 (default: no limit).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Seconds of the rate limit window.
    #[arg(long, default_value_t = DEFAULT_WINDOW.as_secs())]
    pub rate_window: u64,
    /// Most guest connections at once.
    #[arg(long, default_value_t = MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most connections one guest address may hold at once; more are closed at once.
    #[arg(long, default_value_t = MAX_CONNECTIONS_PER_GUEST)]
    pub max_connections_per_guest: usize,
    /// Seconds the agent has to answer before the guest gets 504 (longer than the agent's
    /// `--api-timeout`, so that the agent's own 504 comes first).
    #[arg(long, default_value_t = PROXY_AGENT_TIMEOUT.as_secs_f64())]
    pub agent_timeout: f64,
    /// Seconds a guest has to send a request head (also between keep-alive requests).
    #[arg(long, default_value_t = HEADER_READ_TIMEOUT.as_secs_f64())]
    pub header_timeout: f64,
    /// Seconds a guest has to send a request body once its head arrived.
    #[arg(long, default_value_t = BODY_READ_TIMEOUT.as_secs_f64())]
    pub body_timeout: f64,
    /// Seconds a guest has to take an answer; one that stops reading is disconnected.
    #[arg(long, default_value_t = WRITE_TIMEOUT.as_secs_f64())]
    pub write_timeout: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics (in this process's namespace).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

impl ProxyArgs {
    pub fn scope(&self) -> ProxyScope {
        match (&self.router_id, &self.network_id) {
            (Some(router), _) => ProxyScope::Router(router.clone()),
            (None, Some(network)) => ProxyScope::Network(network.clone()),
            // clap's group makes one of them required.
            (None, None) => ProxyScope::Network(String::new()),
        }
    }
}

/// `metaboot-server ns-proxy`.
pub fn serve(args: ProxyArgs) -> anyhow::Result<()> {
    for (flag, seconds) in [
        ("--agent-timeout", args.agent_timeout),
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
        ("--write-timeout", args.write_timeout),
    ] {
        if !(seconds > 0.0 && Duration::try_from_secs_f64(seconds).is_ok()) {
            return Err(refused(format!(
                "{flag} must be a positive number of seconds"
            )));
        }
    }
    if args.rate_limit == Some(0) || args.rate_window == 0 {
        return Err(refused(
            "--rate-limit and --rate-window must be at least 1".to_owned(),
        ));
    }
    crate::http::limits::check_max_connections("--max-connections", args.max_connections)
        .map_err(refused)?;
    if args.max_connections_per_guest == 0 {
        return Err(refused(
            "--max-connections-per-guest must be at least 1".to_owned(),
        ));
    }
    let flag = if args.router_id.is_some() {
        "--router-id"
    } else {
        "--network-id"
    };
    args.scope().check(flag).map_err(refused)?;
    // What the name named before the bind: a namespace made again meanwhile is bound anew.
    let identity = match args.netns.as_deref().map(Identity::of).transpose() {
        Ok(identity) => identity,
        // A name that cannot be one (`a/b`, empty): refused, as a flag's bad value.
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(refused(format!("--netns: {err}")));
        }
        Err(err) => return Err(err).context("cannot read the network namespace's name"),
    };
    let first = bind(args.netns.as_deref(), &args.listen)?;
    // One proxy per namespace: a single thread keeps it small.
    crate::runtime::run_service(async move {
        let metrics = Metrics::new("proxy");
        crate::metrics::serve_metrics(args.metrics_listen, vec![metrics.clone()], None).await?;
        let forward = ToAgent::new(
            Upstream::unix(args.socket.clone()),
            Duration::from_secs_f64(args.agent_timeout),
            metrics.clone(),
        );
        let limits = ServerLimits {
            max_connections: args.max_connections,
            max_connections_per_peer: Some(args.max_connections_per_guest),
            header_read_timeout: Duration::from_secs_f64(args.header_timeout),
            body_read_timeout: Duration::from_secs_f64(args.body_timeout),
            write_timeout: Duration::from_secs_f64(args.write_timeout),
            ..ServerLimits::guest_facing()
        };
        let rate_limit = args
            .rate_limit
            .map(|limit| Arc::new(RateLimit::new(limit, Duration::from_secs(args.rate_window))));
        let scope = args.scope();
        let handler = ProxyHandler::new(scope.clone(), forward, rate_limit, metrics);
        let netns = args.netns.as_deref();
        // Each address with a gate of its own, as `all` serves a DHCP namespace's two.
        let serve = |listener: std::net::TcpListener, bound: SocketAddr| {
            let listener = crate::http::TcpAcceptor::new(listener)?;
            tracing::info!(listen = %bound, netns = netns.unwrap_or("-"), ?scope, agent = %args.socket.display(), "proxy listening");
            Ok(tokio::spawn(crate::http::serve(
                listener,
                limits,
                handler.clone(),
            )))
        };
        addresses::serve_each(netns, identity, &args.listen, first, InNamespace, serve).await
    })
}

/// One listener per address of `--listen`, inside `netns` when given, in order; `None` for an
/// address no interface holds yet (said in the log: it is bound once it is, within
/// [`ADDRESS_WAIT_LIMIT`], the others are served meanwhile). An address given twice, or beside a wildcard that takes it
/// (`[::]:80` and `169.254.169.254:80`), is refused: its bind would fail as if another server
/// held it. Any other failure (the namespace missing, another server on the
/// address) stops the proxy.
pub fn bind(
    netns: Option<&str>,
    addresses: &[SocketAddr],
) -> anyhow::Result<Vec<Option<std::net::TcpListener>>> {
    crate::http::listen::check_distinct("--listen", addresses).map_err(refused)?;
    let mut bound = Vec::with_capacity(addresses.len());
    for addr in addresses {
        let within = netns.map_or(String::new(), |netns| format!(" in namespace {netns}"));
        match InNamespace.bind(netns, *addr) {
            Ok(listener) => bound.push(Some(listener)),
            Err(err) if addresses::is_not_held_yet(&err) => {
                tracing::warn!(listen = %addr, netns = netns.unwrap_or("-"), error = %err, "cannot listen on {addr}{within} yet: trying again, less and less often, for at most {ADDRESS_WAIT_LIMIT:?}");
                bound.push(None);
            }
            Err(err) => {
                return Err(
                    anyhow::Error::new(err).context(format!("failed to listen on {addr}{within}"))
                );
            }
        }
    }
    Ok(bound)
}

/// A flag's value refused: the proxy exits 2 (`cli::EXIT_REFUSED`), and its unit does not
/// restart it.
fn refused(message: String) -> anyhow::Error {
    crate::admin::InputError(message).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::exchange::{MALFORMED_HEAD, answer_until_closed};

    /// A router proxy's flags, each valid.
    fn valid_args() -> ProxyArgs {
        ProxyArgs {
            socket: PathBuf::from("/nonexistent/agent.sock"),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            router_id: Some("r1".into()),
            network_id: None,
            netns: None,
            rate_limit: None,
            rate_window: 10,
            max_connections: 16,
            max_connections_per_guest: 8,
            agent_timeout: 1.0,
            header_timeout: 1.0,
            body_timeout: 1.0,
            write_timeout: 1.0,
            metrics_listen: None,
        }
    }

    #[test]
    fn a_netns_that_cannot_be_a_name_is_refused() {
        for bad in ["a/b", "", ".."] {
            let args = ProxyArgs {
                netns: Some(bad.to_owned()),
                ..valid_args()
            };
            let err = serve(args).unwrap_err();
            assert!(err.to_string().starts_with("--netns: "), "{bad:?}: {err}");
            assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
        }
    }

    /// An id that is empty or no header value can carry would have the agent answer every
    /// guest 400: refused at start (exit 2), naming the flag.
    #[test]
    fn a_router_or_network_id_the_proxy_cannot_pass_on_is_refused() {
        for bad in ["", " ", "r\n1", "r\u{7f}1", "r\u{e9}seau"] {
            for (flag, router) in [("--router-id", true), ("--network-id", false)] {
                // Refused before the bind: were the id let through, this list would be
                // refused instead, naming --listen, rather than the proxy serve for good.
                let twice: SocketAddr = "127.0.0.1:1".parse().unwrap();
                let args = ProxyArgs {
                    router_id: router.then(|| bad.to_owned()),
                    network_id: (!router).then(|| bad.to_owned()),
                    listen: vec![twice, twice],
                    ..valid_args()
                };
                let err = serve(args).unwrap_err();
                assert!(err.to_string().starts_with(flag), "{bad:?}: {err}");
                assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
            }
        }
    }

    #[test]
    fn timeouts_that_are_not_a_positive_duration_are_refused() {
        for flag in [
            "--agent-timeout",
            "--header-timeout",
            "--body-timeout",
            "--write-timeout",
        ] {
            for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e30] {
                let mut args = valid_args();
                match flag {
                    "--agent-timeout" => args.agent_timeout = bad,
                    "--header-timeout" => args.header_timeout = bad,
                    "--body-timeout" => args.body_timeout = bad,
                    _ => args.write_timeout = bad,
                }
                let err = serve(args).unwrap_err();
                assert!(err.to_string().contains(flag), "{flag} {bad}: {err}");
                // Refused input: its unit does not restart it (RestartPreventExitStatus=2).
                assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
            }
        }
    }

    /// The ns-proxy's `--listen` as the command line gives it.
    fn listen_of(flags: &[&str]) -> Vec<SocketAddr> {
        use clap::Parser as _;
        let mut argv = vec!["metaboot-server", "ns-proxy", "--socket", "/run/a.sock"];
        argv.extend(["--network-id", "n1"]);
        argv.extend(flags);
        match crate::cli::Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(crate::cli::Command::NsProxy(args)) => args.listen,
            other => panic!("{flags:?}: {other:?}"),
        }
    }

    /// A DHCP namespace of a network with an IPv6 subnet is served on both metadata addresses,
    /// as `all` serves it (and Neutron's haproxy binds both).
    #[test]
    fn the_proxy_listens_on_every_address_given() {
        let both = vec![
            metaboot_proto::METADATA_IPV4_LISTEN,
            metaboot_proto::METADATA_IPV6_LISTEN,
        ];
        let repeated = [
            "--listen",
            "169.254.169.254:80",
            "--listen",
            "[fe80::a9fe:a9fe]:80",
        ];
        assert_eq!(listen_of(&repeated), both);
        assert_eq!(
            listen_of(&["--listen", "169.254.169.254:80,[fe80::a9fe:a9fe]:80"]),
            both
        );
        // None given: a router namespace's `[::]:9697`, both families.
        assert_eq!(
            listen_of(&[]),
            [SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                ROUTER_PROXY_PORT
            ))]
        );

        let addresses: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
        let bound = bind(None, &addresses).unwrap();
        let bound: Vec<SocketAddr> = bound
            .iter()
            .map(|listener| listener.as_ref().unwrap().local_addr().unwrap())
            .collect();
        let ips: Vec<_> = bound.iter().map(SocketAddr::ip).collect();
        assert_eq!(ips, [addresses[0].ip(), addresses[1].ip()]);
        for addr in &bound {
            assert_ne!(addr.port(), 0, "the port as bound");
        }
        let twice = [addresses[0], addresses[0]];
        let err = bind(None, &twice).unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
        let err = err.to_string();
        assert!(err.contains("given twice"), "{err}");
    }

    /// `[::]` is both families here: beside `169.254.169.254` of its port it is refused up
    /// front (exit 2), not stopped by an "address in use" that blames another server.
    #[test]
    fn a_wildcard_beside_an_address_it_takes_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addresses = [
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from(([127, 0, 0, 1], port)),
        ];
        let err = bind(None, &addresses).map(|_| ()).unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_REFUSED);
        let err = err.to_string();
        assert!(err.contains("already takes 127.0.0.1"), "{err}");
        assert!(!err.contains("another server"), "{err}");
    }

    /// `fe80::a9fe:a9fe` before the DHCP port holds it: the proxy starts, serving the others.
    #[test]
    fn an_address_no_interface_holds_yet_does_not_stop_the_others() {
        let served: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let addresses = [served, metaboot_proto::METADATA_IPV6_LISTEN];
        // fe80::a9fe:a9fe is on no interface of the namespace the tests run in.
        let bound = bind(None, &addresses).unwrap();
        assert_eq!(bound.len(), 2);
        let first = bound[0].as_ref().unwrap().local_addr().unwrap();
        assert_eq!(first.ip(), served.ip());
        assert!(bound[1].is_none(), "bound once an interface holds it");
        // Another failure still stops it: the address held by another server.
        let held = crate::http::listen::tcp_listener(served).unwrap();
        let err = bind(None, &[held.local_addr().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("another server"), "{err:#}");
    }

    /// Forwards nothing: the requests of these tests are refused before.
    #[derive(Clone)]
    struct Nowhere;

    impl Forward for Nowhere {
        async fn forward(&self, _: Request<Full<Bytes>>) -> Response<Body> {
            Reply::refuse(StatusCode::BAD_GATEWAY, "this test forwards nothing")
        }
    }

    /// A guest's head the connection refuses before the proxy sees it is in `/metrics`, as a
    /// request by its status and as a rejection by its reason.
    #[tokio::test]
    async fn a_refused_request_head_is_counted_as_a_request_and_a_rejection() {
        let metrics = Metrics::new("proxy");
        let scope = ProxyScope::Router("r1".into());
        let handler = ProxyHandler::new(scope, Nowhere, None, metrics.clone());
        let peer = Peer::Tcp("198.18.0.10:40000".parse().unwrap());
        let limits = ServerLimits::guest_facing();
        let answer = answer_until_closed(handler, peer, limits, MALFORMED_HEAD).await;
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
        assert_eq!(metrics.requests_with(StatusCode::BAD_REQUEST), 1);
        assert_eq!(metrics.rejections_for(Rejection::RequestHeadMalformed), 1);
        let text = crate::metrics::render(&[metrics], None);
        let counted =
            "metaboot_rejections_total{role=\"proxy\",reason=\"request_head_malformed\"} 1\n";
        assert!(text.contains(counted), "{text}");
    }

    #[test]
    fn a_guest_request_map_with_the_room_the_proxy_asks_for_never_grows() {
        let added = <ProxyHandler<ToAgent> as Handler>::ADDED_HEADERS;
        for guest_headers in 1..12 {
            // As the connection loop makes it: the guest's headers and the room.
            let mut headers = http::HeaderMap::with_capacity(guest_headers + added);
            headers.insert(
                http::header::HOST,
                HeaderValue::from_static("169.254.169.254"),
            );
            for i in 1..guest_headers {
                let name = HeaderName::from_bytes(format!("x-guest-{i}").as_bytes()).unwrap();
                headers.insert(name, HeaderValue::from_static("v"));
            }
            let capacity = headers.capacity();
            let scope = ProxyScope::Router("r1".into()).header();
            sanitize(&mut headers, "198.18.0.10".parse().unwrap(), &scope);
            // What `Upstream::send` does before the request goes out.
            headers.insert(http::header::HOST, HeaderValue::from_static("agent"));
            assert_eq!(
                headers.capacity(),
                capacity,
                "{guest_headers} guest headers"
            );
        }
    }
}
