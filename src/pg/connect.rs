//! Connection setup: parse `--source` (URL or key=value) with libpq's environment
//! variables as fallbacks, TLS through rustls, and the session settings every
//! pgmirror connection runs with.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Client;

use crate::error::{Context, Error, Result};

/// How the server's certificate is checked (libpq's sslmode beyond what tokio-postgres parses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// prefer/require: encrypted, certificate not checked (as libpq does).
    Encrypt {
        required: bool,
    },
    /// verify-ca/verify-full: certificate chain checked against the roots, host name checked.
    Verify {
        root_cert: Option<PathBuf>,
    },
}

/// A parsed, environment-completed connection target.
#[derive(Clone)]
pub struct ConnectionSpec {
    config: tokio_postgres::Config,
    tls: TlsMode,
    /// libpq's sslmode as given (verify-ca and verify-full are one TlsMode).
    sslmode: String,
}

/// Settings pinned on every connection so values are decoded the same way everywhere.
// standard_conforming_strings: quote_literal and the --where lexer (plan::sql_text) read
// backslashes in '...' as ordinary characters; a server or role set to off must not change that.
const SESSION_SETTINGS: &str = "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO'; \
     SET standard_conforming_strings = on; \
     SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
     SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0";

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ConnectionSpec {
    /// Parses a `postgres://` URL or a `key=value` string and fills what it leaves out from
    /// PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE and PGSSLROOTCERT.
    pub fn parse(source: &str) -> Result<Self> {
        Self::parse_with_env(source, |name| std::env::var(name).ok())
    }

    pub fn parse_with_env(source: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let (rest, sslmode, root_cert) = take_libpq_only_options(source);
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| Error::usage(format!("cannot parse connection string: {e}")))?;
        if config.get_hosts().is_empty() {
            let host = env("PGHOST").unwrap_or_else(default_host);
            config.host(&host);
        }
        if config.get_ports().is_empty() {
            let port = match env("PGPORT") {
                Some(port) => port
                    .parse::<u16>()
                    .map_err(|_| Error::usage(format!("PGPORT is not a port number: {port:?}")))?,
                None => 5432,
            };
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_password().is_none() {
            if let Some(password) = env("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_dbname().is_none() {
            let dbname = env("PGDATABASE")
                .or_else(|| config.get_user().map(str::to_owned))
                .unwrap_or_default();
            config.dbname(&dbname);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        config.application_name("pgmirror");
        let sslmode = sslmode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into());
        let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT")).map(PathBuf::from);
        let tls = match sslmode.as_str() {
            "disable" | "allow" => TlsMode::Disable,
            "prefer" => TlsMode::Encrypt { required: false },
            "require" => TlsMode::Encrypt { required: true },
            "verify-ca" | "verify-full" => TlsMode::Verify { root_cert },
            other => return Err(Error::usage(format!("unknown sslmode {other:?}"))),
        };
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Encrypt { required: false } => SslMode::Prefer,
            _ => SslMode::Require,
        });
        Ok(ConnectionSpec { config, tls, sslmode })
    }

    /// `user@host:port/database`: what may be shown anywhere. Never the password.
    pub fn redacted(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.config.get_user().unwrap_or(""),
            host,
            port,
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// The connection as a key=value string without its password (host, port, database,
    /// user, sslmode), for a file to record: a later run parses it, and PGPASSWORD or the
    /// environment supply the password again.
    pub fn without_password(&self) -> String {
        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = Vec::new();
        match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => parts.push(format!("host={}", quote(name))),
            Some(Host::Unix(path)) => parts.push(format!("host={}", quote(&path.display().to_string()))),
            None => {}
        }
        if let Some(port) = self.config.get_ports().first() {
            parts.push(format!("port={port}"));
        }
        parts.push(format!("dbname={}", quote(self.database())));
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        parts.push(format!("sslmode={}", self.sslmode));
        if let TlsMode::Verify {
            root_cert: Some(path),
        } = &self.tls
        {
            parts.push(format!("sslrootcert={}", quote(&path.display().to_string())));
        }
        parts.join(" ")
    }

    /// The same server, user and settings, another database.
    pub fn with_database(&self, database: &str) -> ConnectionSpec {
        let mut other = self.clone();
        other.config.dbname(database);
        other
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    pub fn tls_mode(&self) -> &TlsMode {
        &self.tls
    }

    /// The connection as libpq environment variables, for the PostgreSQL programs pgmirror
    /// starts: the password travels in the child's environment, never in its argv.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => env.push(("PGHOST", name.clone())),
            Some(Host::Unix(path)) => env.push(("PGHOST", path.display().to_string())),
            None => {}
        }
        if let Some(port) = self.config.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        if let Some(user) = self.config.get_user() {
            env.push(("PGUSER", user.to_owned()));
        }
        if let Some(dbname) = self.config.get_dbname() {
            env.push(("PGDATABASE", dbname.to_owned()));
        }
        if let Some(password) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        env.push(("PGSSLMODE", self.sslmode.clone()));
        if let TlsMode::Verify {
            root_cert: Some(path),
        } = &self.tls
        {
            env.push(("PGSSLROOTCERT", path.display().to_string()));
        }
        if let Some(timeout) = self.config.get_connect_timeout() {
            env.push(("PGCONNECT_TIMEOUT", timeout.as_secs().max(1).to_string()));
        }
        env.push(("PGAPPNAME", "pgmirror".to_owned()));
        env
    }

    /// Connects, spawns the connection task on the current tokio runtime and pins the
    /// session settings.
    pub async fn connect(&self) -> Result<Client> {
        crate::stop::check_stop()?;
        let context = || format!("connecting to {}", self.redacted());
        let client = match &self.tls {
            TlsMode::Disable => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .with_context(context)?;
                let token = client.cancel_token();
                spawn_connection(connection, move || {
                    crate::stop::send_cancel(token.cancel_query(tokio_postgres::NoTls))
                });
                client
            }
            mode => {
                let tls =
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(mode).with_context(context)?);
                let (client, connection) = self.config.connect(tls.clone()).await.with_context(context)?;
                let token = client.cancel_token();
                spawn_connection(connection, move || {
                    crate::stop::send_cancel(token.cancel_query(tls.clone()))
                });
                client
            }
        };
        client
            .batch_execute(SESSION_SETTINGS)
            .await
            .context("setting session parameters")?;
        Ok(client)
    }
}

/// Drives the connection on the current runtime, with its cancel key registered for a stop
/// request for as long as the connection lives.
fn spawn_connection<F>(connection: F, cancel: impl Fn() -> bool + Send + Sync + 'static)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    let registration = crate::stop::register_connection(cancel);
    tokio::spawn(async move {
        let _registration = registration;
        connection.await
    });
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSpec")
            .field("target", &self.redacted())
            .field("tls", &self.tls)
            .finish()
    }
}

/// libpq's default is the local Unix socket where Debian puts it, else TCP localhost.
fn default_host() -> String {
    let socket_dir = "/var/run/postgresql";
    if Path::new(socket_dir).is_dir() {
        socket_dir.into()
    } else {
        "localhost".into()
    }
}

/// Removes `sslmode` and `sslrootcert` (whose libpq values tokio-postgres rejects) from a URL
/// query or a key=value string, returning the rest and the two values.
fn take_libpq_only_options(source: &str) -> (String, Option<String>, Option<String>) {
    let mut sslmode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            sslmode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            root_cert = Some(value.to_owned());
            true
        }
        _ => false,
    };
    let is_url = source.starts_with("postgres://") || source.starts_with("postgresql://");
    let rest = if is_url {
        match source.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(key, value)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => source.to_owned(),
        }
    } else {
        source
            .split_whitespace()
            .filter(|token| {
                let (key, value) = token.split_once('=').unwrap_or((token, ""));
                !take(key.trim(), value.trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, sslmode, root_cert)
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(mode: &TlsMode) -> std::result::Result<rustls::ClientConfig, std::io::Error> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?;
    let config = match mode {
        TlsMode::Verify { root_cert } => {
            let mut roots = rustls::RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    use rustls::pki_types::pem::PemObject;
                    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                        std::io::Error::other(format!("reading root certificate {}: {e}", path.display()))
                    })?;
                    for cert in certs {
                        let cert =
                            cert.map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                        roots.add(cert).map_err(std::io::Error::other)?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// sslmode=require semantics: encrypt, but accept any certificate (signatures still checked).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn environment_fills_what_the_source_leaves_out() {
        let spec = ConnectionSpec::parse_with_env(
            "dbname=app",
            env(&[
                ("PGHOST", "db.example"),
                ("PGPORT", "6543"),
                ("PGUSER", "ops"),
                ("PGPASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(spec.redacted(), "ops@db.example:6543/app");
        assert!(!format!("{spec:?}").contains("s3cret"));
    }

    #[test]
    fn verify_full_is_taken_from_url_and_key_value() {
        let spec = ConnectionSpec::parse_with_env(
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            spec.tls_mode(),
            &TlsMode::Verify {
                root_cert: Some("/ca.pem".into())
            }
        );
        let spec = ConnectionSpec::parse_with_env("host=h sslmode=require user=u", env(&[])).unwrap();
        assert_eq!(spec.tls_mode(), &TlsMode::Encrypt { required: true });
        assert!(ConnectionSpec::parse_with_env("host=h sslmode=bogus", env(&[])).is_err());
    }
}
