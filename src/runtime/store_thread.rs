//! The store thread: the switch's own SQLite connection, off the async runtime.
//!
//! It applies binding changes in batches (one transaction per batch, however many REGISTERs
//! produced them) and, once a batch is written, publishes the highest `Commit` marker it
//! covered on a watch channel: the driver holds the responses that announce those changes
//! until then (durable before acknowledged; see `docs/decisions.md`). It also polls `PRAGMA data_version` twice a second and, when another connection
//! (the CLI) committed, reloads the extension directory and sends it to the driver; and once a
//! minute it deletes expired registrations and bans. Bans the guard adds are written here;
//! after a change by another connection the ban list goes to the driver too (`tambun ban`).
//! Call records and the answered calls in progress (`calls_open`) are written together
//! ([`OpenCalls`]): an answer waits in memory for the next mark, every `TOUCH_EVERY`, when the
//! waiting answers are written and every open call is marked as still held (the end of an
//! `interrupted` record after a crash), so a call shorter than that costs no write. On
//! shutdown it writes what is still queued, the waiting answers included.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::Input;
use crate::registrar::Change;
use crate::store::{OpenCallOp, Store};

const POLL: Duration = Duration::from_millis(500);
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often answered calls are written to `calls_open` and the open ones marked as still
/// held: a call answered less than this before a crash may leave no record, and an
/// interrupted call's record may end up to this much before the crash.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

pub(crate) enum Command {
    Changes(Vec<Change>),
    /// Finished calls, and the answered calls opened and closed, written in one transaction.
    Calls {
        records: Vec<crate::proxy::records::CallRecord>,
        open: Vec<crate::store::OpenCallOp>,
    },
    Effect(crate::proxy::Effect),
    SyncOpds(Vec<crate::store::OpdRow>),
    Bans(Vec<crate::guard::Ban>),
    /// Everything sent before this marker must be committed before `seq` is published.
    Commit(u64),
    Shutdown,
}

pub(crate) struct Handle {
    tx: std_mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
    committed: watch::Receiver<u64>,
}

impl Handle {
    pub(crate) fn sender(&self) -> std_mpsc::Sender<Command> {
        self.tx.clone()
    }

    /// The highest `Commit` marker whose writes are committed (0 before the first).
    pub(crate) fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Asks the thread to write what is queued and stop, and waits for it.
    pub(crate) async fn finish(self) {
        let _ = self.tx.send(Command::Shutdown);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

pub(crate) fn spawn(store: Store, driver: mpsc::Sender<Input>) -> Handle {
    let (tx, rx) = std_mpsc::channel();
    let (commit_tx, committed) = watch::channel(0);
    let thread = std::thread::Builder::new()
        .name("tambun-store".into())
        .spawn(move || run(store, rx, driver, commit_tx))
        // Holds: spawning a thread fails only when the OS is out of resources at startup.
        .expect("cannot start the store thread");
    Handle {
        tx,
        thread,
        committed,
    }
}

fn run(
    mut store: Store,
    rx: std_mpsc::Receiver<Command>,
    driver: mpsc::Sender<Input>,
    committed: watch::Sender<u64>,
) {
    let mut version = store.data_version().unwrap_or(0);
    let mut last_poll = Instant::now();
    let mut last_purge = Instant::now();
    let mut last_touch = Instant::now();
    let mut open_calls = OpenCalls::default();
    loop {
        let mut ops = Vec::new();
        let mut records = Vec::new();
        let mut open = Vec::new();
        let mut commit = None;
        let mut stop = false;
        let mut take = |cmd: Command, store: &mut Store| match cmd {
            Command::Changes(c) => {
                ops.extend(c);
                false
            }
            Command::Calls {
                records: r,
                open: o,
            } => {
                records.extend(r);
                open.extend(o);
                false
            }
            Command::Effect(e) => {
                apply_effect(store, e);
                false
            }
            Command::SyncOpds(rows) => {
                if let Err(e) = store.sync_opds(&rows) {
                    tracing::error!(error = %e, "cannot save the OPD list");
                }
                false
            }
            Command::Bans(bans) => {
                if let Err(e) = store.add_bans(&bans) {
                    tracing::error!(error = %e, count = bans.len(), "cannot save bans");
                }
                false
            }
            Command::Commit(seq) => {
                commit = Some(seq);
                false
            }
            Command::Shutdown => true,
        };
        match rx.recv_timeout(POLL) {
            Ok(cmd) => stop |= take(cmd, &mut store),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => stop = true,
        }
        // Batch whatever else is already queued.
        while let Ok(cmd) = rx.try_recv() {
            stop |= take(cmd, &mut store);
        }
        let open = open_calls.take(open);
        if !records.is_empty() || !open.is_empty() {
            save_calls(&mut store, records, open);
        }
        if !ops.is_empty() {
            if let Err(e) = store.apply_binding_changes(&ops) {
                tracing::error!(error = %e, count = ops.len(), "cannot save registrations");
            }
        }
        // Published even when a write failed (logged above): a broken disk must not stall
        // every response; durability is then as good as the disk.
        if let Some(seq) = commit {
            committed.send_replace(seq);
        }
        if stop {
            mark_open_calls(&mut store, &mut open_calls);
            return;
        }
        if last_poll.elapsed() >= POLL {
            last_poll = Instant::now();
            match store.data_version() {
                Ok(v) if v != version => {
                    version = v;
                    match store.accounts() {
                        Ok(accounts) => {
                            if driver.blocking_send(Input::Accounts(accounts)).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload extensions"),
                    }
                    match store.bans(super::now().unix as i64) {
                        Ok(bans) => {
                            if driver.blocking_send(Input::Bans(bans)).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload the ban list"),
                    }
                    match store.trunk_secrets() {
                        Ok(secrets) => {
                            if driver.blocking_send(Input::TrunkSecrets(secrets)).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload the trunk secrets"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot poll the database"),
            }
        }
        if last_touch.elapsed() >= TOUCH_EVERY {
            last_touch = Instant::now();
            mark_open_calls(&mut store, &mut open_calls);
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let now = super::now().unix as i64;
            if let Err(e) = store.purge_expired_registrations(now) {
                tracing::error!(error = %e, "cannot purge expired registrations");
            }
            if let Err(e) = store.purge_expired_bans(now) {
                tracing::error!(error = %e, "cannot purge expired bans");
            }
        }
    }
}

/// The answered calls in progress on their way to `calls_open`: an answer is held here until
/// the next mark, so a call that ends before it never touches the database; the end of a call
/// whose answer was written becomes a delete, in the same transaction as the call's record.
#[derive(Default)]
struct OpenCalls {
    waiting: HashMap<(String, String), OpenCallOp>,
}

impl OpenCalls {
    /// Takes the switch's opens and closes; returns what must be written with this batch.
    fn take(&mut self, ops: Vec<OpenCallOp>) -> Vec<OpenCallOp> {
        let mut write = Vec::new();
        for op in ops {
            match op {
                OpenCallOp::Open {
                    ref from_tag,
                    ref record,
                    ..
                } => {
                    let key = (record.call_id.clone(), from_tag.clone());
                    self.waiting.insert(key, op);
                }
                OpenCallOp::Close { call_id, from_tag } => {
                    let key = (call_id, from_tag);
                    if self.waiting.remove(&key).is_none() {
                        let (call_id, from_tag) = key;
                        write.push(OpenCallOp::Close { call_id, from_tag });
                    }
                }
            }
        }
        write
    }

    /// The answers waiting since the last mark, to write now.
    fn drain(&mut self) -> Vec<OpenCallOp> {
        self.waiting.drain().map(|(_, op)| op).collect()
    }
}

/// Writes the waiting answers and marks every open call as held now.
fn mark_open_calls(store: &mut Store, open_calls: &mut OpenCalls) {
    let waiting = open_calls.drain();
    if let Err(e) = store.save_calls(&[], &waiting) {
        tracing::error!(error = %e, count = waiting.len(), "cannot save the open calls");
    }
    if let Err(e) = store.touch_open_calls(super::now().unix_ms as i64) {
        tracing::error!(error = %e, "cannot mark the open calls");
    }
}

/// Writes finished calls and the open-call changes (one transaction per batch; WAL, so a
/// process crash loses none that was committed).
fn save_calls(
    store: &mut Store,
    records: Vec<crate::proxy::records::CallRecord>,
    open: Vec<crate::store::OpenCallOp>,
) {
    for r in &records {
        tracing::debug!(call_id = %r.call_id, caller = %r.caller, dialled = %r.dialled, disposition = r.disposition.as_str(), "call ended");
    }
    if let Err(e) = store.save_calls(&records, &open) {
        tracing::error!(error = %e, count = records.len(), "cannot save call records");
    }
}

/// Persists what a feature code changed.
fn apply_effect(store: &mut Store, effect: crate::proxy::Effect) {
    use crate::dialplan::route::FeatureAction;
    use crate::store::ForwardKind;
    let crate::proxy::Effect::Feature(ext, action) = effect;
    let res = match action {
        FeatureAction::SetForwardAlways(t) => {
            store.set_forward(&ext, ForwardKind::Always, Some(&t), None)
        }
        FeatureAction::ClearForward => store
            .set_forward(&ext, ForwardKind::Always, None, None)
            .and_then(|_| store.set_forward(&ext, ForwardKind::Busy, None, None))
            .and_then(|_| store.set_forward(&ext, ForwardKind::NoAnswer, None, None)),
        FeatureAction::DndOn => store.set_dnd(&ext, true),
        FeatureAction::DndOff => store.set_dnd(&ext, false),
    };
    if let Err(e) = res {
        tracing::warn!(extension = %ext, error = %e, "feature code not saved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CdrRecord, Disposition};

    fn open(call_id: &str) -> OpenCallOp {
        OpenCallOp::Open {
            from_tag: "f".into(),
            record: Box::new(CdrRecord {
                call_id: call_id.into(),
                caller: "1000".into(),
                dialled: "2300".into(),
                callee: Some("2300".into()),
                caller_opd: None,
                callee_opd: None,
                route: "extension 2300".into(),
                trunk: false,
                start_ms: 0,
                answer_ms: Some(1),
                end_ms: 1,
                disposition: Disposition::Interrupted,
                sip_status: 200,
                media: None,
            }),
            now_ms: 1,
        }
    }

    fn close(call_id: &str) -> OpenCallOp {
        OpenCallOp::Close {
            call_id: call_id.into(),
            from_tag: "f".into(),
        }
    }

    #[test]
    fn a_call_ended_before_the_mark_is_never_written() {
        let mut calls = OpenCalls::default();
        assert!(calls.take(vec![open("short"), open("long")]).is_empty());
        assert!(
            calls.take(vec![close("short")]).is_empty(),
            "nothing to delete"
        );
        let written = calls.drain();
        assert_eq!(written, [open("long")]);
        assert!(calls.drain().is_empty());
        // Written at the mark, so its end deletes the row.
        assert_eq!(calls.take(vec![close("long")]), [close("long")]);
    }
}
