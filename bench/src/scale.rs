//! The boot storm at scale: registries of 1 000 and 100 000 instances in SQLite and in
//! PostgreSQL, and per round, for each store and size, a fresh `metaboot-server all` that
//! [`GUESTS`] guests boot against at once. Reports total time, p50/p99, errors and the
//! server's peak RSS, and (baseline column = the small registry) how they grow with size.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use metaboot_harness::chain::write_secret;
use metaboot_harness::lab::netns::NETNS_DIR;
use metaboot_harness::postgres::PgServer;
use serde::Serialize;

use crate::baselines::StaticSite;
use crate::chain::{All, RouterNamespace};
use crate::fleet::{self, POSTGRES_WRITERS, Registry};
use crate::interrupt;
use crate::measure::peak_rss_kib;
use crate::plan::Plan;
use crate::propagation::{self, PropagationSample};
use crate::storm::{self, GUESTS, StormResult};
use crate::table::{Goal, Row, Unit};

/// The section's name in the table.
pub const SECTION: &str = "boot storm: 1 000 guests × 16 requests, new connection each";
/// Instances of the small registry (= the guests).
pub const SMALL: usize = GUESTS;
/// Peak RSS goal of the server at 100 000 instances, KiB.
pub const RSS_GOAL_KIB: f64 = 64.0 * 1024.0;
/// Peak RSS goal of the server at 1 000 000 instances, KiB.
pub const RSS_GOAL_1M_KIB: f64 = 512.0 * 1024.0;
/// Registries of at least this many instances get the 1M goals.
pub const MILLION: usize = 1_000_000;
/// Start-up goal (the registry loaded into memory), seconds.
pub const STARTUP_GOAL_S: f64 = 10.0;
/// Storm p99 ÷ nginx's storm p99 goal.
pub const P99_VS_NGINX_GOAL: f64 = 1.0;
/// A guest's first request ÷ its later ones (p50) goal.
pub const FIRST_VS_LATER_GOAL: f64 = 1.2;
/// Propagation p99 goal (a write's return → every host serves it), PostgreSQL (NOTIFY).
pub const PROPAGATION_GOAL_POSTGRES: Duration = Duration::from_millis(50);
/// Propagation p99 goal, SQLite (polled).
pub const PROPAGATION_GOAL_SQLITE: Duration = Duration::from_millis(150);

/// One store kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The propagation goal of this store.
    fn propagation_goal(self) -> Duration {
        match self {
            Backend::Sqlite => PROPAGATION_GOAL_SQLITE,
            Backend::Postgres => PROPAGATION_GOAL_POSTGRES,
        }
    }
}

/// Reads one number out of a storm sample.
type Metric = dyn Fn(&StormSample) -> f64;
/// Reads one number out of a storm's result.
type ResultMetric = dyn Fn(&StormResult) -> f64;

/// A registry of one size with its router namespace.
struct Fleet {
    backend: Backend,
    size: usize,
    registry: Registry,
    netns: RouterNamespace,
}

/// One storm's numbers plus the server's peak RSS.
#[derive(Debug, Clone, Serialize)]
pub struct StormSample {
    /// The store.
    pub backend: Backend,
    /// Instances in it.
    pub instances: usize,
    /// What the guests saw.
    pub storm: StormResult,
    /// `all`'s VmHWM after the storm, KiB.
    pub peak_rss_kib: u64,
    /// From spawning `all` to its first answer (the registry loaded into memory), seconds.
    pub startup_s: f64,
}

impl StormSample {
    /// p50 of a guest's first request, µs.
    pub fn first_p50_us(&self) -> f64 {
        self.storm.first_p50_us()
    }

    /// Median of the p50s of a guest's later requests, µs.
    pub fn later_p50_us(&self) -> f64 {
        self.storm.later_p50_us()
    }
}

fn build_fleet(backend: Backend, url: &str, size: usize) -> anyhow::Result<Fleet> {
    let registry = fleet::create(url)?;
    let writers = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => POSTGRES_WRITERS,
    };
    let took = fleet::populate(&registry, 0, size, writers)
        .with_context(|| format!("failed to fill the {} registry", backend.name()))?;
    println!(
        "  {} registry with {size} instances written in {:.1} s",
        backend.name(),
        took.as_secs_f64()
    );
    let netns = RouterNamespace::create(&registry.router_id)?;
    Ok(Fleet {
        backend,
        size,
        registry,
        netns,
    })
}

/// nginx serving the 16 documents guest 0 of `fleet` gets (fetched once through `all`).
fn static_site(bin: &Path, dir: &Path, secret: &Path, fleet: &Fleet) -> anyhow::Result<StaticSite> {
    let all = All::start(
        bin,
        &fleet.registry.url,
        dir,
        secret,
        "all-documents",
        &fleet.netns,
    )?;
    let netns_path = PathBuf::from(NETNS_DIR).join(&fleet.netns.name);
    let documents = storm::documents(all.addr, Some(&netns_path), fleet::fleet_ip(0)?)
        .context("failed to fetch the first-boot documents through `all`")?;
    drop(all);
    StaticSite::start(dir, &documents)
}

/// One storm against a fresh `all` over `fleet`.
fn storm_once(
    bin: &Path,
    dir: &Path,
    secret: &Path,
    fleet: &Fleet,
    guests: &[Ipv4Addr],
) -> anyhow::Result<StormSample> {
    let name = format!("all-{}-{}", fleet.backend.name().to_lowercase(), fleet.size);
    let all = All::start(bin, &fleet.registry.url, dir, secret, &name, &fleet.netns)?;
    let netns_path = PathBuf::from(NETNS_DIR).join(&fleet.netns.name);
    let result = storm::run(all.addr, Some(&netns_path), guests)?;
    let peak = peak_rss_kib(all.server.pid()).context("the server exited during the storm")?;
    let startup_s = all.ready_after.as_secs_f64();
    drop(all);
    Ok(StormSample {
        backend: fleet.backend,
        instances: fleet.size,
        storm: result,
        peak_rss_kib: peak,
        startup_s,
    })
}

/// Builds the registries, runs the interleaved storms and returns the rows (and the samples
/// for the JSON report).
pub fn measure(
    bin: &Path,
    dir: &Path,
    plan: &Plan,
) -> anyhow::Result<(Vec<Row>, Vec<StormSample>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let secret = write_secret(dir)?;
    let guests: Vec<Ipv4Addr> = (0..GUESTS)
        .map(fleet::fleet_ip)
        .collect::<anyhow::Result<_>>()?;
    let sizes: Vec<usize> = if plan.large_fleet > SMALL {
        vec![SMALL, plan.large_fleet]
    } else {
        vec![SMALL]
    };
    let pg = PgServer::start().context("failed to start PostgreSQL for the storm")?;
    let mut fleets = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for &size in &sizes {
            interrupt::check()?;
            let url = match backend {
                Backend::Sqlite => dir
                    .join(format!("storm-{size}.sqlite"))
                    .display()
                    .to_string(),
                Backend::Postgres => pg.create_database(&format!("storm_{size}"))?,
            };
            fleets.push(build_fleet(backend, &url, size)?);
        }
    }
    let site = static_site(bin, dir, &secret, &fleets[0])?;
    let mut samples = Vec::new();
    let mut nginx: Vec<StormResult> = Vec::new();
    for round in 1..=plan.rounds {
        interrupt::check()?;
        let result = storm::run(site.addr, None, &guests)?;
        println!(
            "  round {round}: nginx static (same bytes): {} requests in {:.2} s, p50 {:.2} ms (first {:.2}, later {:.2}), p90 {:.2} ms, p99 {:.2} ms (connect p99 {:.2} ms, {}), {} errors",
            result.requests,
            result.total.as_secs_f64(),
            result.p50_us / 1e3,
            result.first_p50_us() / 1e3,
            result.later_p50_us() / 1e3,
            result.p90_us / 1e3,
            result.p99_us / 1e3,
            result.connect_p99_us / 1e3,
            result.stragglers(),
            result.errors
        );
        nginx.push(result);
        for fleet in &fleets {
            interrupt::check()?;
            let sample = storm_once(bin, dir, &secret, fleet, &guests)?;
            let s = &sample.storm;
            println!(
                "  round {round}: {:<10} {:>6} instances: start-up {:.2} s, {} requests in {:.2} s, p50 {:.2} ms (first {:.2}, later {:.2}), p90 {:.2} ms, p99 {:.2} ms (connect p99 {:.2} ms, {}), {} errors{}, peak RSS {:.1} MiB",
                fleet.backend.name(),
                fleet.size,
                sample.startup_s,
                s.requests,
                s.total.as_secs_f64(),
                s.p50_us / 1e3,
                sample.first_p50_us() / 1e3,
                sample.later_p50_us() / 1e3,
                s.p90_us / 1e3,
                s.p99_us / 1e3,
                s.connect_p99_us / 1e3,
                s.stragglers(),
                s.errors,
                s.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                sample.peak_rss_kib as f64 / 1024.0
            );
            samples.push(sample);
        }
    }
    let large = *sizes.last().unwrap_or(&SMALL);
    // Propagation, on each store's largest registry: new instances after the fleet's.
    let mut propagation: Vec<(Backend, PropagationSample)> = Vec::new();
    for fleet in fleets.iter().filter(|fleet| fleet.size == large) {
        for round in 1..=plan.rounds {
            interrupt::check()?;
            let first = fleet.size + (round - 1) * propagation::WRITES_PER_ROUND;
            let sample = propagation::measure_round(
                bin,
                dir,
                &secret,
                &fleet.registry,
                &fleet.netns,
                first,
            )?;
            println!(
                "  round {round}: {:<10} {:>6} instances: {} writes reached both hosts in p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                fleet.backend.name(),
                fleet.size,
                sample.each_us.len(),
                crate::measure::quantile(&sample.each_us, 0.5).unwrap_or(f64::NAN) / 1e3,
                sample.p99_us / 1e3,
                sample.each_us.iter().copied().fold(0.0, f64::max) / 1e3,
            );
            propagation.push((fleet.backend, sample));
        }
    }
    let rows = rows(&samples, &nginx, &propagation, &sizes);
    drop(fleets);
    drop(pg);
    Ok((rows, samples))
}

/// The section's rows from the storms (`samples`, and nginx's `nginx`, one per round), the
/// propagation rounds and the registry sizes (the small one, then the large one if any).
fn rows(
    samples: &[StormSample],
    nginx: &[StormResult],
    propagation: &[(Backend, PropagationSample)],
    sizes: &[usize],
) -> Vec<Row> {
    let large = *sizes.last().unwrap_or(&SMALL);
    let mut rows = Vec::new();
    let small_sqlite = |f: &ResultMetric| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.backend == Backend::Sqlite && s.instances == SMALL)
            .map(|s| f(&s.storm))
            .collect()
    };
    let on_nginx = |f: &ResultMetric| -> Vec<f64> { nginx.iter().map(f).collect() };
    let failed = |errors: Vec<f64>| -> Vec<bool> { errors.iter().map(|e| *e > 0.0).collect() };
    let errors: &ResultMetric = &|s| s.errors as f64;
    let nginx_errors = failed(on_nginx(errors));
    let references: [(&str, Unit, &ResultMetric); 4] = [
        ("total time", Unit::Seconds, &|s| s.total.as_secs_f64()),
        ("p50 request", Unit::Micros, &|s| s.p50_us),
        ("p99 request", Unit::Micros, &|s| s.p99_us),
        ("errors", Unit::Count, errors),
    ];
    for (metric, unit, f) in references {
        rows.push(
            Row::new(
                SECTION,
                &format!("{metric}: SQLite {SMALL} (vs nginx static, same bytes)"),
                unit,
                on_nginx(f),
                small_sqlite(f),
                Goal::None,
            )
            .unless_errors(&either(&nginx_errors, &failed(small_sqlite(errors)))),
        );
    }
    // The same ratio for nginx, whose answers cost the same for every request of a guest: what
    // the storm's opening burst (a thousand connections at once) alone does to the first p50.
    rows.push(
        Row::new(
            SECTION,
            "first request of a guest (vs its later ones, p50): nginx static, reference",
            Unit::Micros,
            on_nginx(&StormResult::later_p50_us),
            on_nginx(&StormResult::first_p50_us),
            Goal::None,
        )
        .unless_errors(&nginx_errors),
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let pick = |size: usize, f: &Metric| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.backend == backend && s.instances == size)
                .map(f)
                .collect()
        };
        let both = |f: &Metric| -> (Vec<f64>, Vec<f64>) {
            if sizes.len() > 1 {
                (pick(SMALL, f), pick(large, f))
            } else {
                (Vec::new(), pick(SMALL, f))
            }
        };
        let what = if sizes.len() > 1 {
            format!("{}, {} → {large} instances", backend.name(), SMALL)
        } else {
            format!("{}, {SMALL} instances", backend.name())
        };
        let rss_goal = if large >= MILLION {
            RSS_GOAL_1M_KIB
        } else {
            RSS_GOAL_KIB
        };
        let large_only = |f: &Metric| -> Vec<f64> { pick(large, f) };
        let large_errors = failed(large_only(&|s| s.storm.errors as f64));
        rows.push(
            Row::new(
                SECTION,
                &format!(
                    "propagation p99 (write returns → both hosts serve it): {}, {large} instances",
                    backend.name()
                ),
                Unit::Micros,
                Vec::new(),
                propagation
                    .iter()
                    .filter(|(b, _)| *b == backend)
                    .map(|(_, sample)| sample.p99_us)
                    .collect(),
                Goal::AtMost(backend.propagation_goal().as_secs_f64() * 1e6),
            )
            .every_round(),
        );
        rows.push(
            Row::new(
                SECTION,
                &format!(
                    "p99 request: {}, {large} instances (vs nginx static)",
                    backend.name()
                ),
                Unit::Micros,
                on_nginx(&|s| s.p99_us),
                large_only(&|s| s.storm.p99_us),
                Goal::RatioAtMost(P99_VS_NGINX_GOAL),
            )
            .every_round()
            .unless_errors(&either(&nginx_errors, &large_errors)),
        );
        rows.push(
            Row::new(
                SECTION,
                &format!(
                    "first request of a guest (vs its later ones, p50): {}, {large} instances",
                    backend.name()
                ),
                Unit::Micros,
                large_only(&StormSample::later_p50_us),
                large_only(&StormSample::first_p50_us),
                Goal::RatioAtMost(FIRST_VS_LATER_GOAL),
            )
            .every_round()
            .unless_errors(&large_errors),
        );
        let metrics: [(&str, Unit, &Metric, Goal); 6] = [
            (
                "start-up (registry into memory)",
                Unit::Seconds,
                &|s| s.startup_s,
                Goal::AtMost(STARTUP_GOAL_S),
            ),
            (
                "total time",
                Unit::Seconds,
                &|s| s.storm.total.as_secs_f64(),
                Goal::None,
            ),
            ("p50 request", Unit::Micros, &|s| s.storm.p50_us, Goal::None),
            (
                "p99 request",
                Unit::Micros,
                &|s| s.storm.p99_us,
                // The goal is the ratio to nginx's storm (above): 1 000 guests on 2 cores keep
                // even nginx's p99 far above any absolute figure.
                Goal::None,
            ),
            (
                "errors",
                Unit::Count,
                &|s| s.storm.errors as f64,
                Goal::AtMost(0.0),
            ),
            (
                "server peak RSS",
                Unit::KiB,
                &|s| s.peak_rss_kib as f64,
                Goal::AtMost(rss_goal),
            ),
        ];
        for (metric, unit, f, goal) in metrics {
            let (small, big) = both(f);
            rows.push(
                Row::new(
                    SECTION,
                    &format!("{metric}: {what}"),
                    unit,
                    small,
                    big,
                    goal,
                )
                .every_round(),
            );
        }
    }
    rows
}

/// Round by round, whether either side had errors (a round one side lacks counts as clean:
/// the row's own pairing judges it).
fn either(baseline: &[bool], ours: &[bool]) -> Vec<bool> {
    (0..baseline.len().max(ours.len()))
        .map(|i| baseline.get(i) == Some(&true) || ours.get(i) == Some(&true))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storm::{FIRST_BOOT, Outcome, summarise};

    /// A storm of one guest: every request took `ms`, the first `failed` of them failed.
    fn storm(ms: u64, failed: usize) -> StormResult {
        let outcomes: Vec<Outcome> = (0..FIRST_BOOT.len())
            .map(|step| storm::outcome(step, Duration::from_millis(ms), step < failed))
            .collect();
        summarise(Duration::from_secs(1), &outcomes)
    }

    fn sample(backend: Backend, ms: u64, failed: usize) -> StormSample {
        StormSample {
            backend,
            instances: SMALL,
            storm: storm(ms, failed),
            peak_rss_kib: 10 * 1024,
            startup_s: 0.5,
        }
    }

    /// nginx's p99 20 ms, metaboot's 10 ms every round; `nginx_failed` requests of nginx's
    /// round 2 fail.
    fn p99_met(nginx_failed: usize, ours_failed: usize) -> Option<bool> {
        let nginx = vec![storm(20, 0), storm(20, nginx_failed)];
        let samples: Vec<StormSample> = (0..2)
            .flat_map(|round| {
                let failed = if round == 1 { ours_failed } else { 0 };
                [
                    sample(Backend::Sqlite, 10, failed),
                    sample(Backend::Postgres, 10, 0),
                ]
            })
            .collect();
        let rows = rows(&samples, &nginx, &[], &[SMALL]);
        rows.iter()
            .find(|r| {
                r.metric == format!("p99 request: SQLite, {SMALL} instances (vs nginx static)")
            })
            .unwrap()
            .met
    }

    #[test]
    fn a_storm_round_with_errors_on_either_side_does_not_meet_the_p99_goal() {
        assert_eq!(p99_met(0, 0), Some(true));
        // A failed request counts as the timeout: metaboot's p99 grows past nginx's.
        assert_eq!(p99_met(0, 1), Some(false));
        // nginx's failures make its p99 the timeout, which the ratio alone would meet.
        assert_eq!(p99_met(1, 0), Some(false));
    }
}
