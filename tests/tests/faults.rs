//! Faults while a load runs through the chain: the API killed (-9) and restarted, the agent
//! killed and restarted, the SQLite registry locked by another process, PostgreSQL stopped and
//! started. Every request gets an HTTP answer — 200, or 502/503/504 — none takes longer than
//! the chain's own timeouts, failures stay inside the fault, and the chain recovers by itself:
//! the roles that were not touched keep running (same PIDs).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use metaboot_harness::postgres::PgServer;
use metaboot_tests::chain::{Chain, Scope};
use metaboot_tests::load::{Answer, Load, Outcome};
use metaboot_tests::prerequisite::require;

const META_DATA: &str = "/openstack/latest/meta_data.json";
/// Guests of the load, one thread each.
const GUESTS: u8 = 4;
/// The chain's longest own timeout (the proxy's --agent-timeout in `Chain`) plus slack for a
/// loaded 2-core machine: no request may take longer.
const ANSWER_BOUND: Duration = Duration::from_millis(6500);
/// A dead upstream is noticed at once: failures during a kill come within this.
const AT_ONCE: Duration = Duration::from_millis(1500);
/// The client gives up after this (well past `ANSWER_BOUND`, so a hang shows as a slow answer).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// After the fault ends, the chain answers 200 again within this.
const RECOVERY: Duration = Duration::from_secs(5);
/// Load before the fault, to prove the baseline is all 200.
const BASELINE: Duration = Duration::from_secs(1);

struct World {
    chain: Chain,
    proxy: SocketAddr,
    guests: Vec<IpAddr>,
}

fn guest_ip(i: u8) -> IpAddr {
    IpAddr::from([127, 30, 0, 10 + i])
}

/// A network, a router, `GUESTS` instances, and the chain over them.
fn world(mut chain: Chain) -> World {
    let id = |v: serde_json::Value, field: &str| v[field].as_str().unwrap().to_owned();
    let net = id(
        chain
            .registry(&["network", "create", "load", "--cidr", "127.30.0.0/24"])
            .unwrap(),
        "id",
    );
    let router = id(
        chain
            .registry(&["router", "create", "r-load", "--network", &net])
            .unwrap(),
        "id",
    );
    let guests: Vec<IpAddr> = (0..GUESTS).map(guest_ip).collect();
    for (i, ip) in guests.iter().enumerate() {
        chain
            .registry(&[
                "instance",
                "create",
                &format!("guest{i}"),
                "--network",
                "load",
                "--ip",
                &ip.to_string(),
            ])
            .unwrap();
    }
    chain.start().unwrap();
    let proxy = chain.start_proxy(&Scope::Router(router), &[]).unwrap();
    World {
        chain,
        proxy,
        guests,
    }
}

/// What happened around a fault.
struct Report {
    outcomes: Vec<Outcome>,
    fault_start: Duration,
    fault_end: Duration,
}

impl Report {
    fn failures(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.answer != Answer::Status(200))
            .collect()
    }

    fn summary(&self) -> String {
        let mut counts = std::collections::BTreeMap::new();
        for o in &self.outcomes {
            *counts.entry(format!("{:?}", o.answer)).or_insert(0) += 1;
        }
        format!(
            "{} requests, fault {:?}..{:?}: {counts:?}",
            self.outcomes.len(),
            self.fault_start,
            self.fault_end
        )
    }

    /// The rules every fault must keep.
    fn check(&self, failures_at_once: bool) {
        let summary = self.summary();
        eprintln!("{summary}");
        assert!(
            self.outcomes.iter().any(|o| o.sent > self.fault_end),
            "{summary}"
        );
        for o in &self.outcomes {
            assert!(
                matches!(o.answer, Answer::Status(200 | 502 | 503 | 504)),
                "{o:?}; {summary}"
            );
            assert!(o.took < ANSWER_BOUND, "a request hung: {o:?}; {summary}");
            if o.sent + o.took < self.fault_start {
                assert_eq!(o.answer, Answer::Status(200), "baseline: {o:?}; {summary}");
            }
            if o.sent > self.fault_end + RECOVERY {
                assert_eq!(
                    o.answer,
                    Answer::Status(200),
                    "not recovered: {o:?}; {summary}"
                );
            }
        }
        for o in self.failures() {
            assert!(
                o.sent + o.took >= self.fault_start,
                "failed before the fault: {o:?}; {summary}"
            );
            if failures_at_once {
                assert!(o.took < AT_ONCE, "a failure was slow: {o:?}; {summary}");
            }
        }
    }
}

/// Runs the load, applies `fault` after the baseline, keeps the load on until the chain has
/// had `RECOVERY` to come back, and reports. The PIDs of roles `fault` does not restart must
/// not change.
fn under_load(w: &mut World, untouched: &[&str], fault: impl FnOnce(&mut World)) -> Report {
    let pids_before = w.chain.pids();
    let load = Load::start(w.proxy, &w.guests, META_DATA, CLIENT_TIMEOUT, true);
    std::thread::sleep(BASELINE);
    let fault_start = load.elapsed();
    fault(w);
    let fault_end = load.elapsed();
    std::thread::sleep(RECOVERY + Duration::from_secs(1));
    let outcomes = load.stop();
    let pids_after = w.chain.pids();
    for name in untouched {
        let pid = |pids: &[(String, u32)]| pids.iter().find(|(n, _)| n == name).map(|p| p.1);
        assert_eq!(pid(&pids_before), pid(&pids_after), "{name} was restarted");
        assert!(pid(&pids_after).is_some(), "{name} is not running");
    }
    Report {
        outcomes,
        fault_start,
        fault_end,
    }
}

/// How long a killed role stays down.
const DOWN: Duration = Duration::from_millis(1500);

#[test]
fn api_killed_and_restarted_under_load() {
    let mut w = world(Chain::new().unwrap());
    let report = under_load(&mut w, &["agent", "proxy-0"], |w| {
        w.chain.stop_api();
        std::thread::sleep(DOWN);
        w.chain.start_api().unwrap();
    });
    report.check(true);
    assert!(
        report
            .failures()
            .iter()
            .any(|o| o.answer == Answer::Status(503)),
        "the API was down and nobody noticed: {}",
        report.summary()
    );
}

#[test]
fn agent_killed_and_restarted_under_load() {
    let mut w = world(Chain::new().unwrap());
    let report = under_load(&mut w, &["api", "proxy-0"], |w| {
        w.chain.stop_agent();
        std::thread::sleep(DOWN);
        w.chain.start_agent().unwrap();
    });
    report.check(true);
    assert!(
        report
            .failures()
            .iter()
            .any(|o| o.answer == Answer::Status(503)),
        "{}",
        report.summary()
    );
}

/// How long another process holds the SQLite write lock: past the store's busy timeout.
const LOCK_HELD: Duration = Duration::from_secs(7);

#[test]
fn sqlite_registry_locked_by_another_process_under_load() {
    let mut w = world(Chain::new().unwrap());
    let db = w.chain.db.clone();
    let proxy = w.proxy;
    let writer = w.guests[0];
    let post = move || {
        metaboot_tests::load::request_with_body(
            writer,
            proxy,
            "POST",
            "/openstack/latest/password",
            b"c2VjcmV0",
            CLIENT_TIMEOUT,
        )
    };
    let mut during = None;
    let report = under_load(&mut w, &["api", "agent", "proxy-0"], |_| {
        let lock = rusqlite::Connection::open(&db).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        // A write while the lock is held: refused within the chain's timeouts.
        let refused = post();
        during = Some((refused, started.elapsed()));
        std::thread::sleep(LOCK_HELD.saturating_sub(started.elapsed()));
        lock.execute_batch("ROLLBACK").unwrap();
    });
    report.check(false);
    let (refused, took) = during.unwrap();
    assert!(
        matches!(refused.0, Answer::Status(503 | 504)),
        "{refused:?} {}",
        report.summary()
    );
    assert!(took < ANSWER_BOUND, "the write waited {took:?}");
    // The refused write was not half-applied: the password can be set now, once.
    let (answer, _) = post();
    assert_eq!(answer, Answer::Status(200));
    assert_eq!(post().0, Answer::Status(409));
}

#[test]
fn postgresql_stopped_and_started_under_load() {
    let server = PgServer::start();
    if !require(
        "PostgreSQL",
        server.as_ref().err().map(|err| format!("{err:#}")),
    ) {
        return;
    }
    let mut server = server.unwrap();
    // Below the ephemeral range: the load's own connections cannot take the port while the
    // server is down, and `start_again` binds it again.
    assert!(
        metaboot_harness::chain::PORTS.contains(&server.port()),
        "PostgreSQL listens on {}",
        server.port()
    );
    let url = server.create_database("faults").unwrap();
    let mut w = world(Chain::with_database(&url).unwrap());
    let (proxy, writer) = (w.proxy, w.guests[0]);
    let post = move || {
        metaboot_tests::load::request_with_body(
            writer,
            proxy,
            "POST",
            "/openstack/latest/password",
            b"c2VjcmV0",
            CLIENT_TIMEOUT,
        )
    };
    let mut during = None;
    let report = under_load(&mut w, &["api", "agent", "proxy-0"], |_| {
        server.stop().unwrap();
        let started = std::time::Instant::now();
        // A write while PostgreSQL is down: refused at once.
        during = Some((post(), started.elapsed()));
        std::thread::sleep(DOWN.saturating_sub(started.elapsed()));
        server.start_again().unwrap();
    });
    report.check(true);
    // Reads are answered from the read models in memory: not one failed.
    assert!(
        report.failures().is_empty(),
        "reads failed while PostgreSQL was down: {}",
        report.summary()
    );
    let (refused, took) = during.unwrap();
    assert_eq!(refused.0, Answer::Status(503), "{}", report.summary());
    assert!(took < AT_ONCE, "the write waited {took:?}");
    // Nothing of the refused write was kept: the password can be set now, once.
    assert_eq!(post().0, Answer::Status(200));
    assert_eq!(post().0, Answer::Status(409));
}
