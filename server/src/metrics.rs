//! Prometheus metrics every role keeps: requests by status, rejections by reason, render-cache
//! hits and misses, registry reads made to answer requests (none since the read model),
//! upstream latency; and the read model's state (`metaboot_store_up`, …). Served as text on an
//! optional listen address.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::http::{Body, Handler, Peer, Rejection, Reply, RequestBody};
use crate::model::ModelStatus;

/// Upper bounds of the upstream latency histogram, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];
/// Status codes are counted in one slot each up to this bound.
const STATUS_SLOTS: usize = 600;

/// The metrics of one role (`api`, `agent` or `proxy`).
pub struct Metrics {
    role: &'static str,
    statuses: Box<[AtomicU64]>,
    /// Refusals, one counter per [`Rejection`] (indexed by `Rejection::index`).
    rejections: Box<[AtomicU64]>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    registry_reads: AtomicU64,
    /// Listeners whose serving ended by itself (`all` binds them again).
    listeners_ended: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn new(role: &'static str) -> Arc<Self> {
        Arc::new(Self {
            role,
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            rejections: Rejection::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            registry_reads: AtomicU64::new(0),
            listeners_ended: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
        })
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    /// Counts one answered request.
    pub fn request(&self, status: StatusCode) {
        let slot = usize::from(status.as_u16()).min(STATUS_SLOTS - 1);
        self.statuses[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused request or connection, by its reason.
    pub fn reject(&self, reason: Rejection) {
        self.rejections[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one read of the registry made to answer a request.
    pub fn registry_read(&self) {
        self.registry_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Registry reads made to answer requests so far.
    pub fn registry_reads(&self) -> u64 {
        self.registry_reads.load(Ordering::Relaxed)
    }

    /// Counts one listener whose serving ended by itself.
    pub fn listener_ended(&self) {
        self.listeners_ended.fetch_add(1, Ordering::Relaxed);
    }

    /// Listeners whose serving ended by itself so far.
    pub fn listeners_ended(&self) -> u64 {
        self.listeners_ended.load(Ordering::Relaxed)
    }

    /// Records how long an upstream took to answer.
    pub fn upstream_latency(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(bucket) = LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound) {
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Requests answered with this status so far.
    pub fn requests_with(&self, status: StatusCode) -> u64 {
        let slot = usize::from(status.as_u16()).min(STATUS_SLOTS - 1);
        self.statuses[slot].load(Ordering::Relaxed)
    }

    /// Requests refused for this reason so far.
    pub fn rejections_for(&self, reason: Rejection) -> u64 {
        self.rejections[reason.index()].load(Ordering::Relaxed)
    }

    /// This role's samples of one family.
    fn render_family(&self, family: Family, out: &mut String) {
        let role = self.role;
        match family {
            Family::Requests => {
                for (code, count) in self.statuses.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let _ = writeln!(
                            out,
                            "metaboot_requests_total{{role=\"{role}\",status=\"{code}\"}} {count}"
                        );
                    }
                }
            }
            Family::Rejections => {
                // By label: a stable order for readers and diffs.
                let mut rejections: Vec<(&str, u64)> = Rejection::ALL
                    .iter()
                    .map(|reason| (reason.as_str(), self.rejections_for(*reason)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                rejections.sort_unstable();
                for (reason, count) in rejections {
                    let _ = writeln!(
                        out,
                        "metaboot_rejections_total{{role=\"{role}\",reason=\"{reason}\"}} {count}"
                    );
                }
            }
            // One counter each: its name from the family's header, so the two never differ.
            Family::CacheHits
            | Family::CacheMisses
            | Family::RegistryReads
            | Family::ListenersEnded => {
                let counter = match family {
                    Family::CacheHits => &self.cache_hits,
                    Family::CacheMisses => &self.cache_misses,
                    Family::ListenersEnded => &self.listeners_ended,
                    _ => &self.registry_reads,
                };
                let (name, _, _) = family.header();
                let value = counter.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{role=\"{role}\"}} {value}");
            }
            Family::UpstreamLatency => self.render_latency(out),
        }
    }

    fn render_latency(&self, out: &mut String) {
        let role = self.role;
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&self.latency_buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "metaboot_upstream_latency_seconds_bucket{{role=\"{role}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "metaboot_upstream_latency_seconds_bucket{{role=\"{role}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "metaboot_upstream_latency_seconds_sum{{role=\"{role}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "metaboot_upstream_latency_seconds_count{{role=\"{role}\"}} {count}"
        );
    }
}

/// The metric families every role has, in the order they are rendered.
#[derive(Debug, Clone, Copy)]
enum Family {
    Requests,
    Rejections,
    CacheHits,
    CacheMisses,
    RegistryReads,
    ListenersEnded,
    UpstreamLatency,
}

impl Family {
    const ALL: [Family; 7] = [
        Family::Requests,
        Family::Rejections,
        Family::CacheHits,
        Family::CacheMisses,
        Family::RegistryReads,
        Family::ListenersEnded,
        Family::UpstreamLatency,
    ];

    /// (name, type, help) for its `# HELP` and `# TYPE` lines.
    fn header(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Family::Requests => (
                "metaboot_requests_total",
                "counter",
                "Requests answered, by role and HTTP status.",
            ),
            Family::Rejections => (
                "metaboot_rejections_total",
                "counter",
                "Requests refused, by role and reason.",
            ),
            Family::CacheHits => (
                "metaboot_cache_hits_total",
                "counter",
                "Documents answered from the render cache.",
            ),
            Family::CacheMisses => (
                "metaboot_cache_misses_total",
                "counter",
                "Documents rendered anew.",
            ),
            Family::RegistryReads => (
                "metaboot_registry_reads_total",
                "counter",
                "Registry reads made to answer requests (zero: answers come from memory).",
            ),
            Family::ListenersEnded => (
                "metaboot_listeners_ended_total",
                "counter",
                "Listeners whose serving ended by itself; all binds them again.",
            ),
            Family::UpstreamLatency => (
                "metaboot_upstream_latency_seconds",
                "histogram",
                "Time the next hop took to answer.",
            ),
        }
    }
}

/// Renders the metrics of several roles, and the read model's state when there is one, in
/// the Prometheus text format.
pub fn render(all: &[Arc<Metrics>], model: Option<&ModelStatus>) -> String {
    let mut out = String::new();
    if let Some(model) = model {
        out.push_str(&model.render());
    }
    // Each family one group (its HELP, its TYPE, then every role's samples), as the text
    // format asks: `all` renders three roles.
    for family in Family::ALL {
        let (name, kind, help) = family.header();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for metrics in all {
            metrics.render_family(family, &mut out);
        }
    }
    out
}

/// Serves `GET /metrics`.
#[derive(Clone)]
pub struct MetricsHandler(pub Arc<Vec<Arc<Metrics>>>, pub Option<Arc<ModelStatus>>);

impl Handler for MetricsHandler {
    async fn handle(&self, request: Request<RequestBody>, _: Peer) -> Response<Body> {
        if request.uri().path() != "/metrics" {
            return Reply::refuse(StatusCode::NOT_FOUND, "metrics are served at /metrics");
        }
        Reply::with(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(render(&self.0, self.1.as_deref())),
        )
    }
}

/// Starts the metrics listener when an address is given.
pub async fn serve_metrics(
    listen: Option<std::net::SocketAddr>,
    all: Vec<Arc<Metrics>>,
    model: Option<Arc<ModelStatus>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(listen) = listen else {
        return Ok(());
    };
    let listener = crate::http::listen::tcp_listener(listen)
        .and_then(crate::http::TcpAcceptor::new)
        .map_err(|err| crate::http::listen_refusal::tcp(err, listen))
        .context("cannot serve the metrics")?;
    tracing::info!(%listen, "metrics at /metrics");
    tokio::spawn(crate::http::serve(
        listener,
        crate::http::ServerLimits::default(),
        MetricsHandler(Arc::new(all), model),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let metrics = Metrics::new("agent");
        metrics.request(StatusCode::OK);
        metrics.request(StatusCode::OK);
        metrics.request(StatusCode::NOT_FOUND);
        metrics.reject(Rejection::NoPort);
        metrics.cache_hit();
        metrics.cache_miss();
        metrics.registry_read();
        metrics.listener_ended();
        metrics.upstream_latency(Duration::from_micros(80));
        let status = ModelStatus::default();
        status.set_store_up(false);
        let text = render(&[metrics], Some(&status));
        assert!(text.contains("metaboot_store_up 0\n"), "{text}");
        assert!(text.contains("metaboot_requests_total{role=\"agent\",status=\"200\"} 2\n"));
        assert!(text.contains("metaboot_requests_total{role=\"agent\",status=\"404\"} 1\n"));
        assert!(text.contains("metaboot_rejections_total{role=\"agent\",reason=\"no_port\"} 1\n"));
        assert!(text.contains("metaboot_cache_hits_total{role=\"agent\"} 1\n"));
        assert!(text.contains("metaboot_registry_reads_total{role=\"agent\"} 1\n"));
        assert!(text.contains("metaboot_listeners_ended_total{role=\"agent\"} 1\n"));
        assert!(text.contains(
            "metaboot_upstream_latency_seconds_bucket{role=\"agent\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains("metaboot_upstream_latency_seconds_count{role=\"agent\"} 1\n"));
    }

    /// `all`'s three roles: each family is one group (its `# TYPE` just before every role's
    /// samples of it), as strict parsers of the text format require.
    #[test]
    fn each_family_is_one_group_across_roles() {
        let roles: Vec<Arc<Metrics>> = ["proxy", "agent", "api"]
            .into_iter()
            .map(|role| {
                let metrics = Metrics::new(role);
                metrics.request(StatusCode::OK);
                metrics
            })
            .collect();
        let text = render(&roles, None);
        let mut seen: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&current), "{current} twice:\n{text}");
                seen.push(current);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            assert!(
                line.starts_with(current),
                "{line} outside {current}'s group:\n{text}"
            );
        }
        assert_eq!(seen.len(), Family::ALL.len(), "{text}");
        assert_eq!(text.matches("metaboot_requests_total{").count(), 3);
    }
}
