//! `all`'s host bridges, unprivileged: a fake `ip` and the loopback interface.

use std::io::{Read as _, Write as _};
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;

use super::*;
use crate::http::Body;
use crate::http::response::{Reply, TEXT_PLAIN};
use crate::retry::BACKOFF_BASE;
use crate::store::NewNetwork;

/// Answers every request `200 served`.
#[derive(Clone)]
struct Answers;

impl Forward for Answers {
    async fn forward(&self, _: Request<Full<Bytes>>) -> Response<Body> {
        Reply::with(StatusCode::OK, TEXT_PLAIN, Bytes::from_static(b"served"))
    }
}

/// An `ip` that only writes down how it was called (one line per call) and succeeds: no
/// interface of the machine is touched.
fn fake_ip(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let calls = dir.join("ip-calls");
    let script = dir.join("ip");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A host network on `lo` served on a loopback port: while another socket holds the port,
/// the address is never put on the bridge (nor taken off again at every pass), and the
/// network is tried again after the backoff, not at every pass; once the port is free it
/// is served, the address put on once, and taken off at the stop.
#[test]
fn a_port_another_server_holds_leaves_the_bridge_untouched_and_waits_out_a_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, log) = fake_ip(dir.path());
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    let network = store
        .create_network(&NewNetwork {
            name: "lan".into(),
            project: "p".into(),
            cidr: "198.18.30.0/24".parse().unwrap(),
            host: Some(HostBridge::Bridge("lo".into())),
            ..NewNetwork::default()
        })
        .unwrap();
    let model = ReadModel::load(store.as_ref()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let metrics = Metrics::new("proxy");
    let leases = Arc::new(HostLeases::new(dir.path().join("leases")));
    let mut hosts = HostBridges::new(leases, BACKOFF_BASE, metrics.clone()).serving(listen, ip);
    let workers = Workers::start(1).unwrap();
    let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());
    let limits = ServerLimits::default();

    let started = Instant::now();
    let mut passes = 0;
    while started.elapsed() < BACKOFF_BASE / 2 {
        hosts.reconcile(&model, &workers, limits, &make, &Answers);
        passes += 1;
    }
    assert!(passes > 1, "{passes}");
    assert_eq!(calls(&log), Vec::<String>::new(), "the bridge was touched");
    assert!(hosts.bridges().is_empty());
    assert_eq!(
        hosts.retry_after.failures(&network.id),
        1,
        "tried at every pass instead of after its backoff"
    );

    drop(taken);
    std::thread::sleep(BACKOFF_BASE);
    hosts.reconcile(&model, &workers, limits, &make, &Answers);
    assert_eq!(hosts.bridges(), [Arc::from("lo")]);
    let put_on = format!("addr replace {}/32 dev lo label lo:mb", listen.ip());
    assert_eq!(calls(&log), std::slice::from_ref(&put_on));
    let mut guest = std::net::TcpStream::connect(listen).unwrap();
    guest
        .write_all(b"GET /openstack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    guest.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("served"),
        "{answer}"
    );

    drop(hosts);
    let taken_off = format!("addr del {}/32 dev lo", listen.ip());
    assert_eq!(calls(&log), [put_on, taken_off]);
}

/// A host network named `name` on `host`, in `store`: its id.
fn host_network(store: &dyn crate::store::Store, name: &str, host: HostBridge) -> String {
    store
        .create_network(&NewNetwork {
            name: name.into(),
            project: "p".into(),
            cidr: "198.18.30.0/24".parse().unwrap(),
            host: Some(host),
            ..NewNetwork::default()
        })
        .unwrap()
        .id
}

/// Ends the listener of `network` as an accept that fails for good would, and waits until
/// its tasks are over.
fn end_listener(hosts: &HostBridges, network: &str) {
    let tasks = &hosts.served[network].tasks;
    assert!(!tasks.is_empty(), "{network} is not listening");
    tasks.iter().for_each(JoinHandle::abort);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tasks.iter().all(JoinHandle::is_finished) {
        assert!(
            Instant::now() < deadline,
            "the listener's tasks never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A host network whose listener stopped by itself keeps its address on the bridge while
/// it waits out its backoff (the network still wants it), and the address is taken off
/// when the network is deleted meanwhile, or at a clean stop.
#[test]
fn an_address_whose_listener_ended_is_taken_off_at_a_delete_or_a_stop() {
    for delete in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (ip, log) = fake_ip(dir.path());
        let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
        let network = host_network(store.as_ref(), "lan", HostBridge::Bridge("lo".into()));
        let metrics = Metrics::new("proxy");
        let leases = Arc::new(HostLeases::new(dir.path().join("leases")));
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut hosts = HostBridges::new(leases, BACKOFF_BASE, metrics.clone()).serving(listen, ip);
        let workers = Workers::start(1).unwrap();
        let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());
        let limits = ServerLimits::default();
        let model = ReadModel::load(store.as_ref()).unwrap();
        hosts.reconcile(&model, &workers, limits, &make, &Answers);
        let put_on = format!("addr replace {}/32 dev lo label lo:mb", listen.ip());
        assert_eq!(calls(&log), std::slice::from_ref(&put_on));

        end_listener(&hosts, &network);
        hosts.reconcile(&model, &workers, limits, &make, &Answers);
        assert_eq!(
            calls(&log),
            std::slice::from_ref(&put_on),
            "taken off while wanted"
        );
        assert!(hosts.bridges().is_empty(), "bound again before its backoff");

        let taken_off = format!("addr del {}/32 dev lo", listen.ip());
        if delete {
            store.delete_network(&network).unwrap();
            let model = ReadModel::load(store.as_ref()).unwrap();
            hosts.reconcile(&model, &workers, limits, &make, &Answers);
            assert_eq!(calls(&log), [put_on.clone(), taken_off.clone()], "deleted");
            drop(hosts);
            assert_eq!(calls(&log), [put_on, taken_off], "taken off twice");
        } else {
            drop(hosts);
            assert_eq!(calls(&log), [put_on, taken_off], "stopped");
        }
    }
}

/// Of two networks on one bridge the older is served; when its listener stops by itself,
/// the younger is not bound in its place while it waits, and after its backoff the older
/// is served again.
#[test]
fn a_bridge_whose_listener_ended_is_kept_for_its_network() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, log) = fake_ip(dir.path());
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    // A libvirt network and a `--bridge` that turn out to be one bridge, lo.
    let leases_dir = dir.path().join("leases");
    std::fs::create_dir(&leases_dir).unwrap();
    std::fs::write(leases_dir.join("lab.conf"), "interface=lo\n").unwrap();
    host_network(
        store.as_ref(),
        "lab",
        HostBridge::LibvirtNetwork("lab".into()),
    );
    host_network(store.as_ref(), "lan", HostBridge::Bridge("lo".into()));
    let model = ReadModel::load(store.as_ref()).unwrap();
    // The registry's clock counts seconds: the older is the one it says.
    let [(older, _), (younger, _)] = <[_; 2]>::try_from(model.host_networks()).unwrap();
    let metrics = Metrics::new("proxy");
    let leases = Arc::new(HostLeases::new(leases_dir));
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut hosts = HostBridges::new(leases, BACKOFF_BASE, metrics.clone()).serving(listen, ip);
    let workers = Workers::start(1).unwrap();
    let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());
    let limits = ServerLimits::default();
    let serving = |hosts: &HostBridges| -> Vec<String> {
        let mut ids: Vec<String> = hosts
            .served
            .iter()
            .filter(|(_, served)| served.listening())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    };
    hosts.reconcile(&model, &workers, limits, &make, &Answers);
    assert_eq!(serving(&hosts), std::slice::from_ref(&older));
    let refused = format!("bridge lo already serves network {older}");
    assert!(
        hosts.failing[&younger].contains(&refused),
        "{:?}",
        hosts.failing
    );

    end_listener(&hosts, &older);
    hosts.reconcile(&model, &workers, limits, &make, &Answers);
    assert_eq!(
        serving(&hosts),
        Vec::<String>::new(),
        "the younger took the bridge"
    );
    assert!(
        hosts.failing[&younger].contains(&refused),
        "{:?}",
        hosts.failing
    );

    std::thread::sleep(BACKOFF_BASE);
    hosts.reconcile(&model, &workers, limits, &make, &Answers);
    assert_eq!(
        serving(&hosts),
        std::slice::from_ref(&older),
        "the older is not served again"
    );
    assert!(
        hosts.failing[&younger].contains(&refused),
        "{:?}",
        hosts.failing
    );
    let put_on = format!("addr replace {}/32 dev lo label lo:mb", listen.ip());
    assert_eq!(calls(&log), [put_on.clone(), put_on]);
}

#[test]
fn the_label_marks_the_address_as_alls_own_when_the_name_leaves_room() {
    assert_eq!(address_label("virbr0").as_deref(), Some("virbr0:mb"));
    assert_eq!(
        address_label("br-012345678").map(|label| label.len()),
        Some(MAX_ADDRESS_LABEL_BYTES)
    );
    assert_eq!(address_label("br-0123456789"), None);
    assert_eq!(
        Holder::named("virbr0:mb"),
        Holder {
            bridge: "virbr0".into(),
            ours: true
        }
    );
    for (name, bridge) in [
        ("virbr0", "virbr0"),
        ("virbr0:1", "virbr0"),
        ("lo:mbx", "lo"),
    ] {
        assert_eq!(
            Holder::named(name),
            Holder {
                bridge: bridge.into(),
                ours: false
            },
            "{name}"
        );
    }
}

/// Only an address under `all`'s label, on a bridge that serves no network now, is taken
/// off at start; one put there by anyone else stays, and so does one on a served bridge.
#[test]
fn only_alls_own_address_on_a_bridge_serving_nothing_is_left_behind() {
    let holding: Vec<Holder> = [
        "virbr0:mb",
        "virbr1:mb",
        "virbr1:mb",
        "br-admin",
        "virbr2:1",
    ]
    .into_iter()
    .map(Holder::named)
    .collect();
    let serves = |bridge: &str| bridge == "virbr0";
    assert_eq!(left_behind(&holding, serves), ["virbr1"]);
    assert!(left_behind(&holding, |_| true).is_empty());
}

/// The first pass, with no network to serve, never touches an address `all` did not
/// label (lo's 127.0.0.1 stands for one). Taking `all`'s own off a real bridge needs root:
/// `tests/tests/host_bridge.rs`.
#[test]
fn the_first_pass_never_touches_an_address_all_did_not_label() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, log) = fake_ip(dir.path());
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    let model = ReadModel::load(store.as_ref()).unwrap();
    let metrics = Metrics::new("proxy");
    let leases = Arc::new(HostLeases::new(dir.path().join("leases")));
    let workers = Workers::start(1).unwrap();
    let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());
    // lo holds 127.0.0.1 under its own name: someone else's, never touched.
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut hosts =
        HostBridges::new(leases, BACKOFF_BASE, Metrics::new("proxy")).serving(listen, ip);
    hosts.reconcile(&model, &workers, ServerLimits::default(), &make, &Answers);
    assert_eq!(calls(&log), Vec::<String>::new());
    assert!(hosts.swept);
}

/// The log lines written while it runs, as `all`'s stderr shows them.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The lines that contain `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

/// Putting the address back on a served bridge that lost it (lo never holds 127.0.0.77,
/// so every pass finds it lost) fails at every pass: the failure is logged once, again when
/// the error changes, and the address back is logged once more, not once a pass.
#[test]
fn a_failure_to_put_the_address_back_is_logged_when_it_changes_not_at_every_pass() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let fail = dir.path().join("fail");
    let ip = dir.path().join("ip");
    std::fs::write(
        &ip,
        format!(
            "#!/bin/sh\nif [ -e '{0}' ]; then cat '{0}' >&2; exit 2; fi\n",
            fail.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    host_network(store.as_ref(), "lan", HostBridge::Bridge("lo".into()));
    let model = ReadModel::load(store.as_ref()).unwrap();
    let metrics = Metrics::new("proxy");
    let leases = Arc::new(HostLeases::new(dir.path().join("leases")));
    let listen: SocketAddr = "127.0.0.77:0".parse().unwrap();
    let mut hosts = HostBridges::new(leases, BACKOFF_BASE, metrics.clone()).serving(listen, ip);
    let workers = Workers::start(1).unwrap();
    let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());
    let limits = ServerLimits::default();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        hosts.reconcile(&model, &workers, limits, &make, &Answers);
        assert_eq!(hosts.bridges(), [Arc::from("lo")]);
        std::fs::write(&fail, "RTNETLINK answers: Operation not permitted").unwrap();
        for _ in 0..5 {
            hosts.reconcile(&model, &workers, limits, &make, &Answers);
        }
        std::fs::write(&fail, "Cannot find device \"lo\"").unwrap();
        for _ in 0..5 {
            hosts.reconcile(&model, &workers, limits, &make, &Answers);
        }
        std::fs::remove_file(&fail).unwrap();
        for _ in 0..3 {
            hosts.reconcile(&model, &workers, limits, &make, &Answers);
        }
    });
    let failed = logs.lines_with("cannot be put back");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(
        failed[0].contains("Operation not permitted") && failed[0].contains("attempts=1"),
        "{failed:#?}"
    );
    assert!(
        failed[1].contains("Cannot find device") && failed[1].contains("attempts=6"),
        "{failed:#?}"
    );
    let back = logs.lines_with("back on the bridge after failed attempts");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(back[0].contains("attempts=10"), "{back:#?}");
}

/// A failure that repeats unchanged is logged again once [`RESTORE_LOG_INTERVAL`] has
/// passed since it was last logged, not before.
#[test]
fn a_repeated_failure_to_put_the_address_back_is_logged_again_after_the_interval() {
    let start = Instant::now();
    let error = || "RTNETLINK answers: Operation not permitted".to_owned();
    let (first, log) = Restoring::failed(None, error(), start);
    assert!(log);
    let soon = start + RESTORE_LOG_INTERVAL / 2;
    let (again, log) = Restoring::failed(Some(first), error(), soon);
    assert!(!log);
    assert_eq!((again.attempts, again.logged), (2, start));
    let later = start + RESTORE_LOG_INTERVAL;
    let (after, log) = Restoring::failed(Some(again), error(), later);
    assert!(log);
    assert_eq!((after.attempts, after.logged), (3, later));
}

/// An `ip` that hangs (behind the kernel's routing lock) holds the pass, and so a stop, up
/// only to its bound: killed, the attempt counts as failed and the network waits out its
/// backoff, not served (its bridge does not hold the address).
#[test]
fn an_ip_command_that_hangs_is_killed_past_its_bound() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let ip = dir.path().join("ip");
    std::fs::write(&ip, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = crate::store::open(dir.path().join("r.sqlite").to_str().unwrap()).unwrap();
    let network = host_network(store.as_ref(), "lan", HostBridge::Bridge("lo".into()));
    let model = ReadModel::load(store.as_ref()).unwrap();
    let metrics = Metrics::new("proxy");
    let leases = Arc::new(HostLeases::new(dir.path().join("leases")));
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut hosts = HostBridges::new(leases, BACKOFF_BASE, metrics.clone()).serving(listen, ip);
    let bound = Duration::from_millis(300);
    hosts.address.ip_timeout = bound;
    let workers = Workers::start(1).unwrap();
    let make = move |scope, forward| ProxyHandler::new(scope, forward, None, metrics.clone());

    let started = Instant::now();
    hosts.reconcile(&model, &workers, ServerLimits::default(), &make, &Answers);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the pass took {took:?}");
    assert!(hosts.bridges().is_empty());
    let problem = hosts.failing.get(&network).cloned().unwrap_or_default();
    assert!(
        problem.contains(&format!("did not finish within {bound:?}")),
        "{problem}"
    );
    assert_eq!(hosts.retry_after.failures(&network), 1);
}

#[test]
fn an_ip_command_gets_seconds_not_minutes() {
    assert!(IP_COMMAND_TIMEOUT >= Duration::from_secs(1));
    // Well within systemd's default stop timeout (90 s), with a few calls in one pass.
    assert!(IP_COMMAND_TIMEOUT <= Duration::from_secs(10));
}
