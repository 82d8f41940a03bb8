//! Where the registry lives: the default file, and the location as messages may show it.

/// Where the registry lives when `--db`, `METABOOT_DB` and `all`'s `db` are not given: the
/// server's own state directory. Not the guest agent's `/var/lib/metaboot`: a server on a
/// machine the agent provisioned would have systemd hand the agent's state (root's every-boot
/// scripts among it) to the `metaboot` user.
pub const DEFAULT_DB: &str = "/var/lib/metaboot-server/registry.sqlite";
/// Where the registry lived by default before: found there (and not at [`DEFAULT_DB`]), it is
/// an error that says how to move it, never a new empty registry served in its place.
pub const OLD_DEFAULT_DB: &str = "/var/lib/metaboot/registry.sqlite";

/// The registry to use when none is given: [`DEFAULT_DB`], unless only the old default
/// exists, which must be moved first.
pub fn default_db() -> Result<&'static str, String> {
    default_db_in(std::path::Path::new("/"))
}

/// [`default_db`] with the paths taken under `root` (tests).
fn default_db_in(root: &std::path::Path) -> Result<&'static str, String> {
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    if !under(DEFAULT_DB).exists() && under(OLD_DEFAULT_DB).exists() {
        return Err(format!(
            "the registry's default place is now {DEFAULT_DB}, and {OLD_DEFAULT_DB} holds one: \
             move it (with its -wal and -shm files, the server stopped): mkdir -p \
             /var/lib/metaboot-server && mv {OLD_DEFAULT_DB}* /var/lib/metaboot-server/ && \
             chown -R metaboot: /var/lib/metaboot-server; or give --db {OLD_DEFAULT_DB}"
        ));
    }
    Ok(DEFAULT_DB)
}

/// The registry location as it may be shown in messages and logs: a PostgreSQL URL's password
/// (in its user part or a `password=` parameter) becomes `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if !scheme.starts_with("postgres") {
        return url.to_owned();
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_default_registry_must_be_moved_not_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_db_in(dir.path()), Ok(DEFAULT_DB));
        let old = dir.path().join(OLD_DEFAULT_DB.trim_start_matches('/'));
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "").unwrap();
        let err = default_db_in(dir.path()).unwrap_err();
        assert!(err.contains("move it") && err.contains("--db"), "{err}");
        let new = dir.path().join(DEFAULT_DB.trim_start_matches('/'));
        std::fs::create_dir_all(new.parent().unwrap()).unwrap();
        std::fs::write(&new, "").unwrap();
        assert_eq!(default_db_in(dir.path()), Ok(DEFAULT_DB));
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        assert_eq!(
            redacted("postgres://metaboot:s3cret@db.example:5432/registry"),
            "postgres://metaboot:***@db.example:5432/registry"
        );
        assert_eq!(
            redacted("postgresql://u:p%40ss@h/db?sslmode=disable&password=s3cret"),
            "postgresql://u:***@h/db?sslmode=disable&password=***"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted(DEFAULT_DB), DEFAULT_DB);
    }
}
