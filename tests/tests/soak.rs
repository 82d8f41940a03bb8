//! The soak (not in CI; run `scripts/soak`): a load through the real chain for SOAK_SECONDS
//! (default 600), printing every 10 s the requests, the errors, the machine's load average (a
//! busy machine explains slow answers) and the resident memory of each chain process. It fails on any error, or when a process's memory keeps growing: the last
//! sample may exceed the first one taken after the warm-up by at most `MAX_RSS_GROWTH_KIB`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metaboot_tests::chain::{Chain, Scope};
use metaboot_tests::load::Load;

/// Default length of the soak.
const DEFAULT_SECONDS: u64 = 600;
/// Default number of guests (one load thread each).
const DEFAULT_GUESTS: u8 = 8;
/// How often a row is printed.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples before the RSS baseline is taken (allocators and caches settle first).
const WARM_UP_SAMPLES: usize = 2;
/// What a process may grow by between the baseline and the end.
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;
/// Client timeout of each request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
        Err(_) => default,
    }
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status); 0 when it is gone.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The 1-minute load average of the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "-".to_owned())
}

#[test]
#[ignore = "ten minutes long: run scripts/soak"]
fn soak() {
    let seconds = env_number("SOAK_SECONDS", DEFAULT_SECONDS);
    let guest_count = u8::try_from(env_number("SOAK_GUESTS", u64::from(DEFAULT_GUESTS)))
        .expect("SOAK_GUESTS must be at most 255");
    let mut chain = Chain::new().unwrap();
    let net = chain
        .registry(&["network", "create", "soak", "--cidr", "127.40.0.0/16"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let router = chain
        .registry(&["router", "create", "r-soak", "--network", &net])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_data = chain.path().join("user-data");
    std::fs::write(&user_data, "#cloud-config\nhostname: soak\n").unwrap();
    let guests: Vec<IpAddr> = (0..guest_count)
        .map(|i| IpAddr::from([127, 40, 0, 10 + i]))
        .collect();
    for (i, ip) in guests.iter().enumerate() {
        chain
            .registry(&[
                "instance",
                "create",
                &format!("soak{i}"),
                "--network",
                "soak",
                "--ip",
                &ip.to_string(),
                "--user-data",
                user_data.to_str().unwrap(),
            ])
            .unwrap();
    }
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    let roles = chain.pids();
    let load = Load::start(
        proxy,
        &guests,
        "/openstack/latest/meta_data.json",
        CLIENT_TIMEOUT,
        false,
    );
    let mut header = format!(
        "{:>6} {:>10} {:>7} {:>7} {:>6}",
        "time", "requests", "errors", "req/s", "load"
    );
    for (name, _) in &roles {
        header.push_str(&format!(" {:>12}", format!("{name} KiB")));
    }
    println!(
        "soak: {seconds} s, {guest_count} guests through {proxy}, a row every {SAMPLE_EVERY:?}"
    );
    println!("{header}");
    let started = Instant::now();
    let mut samples: Vec<Vec<u64>> = Vec::new();
    let mut last_requests = 0;
    let mut next = started + SAMPLE_EVERY;
    let end = started + Duration::from_secs(seconds);
    while next <= end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let requests = load.counters().requests.load(Ordering::Relaxed);
        let errors = load.counters().errors.load(Ordering::Relaxed);
        let rss: Vec<u64> = roles.iter().map(|(_, pid)| rss_kib(*pid)).collect();
        let mut row = format!(
            "{:>5}s {requests:>10} {errors:>7} {:>7} {:>6}",
            started.elapsed().as_secs(),
            (requests - last_requests) / SAMPLE_EVERY.as_secs(),
            load_average()
        );
        for kib in &rss {
            row.push_str(&format!(" {kib:>12}"));
        }
        println!("{row}");
        last_requests = requests;
        samples.push(rss);
        next += SAMPLE_EVERY;
    }
    let requests = load.counters().requests.load(Ordering::Relaxed);
    let errors = load.counters().errors.load(Ordering::Relaxed);
    drop(load.stop());
    println!("soak: {requests} requests, {errors} errors");
    assert_eq!(errors, 0, "requests failed during the soak");
    assert!(requests > 0, "no request was sent");
    if samples.len() > WARM_UP_SAMPLES {
        let (baseline, last) = (&samples[WARM_UP_SAMPLES - 1], &samples[samples.len() - 1]);
        for (i, (name, _)) in roles.iter().enumerate() {
            println!(
                "{name}: {} KiB after the warm-up, {} KiB at the end",
                baseline[i], last[i]
            );
            assert!(last[i] > 0, "{name} died during the soak");
            assert!(
                last[i] <= baseline[i] + MAX_RSS_GROWTH_KIB,
                "{name} kept growing: {} KiB → {} KiB",
                baseline[i],
                last[i]
            );
        }
    }
}
