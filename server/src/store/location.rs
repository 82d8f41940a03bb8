//! Where the registry lives: the default file, what a `--db` value names, and the location
//! as messages may show it.

use std::path::PathBuf;

use metaboot_proto::percent;

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
/// exists, which must be moved first: a refusal (exit 2), as the units do not restart a role
/// for it (`RestartPreventExitStatus=2`), since nothing changes until the registry is moved.
pub fn default_db() -> StoreResult<&'static str> {
    default_db_in(std::path::Path::new("/"))
}

/// [`default_db`] with the paths taken under `root` (tests).
fn default_db_in(root: &std::path::Path) -> StoreResult<&'static str> {
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    if !under(DEFAULT_DB).exists() && under(OLD_DEFAULT_DB).exists() {
        return Err(StoreError::Invalid(format!(
            "the registry's default place is now {DEFAULT_DB}, and {OLD_DEFAULT_DB} holds one: \
             move it (with its -wal and -shm files, the server stopped): mkdir -p \
             /var/lib/metaboot-server && mv {OLD_DEFAULT_DB}* /var/lib/metaboot-server/ && \
             chown -R metaboot: /var/lib/metaboot-server; or give --db {OLD_DEFAULT_DB}"
        )));
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
    if is_key_value_conninfo(path) {
        // Not echoed: it may hold a password.
        return Err(StoreError::Invalid(format!(
            "the registry location is a PostgreSQL key=value connection string (host=… \
             dbname=…), which this server does not take: write it as a URL, \
             postgres://USER@HOST/DBNAME; {ACCEPTED} (a file whose name looks like one: write \
             it ./NAME)"
        )));
    }
    if let Some(scheme) = url_scheme(path) {
        // The scheme only: the rest may hold a password.
        return Err(StoreError::Invalid(format!(
            "the registry location starts with \"{scheme}:\", a URL this server does not take: \
             {ACCEPTED} (a file whose name looks like a URL: write it ./NAME)"
        )));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

/// libpq's connection keywords, one of which a key=value connection string has.
const CONNINFO_KEYWORDS: [&str; 8] = [
    "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "service",
];

/// Whether `text` is libpq's key=value form (`host=db dbname=reg`, `host = db password='a b'`):
/// the whole text reads as `KEY = VALUE` pairs, as libpq's parser reads them (white space
/// around `=`, a value quoted in single quotes with `\` escapes), with lower-case keys, one
/// of them a connection keyword. Taken as a path it would be a new, empty SQLite registry.
fn is_key_value_conninfo(text: &str) -> bool {
    let mut rest = text.trim_start();
    let mut has_keyword = false;
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after_equals) = rest[key_end..].trim_start().strip_prefix('=') else {
            return false;
        };
        if key.is_empty() {
            return false;
        }
        has_keyword |= CONNINFO_KEYWORDS.contains(&key);
        let value = after_equals.trim_start();
        rest = match value.strip_prefix('\'') {
            Some(quoted) => match quoted_value_end(quoted) {
                Some(end) => &quoted[end..],
                None => return false,
            },
            None => &value[value.find(char::is_whitespace).unwrap_or(value.len())..],
        }
        .trim_start();
    }
    has_keyword
}

/// Where a single-quoted conninfo value that started before `text` ends: the index just past
/// its closing quote, `\` escaping the character after it. None when it is never closed.
fn quoted_value_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' => return Some(index + 1),
            _ => {}
        }
    }
    None
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

/// Whether the registry location carries a PostgreSQL password: a non-empty one wherever the
/// `postgres` driver the server connects with reads one (tokio-postgres' `Config::from_str`,
/// `store/postgres/mod.rs`), or wherever [`redacted`] hides one (a URL the driver refuses, an
/// earlier `password=` a later one overrides: still a password written down). The driver
/// takes everything before the first `@` as the user and the password
/// (`postgres://metaboot:ab/cd@db/metaboot` has the password `ab/cd`) and percent-decodes
/// parameter names (`?pass%77ord=…`). A file that holds such a location must be as private as
/// libpq wants a `.pgpass` (`all`'s configuration file, `all/config.rs`).
pub fn holds_password(url: &str) -> bool {
    postgres_rest(url).is_some_and(|rest| redact_postgres(url, rest).1)
}

/// The registry location as it may be shown in messages and logs: in a PostgreSQL URL, every
/// password the driver could take from it (its user part, a `password` parameter however its
/// name is encoded) becomes `***`, and so does any other part that holds it (a user or
/// database named like the password). A value that looks like another URL (`POSTGRES://…`,
/// `mysql://…`, which `--db` refuses) shows its scheme only. A SQLite path is shown as is.
pub fn redacted(url: &str) -> String {
    if let Some(rest) = postgres_rest(url) {
        return redact_postgres(url, rest).0;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    match url_scheme(path) {
        // The rest may hold a password.
        Some(scheme) => format!("{}{scheme}:***", &url[..url.len() - path.len()]),
        None => url.to_owned(),
    }
}

/// What follows `postgres://` or `postgresql://`: a URL the driver parses as one.
fn postgres_rest(url: &str) -> Option<&str> {
    url.strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
}

/// A piece of a PostgreSQL URL, cut where the driver cuts it.
enum Piece<'a> {
    /// Shown, unless it holds a password.
    Shown(&'a str),
    /// A password's place: never shown.
    Password(&'a str),
}

/// `url` (whose part after the scheme is `rest`) with every password hidden, and whether one
/// was not empty. The URL is cut as tokio-postgres' `UrlParser` cuts it: the user and password
/// before the first `@` (split at the first `:`), the host up to `/` or `?`, the database up
/// to `?`, then parameters, each name up to `=` and its value up to `&`. A parameter whose
/// percent-decoded name is `password` (in any case, or ending `&password`, which the driver
/// refuses as an unknown option) is a password's place. Then the password the driver itself
/// reads (the last one) is looked for in every shown piece, raw and percent-decoded, so that
/// no spelling of it appears elsewhere.
fn redact_postgres(url: &str, rest: &str) -> (String, bool) {
    let mut pieces = vec![Piece::Shown(&url[..url.len() - rest.len()])];
    let mut left = rest;
    if let Some((credentials, after)) = left.split_once('@') {
        match credentials.split_once(':') {
            Some((user, password)) => pieces.extend([
                Piece::Shown(user),
                Piece::Shown(":"),
                Piece::Password(password),
            ]),
            None => pieces.push(Piece::Shown(credentials)),
        }
        pieces.push(Piece::Shown("@"));
        left = after;
    }
    let (address, query) = match left.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (left, None),
    };
    match address.split_once('/') {
        Some((host, database)) => pieces.extend([
            Piece::Shown(host),
            Piece::Shown("/"),
            Piece::Shown(database),
        ]),
        None => pieces.push(Piece::Shown(address)),
    }
    if let Some(mut query) = query {
        pieces.push(Piece::Shown("?"));
        while !query.is_empty() {
            let Some((name, after)) = query.split_once('=') else {
                // The driver refuses it ("unterminated parameter").
                pieces.push(Piece::Shown(query));
                break;
            };
            let (value, next) = after.split_once('&').unwrap_or((after, ""));
            let decoded = percent::decoded_text(name);
            let last_name = decoded.rsplit('&').next().unwrap_or_default();
            pieces.extend([Piece::Shown(name), Piece::Shown("=")]);
            if last_name.eq_ignore_ascii_case("password") {
                pieces.push(Piece::Password(value));
            } else {
                pieces.push(Piece::Shown(value));
            }
            if after.len() > value.len() {
                pieces.push(Piece::Shown("&"));
            }
            query = next;
        }
    }
    let mut passwords: Vec<Vec<u8>> = pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Password(text) => Some(percent::decoded(text)),
            Piece::Shown(_) => None,
        })
        .collect();
    if let Ok(config) = url.parse::<::postgres::Config>()
        && let Some(password) = config.get_password()
    {
        passwords.push(password.to_vec());
    }
    passwords.retain(|password| !password.is_empty());
    let holds = |text: &str| {
        let decoded = percent::decoded(text);
        passwords
            .iter()
            .any(|password| contains(text.as_bytes(), password) || contains(&decoded, password))
    };
    let shown: String = pieces
        .iter()
        .map(|piece| match *piece {
            Piece::Shown(text) if !holds(text) => text,
            Piece::Shown(_) | Piece::Password(_) => "***",
        })
        .collect();
    (shown, !passwords.is_empty())
}

/// Whether `needle` (not empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_default_registry_must_be_moved_not_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_db_in(dir.path()).unwrap(), DEFAULT_DB);
        let old = dir.path().join(OLD_DEFAULT_DB.trim_start_matches('/'));
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "").unwrap();
        let err = default_db_in(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("move it") && text.contains("--db"), "{text}");
        // A refusal (exit 2), which the units do not restart: it stays until the move.
        assert!(err.is_user_error(), "{err:?}");
        let exit = crate::cli::exit_code(&anyhow::Error::from(err));
        assert_eq!(exit, crate::cli::EXIT_REFUSED);
        let new = dir.path().join(DEFAULT_DB.trim_start_matches('/'));
        std::fs::create_dir_all(new.parent().unwrap()).unwrap();
        std::fs::write(&new, "").unwrap();
        assert_eq!(default_db_in(dir.path()).unwrap(), DEFAULT_DB);
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

    /// A file name with `=` in it is a file unless it reads as libpq's key=value form.
    #[test]
    fn a_file_name_with_an_equals_sign_is_a_file() {
        for db in [
            "./host=db dbname=reg",
            "data=1",
            "run=2 copy=3",
            "/tmp/dbname=x",
            "host='unclosed",
            "host=db and more",
        ] {
            assert_eq!(
                locate(db).unwrap(),
                Location::Sqlite(PathBuf::from(db)),
                "{db:?}"
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
            "host=db dbname=reg sslmode=require",
            "dbname=reg",
            "host=db password='a b'",
            "host = db dbname = reg",
            "application_name='my app' host=db",
            "dbname=reg password='it\\'s'",
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
    fn a_password_is_found_where_the_driver_takes_one() {
        for url in [
            "postgres://metaboot:s3cret@db.example:5432/registry",
            "postgresql://u:p%40ss@h/db?sslmode=disable",
            "postgres://u@h/db?sslmode=require&password=s3cret",
            "postgres://:s3cret@h/db",
            "postgresql://u:s3cret@h1,h2/db",
            // The driver's user part ends at the first `@`, wherever a `/` is.
            "postgres://metaboot:ab/cd@db/metaboot",
            "postgres://h/db:x@y",
            // It percent-decodes a parameter's name.
            "postgres://u@h/db?pass%77ord=x",
            "postgres://u@h/db?%70assword=x",
            // Overridden by a later empty one, the first is still written down.
            "postgres://u:s3cret@h/db?password=",
            // Refused by the driver (an unknown option), the password is still written down.
            "postgres://u:s3cret@h/db?bogus=1",
        ] {
            assert!(holds_password(url), "{url}");
        }
        for url in [
            "postgres://metaboot@db.example:5432/registry",
            "postgres://db.example/registry?sslmode=require",
            "postgres://u:@h/db",
            "postgres://u@h/db?password=",
            "postgres://h/db?passfile=/etc/metaboot/pgpass",
            "postgres://h/db?application_name=password",
            DEFAULT_DB,
            "sqlite:/var/lib/a:b@c.sqlite",
        ] {
            assert!(!holds_password(url), "{url}");
        }
        // What the driver itself reads.
        for (url, password) in [
            ("postgres://metaboot:ab/cd@db/metaboot", "ab/cd"),
            ("postgres://h/db:x@y", "x"),
            ("postgres://u@h/db?pass%77ord=x", "x"),
        ] {
            let config: ::postgres::Config = url.parse().unwrap();
            assert_eq!(config.get_password(), Some(password.as_bytes()), "{url}");
        }
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        for (url, shown) in [
            (
                "postgres://metaboot:s3cret@db.example:5432/registry",
                "postgres://metaboot:***@db.example:5432/registry",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=disable&password=s3cret",
                "postgresql://u:***@h/db?sslmode=disable&password=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (DEFAULT_DB, DEFAULT_DB),
            (
                "sqlite:/var/lib/a:b@c.sqlite",
                "sqlite:/var/lib/a:b@c.sqlite",
            ),
            // Where the driver finds a password, not where a URL's path would begin.
            (
                "postgres://metaboot:ab/cd@db/metaboot",
                "postgres://metaboot:***@db/metaboot",
            ),
            ("postgres://h/db:x@y", "postgres://h/db:***@y"),
            (
                "postgres://u@h/db?pass%77ord=x",
                "postgres://u@h/db?pass%77ord=***",
            ),
            // The password elsewhere too, in whatever spelling.
            (
                "postgres://metaboot:metaboot@db/metaboot",
                "postgres://***:***@db/***",
            ),
            ("postgres://u:s3cret@h/s%33cret", "postgres://u:***@h/***"),
            (
                "postgres://u@h/db?password=s3cret&application_name=s%33cret",
                "postgres://u@h/db?password=***&application_name=***",
            ),
            // A URL `--db` refuses shows its scheme only.
            ("POSTGRES://u:s3cret@h/db", "POSTGRES:***"),
            ("mysql://u:s3cret@h/db", "mysql:***"),
            ("sqlite:postgres://u:s3cret@h/db", "sqlite:postgres:***"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
        // Whatever the driver reads as the password appears in no spelling.
        for url in [
            "postgres://metaboot:ab/cd@db/metaboot",
            "postgres://h/db:x@y",
            "postgres://u@h/db?pass%77ord=s3cret",
            "postgres://u:first@h/db?password=second",
            "postgres://u:%73%33cret@h/db?options=s3cret",
            "postgresql://u:p%40ss@h/p@ss",
        ] {
            let config: ::postgres::Config = url.parse().unwrap();
            let password = config.get_password().unwrap();
            let shown = redacted(url);
            assert!(
                !contains(shown.as_bytes(), password)
                    && !contains(&percent::decoded(&shown), password),
                "{url}: {shown}"
            );
        }
    }
}
