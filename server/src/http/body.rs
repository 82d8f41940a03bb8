//! Bounded, timed request body reads.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::limits::ServerLimits;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit (413).
    TooLarge,
    /// Not complete within the read timeout (408).
    Timeout,
    /// The client broke the framing or went away (400).
    Broken,
}

impl BodyError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Broken => StatusCode::BAD_REQUEST,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "request body too large",
            Self::Timeout => "request body not received in time",
            Self::Broken => "request body could not be read",
        }
    }
}

/// Reads a whole body of at most `limits.max_body_bytes` within `limits.body_read_timeout`. A
/// declared `Content-Length` over the limit is refused before anything is read.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limits: &ServerLimits,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let max = limits.max_body_bytes;
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or(BodyError::Broken)?;
        if declared > max as u64 {
            return Err(BodyError::TooLarge);
        }
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(limits.body_read_timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Broken)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::Full;

    use super::*;

    /// Bodies of at most `max` bytes, one second to send them.
    fn limits(max: usize) -> ServerLimits {
        ServerLimits {
            max_body_bytes: max,
            body_read_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let headers = HeaderMap::new();
        let small = Full::new(Bytes::from_static(b"1234"));
        assert_eq!(
            read_body(&headers, small, &limits(4)).await,
            Ok(Bytes::from_static(b"1234"))
        );
        let big = Full::new(Bytes::from_static(b"12345"));
        assert_eq!(
            read_body(&headers, big, &limits(4)).await,
            Err(BodyError::TooLarge)
        );
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "1000000".parse().unwrap());
        let body = Full::new(Bytes::new());
        assert_eq!(
            read_body(&headers, body, &limits(1020)).await,
            Err(BodyError::TooLarge)
        );
        headers.insert(header::CONTENT_LENGTH, "nonsense".parse().unwrap());
        let body = Full::new(Bytes::new());
        assert_eq!(
            read_body(&headers, body, &limits(1020)).await,
            Err(BodyError::Broken)
        );
    }
}
