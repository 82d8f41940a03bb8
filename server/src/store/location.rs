//! Where the registry lives: the default file, and the location as messages may show it.

/// Where the registry lives when `--db`, `METABOOT_DB` and `all`'s `db` are not given.
pub const DEFAULT_DB: &str = "/var/lib/metaboot/registry.sqlite";

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
