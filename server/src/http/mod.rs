//! HTTP plumbing shared by the three roles: the accept loop and the HTTP/1.1 connection loop
//! with their limits, small response builders and the pooled upstream client (TCP or Unix socket).

pub mod accept;
pub mod answer;
pub mod body;
pub mod client;
pub mod gate;
pub mod h1;
pub mod limits;
pub mod listen;
pub mod listen_refusal;
pub mod names;
pub mod peer;
pub mod refusal_log;
pub mod rejection;
pub mod response;
pub mod serve;
pub mod unix;
pub mod unix_connection;

pub use accept::{Accepted, TcpAcceptor};
pub use answer::Answer;
pub use body::{BodyError, RequestBody};
pub use client::{Upstream, UpstreamError};
pub use gate::{ConnectionGate, Refusal};
pub use limits::ServerLimits;
pub use peer::Peer;
pub use rejection::Rejection;
pub use response::{Body, Reply};
pub use serve::{Acceptor, Handler, serve, serve_gated};
pub use unix::{UnixSocket, bind_unix};
pub use unix_connection::UnixConnection;
