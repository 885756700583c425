//! Client requests and what their answers promise: an acknowledged write is
//! exactly the committed change at its version; a linearizable read is at
//! least every write acknowledged before it was issued; and the whole
//! history of writes and linearizable reads is linearizable (recorded here,
//! checked at the end of a run).

use std::collections::{BTreeMap, BTreeSet};

use simple_raft::core::{Command, Map, Millis, RequestError, RequestId};
use simple_raft::wire::{Change, NodeId, Write, WriteTag};

use super::linearizability::{self as lin, Call, OpId, Returned};
use super::model::{History, Outcome};

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set a key (values are unique per run, so the change is recognisable).
    Set { key: String, value: String },
    /// Remove a key.
    Remove { key: String },
    /// Replace the whole map.
    Update { map: BTreeMap<String, String> },
    /// Linearizable read.
    Read,
    /// The node leaves; `id` is its member id when asked.
    Leave { id: Option<NodeId> },
    /// The leader hands over.
    Transfer,
    /// Open the write session of the client at a node.
    OpenSession { id: u64 },
}

impl Op {
    /// The core command for this request.
    pub fn command(&self) -> Command {
        match self {
            Op::Set { key, value } => Command::Set {
                key: key.clone(),
                value: value.clone(),
            },
            Op::Remove { key } => Command::Remove { key: key.clone() },
            Op::Update { map } => Command::Update { map: map.into() },
            Op::Read => Command::ReadLinearizable,
            Op::Leave { .. } => Command::Leave,
            Op::Transfer => Command::TransferLeadership,
            Op::OpenSession { id } => Command::OpenSession { id: *id },
        }
    }

    /// The operation on the map, for the linearizability history (`None`:
    /// it does not touch the map).
    fn call(&self) -> Option<Call> {
        Some(match self {
            Op::Set { key, value } => Call::Set {
                key: key.clone(),
                value: value.clone(),
            },
            Op::Remove { key } => Call::Remove { key: key.clone() },
            Op::Update { map } => Call::Update { map: map.clone() },
            Op::Read => Call::Read,
            Op::Leave { .. } | Op::Transfer | Op::OpenSession { .. } => return None,
        })
    }

    /// Whether it writes the map.
    pub fn writes(&self) -> bool {
        matches!(self, Op::Set { .. } | Op::Remove { .. } | Op::Update { .. })
    }

    /// Whether a client may send it again to the leader it was told of.
    pub fn retries(&self) -> bool {
        matches!(
            self,
            Op::Set { .. }
                | Op::Remove { .. }
                | Op::Update { .. }
                | Op::Read
                | Op::OpenSession { .. }
        )
    }
}

/// A request waiting for its answer.
#[derive(Debug, Clone)]
pub struct Request {
    /// The slot it was sent to.
    pub node: usize,
    /// The incarnation of the node there.
    pub incarnation: u64,
    /// What it asks.
    pub op: Op,
    /// When the client first issued it (retries keep the first time).
    pub issued_at: Millis,
    /// The highest version acknowledged to any client before it was issued.
    pub acked_before: u64,
    /// The node's term when issued.
    pub term_at_issue: u64,
    /// How many redirects it followed.
    pub hops: u32,
    /// Its operation in the linearizability history, once issued (a
    /// redirect continues the same operation).
    pub history: Option<OpId>,
    /// How many times a client wrote it again after an unknown outcome.
    pub rewrites: u32,
    /// For a write in a session: which request of which session it is
    /// (every resend carries the same).
    pub tag: Option<WriteTag>,
    /// The client that made it: the slot it was first sent to, and the
    /// incarnation there (its session's owner).
    pub origin: (usize, u64),
}

/// An acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The request.
    pub request: RequestId,
    /// The committed version it was acknowledged with.
    pub version: u64,
    /// What it asked.
    pub op: Op,
    /// Its session request, if any.
    pub tag: Option<WriteTag>,
}

/// The write session of the client at one node (one per incarnation: a
/// restarted process starts with none).
#[derive(Debug, Default)]
struct Session {
    id: Option<u64>,
    opening: bool,
    last_seq: u64,
    in_flight: BTreeSet<u64>,
}

/// What the sim should do after an answer.
#[derive(Debug)]
pub enum After {
    /// Nothing.
    Nothing,
    /// Send the request again to this address.
    Retry {
        /// Where.
        leader: std::net::SocketAddr,
        /// The request as first issued.
        request: Request,
    },
    /// Write it again, after an unknown outcome (see [`RetryWrites`]).
    Rewrite {
        /// The request as first issued.
        request: Request,
    },
}

/// What a client does after a write's outcome is unknown (`Uncertain`,
/// `Timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RetryWrites {
    /// Nothing: the write stays unknown.
    #[default]
    Off,
    /// Writes the same again, as a new operation of the history.
    Separate,
    /// Writes the same again as the same operation (what the library's
    /// `Node` does until its request timeout): one operation that may take
    /// effect twice.
    Same,
}

/// A client writes again at most this many times after unknown outcomes.
const REWRITES_MAX: u32 = 3;

/// Every client request of a run.
#[derive(Debug)]
pub struct Clients {
    next_request: RequestId,
    /// Requests without an answer yet.
    pub pending: BTreeMap<RequestId, Request>,
    /// Every answer, by request.
    pub results: BTreeMap<RequestId, Result<u64, RequestError>>,
    /// Acknowledged writes.
    pub acked: Vec<Ack>,
    /// The highest acknowledged version.
    pub acked_max: u64,
    /// Answers by outcome, for the run's summary.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Whether to follow `NotLeader` redirects.
    pub follow_redirects: bool,
    /// What to do after a write's unknown outcome.
    pub retry_writes: RetryWrites,
    /// Every write and linearizable read, for the linearizability check.
    pub history: lin::History,
    /// Whether writes go in sessions (as the library's clients send them).
    pub sessions_on: bool,
    /// The session of each client, by node slot and incarnation.
    sessions: BTreeMap<(usize, u64), Session>,
    /// Sessions opened so far (their ids follow from it).
    sessions_opened: u64,
}

impl Default for Clients {
    fn default() -> Clients {
        Clients {
            next_request: 0,
            pending: BTreeMap::new(),
            results: BTreeMap::new(),
            acked: Vec::new(),
            acked_max: 0,
            outcomes: BTreeMap::new(),
            follow_redirects: false,
            retry_writes: RetryWrites::Off,
            history: lin::History::new("ms"),
            sessions_on: false,
            sessions: BTreeMap::new(),
            sessions_opened: 0,
        }
    }
}

impl Clients {
    /// What the client at `node` sends for `op`: a write in its session,
    /// or the opening of its session first (the write is then not made:
    /// `None` once an opening is under way).
    pub fn prepare(
        &mut self,
        node: usize,
        incarnation: u64,
        op: Op,
    ) -> Option<(Op, Option<WriteTag>)> {
        if !self.sessions_on || !op.writes() {
            return Some((op, None));
        }
        let session = self.sessions.entry((node, incarnation)).or_default();
        match session.id {
            Some(id) => {
                session.last_seq += 1;
                let seq = session.last_seq;
                session.in_flight.insert(seq);
                let floor = *session.in_flight.first().expect("just inserted");
                Some((
                    op,
                    Some(WriteTag {
                        session: id,
                        seq,
                        floor,
                    }),
                ))
            }
            None if session.opening => None,
            None => {
                session.opening = true;
                self.sessions_opened += 1;
                // Spread over the id space, as random ids would be.
                let id = self.sessions_opened.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                Some((Op::OpenSession { id }, None))
            }
        }
    }

    /// The request is over: its number leaves the session's flight.
    fn finished(&mut self, asked: &Request) {
        let Some(tag) = asked.tag else { return };
        if let Some(session) = self.sessions.get_mut(&asked.origin) {
            if session.id == Some(tag.session) {
                session.in_flight.remove(&tag.seq);
            }
        }
    }

    /// Registers a new request and returns its id.
    pub fn issue(&mut self, mut request: Request) -> RequestId {
        self.next_request += 1;
        if request.hops == 0 {
            request.acked_before = self.acked_max;
        }
        if request.history.is_none() {
            if let Some(call) = request.op.call() {
                let client = format!("n{}", request.node);
                let op = self.history.invoke(client, call, request.issued_at);
                request.history = Some(op);
            }
        }
        self.pending.insert(self.next_request, request);
        self.next_request
    }

    /// A request that never reached a node (a full socket buffer, a
    /// redirect to a node that is gone): it changed nothing.
    pub fn dropped(&mut self, request: Request, now: Millis) {
        self.failed(&request, now);
    }

    /// The request failed: nothing changed, unless an earlier attempt of
    /// the same operation may have (see [`RetryWrites::Same`]).
    fn failed(&mut self, request: &Request, now: Millis) {
        match request.history {
            Some(op) if request.rewrites > 0 && self.retry_writes == RetryWrites::Same => {
                self.history.unknown(op, now)
            }
            Some(op) => self.history.failed(op, now),
            None => {}
        }
    }

    /// A request taken back before it was delivered: it changed nothing.
    pub fn undeliverable(&mut self, request: RequestId, now: Millis) {
        if let Some(r) = self.pending.remove(&request) {
            self.dropped(r, now);
        }
    }

    /// Requests at a node that crashed or left get no answer: their
    /// outcome is unknown.
    pub fn lost(&mut self, node: usize, now: Millis) {
        let history = &mut self.history;
        let mut lost = Vec::new();
        self.pending.retain(|_, r| {
            if r.node == node {
                if let Some(op) = r.history {
                    history.unknown(op, now);
                }
                lost.push(r.clone());
            }
            r.node != node
        });
        for request in &lost {
            self.finished(request);
        }
    }

    /// Checks an answer given by `node` at `now`, whose committed version
    /// is then `commit` and committed map `map`.
    pub fn done(
        &mut self,
        node: usize,
        request: RequestId,
        result: &Result<u64, RequestError>,
        (commit, map): (u64, &Map),
        history: &History,
        now: Millis,
    ) -> Result<After, String> {
        let Some(asked) = self.pending.remove(&request) else {
            return Err(format!(
                "answer to request {request}, which is unknown or already answered"
            ));
        };
        if asked.node != node {
            return Err(format!(
                "request {request} was sent to n{} but answered by n{node}",
                asked.node
            ));
        }
        self.results.insert(request, result.clone());
        *self
            .outcomes
            .entry(outcome_name(&asked.op, result))
            .or_insert(0) += 1;
        if let Op::OpenSession { id } = asked.op {
            return Ok(self.session_opened(asked, id, result));
        }
        if let Err(RequestError::SessionExpired) = result {
            // Maybe applied by an earlier attempt; nothing of it applies
            // now, and the client needs a new session.
            if let Some(op) = asked.history {
                self.history.unknown(op, now);
            }
            if let Some(session) = self.sessions.get_mut(&asked.origin) {
                if session.id == asked.tag.map(|t| t.session) {
                    *session = Session::default();
                }
            }
            return Ok(After::Nothing);
        }
        if let Some(after) = self.record(&asked, result, (commit, map), now) {
            return Ok(after);
        }
        if !matches!(result, Err(RequestError::NotLeader { leader: Some(_) }))
            || !self.follow_redirects
            || asked.hops >= 3
        {
            self.finished(&asked);
        }
        match (result, &asked.op) {
            (Ok(version), Op::Read) => {
                if *version < asked.acked_before {
                    return Err(format!(
                        "linearizable read {request} returned version {version}, but version {} \
                         was acknowledged before it was issued",
                        asked.acked_before
                    ));
                }
                if commit < *version {
                    return Err(format!(
                        "linearizable read {request} returned version {version} while the node \
                         is only at {commit}"
                    ));
                }
                if *version > history.last() {
                    return Err(format!(
                        "linearizable read {request} returned version {version}, beyond every \
                         committed version ({})",
                        history.last()
                    ));
                }
            }
            (Ok(term), Op::Transfer) => {
                if *term <= asked.term_at_issue {
                    return Err(format!(
                        "transfer {request} reported term {term}, not after the term it was \
                         asked in ({})",
                        asked.term_at_issue
                    ));
                }
            }
            (Ok(version), op) => {
                let ack = Ack {
                    request,
                    version: *version,
                    op: op.clone(),
                    tag: asked.tag,
                };
                check_ack(&ack, history)?;
                self.acked_max = self.acked_max.max(*version);
                self.acked.push(ack);
            }
            (
                Err(RequestError::NotLeader {
                    leader: Some(leader),
                }),
                op,
            ) if self.follow_redirects && op.retries() && asked.hops < 3 => {
                return Ok(After::Retry {
                    leader: *leader,
                    request: asked,
                });
            }
            (Err(_), _) => {}
        }
        Ok(After::Nothing)
    }

    /// The answer to the opening of a session.
    fn session_opened(
        &mut self,
        asked: Request,
        id: u64,
        result: &Result<u64, RequestError>,
    ) -> After {
        match result {
            Err(RequestError::NotLeader {
                leader: Some(leader),
            }) if self.follow_redirects && asked.hops < 3 => {
                return After::Retry {
                    leader: *leader,
                    request: asked,
                }
            }
            Ok(_) => {
                if let Some(session) = self.sessions.get_mut(&asked.origin) {
                    *session = Session {
                        id: Some(id),
                        ..Session::default()
                    };
                }
            }
            Err(_) => {
                if let Some(session) = self.sessions.get_mut(&asked.origin) {
                    session.opening = false;
                }
            }
        }
        After::Nothing
    }

    /// Records an answer in the linearizability history; what to do when
    /// the client writes again after an unknown outcome.
    fn record(
        &mut self,
        asked: &Request,
        result: &Result<u64, RequestError>,
        (commit, map): (u64, &Map),
        now: Millis,
    ) -> Option<After> {
        let op = asked.history?;
        match result {
            Ok(_) if asked.op == Op::Read => {
                let seen = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                self.history.read_ok(op, now, Returned::Map(seen));
                self.history.hint(op, 2 * commit + 1);
            }
            Ok(version) => {
                self.history.ok(op, now);
                self.history.hint(op, 2 * version);
            }
            Err(RequestError::NotLeader { leader: Some(_) })
                if self.follow_redirects && asked.op.retries() && asked.hops < 3 =>
            {
                // Followed: the same operation goes on (see `done`).
            }
            Err(RequestError::Uncertain | RequestError::Timeout) => {
                let again = self.retry_writes != RetryWrites::Off
                    && asked.op.writes()
                    && asked.rewrites < REWRITES_MAX;
                let mut request = asked.clone();
                request.rewrites += 1;
                request.hops = 0;
                request.issued_at = now + 1;
                if self.retry_writes == RetryWrites::Same && again {
                    return Some(After::Rewrite { request });
                }
                self.history.unknown(op, now);
                if again {
                    request.history = None;
                    return Some(After::Rewrite { request });
                }
            }
            Err(_) => self.failed(asked, now),
        }
        None
    }

    /// Checks every acknowledged write against the final history.
    pub fn check_all(&self, history: &History) -> Result<(), String> {
        self.acked
            .iter()
            .try_for_each(|ack| check_ack(ack, history))
    }
}

/// An acknowledged write must be the committed change at its version.
fn check_ack(ack: &Ack, history: &History) -> Result<(), String> {
    let v = ack.version;
    let Some(committed) = history.entries.get(&v) else {
        return Err(format!(
            "request {} acknowledged with version {v}, which no node has applied",
            ack.request
        ));
    };
    if let Some(tag) = ack.tag {
        return check_session_ack(ack, tag, history);
    }
    let ok = match &ack.op {
        Op::Set { key, value } => {
            committed.change
                == Change::Set {
                    key: key.clone(),
                    value: value.clone(),
                }
        }
        Op::Remove { key } => committed.change == Change::Remove { key: key.clone() },
        Op::Update { map } => {
            matches!(committed.change, Change::Replace { .. })
                && history.state(v).is_some_and(|(s, _, _)| &s.map == map)
        }
        // The leaving node may learn of its removal later (from a snapshot
        // or a notice): the removal committed at or before `v`.
        Op::Leave { id } => id.is_some_and(|id| {
            history
                .entries
                .range(..=v)
                .any(|(_, c)| c.change == Change::RemoveMember(id))
        }),
        Op::Read | Op::Transfer | Op::OpenSession { .. } => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "request {} ({:?}) acknowledged with version {v}, but version {v} committed {:?}",
            ack.request, ack.op, committed.change
        ))
    }
}

/// An acknowledged session write must be the change at its version, with
/// its tag, and that change must have applied there (a resend answered as a
/// duplicate gets the version of the first).
fn check_session_ack(ack: &Ack, tag: WriteTag, history: &History) -> Result<(), String> {
    let v = ack.version;
    let Some(committed) = history.entries.get(&v).map(|c| &c.change) else {
        return Err(format!(
            "request {} acknowledged with version {v}, which no node has applied",
            ack.request
        ));
    };
    let Change::SessionWrite { tag: at, write } = committed else {
        return Err(format!(
            "session write {} ({:?}) acknowledged with version {v}, which committed {committed:?}",
            ack.request, ack.op
        ));
    };
    let same = match (&ack.op, write) {
        (Op::Set { key, value }, Write::Set { key: k, value: w }) => key == k && value == w,
        (Op::Remove { key }, Write::Remove { key: k }) => key == k,
        (Op::Update { map }, Write::Replace { .. }) => {
            history.state(v).is_some_and(|(s, _, _)| &s.map == map)
        }
        _ => false,
    };
    if *at != tag || !same {
        return Err(format!(
            "session write {} ({:?}, {tag:?}) acknowledged with version {v}, which committed \
             {committed:?}",
            ack.request, ack.op
        ));
    }
    match history.outcomes.get(&v) {
        Some(Outcome::Applied) | None => Ok(()),
        Some(other) => Err(format!(
            "session write {} acknowledged with version {v}, where it applied as {other:?}",
            ack.request
        )),
    }
}

fn outcome_name(op: &Op, result: &Result<u64, RequestError>) -> &'static str {
    let write = !matches!(op, Op::Read);
    match result {
        Ok(_) if write => "write ok",
        Ok(_) => "read ok",
        Err(RequestError::NotLeader { .. }) => "not leader",
        Err(RequestError::Uncertain) => "uncertain",
        Err(RequestError::Timeout) => "timeout",
        Err(RequestError::NotMember) => "not member",
        Err(RequestError::ChangeInProgress) => "change in progress",
        Err(RequestError::SessionExpired) => "session expired",
        Err(_) => "other error",
    }
}
