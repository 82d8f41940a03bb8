//! The in-process chain of `all`: the proxy hands the sanitised request to the agent, which
//! resolves the port and signs, and the API checks the signature and answers — no HTTP between
//! them, but no step skipped.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use crate::agent::{Agent, ApiTarget};
use crate::http::Body;
use crate::proxy::Forward;

#[derive(Clone)]
pub struct InProcess {
    pub agent: Arc<Agent>,
    pub api: ApiTarget,
}

impl Forward for InProcess {
    async fn forward(&self, request: Request<Full<Bytes>>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        // A `Full` body is already in memory; collecting it cannot fail.
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.api
            .relay(&self.agent, &parts.method, path, &parts.headers, &body)
            .await
    }
}
