//! Writing a request to an upstream: the head encoded into the connection's reused buffer (the
//! body goes out with it in one vectored write, see `client.rs`). The body's length is the
//! client's to say: a `Content-Length` or `Transfer-Encoding` among the headers is dropped and
//! a `Content-Length` written for a non-empty body.

use http::{HeaderMap, Method, header};

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
        if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
            continue;
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if length > 0 {
        put_content_length(out, length);
    }
    out.extend_from_slice(b"\r\n");
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
}
