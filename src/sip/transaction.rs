//! The RFC 3261 §17 transaction layer: client and server transaction tables, with the
//! RFC 6026 `Accepted` state for 2xx responses to INVITE.
//!
//! What it owns: per transaction, its state, the bytes it must retransmit (the request, the
//! last response, the ACK for a non-2xx final response) and its timers A–M as deadlines.
//!
//! What it must not do: parse SIP, touch a socket, read the clock, spawn tasks or lock. It
//! works on facts the caller has already extracted (the [`TransactionKey`], the status code)
//! and on opaque message bytes ([`Bytes`]). Time is an [`Instant`] passed in.
//!
//! The run loop, in the quinn / str0m style: feed inputs with `handle_*` (`handle_request`,
//! `handle_response`, `handle_timeout`), act on what they return, then drain `poll_transmit`
//! and `poll_event`, and sleep until `poll_timeout`. All deadlines of all transactions sit in
//! one binary heap with lazy deletion, so tens of thousands of transactions cost one heap
//! entry each, not one task each.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::types::Transport;

// ---------------------------------------------------------------------------------------------
// Keys, peers and outputs
// ---------------------------------------------------------------------------------------------

/// The method of a request, as far as transaction matching cares (RFC 3261 §17.2.3).
///
/// Methods are case-sensitive (§7.1): `invite` is an extension method, not `INVITE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxMethod {
    Invite,
    /// An ACK is never a transaction of its own: an ACK for a non-2xx final response matches
    /// the INVITE server transaction it acknowledges; any other ACK matches nothing.
    Ack,
    /// CANCEL is a transaction of its own, separate from the INVITE it cancels.
    Cancel,
    Other(String),
}

impl TxMethod {
    /// The method for a request-line or CSeq token.
    pub fn from_token(token: &str) -> Self {
        match token {
            "INVITE" => TxMethod::Invite,
            "ACK" => TxMethod::Ack,
            "CANCEL" => TxMethod::Cancel,
            other => TxMethod::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TxMethod::Invite => "INVITE",
            TxMethod::Ack => "ACK",
            TxMethod::Cancel => "CANCEL",
            TxMethod::Other(token) => token,
        }
    }
}

/// What identifies a transaction (RFC 3261 §17.1.3 and §17.2.3).
///
/// Build it with [`TransactionKey::new`], which lowercases `sent_by`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// The branch of the top Via. RFC 3261 branches start with [`Self::MAGIC_COOKIE`]; for an
    /// RFC 2543 request the caller synthesises a unique branch from the §17.2.3 fallback
    /// fields instead.
    pub branch: String,
    /// The `host:port` of the top Via, lowercased.
    pub sent_by: String,
    /// The request method, or for a response the CSeq method. When looking up a server
    /// transaction, `Ack` is matched as `Invite`.
    pub method: TxMethod,
}

impl TransactionKey {
    /// The prefix of every RFC 3261 branch.
    pub const MAGIC_COOKIE: &'static str = "z9hG4bK";

    pub fn new(branch: impl Into<String>, sent_by: &str, method: TxMethod) -> Self {
        TransactionKey {
            branch: branch.into(),
            sent_by: sent_by.to_ascii_lowercase(),
            method,
        }
    }

    /// Whether the branch is an RFC 3261 one (as opposed to one the caller synthesised).
    pub fn is_rfc3261(&self) -> bool {
        self.branch.starts_with(Self::MAGIC_COOKIE)
    }

    /// The key of the transaction this message belongs to: an ACK belongs to its INVITE.
    fn matching(&self) -> Cow<'_, TransactionKey> {
        match self.method {
            TxMethod::Ack => Cow::Owned(TransactionKey {
                method: TxMethod::Invite,
                ..self.clone()
            }),
            _ => Cow::Borrowed(self),
        }
    }
}

/// Where a message goes: an address, the transport, and for stream transports the id of the
/// connection (responses go back over the connection the request came in on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub conn: Option<u64>,
}

impl Peer {
    fn is_reliable(&self) -> bool {
        self.transport.is_reliable()
    }
}

/// Bytes to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Bytes,
}

/// Something the transaction user must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Timer B or F (client) or H (server) expired: no answer, or no ACK, in time.
    /// A `Terminated` for the same key follows.
    Timeout { key: TransactionKey },
    /// The transaction left the table (after its linger timer, a timeout, or at once on a
    /// reliable transport). Not emitted for [`ServerTransactions::remove`] and
    /// [`ClientTransactions::remove`], whose caller already knows.
    Terminated { key: TransactionKey },
}

/// The RFC 3261 timer base values (§17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate: first retransmission interval.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J, L and M.
    fn long(&self) -> Duration {
        self.t1 * 64
    }
}

/// Timer D: how long a client INVITE transaction stays to resend the ACK (unreliable only).
const TIMER_D: Duration = Duration::from_secs(32);

/// The state of a transaction (RFC 3261 §17 figures 5–8, RFC 6026 `Accepted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client INVITE, request sent, nothing heard yet.
    Calling,
    /// Non-INVITE, nothing sent back (server) or heard (client) yet.
    Trying,
    /// A provisional response was sent (server) or received (client).
    Proceeding,
    /// A final response (non-INVITE) or a 300–699 (INVITE) was sent or received.
    Completed,
    /// INVITE, a 2xx was sent or received (RFC 6026).
    Accepted,
    /// Server INVITE, the ACK for the 300–699 arrived.
    Confirmed,
}

/// The class of a status code; `None` for codes outside 100–699.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Provisional,
    Success,
    Failure,
}

fn classify(status: u16) -> Option<Class> {
    match status {
        100..=199 => Some(Class::Provisional),
        200..=299 => Some(Class::Success),
        300..=699 => Some(Class::Failure),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The timers of one transaction
// ---------------------------------------------------------------------------------------------

/// A retransmission timer (A, E or G): fires at `at`, then doubles `interval` up to `cap`.
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    at: Instant,
    interval: Duration,
    cap: Option<Duration>,
}

impl Retransmit {
    fn start(now: Instant, t1: Duration, cap: Option<Duration>) -> Self {
        Retransmit {
            at: now + t1,
            interval: t1,
            cap,
        }
    }

    fn advance(&mut self, now: Instant) {
        let doubled = self.interval * 2;
        self.interval = self.cap.map_or(doubled, |cap| doubled.min(cap));
        self.at = now + self.interval;
    }
}

/// The at most three timers a transaction runs at once.
#[derive(Debug, Default)]
struct Deadlines {
    /// Timer A, E or G.
    retransmit: Option<Retransmit>,
    /// Timer B, F or H: expiry is an [`Event::Timeout`].
    give_up: Option<Instant>,
    /// Timer D, I, J, K, L or M: expiry quietly ends the transaction.
    linger: Option<Instant>,
}

/// Which timers fired.
struct Fired {
    retransmit: bool,
    give_up: bool,
    linger: bool,
}

impl Deadlines {
    fn next(&self) -> Option<Instant> {
        [self.retransmit.map(|r| r.at), self.give_up, self.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires every timer due at `now`. Afterwards no deadline is at or before `now`.
    fn expire(&mut self, now: Instant) -> Fired {
        let give_up = self.give_up.is_some_and(|at| at <= now);
        let linger = self.linger.is_some_and(|at| at <= now);
        let mut retransmit = false;
        if let Some(r) = &mut self.retransmit {
            if r.at <= now {
                retransmit = true;
                r.advance(now);
                if r.at <= now {
                    // A zero T1 would fire forever: retransmit once, then stop.
                    self.retransmit = None;
                }
            }
        }
        if give_up {
            self.give_up = None;
        }
        if linger {
            self.linger = None;
        }
        Fired {
            retransmit,
            give_up,
            linger,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table shared by both sides: key index, deadline heap, output queues
// ---------------------------------------------------------------------------------------------

/// A transaction as the table sees it.
trait Scheduled {
    fn deadlines(&self) -> &Deadlines;
}

struct Slot<T> {
    key: TransactionKey,
    /// Bumped whenever the slot's next deadline changes; older heap entries are stale.
    generation: u64,
    /// The deadline the heap holds a live entry for.
    scheduled: Option<Instant>,
    tx: T,
}

/// Transactions by key, their deadlines in one heap, and the queued outputs.
///
/// Invariant (after every `&mut self` method returns): the heap's top entry, if any, is live,
/// so `poll_timeout` can peek without popping.
struct Table<T> {
    ids: HashMap<TransactionKey, u64>,
    slots: HashMap<u64, Slot<T>>,
    /// (deadline, id, generation). Ties break on the id, which grows with creation order, so
    /// equal deadlines fire in a deterministic order.
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl<T: Scheduled> Table<T> {
    fn new() -> Self {
        Table {
            ids: HashMap::new(),
            slots: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn id(&self, key: &TransactionKey) -> Option<u64> {
        self.ids.get(key).copied()
    }

    fn tx(&self, id: u64) -> &T {
        // Holds: ids come from `self.ids`, which has an entry exactly while the slot exists.
        &self.slots.get(&id).expect("indexed id has a slot").tx
    }

    fn tx_mut(&mut self, id: u64) -> &mut T {
        // Holds: as in `tx`.
        &mut self.slots.get_mut(&id).expect("indexed id has a slot").tx
    }

    fn key(&self, id: u64) -> &TransactionKey {
        // Holds: as in `tx`.
        &self.slots.get(&id).expect("indexed id has a slot").key
    }

    /// Adds a transaction, replacing any with the same key.
    fn insert(&mut self, key: TransactionKey, tx: T) -> u64 {
        if let Some(old) = self.ids.remove(&key) {
            self.slots.remove(&old);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(key.clone(), id);
        self.slots.insert(
            id,
            Slot {
                key,
                generation: 0,
                scheduled: None,
                tx,
            },
        );
        self.reschedule(id);
        id
    }

    /// Call after changing a transaction's deadlines.
    fn reschedule(&mut self, id: u64) {
        let slot = self.slots.get_mut(&id).expect("indexed id has a slot");
        let next = slot.tx.deadlines().next();
        if next != slot.scheduled {
            slot.generation += 1;
            slot.scheduled = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, id, slot.generation)));
            }
        }
        self.prune();
    }

    /// Ends a transaction; with `announce`, queues [`Event::Terminated`].
    fn remove(&mut self, id: u64, announce: bool) {
        if let Some(slot) = self.slots.remove(&id) {
            self.ids.remove(&slot.key);
            if announce {
                self.events.push_back(Event::Terminated { key: slot.key });
            }
        }
        self.prune();
    }

    /// Ends a transaction whose give-up timer fired.
    fn time_out(&mut self, id: u64) {
        let key = self.key(id).clone();
        self.events.push_back(Event::Timeout { key });
        self.remove(id, true);
    }

    fn is_live(&self, &Reverse((_, id, generation)): &Reverse<(Instant, u64, u64)>) -> bool {
        self.slots
            .get(&id)
            .is_some_and(|slot| slot.generation == generation)
    }

    /// Restores the invariant (live top) and keeps stale entries from piling up.
    fn prune(&mut self) {
        while let Some(top) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.slots.len() + 1024 {
            // Order-independent rebuild: heap order is total on (deadline, id, generation).
            self.heap = self
                .slots
                .iter()
                .filter_map(|(&id, slot)| {
                    slot.scheduled.map(|at| Reverse((at, id, slot.generation)))
                })
                .collect();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|&Reverse((at, _, _))| at)
    }

    /// The next transaction with a deadline at or before `now`, taken off the heap. The caller
    /// must then `reschedule` or `remove` it.
    fn next_due(&mut self, now: Instant) -> Option<u64> {
        loop {
            let top = *self.heap.peek()?;
            let Reverse((at, id, _)) = top;
            if !self.is_live(&top) {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            let slot = self.slots.get_mut(&id).expect("live entry has a slot");
            slot.scheduled = None;
            return Some(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server transactions (§17.2)
// ---------------------------------------------------------------------------------------------

/// What to do with an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDisposition {
    /// A new transaction now exists (INVITE: Proceeding, other: Trying). The TU must handle
    /// the request and answer it with [`ServerTransactions::send_response`]. Until it does,
    /// the transaction runs no timer: sending `100 Trying` for an INVITE (§16.2) and giving up
    /// (Timer C, §16.8) are the proxy core's, which then answers or calls `remove`.
    New,
    /// A retransmission, absorbed. If a response was already sent, these are the bytes of the
    /// last one, to send again to the request's source.
    Retransmission(Option<Bytes>),
    /// An ACK for a 300–699 response of an INVITE server transaction, absorbed (the
    /// transaction is now Confirmed; Timer G stopped).
    AckForInvite,
    /// An ACK that matches no transaction awaiting one (an ACK for a 2xx, or unknown): pass it
    /// to the TU / proxy core, which forwards it statelessly.
    AckNoTransaction,
}

#[derive(Debug)]
struct ServerTx {
    invite: bool,
    state: State,
    last_response: Option<Bytes>,
    /// Where responses go; known from the first `send_response`.
    peer: Option<Peer>,
    deadlines: Deadlines,
}

impl Scheduled for ServerTx {
    fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}

/// The server transaction table.
pub struct ServerTransactions {
    timers: Timers,
    table: Table<ServerTx>,
}

impl Default for ServerTransactions {
    fn default() -> Self {
        Self::new(Timers::default())
    }
}

impl ServerTransactions {
    pub fn new(timers: Timers) -> Self {
        ServerTransactions {
            timers,
            table: Table::new(),
        }
    }

    /// A request arrived; `key` carries its top Via and method (ACK as `TxMethod::Ack`).
    pub fn handle_request(&mut self, key: &TransactionKey, now: Instant) -> RequestDisposition {
        if key.method == TxMethod::Ack {
            return self.handle_ack(key, now);
        }
        let Some(id) = self.table.id(key) else {
            let invite = key.method == TxMethod::Invite;
            let tx = ServerTx {
                invite,
                state: if invite {
                    State::Proceeding
                } else {
                    State::Trying
                },
                last_response: None,
                peer: None,
                deadlines: Deadlines::default(),
            };
            self.table.insert(key.clone(), tx);
            return RequestDisposition::New;
        };
        let tx = self.table.tx(id);
        match tx.state {
            State::Proceeding | State::Completed => {
                RequestDisposition::Retransmission(tx.last_response.clone())
            }
            // Trying: nothing sent yet. Accepted (RFC 6026) and Confirmed: absorb silently.
            State::Calling | State::Trying | State::Accepted | State::Confirmed => {
                RequestDisposition::Retransmission(None)
            }
        }
    }

    fn handle_ack(&mut self, key: &TransactionKey, now: Instant) -> RequestDisposition {
        let Some(id) = self.table.id(&key.matching()) else {
            return RequestDisposition::AckNoTransaction;
        };
        let t4 = self.timers.t4;
        let tx = self.table.tx_mut(id);
        match tx.state {
            State::Completed => {
                tx.state = State::Confirmed;
                tx.deadlines.retransmit = None;
                tx.deadlines.give_up = None;
                if tx.peer.is_some_and(|p| p.is_reliable()) {
                    // Timer I is zero on a reliable transport.
                    self.table.remove(id, true);
                } else {
                    tx.deadlines.linger = Some(now + t4);
                    self.table.reschedule(id);
                }
                RequestDisposition::AckForInvite
            }
            // The ACK for a 2xx is end-to-end (RFC 6026 §8.7): the core forwards it.
            State::Accepted => RequestDisposition::AckNoTransaction,
            // A retransmitted ACK (Confirmed), or one before any final response: absorbed.
            State::Calling | State::Trying | State::Proceeding | State::Confirmed => {
                RequestDisposition::AckForInvite
            }
        }
    }

    /// The TU sends a response within the transaction `key`. Returns what to send now, or
    /// `None` if the transaction is unknown or its state forbids this response (a second final
    /// response, a status outside 100–699): then nothing must be sent.
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        status: u16,
        bytes: Bytes,
        peer: Peer,
        now: Instant,
    ) -> Option<Transmit> {
        let class = classify(status)?;
        let id = self.table.id(key)?;
        let timers = self.timers;
        let reliable = peer.is_reliable();
        let tx = self.table.tx_mut(id);
        let mut terminate = false;
        match (tx.invite, tx.state, class) {
            (_, State::Trying | State::Proceeding, Class::Provisional) => {
                tx.state = State::Proceeding;
            }
            (false, State::Trying | State::Proceeding, Class::Success | Class::Failure) => {
                tx.state = State::Completed;
                if reliable {
                    terminate = true; // Timer J is zero.
                } else {
                    tx.deadlines.linger = Some(now + timers.long()); // Timer J
                }
            }
            (true, State::Trying | State::Proceeding, Class::Success) => {
                tx.state = State::Accepted;
                tx.deadlines.linger = Some(now + timers.long()); // Timer L
            }
            (true, State::Trying | State::Proceeding, Class::Failure) => {
                tx.state = State::Completed;
                tx.deadlines.give_up = Some(now + timers.long()); // Timer H
                if !reliable {
                    // Timer G
                    tx.deadlines.retransmit =
                        Some(Retransmit::start(now, timers.t1, Some(timers.t2)));
                }
            }
            // RFC 6026: the TU's 2xx retransmissions pass through Accepted.
            (true, State::Accepted, Class::Success) => {}
            _ => return None,
        }
        tx.last_response = Some(bytes.clone());
        tx.peer = Some(peer);
        if terminate {
            self.table.remove(id, true);
        } else {
            self.table.reschedule(id);
        }
        Some(Transmit { peer, bytes })
    }

    /// Fires every timer due at `now`; then drain `poll_transmit` and `poll_event`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(id) = self.table.next_due(now) {
            let tx = self.table.tx_mut(id);
            let fired = tx.deadlines.expire(now);
            if fired.give_up {
                self.table.time_out(id); // Timer H: the ACK never came.
                continue;
            }
            if fired.linger {
                self.table.remove(id, true); // Timer I, J or L.
                continue;
            }
            if fired.retransmit {
                // Timer G
                if let (Some(peer), Some(bytes)) = (tx.peer, tx.last_response.clone()) {
                    self.table.transmits.push_back(Transmit { peer, bytes });
                }
            }
            self.table.reschedule(id);
        }
    }

    /// The earliest deadline, if any transaction has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// A retransmission that fell due in `handle_timeout`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.table.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.table.events.pop_front()
    }

    /// The state of the transaction `key` matches (an ACK key finds its INVITE). A proxy uses
    /// it with the INVITE key to find what a CANCEL cancels.
    pub fn state(&self, key: &TransactionKey) -> Option<State> {
        let id = self.table.id(&key.matching())?;
        Some(self.table.tx(id).state)
    }

    /// Drops a transaction at once (the TU gave up on it). Returns whether it existed.
    pub fn remove(&mut self, key: &TransactionKey) -> bool {
        let Some(id) = self.table.id(&key.matching()) else {
            return false;
        };
        self.table.remove(id, false);
        true
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Client transactions (§17.1)
// ---------------------------------------------------------------------------------------------

/// What to do with an incoming response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDisposition {
    /// Pass the response to the TU (a provisional, a first final, or any 2xx to INVITE).
    Forward,
    /// A 300–699 to INVITE: pass it to the TU, and build the ACK (§17.1.1.3) and hand it to
    /// [`ClientTransactions::send_ack`].
    ForwardNeedsAck,
    /// A retransmission, absorbed. For a retransmitted 300–699 to INVITE, the ACK to resend.
    Absorb(Option<Transmit>),
    /// No transaction matches: the proxy core forwards it statelessly (§16.7).
    NoTransaction,
}

#[derive(Debug)]
struct ClientTx {
    invite: bool,
    state: State,
    request: Bytes,
    ack: Option<Bytes>,
    peer: Peer,
    deadlines: Deadlines,
}

impl Scheduled for ClientTx {
    fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}

/// The client transaction table.
pub struct ClientTransactions {
    timers: Timers,
    table: Table<ClientTx>,
}

impl Default for ClientTransactions {
    fn default() -> Self {
        Self::new(Timers::default())
    }
}

impl ClientTransactions {
    pub fn new(timers: Timers) -> Self {
        ClientTransactions {
            timers,
            table: Table::new(),
        }
    }

    /// Starts a client transaction for `request` and returns its first transmission. INVITE
    /// or not follows `key.method`. An ACK is not a transaction: it is returned for sending
    /// and nothing is kept. A key already in use is replaced.
    pub fn start(
        &mut self,
        key: TransactionKey,
        request: Bytes,
        peer: Peer,
        now: Instant,
    ) -> Transmit {
        let transmit = Transmit {
            peer,
            bytes: request.clone(),
        };
        if key.method == TxMethod::Ack {
            return transmit;
        }
        let invite = key.method == TxMethod::Invite;
        let t = self.timers;
        let retransmit = (!peer.is_reliable()).then(|| {
            // Timer A doubles without bound; Timer E is capped at T2.
            let cap = if invite { None } else { Some(t.t2) };
            Retransmit::start(now, t.t1, cap)
        });
        let tx = ClientTx {
            invite,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            request,
            ack: None,
            peer,
            deadlines: Deadlines {
                retransmit,
                give_up: Some(now + t.long()), // Timer B or F
                linger: None,
            },
        };
        self.table.insert(key, tx);
        transmit
    }

    /// A response arrived; `key` carries its top Via and CSeq method.
    pub fn handle_response(
        &mut self,
        key: &TransactionKey,
        status: u16,
        now: Instant,
    ) -> ResponseDisposition {
        let Some(id) = self.table.id(&key.matching()) else {
            return ResponseDisposition::NoTransaction;
        };
        let Some(class) = classify(status) else {
            return ResponseDisposition::Absorb(None);
        };
        if self.table.tx(id).invite {
            self.handle_invite_response(id, class, now)
        } else {
            self.handle_non_invite_response(id, class, now)
        }
    }

    fn handle_invite_response(
        &mut self,
        id: u64,
        class: Class,
        now: Instant,
    ) -> ResponseDisposition {
        let timers = self.timers;
        let tx = self.table.tx_mut(id);
        let disposition = match (tx.state, class) {
            (State::Calling | State::Proceeding, Class::Provisional) => {
                tx.state = State::Proceeding;
                tx.deadlines = Deadlines::default(); // Timers A and B stop.
                ResponseDisposition::Forward
            }
            (State::Calling | State::Proceeding, Class::Success) => {
                tx.state = State::Accepted;
                tx.deadlines = Deadlines {
                    linger: Some(now + timers.long()), // Timer M
                    ..Deadlines::default()
                };
                ResponseDisposition::Forward
            }
            (State::Calling | State::Proceeding, Class::Failure) => {
                tx.state = State::Completed;
                // Timer D; on a reliable transport it is zero, but the transaction waits for
                // its ACK bytes (see `send_ack`) at most 64*T1.
                let linger = if tx.peer.is_reliable() {
                    timers.long()
                } else {
                    TIMER_D
                };
                tx.deadlines = Deadlines {
                    linger: Some(now + linger),
                    ..Deadlines::default()
                };
                ResponseDisposition::ForwardNeedsAck
            }
            // A proxy forwards every 2xx to INVITE (§16.7 step 5, RFC 6026).
            (_, Class::Success) => ResponseDisposition::Forward,
            (State::Completed, Class::Failure) => {
                let resend = tx.ack.clone().map(|bytes| Transmit {
                    peer: tx.peer,
                    bytes,
                });
                ResponseDisposition::Absorb(resend)
            }
            _ => ResponseDisposition::Absorb(None),
        };
        self.table.reschedule(id);
        disposition
    }

    fn handle_non_invite_response(
        &mut self,
        id: u64,
        class: Class,
        now: Instant,
    ) -> ResponseDisposition {
        let timers = self.timers;
        let tx = self.table.tx_mut(id);
        match (tx.state, class) {
            (State::Trying | State::Proceeding, Class::Provisional) => {
                tx.state = State::Proceeding;
                if let Some(r) = &mut tx.deadlines.retransmit {
                    // In Proceeding, Timer E fires every T2.
                    r.interval = timers.t2;
                    r.cap = Some(timers.t2);
                }
                ResponseDisposition::Forward
            }
            (State::Trying | State::Proceeding, Class::Success | Class::Failure) => {
                tx.state = State::Completed;
                if tx.peer.is_reliable() {
                    self.table.remove(id, true); // Timer K is zero.
                } else {
                    tx.deadlines = Deadlines {
                        linger: Some(now + timers.t4), // Timer K
                        ..Deadlines::default()
                    };
                    self.table.reschedule(id);
                }
                ResponseDisposition::Forward
            }
            _ => ResponseDisposition::Absorb(None),
        }
    }

    /// Hands over the ACK for a 300–699 response to the INVITE transaction `key` (after
    /// [`ResponseDisposition::ForwardNeedsAck`]). Returns the ACK to send now; it is resent
    /// with each retransmitted final response until Timer D. `None` if no INVITE transaction
    /// in Completed matches.
    pub fn send_ack(&mut self, key: &TransactionKey, ack: Bytes) -> Option<Transmit> {
        let id = self.table.id(&key.matching())?;
        let tx = self.table.tx_mut(id);
        if !tx.invite || tx.state != State::Completed {
            return None;
        }
        let transmit = Transmit {
            peer: tx.peer,
            bytes: ack.clone(),
        };
        if tx.peer.is_reliable() {
            self.table.remove(id, true); // Timer D is zero.
        } else {
            tx.ack = Some(ack);
        }
        Some(transmit)
    }

    /// Fires every timer due at `now`; then drain `poll_transmit` and `poll_event`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(id) = self.table.next_due(now) {
            let tx = self.table.tx_mut(id);
            let fired = tx.deadlines.expire(now);
            if fired.give_up {
                self.table.time_out(id); // Timer B or F
                continue;
            }
            if fired.linger {
                self.table.remove(id, true); // Timer D, K or M
                continue;
            }
            if fired.retransmit {
                // Timer A or E
                let transmit = Transmit {
                    peer: tx.peer,
                    bytes: tx.request.clone(),
                };
                self.table.transmits.push_back(transmit);
            }
            self.table.reschedule(id);
        }
    }

    /// The earliest deadline, if any transaction has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// A retransmission that fell due in `handle_timeout`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.table.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.table.events.pop_front()
    }

    pub fn state(&self, key: &TransactionKey) -> Option<State> {
        let id = self.table.id(&key.matching())?;
        Some(self.table.tx(id).state)
    }

    /// Drops a transaction at once. Returns whether it existed.
    pub fn remove(&mut self, key: &TransactionKey) -> bool {
        let Some(id) = self.table.id(&key.matching()) else {
            return false;
        };
        self.table.remove(id, false);
        true
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // --- helpers -------------------------------------------------------------------------------

    fn peer(transport: Transport) -> Peer {
        Peer {
            addr: "192.0.2.10:5060".parse().expect("literal address"),
            transport,
            conn: transport.is_reliable().then_some(7),
        }
    }

    fn key(branch: &str, method: TxMethod) -> TransactionKey {
        TransactionKey::new(format!("z9hG4bK{branch}"), "PC33.Example.com:5060", method)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Sent(Bytes),
        Timeout,
        Terminated,
    }

    /// The sans-IO surface both tables share, so one driver can step either.
    trait Driven {
        fn poll_timeout(&self) -> Option<Instant>;
        fn handle_timeout(&mut self, now: Instant);
        fn poll_transmit(&mut self) -> Option<Transmit>;
        fn poll_event(&mut self) -> Option<Event>;
    }

    macro_rules! driven {
        ($t:ty) => {
            impl Driven for $t {
                fn poll_timeout(&self) -> Option<Instant> {
                    <$t>::poll_timeout(self)
                }
                fn handle_timeout(&mut self, now: Instant) {
                    <$t>::handle_timeout(self, now)
                }
                fn poll_transmit(&mut self) -> Option<Transmit> {
                    <$t>::poll_transmit(self)
                }
                fn poll_event(&mut self) -> Option<Event> {
                    <$t>::poll_event(self)
                }
            }
        };
    }
    driven!(ServerTransactions);
    driven!(ClientTransactions);

    /// Steps `table` from deadline to deadline up to and including `until`, as the runtime
    /// would; returns the outputs with their time since `start`.
    fn run(table: &mut impl Driven, start: Instant, until: Duration) -> Vec<(Duration, Out)> {
        let mut log = Vec::new();
        while let Some(at) = table.poll_timeout() {
            if at > start + until {
                break;
            }
            table.handle_timeout(at);
            if let Some(next) = table.poll_timeout() {
                assert!(next > at, "deadline in the past after handle_timeout");
            }
            while let Some(t) = table.poll_transmit() {
                log.push((at - start, Out::Sent(t.bytes)));
            }
            while let Some(e) = table.poll_event() {
                let out = match e {
                    Event::Timeout { .. } => Out::Timeout,
                    Event::Terminated { .. } => Out::Terminated,
                };
                log.push((at - start, out));
            }
        }
        log
    }

    /// The times (ms since start) at which something was sent.
    fn sent_at(log: &[(Duration, Out)]) -> Vec<u128> {
        log.iter()
            .filter(|(_, o)| matches!(o, Out::Sent(_)))
            .map(|(at, _)| at.as_millis())
            .collect()
    }

    fn events(log: &[(Duration, Out)]) -> Vec<(u128, Out)> {
        log.iter()
            .filter(|(_, o)| !matches!(o, Out::Sent(_)))
            .map(|(at, o)| (at.as_millis(), o.clone()))
            .collect()
    }

    const RING: Bytes = Bytes::from_static(b"SIP/2.0 180 Ringing\r\n\r\n");
    const OK: Bytes = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
    const BUSY: Bytes = Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n");
    const REQUEST: Bytes = Bytes::from_static(b"INVITE sip:1001@example.com SIP/2.0\r\n\r\n");
    const ACK: Bytes = Bytes::from_static(b"ACK sip:1001@example.com SIP/2.0\r\n\r\n");

    // --- keys ----------------------------------------------------------------------------------

    #[test]
    fn keys_match_per_rfc3261_17_2_3() {
        let invite = key("a", TxMethod::Invite);
        assert_eq!(invite.sent_by, "pc33.example.com:5060");
        assert!(invite.is_rfc3261());
        assert_eq!(TxMethod::from_token("INVITE"), TxMethod::Invite);
        assert_eq!(
            TxMethod::from_token("invite"),
            TxMethod::Other("invite".into())
        );

        let mut server = ServerTransactions::default();
        let now = Instant::now();
        assert_eq!(server.handle_request(&invite, now), RequestDisposition::New);
        // An ACK finds its INVITE; a CANCEL with the same branch is a transaction of its own.
        assert_eq!(
            server.state(&key("a", TxMethod::Ack)),
            Some(State::Proceeding)
        );
        let cancel = key("a", TxMethod::Cancel);
        assert_eq!(server.handle_request(&cancel, now), RequestDisposition::New);
        assert_eq!(server.len(), 2);
        // ACK never creates a transaction.
        let stray = key("b", TxMethod::Ack);
        assert_eq!(
            server.handle_request(&stray, now),
            RequestDisposition::AckNoTransaction
        );
        assert_eq!(server.len(), 2);
        assert!(server.remove(&cancel));
        assert!(!server.remove(&cancel));
        assert_eq!(server.poll_event(), None, "remove() announces nothing");
    }

    // --- non-INVITE server ---------------------------------------------------------------------

    #[test]
    fn non_invite_server_absorbs_retransmissions_and_lingers_for_timer_j() {
        let mut server = ServerTransactions::default();
        let start = Instant::now();
        let k = key("opt", TxMethod::Other("OPTIONS".into()));
        let udp = peer(Transport::Udp);

        assert_eq!(server.handle_request(&k, start), RequestDisposition::New);
        assert_eq!(server.state(&k), Some(State::Trying));
        assert_eq!(
            server.handle_request(&k, start + ms(100)),
            RequestDisposition::Retransmission(None)
        );
        let sent = server.send_response(&k, 200, OK, udp, start + ms(200));
        assert_eq!(
            sent,
            Some(Transmit {
                peer: udp,
                bytes: OK
            })
        );
        assert_eq!(server.state(&k), Some(State::Completed));
        assert_eq!(
            server.handle_request(&k, start + ms(300)),
            RequestDisposition::Retransmission(Some(OK))
        );
        // A second final response is discarded.
        assert_eq!(
            server.send_response(&k, 500, BUSY, udp, start + ms(400)),
            None
        );

        let log = run(&mut server, start, Duration::from_secs(60));
        assert_eq!(events(&log), vec![(32_200, Out::Terminated)]);
        assert!(sent_at(&log).is_empty());
        assert!(server.is_empty());
        assert_eq!(
            server.handle_request(&k, start + Duration::from_secs(61)),
            RequestDisposition::New
        );
    }

    #[test]
    fn non_invite_server_provisional_is_resent_for_retransmissions() {
        let mut server = ServerTransactions::default();
        let now = Instant::now();
        let k = key("reg", TxMethod::Other("REGISTER".into()));
        server.handle_request(&k, now);
        server.send_response(&k, 100, RING, peer(Transport::Udp), now);
        assert_eq!(server.state(&k), Some(State::Proceeding));
        assert_eq!(
            server.handle_request(&k, now),
            RequestDisposition::Retransmission(Some(RING))
        );
        assert_eq!(
            server.poll_timeout(),
            None,
            "no timers before the final response"
        );
    }

    #[test]
    fn non_invite_server_on_tcp_ends_with_the_final_response() {
        let mut server = ServerTransactions::default();
        let now = Instant::now();
        let k = key("opt", TxMethod::Other("OPTIONS".into()));
        server.handle_request(&k, now);
        let tcp = peer(Transport::Tcp);
        assert!(server.send_response(&k, 200, OK, tcp, now).is_some());
        assert!(server.is_empty());
        assert_eq!(
            server.poll_event(),
            Some(Event::Terminated { key: k.clone() })
        );
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.handle_request(&k, now), RequestDisposition::New);
    }

    // --- INVITE server -------------------------------------------------------------------------

    #[test]
    fn invite_server_retransmits_failure_until_timer_h() {
        let mut server = ServerTransactions::default();
        let start = Instant::now();
        let k = key("inv", TxMethod::Invite);
        assert_eq!(server.handle_request(&k, start), RequestDisposition::New);
        assert_eq!(server.state(&k), Some(State::Proceeding));
        server.send_response(&k, 486, BUSY, peer(Transport::Udp), start);
        assert_eq!(server.state(&k), Some(State::Completed));

        let log = run(&mut server, start, Duration::from_secs(40));
        assert_eq!(
            sent_at(&log),
            vec![500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert!(log.iter().all(|(_, o)| *o != Out::Sent(OK)));
        assert_eq!(
            events(&log),
            vec![(32_000, Out::Timeout), (32_000, Out::Terminated)]
        );
        assert!(server.is_empty());
    }

    #[test]
    fn invite_server_ack_confirms_and_stops_retransmissions() {
        let mut server = ServerTransactions::default();
        let start = Instant::now();
        let k = key("inv", TxMethod::Invite);
        let ack = key("inv", TxMethod::Ack);
        server.handle_request(&k, start);
        server.send_response(&k, 486, BUSY, peer(Transport::Udp), start);
        assert_eq!(
            server.handle_request(&k, start + ms(10)),
            RequestDisposition::Retransmission(Some(BUSY))
        );

        let log = run(&mut server, start, ms(2000));
        assert_eq!(sent_at(&log), vec![500, 1500]);

        let acked = start + ms(2000);
        assert_eq!(
            server.handle_request(&ack, acked),
            RequestDisposition::AckForInvite
        );
        assert_eq!(server.state(&k), Some(State::Confirmed));
        assert_eq!(
            server.handle_request(&ack, acked + ms(100)),
            RequestDisposition::AckForInvite,
            "a retransmitted ACK is absorbed"
        );

        let log = run(&mut server, start, Duration::from_secs(60));
        assert!(sent_at(&log).is_empty(), "Timer G stopped");
        assert_eq!(events(&log), vec![(7000, Out::Terminated)], "Timer I = T4");
    }

    #[test]
    fn invite_server_accepted_absorbs_invites_and_passes_ack_for_2xx() {
        let mut server = ServerTransactions::default();
        let start = Instant::now();
        let k = key("inv", TxMethod::Invite);
        let udp = peer(Transport::Udp);
        server.handle_request(&k, start);
        assert!(server.send_response(&k, 180, RING, udp, start).is_some());
        assert!(server.send_response(&k, 200, OK, udp, start).is_some());
        assert_eq!(server.state(&k), Some(State::Accepted));
        assert_eq!(
            server.handle_request(&k, start + ms(500)),
            RequestDisposition::Retransmission(None)
        );
        assert_eq!(
            server.handle_request(&key("inv", TxMethod::Ack), start + ms(600)),
            RequestDisposition::AckNoTransaction
        );
        // The TU's own 2xx retransmissions pass; anything else does not.
        assert!(server
            .send_response(&k, 200, OK, udp, start + ms(700))
            .is_some());
        assert!(server
            .send_response(&k, 486, BUSY, udp, start + ms(800))
            .is_none());

        let log = run(&mut server, start, Duration::from_secs(60));
        assert!(
            sent_at(&log).is_empty(),
            "2xx retransmission is the TU's job"
        );
        assert_eq!(events(&log), vec![(32_000, Out::Terminated)], "Timer L");
    }

    // --- INVITE client -------------------------------------------------------------------------

    #[test]
    fn invite_client_timer_a_then_timer_b() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("out", TxMethod::Invite);
        let first = client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        assert_eq!(first.bytes, REQUEST);
        assert_eq!(client.state(&k), Some(State::Calling));

        let log = run(&mut client, start, Duration::from_secs(40));
        assert_eq!(sent_at(&log), vec![500, 1500, 3500, 7500, 15_500, 31_500]);
        assert_eq!(
            events(&log),
            vec![(32_000, Out::Timeout), (32_000, Out::Terminated)]
        );
        assert!(client.is_empty());
    }

    #[test]
    fn invite_client_provisional_stops_timer_a_and_b() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("out", TxMethod::Invite);
        client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        let log = run(&mut client, start, ms(1000));
        assert_eq!(sent_at(&log), vec![500]);

        assert_eq!(
            client.handle_response(&k, 100, start + ms(1000)),
            ResponseDisposition::Forward
        );
        assert_eq!(client.state(&k), Some(State::Proceeding));
        assert_eq!(client.poll_timeout(), None);
        let log = run(&mut client, start, Duration::from_secs(100));
        assert!(log.is_empty());
        assert_eq!(
            client.len(),
            1,
            "Proceeding lasts until a final (Timer C is the proxy's)"
        );
    }

    #[test]
    fn invite_client_failure_is_acked_and_its_retransmission_absorbed() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("out", TxMethod::Invite);
        let udp = peer(Transport::Udp);
        client.start(k.clone(), REQUEST, udp, start);
        assert_eq!(
            client.handle_response(&k, 180, start + ms(100)),
            ResponseDisposition::Forward
        );
        assert_eq!(
            client.handle_response(&k, 486, start + ms(200)),
            ResponseDisposition::ForwardNeedsAck
        );
        assert_eq!(client.state(&k), Some(State::Completed));
        assert_eq!(
            client.send_ack(&k, ACK),
            Some(Transmit {
                peer: udp,
                bytes: ACK
            })
        );
        assert_eq!(
            client.handle_response(&k, 486, start + ms(700)),
            ResponseDisposition::Absorb(Some(Transmit {
                peer: udp,
                bytes: ACK
            }))
        );
        assert_eq!(
            client.handle_response(&k, 180, start + ms(800)),
            ResponseDisposition::Absorb(None)
        );

        let log = run(&mut client, start, Duration::from_secs(60));
        assert!(sent_at(&log).is_empty());
        assert_eq!(events(&log), vec![(32_200, Out::Terminated)], "Timer D");
    }

    #[test]
    fn invite_client_accepted_forwards_2xx_retransmissions_until_timer_m() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("out", TxMethod::Invite);
        client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        assert_eq!(
            client.handle_response(&k, 200, start),
            ResponseDisposition::Forward
        );
        assert_eq!(client.state(&k), Some(State::Accepted));
        assert_eq!(
            client.handle_response(&k, 200, start + ms(500)),
            ResponseDisposition::Forward
        );
        assert_eq!(
            client.handle_response(&k, 486, start + ms(600)),
            ResponseDisposition::Absorb(None)
        );
        assert_eq!(
            client.send_ack(&k, ACK),
            None,
            "the ACK for a 2xx is end-to-end"
        );

        let log = run(&mut client, start, Duration::from_secs(60));
        assert!(sent_at(&log).is_empty(), "Timer A stopped");
        assert_eq!(events(&log), vec![(32_000, Out::Terminated)], "Timer M");
        assert_eq!(
            client.handle_response(&k, 200, start + Duration::from_secs(61)),
            ResponseDisposition::NoTransaction
        );
    }

    // --- non-INVITE client ---------------------------------------------------------------------

    #[test]
    fn non_invite_client_timer_e_then_timer_f() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("opt", TxMethod::Other("OPTIONS".into()));
        client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        assert_eq!(client.state(&k), Some(State::Trying));

        let log = run(&mut client, start, Duration::from_secs(40));
        assert_eq!(
            sent_at(&log),
            vec![500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(
            events(&log),
            vec![(32_000, Out::Timeout), (32_000, Out::Terminated)]
        );
    }

    #[test]
    fn non_invite_client_proceeding_retransmits_every_t2() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("bye", TxMethod::Other("BYE".into()));
        client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        assert_eq!(
            client.handle_response(&k, 100, start + ms(200)),
            ResponseDisposition::Forward
        );
        assert_eq!(client.state(&k), Some(State::Proceeding));

        let log = run(&mut client, start, Duration::from_secs(40));
        // The pending Timer E still fires at 0.5 s, then every T2; Timer F still runs.
        assert_eq!(
            sent_at(&log),
            vec![500, 4500, 8500, 12_500, 16_500, 20_500, 24_500, 28_500]
        );
        assert_eq!(
            events(&log),
            vec![(32_000, Out::Timeout), (32_000, Out::Terminated)]
        );
    }

    #[test]
    fn non_invite_client_final_completes_with_timer_k() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let k = key("opt", TxMethod::Other("OPTIONS".into()));
        client.start(k.clone(), REQUEST, peer(Transport::Udp), start);
        let log = run(&mut client, start, ms(700));
        assert_eq!(sent_at(&log), vec![500]);
        assert_eq!(
            client.handle_response(&k, 200, start + ms(700)),
            ResponseDisposition::Forward
        );
        assert_eq!(client.state(&k), Some(State::Completed));
        assert_eq!(
            client.handle_response(&k, 200, start + ms(800)),
            ResponseDisposition::Absorb(None)
        );
        assert_eq!(client.send_ack(&k, ACK), None);

        let log = run(&mut client, start, Duration::from_secs(40));
        assert!(sent_at(&log).is_empty(), "Timer E stopped");
        assert_eq!(events(&log), vec![(5700, Out::Terminated)], "Timer K = T4");
    }

    #[test]
    fn ack_and_cancel_as_client_requests() {
        let mut client = ClientTransactions::default();
        let now = Instant::now();
        let udp = peer(Transport::Udp);
        let sent = client.start(key("x", TxMethod::Ack), ACK, udp, now);
        assert_eq!(sent.bytes, ACK);
        assert!(client.is_empty(), "ACK is not a transaction");

        client.start(key("x", TxMethod::Invite), REQUEST, udp, now);
        client.start(key("x", TxMethod::Cancel), REQUEST, udp, now);
        assert_eq!(client.len(), 2);
        assert_eq!(
            client.handle_response(&key("x", TxMethod::Cancel), 200, now),
            ResponseDisposition::Forward
        );
        assert_eq!(
            client.state(&key("x", TxMethod::Invite)),
            Some(State::Calling)
        );
        assert_eq!(
            client.handle_response(&key("y", TxMethod::Invite), 200, now),
            ResponseDisposition::NoTransaction
        );
    }

    // --- reliable transports -------------------------------------------------------------------

    #[test]
    fn reliable_transports_never_retransmit() {
        let start = Instant::now();
        for transport in [Transport::Tcp, Transport::Tls] {
            let tcp = peer(transport);

            let mut client = ClientTransactions::default();
            client.start(key("i", TxMethod::Invite), REQUEST, tcp, start);
            client.start(
                key("o", TxMethod::Other("OPTIONS".into())),
                REQUEST,
                tcp,
                start,
            );
            let log = run(&mut client, start, Duration::from_secs(60));
            assert!(sent_at(&log).is_empty());
            assert_eq!(
                events(&log),
                vec![
                    (32_000, Out::Timeout),
                    (32_000, Out::Terminated),
                    (32_000, Out::Timeout),
                    (32_000, Out::Terminated),
                ],
                "Timers B and F still run"
            );

            let mut server = ServerTransactions::default();
            let k = key("i", TxMethod::Invite);
            server.handle_request(&k, start);
            server.send_response(&k, 486, BUSY, tcp, start);
            let log = run(&mut server, start, Duration::from_secs(60));
            assert!(sent_at(&log).is_empty(), "no Timer G");
            assert_eq!(
                events(&log),
                vec![(32_000, Out::Timeout), (32_000, Out::Terminated)],
                "Timer H still runs"
            );

            // With the ACK, Timer I is zero: gone at once.
            server.handle_request(&k, start);
            server.send_response(&k, 486, BUSY, tcp, start);
            let ack = key("i", TxMethod::Ack);
            assert_eq!(
                server.handle_request(&ack, start),
                RequestDisposition::AckForInvite
            );
            assert!(server.is_empty());

            // Client INVITE: Timer D is zero; the transaction ends once it has the ACK.
            let k = key("i", TxMethod::Invite);
            client.start(k.clone(), REQUEST, tcp, start);
            assert_eq!(
                client.handle_response(&k, 486, start),
                ResponseDisposition::ForwardNeedsAck
            );
            assert!(client.send_ack(&k, ACK).is_some());
            assert!(client.is_empty());

            // Non-INVITE client: Timer K is zero.
            let o = key("o", TxMethod::Other("OPTIONS".into()));
            client.start(o.clone(), REQUEST, tcp, start);
            assert_eq!(
                client.handle_response(&o, 200, start),
                ResponseDisposition::Forward
            );
            assert!(client.is_empty());
        }
    }

    // --- scale ---------------------------------------------------------------------------------

    #[test]
    fn tens_of_thousands_of_transactions_keep_the_heap_small() {
        let mut client = ClientTransactions::default();
        let start = Instant::now();
        let udp = peer(Transport::Udp);
        let n = 20_000;
        for i in 0..n {
            let k = key(&i.to_string(), TxMethod::Other("OPTIONS".into()));
            client.start(k.clone(), REQUEST, udp, start + ms(i / 10));
            if i % 2 == 0 {
                client.handle_response(&k, 200, start + ms(i / 10 + 100));
            }
        }
        assert!(client.table.heap.len() <= 2 * n as usize + 1024);
        let log = run(&mut client, start, Duration::from_secs(120));
        let timeouts = log.iter().filter(|(_, o)| *o == Out::Timeout).count();
        assert_eq!(timeouts, n as usize / 2);
        assert!(client.is_empty());
        assert!(client.table.heap.is_empty());
    }

    // --- random operations ---------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Request {
            k: u8,
            m: u8,
        },
        Respond {
            k: u8,
            m: u8,
            status: u16,
            tcp: bool,
        },
        Start {
            k: u8,
            m: u8,
            tcp: bool,
        },
        Response {
            k: u8,
            m: u8,
            status: u16,
        },
        SendAck {
            k: u8,
        },
        Remove {
            k: u8,
            m: u8,
        },
        Advance {
            ms: u64,
        },
    }

    fn random_key(k: u8, m: u8) -> TransactionKey {
        let method = match m % 4 {
            0 => TxMethod::Invite,
            1 => TxMethod::Ack,
            2 => TxMethod::Cancel,
            _ => TxMethod::Other("OPTIONS".into()),
        };
        key(&(k % 4).to_string(), method)
    }

    fn status() -> impl Strategy<Value = u16> {
        prop::sample::select(vec![0u16, 99, 100, 180, 200, 202, 302, 486, 699, 700, 999])
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, m)| Op::Request { k, m }),
            (any::<u8>(), any::<u8>(), status(), any::<bool>())
                .prop_map(|(k, m, status, tcp)| Op::Respond { k, m, status, tcp }),
            (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(k, m, tcp)| Op::Start {
                k,
                m,
                tcp
            }),
            (any::<u8>(), any::<u8>(), status()).prop_map(|(k, m, status)| Op::Response {
                k,
                m,
                status
            }),
            any::<u8>().prop_map(|k| Op::SendAck { k }),
            (any::<u8>(), any::<u8>()).prop_map(|(k, m)| Op::Remove { k, m }),
            prop_oneof![0u64..1000, 0u64..40_000].prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        #[test]
        fn random_operations_never_panic_nor_leave_deadlines_behind(
            ops in prop::collection::vec(op(), 0..200)
        ) {
            let mut server = ServerTransactions::default();
            let mut client = ClientTransactions::default();
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Request { k, m } => {
                        server.handle_request(&random_key(k, m), now);
                    }
                    Op::Respond { k, m, status, tcp } => {
                        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                        server.send_response(&random_key(k, m), status, OK, peer(transport), now);
                    }
                    Op::Start { k, m, tcp } => {
                        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                        client.start(random_key(k, m), REQUEST, peer(transport), now);
                    }
                    Op::Response { k, m, status } => {
                        client.handle_response(&random_key(k, m), status, now);
                    }
                    Op::SendAck { k } => {
                        client.send_ack(&random_key(k, 0), ACK);
                    }
                    Op::Remove { k, m } => {
                        server.remove(&random_key(k, m));
                        client.remove(&random_key(k, m));
                    }
                    Op::Advance { ms } => {
                        now += Duration::from_millis(ms);
                        server.handle_timeout(now);
                        client.handle_timeout(now);
                    }
                }
                while server.poll_transmit().is_some() || server.poll_event().is_some() {}
                while client.poll_transmit().is_some() || client.poll_event().is_some() {}
                for deadline in [server.poll_timeout(), client.poll_timeout()].into_iter().flatten() {
                    prop_assert!(deadline > now, "deadline in the past");
                }
                prop_assert!(server.len() <= 12 && client.len() <= 12);
                prop_assert_eq!(server.table.ids.len(), server.len());
                prop_assert_eq!(client.table.ids.len(), client.len());
            }
        }
    }
}
