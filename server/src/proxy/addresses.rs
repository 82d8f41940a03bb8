//! The addresses a standalone `ns-proxy` listens on, each served on its own as soon as it can
//! be bound: an address no interface holds yet (`fe80::a9fe:a9fe` before the DHCP port has
//! it or while its DAD runs, `169.254.169.254` before its /32 is added) waits, looked for
//! again every [`NAMESPACE_CHECK_INTERVAL`], while the others are served, as `all` retries such a
//! listener alone; one that no interface holds within [`ADDRESS_WAIT_LIMIT`] (a mistyped
//! `--listen`) stops the proxy with an error saying so. A listener whose serving ended is
//! bound again after the same backoff. With `--netns`, the name is followed
//! (`namespace.rs`): when it names
//! another namespace, or none, every listener is closed, and each address is bound in the
//! namespace the name names next, once there is one. A link-local listener follows its
//! address too: bound on the interface that held it, it is bound again once another
//! interface holds it (the DHCP port plugged again in the same namespace gets a new index),
//! as `all` does.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener};
use std::time::Duration;

use anyhow::anyhow;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::namespace::{Identity, NAMESPACE_CHECK_INTERVAL, WAITING_LOG_INTERVAL};
use crate::retry::Backoff;

/// How long an address of `--listen` may go unheld by any interface of its namespace (while
/// the namespace is there) before the proxy gives up on it and stops, exit code 1: long
/// enough for DAD on `fe80::a9fe:a9fe` and for Neutron to add an address to a port it has
/// just plugged (its metadata driver waits up to 30 s for the address to be ready), short
/// enough that a mistyped address is an error within a minute rather than a warning every
/// [`WAITING_LOG_INTERVAL`]. The unit restarts the proxy (`Restart=on-failure`), which waits
/// again, as Neutron respawns a haproxy that could not bind.
pub const ADDRESS_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Binds one listener on an address, inside a named namespace when given. Called on a thread
/// of the blocking pool: entering a namespace (a thread of its own) and reading its
/// interfaces never holds up the guests' connections on the proxy's one thread.
pub trait Bind: Clone + Send + 'static {
    fn bind(&self, netns: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener>;

    /// The index of the one interface holding link-local `ip` there now; `None` when none
    /// or several do (or the namespace cannot be entered).
    fn holder(&self, netns: Option<&str>, ip: Ipv6Addr) -> Option<u32>;
}

/// The host's named namespaces (`crate::http::listen::tcp_listener_in`).
#[derive(Clone, Copy)]
pub struct InNamespace;

impl Bind for InNamespace {
    fn bind(&self, netns: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
        crate::http::listen::tcp_listener_in(netns, addr)
    }

    fn holder(&self, netns: Option<&str>, ip: Ipv6Addr) -> Option<u32> {
        match netns {
            Some(name) => crate::http::listen::link_local_holders(&[(name.to_owned(), ip)])
                .pop()
                .flatten(),
            None => {
                match crate::http::listen::scoped(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))) {
                    Ok(SocketAddr::V6(held)) => Some(held.scope_id()),
                    _ => None,
                }
            }
        }
    }
}

/// The link-local address and interface index a listener on `given` was bound on, when the
/// proxy chose the interface (`given` without a scope): the one it follows.
fn chosen_interface(given: SocketAddr, bound: SocketAddr) -> Option<(Ipv6Addr, u32)> {
    match (given, bound) {
        (SocketAddr::V6(given), SocketAddr::V6(bound))
            if given.ip().is_unicast_link_local()
                && given.scope_id() == 0
                && bound.scope_id() != 0 =>
        {
            Some((*bound.ip(), bound.scope_id()))
        }
        _ => None,
    }
}

/// Whether a bind failed only because no interface holds the address yet: the proxy serves
/// its other addresses and binds this one once it can, instead of not starting.
pub fn is_not_held_yet(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AddrNotAvailable
}

/// How a failure that lasts is said: when it changes, and again every
/// [`WAITING_LOG_INTERVAL`] while it lasts (the unit looks healthy; the log says why an
/// address is not served).
#[derive(Debug, Default)]
struct Said {
    last: Option<(String, Instant)>,
}

impl Said {
    /// Whether `failure` is to be said now (and notes it as said).
    fn again(&mut self, failure: &str) -> bool {
        let due = self
            .last
            .as_ref()
            .is_none_or(|(last, at)| last != failure || at.elapsed() >= WAITING_LOG_INTERVAL);
        if due {
            self.last = Some((failure.to_owned(), Instant::now()));
        }
        due
    }

    fn forget(&mut self) {
        self.last = None;
    }
}

/// One address of `--listen`: served by a task, or waiting to be bound.
struct Address {
    addr: SocketAddr,
    serving: Option<JoinHandle<()>>,
    /// The link-local address and the index of the interface it was bound on.
    on: Option<(Ipv6Addr, u32)>,
    said: Said,
    /// Since when no interface of the namespace has held the address (binds failing with
    /// `EADDRNOTAVAIL`), measured against [`ADDRESS_WAIT_LIMIT`].
    unheld_since: Option<Instant>,
}

/// The error that stops the proxy: `addr` held by no interface for [`ADDRESS_WAIT_LIMIT`].
fn never_held(addr: SocketAddr, netns: Option<&str>, err: &io::Error) -> anyhow::Error {
    let (within, look) = match netns {
        Some(name) => (
            format!(" in network namespace {name}"),
            format!("ip netns exec {name} ip addr"),
        ),
        None => (String::new(), "ip addr".to_owned()),
    };
    anyhow!(
        "cannot listen on {addr}{within}: no interface there has held {} for {} s ({err}); \
         check --listen against `{look}`, or have the port hold the address first",
        addr.ip(),
        ADDRESS_WAIT_LIMIT.as_secs()
    )
}

/// Serves each of `addresses` with `serve` (which spawns its serving task) once bound: those
/// of `first` (bound at start, in order; `None` for one that was not held yet) at once, the
/// others as soon as `binder` binds them. `identity` is what `netns` named before the first
/// binds. An address no interface holds is looked for again every pass, for at most
/// [`ADDRESS_WAIT_LIMIT`] (the namespace there); another bind failure, and a listener whose
/// serving ended, are tried again after the backoff of `crate::retry`. Runs until `serve`
/// fails or an address is never held.
pub async fn serve_each<B, S>(
    netns: Option<&str>,
    mut identity: Option<Identity>,
    addresses: &[SocketAddr],
    first: Vec<Option<TcpListener>>,
    binder: B,
    serve: S,
) -> anyhow::Result<()>
where
    B: Bind,
    S: Fn(TcpListener, SocketAddr) -> anyhow::Result<JoinHandle<()>>,
{
    let started = Instant::now();
    let mut each: Vec<Address> = Vec::with_capacity(addresses.len());
    let mut first = first.into_iter();
    for addr in addresses {
        let (serving, on) = match first.next().flatten() {
            Some(listener) => {
                let bound = listener.local_addr().unwrap_or(*addr);
                let on = chosen_interface(*addr, bound);
                (Some(serve(listener, bound)?), on)
            }
            None => (None, None),
        };
        let unheld_since = serving.is_none().then_some(started);
        each.push(Address {
            addr: *addr,
            serving,
            on,
            said: Said::default(),
            unheld_since,
        });
    }
    let mut namespace_said = Said::default();
    // Keyed by the address's place in `--listen`.
    let mut retry: Backoff<usize> = Backoff::default();
    loop {
        tokio::time::sleep(NAMESPACE_CHECK_INTERVAL).await;
        let now = Instant::now();
        // A serving task that ended (it could not watch its socket) is bound again after its
        // backoff; one still serving since an earlier pass starts its backoff over.
        for (key, address) in each.iter_mut().enumerate() {
            match &address.serving {
                Some(task) if task.is_finished() => {
                    address.serving = None;
                    let wait = retry.failed(key, now.into_std());
                    tracing::error!(listen = %address.addr, netns = netns.unwrap_or("-"), times = retry.failures(&key), "this listener stopped serving (the error before says why): binding it again in {wait:?}");
                }
                Some(_) => retry.succeeded(&key),
                None => {}
            }
        }
        if let (Some(name), Some(bound)) = (netns, identity) {
            match Identity::of(name) {
                // A check that fails (a permission taken away) counts as no change.
                Ok(now) if now == bound => {}
                Err(_) => {}
                Ok(now) => {
                    if bound.exists() {
                        let how = if now.exists() {
                            "was made again"
                        } else {
                            "was deleted"
                        };
                        tracing::warn!(
                            netns = name,
                            "network namespace {name} {how}: its listeners are closed, and bound again in the namespace the name names next"
                        );
                    }
                    // Closed before anything is bound again: the old namespace is no longer
                    // kept by them. Bound in the next one at once, each address given
                    // [`ADDRESS_WAIT_LIMIT`] there again.
                    for address in &mut each {
                        if let Some(task) = address.serving.take() {
                            task.abort();
                            let _ = task.await;
                        }
                        address.unheld_since = None;
                    }
                    retry = Backoff::default();
                    identity = Some(now);
                }
            }
            if identity.is_some_and(|now| !now.exists()) {
                // No namespace, no address to wait for: the wait starts once there is one.
                for address in &mut each {
                    address.unheld_since = None;
                }
                if namespace_said.again("gone") {
                    tracing::warn!(
                        netns = name,
                        "no network namespace {name}: not listening; checking again every {NAMESPACE_CHECK_INTERVAL:?}"
                    );
                }
                continue;
            }
            namespace_said.forget();
        }
        for address in &mut each {
            let Some((ip, index)) = address.on else {
                continue;
            };
            if address.serving.is_none() {
                continue;
            }
            let (asked, name) = (binder.clone(), netns.map(str::to_owned));
            let holder = tokio::task::spawn_blocking(move || asked.holder(name.as_deref(), ip))
                .await
                .unwrap_or(None);
            if holder == Some(index) {
                continue;
            }
            if let Some(task) = address.serving.take() {
                task.abort();
                let _ = task.await;
            }
            address.on = None;
            tracing::warn!(listen = %address.addr, netns = netns.unwrap_or("-"), "{ip} is no longer on the interface its listener was bound on (index {index}; a port plugged again?): its listener is closed, and bound again on the interface that holds it");
        }
        for (key, address) in each.iter_mut().enumerate() {
            // Tried once more at the limit, whatever its backoff says, before it is given up.
            let at_limit = address
                .unheld_since
                .is_some_and(|since| now.duration_since(since) >= ADDRESS_WAIT_LIMIT);
            if address.serving.is_some() || !(at_limit || retry.is_due(&key, now.into_std())) {
                continue;
            }
            let (asked, name, addr) = (binder.clone(), netns.map(str::to_owned), address.addr);
            let bound = tokio::task::spawn_blocking(move || asked.bind(name.as_deref(), addr))
                .await
                .unwrap_or_else(|err| Err(io::Error::other(err.to_string())));
            match bound {
                Ok(listener) => {
                    let bound = listener.local_addr().unwrap_or(address.addr);
                    address.on = chosen_interface(address.addr, bound);
                    address.serving = Some(serve(listener, bound)?);
                    address.said.forget();
                    address.unheld_since = None;
                }
                Err(err) => {
                    if is_not_held_yet(&err) {
                        if at_limit {
                            return Err(never_held(address.addr, netns, &err));
                        }
                        address.unheld_since.get_or_insert(now);
                    } else {
                        address.unheld_since = None;
                    }
                    // An address not held yet is looked for every pass (a bind that fails at
                    // once costs nothing), so it is served within a pass of its port holding
                    // it; other failures wait out the backoff.
                    let again = if is_not_held_yet(&err) {
                        format!(
                            "every {NAMESPACE_CHECK_INTERVAL:?}, for at most {ADDRESS_WAIT_LIMIT:?} in all"
                        )
                    } else {
                        let wait = retry.failed(key, now.into_std());
                        format!("in {wait:?}, then less and less often")
                    };
                    let failure = err.to_string();
                    if address.said.again(&failure) {
                        let within = netns.map_or(String::new(), |name| {
                            format!(" in network namespace {name}")
                        });
                        tracing::warn!(listen = %address.addr, netns = netns.unwrap_or("-"), error = %failure, "cannot listen on {}{within} yet: trying again {again}", address.addr);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Binds in this process's namespace; `absent` is refused as on no interface (as
    /// `fe80::a9fe:a9fe` before its port holds it) until `appears` binds have been asked for.
    #[derive(Clone)]
    struct AppearsLater {
        absent: SocketAddr,
        appears: usize,
        asked: Arc<Mutex<usize>>,
    }

    impl Bind for AppearsLater {
        fn bind(&self, _: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
            if addr == self.absent {
                let mut asked = self.asked.lock().unwrap();
                *asked += 1;
                if *asked < self.appears {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "no interface here holds it",
                    ));
                }
            }
            crate::http::listen::tcp_listener(addr)
        }

        fn holder(&self, _: Option<&str>, _: Ipv6Addr) -> Option<u32> {
            None
        }
    }

    /// A free port on 127.0.0.1 (bound and let go).
    fn free_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn an_address_not_held_yet_is_served_once_it_is_while_the_others_are_served() {
        let (served, later) = (free_port(), free_port());
        let binder = AppearsLater {
            absent: later,
            appears: 2,
            asked: Arc::new(Mutex::new(0)),
        };
        let first = vec![
            Some(crate::http::listen::tcp_listener(served).unwrap()),
            None,
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let serve = |listener: TcpListener, bound: SocketAddr| {
            tx.send(bound).unwrap();
            // Holds the socket: a connection is queued by the kernel.
            Ok(tokio::spawn(async move {
                let _listener = listener;
                std::future::pending::<()>().await;
            }))
        };
        let addresses = [served, later];
        let each = serve_each(None, None, &addresses, first, binder.clone(), serve);
        let checks = async {
            assert_eq!(rx.recv().await, Some(served), "served at once");
            let asked_at = std::time::Instant::now();
            assert_eq!(rx.recv().await, Some(later), "served once it is held");
            // Tried again at the next check, not given up on: the second bind took it.
            assert_eq!(*binder.asked.lock().unwrap(), 2);
            assert!(asked_at.elapsed() >= NAMESPACE_CHECK_INTERVAL);
            std::net::TcpStream::connect(later).unwrap();
        };
        tokio::select! {
            stopped = each => panic!("stopped: {stopped:?}"),
            () = checks => {}
        }
    }

    /// Binds in this process's namespace, except `absent`, which no interface ever holds (a
    /// mistyped `--listen`); counts the binds of it.
    #[derive(Clone)]
    struct NeverHeld {
        absent: SocketAddr,
        asked: Arc<Mutex<usize>>,
    }

    impl Bind for NeverHeld {
        fn bind(&self, _: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
            if addr == self.absent {
                *self.asked.lock().unwrap() += 1;
                return Err(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
            }
            crate::http::listen::tcp_listener(addr)
        }

        fn holder(&self, _: Option<&str>, _: Ipv6Addr) -> Option<u32> {
            None
        }
    }

    /// A serving task that holds its socket until the test ends.
    fn hold(listener: TcpListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _listener = listener;
            std::future::pending::<()>().await;
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_no_interface_ever_holds_stops_the_proxy_at_the_limit() {
        let (served, absent) = (free_port(), "198.51.100.7:80".parse().unwrap());
        let binder = NeverHeld {
            absent,
            asked: Arc::new(Mutex::new(0)),
        };
        let first = vec![
            Some(crate::http::listen::tcp_listener(served).unwrap()),
            None,
        ];
        let serve = |listener: TcpListener, _: SocketAddr| Ok(hold(listener));
        let started = Instant::now();
        let addresses = [served, absent];
        let each = serve_each(None, None, &addresses, first, binder.clone(), serve);
        let stopped = tokio::time::timeout(ADDRESS_WAIT_LIMIT * 2, each)
            .await
            .expect("still waiting for the address past the limit");
        let err = format!("{:#}", stopped.unwrap_err());
        let waited = started.elapsed();
        assert!(
            (ADDRESS_WAIT_LIMIT..ADDRESS_WAIT_LIMIT + 2 * NAMESPACE_CHECK_INTERVAL)
                .contains(&waited),
            "{waited:?}"
        );
        assert!(
            err.starts_with(
                "cannot listen on 198.51.100.7:80: no interface there has held \
                 198.51.100.7 for 60 s"
            ),
            "{err}"
        );
        assert!(err.contains("check --listen"), "{err}");
        // Looked for every pass until the limit: an address the port comes to hold is served
        // within a pass.
        let asked = *binder.asked.lock().unwrap();
        let passes =
            (ADDRESS_WAIT_LIMIT.as_secs_f64() / NAMESPACE_CHECK_INTERVAL.as_secs_f64()) as usize;
        assert!(
            (passes - 1..=passes + 1).contains(&asked),
            "{asked} binds in {passes} passes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_that_keeps_ending_is_bound_again_less_and_less_often() {
        let addr = free_port();
        let binds = Arc::new(Mutex::new(0_usize));
        let counted = Arc::clone(&binds);
        // Each serving task ends at once, as one that cannot watch its socket.
        let serve = move |listener: TcpListener, _: SocketAddr| {
            *counted.lock().unwrap() += 1;
            drop(listener);
            Ok(tokio::spawn(async {}))
        };
        let first = vec![Some(crate::http::listen::tcp_listener(addr).unwrap())];
        let addresses = [addr];
        let each = serve_each(None, None, &addresses, first, InNamespace, serve);
        let ran = tokio::time::timeout(std::time::Duration::from_secs(40), each).await;
        assert!(ran.is_err(), "stopped: {ran:?}");
        // Bound again after 1, 2, 4, 8, 16 s, not every second.
        let binds = *binds.lock().unwrap();
        assert!((5..=7).contains(&binds), "{binds} binds in 40 s");
    }

    /// Binds after a pause, as a bind that enters a namespace on a busy host.
    #[derive(Clone)]
    struct Slow(std::time::Duration);

    impl Bind for Slow {
        fn bind(&self, _: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
            std::thread::sleep(self.0);
            crate::http::listen::tcp_listener(addr)
        }

        fn holder(&self, _: Option<&str>, _: Ipv6Addr) -> Option<u32> {
            std::thread::sleep(self.0);
            None
        }
    }

    /// The proxy serves guests on one thread: a bind while it serves holds up none of its
    /// connections (the look at a link-local address's interfaces runs the same way, untested
    /// here: it needs an address no loopback test holds).
    #[tokio::test]
    async fn a_slow_bind_holds_up_nothing_else_on_the_proxy_s_thread() {
        let pause = std::time::Duration::from_secs(2);
        let later = free_port();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let serve = |listener: TcpListener, bound: SocketAddr| {
            tx.send(bound).unwrap();
            Ok(tokio::spawn(async move {
                let _listener = listener;
                std::future::pending::<()>().await;
            }))
        };
        let addresses = [later];
        let each = serve_each(None, None, &addresses, vec![None], Slow(pause), serve);
        // What a guest's connection on this thread sees: how late a 20 ms timer fires.
        let checks = async {
            let mut latest = std::time::Duration::ZERO;
            let tick = std::time::Duration::from_millis(20);
            loop {
                let started = std::time::Instant::now();
                tokio::select! {
                    bound = rx.recv() => {
                        assert_eq!(bound, Some(later));
                        break;
                    }
                    () = tokio::time::sleep(tick) => {}
                }
                latest = latest.max(started.elapsed().saturating_sub(tick));
            }
            latest
        };
        let latest = tokio::select! {
            stopped = each => panic!("stopped: {stopped:?}"),
            latest = checks => latest,
        };
        assert!(latest < pause / 2, "held up for {latest:?}");
    }

    #[test]
    fn only_a_link_local_listener_whose_interface_the_proxy_chose_follows_it() {
        let given = metaboot_proto::METADATA_IPV6_LISTEN;
        let on = |index| {
            SocketAddr::V6(SocketAddrV6::new(
                metaboot_proto::METADATA_IPV6,
                80,
                0,
                index,
            ))
        };
        assert_eq!(
            chosen_interface(given, on(7)),
            Some((metaboot_proto::METADATA_IPV6, 7))
        );
        // A scope given with the address is the operator's choice; other addresses have none.
        assert_eq!(chosen_interface(on(7), on(7)), None);
        let plain: SocketAddr = "169.254.169.254:80".parse().unwrap();
        assert_eq!(chosen_interface(plain, plain), None);
        let global: SocketAddr = "[fdc6:1200:0:11::2]:80".parse().unwrap();
        assert_eq!(chosen_interface(global, global), None);
    }

    #[test]
    fn a_failure_is_said_when_it_changes_and_again_after_the_interval() {
        let mut said = Said::default();
        assert!(said.again("no interface holds it"));
        assert!(!said.again("no interface holds it"));
        assert!(said.again("several interfaces hold it"));
        said.forget();
        assert!(said.again("several interfaces hold it"));
        assert!(WAITING_LOG_INTERVAL > NAMESPACE_CHECK_INTERVAL);
    }
}
