//! Who is on the other end of a connection: a TCP address (guests, other hosts' agents) or a
//! Unix socket peer (the chain's own roles on this host).

use std::net::{IpAddr, SocketAddr};

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    /// The peer's IP address, IPv4-mapped IPv6 turned into IPv4.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Tcp(addr) => Some(addr.ip().to_canonical()),
            Self::Unix => None,
        }
    }
}
