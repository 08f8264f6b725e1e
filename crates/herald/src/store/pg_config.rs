//! How a PostgreSQL connection is configured: the URL (`postgres://..`) or a `key=value` string,
//! its `sslmode` as libpq reads it, and the connect timeout.
//!
//! `sslmode` (libpq's default is `prefer`):
//!
//! | `sslmode` | encrypted | certificate checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | — | — |
//! | `prefer` | when the server offers it | no | no |
//! | `require` | yes, or no connection | no | no |
//! | `verify-ca` | yes | against `sslrootcert` (or the system's roots) | no |
//! | `verify-full` | yes | against `sslrootcert` (or the system's roots) | yes |
//!
//! TLS needs the `postgres-tls` feature (rustls); without it, `prefer` connects in plain text and
//! the modes that require TLS are an error saying so.

use std::time::Duration;

use tokio_postgres::config::SslMode;

use crate::error::{DbError, DbErrorKind};

/// The connect timeout when neither the URL (`connect_timeout=S`) nor the builder sets one.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The options `postgres::Config` reads (besides `sslmode`, which is read here). Checked here
/// too, because the driver's error for an unknown option in a URL does not name it.
const DRIVER_OPTIONS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// What TLS a connection wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tls {
    Disable,
    Prefer,
    Require,
    VerifyCa { root: Option<String> },
    VerifyFull { root: Option<String> },
}

/// A parsed connection configuration.
#[derive(Clone, Debug)]
pub(crate) struct PgConfig {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
}

/// Parse `url` (a `postgres://` URL or a `key=value` string). The options libpq knows and the
/// driver does not (`sslmode=verify-ca|verify-full`, `sslrootcert`) are taken out here.
pub(crate) fn parse(url: &str, connect_timeout: Option<Duration>) -> Result<PgConfig, DbError> {
    let bad = |reason: String| DbError::new(DbErrorKind::Other, reason);
    let (rest, options) = split_options(url);
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for (key, value) in options {
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            known if DRIVER_OPTIONS.contains(&known) => kept.push((key, value)),
            unknown => {
                return Err(bad(format!(
                    "unknown option `{unknown}`: a PostgreSQL URL takes sslmode, sslrootcert, {}",
                    DRIVER_OPTIONS.join(", ")
                )));
            }
        }
    }
    let tls = match mode.as_deref().unwrap_or("prefer") {
        "disable" => Tls::Disable,
        "allow" | "prefer" => Tls::Prefer,
        "require" => Tls::Require,
        "verify-ca" => Tls::VerifyCa { root },
        "verify-full" => Tls::VerifyFull { root },
        other => {
            return Err(bad(format!(
                "unknown sslmode `{other}`: use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    let text = join_options(rest, &kept);
    let mut config: tokio_postgres::Config = text
        .parse()
        .map_err(|e| bad(format!("invalid PostgreSQL connection string: {e}")))?;
    config.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        Tls::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
    }
    Ok(PgConfig { config, tls })
}

/// The string without its options, and the options: a URL's query, or a `key=value` string's
/// pairs.
fn split_options(url: &str) -> (Prefix<'_>, Vec<(String, String)>) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let options = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect();
        return (Prefix::Url(base), options);
    }
    let options = url
        .split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_owned(), value.trim_matches('\'').to_owned())
        })
        .collect();
    (Prefix::KeyValue, options)
}

/// What comes before the options.
enum Prefix<'a> {
    Url(&'a str),
    KeyValue,
}

fn join_options(prefix: Prefix<'_>, options: &[(String, String)]) -> String {
    match prefix {
        Prefix::Url(base) if options.is_empty() => base.to_owned(),
        Prefix::Url(base) => {
            let query: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{base}?{}", query.join("&"))
        }
        Prefix::KeyValue => options
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_root_are_read_from_urls_and_key_value_strings() {
        let parsed = parse(
            "postgres://u@db.example/shop?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
            None,
        )
        .unwrap();
        assert_eq!(
            parsed.tls,
            Tls::VerifyFull {
                root: Some("/ca.pem".into())
            }
        );
        assert_eq!(parsed.config.get_application_name(), Some("x"));
        assert_eq!(parsed.config.get_dbname(), Some("shop"));

        let parsed = parse(
            "host=127.0.0.1 user=postgres dbname=test sslmode=require",
            None,
        )
        .unwrap();
        assert_eq!(parsed.tls, Tls::Require);
        assert_eq!(parsed.config.get_user(), Some("postgres"));

        assert_eq!(parse("postgres://u@h/d", None).unwrap().tls, Tls::Prefer);
        assert!(
            parse("postgres://u@h/d?sslmode=sometimes", None)
                .unwrap_err()
                .message()
                .contains("unknown sslmode `sometimes`")
        );
    }

    #[test]
    fn the_connect_timeout_comes_from_the_url_then_the_builder_then_the_default() {
        let url = parse(
            "postgres://u@h/d?connect_timeout=3",
            Some(Duration::from_secs(7)),
        )
        .unwrap();
        assert_eq!(
            url.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let builder = parse("postgres://u@h/d", Some(Duration::from_secs(7))).unwrap();
        assert_eq!(
            builder.config.get_connect_timeout(),
            Some(&Duration::from_secs(7))
        );
        let default = parse("postgres://u@h/d", None).unwrap();
        assert_eq!(
            default.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn an_unknown_option_is_an_error_naming_it_in_either_form() {
        for text in [
            "postgres://u@h/d?sslmode=disable&pool_max=4",
            "host=h user=u dbname=d pool_max=4",
        ] {
            let message = parse(text, None).unwrap_err().message().to_owned();
            assert!(
                message.contains("unknown option `pool_max`"),
                "{text}: {message}"
            );
        }
    }
}
