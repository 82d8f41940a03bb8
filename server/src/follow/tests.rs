//! The follower over a real SQLite registry: a panic while catching up does not end it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::store::{self, NewInstance, NewNetwork, NewPort, Wakeups};

/// How long a change may take to reach the model here: the poll, the pause after a panic and
/// a reload, on a loaded host.
const SERVED_WITHIN: Duration = Duration::from_secs(20);

/// A listener with a bug: it panics the first time it is told of changes.
#[derive(Default)]
struct PanicsOnce {
    panicked: AtomicBool,
    lagged: AtomicUsize,
}

impl ChangeListener for PanicsOnce {
    fn changed(&self, _: &[Change]) {
        assert!(
            self.panicked.swap(true, Ordering::SeqCst),
            "a listener's bug"
        );
    }
    fn lagged(&self) {
        self.lagged.fetch_add(1, Ordering::SeqCst);
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn create(store: &dyn Store, network: &str, n: u32) {
    let instance = NewInstance {
        uuid: uuid(n),
        project: "p".into(),
        name: format!("vm{n}"),
        hostname: format!("vm{n}"),
        ..NewInstance::default()
    };
    let port = NewPort {
        network_id: network.to_owned(),
        ..NewPort::default()
    };
    store.create_instance(&instance, &port).unwrap();
}

fn served_soon(model: &ReadModel, n: u32) -> bool {
    let until = Instant::now() + SERVED_WITHIN;
    while Instant::now() < until {
        if model.instance(&uuid(n)).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_first_panic_reloads_at_once_and_repeated_ones_ever_more_slowly() {
    assert_eq!(panic_pause(1), Duration::ZERO);
    assert_eq!(panic_pause(2), PANIC_RETRY_INTERVAL);
    assert_eq!(panic_pause(3), 2 * PANIC_RETRY_INTERVAL);
    assert_eq!(panic_pause(8), MAX_PANIC_RETRY_INTERVAL);
    assert_eq!(panic_pause(u32::MAX), MAX_PANIC_RETRY_INTERVAL);
}

#[test]
fn a_panic_at_every_change_backs_off_though_reloads_succeed_between() {
    let start = Instant::now();
    let mut panics = Panics::default();
    assert_eq!(panics.panicked(start), Duration::ZERO);
    // The reload succeeds, then the listener panics at the next change.
    panics.followed(start + Duration::from_millis(20));
    assert_eq!(
        panics.panicked(start + Duration::from_millis(40)),
        PANIC_RETRY_INTERVAL
    );
    panics.followed(start + Duration::from_secs(2));
    assert_eq!(
        panics.panicked(start + Duration::from_secs(3)),
        2 * PANIC_RETRY_INTERVAL
    );
    // Quiet for as long as the longest pause: the next panic is a first one again.
    let quiet = start + Duration::from_secs(3) + MAX_PANIC_RETRY_INTERVAL;
    panics.followed(quiet);
    assert_eq!(panics.panicked(quiet), Duration::ZERO);
}

#[test]
fn a_panic_while_following_reloads_the_model_and_following_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r.sqlite").display().to_string();
    let store = store::open(&url).unwrap();
    let network = store
        .create_network(&NewNetwork {
            name: "net".into(),
            project: "p".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            ..NewNetwork::default()
        })
        .unwrap()
        .id;
    let model = Arc::new(ReadModel::load(store.as_ref()).unwrap());
    let listener = Arc::new(PanicsOnce::default());
    let listeners: Vec<Arc<dyn ChangeListener>> = vec![listener.clone()];
    follow(store.clone(), model.clone(), listeners).unwrap();

    create(store.as_ref(), &network, 1);
    assert!(served_soon(&model, 1));
    // The listener panicked on that change; a later one still reaches the model, and the
    // listener is told to start over.
    create(store.as_ref(), &network, 2);
    assert!(served_soon(&model, 2), "the follower stopped after a panic");
    assert!(listener.panicked.load(Ordering::SeqCst));
    assert!(listener.lagged.load(Ordering::SeqCst) >= 1);
}

/// Notifications that never come: each wait counts and times out at once.
struct Silent(Arc<AtomicUsize>);

impl Wakeups for Silent {
    fn wait(&mut self, _: Duration) -> crate::store::StoreResult<bool> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(false)
    }
}

#[test]
fn listening_again_catches_up_at_once_instead_of_waiting_for_a_notification() {
    let waits = Arc::new(AtomicUsize::new(0));
    let counted = waits.clone();
    let listen = move || -> crate::store::StoreResult<Option<Box<dyn Wakeups>>> {
        Ok(Some(Box::new(Silent(counted.clone()))))
    };
    let mut waiter = Waiter::Listen(None, Instant::now());
    let started = Instant::now();
    waiter.wait_guarded(&listen);
    assert!(
        started.elapsed() < NOTIFIED_POLL_INTERVAL,
        "waited {:?} after listening again",
        started.elapsed()
    );
    assert_eq!(waits.load(Ordering::SeqCst), 0);
    assert!(matches!(waiter, Waiter::Listen(Some(_), _)));
    // Listening: the next wait is for a notification.
    waiter.wait_guarded(&listen);
    assert_eq!(waits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panic_while_listening_is_a_lost_connection_not_the_end_of_following() {
    let listen = || -> crate::store::StoreResult<Option<Box<dyn Wakeups>>> {
        panic!("a bug in opening the notification connection")
    };
    let mut waiter = Waiter::Listen(None, Instant::now());
    waiter.wait_guarded(&listen);
    let Waiter::Listen(None, retry_at) = waiter else {
        panic!("the waiter should be polling until it listens again");
    };
    assert!(
        retry_at > Instant::now(),
        "listening again at once would panic in a loop"
    );
}

#[test]
fn failed_reloads_wait_ever_longer_up_to_a_bound() {
    assert_eq!(reload_pause(0), Duration::ZERO);
    assert_eq!(reload_pause(1), RELOAD_RETRY_INTERVAL);
    assert_eq!(reload_pause(2), 2 * RELOAD_RETRY_INTERVAL);
    assert_eq!(reload_pause(7), MAX_RELOAD_RETRY_INTERVAL);
    assert_eq!(reload_pause(u32::MAX), MAX_RELOAD_RETRY_INTERVAL);
    // A failed reload waits at least as long as a notification would have.
    assert!(RELOAD_RETRY_INTERVAL >= NOTIFIED_POLL_INTERVAL);
}

/// A reload asked for (or failed) is owed until one succeeds: what the follower's pause after
/// failed reloads goes by.
#[test]
fn a_reload_is_owed_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite");
    let store = store::open(&path.display().to_string()).unwrap();
    let model = ReadModel::load(store.as_ref()).unwrap();
    assert!(!model.owes_reload());
    model.owe_reload();
    assert!(model.owes_reload());
    model.catch_up(store.as_ref()).unwrap();
    assert!(
        !model.owes_reload(),
        "a reload that succeeded is no longer owed"
    );
}
