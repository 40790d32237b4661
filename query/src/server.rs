//! The Postgres wire server: an accept loop (bounded connections, graceful shutdown) that hands
//! each socket to pgwire with DataFusion-backed query handlers.

use std::{future::Future, net::SocketAddr, sync::Arc};

use datafusion::prelude::SessionContext;
use datafusion_postgres::{
    DfSessionService,
    pgwire::{
        api::{
            ConnectionManager, PgWireServerHandlers,
            auth::{StartupHandler, noop::NoopStartupHandler},
            cancel::{CancelHandler, DefaultCancelHandler},
            query::{ExtendedQueryHandler, SimpleQueryHandler},
        },
        tokio::process_socket,
    },
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::error::QueryError;

/// Most connections served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 256;

/// Startup without authentication (loopback default); issues cancel keys.
#[derive(Debug)]
struct TrustStartup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }
}

/// The handler set pgwire asks for on each connection.
struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<TrustStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// A bound SQL server, not yet serving.
pub struct SqlServer {
    listener: TcpListener,
    ctx: Arc<SessionContext>,
}

impl std::fmt::Debug for SqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl SqlServer {
    /// Binds `addr` for `ctx`.
    pub async fn bind(addr: &str, ctx: Arc<SessionContext>) -> Result<Self, QueryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| QueryError::Io {
                op: format!("binding {addr}"),
                source,
            })?;
        Ok(Self { listener, ctx })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, QueryError> {
        self.listener.local_addr().map_err(|source| QueryError::Io {
            op: "reading the bound address".into(),
            source,
        })
    }

    /// Serves until `shutdown` resolves; connections in progress are left to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), QueryError> {
        let connections = Arc::new(ConnectionManager::new());
        let handlers = Arc::new(Handlers {
            session: Arc::new(DfSessionService::new(Arc::clone(&self.ctx))),
            startup: Arc::new(TrustStartup {
                connections: Arc::clone(&connections),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&slots).acquire_owned() => p.map_err(|_| QueryError::Io {
                    op: "connection limiter closed".into(),
                    source: std::io::Error::other("closed"),
                })?,
                () = &mut shutdown => return Ok(()),
            };
            let (socket, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => return Ok(()),
            };
            let handlers = Arc::clone(&handlers);
            tokio::spawn(async move {
                if let Err(e) = process_socket(socket, None, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
    }
}
