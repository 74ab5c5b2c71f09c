//! The node's side of a hand-back: when the core answers again, the entries written on the
//! node's downtime branch go to the core in order (`POST /node/handback`, a batch at a time,
//! each ending at a checkpoint the node's key signed), starting where the core says it has
//! taken the branch up to, so that a hand-back cut short (either side killed, the network
//! gone) resumes without sending anything twice. Once the core has all of it, the branch is
//! cut and the replica follows the core's ledger, which now holds the handed-back writes.
//!
//! What became of each unit (applied, or queued for a person, with the Task) is kept in
//! `node_handback_unit`, and each downtime in `node_outage`: the outage report.

use super::handback::{Answer, UnitOutcome};
use super::wire::{HANDBACK_CONTENT_TYPE, HandBack, HandBackMeta};
use rusqlite::OptionalExtension;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vaidya_store::{Conn, Store, StoreError};

/// Entries in one hand-back request at most by default (it ends at the last branch checkpoint
/// within).
pub const BATCH_ENTRIES: u64 = 5000;

/// What a hand-back step ran into.
pub enum Failed {
    /// The core did not answer (or not usefully): the node stays in downtime and tries again.
    Unreachable(String),
    /// The core refused it: a person must look (the branch stays, nothing is lost).
    Refused(String),
}

/// The node's own tables for the outage report.
pub const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS node_outage (fork INTEGER NOT NULL, started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL,
        entries INTEGER NOT NULL, units INTEGER NOT NULL, applied INTEGER NOT NULL, queued INTEGER NOT NULL, PRIMARY KEY (fork, started_ms))",
    "CREATE TABLE IF NOT EXISTS node_handback_unit (fork INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
        outcome TEXT NOT NULL, core_first INTEGER, core_last INTEGER, task TEXT, reason TEXT, handed_ms INTEGER NOT NULL,
        PRIMARY KEY (fork, first))",
];

/// The branch as it stands: fork, start time, last entry.
pub fn branch(conn: &Conn) -> Result<Option<(u64, i64, u64)>, StoreError> {
    let size = vaidya_store::read::ledger_size(conn)?;
    let conn = conn.require_sqlite("a downtime branch")?;
    let row: Option<(i64, i64)> = conn.query_row("SELECT fork, started_ms FROM branch WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    Ok(row.map(|(f, t)| (f as u64, t, size)))
}

/// Talks to the core for one hand-back.
pub struct Sender<'a> {
    pub core: &'a str,
    pub token: &'a str,
    pub agent: &'a ureq::Agent,
    pub store: &'a Store,
    pub issuer: u8,
    /// Entries per request at most.
    pub batch: u64,
}

/// How a finished hand-back went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub entries: u64,
    pub units: u64,
    pub applied: u64,
    pub queued: u64,
}

impl Sender<'_> {
    /// How far the core has taken the branch from `fork`.
    pub fn taken(&self, fork: u64) -> Result<u64, Failed> {
        let url = format!("{}/node/handback?fork={fork}", self.core.trim_end_matches('/'));
        let resp = self.agent.get(&url).header("Authorization", &format!("Bearer {}", self.token)).call().map_err(|e| Failed::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().with_config().limit(1 << 20).read_to_string().map_err(|e| Failed::Unreachable(e.to_string()))?;
        match status {
            200 => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["size"].as_u64())
                .ok_or_else(|| Failed::Unreachable(format!("the core's answer is not a hand-back status: {body}"))),
            401 | 403 | 409 => Err(Failed::Refused(format!("the core answered {status}: {body}"))),
            _ => Err(Failed::Unreachable(format!("the core answered {status}: {body}"))),
        }
    }

    /// Send everything after `taken` up to `end`; the counts of what the core said.
    pub fn send(&self, fork: u64, mut taken: u64, end: u64) -> Result<Sent, Failed> {
        let mut sent = Sent::default();
        let started = Instant::now();
        while taken < end {
            let (batch, units) = self.batch(fork, taken, end)?;
            let n = batch.entries.len() as u64;
            let url = format!("{}/node/handback", self.core.trim_end_matches('/'));
            let resp = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", HANDBACK_CONTENT_TYPE)
                .send(&batch.encode()[..])
                .map_err(|e| Failed::Unreachable(format!("{url}: {e}")))?;
            let status = resp.status().as_u16();
            let body = resp.into_body().with_config().limit(64 << 20).read_to_string().map_err(|e| Failed::Unreachable(e.to_string()))?;
            match status {
                200 => {
                    let answer: Answer = serde_json::from_str(&body).map_err(|e| Failed::Unreachable(format!("the core's answer to a hand-back: {e}")))?;
                    self.record(fork, &answer.units)?;
                    sent.entries += n;
                    sent.units += units;
                    sent.applied += answer.units.iter().filter(|u| u.outcome == "applied").count() as u64;
                    sent.queued += answer.units.iter().filter(|u| u.outcome == "queued").count() as u64;
                    taken = answer.size;
                }
                // Taken already (an answer lost to a cut connection): go on from where it is.
                409 => {
                    let now = self.taken(fork)?;
                    if now <= taken {
                        return Err(Failed::Refused(format!("the core refused a hand-back: {body}")));
                    }
                    self.record_lost(fork, taken, now)?;
                    taken = now;
                }
                400 | 401 | 403 | 413 | 422 => return Err(Failed::Refused(format!("the core refused a hand-back ({status}): {body}"))),
                _ => return Err(Failed::Unreachable(format!("the core answered a hand-back with {status}: {body}"))),
            }
        }
        tracing::info!(entries = sent.entries, units = sent.units, queued = sent.queued, seconds = started.elapsed().as_secs_f64(), "downtime entries handed back");
        Ok(sent)
    }

    /// The next batch after `taken`: whole units, ending at a signed branch checkpoint.
    fn batch(&self, fork: u64, taken: u64, end: u64) -> Result<(HandBack, u64), Failed> {
        let (issuer, most) = (self.issuer, self.batch);
        let read = |conn: &Conn| -> Result<Option<(HandBack, u64)>, StoreError> {
            let conn = conn.require_sqlite("a downtime branch")?;
            let signed: Vec<(i64, String)> = conn
                .prepare("SELECT tree_size, note FROM branch_checkpoint WHERE tree_size > ?1 ORDER BY tree_size")?
                .query_map([taken as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let within = signed.iter().rev().find(|(s, _)| (*s as u64) <= taken + most).or(signed.first());
            let Some((last, note)) = within.cloned() else { return Ok(None) };
            let last = (last as u64).min(end);
            let units: Vec<(u64, u64)> = conn
                .prepare("SELECT first_seq, last_seq FROM branch_tx WHERE first_seq > ?1 AND last_seq <= ?2 ORDER BY first_seq")?
                .query_map([taken as i64, last as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?
                .collect::<Result<_, _>>()?;
            let entries: Vec<Vec<u8>> = conn
                .prepare("SELECT entry FROM ledger WHERE seq > ?1 AND seq <= ?2 ORDER BY seq")?
                .query_map([taken as i64, last as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let prefix = crate::numbering::node_prefix(issuer);
            let counters: BTreeMap<String, u64> = conn
                .prepare("SELECT name, value FROM sequence WHERE name LIKE ?1 OR name LIKE 'opd-token:%'")?
                .query_map([format!("{prefix}%")], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<Result<_, _>>()?;
            let n = units.len() as u64;
            Ok(Some((HandBack { meta: HandBackMeta { fork, units, counters }, checkpoint: note, entries }, n)))
        };
        match self.store.read(read).map_err(|e| Failed::Refused(format!("reading the branch: {e}")))? {
            Some(b) => Ok(b),
            None => Err(Failed::Unreachable(format!("the branch after entry {taken} is not signed yet"))),
        }
    }

    fn record(&self, fork: u64, units: &[UnitOutcome]) -> Result<(), Failed> {
        let units = units.to_vec();
        self.store
            .write_blocking(move |tx| -> Result<(), StoreError> {
                let now = vaidya_store::now_ms();
                let conn = tx.conn().require_sqlite("a downtime branch")?;
                for u in &units {
                    conn.execute(
                        "INSERT OR REPLACE INTO node_handback_unit (fork, first, last, outcome, core_first, core_last, task, reason, handed_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        rusqlite::params![fork as i64, u.first as i64, u.last as i64, u.outcome, u.core.map(|c| c.0 as i64), u.core.map(|c| c.1 as i64), u.task, u.reason, now],
                    )?;
                }
                Ok(())
            })
            .map_err(|e| Failed::Refused(format!("recording the hand-back: {e}")))
    }

    /// Units the core took whose answer never arrived.
    fn record_lost(&self, fork: u64, from: u64, to: u64) -> Result<(), Failed> {
        self.store
            .write_blocking(move |tx| -> Result<(), StoreError> {
                tx.conn().require_sqlite("a downtime branch")?.execute(
                    "INSERT OR IGNORE INTO node_handback_unit (fork, first, last, outcome, handed_ms, reason)
                     SELECT ?1, first_seq, last_seq, 'taken', ?4, 'the core took it; its answer was lost to a cut connection (see its reconciliation queue)'
                     FROM branch_tx WHERE first_seq > ?2 AND last_seq <= ?3",
                    rusqlite::params![fork as i64, from as i64, to as i64, vaidya_store::now_ms()],
                )?;
                Ok(())
            })
            .map_err(|e| Failed::Refused(format!("recording the hand-back: {e}")))
    }
}

/// Wait (briefly) until the branch's last entry is covered by a signed checkpoint: the idle
/// writer signs within its checkpoint interval.
pub fn wait_signed(store: &Store, end: u64) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let signed: Option<i64> = store
            .read(|c| c.require_sqlite("a downtime branch")?.query_row("SELECT max(tree_size) FROM branch_checkpoint", [], |r| r.get(0)).map_err(StoreError::from))
            .map_err(|e| Failed::Refused(e.to_string()))?;
        if signed.is_some_and(|s| s as u64 >= end) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failed::Unreachable(format!("the branch's last entry {end} is not signed yet")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Cut the branch (all of it is at the core) and keep the outage's summary.
pub fn finish(store: &Store, fork: u64, started_ms: i64, entries: u64) -> Result<u64, StoreError> {
    store.write_blocking(move |tx| -> Result<u64, StoreError> {
        let (units, applied, queued): (i64, i64, i64) = tx.conn().require_sqlite("a downtime branch")?.query_row(
            "SELECT count(*), coalesce(sum(outcome = 'applied'), 0), coalesce(sum(outcome = 'queued'), 0) FROM node_handback_unit WHERE fork = ?1",
            [fork as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        tx.conn().require_sqlite("a downtime branch")?.execute(
            "INSERT OR REPLACE INTO node_outage (fork, started_ms, ended_ms, entries, units, applied, queued) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![fork as i64, started_ms, vaidya_store::now_ms(), entries as i64, units, applied, queued],
        )?;
        tx.cut_branch()
    })
}
