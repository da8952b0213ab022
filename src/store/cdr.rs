//! Call records: one row per finished call in `cdrs`, written in batches by the switch's store
//! thread ([`Store::save_calls`]) and read by the CLI (`tambun cdr`, `tambun cdr summary`).
//!
//! Answered calls in progress are kept in `calls_open` too ([`OpenCallOp`]), so a call the
//! switch never saw end (a crash, `kill -9`, a power cut) still gets a record: at the next
//! start [`Store::recover_interrupted_calls`] writes each as `interrupted`, ended when the
//! switch last had it (the store thread refreshes `seen_ms` every few seconds).
//!
//! Durability: each batch is one committed transaction in WAL mode with `synchronous=NORMAL`.
//! A commit is in the WAL file (the OS page cache) before `insert_cdrs` returns, so a crash or
//! kill of the tambun process loses no recorded call; only a power loss or kernel crash can
//! lose the last few commits (the ones not yet checkpointed or synced). No clock here: times
//! are given by the caller, in Unix milliseconds.

use rusqlite::{params, params_from_iter, Row, TransactionBehavior};
use serde::Serialize;

use super::{parse_col, Store, StoreError};
pub use crate::cdr::{
    CdrRecord, Disposition, MediaTotals, OpenCallOp, TrunkCallRow, UnknownDisposition,
};
use crate::types::OpdCode;

/// A stored call record and its row id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdrRow {
    pub id: i64,
    #[serde(flatten)]
    pub record: CdrRecord,
}

/// Which records [`Store::cdrs`] returns. The default is every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    /// Calls placed by or to this OPD (its code is the caller's or the callee's OPD).
    pub opd: Option<OpdCode>,
    /// Calls that started at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Calls that started before this time (Unix ms, exclusive).
    pub until_ms: Option<i64>,
    /// At most this many: the latest ones (still returned oldest first).
    pub limit: Option<usize>,
}

/// Call counts and talk time of a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Calls (whatever their disposition).
    pub calls: u64,
    /// Calls that were answered (they have an answer time: `answered`, `expired` and
    /// `media-timeout` calls).
    pub answered: u64,
    /// Talk time of the answered calls, in milliseconds.
    pub answered_ms: i64,
    /// Calls through the central trunk.
    pub trunk_calls: u64,
    /// Talk time of the answered trunk calls, in milliseconds.
    pub trunk_answered_ms: i64,
    /// Attempts blocked by the toll guard or refused for lack of permission (disposition
    /// `blocked`).
    pub blocked: u64,
    /// Calls to a conference room (route `room N`: one per participant), and their time in
    /// the room, in milliseconds; part of `calls` and `answered_ms` too.
    pub conference_calls: u64,
    pub conference_ms: i64,
}

impl Usage {
    /// Talk time in minutes.
    pub fn minutes(&self) -> f64 {
        self.answered_ms as f64 / 60_000.0
    }

    /// Time in conference rooms, in minutes.
    pub fn conference_minutes(&self) -> f64 {
        self.conference_ms as f64 / 60_000.0
    }

    /// Trunk talk time in minutes.
    pub fn trunk_minutes(&self) -> f64 {
        self.trunk_answered_ms as f64 / 60_000.0
    }
}

/// The [`Usage`] of one OPD: the calls placed by OR received by it. A call between two OPDs
/// counts for both (so the per-OPD figures add up to more than the total); a call inside one
/// OPD counts once for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpdUsage {
    pub opd: OpdCode,
    #[serde(flatten)]
    pub usage: Usage,
}

const CDR_COLUMNS: &str = "id, call_id, caller, dialled, callee, caller_opd, callee_opd, route, \
     trunk, start_ms, answer_ms, end_ms, disposition, sip_status, media_packets_a2b, \
     media_packets_b2a, media_lost_a2b, media_lost_b2a, media_jitter_us_max";
const INSERT_CDR: &str = "INSERT INTO cdrs (call_id, caller, dialled, callee, caller_opd, \
     callee_opd, route, trunk, start_ms, answer_ms, end_ms, duration_ms, disposition, sip_status, \
     media_packets_a2b, media_packets_b2a, media_lost_a2b, media_lost_b2a, media_jitter_us_max) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";
/// Sums a `per` set of (opd, call) rows into the [`Usage`] columns.
const USAGE_SUMS: &str = "COUNT(*), \
     COALESCE(SUM(answer_ms IS NOT NULL), 0), \
     COALESCE(SUM(duration_ms), 0), \
     COALESCE(SUM(trunk), 0), \
     COALESCE(SUM(CASE WHEN trunk = 1 THEN duration_ms ELSE 0 END), 0), \
     COALESCE(SUM(disposition = 'blocked'), 0), \
     COALESCE(SUM(route LIKE 'room %'), 0), \
     COALESCE(SUM(CASE WHEN route LIKE 'room %' THEN duration_ms ELSE 0 END), 0)";

impl Store {
    /// Writes finished calls, all in one transaction (the switch batches them). When this
    /// returns `Ok`, the records survive a crash of the process (see the module notes).
    pub fn insert_cdrs(&mut self, records: &[CdrRecord]) -> Result<(), StoreError> {
        self.save_calls(records, &[])
    }

    /// Applies `open` (in order) and writes `records`, in one transaction: a call's finished
    /// record and the removal of its open row commit together, so a crash leaves one or the
    /// other, never both or neither.
    pub fn save_calls(
        &mut self,
        records: &[CdrRecord],
        open: &[OpenCallOp],
    ) -> Result<(), StoreError> {
        if records.is_empty() && open.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO calls_open (call_id, from_tag, record, seen_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM calls_open WHERE call_id = ?1 AND from_tag = ?2")?;
            for op in open {
                match op {
                    OpenCallOp::Open {
                        from_tag,
                        record,
                        now_ms,
                    } => {
                        let json = serde_json::to_string(record)
                            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                        upsert.execute(params![record.call_id, from_tag, json, now_ms])?;
                    }
                    OpenCallOp::Close { call_id, from_tag } => {
                        delete.execute(params![call_id, from_tag])?;
                    }
                }
            }
        }
        insert_all(&tx, records)?;
        tx.commit()?;
        Ok(())
    }

    /// Notes that the switch still had every open call at `now_ms` (the store thread calls
    /// this every few seconds): an interrupted call's record ends no earlier than this.
    pub fn touch_open_calls(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE calls_open SET seen_ms = ?1", params![now_ms])?;
        Ok(())
    }

    /// At start, before the switch serves: every call still open was cut off by a crash. Each
    /// is written as an `interrupted` record ending when the switch last had it (`seen_ms`,
    /// never before the answer nor after `now_ms`), in one transaction that also empties
    /// `calls_open`. Returns the records written. A row that does not parse is dropped with
    /// a warning (it cannot be billed; it must not stop the switch).
    pub fn recover_interrupted_calls(&mut self, now_ms: i64) -> Result<Vec<CdrRecord>, StoreError> {
        let rows: Vec<(String, i64)> = {
            let mut q = self
                .conn
                .prepare("SELECT record, seen_ms FROM calls_open ORDER BY seen_ms")?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut records = Vec::with_capacity(rows.len());
        for (json, seen_ms) in rows {
            match serde_json::from_str::<CdrRecord>(&json) {
                Ok(mut r) => {
                    let answered = r.answer_ms.unwrap_or(r.start_ms);
                    r.end_ms = seen_ms.clamp(answered, now_ms.max(answered));
                    r.disposition = Disposition::Interrupted;
                    records.push(r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an open call's saved record does not parse; dropped")
                }
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert_all(&tx, &records)?;
        tx.execute("DELETE FROM calls_open", [])?;
        tx.commit()?;
        Ok(records)
    }

    /// The records matching `filter`, ordered by start time (then by row id).
    pub fn cdrs(&self, filter: &CdrFilter) -> Result<Vec<CdrRow>, StoreError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(opd) = &filter.opd {
            clauses.push("(caller_opd = ? OR callee_opd = ?)");
            args.push(opd.as_str().to_owned().into());
            args.push(opd.as_str().to_owned().into());
        }
        if let Some(since) = filter.since_ms {
            clauses.push("start_ms >= ?");
            args.push(since.into());
        }
        if let Some(until) = filter.until_ms {
            clauses.push("start_ms < ?");
            args.push(until.into());
        }
        let mut sql = format!("SELECT {CDR_COLUMNS} FROM cdrs");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        if let Some(limit) = filter.limit {
            sql.push_str(" ORDER BY start_ms DESC, id DESC LIMIT ?");
            args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        } else {
            sql.push_str(" ORDER BY start_ms, id");
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt
            .query_map(params_from_iter(args), cdr_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if filter.limit.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Usage per OPD of the calls that started in `[since_ms, until_ms)` (`None`: unbounded),
    /// sorted by OPD code. "Calls" of an OPD are the calls placed by OR received by that OPD:
    /// a call between two OPDs counts for both, a call inside one OPD once. Minutes are the
    /// talk time of those calls, counted once per call per OPD. OPDs without calls are absent.
    pub fn cdr_summary_by_opd(
        &self,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<OpdUsage>, StoreError> {
        // UNION (not UNION ALL) drops the second copy of a call whose caller and callee are
        // in the same OPD: the rows (opd, id) are equal.
        let sql = format!(
            "WITH c AS (SELECT id, caller_opd, callee_opd, answer_ms, duration_ms, trunk, route, \
                 disposition FROM cdrs \
                 WHERE (?1 IS NULL OR start_ms >= ?1) AND (?2 IS NULL OR start_ms < ?2)), \
             per AS ( \
                 SELECT caller_opd AS opd, id, answer_ms, duration_ms, trunk, route, disposition FROM c \
                     WHERE caller_opd IS NOT NULL \
                 UNION \
                 SELECT callee_opd AS opd, id, answer_ms, duration_ms, trunk, route, disposition FROM c \
                     WHERE callee_opd IS NOT NULL) \
             SELECT opd, {USAGE_SUMS} FROM per GROUP BY opd ORDER BY opd"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![since_ms, until_ms], |r| {
            Ok(OpdUsage {
                opd: parse_col(r, 0)?,
                usage: usage_from_row(r, 1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The trunk calls that started at or after `since_ms`, oldest first: what the toll
    /// guard's hourly windows held before a restart.
    pub fn trunk_calls_since(&self, since_ms: i64) -> Result<Vec<TrunkCallRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT caller, caller_opd, start_ms, route FROM cdrs \
             WHERE start_ms >= ?1 AND trunk = 1 ORDER BY start_ms, id",
        )?;
        let rows = stmt.query_map(params![since_ms], |r| {
            let opd: Option<String> = r.get(1)?;
            Ok(TrunkCallRow {
                caller: r.get(0)?,
                caller_opd: opd
                    .map(|s| {
                        s.parse()
                            .map_err(|e| super::conversion_error(1, Box::new(e)))
                    })
                    .transpose()?,
                start_ms: r.get(2)?,
                route: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The answered trunk calls that ended at or after `since_ms`, in the order they ended:
    /// what the monthly budgets have used since the month began (`since_ms` is its start).
    pub fn answered_trunk_calls_since(&self, since_ms: i64) -> Result<Vec<CdrRecord>, StoreError> {
        let sql = format!(
            "SELECT {CDR_COLUMNS} FROM cdrs \
             WHERE end_ms >= ?1 AND trunk = 1 AND answer_ms IS NOT NULL ORDER BY end_ms, id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![since_ms], cdr_from_row)?;
        Ok(rows
            .map(|r| r.map(|row| row.record))
            .collect::<Result<_, _>>()?)
    }

    /// Usage of all calls that started in `[since_ms, until_ms)`, each call counted once
    /// (the total line of `tambun cdr summary`).
    pub fn cdr_totals(
        &self,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Usage, StoreError> {
        let sql = format!(
            "SELECT {USAGE_SUMS} FROM cdrs \
             WHERE (?1 IS NULL OR start_ms >= ?1) AND (?2 IS NULL OR start_ms < ?2)"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![since_ms, until_ms], |r| usage_from_row(r, 0))?)
    }
}

/// Inserts `records` into `cdrs` within `tx`.
fn insert_all(tx: &rusqlite::Transaction<'_>, records: &[CdrRecord]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(INSERT_CDR)?;
    for r in records {
        insert.execute(params![
            r.call_id,
            r.caller,
            r.dialled,
            r.callee,
            r.caller_opd.as_ref().map(OpdCode::as_str),
            r.callee_opd.as_ref().map(OpdCode::as_str),
            r.route,
            r.trunk,
            r.start_ms,
            r.answer_ms,
            r.end_ms,
            r.duration_ms(),
            r.disposition.as_str(),
            r.sip_status,
            r.media.as_ref().map(|m| sql_count(m.packets_a2b)),
            r.media.as_ref().map(|m| sql_count(m.packets_b2a)),
            r.media.as_ref().map(|m| sql_count(m.lost_a2b)),
            r.media.as_ref().map(|m| sql_count(m.lost_b2a)),
            r.media.as_ref().map(|m| sql_count(m.jitter_us_max)),
        ])?;
    }
    Ok(())
}

fn usage_from_row(r: &Row, first: usize) -> rusqlite::Result<Usage> {
    Ok(Usage {
        calls: r.get(first)?,
        answered: r.get(first + 1)?,
        answered_ms: r.get(first + 2)?,
        trunk_calls: r.get(first + 3)?,
        trunk_answered_ms: r.get(first + 4)?,
        blocked: r.get(first + 5)?,
        conference_calls: r.get(first + 6)?,
        conference_ms: r.get(first + 7)?,
    })
}

fn cdr_from_row(r: &Row) -> rusqlite::Result<CdrRow> {
    let opt_opd = |idx: usize| -> rusqlite::Result<Option<OpdCode>> {
        let s: Option<String> = r.get(idx)?;
        s.map(|s| {
            s.parse()
                .map_err(|e| super::conversion_error(idx, Box::new(e)))
        })
        .transpose()
    };
    Ok(CdrRow {
        id: r.get(0)?,
        record: CdrRecord {
            call_id: r.get(1)?,
            caller: r.get(2)?,
            dialled: r.get(3)?,
            callee: r.get(4)?,
            caller_opd: opt_opd(5)?,
            callee_opd: opt_opd(6)?,
            route: r.get(7)?,
            trunk: r.get(8)?,
            start_ms: r.get(9)?,
            answer_ms: r.get(10)?,
            end_ms: r.get(11)?,
            disposition: parse_col(r, 12)?,
            sip_status: r.get(13)?,
            media: {
                let count = |idx: usize| -> rusqlite::Result<Option<u64>> {
                    Ok(r.get::<_, Option<i64>>(idx)?.map(|v| v.max(0) as u64))
                };
                match count(14)? {
                    None => None,
                    Some(packets_a2b) => Some(MediaTotals {
                        packets_a2b,
                        packets_b2a: count(15)?.unwrap_or(0),
                        lost_a2b: count(16)?.unwrap_or(0),
                        lost_b2a: count(17)?.unwrap_or(0),
                        jitter_us_max: count(18)?.unwrap_or(0),
                    }),
                }
            },
        },
    })
}

/// SQLite integers are signed 64-bit; counters beyond that are clamped.
fn sql_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
