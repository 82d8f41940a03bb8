//! Who may open one more connection on a listener: a cap on all its connections and, for the
//! namespace proxy, a cap per peer address, so one guest holding connections open cannot take
//! the listener's whole share from its neighbours. One gate is shared by every worker thread
//! that accepts on the listener; a refused connection is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::ServerLimits;
use super::peer::Peer;
use super::rejection::Rejection;

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener serves `max_connections` already.
    ListenerFull,
    /// This peer address holds `max_connections_per_peer` already.
    PeerFull,
}

impl Refusal {
    /// The reason counted in /metrics (`metaboot_rejections_total{reason=…}`).
    pub fn rejection(self) -> Rejection {
        match self {
            Self::ListenerFull => Rejection::ConnectionCap,
            Self::PeerFull => Rejection::GuestConnectionCap,
        }
    }
}

/// The caps of one listener.
pub struct ConnectionGate {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_peer: Option<usize>,
    /// Open connections per peer address; an address leaves the map with its last connection,
    /// so the map never holds more entries than the listener holds connections.
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection let in: holds its places until dropped with the connection.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    _peer: Option<PeerPlace>,
}

/// One place of a peer address.
struct PeerPlace {
    gate: Arc<ConnectionGate>,
    ip: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .per_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionGate {
    /// A gate with the caps of `limits` (`max_connections`, `max_connections_per_peer`).
    pub fn new(limits: &ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            max_total: limits.max_connections,
            max_per_peer: limits.max_connections_per_peer,
            per_peer: Mutex::new(HashMap::new()),
        })
    }

    /// Lets a connection from `peer` in, or says why not. The peer's own cap is checked
    /// first, so a peer at its cap never takes one of the listener's places.
    pub fn admit(self: &Arc<Self>, peer: &Peer) -> Result<Admitted, Refusal> {
        let place = match (self.max_per_peer, peer.ip()) {
            (Some(cap), Some(ip)) => Some(self.take_peer_place(ip, cap)?),
            _ => None,
        };
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::ListenerFull)?;
        Ok(Admitted {
            _total: total,
            _peer: place,
        })
    }

    fn take_peer_place(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Result<PeerPlace, Refusal> {
        let mut open = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return Err(Refusal::PeerFull);
        }
        *count += 1;
        Ok(PeerPlace {
            gate: self.clone(),
            ip,
        })
    }

    /// The listener's cap on all connections.
    pub fn max_connections(&self) -> usize {
        self.max_total
    }

    /// Connections open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }

    /// Peer addresses with a connection open now.
    pub fn peers(&self) -> usize {
        self.per_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn peer(last: u8) -> Peer {
        Peer::Tcp(SocketAddr::from(([198, 18, 0, last], 40_000)))
    }

    #[test]
    fn each_peer_has_its_own_cap_inside_the_listeners() {
        let gate = ConnectionGate::new(&ServerLimits {
            max_connections: 5,
            max_connections_per_peer: Some(2),
            ..ServerLimits::default()
        });
        let a1 = gate.admit(&peer(10)).unwrap();
        let a2 = gate.admit(&peer(10)).unwrap();
        assert_eq!(gate.admit(&peer(10)).err(), Some(Refusal::PeerFull));
        let b1 = gate.admit(&peer(11)).unwrap();
        let b2 = gate.admit(&peer(11)).unwrap();
        let c1 = gate.admit(&peer(12)).unwrap();
        // Five open: the listener is full for everyone, and a refused peer took no place.
        assert_eq!(gate.admit(&peer(13)).err(), Some(Refusal::ListenerFull));
        assert_eq!(gate.open_from(peer(13).ip().unwrap()), 0);
        drop(a1);
        assert_eq!(gate.open_from(peer(10).ip().unwrap()), 1);
        let a3 = gate.admit(&peer(10)).unwrap();
        drop((a2, a3, b1, b2, c1));
        // Nothing is kept for addresses with no connection.
        assert_eq!(gate.peers(), 0);
    }

    #[test]
    fn without_a_peer_cap_only_the_listener_counts() {
        let gate = ConnectionGate::new(&ServerLimits {
            max_connections: 3,
            max_connections_per_peer: None,
            ..ServerLimits::default()
        });
        let held: Vec<Admitted> = (0..3).map(|_| gate.admit(&peer(10)).unwrap()).collect();
        assert_eq!(gate.admit(&Peer::Unix).err(), Some(Refusal::ListenerFull));
        drop(held);
        assert!(gate.admit(&Peer::Unix).is_ok());
        assert_eq!(gate.peers(), 0);
    }
}
