//! Who may connect and how: SCRAM-SHA-256 passwords for configured users (pgwire's SASL
//! handler), trust for loopback peers when allowed, and optional TLS (rustls).

use std::{
    collections::HashMap,
    fmt::Debug,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use datafusion_postgres::pgwire::{
    api::{
        ClientInfo, ConnectionManager,
        auth::{
            AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
            noop::NoopStartupHandler,
            sasl::{
                SASLAuthStartupHandler,
                scram::{ScramAuth, gen_salted_password},
            },
        },
    },
    error::{PgWireError, PgWireResult},
    messages::{PgWireBackendMessage, PgWireFrontendMessage},
    tokio::{
        TlsAcceptor,
        tokio_rustls::rustls::{
            self, ServerConfig,
            pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        },
    },
};
use futures::Sink;

use crate::error::QueryError;

/// SCRAM iterations for stored passwords (PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// Users allowed to log in with a password, kept only as SCRAM salted hashes.
#[derive(Debug, Default, Clone)]
pub struct Users {
    salted: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

impl Users {
    /// Users from text with one `name:password` per line (`#` starts a comment line).
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let mut users = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((name, password)) if !name.is_empty() && !password.is_empty() => {
                    users.insert(name.trim(), password)
                }
                _ => {
                    return Err(QueryError::Access(format!(
                        "users line {}: expected `name:password`",
                        n + 1
                    )));
                }
            }
        }
        Ok(users)
    }

    /// Users from a file of `name:password` lines.
    pub fn from_file(path: &Path) -> Result<Self, QueryError> {
        let text = std::fs::read_to_string(path).map_err(|source| QueryError::Io {
            op: format!("reading users from {}", path.display()),
            source,
        })?;
        Self::parse(&text)
    }

    /// Adds (or replaces) `name` with `password`.
    pub fn insert(&mut self, name: &str, password: &str) {
        let salt = salt();
        let hash = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        self.salted.insert(name.to_string(), (salt.to_vec(), hash));
    }

    /// True when nobody can log in with a password.
    pub fn is_empty(&self) -> bool {
        self.salted.is_empty()
    }
}

/// A fresh random salt from the OS.
fn salt() -> [u8; 16] {
    use std::io::Read;
    let mut salt = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt)) {
        // Salts need to be unique, not secret: fall back to the clock.
        tracing::warn!(error = %e, "no /dev/urandom; salting with the clock");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        salt = t.to_le_bytes();
    }
    salt
}

/// How the server admits and protects connections.
#[derive(Clone, Default)]
pub struct Access {
    users: Arc<Users>,
    trust_loopback: bool,
    tls: Option<TlsAcceptor>,
}

impl Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("users", &self.users.salted.len())
            .field("trust_loopback", &self.trust_loopback)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Access {
    /// Passwords for `users`; loopback peers skip them when `trust_loopback`. With no users,
    /// every peer is trusted, which [`Access::check_listen`] allows on loopback only.
    pub fn new(users: Users, trust_loopback: bool) -> Self {
        Self {
            users: Arc::new(users),
            trust_loopback,
            tls: None,
        }
    }

    /// Offers TLS with the PEM certificate chain and private key in these files.
    pub fn with_tls(mut self, cert: &Path, key: &Path) -> Result<Self, QueryError> {
        self.tls = Some(tls_acceptor(cert, key)?);
        Ok(self)
    }

    /// Refuses to serve a non-loopback address without passwords.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), QueryError> {
        if self.users.is_empty() && !addr.ip().is_loopback() {
            return Err(QueryError::Access(format!(
                "refusing to serve SQL on {addr} without passwords: give --users FILE (lines \
                 `name:password`) or WIRETRACE_PASSWORD, or listen on 127.0.0.1"
            )));
        }
        Ok(())
    }

    /// The TLS acceptor, when TLS is configured.
    pub(crate) fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.clone()
    }

    /// A startup handler for one new connection.
    pub(crate) fn startup(&self, connections: &Arc<ConnectionManager>) -> Startup {
        let sasl = (!self.users.is_empty()).then(|| {
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(ScramAuth::new(Arc::new(UserSource(Arc::clone(
                    &self.users,
                )))))
                .with_connection_manager(Arc::clone(connections))
        });
        Startup {
            trust: Trust {
                connections: Arc::clone(connections),
            },
            sasl,
            trust_loopback: self.trust_loopback,
        }
    }
}

/// Reads a PEM certificate chain and key into a rustls acceptor.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, QueryError> {
    let bad = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        QueryError::Access(format!("TLS {what} {}: {e}", path.display()))
    };
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", &cert, &e))?;
    if chain.is_empty() {
        return Err(bad("certificate", &cert, &"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad("key", &key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| bad("setup with", &cert, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Passwords pgwire's SCRAM handler checks against.
#[derive(Debug)]
struct UserSource(Arc<Users>);

#[async_trait]
impl AuthSource for UserSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.0.salted.get(user) {
            Some((salt, hash)) => Ok(Password::new(Some(salt.clone()), hash.clone())),
            // Like PostgreSQL: an unknown user fails the same way as a wrong password.
            None => Err(PgWireError::InvalidPassword(user.to_string())),
        }
    }
}

/// Startup without authentication; issues cancel keys.
#[derive(Debug)]
pub(crate) struct Trust {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }
}

/// One connection's startup: trusted, or SCRAM-SHA-256.
pub(crate) struct Startup {
    trust: Trust,
    sasl: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    trust_loopback: bool,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.sasl {
            Some(sasl) if !(self.trust_loopback && client.socket_addr().ip().is_loopback()) => {
                sasl.on_startup(client, message).await
            }
            _ => self.trust.on_startup(client, message).await,
        }
    }
}
