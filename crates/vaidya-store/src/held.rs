//! Writes held back on a PostgreSQL connection and sent together, in one round trip.
//!
//! Why: the writer appends a resource with some forty statements (the ledger row, tree hashes,
//! history, the resource row, its index rows), and on PostgreSQL each statement sent alone is a
//! round trip to another process. The writer reads nothing those statements return, so they
//! are held here (`Db::execute_later`) and sent before the connection's next query or at the
//! end of the job: consecutive inserts into one table become one multi-row `INSERT`, and the
//! whole lot one simple-protocol batch. Values are written into that SQL as literals: integers
//! and floats by their digits, text between single quotes with quotes doubled (the connection
//! runs with `standard_conforming_strings`, so nothing else is special), bytes as hex `bytea`.
//!
//! Order: inserts may be regrouped by statement only between two other statements (an
//! `UPDATE`, a `DELETE`, an upsert), which keep their place; within one statement's rows the
//! order is kept, so `ON CONFLICT DO NOTHING` keeps the first of two equal keys as a single
//! insert would.

use crate::StoreError;
use crate::sql::Value;

/// Rows per multi-row `INSERT` at most (bounds one statement's size).
const ROWS_PER_INSERT: usize = 1_000;

/// A held statement.
enum Held {
    /// A plain insert of one row: the text before its row, the row, the text after it.
    Insert { head: String, row: String, tail: String },
    /// Anything else, written out whole; it keeps its place.
    Other(String),
}

#[derive(Default)]
pub(crate) struct Pending {
    held: Vec<Held>,
}

impl Pending {
    /// Hold `sql` with `params` written in.
    pub(crate) fn push(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), StoreError> {
        let text = with_literals(sql, params)?;
        self.held.push(match split_insert(&text) {
            Some((head, row, tail)) => Held::Insert { head: head.to_string(), row: row.to_string(), tail: tail.to_string() },
            None => Held::Other(text),
        });
        Ok(())
    }

    /// Forget everything held (the transaction or savepoint it belonged to is rolled back).
    pub(crate) fn discard(&mut self) {
        self.held.clear();
    }

    /// Forget the held statement `marker` (a `SAVEPOINT`) and everything held after it; `false`
    /// when it is not held (it was sent).
    pub(crate) fn discard_from(&mut self, marker: &str) -> bool {
        match self.held.iter().rposition(|h| matches!(h, Held::Other(t) if t == marker)) {
            Some(i) => {
                self.held.truncate(i);
                true
            }
            None => false,
        }
    }

    /// Everything held, as one batch of statements (empty when nothing is held).
    pub(crate) fn take_batch(&mut self) -> String {
        let mut out = String::new();
        let mut group: Vec<(String, String, Vec<String>)> = Vec::new();
        let flush = |group: &mut Vec<(String, String, Vec<String>)>, out: &mut String| {
            for (head, tail, rows) in group.drain(..) {
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    out.push_str(&head);
                    out.push_str(&chunk.join(", "));
                    out.push_str(&tail);
                    out.push_str(";\n");
                }
            }
        };
        for held in self.held.drain(..) {
            match held {
                Held::Insert { head, row, tail } => match group.iter_mut().find(|(h, t, _)| *h == head && *t == tail) {
                    Some((_, _, rows)) => rows.push(row),
                    None => group.push((head, tail, vec![row])),
                },
                Held::Other(text) => {
                    flush(&mut group, &mut out);
                    out.push_str(&text);
                    out.push_str(";\n");
                }
            }
        }
        flush(&mut group, &mut out);
        out
    }
}

/// `INSERT INTO t (a, b) VALUES (x, y)` or with `ON CONFLICT DO NOTHING` after it, split
/// around its one row; `None` for any other statement (an upsert's `DO UPDATE` must not see
/// the same key twice in one statement, so it is not merged).
fn split_insert(text: &str) -> Option<(&str, &str, &str)> {
    if !text.starts_with("INSERT INTO ") {
        return None;
    }
    let start = text.find(" VALUES (")? + " VALUES ".len();
    let end = row_end(text, start)?;
    let tail = &text[end..];
    if !(tail.trim().is_empty() || tail.trim() == "ON CONFLICT DO NOTHING") {
        return None;
    }
    Some((&text[..start], &text[start..end], tail))
}

/// The end (exclusive) of the parenthesised row starting at `start`, quotes respected.
fn row_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `sql` with each `?N` (outside quotes) replaced by parameter N as a literal.
fn with_literals(sql: &str, params: &[Value<'_>]) -> Result<String, StoreError> {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') if chars.peek().is_some_and(|(_, n)| n.is_ascii_digit()) => {
                let mut n = 0usize;
                while let Some((_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                    n = n * 10 + d.to_digit(10).expect("a digit") as usize;
                    chars.next();
                }
                let value = n.checked_sub(1).and_then(|i| params.get(i)).ok_or_else(|| StoreError::Corrupt(format!("the statement has no parameter {n}")))?;
                literal(value, &mut out)?;
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

fn literal(value: &Value<'_>, out: &mut String) -> Result<(), StoreError> {
    use std::fmt::Write;
    match *value {
        Value::Null => out.push_str("NULL"),
        Value::Int(i) => write!(out, "{i}").expect("writing to a string"),
        // Through text: PostgreSQL reads the shortest round-trip digits back to the same double.
        Value::Real(f) if f.is_nan() => out.push_str("'NaN'::float8"),
        Value::Real(f) if f.is_infinite() => out.push_str(if f > 0.0 { "'Infinity'::float8" } else { "'-Infinity'::float8" }),
        Value::Real(f) => write!(out, "'{f:?}'::float8").expect("writing to a string"),
        Value::Text(s) => {
            if s.contains('\0') {
                return Err(StoreError::Corrupt("text with a NUL character cannot be stored".into()));
            }
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Value::Blob(b) => {
            out.push_str("'\\x");
            for byte in b {
                write!(out, "{byte:02x}").expect("writing to a string");
            }
            out.push_str("'::bytea");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_params;

    #[test]
    fn values_become_literals_that_cannot_break_out_of_their_quotes() {
        let sql = with_literals(
            "INSERT INTO t (a, b, c, d, e) VALUES (?1, ?2, ?3, ?4, ?5)",
            &sql_params![7i64, "it's'); DROP TABLE t; --", &vec![0u8, 0xff], 0.1f64, None::<&str>],
        )
        .unwrap();
        assert_eq!(sql, "INSERT INTO t (a, b, c, d, e) VALUES (7, 'it''s''); DROP TABLE t; --', '\\x00ff'::bytea, '0.1'::float8, NULL)");
        assert!(with_literals("SELECT ?2", &sql_params![1i64]).is_err(), "a missing parameter is an error");
        assert!(with_literals("SELECT ?1", &sql_params!["a\0b"]).is_err());
        // A `?1` inside quotes is text, not a parameter.
        assert_eq!(with_literals("SELECT '?1', ?1", &sql_params![5i64]).unwrap(), "SELECT '?1', 5");
    }

    #[test]
    fn inserts_merge_by_statement_between_barriers_and_keep_their_order() {
        let mut p = Pending::default();
        let ix = "INSERT INTO ix (res, v) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
        let led = "INSERT INTO ledger (seq, entry) VALUES (?1, ?2)";
        p.push(led, &sql_params![1i64, "a"]).unwrap();
        p.push(ix, &sql_params![1i64, "x"]).unwrap();
        p.push(led, &sql_params![2i64, "b(c)"]).unwrap();
        p.push(ix, &sql_params![2i64, "y"]).unwrap();
        p.push("DELETE FROM ix WHERE res = ?1", &sql_params![1i64]).unwrap();
        p.push(ix, &sql_params![1i64, "z"]).unwrap();
        p.push("INSERT INTO seq (n, v) VALUES (?1, ?2) ON CONFLICT (n) DO UPDATE SET v = ?2", &sql_params!["k", 3i64]).unwrap();
        assert_eq!(
            p.take_batch(),
            "INSERT INTO ledger (seq, entry) VALUES (1, 'a'), (2, 'b(c)');\n\
             INSERT INTO ix (res, v) VALUES (1, 'x'), (2, 'y') ON CONFLICT DO NOTHING;\n\
             DELETE FROM ix WHERE res = 1;\n\
             INSERT INTO ix (res, v) VALUES (1, 'z') ON CONFLICT DO NOTHING;\n\
             INSERT INTO seq (n, v) VALUES ('k', 3) ON CONFLICT (n) DO UPDATE SET v = 3;\n"
        );
        assert!(p.take_batch().is_empty(), "taken: nothing is held any more");
        // A savepoint never sent is forgotten with what followed it; what came before stays.
        p.push(led, &sql_params![3i64, "c"]).unwrap();
        p.push("SAVEPOINT job", &[]).unwrap();
        p.push(led, &sql_params![4i64, "d"]).unwrap();
        assert!(p.discard_from("SAVEPOINT job"));
        assert!(!p.discard_from("SAVEPOINT job"));
        assert_eq!(p.take_batch(), "INSERT INTO ledger (seq, entry) VALUES (3, 'c');\n");
    }
}
