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

/// The load targets, in the order each round loads them.
const THROUGHPUT_TARGETS: [&str; 5] = ["nginx", "haproxy", "three-hop", "chain", "all"];
const LATENCY_TARGETS: [&str; 4] = ["nginx", "three-hop", "chain", "all"];

/// The CPU µs each part spent per request of `run`, from its groups' CPU time `before` it.
fn cpu_per_request<'a>(
    parts: &[(&'a str, Vec<u32>)],
    before: Vec<Duration>,
    run: &WrkRun,
) -> Vec<(&'a str, f64)> {
    parts
        .iter()
        .zip(before)
        .map(|((part, groups), before)| {
            let used = groups_cpu(groups).saturating_sub(before);
            (*part, used.as_secs_f64() * 1e6 / run.requests.max(1) as f64)
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
    let group = |name: &str| baselines.group(name).unwrap_or(0);
    let parts = |name: &str| -> Vec<(&'static str, Vec<u32>)> {
        match name {
            "nginx" => vec![("nginx", vec![group("nginx-static")])],
            "haproxy" => vec![(
                "haproxy+nginx",
                vec![group("haproxy-neutron"), group("nginx-static")],
            )],
            "three-hop" => vec![(
                "3 hops",
                vec![
                    group("haproxy-3hop"),
                    group("nginx-hop"),
                    group("nginx-static"),
                ],
            )],
            "chain" => setup.chain.parts(),
            _ => vec![("all", vec![setup.all.server.pid()])],
        }
    };
    let mut loaded: BTreeMap<&str, Vec<WrkRun>> = BTreeMap::new();
    let mut single: BTreeMap<&str, Vec<WrkRun>> = BTreeMap::new();
    // CPU µs per request by target and part, from the -c64 runs.
    let mut cpu: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 1..=plan.rounds {
        for name in THROUGHPUT_TARGETS {
            interrupt::check()?;
            let (url, netns) = target(name);
            let parts = parts(name);
            let before: Vec<Duration> = parts.iter().map(|(_, g)| groups_cpu(g)).collect();
            let run = load::run(&Load::throughput(plan.wrk_duration), &url, netns)?;
            let mut split = String::new();
            for (part, per_request) in cpu_per_request(&parts, before, &run) {
                split.push_str(&format!(" {part} {per_request:.1}"));
                cpu.entry((name, part)).or_default().push(per_request);
            }
            println!(
                "  round {round}: {name:<9} -t2 -c64: {:>9.0} req/s, p50 {:>6.0} µs, p99 {:>7.0} µs, {} errors; CPU µs/request:{split}",
                run.requests_per_sec, run.p50_us, run.p99_us, run.errors
            );
            loaded.entry(name).or_default().push(run);
        }
        for name in LATENCY_TARGETS {
            interrupt::check()?;
            let (url, netns) = target(name);
            let parts = parts(name);
            let before: Vec<Duration> = parts.iter().map(|(_, g)| groups_cpu(g)).collect();
            let run = load::run(&Load::single(plan.latency_duration), &url, netns)?;
            let split: String = cpu_per_request(&parts, before, &run)
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
    let nginx_rps = pick(&loaded, "nginx", rps);
    let cpu_of = |name: &str, part: &str| cpu.get(&(name, part)).cloned().unwrap_or_default();
    let chain_cpu: Vec<f64> = (0..plan.rounds)
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
        ),
        row(
            "CPU/request -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            nginx_cpu.clone(),
            chain_cpu,
            Goal::RatioAtMost(CHAIN_CPU_VS_NGINX_GOAL),
        )
        .every_round(),
    ];
    for part in ["ns-proxy", "agent", "api"] {
        cpu_rows.push(row(
            &format!("CPU/request -c64:   of which {part} (vs nginx)"),
            Unit::Micros,
            nginx_cpu.clone(),
            cpu_of("chain", part),
            Goal::None,
        ));
    }
    cpu_rows.push(row(
        "CPU/request -c64: `all`, one process (vs nginx static)",
        Unit::Micros,
        nginx_cpu,
        cpu_of("all", "all"),
        Goal::None,
    ));
    let mut rows = vec![
        row(
            "req/s -c64: Neutron haproxy → UDS static (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(&loaded, "haproxy", rps),
            Goal::None,
        ),
        row(
            "req/s -c64: haproxy → nginx(UDS) → nginx, 3 hops (vs nginx)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(&loaded, "three-hop", rps),
            Goal::None,
        ),
        row(
            "req/s -c64: 3-process chain (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps.clone(),
            pick(&loaded, "chain", rps),
            Goal::None,
        ),
        row(
            "req/s -c64: 3-process chain (vs the C chain, 3 hops)",
            Unit::ReqPerSec,
            pick(&loaded, "three-hop", rps),
            pick(&loaded, "chain", rps),
            Goal::RatioAtLeast(CHAIN_VS_C_CHAIN_GOAL),
        )
        .every_round(),
        row(
            "req/s -c64: `all`, one process (vs nginx static)",
            Unit::ReqPerSec,
            nginx_rps,
            pick(&loaded, "all", rps),
            Goal::RatioAtLeast(ALL_RATIO_GOAL),
        )
        .every_round(),
        row(
            "p50 -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(&loaded, "nginx", p50),
            pick(&loaded, "chain", p50),
            Goal::None,
        ),
        row(
            "p99 -c64: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(&loaded, "nginx", p99),
            pick(&loaded, "chain", p99),
            Goal::None,
        ),
        row(
            "p50 -c1: haproxy → nginx(UDS) → nginx (vs nginx)",
            Unit::Micros,
            pick(&single, "nginx", p50),
            pick(&single, "three-hop", p50),
            Goal::None,
        ),
        row(
            "p50 -c1: 3-process chain (vs nginx static)",
            Unit::Micros,
            pick(&single, "nginx", p50),
            pick(&single, "chain", p50),
            Goal::None,
        ),
        row(
            "p50 -c1: 3-process chain (vs the C chain, 3 hops)",
            Unit::Micros,
            pick(&single, "three-hop", p50),
            pick(&single, "chain", p50),
            Goal::RatioAtMost(CHAIN_P50_VS_C_CHAIN_GOAL),
        )
        .every_round(),
        row(
            "p50 -c1: `all`, one process (vs nginx static)",
            Unit::Micros,
            pick(&single, "nginx", p50),
            pick(&single, "all", p50),
            Goal::None,
        ),
        row(
            "errors under load: chain + all (vs nginx)",
            Unit::Count,
            vec![
                pick(&loaded, "nginx", errors).iter().sum::<f64>()
                    + pick(&single, "nginx", errors).iter().sum::<f64>(),
            ],
            vec![
                ["chain", "all"]
                    .iter()
                    .map(|n| {
                        pick(&loaded, n, errors).iter().sum::<f64>()
                            + pick(&single, n, errors).iter().sum::<f64>()
                    })
                    .sum(),
            ],
            Goal::AtMost(0.0),
        ),
    ];
    rows.extend(cpu_rows);
    Ok(rows)
}
