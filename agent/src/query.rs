//! `metaboot query KEY`: one value from the current instance's cached data (like
//! `cloud-init query`), read under `--root`.

use std::io::Write;

use metaboot_proto::MetaData;

use crate::cli::QueryArgs;
use crate::root::Root;
use crate::state::State;

/// The keys `query` answers.
pub const KEYS: &[&str] = &[
    "instance-id",
    "local-hostname",
    "hostname",
    "availability-zone",
    "project-id",
    "public-keys",
    "user-data",
    "vendor-data",
];

/// Exit code for an unknown key.
pub const EXIT_USAGE: u8 = 2;

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unknown key {0:?}; known keys: {keys}", keys = KEYS.join(", "))]
    UnknownKey(String),
    #[error("no cached instance data under {0} (has `metaboot run` succeeded?)")]
    NoData(String),
    #[error("cached meta_data.json is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot read {path}: {source} (the instance's data is root's: run it as root)")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The value of `key` for the current instance under `root` (raw bytes for user-data).
pub fn value(root: &Root, key: &str) -> Result<Vec<u8>, QueryError> {
    if !KEYS.contains(&key) {
        return Err(QueryError::UnknownKey(key.to_owned()));
    }
    let dir = State::new(root).current_instance_dir();
    // Missing is "not there"; any other failure (a user who may not read root's files) is
    // said, never taken for an empty answer.
    let read = |name: &str| {
        let path = dir.join(name);
        root.read_optional(&path)
            .map_err(|source| QueryError::Unreadable {
                path: root.host_path(&path).display().to_string(),
                source,
            })
    };
    // Every instance the agent ran for has its meta-data: without it, no run has been.
    let raw = read("meta_data.json")?
        .ok_or_else(|| QueryError::NoData(root.host_path(&dir).display().to_string()))?;
    match key {
        "user-data" => return Ok(read("user_data")?.unwrap_or_default()),
        // OpenStack's JSON document, or a source's plain vendor data (NoCloud's).
        "vendor-data" => {
            return Ok(match read("vendor_data.json")? {
                Some(json) => json,
                None => read("vendor_data")?.unwrap_or_default(),
            });
        }
        _ => {}
    }
    let meta: MetaData =
        serde_json::from_slice(&raw).map_err(|e| QueryError::Corrupt(e.to_string()))?;
    let text = match key {
        "instance-id" => meta.uuid,
        "local-hostname" => meta.hostname,
        "hostname" => meta
            .hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned(),
        "availability-zone" => meta.availability_zone.unwrap_or_default(),
        "project-id" => meta.project_id.unwrap_or_default(),
        _ => meta
            .public_keys
            .unwrap_or_default()
            .values()
            .map(|k| k.trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    Ok(format!("{text}\n").into_bytes())
}

/// Runs `metaboot query`.
pub fn main(args: &QueryArgs) -> u8 {
    let result = match Root::open(&args.root) {
        Ok(root) => value(&root, &args.key),
        Err(_) if !KEYS.contains(&args.key.as_str()) => {
            Err(QueryError::UnknownKey(args.key.clone()))
        }
        Err(_) => Err(QueryError::NoData(args.root.display().to_string())),
    };
    match result {
        Ok(bytes) => {
            let _ = std::io::stdout().write_all(&bytes);
            0
        }
        Err(err @ QueryError::UnknownKey(_)) => {
            eprintln!("metaboot query: {err}");
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("metaboot query: {err}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_the_current_instance() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(matches!(
            value(&root, "instance-id"),
            Err(QueryError::NoData(_))
        ));
        assert!(matches!(
            value(&root, "nope"),
            Err(QueryError::UnknownKey(_))
        ));
        // No run yet: user data too is "no data", never an empty answer.
        for key in ["user-data", "vendor-data"] {
            assert!(
                matches!(value(&root, key), Err(QueryError::NoData(_))),
                "{key}"
            );
        }
        let state = State::new(&root);
        state.switch_instance("i-9").unwrap();
        state
            .cache(
                "i-9",
                "meta_data.json",
                br#"{"uuid":"i-9","hostname":"web.novalocal","availability_zone":"az1","project_id":"p",
                    "public_keys":{"a":"ssh-ed25519 AAAA a\n","b":"ssh-rsa BBBB b"}}"#,
            )
            .unwrap();
        state.cache("i-9", "user_data", b"\x1f\x8braw").unwrap();
        let get = |k| String::from_utf8_lossy(&value(&root, k).unwrap()).into_owned();
        assert_eq!(get("instance-id"), "i-9\n");
        assert_eq!(get("local-hostname"), "web.novalocal\n");
        assert_eq!(get("hostname"), "web\n");
        assert_eq!(get("availability-zone"), "az1\n");
        assert_eq!(get("project-id"), "p\n");
        assert_eq!(get("public-keys"), "ssh-ed25519 AAAA a\nssh-rsa BBBB b\n");
        assert_eq!(value(&root, "user-data").unwrap(), b"\x1f\x8braw");
        assert_eq!(value(&root, "vendor-data").unwrap(), b"");
        // A file that is there but cannot be read (another user than root asking) says so.
        let meta = root.host_path("/var/lib/metaboot/instances/i-9/meta_data.json");
        std::fs::remove_file(&meta).unwrap();
        std::fs::create_dir(&meta).unwrap();
        assert!(matches!(
            value(&root, "instance-id"),
            Err(QueryError::Unreadable { .. })
        ));
    }
}
