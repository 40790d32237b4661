//! Session statements clients send that change nothing here (connection poolers' resets,
//! LISTEN cleanup): answered with their command tag instead of reaching the SQL planner,
//! which does not know them.

/// The command tag to answer `sql` with, when it is one of the accepted no-op statements.
pub fn noop_tag(sql: &str) -> Option<&'static str> {
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
        ["RESET", "ALL"] => Some("RESET"),
        ["DEALLOCATE", "ALL"] | ["DEALLOCATE", "PREPARE", "ALL"] => Some("DEALLOCATE ALL"),
        ["SET", "SESSION", "CHARACTERISTICS", "AS", "TRANSACTION", ..] => Some("SET"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::noop_tag;

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
}
