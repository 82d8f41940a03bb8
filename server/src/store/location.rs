//! Where the registry lives: the default file, what a `--db` value names, and the location
//! as messages may show it.

use std::path::PathBuf;

use super::error::{StoreError, StoreResult};

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

/// What `--db` accepts, as messages that refuse a value say it.
const ACCEPTED: &str = "give a SQLite file path (or sqlite:PATH), or a PostgreSQL URL that \
                        starts with postgres:// or postgresql:// in lower case, as libpq takes it";

/// The registry a `--db` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location<'a> {
    /// A `postgres://` or `postgresql://` URL.
    Postgres(&'a str),
    /// A SQLite file (created with its directory when missing).
    Sqlite(PathBuf),
}

/// The registry `db` names: a `postgres://` or `postgresql://` URL, or a SQLite file given as
/// `sqlite:PATH`, `sqlite://PATH` or a plain path. A value that looks like another URL (a
/// scheme in other case, `postgres:/h/db`, `mysql://…`) or has white space around it is
/// refused: taken as a path it would be a new, empty registry, and every guest a 404.
pub fn locate(db: &str) -> StoreResult<Location<'_>> {
    if db.trim().is_empty() {
        return Err(StoreError::Invalid(format!(
            "the registry location is empty: {ACCEPTED}"
        )));
    }
    if db.trim() != db {
        return Err(StoreError::Invalid(format!(
            "the registry location begins or ends with white space: remove it; {ACCEPTED}"
        )));
    }
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Ok(Location::Postgres(db));
    }
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    if let Some(scheme) = url_scheme(path) {
        // The scheme only: the rest may hold a password.
        return Err(StoreError::Invalid(format!(
            "the registry location starts with \"{scheme}:\", a URL this server does not take: \
             {ACCEPTED} (a file whose name looks like a URL: write it ./NAME)"
        )));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

/// Schemes `--db` knows, which a value starting with one in any case and a colon meant.
const KNOWN_SCHEMES: [&str; 3] = ["postgres", "postgresql", "sqlite"];

/// The scheme `text` starts with when it looks like a URL rather than a path: `scheme://…`
/// (RFC 3986 §3.1's scheme), or a known scheme in any case followed by a colon. A path with a
/// colon further on (`/var/lib/a:b`, `./x:y`) has a `/` or `.` before the colon, or a word
/// that is no known scheme (`x:y`).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let known = KNOWN_SCHEMES
        .iter()
        .any(|known| scheme.eq_ignore_ascii_case(known));
    (is_scheme && (rest.starts_with("//") || known)).then_some(scheme)
}

/// Whether the registry location carries a PostgreSQL password: a non-empty one in the user
/// part (`postgres://user:PASSWORD@host/db`) or a `password=` parameter, where libpq takes one
/// (`conninfo_uri_parse_options` in its `fe-connect.c`: the user part ends at the first `@`
/// before any `/`; an empty password is none). A file that holds such a location must be as
/// private as libpq wants a `.pgpass` (`all`'s configuration file, `all/config.rs`).
pub fn holds_password(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return false;
    };
    let in_user_part = rest
        .split('/')
        .next()
        .and_then(|authority| authority.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty());
    let in_query = rest.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, value)| key == "password" && !value.is_empty())
        })
    });
    in_user_part || in_query
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
    fn db_names_a_postgres_url_or_a_sqlite_path() {
        let sqlite = |path: &str| Ok(Location::Sqlite(PathBuf::from(path)));
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=require",
        ] {
            assert_eq!(
                locate(url).map_err(|err| err.to_string()),
                Ok(Location::Postgres(url))
            );
        }
        for (db, path) in [
            ("/var/lib/r.sqlite", "/var/lib/r.sqlite"),
            ("sqlite:/var/lib/r.sqlite", "/var/lib/r.sqlite"),
            ("sqlite:///var/lib/r.sqlite", "/var/lib/r.sqlite"),
            ("sqlite:r.sqlite", "r.sqlite"),
            ("r.sqlite", "r.sqlite"),
            // A colon further on is part of a name.
            ("/var/lib/a:b.sqlite", "/var/lib/a:b.sqlite"),
            ("./x:y", "./x:y"),
            ("x:y", "x:y"),
            ("./postgres://h/db", "./postgres://h/db"),
            ("sqlite:/var/lib/a:b", "/var/lib/a:b"),
        ] {
            assert_eq!(
                locate(db).map_err(|err| err.to_string()),
                sqlite(path),
                "{db}"
            );
        }
    }

    #[test]
    fn db_that_looks_like_a_mistyped_url_is_refused_not_made_a_file() {
        for db in [
            "POSTGRES://u@h/db",
            "Postgresql://u@h/db",
            "postgres:/h/db",
            "postgresql:h/db",
            "postgres:",
            "mysql://u@h/db",
            "file:///var/lib/r.sqlite",
            "SQLITE:/var/lib/r.sqlite",
            "sqlite:postgres://u@h/db",
            " postgres://u@h/db",
            "postgres://u@h/db\n",
            " /var/lib/r.sqlite",
            "",
            "  ",
        ] {
            let Err(StoreError::Invalid(msg)) = locate(db) else {
                panic!("{db:?} was taken");
            };
            assert!(
                msg.contains("postgres://") && msg.contains("SQLite file path"),
                "{db:?}: {msg}"
            );
        }
        // The message shows the scheme, never the rest (a password may be in it).
        let Err(err) = locate("POSTGRES://u:s3cret@h/db") else {
            panic!("taken");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("\"POSTGRES:\"") && !msg.contains("s3cret"),
            "{msg}"
        );
    }

    #[test]
    fn a_password_is_found_where_libpq_takes_one() {
        for url in [
            "postgres://metaboot:s3cret@db.example:5432/registry",
            "postgresql://u:p%40ss@h/db?sslmode=disable",
            "postgres://u@h/db?sslmode=require&password=s3cret",
            "postgres://:s3cret@h/db",
            "postgresql://u:s3cret@h1,h2/db",
        ] {
            assert!(holds_password(url), "{url}");
        }
        for url in [
            "postgres://metaboot@db.example:5432/registry",
            "postgres://db.example/registry?sslmode=require",
            "postgres://u:@h/db",
            "postgres://u@h/db?password=",
            "postgres://h/db?passfile=/etc/metaboot/pgpass",
            // An `@` after the first `/` is not in the user part.
            "postgres://h/db:x@y",
            DEFAULT_DB,
            "sqlite:/var/lib/a:b@c.sqlite",
        ] {
            assert!(!holds_password(url), "{url}");
        }
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
