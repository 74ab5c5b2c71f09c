//! The report indexes in `index.db` (see [`crate::schema`]): which entries name a patient or a
//! user, and where their frames are. Derived from the journal; `verify` recomputes them.

use crate::AuditError;
use crate::journal::{HEADER, Pos};
use crate::writer::IndexRow;
use rusqlite::{Connection, OptionalExtension, params};

/// `(seq, pos)`: the entries up to `seq` are indexed; the journal after them starts at `pos`.
pub(crate) type Marker = (u64, Pos);

pub(crate) fn marker(conn: &Connection) -> Result<Marker, AuditError> {
    let row: Option<(i64, i64, i64)> =
        conn.query_row("SELECT seq, seg, off FROM indexed WHERE one = 1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
    Ok(match row {
        Some((seq, seg, off)) => (seq as u64, Pos { seg: seg as u64, off: off as u64 }),
        None => (0, Pos { seg: 1, off: HEADER }),
    })
}

/// Rows waiting in the staging tables.
pub(crate) fn staged(conn: &Connection) -> Result<u64, AuditError> {
    Ok(conn.query_row("SELECT count(*) FROM audit_user_new", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Stage `rows` (in sequence order, continuing the marker) and move the marker, in one transaction.
pub(crate) fn write(conn: &Connection, rows: &[IndexRow]) -> Result<(), AuditError> {
    let Some(last) = rows.last() else { return Ok(()) };
    let tx = conn.unchecked_transaction()?;
    {
        let mut user = tx.prepare_cached("INSERT INTO audit_user_new (seq, user, seg, off, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut patient =
            tx.prepare_cached("INSERT INTO audit_patient_new (seq, patient, seg, off, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for r in rows {
            let (seq, seg, off) = (r.seq as i64, r.pos.seg as i64, r.pos.off as i64);
            user.execute(params![seq, r.user, seg, off, r.time_ms])?;
            for p in &r.patients {
                patient.execute(params![seq, p, seg, off, r.time_ms])?;
            }
        }
        tx.prepare_cached("INSERT OR REPLACE INTO indexed (one, seq, seg, off) VALUES (1, ?1, ?2, ?3)")?.execute(params![
            last.seq as i64,
            last.pos.seg as i64,
            (last.pos.off + last.frame_len) as i64
        ])?;
    }
    tx.commit()?;
    Ok(())
}

/// Move the staged rows into the ordered indexes, in one sorted pass each.
pub(crate) fn merge(conn: &Connection) -> Result<(), AuditError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO audit_patient (patient, seq, seg, off, time_ms) SELECT patient, seq, seg, off, time_ms FROM audit_patient_new ORDER BY patient, seq;
         DELETE FROM audit_patient_new;
         INSERT INTO audit_user (user, seq, seg, off, time_ms) SELECT user, seq, seg, off, time_ms FROM audit_user_new ORDER BY user, seq;
         DELETE FROM audit_user_new;
         COMMIT;",
    )?;
    Ok(())
}

/// Which index to look in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Patient(&'a str),
    User(&'a str),
}

/// The positions of the indexed entries filed under `key`, in sequence order, and the marker
/// (read in one snapshot).
pub(crate) fn lookup(conn: &Connection, key: Key<'_>) -> Result<(Vec<(u64, Pos)>, Marker), AuditError> {
    let tx = conn.unchecked_transaction()?;
    let (sql, k) = match key {
        Key::Patient(p) => (
            "SELECT seq, seg, off FROM audit_patient WHERE patient = ?1 UNION ALL SELECT seq, seg, off FROM audit_patient_new WHERE patient = ?1 ORDER BY 1",
            p,
        ),
        Key::User(u) => (
            "SELECT seq, seg, off FROM audit_user WHERE user = ?1 UNION ALL SELECT seq, seg, off FROM audit_user_new WHERE user = ?1 ORDER BY 1",
            u,
        ),
    };
    let found = tx
        .prepare(sql)?
        .query_map([k], |r| Ok((r.get::<_, i64>(0)? as u64, Pos { seg: r.get::<_, i64>(1)? as u64, off: r.get::<_, i64>(2)? as u64 })))?
        .collect::<Result<Vec<_>, _>>()?;
    let m = marker(&tx)?;
    Ok((found, m))
}
