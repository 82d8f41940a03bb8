//! What the roles' tests share: a request head the connection refuses before any role sees it
//! (a header line without a colon), sent over an in-memory connection to a role's handler.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::serve_connection;
use crate::http::{Handler, Peer, ServerLimits};

/// What `handler`'s connection (from `peer`, with `limits`) answers a malformed request head,
/// once the connection has ended.
pub(crate) async fn answer_to_a_malformed_head<H: Handler>(
    handler: H,
    peer: Peer,
    limits: ServerLimits,
) -> Vec<u8> {
    let (mut client, ours) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(serve_connection(ours, peer, limits, handler));
    client
        .write_all(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    drop(client);
    serving.await.unwrap();
    answer
}
