//! TLS to PostgreSQL, which this metaboot-server does not have yet (its connections are made
//! without, `pool.rs`): a URL that requires it is refused at start, saying how to connect
//! instead, rather than failing at the first connection as the machine's fault. `prefer`
//! (libpq's default, and the driver's) connects without TLS.

use crate::store::error::{StoreError, StoreResult};

/// The `sslmode` values that require TLS, which a connection without it cannot meet.
pub const TLS_REQUIRED: [&str; 3] = ["require", "verify-ca", "verify-full"];

/// The `sslmode` the URL sets last (the driver takes the last of a parameter given twice).
fn ssl_mode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "sslmode")
        .map(|(_, value)| value)
        .next_back()
}

/// The variable libpq reads for a default `sslmode`; the driver reads no `PG*` variable.
pub const SSL_MODE_VAR: &str = "PGSSLMODE";

/// The `sslmode` requiring TLS that the URL sets, as the driver reads it (`config`, its
/// parse: user and password before the `@`, percent-escapes decoded); `verify-ca` and
/// `verify-full`, which the driver refuses itself (no `config`), as the URL spells them.
fn required_tls(url: &str, config: Option<&::postgres::Config>) -> Option<String> {
    match config {
        Some(config) => matches!(config.get_ssl_mode(), ::postgres::config::SslMode::Require)
            .then(|| "require".to_owned()),
        None => ssl_mode(url)
            .filter(|mode| TLS_REQUIRED.contains(mode))
            .map(str::to_owned),
    }
}

/// Refuses a URL whose `sslmode` requires TLS (the user's to change: exit 2), and a
/// [`SSL_MODE_VAR`] that does, which libpq's users expect to be read.
pub fn refuse_required_tls(url: &str) -> StoreResult<()> {
    refuse_required_tls_with(url, std::env::var(SSL_MODE_VAR).ok().as_deref())
}

/// [`refuse_required_tls`] with [`SSL_MODE_VAR`]'s value.
fn refuse_required_tls_with(url: &str, variable: Option<&str>) -> StoreResult<()> {
    // libpq takes the variable only when the URL sets no sslmode, and no TLS over its Unix
    // socket.
    let config = url.parse::<::postgres::Config>().ok();
    let over_tcp = config.as_ref().is_some_and(|config| {
        config
            .get_hosts()
            .iter()
            .any(|host| matches!(host, ::postgres::config::Host::Tcp(_)))
    });
    let variable = variable.filter(|_| over_tcp && ssl_mode(url).is_none());
    if let Some(mode) = variable.filter(|mode| TLS_REQUIRED.contains(mode)) {
        return Err(StoreError::Invalid(format!(
            "{SSL_MODE_VAR}={mode} asks for TLS, but metaboot-server reads no PG* variable and \
             does not support TLS yet: unset it, and connect through PostgreSQL's Unix socket \
             (e.g. postgres://USER@/DATABASE?host=/run/postgresql) or a TLS tunnel ending on \
             this host"
        )));
    }
    match required_tls(url, config.as_ref()) {
        Some(mode) => Err(StoreError::Invalid(format!(
            "the PostgreSQL URL asks for TLS (sslmode={mode}), which this metaboot-server does \
             not support yet: connect through PostgreSQL's Unix socket (e.g. \
             postgres://USER@/DATABASE?host=/run/postgresql) or through a TLS tunnel ending on \
             this host (stunnel, `ssh -L 5433:localhost:5432 DBHOST`, then \
             postgres://USER@127.0.0.1:5433/DATABASE), and drop sslmode={mode} from the URL"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_requires_tls_is_refused_saying_how_to_connect() {
        for mode in TLS_REQUIRED {
            let url = format!("postgres://u@db/reg?connect_timeout=2&sslmode={mode}");
            let err = refuse_required_tls_with(&url, None).unwrap_err();
            assert!(err.is_user_error(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("sslmode={mode}"))
                    && text.contains("not support yet")
                    && text.contains("host=/run/postgresql")
                    && text.contains("tunnel"),
                "{text}"
            );
        }
        // The socket URL the refusal gives is one the driver takes.
        let socket: ::postgres::Config = "postgres://u@/reg?host=/run/postgresql".parse().unwrap();
        assert!(matches!(
            socket.get_hosts(),
            [::postgres::config::Host::Unix(path)] if path.as_os_str() == "/run/postgresql"
        ));
        for url in [
            "postgres://u@db/reg",
            "postgres://u@db/reg?sslmode=disable",
            "postgres://u@db/reg?sslmode=prefer",
            "postgres://u@db/reg?sslmode=require&sslmode=disable",
        ] {
            assert!(refuse_required_tls_with(url, None).is_ok(), "{url}");
        }
    }

    /// The URL read as the driver reads it: a `?` in the password, a percent-escaped value.
    #[test]
    fn the_sslmode_is_the_one_the_driver_reads() {
        for url in [
            "postgres://u:p?w@db/reg?sslmode=require",
            "postgres://u@db/reg?sslmode=requir%65",
        ] {
            assert!(refuse_required_tls_with(url, None).is_err(), "{url}");
        }
        assert!(refuse_required_tls_with("postgres://u:p?sslmode=require@db/reg", None).is_ok());
    }

    /// PGSSLMODE asking for TLS is refused: the driver would not read it and connect in plain
    /// text.
    #[test]
    fn a_pgsslmode_that_requires_tls_is_refused() {
        let err = refuse_required_tls_with("postgres://u@db/reg", Some("require")).unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains("PGSSLMODE=require"),
            "{err}"
        );
        assert!(refuse_required_tls_with("postgres://u@db/reg", Some("disable")).is_ok());
        assert!(refuse_required_tls_with("postgres://u@db/reg", Some("prefer")).is_ok());
        // The URL's own sslmode wins, and a Unix socket takes no TLS.
        for url in [
            "postgres://u@db/reg?sslmode=disable",
            "postgres://u@/reg?host=/run/postgresql",
        ] {
            assert!(
                refuse_required_tls_with(url, Some("require")).is_ok(),
                "{url}"
            );
        }
    }
}
