//! The agent's job for one request: resolve the guest from the proxy's headers (a lookup in
//! the read model, no store round trip), sign its instance id, let the API answer, and relay
//! the answer.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use crate::http::names;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::forwarded::{ForwardedError, guest};
use super::lookup::{Owner, OwnerCache, Scope};
use crate::http::{Answer, Body, Rejection};
use crate::leases::{HostLeases, chain, neighbor_mac};
use crate::metrics::Metrics;
use crate::model::record::{PortRecord, mac_text};
use crate::model::{Lookup, ReadModel};
use crate::store::HostBridge;

/// A guest resolved to its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub ip: IpAddr,
    /// `X-Forwarded-For` for the API: `ip`, canonical.
    pub forwarded: HeaderValue,
    pub scope: Scope,
    pub owner: Arc<Owner>,
}

/// The agent: lookup and signature.
pub struct Agent {
    model: Arc<ReadModel>,
    owners: OwnerCache,
    /// The DHCP leases of host networks (where a guest is known by MAC).
    leases: Arc<HostLeases>,
    pub(super) metrics: Arc<Metrics>,
}

impl Agent {
    pub fn new(model: Arc<ReadModel>, secret: Arc<[u8]>) -> Self {
        Self {
            model,
            owners: OwnerCache::new(secret),
            leases: Arc::new(HostLeases::default()),
            metrics: Metrics::new("agent"),
        }
    }

    /// The agent, reading host networks' leases from `leases` (`all --leases-dir`).
    pub fn with_leases(self, leases: Arc<HostLeases>) -> Self {
        Self { leases, ..self }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Finds the instance behind the proxy's headers. Refusals: 400 for missing, repeated or
    /// contradictory proxy headers, 404 when no single port matches.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<Resolved, Answer> {
        let scope = scope(headers)?;
        let (ip, forwarded) = guest(headers).map_err(|err| {
            let reason = match err {
                ForwardedError::Missing => {
                    "X-Forwarded-For is missing: only the namespace proxy may call the agent"
                }
                ForwardedError::NotAnAddress => "X-Forwarded-For does not end with an IP address",
            };
            Answer::refused(
                StatusCode::BAD_REQUEST,
                reason.to_owned(),
                Rejection::BadForwardedFor,
            )
        })?;
        let owner = self.lookup(ip, &scope)?;
        Ok(Resolved {
            ip,
            forwarded,
            scope,
            owner,
        })
    }

    /// Resolves the guest, then lets `ask_api` put the question to the API with the signed
    /// headers. A lookup costs no store round trip, so a 404 (for a path, or from an API whose
    /// model has not caught up yet) costs nothing more. Counts and logs the outcome.
    pub async fn relay<F, Fut>(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        ask_api: F,
    ) -> Response<Body>
    where
        F: Fn(HeaderMap) -> Fut,
        Fut: Future<Output = Result<Response<Body>, Answer>>,
    {
        // Judged on the guest's headers, which the API never sees (only the agent's).
        let outcome = if crate::api::token::is_relayed_token_request(method, path, headers) {
            Err(Answer::refused(
                StatusCode::FORBIDDEN,
                crate::api::token::FORWARDED_TOKEN_REFUSAL.to_owned(),
                Rejection::TokenForwarded,
            ))
        } else {
            match self.resolve(headers) {
                Ok(resolved) => {
                    let mut signed = self.signed_headers(&resolved);
                    pass_token_headers(headers, &mut signed);
                    ask_api(signed).await
                }
                Err(refusal) => Err(refusal),
            }
        };
        let mut response = outcome.unwrap_or_else(|refusal| self.refused(refusal, method, path));
        // Between the API and the agent only: never relayed to the guest.
        response.headers_mut().remove(names::INSTANCE_UNKNOWN);
        self.metrics.request(response.status());
        response
    }

    /// Counts and logs a refusal, and turns it into the response.
    pub fn refused(&self, refusal: Answer, method: &Method, path: &str) -> Response<Body> {
        let rejection = refusal.rejection().unwrap_or(Rejection::Refused);
        self.metrics.reject(rejection);
        tracing::info!(
            status = refusal.status.as_u16(),
            %rejection,
            reason = refusal.reason(),
            %method,
            %path,
            "refused"
        );
        refusal.into_response()
    }

    /// Exactly the headers the API gets (docs/protocol.md §2.4): nothing else the guest sent.
    pub fn signed_headers(&self, resolved: &Resolved) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(4);
        out.insert(names::FORWARDED_FOR, resolved.forwarded.clone());
        let signed = &resolved.owner.signed;
        out.insert(names::INSTANCE_ID, signed.instance_id.clone());
        out.insert(names::TENANT_ID, signed.tenant_id.clone());
        out.insert(names::INSTANCE_ID_SIGNATURE, signed.signature.clone());
        out
    }

    fn lookup(&self, ip: IpAddr, scope: &Scope) -> Result<Arc<Owner>, Answer> {
        let found = match scope {
            Scope::Router(id) => self.model.behind_router(ip, id),
            Scope::Network(id) => match self.model.host_of(id) {
                Some(host) => self.on_host_network(ip, id, &host)?,
                None => self.model.on_network(ip, id),
            },
        };
        match found {
            Lookup::Found(record) => Ok(self.owners.owner(&record)),
            Lookup::NoPort => Err(Answer::refused(
                StatusCode::NOT_FOUND,
                format!(
                    "Instance was not found on {} for address {ip}.",
                    scope.describe()
                ),
                Rejection::NoPort,
            )),
            Lookup::Ambiguous(several) => Err(Answer::refused(
                StatusCode::NOT_FOUND,
                format!(
                    "{several} ports have address {ip} on {}: refusing to guess.",
                    scope.describe()
                ),
                Rejection::AmbiguousPort,
            )),
        }
    }
}

impl Agent {
    /// The owner of `ip` on a host network: the MAC its DHCP lease names (see
    /// `ReadModel::on_host_network`), if the host's neighbor table agrees that this MAC holds
    /// `ip` on the bridge (the replies of the caller's connection went to the neighbor's MAC;
    /// another MAC there is a guest using someone else's address). Leases or a neighbor table
    /// that cannot be read serve nobody, for now: 503, which cloud-init asks again (it fails a
    /// 404 at once; docs/protocol.md §4.4), as while dnsmasq rewrites its lease file.
    fn on_host_network(&self, ip: IpAddr, id: &str, host: &HostBridge) -> Result<Lookup, Answer> {
        let unreadable = |what: &str, error: String| {
            tracing::warn!(network = id, host = %host.describe(), error = %error, "cannot read the {what} of a host network");
            Answer::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The {what} of network {id} cannot be read; try again."),
                Rejection::HostNetworkUnreadable,
            )
        };
        let macs = self
            .leases
            .macs_of(host, ip)
            .map_err(|err| unreadable("DHCP leases", chain(&err)))?;
        let found = self.model.on_host_network(ip, id, &macs);
        let Lookup::Found(record) = &found else {
            return Ok(found);
        };
        let IpAddr::V4(v4) = ip else {
            return Ok(found);
        };
        // Without the bridge there is no neighbor table to ask: nobody is served, as when the
        // table cannot be read (a fixed address's owner would be served unchecked).
        let bridge = match self.leases.bridge_of(host) {
            Ok(Some(bridge)) => bridge,
            Ok(None) => {
                return Err(unreadable(
                    "bridge",
                    "the libvirt network's dnsmasq configuration is missing (is it started?)"
                        .to_owned(),
                ));
            }
            Err(err) => return Err(unreadable("bridge", chain(&err))),
        };
        let neighbor = neighbor_mac(v4, &bridge)
            .map_err(|err| unreadable("neighbor table", err.to_string()))?;
        let port_mac = matched_port_mac(&record.ports, id, ip, &macs);
        match (neighbor, port_mac) {
            (Some(seen), Some(mac)) if seen == mac => Ok(found),
            (Some(seen), Some(mac)) => {
                tracing::warn!(
                    network = id,
                    %ip,
                    neighbor = %mac_text(&seen),
                    port = %mac_text(&mac),
                    "a guest uses another's address (the neighbor table and the port disagree on its MAC): not served; attach libvirt's clean-traffic filter to the guests' interfaces"
                );
                Ok(Lookup::NoPort)
            }
            (None, _) => {
                tracing::warn!(
                    network = id,
                    %ip,
                    bridge = %bridge,
                    "the host's neighbor table has no MAC for this address on the bridge, so who asks cannot be told: not served (does the guest reach 169.254.169.254 through this bridge?)"
                );
                Ok(Lookup::NoPort)
            }
            (Some(_), None) => Ok(Lookup::NoPort),
        }
    }
}

/// The MAC of the port of `ports` (an instance's) that a host network's lookup matched: on network `network`,
/// the port with the MAC the lease for `ip` names (`leased`), or without a lease the port fixed
/// at `ip`. (An instance may have several ports on one network: the first is not always it.)
fn matched_port_mac(
    ports: &[PortRecord],
    network: &str,
    ip: IpAddr,
    leased: &[[u8; 6]],
) -> Option<[u8; 6]> {
    let network = uuid::Uuid::parse_str(network).ok()?;
    ports
        .iter()
        .filter(|port| port.network == network)
        .find(|port| match leased {
            [mac] => port.mac == *mac,
            _ => port.ips().any(|held| held == ip),
        })
        .map(|port| port.mac)
}

/// The guest's session-token headers (`X-metadata-token`, `X-metadata-token-ttl-seconds`),
/// every value as sent: the API judges them. Nothing else of the guest's passes.
fn pass_token_headers(guest: &HeaderMap, signed: &mut HeaderMap) {
    for name in [names::METADATA_TOKEN, names::METADATA_TOKEN_TTL] {
        for value in guest.get_all(&name) {
            signed.append(&name, value.clone());
        }
    }
}

/// Exactly one of `X-Neutron-Router-ID` / `X-Neutron-Network-ID`, once.
fn scope(headers: &HeaderMap) -> Result<Scope, Answer> {
    let one = |name: HeaderName, shown: &str| -> Result<Option<String>, Answer> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Answer::refused(
                StatusCode::BAD_REQUEST,
                format!("Multiple {shown} headers found within request."),
                Rejection::RepeatedHeader,
            ));
        }
        match value.to_str().map(str::trim) {
            Ok(text) if !text.is_empty() => Ok(Some(text.to_owned())),
            _ => Err(Answer::refused(
                StatusCode::BAD_REQUEST,
                format!("{shown} is empty or not text."),
                Rejection::BadHeader,
            )),
        }
    };
    let router = one(names::ROUTER_ID, "X-Neutron-Router-ID")?;
    let network = one(names::NETWORK_ID, "X-Neutron-Network-ID")?;
    match (router, network) {
        (Some(router), Some(network)) => Err(Answer::refused(
            StatusCode::BAD_REQUEST,
            format!("Both network {network} and router {router} defined."),
            Rejection::BothScopes,
        )),
        (Some(router), None) => Ok(Scope::Router(router)),
        (None, Some(network)) => Ok(Scope::Network(network)),
        (None, None) => Err(Answer::refused(
            StatusCode::BAD_REQUEST,
            "Neither X-Neutron-Router-ID nor X-Neutron-Network-ID is set: only the namespace proxy may call the agent.".to_owned(),
            Rejection::NoScope,
        )),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// An instance with two ports on one host network: the port the lease (or, without one,
    /// the fixed address) matched is the one whose MAC the neighbor table must show; the
    /// network's id is matched whatever its case.
    #[test]
    fn the_matched_port_is_the_one_checked() {
        let network = Uuid::from_u128(7);
        let port = |n: u8, ip: &str| PortRecord {
            id: Uuid::from_u128(u128::from(n)),
            network,
            mac: [0x52, 0x54, 0, 0, 0, n],
            ip: ip.parse().unwrap(),
            second_ip: None,
        };
        let other = PortRecord {
            network: Uuid::from_u128(8),
            ..port(9, "198.18.20.9")
        };
        let ports = [other, port(1, "198.18.20.10"), port(2, "198.18.20.11")];
        let id = network.to_string();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let leased = [[0x52, 0x54, 0, 0, 0, 2]];
        assert_eq!(
            matched_port_mac(&ports, &id, ip("198.18.20.50"), &leased),
            Some(leased[0])
        );
        assert_eq!(
            matched_port_mac(&ports, &id, ip("198.18.20.11"), &[]),
            Some([0x52, 0x54, 0, 0, 0, 2])
        );
        assert_eq!(
            matched_port_mac(&ports, &id.to_uppercase(), ip("198.18.20.10"), &[]),
            Some([0x52, 0x54, 0, 0, 0, 1])
        );
        assert_eq!(matched_port_mac(&ports, &id, ip("198.18.20.9"), &[]), None);
    }
}
