//! A small HTTP/1.1 implementation, both sides. Server: the loop every listener runs on each
//! accepted stream (TCP or Unix), with the limits of [`ServerLimits`](crate::http::ServerLimits).
//! Client: one connection to an upstream, which `http/client/` pools. Head parsing, body
//! reading, writing, the server loop and the client connection are one file each.

mod body;
mod client;
mod connection;
mod date;
mod fields;
mod head;
mod request;
mod response_head;
mod write;

#[cfg(test)]
pub(crate) mod exchange;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod yield_tests;

pub use body::{MAX_CHUNK_LINE, MAX_TRAILERS};
pub use client::{Answer, ClientConnection, ExchangeError, TryRead, read_answer};
pub use connection::serve_connection;
pub use fields::has_token;
pub use request::{HeadSize, encode_head as encode_request_head, head_size as request_head_size};
