//! Remote SQL is read-only: a query hook that refuses every statement which could change data
//! or the catalog, or read and write server files (DDL, DML, COPY, CREATE EXTERNAL TABLE, …),
//! with SQLSTATE 25006 (read_only_sql_transaction). Statements are allowed by name; anything
//! new in the SQL dialect is refused until it is known to be harmless.

use async_trait::async_trait;
use datafusion::{
    common::ParamValues, logical_expr::LogicalPlan, prelude::SessionContext,
    sql::sqlparser::ast::Statement,
};
use datafusion_postgres::{
    QueryHook,
    hooks::HookClient,
    pgwire::{
        api::{ClientInfo, results::Response},
        error::{ErrorInfo, PgWireError, PgWireResult},
    },
};

/// SQLSTATE for a write attempted in a read-only transaction.
pub const READ_ONLY_SQLSTATE: &str = "25006";

/// Refuses statements that are not read-only.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadOnlyHook;

/// Whether `stmt` only reads (queries, EXPLAIN, SHOW, SET of session settings, transaction and
/// cursor control).
pub fn is_read_only(stmt: &Statement) -> bool {
    use Statement as S;
    match stmt {
        S::Query(_)
        | S::Explain { .. }
        | S::ExplainTable { .. }
        | S::Set(_)
        | S::ShowVariable { .. }
        | S::ShowVariables { .. }
        | S::ShowTables { .. }
        | S::ShowColumns { .. }
        | S::ShowFunctions { .. }
        | S::ShowCreate { .. }
        | S::ShowSchemas { .. }
        | S::ShowDatabases { .. }
        | S::ShowCatalogs { .. }
        | S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. }
        | S::Declare { .. }
        | S::Fetch { .. }
        | S::Close { .. }
        | S::Discard { .. }
        | S::Deallocate { .. }
        | S::Reset(_)
        | S::UNLISTEN { .. }
        | S::Execute { .. } => true,
        S::Prepare { statement, .. } => is_read_only(statement),
        _ => false,
    }
}

fn refuse(stmt: &Statement) -> PgWireError {
    let text = stmt.to_string();
    let verb: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        READ_ONLY_SQLSTATE.into(),
        format!("cannot execute {verb}: wiretrace's SQL interface is read-only"),
    )))
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!is_read_only(statement)).then(|| Err(refuse(statement)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        (!is_read_only(statement)).then(|| Err(refuse(statement)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!is_read_only(statement)).then(|| Err(refuse(statement)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};

    use super::*;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0)
    }

    #[test]
    fn reads_pass_and_writes_are_refused() {
        for sql in [
            "select * from l7_flow_log",
            "explain select 1",
            "set extra_float_digits = 3",
            "show timezone",
            "begin",
            "commit",
            "prepare p as select 1",
        ] {
            assert!(is_read_only(&parse(sql)), "{sql}");
        }
        for sql in [
            "create table t (a int)",
            "insert into l7_flow_log (_id) values (1)",
            "delete from l7_flow_log",
            "drop table l7_flow_log",
            "copy l7_flow_log to '/tmp/x'",
            "copy l7_flow_log from '/etc/passwd'",
            "create view v as select 1",
            "prepare p as insert into t values (1)",
            "truncate l7_flow_log",
        ] {
            assert!(!is_read_only(&parse(sql)), "{sql}");
        }
    }
}
