//! The chain's throughput and latency against nginx in the same run: the setup (a registry with
//! the bench guest, the 3-process chain, `all` in its router namespace, the baselines serving
//! the chain's own meta_data.json bytes) and the interleaved wrk rounds.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use metaboot_proto::METADATA_IPV4;

use crate::baselines::{Baselines, META_DATA_PATH};
use crate::chain::{All, RouterNamespace, ThreeProcess};
use crate::fleet::{self, Registry};
use crate::interrupt;
use crate::load::{self, Load, WrkRun};
use crate::measure::groups_cpu;
use crate::plan::Plan;
use crate::table::{Goal, Row, Unit};

/// The section's name in the table.
pub const SECTION: &str = "chain throughput and latency (loopback)";
/// Throughput of the 3-process chain ÷ the C chain of the same shape (haproxy → nginx(UDS) →
/// nginx) it must reach, in every round.
pub const CHAIN_VS_C_CHAIN_GOAL: f64 = 1.5;
/// CPU per request of the 3 processes together ÷ nginx's it must stay under.
pub const CHAIN_CPU_VS_NGINX_GOAL: f64 = 2.7;
/// p50 at one connection, 3-process chain ÷ the C chain's, it must stay under.
pub const CHAIN_P50_VS_C_CHAIN_GOAL: f64 = 0.75;
/// Throughput of `all` ÷ nginx static it must reach, in every round.
pub const ALL_RATIO_GOAL: f64 = 1.2;

/// metaboot's servers over one registry with the bench guest at 127.0.0.1.
pub struct ChainSetup {
    /// `all`, serving the router namespace (dropped before the namespace).
    pub all: All,
    /// The namespace `all` serves.
    pub netns: RouterNamespace,
    /// The 3-process chain.
    pub chain: ThreeProcess,
    /// The registry.
    pub registry: Registry,
    /// meta_data.json as the chain served it once: what nginx serves.
    pub meta_data: Vec<u8>,
}

impl ChainSetup {
    /// Creates the registry under `dir` and starts the chain and `all` from `bin`.
    pub fn start(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        let registry = fleet::create(&dir.join("chain.sqlite").display().to_string())?;
        fleet::add_bench_guest(&registry)?;
        let chain = ThreeProcess::start(bin, &registry.url, dir, &registry.router_id)?;
        let netns = RouterNamespace::create(&registry.router_id)?;
        let secret = &chain.chain.secret_file;
        let all = All::start(bin, &registry.url, dir, secret, "all", &netns)?;
        let meta_data = get(chain.proxy_addr, META_DATA_PATH)
            .context("failed to fetch meta_data.json through the chain")?;
        serde_json::from_slice::<serde_json::Value>(&meta_data)
            .context("the chain's meta_data.json is not JSON")?;
        Ok(Self {
            all,
            netns,
            chain,
            registry,
            meta_data,
        })
    }

    /// The URL guests (and the guest agent) use: the 3-process chain's proxy.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.chain.proxy_addr)
    }
}

/// GET `path` from `addr` (HTTP/1.1, Connection: close); the body of a 200 answer.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("failed to connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {METADATA_IPV4}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no end of headers")?;
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!(
            "GET {path} answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    if head.contains("transfer-encoding: chunked") {
        bail!("GET {path} answered chunked; the bench needs the plain bytes");
    }
    Ok(answer[split + 4..].to_vec())
}

/// The load targets, in the order the first round loads them (each later round starts one
/// further on, see [`round_order`]).
const THROUGHPUT_TARGETS: [&str; 5] = ["nginx", "haproxy", "three-hop", "chain", "all"];
const LATENCY_TARGETS: [&str; 4] = ["nginx", "three-hop", "chain", "all"];

/// The untimed -c64 run each target gets before the first round: caches, connection pools
/// and the CPU's frequency are then warm for every target alike, not only for those loaded
/// after the first one (wrk's shortest run).
pub const WARM_UP: Duration = Duration::from_secs(1);

/// The targets in the order round `round` (from 1) loads them: rotated one step per round, so
/// that no target always follows the same one (or always comes first, after the idle pause
/// between the sections).
fn round_order<'a>(targets: &[&'a str], round: usize) -> Vec<&'a str> {
    let mut order = targets.to_vec();
    if !order.is_empty() {
        order.rotate_left((round.saturating_sub(1)) % targets.len());
    }
    order
}

/// The CPU µs each part spent per request of `run`, from its groups' CPU time `before` it.
fn cpu_per_request<'a>(
    parts: &[(&'a str, Vec<u32>)],
    before: Vec<Duration>,
    run: &WrkRun,
) -> anyhow::Result<Vec<(&'a str, f64)>> {
    parts
        .iter()
        .zip(before)
        .map(|((part, groups), before)| {
            let used = groups_cpu(groups)
                .with_context(|| format!("no CPU time of {part} after the run"))?
                .saturating_sub(before);
            Ok((*part, used.as_secs_f64() * 1e6 / run.requests.max(1) as f64))
        })
        .collect()
}

/// Every part's CPU time before a run.
fn cpu_before(parts: &[(&str, Vec<u32>)]) -> anyhow::Result<Vec<Duration>> {
    parts
        .iter()
        .map(|(part, groups)| {
            groups_cpu(groups).with_context(|| format!("no CPU time of {part} before the run"))
        })
        .collect()
}

/// Runs the interleaved rounds and returns the section's rows.
pub fn measure(setup: &ChainSetup, baselines: &Baselines, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let url = |addr: SocketAddr| format!("http://{addr}{META_DATA_PATH}");
    let target = |name: &str| -> (String, Option<&str>) {
        match name {
            "nginx" => (url(baselines.nginx_addr), None),
            "haproxy" => (url(baselines.haproxy_addr), None),
            "three-hop" => (url(baselines.three_hop_addr), None),
            "chain" => (url(setup.chain.proxy_addr), None),
            _ => (url(setup.all.addr), Some(setup.netns.name.as_str())),
        }
    };
    // The process groups whose CPU time each target's requests cost, by part.
    let group = |name: &str| {
        baselines
            .group(name)
            .with_context(|| format!("no baseline server {name} was started"))
    };
    let parts = |name: &str| -> anyhow::Result<Vec<(&'static str, Vec<u32>)>> {
        Ok(match name {
            "nginx" => vec![("nginx", vec![group("nginx-static")?])],
            "haproxy" => vec![(
                "haproxy+nginx",
                vec![group("haproxy-neutron")?, group("nginx-static")?],
            )],
            "three-hop" => vec![(
                "3 hops",
                vec![
                    group("haproxy-3hop")?,
                    group("nginx-hop")?,
                    group("nginx-static")?,
                ],
            )],
            "chain" => setup.chain.parts()?,
            _ => vec![("all", vec![setup.all.server.pid()])],
        })
    };
    let mut loaded: BTreeMap<&str, Vec<WrkRun>> = BTreeMap::new();
    let mut single: BTreeMap<&str, Vec<WrkRun>> = BTreeMap::new();
    // CPU µs per request by target and part, from the -c64 runs.
    let mut cpu: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for name in THROUGHPUT_TARGETS {
        interrupt::check()?;
        let (url, netns) = target(name);
        let run = load::run(&Load::throughput(WARM_UP), &url, netns)
            .with_context(|| format!("the warm-up run against {name} failed"))?;
        println!(
            "  warm-up: {name:<9} -t2 -c64 {:?}: {:>9.0} req/s, {} errors (not counted)",
            WARM_UP, run.requests_per_sec, run.errors
        );
    }
    for round in 1..=plan.rounds {
        for name in round_order(&THROUGHPUT_TARGETS, round) {
            interrupt::check()?;
            let (url, netns) = target(name);
            let parts = parts(name)?;
            let before = cpu_before(&parts)?;
            let run = load::run(&Load::throughput(plan.wrk_duration), &url, netns)?;
            let mut split = String::new();
            for (part, per_request) in cpu_per_request(&parts, before, &run)? {
                split.push_str(&format!(" {part} {per_request:.1}"));
                cpu.entry((name, part)).or_default().push(per_request);
            }
            println!(
                "  round {round}: {name:<9} -t2 -c64: {:>9.0} req/s, p50 {:>6.0} µs, p99 {:>7.0} µs, {} errors; CPU µs/request:{split}",
                run.requests_per_sec, run.p50_us, run.p99_us, run.errors
            );
            loaded.entry(name).or_default().push(run);
        }
        for name in round_order(&LATENCY_TARGETS, round) {
            interrupt::check()?;
            let (url, netns) = target(name);
            let parts = parts(name)?;
            let before = cpu_before(&parts)?;
            let run = load::run(&Load::single(plan.latency_duration), &url, netns)?;
            let split: String = cpu_per_request(&parts, before, &run)?
                .into_iter()
                .map(|(part, per_request)| format!(" {part} {per_request:.1}"))
                .collect();
            println!(
                "  round {round}: {name:<9} -t1 -c1:  {:>9.0} req/s, p50 {:>6.0} µs, p99 {:>7.0} µs, {} errors; CPU µs/request:{split}",
                run.requests_per_sec, run.p50_us, run.p99_us, run.errors
            );
            single.entry(name).or_default().push(run);
        }
    }
    Ok(rows(&loaded, &single, &cpu, plan.rounds))
}

/// wrk's runs by target, in round order.
type Runs<'a> = BTreeMap<&'a str, Vec<WrkRun>>;

/// Whether `baseline` or `ours` had errors in each round of `runs`: wrk's numbers leave them
/// out (Requests/sec counts non-2xx answers, the percentiles skip timeouts), so such a round
/// does not meet a goal (see [`Row::unless_errors`]).
fn errors_by_round(runs: &Runs<'_>, baseline: &str, ours: &str, rounds: usize) -> Vec<bool> {
    let failed = |name: &str, round: usize| {
        runs.get(name)
            .and_then(|v| v.get(round))
            .is_some_and(|run| run.errors > 0)
    };
    (0..rounds)
        .map(|round| failed(baseline, round) || failed(ours, round))
        .collect()
}

/// The section's rows from the -c64 runs (`loaded`), the -c1 runs (`single`) and the CPU µs
/// per request by target and part (from the -c64 runs), over `rounds` rounds.
fn rows(
    loaded: &Runs<'_>,
    single: &Runs<'_>,
    cpu: &BTreeMap<(&str, &str), Vec<f64>>,
    rounds: usize,
) -> Vec<Row> {
    let pick =
        |runs: &BTreeMap<&str, Vec<WrkRun>>, name: &str, f: fn(&WrkRun) -> f64| -> Vec<f64> {
            runs.get(name)
                .map(|v| v.iter().map(f).collect())
                .unwrap_or_default()
        };
    let rps = |r: &WrkRun| r.requests_per_sec;
    let p50 = |r: &WrkRun| r.p50_us;
    let p99 = |r: &WrkRun| r.p99_us;
    let errors = |r: &WrkRun| r.errors as f64;
    let row = |metric: &str, unit, base: Vec<f64>, ours: Vec<f64>, goal| {
        Row::new(SECTION, metric, unit, base, ours, goal)
    };
    let loaded_errors =
        |baseline: &str, ours: &str| errors_by_round(loaded, baseline, ours, rounds);
    let single_errors =
        |baseline: &str, ours: &str| errors_by_round(single, baseline, ours, rounds);
    let nginx_rps = pick(loaded, "nginx", rps);
    let cpu_of = |name: &str, part: &str| cpu.get(&(name, part)).cloned().unwrap_or_default();
    let chain_cpu: Vec<f64> = (0..rounds)
        .map(|i| {
            ["ns-proxy", "agent", "api"]
                .iter()
                .filter_map(|part| cpu_of("chain", part).get(i).copied())
                .sum()
        })
        .collect();
    let nginx_cpu = cpu_of("nginx", "nginx");
    let mut cpu_rows = vec![
        row(
            "CPU/request -c64: 3 hops haproxy/nginx/nginx (vs nginx)",
            Unit::Micros,
            nginx_cpu.clone(),
            cpu_of("three-hop", "3 hops"),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "three-hop")),
        row(
            "CPU/request -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            nginx_cpu.clone(),
            chain_cpu,
            Goal::RatioAtMost(CHAIN_CPU_VS_NGINX_GOAL),
        )
        .every_round()
        .unless_errors(&loaded_errors("nginx", "chain")),
    ];
    for part in ["ns-proxy", "agent", "api"] {
        cpu_rows.push(
            row(
                &format!("CPU/request -c64:   of which {part} (vs nginx)"),
                Unit::Micros,
                nginx_cpu.clone(),
                cpu_of("chain", part),
                Goal::None,
            )
            .unless_errors(&loaded_errors("nginx", "chain")),
        );
    }
    cpu_rows.push(
        row(
            "CPU/request -c64: `all`, one process (vs nginx static)",
            Unit::Micros,
            nginx_cpu,
            cpu_of("all", "all"),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "all")),
    );
    let mut rows = vec![
        row(
            "req/s -c64: Neutron haproxy → UDS static (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(loaded, "haproxy", rps),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "haproxy")),
        row(
            "req/s -c64: haproxy → nginx(UDS) → nginx, 3 hops (vs nginx)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(loaded, "three-hop", rps),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "three-hop")),
        row(
            "req/s -c64: 3-process chain (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(loaded, "chain", rps),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "chain")),
        row(
            "req/s -c64: 3-process chain (vs the C chain, 3 hops)",
            Unit::ReqPerSec,
            pick(loaded, "three-hop", rps),
            pick(loaded, "chain", rps),
            Goal::RatioAtLeast(CHAIN_VS_C_CHAIN_GOAL),
        )
        .every_round()
        .unless_errors(&loaded_errors("three-hop", "chain")),
        row(
            "req/s -c64: `all`, one process (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps,
            pick(loaded, "all", rps),
            Goal::RatioAtLeast(ALL_RATIO_GOAL),
        )
        .every_round()
        .unless_errors(&loaded_errors("nginx", "all")),
        row(
            "p50 -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(loaded, "nginx", p50),
            pick(loaded, "chain", p50),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "chain")),
        row(
            "p99 -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(loaded, "nginx", p99),
            pick(loaded, "chain", p99),
            Goal::None,
        )
        .unless_errors(&loaded_errors("nginx", "chain")),
        row(
            "p50 -c1: haproxy → nginx(UDS) → nginx (vs nginx)",
            Unit::Micros,
            pick(single, "nginx", p50),
            pick(single, "three-hop", p50),
            Goal::None,
        )
        .unless_errors(&single_errors("nginx", "three-hop")),
        row(
            "p50 -c1: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(single, "nginx", p50),
            pick(single, "chain", p50),
            Goal::None,
        )
        .unless_errors(&single_errors("nginx", "chain")),
        row(
            "p50 -c1: 3-process chain (vs the C chain, 3 hops)",
            Unit::Micros,
            pick(single, "three-hop", p50),
            pick(single, "chain", p50),
            Goal::RatioAtMost(CHAIN_P50_VS_C_CHAIN_GOAL),
        )
        .every_round()
        .unless_errors(&single_errors("three-hop", "chain")),
        row(
            "p50 -c1: `all`, one process (vs nginx static)",
            Unit::Micros,
            pick(single, "nginx", p50),
            pick(single, "all", p50),
            Goal::None,
        )
        .unless_errors(&single_errors("nginx", "all")),
        row(
            "errors under load: chain + all (vs nginx, haproxy, the C chain)",
            Unit::Count,
            vec![
                ["nginx", "haproxy", "three-hop"]
                    .iter()
                    .map(|n| {
                        pick(loaded, n, errors).iter().sum::<f64>()
                            + pick(single, n, errors).iter().sum::<f64>()
                    })
                    .sum(),
            ],
            vec![
                ["chain", "all"]
                    .iter()
                    .map(|n| {
                        pick(loaded, n, errors).iter().sum::<f64>()
                            + pick(single, n, errors).iter().sum::<f64>()
                    })
                    .sum(),
            ],
            Goal::AtMost(0.0),
        ),
    ];
    rows.extend(cpu_rows);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(requests_per_sec: f64, p50_us: f64, errors: u64) -> WrkRun {
        WrkRun {
            requests_per_sec,
            requests: 100_000,
            p50_us,
            p99_us: 4.0 * p50_us,
            errors,
        }
    }

    /// Two rounds in which every ratio meets its goal, with `errors` on `target` in round 2.
    fn rows_with_errors(target: &str, errors: u64) -> Vec<Row> {
        let mut loaded: Runs<'_> = BTreeMap::new();
        let mut single: Runs<'_> = BTreeMap::new();
        for (name, rps, p50) in [
            ("nginx", 30_000.0, 100.0),
            ("haproxy", 20_000.0, 150.0),
            ("three-hop", 15_000.0, 200.0),
            ("chain", 30_000.0, 120.0),
            ("all", 40_000.0, 60.0),
        ] {
            for round in 0..2 {
                let e = if name == target && round == 1 {
                    errors
                } else {
                    0
                };
                loaded.entry(name).or_default().push(run(rps, p50, e));
                single.entry(name).or_default().push(run(rps, p50, e));
            }
        }
        let mut cpu = BTreeMap::new();
        cpu.insert(("nginx", "nginx"), vec![10.0, 10.0]);
        for part in ["ns-proxy", "agent", "api"] {
            cpu.insert(("chain", part), vec![5.0, 5.0]);
        }
        rows(&loaded, &single, &cpu, 2)
    }

    #[test]
    fn each_round_starts_one_target_further_on() {
        assert_eq!(round_order(&THROUGHPUT_TARGETS, 1), THROUGHPUT_TARGETS);
        assert_eq!(
            round_order(&THROUGHPUT_TARGETS, 2),
            ["haproxy", "three-hop", "chain", "all", "nginx"]
        );
        assert_eq!(
            round_order(&LATENCY_TARGETS, 3),
            ["chain", "all", "nginx", "three-hop"]
        );
        assert_eq!(round_order(&LATENCY_TARGETS, 5), LATENCY_TARGETS);
        let mut firsts: Vec<&str> = (1..=THROUGHPUT_TARGETS.len())
            .map(|round| round_order(&THROUGHPUT_TARGETS, round)[0])
            .collect();
        firsts.sort_unstable();
        let mut all = THROUGHPUT_TARGETS.to_vec();
        all.sort_unstable();
        assert_eq!(firsts, all, "every target comes first once");
    }

    #[test]
    fn the_warm_up_is_short_beside_a_timed_run() {
        assert!(WARM_UP >= Duration::from_secs(1), "wrk's shortest run");
        assert!(WARM_UP * 3 <= crate::plan::QUICK_WRK_DURATION);
    }

    fn met(rows: &[Row], metric: &str) -> Option<bool> {
        rows.iter().find(|r| r.metric == metric).unwrap().met
    }

    #[test]
    fn a_round_with_errors_on_either_side_meets_no_goal() {
        const VS_C_CHAIN: &str = "req/s -c64: 3-process chain (vs the C chain, 3 hops)";
        const ALL: &str = "req/s -c64: `all`, one process (vs nginx static)";
        const P50: &str = "p50 -c1: 3-process chain (vs the C chain, 3 hops)";
        const CPU: &str = "CPU/request -c64: 3-process chain (vs nginx static)";
        let clean = rows_with_errors("chain", 0);
        for metric in [VS_C_CHAIN, ALL, P50, CPU] {
            assert_eq!(met(&clean, metric), Some(true), "{metric}");
        }
        // The baseline's errors count too: its numbers leave the failed requests out.
        let c_chain = rows_with_errors("three-hop", 3);
        assert_eq!(met(&c_chain, VS_C_CHAIN), Some(false));
        assert_eq!(met(&c_chain, P50), Some(false));
        assert_eq!(met(&c_chain, ALL), Some(true), "nginx and all had none");
        let nginx = rows_with_errors("nginx", 1);
        assert_eq!(met(&nginx, ALL), Some(false));
        assert_eq!(met(&nginx, CPU), Some(false));
        let chain = rows_with_errors("chain", 1);
        assert_eq!(met(&chain, VS_C_CHAIN), Some(false));
        // The errors row shows every baseline's errors (both loads of round 2).
        let haproxy = rows_with_errors("haproxy", 2);
        let errors = haproxy
            .iter()
            .find(|r| r.metric.starts_with("errors under load"))
            .unwrap();
        assert_eq!((errors.baseline, errors.metaboot), (Some(4.0), Some(0.0)));
    }
}
