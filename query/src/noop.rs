//! Session statements clients send that change nothing here (connection poolers' resets,
//! LISTEN cleanup): answered with their command tag instead of reaching the SQL planner,
//! which does not know them.

/// The command tags to answer `sql` with, when every statement in it is an accepted no-op
/// (asyncpg's pool reset sends several at once).
pub fn noop_tags(sql: &str) -> Option<Vec<&'static str>> {
    if sql.contains(['\'', '"', '$']) {
        return None;
    }
    let tags: Option<Vec<_>> = sql
        .split(';')
        .filter(|s| !s.trim().is_empty())
        .map(noop_tag)
        .collect();
    tags.filter(|t| !t.is_empty())
}

/// The command tag to answer one statement with, when it is an accepted no-op.
fn noop_tag(sql: &str) -> Option<&'static str> {
    let text: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    let text = text.join(" ");
    let words: Vec<String> = text
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        [
            "DISCARD",
            "ALL" | "PLANS" | "SEQUENCES" | "TEMP" | "TEMPORARY",
        ] => Some("DISCARD"),
        ["UNLISTEN", _] => Some("UNLISTEN"),
        ["CLOSE", "ALL"] => Some("CLOSE CURSOR ALL"),
        // No advisory locks are ever taken here.
        ["SELECT", "PG_ADVISORY_UNLOCK_ALL()"] => Some("SELECT 1"),
        ["RESET", "ALL"] => Some("RESET"),
        ["DEALLOCATE", "ALL"] | ["DEALLOCATE", "PREPARE", "ALL"] => Some("DEALLOCATE ALL"),
        ["SET", "SESSION", "CHARACTERISTICS", "AS", "TRANSACTION", ..] => Some("SET"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{noop_tag, noop_tags};

    #[test]
    fn pool_resets_are_no_ops_and_queries_are_not() {
        assert_eq!(noop_tag("discard all;"), Some("DISCARD"));
        assert_eq!(noop_tag("-- pool reset\nDISCARD ALL"), Some("DISCARD"));
        assert_eq!(noop_tag("  UNLISTEN *"), Some("UNLISTEN"));
        assert_eq!(noop_tag("reset all"), Some("RESET"));
        assert_eq!(noop_tag("DEALLOCATE ALL"), Some("DEALLOCATE ALL"));
        assert_eq!(
            noop_tag("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            Some("SET")
        );
        assert_eq!(noop_tag("discard everything"), None);
        assert_eq!(noop_tag("select 1"), None);
        assert_eq!(noop_tag("reset statement_timeout"), None);
    }

    #[test]
    fn a_reset_script_is_answered_statement_by_statement() {
        assert_eq!(
            noop_tags("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"),
            Some(vec!["SELECT 1", "CLOSE CURSOR ALL", "UNLISTEN", "RESET"])
        );
        assert_eq!(noop_tags("RESET ALL; select 1"), None);
        assert_eq!(noop_tags("-- ping"), None);
        assert_eq!(noop_tags("UNLISTEN \"chan\""), None);
    }
}
