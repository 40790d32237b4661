//! Cancel requests and `statement_timeout` for the whole life of a query. DataFusion does its
//! work while the result rows are pulled — after the query handler has returned — so the
//! row stream itself is bounded: it ends with SQLSTATE 57014 when the client's cancel request
//! arrives or the timeout passes, and dropping it stops DataFusion's tasks.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use datafusion_postgres::pgwire::{
    api::{
        ClientInfo, ConnectionManager,
        cancel::CancelHandler,
        results::{QueryResponse, Response},
    },
    error::{ErrorInfo, PgWireError},
    messages::cancel::CancelRequest,
};
use futures::StreamExt;
use tokio::{sync::watch, time::Instant};

/// Where datafusion-postgres keeps a session's `SET statement_timeout` (milliseconds).
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// Queries whose rows are being produced, by connection (pid and secret key).
type Key = (i32, Vec<u8>);

/// The running queries a cancel request can reach, and pgwire's own handles (which cover the
/// planning phase).
#[derive(Debug)]
pub(crate) struct Canceller {
    connections: Arc<ConnectionManager>,
    running: Mutex<HashMap<Key, (u64, watch::Sender<bool>)>>,
    next_id: AtomicU64,
}

impl Canceller {
    /// Cancels through `connections` as well as the running row streams.
    pub(crate) fn new(connections: Arc<ConnectionManager>) -> Self {
        Self {
            connections,
            running: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Bounds the rows of `response` by the client's cancel requests and statement_timeout,
    /// counted from `started`.
    pub(crate) fn bound<C: ClientInfo>(
        self: &Arc<Self>,
        client: &C,
        started: Instant,
        response: Response,
    ) -> Response {
        let Response::Query(query) = response else {
            return response;
        };
        let deadline = client
            .metadata()
            .get(STATEMENT_TIMEOUT_KEY)
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| started + Duration::from_millis(ms));
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes().to_vec());
        let (tx, rx) = watch::channel(false);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (id, tx));
        let guard = Registered {
            canceller: Arc::clone(self),
            key,
            id,
        };
        Response::Query(bounded(query, rx, deadline, guard))
    }
}

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        if let Some((_, tx)) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            let _ = tx.send(true);
        }
        self.connections
            .cancel(request.pid, &request.secret_key)
            .await;
    }
}

/// Removes a query from [`Canceller`]'s map when its rows end or are dropped (unless a later
/// query of the connection has taken its place).
struct Registered {
    canceller: Arc<Canceller>,
    key: Key,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut running = self
            .canceller
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if running.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            running.remove(&self.key);
        }
    }
}

/// SQLSTATE 57014, as PostgreSQL words it.
fn canceled(why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "57014".into(),
        format!("canceling statement due to {why}"),
    )))
}

/// The rows of `query`, ended early by a cancel request on `cancel` or by `deadline`.
fn bounded(
    mut query: QueryResponse,
    cancel: watch::Receiver<bool>,
    deadline: Option<Instant>,
    guard: Registered,
) -> QueryResponse {
    let rows = std::mem::replace(query.data_rows(), Box::pin(futures::stream::empty()));
    let state = Some((rows, cancel, guard));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (mut rows, mut cancel, guard) = state?;
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            if cancel.wait_for(|c| *c).await.is_err() {
                // Replaced by a later query of the connection: never fires.
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            biased;
            () = cancelled => Err(canceled("user request")),
            () = timeout => Err(canceled("statement timeout")),
            row = rows.next() => Ok(row),
        };
        match outcome {
            Ok(Some(row)) => Some((row, Some((rows, cancel, guard)))),
            Ok(None) => None,
            // Dropping `rows` here stops the query's work.
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut out = QueryResponse::new(query.row_schema(), stream);
    out.set_command_tag(query.command_tag());
    out
}
