//! A phone-home receiver, as a test harness waits for its guests with cloud-init's
//! `phone_home`: an HTTP listener inside a namespace of the lab (a guest network's DHCP
//! namespace, where the checks run from and which every guest of the network reaches) that
//! keeps each request a guest makes and answers it 200.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::CheckResult;
use super::ns_server::{self, NsServer};

/// The port the receiver listens on.
pub const PHONE_HOME_PORT: u16 = 8787;
/// Largest request body kept (a form of three host keys and the names is about 2 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target (`/d8e0…/`).
    pub path: String,
    /// The body's form fields, decoded, in order.
    pub fields: Vec<(String, String)>,
}

impl Posted {
    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The URL of a receiver on `ip`, with cloud-init's `$INSTANCE_ID` in its path.
pub fn url_at(ip: IpAddr) -> String {
    format!(
        "http://{}/$INSTANCE_ID/",
        SocketAddr::new(ip, PHONE_HOME_PORT)
    )
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    server: NsServer,
    got: Arc<Mutex<Vec<Posted>>>,
}

impl Receiver {
    /// Listens on `ip`:[`PHONE_HOME_PORT`] inside namespace `ns`.
    pub fn start(ns: &str, ip: IpAddr) -> anyhow::Result<Self> {
        Self::start_on(ns, SocketAddr::new(ip, PHONE_HOME_PORT))
    }

    /// Listens on `addr` inside namespace `ns`; port 0 takes a free one (see [`Receiver::url`]),
    /// so that guests booting at once each have their own.
    pub fn start_on(ns: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let server = NsServer::start("phone-home receiver", ns, addr, move |stream| {
            if let Some(posted) = receive(&stream) {
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(posted);
            }
        })?;
        Ok(Self { server, got })
    }

    /// The URL a guest posts to, with cloud-init's `$INSTANCE_ID` in its path.
    pub fn url(&self) -> String {
        format!("http://{}/$INSTANCE_ID/", self.server.addr())
    }

    /// Every request received so far.
    pub fn posted(&self) -> Vec<Posted> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads one request (its head and a `Content-Length` body), answers 200, and returns it.
fn receive(stream: &std::net::TcpStream) -> Option<Posted> {
    let request = ns_server::read_request(stream, MAX_BODY_BYTES)?;
    ns_server::answer(stream, "200 OK", b"", false);
    Some(Posted {
        method: request.method,
        path: request.target,
        fields: form_fields(&String::from_utf8_lossy(&request.body)),
    })
}

/// The guest's `phone_home` (per instance: one POST over both boots) reached the lab: to
/// `/<instance id>/`, with the instance id and `hostname`, meta_data's (cloud-init posts the
/// datasource's name, not the one the user data sets), and, when `host_key`, the guest's
/// ed25519 host key.
pub(crate) fn phoned_home(
    posted: &[Posted],
    uuid: &str,
    hostname: &str,
    host_key: bool,
) -> CheckResult {
    let one = match posted {
        [one] => Some(one),
        _ => None,
    };
    let passed = one.is_some_and(|post| {
        post.method == "POST"
            && post.path == format!("/{uuid}/")
            && post.field("instance_id") == Some(uuid)
            && post.field("hostname") == Some(hostname)
            && post.fields.len() == 7
            && (!host_key
                || post
                    .field("pub_key_ed25519")
                    .is_some_and(|key| key.starts_with("ssh-ed25519 ")))
    });
    CheckResult::from_bool(
        "phoned home once (phone_home)",
        passed,
        format!(
            "expected one POST /{uuid}/ with instance_id={uuid}, hostname={hostname}{} and 7 \
             fields; got {posted:?}",
            if host_key {
                ", an ed25519 host key"
            } else {
                ""
            }
        ),
    )
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded (`+` a space, `%XX` a
/// byte), in order.
pub fn form_fields(body: &str) -> Vec<(String, String)> {
    // `+` is a space; a `+` written as `%2B` is still encoded here, so it stays a `+`.
    let decode = |text: &str| metaboot_proto::percent::decoded_text(&text.replace('+', " "));
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_is_decoded_field_by_field() {
        assert_eq!(
            form_fields("instance_id=d8e0&pub_key_rsa=N%2fA&hostname=a+b&empty=&x%zz=1%"),
            [
                ("instance_id".to_owned(), "d8e0".to_owned()),
                ("pub_key_rsa".to_owned(), "N/A".to_owned()),
                ("hostname".to_owned(), "a b".to_owned()),
                ("empty".to_owned(), String::new()),
                ("x%zz".to_owned(), "1%".to_owned()),
            ]
        );
        assert!(form_fields("").is_empty());
    }

    #[test]
    fn one_post_to_the_instance_with_its_names_passes() {
        let posted = |path: &str, id: &str| Posted {
            method: "POST".into(),
            path: path.into(),
            fields: form_fields(&format!(
                "pub_key_dsa=N%2FA&pub_key_rsa=N%2FA&pub_key_ecdsa=N%2FA&pub_key_ed25519=N%2FA\
                 &instance_id={id}&hostname=ud-x&fqdn=ud-x"
            )),
        };
        assert!(phoned_home(&[posted("/i-1/", "i-1")], "i-1", "ud-x", false).passed);
        assert!(!phoned_home(&[posted("/i-1/", "i-1")], "i-1", "ud-x", true).passed);
        assert!(!phoned_home(&[posted("/i-1/", "i-1")], "i-1", "ud-y", false).passed);
        assert!(!phoned_home(&[posted("/i-2/", "i-1")], "i-1", "ud-x", false).passed);
        assert!(!phoned_home(&[], "i-1", "ud-x", false).passed);
        let twice = [posted("/i-1/", "i-1"), posted("/i-1/", "i-1")];
        assert!(!phoned_home(&twice, "i-1", "ud-x", false).passed);
        let mut keyed = posted("/i-1/", "i-1");
        keyed.fields[3].1 = "ssh-ed25519 AAAAC3Nz root@h\n".into();
        assert!(phoned_home(&[keyed], "i-1", "ud-x", true).passed);
    }
}
