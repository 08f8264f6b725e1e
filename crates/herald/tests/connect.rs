//! Connecting to PostgreSQL: the connect timeout, and TLS (`sslmode`) through rustls. TLS is
//! checked against the server of `HERALD_TEST_POSTGRES_URL`, whose certificate is the one
//! `/etc/ssl/certs/ssl-cert-snakeoil.pem` holds (issued to `localhost`), as on Debian.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use herald::{Db, Error};

/// A port whose listen queue is full: the server drops new connection attempts, so they hang
/// until the client gives up, as a firewall that drops packets makes them.
fn a_port_that_never_answers() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    // Fill the queue; the connections after it are never answered.
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        ) {
            held.push(stream);
        }
    }
    (socket, held, port)
}

#[tokio::test]
async fn a_server_that_never_answers_is_an_error_after_the_connect_timeout() {
    let (_listener, _held, port) = a_port_that_never_answers();
    let started = Instant::now();
    let error = Db::open(format!("postgres://nobody:secret@127.0.0.1:{port}/none"))
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Connect { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to `postgres://nobody:***@127.0.0.1:{port}/none`"
        )),
        "{text}"
    );
    assert!(text.contains("timed out"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it gave up instead of hanging"
    );
}

#[tokio::test]
async fn a_key_value_connection_string_is_taken_and_its_password_masked() {
    let (_listener, _held, port) = a_port_that_never_answers();
    let error = Db::open(format!(
        "host=127.0.0.1 port={port} user=nobody password=secret dbname=none connect_timeout=1"
    ))
    .connect()
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("password=***") && !text.contains("secret"),
        "{text}"
    );
}

#[cfg(feature = "postgres-tls")]
mod tls {
    use super::*;
    use herald::Value;

    const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

    fn url(host: &str, options: &str) -> Option<String> {
        let base = std::env::var("HERALD_TEST_POSTGRES_URL").ok()?;
        let base = base.replace("127.0.0.1", host).replace("localhost", host);
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{separator}{options}"))
    }

    /// Whether the connection `url` opens is encrypted, as the server sees it.
    async fn encrypted(url: &str) -> Result<bool, Error> {
        let db = Db::open(url).pool_size(1).connect().await?;
        let rows = db
            .read(|conn| {
                conn.query(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                    &[herald::SqlType::Bool],
                )
            })
            .await?;
        Ok(rows[0][0] == Value::Bool(true))
    }

    #[tokio::test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL (a server with TLS on)"]
    async fn sslmode_disable_prefer_and_require() {
        let url_of = |mode: &str| url("127.0.0.1", &format!("sslmode={mode}")).unwrap();
        assert!(!encrypted(&url_of("disable")).await.unwrap());
        assert!(encrypted(&url_of("prefer")).await.unwrap());
        assert!(encrypted(&url_of("require")).await.unwrap());
    }

    #[tokio::test]
    #[ignore = "needs HERALD_TEST_POSTGRES_URL (a server with TLS on, its certificate in /etc/ssl/certs/ssl-cert-snakeoil.pem)"]
    async fn verify_full_checks_the_certificate_and_the_host_name() {
        assert!(
            std::path::Path::new(SNAKEOIL).exists(),
            "{SNAKEOIL} holds the server's certificate on this machine"
        );
        let trusted = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
        assert!(
            encrypted(&url("localhost", &trusted).unwrap())
                .await
                .unwrap(),
            "the certificate is issued to localhost"
        );
        let error = encrypted(&url("127.0.0.1", &trusted).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.to_lowercase().contains("certificate") && error.contains("name"),
            "the certificate is not for 127.0.0.1: {error}"
        );
        // Roots that did not issue it (the public CAs; the system's own store here also holds the
        // snake-oil certificate, so it cannot stand for "not trusted").
        let public = "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt";
        let error = encrypted(&url("localhost", public).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("UnknownIssuer") || error.to_lowercase().contains("issuer"),
            "no public CA issued it: {error}"
        );
        // verify-ca checks the chain only.
        let ca = format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}");
        assert!(encrypted(&url("127.0.0.1", &ca).unwrap()).await.unwrap());
    }

    #[tokio::test]
    async fn a_missing_root_file_is_named() {
        // Read before anything is sent: no server is needed.
        let url =
            "postgres://nobody@localhost:1/none?sslmode=verify-full&sslrootcert=/no/such/ca.pem";
        let error = Db::open(url).connect().await.unwrap_err().to_string();
        assert!(error.contains("sslrootcert `/no/such/ca.pem`"), "{error}");
    }
}
