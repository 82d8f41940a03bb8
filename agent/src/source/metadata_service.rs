//! The OpenStack metadata service (docs/protocol.md §4.3): find which of the metadata URLs
//! answers (IPv4 then IPv6 by default, the first that answers wins, as cloud-init's
//! `metadata_urls`; a link-local one scoped to the fallback interface) by asking it for
//! `meta_data.json` at the newest version metaboot knows ([`FIRST_DOCUMENT`]): a service that
//! serves that version (metaboot, a current nova) is found and read in one round trip. One that
//! answers 404 (an older nova, or one that does not know the instance) is asked for its
//! listing, `GET /openstack`, at once, as cloud-init asks: a 200 there finds it (the newest
//! version both sides know, else `latest`, is read), as a 200 found it before; a 404 there too
//! moves to the next URL. Then the other documents of [`AHEAD`], on a thread of their own
//! while the run applies `meta_data.json` (`prefetch.rs`).

use std::time::Duration;

use metaboot_proto::OpenStackVersion;

use super::contract::{Probe, Source, SourceError};
use super::fallback_nic::fallback_nic;
use super::http::{FetchError, HttpClient, MAX_METADATA_BYTES, MAX_USER_DATA_BYTES};
use super::openstack::{OpenStackLayout, pick_version};
use super::prefetch::Prefetch;
use super::url::{has_user_info, needs_zone, shown, with_zone};
use crate::retry::{RetryError, Transient};
use crate::root::Root;

/// Its name in `datasources:`.
pub const NAME: &str = "metadata-service";

/// The document the service is found with: the instance's one required document, at the newest
/// version metaboot knows.
pub const FIRST_DOCUMENT: &str = "meta_data.json";

/// The documents fetched ahead once the first one is asked for, in the order a run reads them,
/// with the limits their getters ask for (`openstack.rs`); one asked with another limit is
/// fetched again.
pub const AHEAD: [(&str, u64); 4] = [
    ("user_data", MAX_USER_DATA_BYTES),
    ("vendor_data.json", MAX_METADATA_BYTES),
    ("vendor_data2.json", MAX_METADATA_BYTES),
    ("network_data.json", MAX_METADATA_BYTES),
];

/// Metadata service failures.
#[derive(Debug, thiserror::Error)]
pub enum MetadataServiceError {
    #[error("Metadata service")]
    Fetch(#[from] RetryError<FetchError>),
    #[error(
        "Metadata service not found (check the network and `metadata_urls`, or give it more \
         time with `deadline_secs` in metaboot.yaml)"
    )]
    Unanswered(#[from] RetryError<Unanswered>),
    #[error("No usable metadata URL: {0}")]
    NoUsableUrl(String),
    #[error("meta_data.json is missing (404) at {0}")]
    MissingMetaData(String),
    #[error(
        "The metadata service answered 404 for {first} and for {listing}: it does not know \
         this instance (is its port, with this address, in the registry?)"
    )]
    UnknownInstance { first: String, listing: String },
}

/// No metadata URL answered in one round.
#[derive(Debug, thiserror::Error)]
#[error("none of the metadata URLs answered ({urls}){}", not_found_note(.not_found_at.as_deref()))]
pub struct Unanswered {
    /// The URLs tried, comma-separated.
    pub urls: String,
    /// Why the last one did not.
    #[source]
    pub last: Box<FetchError>,
    /// Whether any of them may answer later.
    pub transient: bool,
    /// A URL that answered 404 at every path while another failed in a way that may pass:
    /// it is the service only when no round is left for the other one.
    pub not_found_at: Option<String>,
}

fn not_found_note(url: Option<&str>) -> String {
    url.map(|url| format!("; {url} answered 404, waiting for the others"))
        .unwrap_or_default()
}

impl Transient for Unanswered {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// The metadata URLs to try: `configured`, a link-local IPv6 one without a zone scoped to the
/// interface cloud-init would use (its fallback NIC); one that finds no interface is left out
/// with a line in `warnings`, and so is one with a user name or password (`user:pw@`): the
/// metadata service takes none, and its URLs are shown in status.json and the log.
pub fn service_urls(root: &Root, configured: &[String], warnings: &mut Vec<String>) -> Vec<String> {
    let mut interface: Option<Option<String>> = None;
    let mut urls = Vec::with_capacity(configured.len());
    for url in configured {
        if has_user_info(url) {
            warnings.push(format!(
                "{}: a metadata URL takes no user name or password (the metadata service asks \
                 for none); left out",
                shown(url)
            ));
            continue;
        }
        if !needs_zone(url) {
            urls.push(url.clone());
            continue;
        }
        match interface.get_or_insert_with(|| fallback_nic(root)) {
            Some(name) => urls.push(with_zone(url, name)),
            None => warnings.push(format!(
                "{url}: a link-local address needs an interface (write it as \
                 http://[ADDRESS%25IFACE]) and this system has none to fall back to; left out"
            )),
        }
    }
    urls
}

/// The path under a base URL that finds the service: [`FIRST_DOCUMENT`] at the newest version
/// metaboot knows.
pub fn first_path() -> String {
    format!(
        "openstack/{}/{FIRST_DOCUMENT}",
        OpenStackVersion::LATEST.date()
    )
}

/// The version listing, under a base URL (`GET /openstack`).
pub const LISTING: &str = "openstack";

/// What [`discover`] got at the URL it found: which of the paths answered 200 and its body, or
/// `None` when each answered 404.
pub type Answer = Option<(usize, Vec<u8>)>;

/// The first of `urls` where one of `paths` answers, asked in order at each URL (a 404 on one
/// path asks the next at the same URL; an error moves to the next URL), retried round after
/// round within the client's deadline. A URL where every path answers 404 wins when none
/// answers 200 and none failed in a way that may pass (unreachable, a timeout, a 5xx: IPv4 not
/// up yet while the IPv6 URL answers 404, as cloud-init's `wait_for_url` takes anything but a
/// 200 for "not ready"); with such a failure the round is tried again, and the 404 wins only
/// when the deadline leaves no other round. Returns the URL and, on a 200, which path answered
/// and its body.
pub fn discover(
    client: &HttpClient,
    urls: &[String],
    paths: &[&str],
) -> Result<(String, Answer), RetryError<Unanswered>> {
    let found = discovery_rounds(client, urls, paths);
    match found {
        Err(RetryError::Deadline { last, .. } | RetryError::Attempts { last, .. })
            if last.not_found_at.is_some() =>
        {
            let url = last.not_found_at.unwrap_or_default();
            tracing::info!(
                url,
                "metadata service answered 404 for /{}, and no other URL answered in time",
                paths.join(" and /")
            );
            Ok((url, None))
        }
        other => other,
    }
}

/// The rounds of [`discover`]: a URL answering 404 everywhere ends them only when no other
/// URL may answer later.
fn discovery_rounds(
    client: &HttpClient,
    urls: &[String],
    paths: &[&str],
) -> Result<(String, Answer), RetryError<Unanswered>> {
    // A URL that answered 404 at every path in some round: a last round cut short by the
    // deadline (in the middle of asking it) still leaves it the answer.
    let mut not_found_seen: Option<String> = None;
    client.retry().run("metadata service", |remaining| {
        let started = std::time::Instant::now();
        let mut unknown_here = None;
        let mut last = None;
        let mut transient = false;
        'urls: for url in urls {
            for (at, path) in paths.iter().enumerate() {
                let left = remaining
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1));
                let asked = format!("{url}/{path}");
                let got = match client.get_once(&asked, MAX_METADATA_BYTES, left) {
                    Ok(Some(body)) if body.is_empty() => Err(FetchError::Empty { url: asked }),
                    other => other,
                };
                match got {
                    Ok(Some(body)) => {
                        tracing::info!(url, "metadata service answered");
                        return Ok((url.clone(), Some((at, body))));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::debug!(url, error = %err, "metadata URL did not answer");
                        transient |= err.is_transient();
                        last = Some(err);
                        continue 'urls;
                    }
                }
            }
            unknown_here.get_or_insert_with(|| url.clone());
            not_found_seen.get_or_insert_with(|| url.clone());
        }
        if let Some(url) = &unknown_here
            && !transient
        {
            tracing::info!(
                url,
                "metadata service answered 404 for /{}",
                paths.join(" and /")
            );
            return Ok((url.clone(), None));
        }
        Err(Unanswered {
            urls: urls.join(", "),
            last: Box::new(last.unwrap_or_else(|| {
                FetchError::Url(super::url::UrlError::Scheme("(no metadata URL)".to_owned()))
            })),
            transient,
            not_found_at: unknown_here.or_else(|| not_found_seen.clone()),
        })
    })
}

/// The metadata service at the first configured URL that answers within the run's deadline
/// ([`discover`]). One never found is an error, and so is one that answers 404 for this
/// instance's `meta_data.json` and for `/openstack` (it does not know the instance, or is no
/// metadata service): the chooser warns and tries the next datasource (a config drive listed
/// after it), as cloud-init moves on when `wait_for_url` saw no 200.
/// With no usable URL (each one left out, [`service_urls`]), it is not looked for: the error
/// says why each was left out.
pub fn detect(probe: &Probe<'_>) -> Result<Option<Box<dyn Source>>, SourceError> {
    if probe.urls.is_empty() {
        let why = match probe.left_out {
            [] => "`metadata_urls` in metaboot.yaml names none".to_owned(),
            left_out => left_out.join("; "),
        };
        return Err(MetadataServiceError::NoUsableUrl(why).into());
    }
    let mut service = MetadataService::new(probe.client.clone(), probe.urls.to_vec());
    service.version()?;
    if !service.knows_instance {
        let base = service.base.clone().unwrap_or_default();
        return Err(MetadataServiceError::UnknownInstance {
            first: format!("{base}/{}", first_path()),
            listing: format!("{base}/{LISTING}"),
        }
        .into());
    }
    Ok(Some(Box::new(service)))
}

/// The metadata service at one of its base URLs.
#[derive(Debug)]
pub struct MetadataService {
    client: HttpClient,
    /// The URLs to try until one answers.
    urls: Vec<String>,
    /// The one that answered.
    base: Option<String>,
    version: Option<String>,
    /// [`FIRST_DOCUMENT`] at `version`, as the request that found the service got it, until the
    /// run asks for it.
    first: Option<Vec<u8>>,
    /// The documents under way; `None` until the first document is asked for.
    prefetch: Option<Prefetch>,
    /// Whether the service that answered had a 200 for discovery's first document or its
    /// listing (false: 404 for both).
    knows_instance: bool,
}

impl MetadataService {
    /// The service at the first of `urls` that answers (e.g. `http://169.254.169.254`, no
    /// trailing slash).
    pub fn new(client: HttpClient, urls: Vec<String>) -> Self {
        MetadataService {
            client,
            urls: urls
                .into_iter()
                .map(|url| url.trim_end_matches('/').to_owned())
                .collect(),
            base: None,
            version: None,
            first: None,
            prefetch: None,
            knows_instance: false,
        }
    }

    /// (base URL, version) once the service answered.
    fn version(&mut self) -> Result<(String, String), MetadataServiceError> {
        if let (Some(base), Some(version)) = (&self.base, &self.version) {
            return Ok((base.clone(), version.clone()));
        }
        let first = first_path();
        let (base, answer) = discover(&self.client, &self.urls, &[&first, LISTING])?;
        self.knows_instance = answer.is_some();
        let version = match answer {
            // The first path answered: the document itself, at the newest version.
            Some((0, body)) => {
                self.first = Some(body);
                OpenStackVersion::LATEST.date().to_owned()
            }
            // An older service: the pick from its listing, as cloud-init makes it.
            Some((_, listing)) => pick_version(String::from_utf8_lossy(&listing).lines()),
            // One that does not know this instance.
            None => "latest".to_owned(),
        };
        tracing::info!(url = base, version, "metadata version chosen");
        self.base = Some(base.clone());
        self.version = Some(version.clone());
        Ok((base, version))
    }
}

impl OpenStackLayout for MetadataService {
    const NAME: &'static str = NAME;

    fn document(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let (base, version) = self.version()?;
        let dir = format!("{base}/openstack/{version}");
        let prefetch = self.prefetch.get_or_insert_with(|| {
            let others: Vec<(&'static str, u64)> =
                AHEAD.into_iter().filter(|(n, _)| *n != name).collect();
            Prefetch::start(&self.client, &dir, &others)
        });
        let found_with = (name == FIRST_DOCUMENT && limit == MAX_METADATA_BYTES)
            .then(|| self.first.take())
            .flatten();
        let fetched = match found_with {
            Some(body) => Ok(Some(body)),
            None => match prefetch.take(name, limit) {
                Some(fetched) => fetched,
                None => self.client.get(&format!("{dir}/{name}"), limit),
            },
        };
        Ok(fetched.map_err(MetadataServiceError::from)?)
    }

    fn service_url(&self) -> Option<String> {
        self.base.clone()
    }

    fn missing_meta_data(&self) -> SourceError {
        let version = self.version.as_deref().unwrap_or("latest");
        let base = self.base.clone().unwrap_or_else(|| self.urls.join(", "));
        MetadataServiceError::MissingMetaData(format!("{base}/openstack/{version}")).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that answers 404 everywhere (an IPv6 address the service cannot map) does not
    /// win while another failed in a way that may pass (IPv4 not up yet, a 503): the round is
    /// tried again, and the 404 wins only when the deadline leaves no other round.
    #[test]
    fn a_url_answering_404_waits_for_one_that_may_answer_later() {
        use crate::retry::Retry;
        use crate::source::http::tests::{response, serve};
        use std::time::Instant;

        let client = |deadline: Duration| {
            let retry = Retry::until(Instant::now() + deadline)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(40));
            HttpClient::new(Duration::from_secs(5), retry)
        };
        let not_found = || vec![response("404 Not Found", "", b""); 200];
        let paths = ["first", "listing"];
        let later = serve(
            "127.0.0.1:0",
            vec![
                response("503 Service Unavailable", "", b""),
                response("200 OK", "", b"{}"),
            ],
        )
        .unwrap();
        let unknown = serve("127.0.0.1:0", not_found()).unwrap();
        let urls = [format!("http://{later}"), format!("http://{unknown}")];
        let (url, answer) = discover(&client(Duration::from_secs(5)), &urls, &paths).unwrap();
        assert_eq!(
            (url.as_str(), answer),
            (urls[0].as_str(), Some((0, b"{}".to_vec())))
        );

        // Never up: the 404 wins once the deadline is reached. The deadline leaves a loaded
        // host (a build beside the tests) time for the 404 server's answers.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let unknown = serve("127.0.0.1:0", not_found()).unwrap();
        let urls = [format!("http://{closed}"), format!("http://{unknown}")];
        let started = Instant::now();
        let deadline = Duration::from_millis(1500);
        let (url, answer) = discover(&client(deadline), &urls, &paths).unwrap();
        assert_eq!((url.as_str(), answer), (urls[1].as_str(), None));
        assert!(started.elapsed() >= deadline);

        // The 404 URL answers one round only, then is gone: what it said still stands when
        // the deadline comes in a round where it did not answer.
        let once = serve("127.0.0.1:0", not_found()[..2].to_vec()).unwrap();
        let urls = [format!("http://{closed}"), format!("http://{once}")];
        let (url, answer) = discover(&client(Duration::from_millis(300)), &urls, &paths).unwrap();
        assert_eq!((url.as_str(), answer), (urls[1].as_str(), None));
    }

    #[test]
    fn a_link_local_url_is_scoped_to_the_fallback_interface() {
        let dir = tempfile::tempdir().unwrap();
        for (name, carrier) in [("eth1", "1\n"), ("lo", "1\n")] {
            let path = dir.path().join("sys/class/net").join(name);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("carrier"), carrier).unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let configured: Vec<String> = metaboot_proto::METADATA_URLS
            .iter()
            .map(|url| (*url).to_owned())
            .chain(["http://[fe80::1%25eth7]:8080".to_owned()])
            .collect();
        let mut warnings = Vec::new();
        assert_eq!(
            service_urls(&root, &configured, &mut warnings),
            [
                "http://169.254.169.254",
                "http://[fe80::a9fe:a9fe%25eth1]",
                // A zone given is kept.
                "http://[fe80::1%25eth7]:8080",
            ]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
