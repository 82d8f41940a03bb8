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

/// Refuses a URL whose `sslmode` requires TLS (the user's to change: exit 2).
pub fn refuse_required_tls(url: &str) -> StoreResult<()> {
    match ssl_mode(url) {
        Some(mode) if TLS_REQUIRED.contains(&mode) => Err(StoreError::Invalid(format!(
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
            let err = refuse_required_tls(&url).unwrap_err();
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
            assert!(refuse_required_tls(url).is_ok(), "{url}");
        }
    }
}
