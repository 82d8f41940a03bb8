//! The in-process chain of `all`, both hops: the proxy hands the sanitised request to the agent
//! ([`InProcess`]), which resolves the port and signs, and asks the API in the same process
//! ([`InProcessApi`]), which checks the signature and answers — no HTTP between them, but no
//! step skipped.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use crate::agent::{Agent, ApiTarget, Question};
use crate::api::{Api, MetadataRequest};
use crate::http::{Answer, Body};
use crate::proxy::Forward;

/// The proxy → agent hop: the proxy's request goes straight to the agent.
#[derive(Clone)]
pub struct InProcess {
    pub agent: Arc<Agent>,
    pub api: InProcessApi,
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

/// The agent → API hop: the agent's signed question goes straight to the API, which checks
/// the signature as it does for a question over HTTP.
#[derive(Clone)]
pub struct InProcessApi(pub Arc<Api>);

impl ApiTarget for InProcessApi {
    async fn ask(&self, _: &Agent, question: Question<'_>) -> Result<Response<Body>, Answer> {
        let request = MetadataRequest {
            method: question.method,
            path: question.path.split('?').next().unwrap_or("/").to_owned(),
            headers: question.signed,
            peer: None,
            body: question.body,
        };
        Ok(self.0.answer(&request).await)
    }
}
