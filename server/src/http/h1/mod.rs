//! A small HTTP/1.1 server connection: the loop every listener runs on each accepted stream
//! (TCP or Unix), with the limits of [`ServerLimits`](crate::http::ServerLimits). Head parsing,
//! body reading, response writing and the loop are one file each.

mod body;
mod connection;
mod date;
mod head;
mod write;

#[cfg(test)]
mod tests;

pub use body::{MAX_CHUNK_LINE, MAX_TRAILERS};
pub use connection::serve_connection;
