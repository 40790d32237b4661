//! Refuses SQL whose expressions nest too deeply before anything recursive (parser rewrites,
//! planner, optimizer) touches it: a chain like `1 + 1 + … + 1` twenty thousand long once
//! overflowed a server thread's stack and took the whole server down.

use datafusion::sql::sqlparser::{
    dialect::PostgreSqlDialect,
    keywords::Keyword,
    tokenizer::{Token, Tokenizer},
};

/// Most operators (plus open parentheses) one statement may hold.
pub const MAX_OPERATORS: usize = 2_000;

/// SQLSTATE `statement_too_complex`.
pub const TOO_COMPLEX_SQLSTATE: &str = "54001";

/// Checks `sql` token by token (iteratively, so any input is safe to check); an error names
/// the limit that was hit.
pub fn check_complexity(sql: &str) -> Result<(), String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| format!("cannot tokenize the query: {e}"))?;
    let mut operators = 0usize;
    for t in &tokens {
        let counts = match t {
            Token::SemiColon => {
                operators = 0;
                false
            }
            Token::LParen
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::DoubleColon => true,
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
            _ => false,
        };
        if counts {
            operators += 1;
            if operators > MAX_OPERATORS {
                return Err(format!(
                    "statement too complex: more than {MAX_OPERATORS} operators and parentheses"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_queries_pass_and_deep_chains_fail() {
        assert!(check_complexity("select a + b * (c - 1) from t where x in (1, 2, 3)").is_ok());
        let in_list = (0..100_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        assert!(check_complexity(&format!("select * from t where x in ({in_list})")).is_ok());
        let chain = format!("select {}1", "1 + ".repeat(20_000));
        assert!(check_complexity(&chain).is_err());
        let parens = format!("select {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(check_complexity(&parens).is_err());
    }
}
