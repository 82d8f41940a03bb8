//! HTTP load with wrk: the runner (optionally inside a network namespace) and the parser of
//! its report, `--latency` percentiles included.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use metaboot_harness::lab::netns;
use metaboot_harness::process::output_with_timeout;
use serde::Serialize;

/// wrk's binary.
pub const WRK_BIN: &str = "wrk";

/// Extra time wrk gets beyond its own duration before it is killed (start-up, the last
/// requests' timeout).
pub const WRK_GRACE: Duration = Duration::from_secs(30);

/// Open connections of the throughput load (`wrk -c`).
pub const THROUGHPUT_CONNECTIONS: u32 = 64;

/// How hard and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Load {
    /// wrk threads (`-t`).
    pub threads: u32,
    /// Open connections (`-c`), kept alive.
    pub connections: u32,
    /// Duration of the run.
    pub duration: Duration,
}

impl Load {
    /// The throughput load: `-t2 -c64`.
    pub fn throughput(duration: Duration) -> Self {
        Self {
            threads: 2,
            connections: THROUGHPUT_CONNECTIONS,
            duration,
        }
    }

    /// One connection, one request at a time: latency without queueing.
    pub fn single(duration: Duration) -> Self {
        Self {
            threads: 1,
            connections: 1,
            duration,
        }
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrkRun {
    /// `Requests/sec:`: every answer counts, non-2xx ones too, and timed-out requests not at
    /// all (nor in the percentiles), so a run with [`WrkRun::errors`] overstates both.
    pub requests_per_sec: f64,
    /// Completed requests.
    pub requests: u64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    pub errors: u64,
}

/// Runs wrk against `url` (inside `netns` when given) and parses its report.
pub fn run(load: &Load, url: &str, netns: Option<&str>) -> anyhow::Result<WrkRun> {
    let mut cmd = match netns {
        Some(ns) => netns::exec(ns, WRK_BIN),
        None => Command::new(WRK_BIN),
    };
    let secs = load.duration.as_secs().max(1);
    cmd.args([
        format!("-t{}", load.threads),
        format!("-c{}", load.connections),
        format!("-d{secs}s"),
        "--latency".to_owned(),
        url.to_owned(),
    ]);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(secs) + WRK_GRACE)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk against {url} failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&stdout).with_context(|| format!("failed to read wrk's report for {url}:\n{stdout}"))
}

/// A wrk duration (`63.00us`, `1.15ms`, `2.00s`, `1.00m`) in µs.
fn micros(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Parses wrk's report (run with `--latency`).
pub fn parse(report: &str) -> anyhow::Result<WrkRun> {
    let mut requests_per_sec = None;
    let mut requests = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => requests_per_sec = value.parse::<f64>().ok(),
            ["50%", value] => p50 = micros(value),
            ["99%", value] => p99 = micros(value),
            [count, "requests", "in", ..] => requests = count.parse::<u64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                errors += count.parse::<u64>().context("bad non-2xx count")?;
            }
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for pair in rest.chunks(2) {
                    if let [_, count] = pair {
                        errors += count
                            .trim_end_matches(',')
                            .parse::<u64>()
                            .context("bad socket error count")?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(WrkRun {
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        requests: requests.context("no request count")?,
        p50_us: p50.context("no 50% latency (was wrk run with --latency?)")?,
        p99_us: p99.context("no 99% latency")?,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 2s test @ http://127.0.0.1:18080/x
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.08ms    8.80ms  94.57ms   97.18%
    Req/Sec    13.90k     5.93k   23.89k    55.00%
  Latency Distribution
     50%   63.00us
     75%    1.15ms
     90%    3.19ms
     99%   58.96ms
  27905 requests in 2.02s, 8.20MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 10
Requests/sec:  13835.08
Transfer/sec:      4.06MB
";

    #[test]
    fn parses_throughput_percentiles_and_errors() {
        let run = parse(REPORT).unwrap();
        assert_eq!(run.requests_per_sec, 13835.08);
        assert_eq!(run.requests, 27905);
        assert_eq!(run.p50_us, 63.0);
        assert!((run.p99_us - 58_960.0).abs() < 1e-6);
        assert_eq!(run.errors, 17);
    }

    #[test]
    fn a_report_without_latency_is_refused() {
        let without: String = REPORT
            .lines()
            .filter(|l| !l.contains('%') || l.contains("Stdev"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse(&without).unwrap_err().to_string();
        assert!(err.contains("--latency"), "{err}");
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(micros("38.00us"), Some(38.0));
        assert_eq!(micros("1.50ms"), Some(1500.0));
        assert_eq!(micros("2.00s"), Some(2e6));
        assert_eq!(micros("1.00m"), Some(60e6));
        assert_eq!(micros("12"), None);
    }
}
