//! Writing a request to an upstream: the head encoded into the connection's reused buffer (the
//! body goes out with it in one vectored write, see `client.rs`), and its size known before
//! (`head_size`). The body's length is the client's to say: a `Content-Length` or
//! `Transfer-Encoding` among the headers is dropped and a `Content-Length` written for a
//! non-empty body.

use http::{HeaderMap, HeaderName, Method, header};

use super::write::{put_content_length, put_header};

/// Encodes the head of `method target` with `headers` and a body of `length` bytes at the end
/// of `out`.
/// Always HTTP/1.1: the roles build their upstream requests with `Request::new`, whose version
/// that is.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    length: usize,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if is_framing(name) {
            continue;
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if length > 0 {
        put_content_length(out, length);
    }
    out.extend_from_slice(b"\r\n");
}

/// A request head's size as a listener counts it against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSize {
    /// Bytes, from the request line to the empty line that ends the head, both included.
    pub bytes: usize,
    /// Header lines.
    pub lines: usize,
}

/// The size of the head [`encode_head`] writes for the same arguments, without writing it.
pub fn head_size(method: &Method, target: &str, headers: &HeaderMap, length: usize) -> HeadSize {
    const VERSION: &str = " HTTP/1.1\r\n";
    // `name: value\r\n`
    const AROUND_VALUE: usize = 4;
    let mut size = HeadSize {
        bytes: method.as_str().len() + 1 + target.len() + VERSION.len() + 2,
        lines: 0,
    };
    for (name, value) in headers {
        if !is_framing(name) {
            size.bytes += name.as_str().len() + value.len() + AROUND_VALUE;
            size.lines += 1;
        }
    }
    if length > 0 {
        let digits = length.checked_ilog10().unwrap_or(0) as usize + 1;
        size.bytes += header::CONTENT_LENGTH.as_str().len() + digits + AROUND_VALUE;
        size.lines += 1;
    }
    size
}

/// The headers that frame the body: the client writes its own.
fn is_framing(name: &HeaderName) -> bool {
    *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_length_is_the_bodys_whatever_the_headers_said() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("metadata.local"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::POST,
            "/openstack/2013-04-04/password",
            &headers,
            5,
        );
        assert_eq!(
            out,
            b"POST /openstack/2013-04-04/password HTTP/1.1\r\nhost: metadata.local\r\ncontent-length: 5\r\n\r\n"
        );
        // An empty body (a GET, the token PUT) is announced by no length at all.
        out.clear();
        encode_head(&mut out, &Method::PUT, "/latest/api/token", &headers, 0);
        assert_eq!(
            out,
            b"PUT /latest/api/token HTTP/1.1\r\nhost: metadata.local\r\n\r\n"
        );
    }

    #[test]
    fn the_size_is_what_is_written() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("metadata.local"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.append("x-metadata-token", HeaderValue::from_static("a"));
        headers.append("x-metadata-token", HeaderValue::from_static(""));
        for length in [0, 1, 9, 10, 99, 100, 65_536, usize::MAX] {
            for (method, target) in [
                (Method::GET, "/"),
                (Method::POST, "/openstack/latest/password"),
            ] {
                let mut out = Vec::new();
                encode_head(&mut out, &method, target, &headers, length);
                let lines = out.windows(2).filter(|w| w == b"\r\n").count() - 2;
                assert_eq!(
                    head_size(&method, target, &headers, length),
                    HeadSize {
                        bytes: out.len(),
                        lines
                    },
                    "{}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}
