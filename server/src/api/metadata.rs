//! The metadata API's answer to one request: identify the instance (signed headers or source
//! address), find its view (the read model, rendered once per record), check the session
//! token, then route to the OpenStack or the EC2 tree. No store round trip but a password
//! POST's write.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use metaboot_proto::{Ec2Version, headers};

use super::cache::ViewCache;
use super::identify::{self, Identify};
use super::path::{self, Segment};
use super::rendering::Rendering;
use super::token::{self, Tokens};
use super::view::InstanceView;
use super::{ec2, openstack};
use crate::http::{Answer, Body, Rejection, names};
use crate::metrics::Metrics;
use crate::model::{Lookup, ReadModel, record::id_text};
use crate::store::{Store, StoreResult};

/// A request as the API sees it, whatever carried it (HTTP, or `all`'s in-process hop).
#[derive(Debug, Clone)]
pub struct MetadataRequest {
    pub method: Method,
    /// The raw path, without the query (which is ignored).
    pub path: String,
    pub headers: HeaderMap,
    /// The TCP peer (source-IP mode only).
    pub peer: Option<IpAddr>,
    pub body: Bytes,
}

/// Who a request is for, as [`Api`] identifies it.
struct Identity<'a> {
    /// The instance's uuid.
    uuid: Cow<'a, str>,
    /// The tenant the instance must belong to (proxy mode).
    tenant: Option<&'a str>,
    /// The request's address (EC2 `local-ipv4` when the instance has no fixed IPv4).
    address: Cow<'a, str>,
}

/// The metadata API.
pub struct Api {
    /// For the password POST, the one write.
    store: Arc<dyn Store>,
    pub(super) model: Arc<ReadModel>,
    identify: Identify,
    rendering: Rendering,
    pub(super) cache: Arc<ViewCache>,
    pub(super) metrics: Arc<Metrics>,
    tokens: Tokens,
}

impl Api {
    pub fn new(
        store: Arc<dyn Store>,
        model: Arc<ReadModel>,
        identify: Identify,
        rendering: Rendering,
    ) -> Self {
        let tokens = match &identify {
            Identify::Proxy { signatures } => Tokens::new(signatures.secret()),
            Identify::SourceIp => Tokens::random(),
        };
        Self {
            store,
            model,
            identify,
            rendering,
            cache: Arc::new(ViewCache::new()),
            metrics: Metrics::new("api"),
            tokens,
        }
    }

    /// Requires an IMDSv2-style session token on every request (see [`token`]); off by default.
    pub fn require_token(mut self, required: bool) -> Self {
        self.tokens = self.tokens.require(required);
        self
    }

    /// The render cache.
    pub fn cache(&self) -> Arc<ViewCache> {
        self.cache.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Answers one request; never panics, never a 500 for anything a client sends.
    pub async fn answer(&self, request: &MetadataRequest) -> Response<Body> {
        let answer = self.route(request).await;
        self.metrics.request(answer.status);
        match answer.rejection() {
            Some(rejection) => {
                self.metrics.reject(rejection);
                tracing::info!(
                    status = answer.status.as_u16(),
                    %rejection,
                    reason = answer.reason(),
                    method = %request.method,
                    path = %request.path,
                    instance = header_text(&request.headers, headers::INSTANCE_ID),
                    tenant = header_text(&request.headers, headers::TENANT_ID),
                    forwarded_for = header_text(&request.headers, headers::FORWARDED_FOR),
                    peer = ?request.peer,
                    "refused"
                );
            }
            None => tracing::debug!(
                status = answer.status.as_u16(),
                method = %request.method,
                path = %request.path,
                instance = header_text(&request.headers, headers::INSTANCE_ID),
                forwarded_for = header_text(&request.headers, headers::FORWARDED_FOR),
                "answered"
            ),
        }
        let unknown = matches!(
            answer.rejection(),
            Some(Rejection::UnknownInstance | Rejection::TenantMismatch)
        );
        let mut response = answer.into_response();
        if unknown && matches!(self.identify, Identify::Proxy { .. }) {
            // For the agent, which strips it: its cached lookup may be stale.
            response
                .headers_mut()
                .insert(names::INSTANCE_UNKNOWN, http::HeaderValue::from_static("1"));
        }
        response
    }

    async fn route(&self, request: &MetadataRequest) -> Answer {
        let segments = match path::segments(&request.path) {
            Ok(segments) => segments,
            Err(err) => {
                return Answer::refused(
                    StatusCode::BAD_REQUEST,
                    err.reason().to_owned(),
                    Rejection::BadPath,
                );
            }
        };
        // `GET /` is answered before identification (nova does the same), unless every
        // request needs a session token, which is bound to the instance.
        if segments.is_empty() && !self.tokens.required() {
            return Answer::text(Bytes::from(Ec2Version::listing()));
        }
        let Identity {
            uuid,
            tenant,
            address,
        } = match self.identify(request) {
            Ok(found) => found,
            Err(refusal) => return refusal,
        };
        let view = match self.view(&uuid) {
            Ok(Some(view)) => view,
            Ok(None) => {
                return Answer::refused(
                    StatusCode::NOT_FOUND,
                    "Instance not found.".to_owned(),
                    Rejection::UnknownInstance,
                );
            }
            Err(refusal) => return refusal,
        };
        if tenant.is_some_and(|tenant| tenant != view.instance.project) {
            // Same answer as an unknown instance: a mismatch must not reveal that it exists.
            return Answer::refused(
                StatusCode::NOT_FOUND,
                "Instance not found.".to_owned(),
                Rejection::TenantMismatch,
            );
        }
        if token::is_token_path(&segments) {
            // With no proxy in front, the guest's own headers arrive here: a token PUT relayed
            // by a proxy inside the guest (it adds X-Forwarded-For) is an SSRF, refused as the
            // namespace proxy refuses it.
            if matches!(self.identify, Identify::SourceIp)
                && token::is_forwarded_token_request(
                    &request.method,
                    &request.path,
                    &request.headers,
                )
            {
                return Answer::refused(
                    StatusCode::FORBIDDEN,
                    token::FORWARDED_TOKEN_REFUSAL.to_owned(),
                    Rejection::TokenForwarded,
                );
            }
            return self
                .tokens
                .answer_put(&request.method, &request.headers, &view.instance.uuid);
        }
        if let Some(refusal) = self.tokens.refusal(&request.headers, &view.instance.uuid) {
            return refusal;
        }
        let Some(first) = segments.first() else {
            return Answer::text(Bytes::from(Ec2Version::listing()));
        };
        match &**first {
            "openstack" => match openstack::route(&segments[1..]) {
                Some(openstack::Target::Password) => {
                    self.password(request, &view.instance.uuid).await
                }
                Some(target) => openstack::answer(target, &view, &self.rendering),
                None => Answer::refuse(StatusCode::NOT_FOUND, "not found"),
            },
            "ec2" => self.ec2(&view, &segments[1..], &address),
            _ => self.ec2(&view, &segments, &address),
        }
    }

    fn ec2(&self, view: &InstanceView, rest: &[Segment<'_>], address: &str) -> Answer {
        let Some((version, path)) = rest.split_first() else {
            return Answer::text(Bytes::from(Ec2Version::listing()));
        };
        let Some(version) = Ec2Version::parse(version) else {
            return Answer::refuse(StatusCode::NOT_FOUND, "not found");
        };
        let tree = view.ec2(version, || {
            ec2::tree(view, version, &self.rendering, address)
        });
        match tree.find(path) {
            Some(node) => Answer::text(node.render()),
            None => Answer::refuse(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Who the request is for; in proxy mode the text of the request's headers, copied
    /// nowhere.
    fn identify<'a>(&self, request: &'a MetadataRequest) -> Result<Identity<'a>, Answer> {
        match &self.identify {
            Identify::Proxy { signatures } => {
                let claim = identify::claim(&request.headers, signatures)?;
                Ok(Identity {
                    uuid: Cow::Borrowed(claim.instance_id),
                    tenant: Some(claim.tenant_id),
                    address: Cow::Borrowed(claim.address),
                })
            }
            Identify::SourceIp => {
                let Some(ip) = request.peer else {
                    return Err(Answer::refused(
                        StatusCode::BAD_REQUEST,
                        "source-IP identification needs a TCP client".to_owned(),
                        Rejection::NoAddress,
                    ));
                };
                match self.model.by_ip(ip) {
                    Lookup::Found(record) => Ok(Identity {
                        uuid: Cow::Owned(id_text(&record.uuid)),
                        tenant: None,
                        address: Cow::Owned(ip.to_string()),
                    }),
                    Lookup::NoPort => Err(Answer::refused(
                        StatusCode::NOT_FOUND,
                        format!("No instance has the address {ip}."),
                        Rejection::NoPort,
                    )),
                    Lookup::Ambiguous(_) => Err(Answer::refused(
                        StatusCode::NOT_FOUND,
                        format!(
                            "Several instances have the address {ip}: serve them through the agent (proxy mode)."
                        ),
                        Rejection::AmbiguousPort,
                    )),
                }
            }
        }
    }

    /// The instance's view: the read model's record, rendered once per record.
    fn view(&self, uuid: &str) -> Result<Option<Arc<InstanceView>>, Answer> {
        let Some(record) = self.model.instance(uuid) else {
            return Ok(None);
        };
        if let Some(view) = self.cache.get(&record) {
            self.metrics.cache_hit();
            return Ok(Some(view));
        }
        self.metrics.cache_miss();
        // The record again, under the same lock as the dictionary its user data needs.
        let Some((record, instance, ports)) = unavailable(self.model.materialize(&record))? else {
            return Ok(None);
        };
        let view = Arc::new(InstanceView::new(instance, ports));
        self.cache.insert(record, view.clone());
        Ok(Some(view))
    }

    /// A write to the store, on a blocking thread; a failing store is 503, never 500.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, Answer>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        unavailable(crate::store::call(&self.store, op).await)
    }
}

fn unavailable<T>(result: StoreResult<T>) -> Result<T, Answer> {
    result.map_err(|err| {
        tracing::warn!(error = %err, "registry call failed");
        Answer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "The registry is unavailable; retry shortly.".to_owned(),
            Rejection::StoreUnavailable,
        )
    })
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}
