//! Caches without secrets: meta_data.json loses `admin_pass`, and the merged cloud-config keeps
//! its shape with every password field replaced by [`REDACTED`] (cloud-init's word in
//! instance-data.json). The raw user data is cached apart, mode 0600, for `query user-data`.

use serde_json::{Map, Value};

/// What a secret is replaced with.
pub const REDACTED: &str = "REDACTED";
/// The password fields of a user's options (`users`, `user`, metaboot.yaml's `default_user`).
const USER_SECRETS: [&str; 3] = ["passwd", "hashed_passwd", "plain_text_passwd"];

fn redact(map: &mut serde_json::Map<String, Value>, key: &str) {
    if let Some(value) = map.get_mut(key) {
        redact_value(value);
    }
}

/// `inside` applied to `value` when it is a map; any other value redacted whole (a
/// `chpasswd: "root:pw"` is the secret itself).
fn redact_map(value: Option<&mut Value>, inside: impl FnOnce(&mut Map<String, Value>)) {
    match value {
        Some(Value::Object(map)) => inside(map),
        Some(other) => redact_value(other),
        None => {}
    }
}

/// A secret's value replaced; a `null` (no secret) is left.
fn redact_value(value: &mut Value) {
    if !value.is_null() {
        *value = Value::String(REDACTED.to_owned());
    }
}

fn redact_user(value: &mut Value) {
    if let Value::Object(user) = value {
        for key in USER_SECRETS {
            redact(user, key);
        }
    }
}

/// meta_data.json as cached: without `admin_pass` (a password never goes to disk in clear).
pub fn meta_data(raw: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(mut map)) => {
            map.remove("admin_pass");
            serde_json::to_vec(&map).unwrap_or_default()
        }
        _ => raw.to_vec(),
    }
}

/// The merged cloud-config as cached: `password`, `chpasswd.list`, `chpasswd.users[].password`,
/// the users' `passwd`, `hashed_passwd`, `plain_text_passwd`, the private host keys of
/// `ssh_keys` (`<type>_private`) and `random_seed.data` replaced, whatever their shape (a
/// `chpasswd` or `ssh_keys` that is not a map, whole).
pub fn cloud_config(config: &Map<String, Value>) -> Map<String, Value> {
    let mut out = config.clone();
    redact(&mut out, "password");
    redact_map(out.get_mut("chpasswd"), |chpasswd| {
        redact(chpasswd, "list");
        match chpasswd.get_mut("users") {
            Some(Value::Array(users)) => {
                for user in users {
                    redact_map(Some(user), |user| redact(user, "password"));
                }
            }
            Some(other) => redact_value(other),
            None => {}
        }
    });
    match out.get_mut("users") {
        Some(Value::Array(users)) => users.iter_mut().for_each(redact_user),
        Some(Value::Object(users)) => users.values_mut().for_each(redact_user),
        _ => {}
    }
    for key in ["user", "default_user"] {
        if let Some(user) = out.get_mut(key) {
            redact_user(user);
        }
    }
    // The private halves of the host keys `ssh_keys` gives.
    redact_map(out.get_mut("ssh_keys"), |keys| {
        for (_, value) in keys.iter_mut().filter(|(key, _)| key.ends_with("_private")) {
            redact_value(value);
        }
    });
    // The seed mixed into the kernel's pool.
    redact_map(out.get_mut("random_seed"), |seed| redact(seed, "data"));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_password_field_is_replaced_and_the_rest_kept() {
        let config = json!({
            "hostname": "web",
            "password": "top",
            "chpasswd": {"expire": false, "list": "root:pw\nbob:pw2", "users": [
                {"name": "alice", "password": "apw", "type": "text"}, "odd"]},
            "users": ["default", {"name": "bob", "passwd": "$6$x$y", "plain_text_passwd": "p",
                "hashed_passwd": "$6$a$b", "groups": ["sudo"]}],
            "user": {"name": "debian", "plain_text_passwd": "d"},
            "default_user": {"name": "debian", "passwd": "$6$d$e"},
            "ssh_keys": {"ed25519_private": "-----BEGIN OPENSSH PRIVATE KEY-----",
                "ed25519_public": "ssh-ed25519 AAAApublic"},
        });
        let Value::Object(map) = config else { panic!() };
        let text = serde_json::to_string(&cloud_config(&map)).unwrap();
        for secret in [
            "top",
            "root:pw",
            "apw",
            "$6$x$y",
            "\"p\"",
            "$6$a$b",
            "\"d\"",
            "$6$d$e",
            "BEGIN OPENSSH",
            "\"odd\"",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for kept in [
            "web",
            "alice",
            "\"text\"",
            "sudo",
            "\"default\"",
            "ssh-ed25519 AAAApublic",
        ] {
            assert!(text.contains(kept), "{kept} lost from {text}");
        }
        let users = json!({"users": {"bob": {"plain_text_passwd": "p"}, "carol": true}});
        let Value::Object(map) = users else { panic!() };
        assert_eq!(
            Value::Object(cloud_config(&map)),
            json!({"users": {"bob": {"plain_text_passwd": REDACTED}, "carol": true}})
        );
        // Values of another shape, whole; the seed's data.
        let odd = json!({"chpasswd": "root:pw", "ssh_keys": "-----BEGIN",
            "random_seed": {"data": "seed", "encoding": "raw"}});
        let Value::Object(map) = odd else { panic!() };
        assert_eq!(
            Value::Object(cloud_config(&map)),
            json!({"chpasswd": REDACTED, "ssh_keys": REDACTED,
                "random_seed": {"data": REDACTED, "encoding": "raw"}})
        );
        let users = json!({"chpasswd": {"users": "root:pw", "expire": false}});
        let Value::Object(map) = users else { panic!() };
        assert_eq!(
            Value::Object(cloud_config(&map)),
            json!({"chpasswd": {"users": REDACTED, "expire": false}})
        );
    }

    #[test]
    fn admin_pass_is_dropped_from_meta_data() {
        let cached = meta_data(br#"{"uuid": "u", "admin_pass": "s3cret"}"#);
        assert_eq!(cached, br#"{"uuid":"u"}"#);
        assert_eq!(meta_data(b"not json"), b"not json");
    }
}
