//! The Postgres wire server: an accept loop (bounded connections, graceful shutdown) that hands
//! each socket to pgwire with DataFusion-backed query handlers.

use std::{future::Future, net::SocketAddr, sync::Arc};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_postgres::{
    DfSessionService, Parser,
    hooks::{
        cursor::CursorStatementHook, set_show::SetShowHook, transactions::TransactionStatementHook,
    },
    pgwire::{
        api::{
            ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type,
            auth::StartupHandler,
            cancel::CancelHandler,
            portal::{Format, Portal},
            query::{ExtendedQueryHandler, SimpleQueryHandler},
            results::{FieldInfo, Response, Tag},
            stmt::QueryParser,
            store::PortalStore,
        },
        error::{ErrorInfo, PgWireError, PgWireResult},
        messages::PgWireBackendMessage,
        tokio::process_socket,
    },
};
use futures::Sink;
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};

use crate::{
    access::Access, cancel::Canceller, error::QueryError, guard, noop::noop_tags,
    readonly::ReadOnlyHook,
};

/// Most connections served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 256;

/// Simple-protocol queries, checked by [`guard::check_complexity`] before DataFusion sees them.
struct GuardedSimple {
    inner: Arc<DfSessionService>,
    canceller: Arc<Canceller>,
}

#[async_trait]
impl SimpleQueryHandler for GuardedSimple {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        guard::check_complexity(query).map_err(too_complex)?;
        if let Some(tags) = noop_tags(query) {
            return Ok(tags
                .into_iter()
                .map(|t| Response::Execution(Tag::new(t)))
                .collect());
        }
        let started = Instant::now();
        let responses = SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await?;
        Ok(responses
            .into_iter()
            .map(|r| self.canceller.bound(client, started, r))
            .collect())
    }
}

fn too_complex(msg: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        guard::TOO_COMPLEX_SQLSTATE.into(),
        msg,
    )))
}

/// The statement type datafusion-postgres keeps per prepared statement.
type DfStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

/// The extended protocol's parser, with the same complexity check before parsing.
struct GuardedParser {
    inner: Arc<Parser>,
}

#[async_trait]
impl QueryParser for GuardedParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        guard::check_complexity(sql).map_err(too_complex)?;
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

/// Extended-protocol queries: parsed through [`GuardedParser`], run by datafusion-postgres.
struct GuardedExtended {
    inner: Arc<DfSessionService>,
    parser: Arc<GuardedParser>,
    canceller: Arc<Canceller>,
}

#[async_trait]
impl ExtendedQueryHandler for GuardedExtended {
    type Statement = DfStatement;
    type QueryParser = GuardedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let response =
            ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows).await?;
        Ok(self.canceller.bound(client, started, response))
    }
}

/// The handler set pgwire asks for on each connection.
struct Handlers {
    simple: Arc<GuardedSimple>,
    extended: Arc<GuardedExtended>,
    access: Access,
    connections: Arc<ConnectionManager>,
    cancel: Arc<Canceller>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.simple)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.extended)
    }

    /// A fresh handler per connection: SCRAM keeps its state in it.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.access.startup(&self.connections))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// A bound SQL server, not yet serving.
pub struct SqlServer {
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    access: Access,
}

impl std::fmt::Debug for SqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl SqlServer {
    /// Binds `addr` for `ctx`, admitting clients as `access` says (which must allow `addr`).
    pub async fn bind(
        addr: &str,
        ctx: Arc<SessionContext>,
        access: Access,
    ) -> Result<Self, QueryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| QueryError::Io {
                op: format!("binding {addr}"),
                source,
            })?;
        let server = Self {
            listener,
            ctx,
            access,
        };
        server.access.check_listen(server.local_addr()?)?;
        Ok(server)
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
        let canceller = Arc::new(Canceller::new(Arc::clone(&connections)));
        let session = Arc::new(DfSessionService::new_with_hooks(
            Arc::clone(&self.ctx),
            vec![
                Arc::new(ReadOnlyHook),
                Arc::new(CursorStatementHook),
                Arc::new(SetShowHook),
                Arc::new(TransactionStatementHook),
            ],
        ));
        let handlers = Arc::new(Handlers {
            simple: Arc::new(GuardedSimple {
                inner: Arc::clone(&session),
                canceller: Arc::clone(&canceller),
            }),
            extended: Arc::new(GuardedExtended {
                parser: Arc::new(GuardedParser {
                    inner: session.query_parser(),
                }),
                inner: session,
                canceller: Arc::clone(&canceller),
            }),
            access: self.access.clone(),
            connections: Arc::clone(&connections),
            cancel: canceller,
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
            let tls = self.access.tls();
            tokio::spawn(async move {
                if let Err(e) = process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
    }
}
