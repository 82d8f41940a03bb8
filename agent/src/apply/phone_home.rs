//! The phone-home POST (cloud-init's `phone_home`, once per instance, in the final stage after
//! the host keys are on the console): the instance tells a URL it is up, with its id, names
//! and host keys, as a form:
//!
//! ```yaml
//! phone_home:
//!   url: http://198.18.0.1:8000/$INSTANCE_ID/   # ${INSTANCE_ID} too
//!   post: all            # or a list of the fields below
//!   tries: 10            # 3 s apart
//! ```
//!
//! The body is `application/x-www-form-urlencoded`, the fields in the order `post` lists them
//! (`all`: [`FIELDS`]): `pub_key_dsa`, `pub_key_rsa`, `pub_key_ecdsa`, `pub_key_ed25519` (each
//! `/etc/ssh/ssh_host_<type>_key.pub` as the file holds it), `instance_id`, `hostname`,
//! `fqdn` (the datasource's names, from meta_data's `hostname`, as cloud-init's
//! `cloud.get_hostname()` gives them: not the cloud-config's `hostname` or `fqdn`). A field that is not known, or a key file that is missing, is posted as `N/A`, as
//! cloud-init does. The agent's HTTP client is plain HTTP to IP literals (no name lookup, no
//! TLS in the static binary): another URL is refused with a message saying so. A user name and
//! password in the URL (`http://user:pw@198.18.0.1/up`) are sent as basic authentication, as
//! cloud-init's requests sends them, and masked in every message (`source/url.rs`).
//!
//! Redirects are followed as cloud-init's requests follows them, up to [`MAX_REDIRECTS`] in
//! each attempt: a 307 or 308 repeats the POST, body and all, where it leads; a 301, 302 or 303
//! makes it a GET without a body there. Each target is checked as the URL is (an `https://`
//! one or a host name is an error naming it, its password masked), and the basic
//! authentication goes to the URL's own host and port only, as requests drops it elsewhere.

use std::time::Duration;

/// Every field, in the order `post: all` sends them (cloud-init's `POST_LIST_ALL`).
pub const FIELDS: [&str; 7] = [
    "pub_key_dsa",
    "pub_key_rsa",
    "pub_key_ecdsa",
    "pub_key_ed25519",
    "instance_id",
    "hostname",
    "fqdn",
];
/// The body's content type.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// What a field without a value is posted as.
pub const NOT_AVAILABLE: &str = "N/A";
/// Attempts when `tries` is not given (or is not a number).
pub const DEFAULT_TRIES: u32 = 10;
/// Most attempts made, whatever `tries` says: with [`BETWEEN_TRIES`] and each request's own
/// bound this keeps the final stage (and a `power_state` after it) from waiting for hours.
pub const MAX_TRIES: u32 = 100;
/// The wait between two attempts (cloud-init's `sec_between`).
pub const BETWEEN_TRIES: Duration = Duration::from_secs(3);
/// Most redirects one attempt follows (requests' limit, `DEFAULT_REDIRECT_LIMIT`, through
/// cloud-init's `url_helper.readurl`): after a 307 or 308 the form is POSTed again where the
/// redirect leads, after a 301, 302 or 303 that URL is read with a GET without a body, as
/// requests does it (`source/http.rs`).
pub const MAX_REDIRECTS: u32 = 30;
/// Where the host keys' public halves are, by field.
pub const KEY_FILES: [(&str, &str); 4] = [
    ("pub_key_dsa", "/etc/ssh/ssh_host_dsa_key.pub"),
    ("pub_key_rsa", "/etc/ssh/ssh_host_rsa_key.pub"),
    ("pub_key_ecdsa", "/etc/ssh/ssh_host_ecdsa_key.pub"),
    ("pub_key_ed25519", "/etc/ssh/ssh_host_ed25519_key.pub"),
];

/// A `phone_home` request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneHome {
    /// The URL as given (`$INSTANCE_ID` not yet replaced).
    pub url: String,
    /// The fields to post, in order, each once.
    pub fields: Vec<String>,
    /// Attempts, 1 to [`MAX_TRIES`].
    pub tries: u32,
}

/// Checks `phone_home`. `Ok(None)`: no `url`, nothing to do (cloud-init skips the module).
/// A `tries` that is not a number is reported in `warnings` and [`DEFAULT_TRIES`] used.
pub fn parse(
    config: &serde_json::Map<String, serde_json::Value>,
    warnings: &mut Vec<String>,
) -> Result<Option<PhoneHome>, String> {
    let url = match config.get("url") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(url)) => url.trim().to_owned(),
        Some(other) => return Err(format!("phone_home: url must be text, not {other}")),
    };
    let fields: Vec<String> = match config.get("post") {
        None | Some(serde_json::Value::Null) => FIELDS.map(str::to_owned).to_vec(),
        Some(serde_json::Value::String(all)) if all == "all" => FIELDS.map(str::to_owned).to_vec(),
        Some(serde_json::Value::Array(list)) => {
            let mut fields: Vec<String> = Vec::new();
            for item in list {
                let serde_json::Value::String(name) = item else {
                    return Err(format!("phone_home: post lists field names, not {item}"));
                };
                if !fields.contains(name) {
                    fields.push(name.clone());
                }
            }
            fields
        }
        Some(other) => {
            return Err(format!(
                "phone_home: post must be `all` or a list of field names, not {other}"
            ));
        }
    };
    let tries = match config.get("tries") {
        None | Some(serde_json::Value::Null) => DEFAULT_TRIES,
        Some(value) => tries_of(value).unwrap_or_else(|| {
            warnings.push(format!(
                "phone_home: tries {value} is not an integer; {DEFAULT_TRIES} used"
            ));
            DEFAULT_TRIES
        }),
    };
    Ok(Some(PhoneHome {
        url,
        fields,
        tries: tries.clamp(1, MAX_TRIES),
    }))
}

/// `int(tries)` as cloud-init reads it: an integer, a float (truncated), or integer text.
/// Zero or fewer still makes one attempt.
fn tries_of(value: &serde_json::Value) -> Option<u32> {
    let number = match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.trunc() as i64)
        })?,
        serde_json::Value::String(text) => text.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    Some(u32::try_from(number.max(1)).unwrap_or(u32::MAX))
}

/// The URL with `$INSTANCE_ID` and `${INSTANCE_ID}` replaced by the instance id.
pub fn render_url(url: &str, instance_id: &str) -> String {
    url.replace("${INSTANCE_ID}", instance_id)
        .replace("$INSTANCE_ID", instance_id)
}

/// The form body: each field `name=value`, `&`-separated, in order; a field `values` does
/// not have is [`NOT_AVAILABLE`].
pub fn form(fields: &[String], values: &[(&str, String)]) -> String {
    let mut body = String::new();
    for name in fields {
        let value = values
            .iter()
            .find(|(known, _)| known == name)
            .map_or(NOT_AVAILABLE, |(_, value)| value.as_str());
        if !body.is_empty() {
            body.push('&');
        }
        form_escape(name, &mut body);
        body.push('=');
        form_escape(value, &mut body);
    }
    body
}

/// `application/x-www-form-urlencoded` escaping (Python's `quote_plus`, what cloud-init's
/// `requests` posts): letters, digits and `_.-~` as they are, a space as `+`, every other byte
/// as `%XX`.
fn form_escape(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(value: &serde_json::Value) -> (Result<Option<PhoneHome>, String>, Vec<String>) {
        let mut warnings = Vec::new();
        let got = parse(value.as_object().unwrap(), &mut warnings);
        (got, warnings)
    }

    #[test]
    fn defaults_are_every_field_and_ten_tries() {
        let (got, warnings) = parsed(&json!({"url": "http://198.18.0.1/$INSTANCE_ID/"}));
        let got = got.unwrap().unwrap();
        assert_eq!(got.fields, FIELDS);
        assert_eq!(got.tries, DEFAULT_TRIES);
        assert!(warnings.is_empty());
        let (all, _) = parsed(&json!({"url": "http://198.18.0.1/", "post": "all"}));
        assert_eq!(all.unwrap().unwrap().fields, FIELDS);
    }

    #[test]
    fn without_a_url_there_is_nothing_to_do() {
        assert_eq!(parsed(&json!({"post": "all"})).0, Ok(None));
        assert!(parsed(&json!({"url": 5})).0.is_err());
    }

    #[test]
    fn post_lists_fields_in_order_once_each() {
        let (got, _) = parsed(&json!({
            "url": "http://198.18.0.1/",
            "post": ["instance_id", "fqdn", "instance_id", "nope"]
        }));
        assert_eq!(
            got.unwrap().unwrap().fields,
            ["instance_id", "fqdn", "nope"]
        );
        assert!(parsed(&json!({"url": "u", "post": "some"})).0.is_err());
        assert!(parsed(&json!({"url": "u", "post": [1]})).0.is_err());
    }

    #[test]
    fn tries_are_read_as_cloud_init_reads_them_and_bounded() {
        let tries = |value: serde_json::Value| {
            let (got, warnings) = parsed(&json!({"url": "u", "tries": value}));
            (got.unwrap().unwrap().tries, warnings.len())
        };
        assert_eq!(tries(json!(3)), (3, 0));
        assert_eq!(tries(json!("4")), (4, 0));
        assert_eq!(tries(json!(2.9)), (2, 0));
        assert_eq!(tries(json!(0)), (1, 0));
        assert_eq!(tries(json!(-5)), (1, 0));
        assert_eq!(tries(json!(1_000_000)), (MAX_TRIES, 0));
        assert_eq!(tries(json!("many")), (DEFAULT_TRIES, 1));
        assert_eq!(tries(json!([1])), (DEFAULT_TRIES, 1));
    }

    #[test]
    fn the_instance_id_goes_into_the_url_in_both_spellings() {
        assert_eq!(
            render_url("http://h/$INSTANCE_ID/x?id=${INSTANCE_ID}", "i-1"),
            "http://h/i-1/x?id=i-1"
        );
        assert_eq!(render_url("http://h/$OTHER", "i-1"), "http://h/$OTHER");
    }

    #[test]
    fn the_form_is_escaped_as_python_quote_plus_escapes() {
        let fields = ["pub_key_ed25519", "hostname", "unknown"].map(str::to_owned);
        let values = [
            (
                "pub_key_ed25519",
                "ssh-ed25519 AAAA+b/c= root@h\n".to_owned(),
            ),
            ("hostname", "web-1.x_y~z".to_owned()),
        ];
        assert_eq!(
            form(&fields, &values),
            "pub_key_ed25519=ssh-ed25519+AAAA%2Bb%2Fc%3D+root%40h%0A&hostname=web-1.x_y~z\
             &unknown=N%2FA"
        );
    }

    #[test]
    fn every_key_file_is_a_field() {
        for (field, path) in KEY_FILES {
            assert!(FIELDS.contains(&field), "{field}");
            assert!(path.ends_with("_key.pub"), "{path}");
        }
    }
}
