//! What the connection tests share: a request sent over an in-memory connection to a handler,
//! and all the connection answers until the server closes it.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::serve_connection;
use crate::http::{Handler, Peer, ServerLimits};

/// A request head the connection refuses before any handler sees it: a header line without a
/// colon (400).
pub(crate) const MALFORMED_HEAD: &[u8] = b"GET / HTTP/1.1\r\nno colon\r\n\r\n";

/// Longest a test waits for the server to close the connection.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

/// Sends `request` on a connection `handler` serves (from `peer`, with `limits`) and reads until
/// the server closes it: all it answered.
pub(crate) async fn answer_until_closed<H: Handler>(
    handler: H,
    peer: Peer,
    limits: ServerLimits,
    request: &[u8],
) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    let served = tokio::spawn(serve_connection(server, peer, limits, handler));
    client.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(CLOSED_WITHIN, client.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    // The end of the answers: a server that drains the connection (`linger`) stops then.
    drop(client);
    served.await.unwrap();
    out
}
