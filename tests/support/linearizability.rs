//! A linearizability checker for histories of client operations on the
//! replicated map (`set`, `remove`, `update`, linearizable reads of one key
//! or of the whole map).
//!
//! A history records, for every operation, when it was invoked, when it
//! completed and how: `Ok` (it took effect between the two; a read with
//! what it returned), `Failed` (nothing changed) or `Unknown` (a timeout,
//! a lost leadership, a crash before the answer: a write may have taken
//! effect at any moment after its invocation, or never). The history is
//! linearizable when the operations can be put in one order that respects
//! real time (an operation that completed before another was invoked comes
//! first) and in which every read returns the map the writes before it
//! leave.
//!
//! The search is the Wing–Gong algorithm with Lowe's memoisation (as in
//! Lowe's "Testing for linearizability", Porcupine and Knossos): a depth-first
//! search over which pending operation takes effect next, that never visits
//! the same (set of operations taken effect, model state) twice. Why it is
//! fast enough, and exact:
//!
//! - **Reductions that change no verdict.** Failed operations and reads
//!   without an answer are dropped (they changed nothing and promised
//!   nothing). An unknown write is optional: it may be placed anywhere
//!   after its invocation, or nowhere. When it wrote a value nobody else
//!   wrote and nobody read, it is dropped (no read could tell whether it
//!   happened). When one of its values (written by it alone) was read, it
//!   certainly took effect, before the first read that saw it completed: it
//!   becomes a required operation that completed then.
//! - **Per key, then the whole map.** Each key is first checked alone, a
//!   register with every operation projected onto it (an `update` writes
//!   the key's value in its map, or removes it; a whole-map read reads the
//!   key's value). Each projection of a linearizable history is
//!   linearizable, so a key that fails is a violation, reported with that
//!   key and the operations on it. When the history has multi-key
//!   operations (`update`, whole-map reads), passing every key alone is not
//!   enough (a whole-map read must see one instant of every key at once),
//!   so the whole history is then checked with the whole map as the state.
//!   Without multi-key operations, linearizability is local (Herlihy and
//!   Wing) and the per-key checks are the whole verdict.
//! - **Search order and pruning.** At each point the search tries the
//!   required operations that may go next, the one that must complete
//!   soonest first (an operation with a long interval is placed late, right
//!   before a result needs it), and the optional ones only once every
//!   required choice there failed. Operations with a hint (the order the
//!   system under test says it applied them in, [`History::hint`]) go
//!   first, in that order: a correct system's history is then accepted on
//!   the first path. An optional write is placed only if it gives some key
//!   a value an unplaced read expects there, and only right before another
//!   candidate that touches its keys (otherwise whatever succeeds with it
//!   placed succeeds with it placed later, or without it).
//!   A write that would overwrite the value an unplaced read expects, when
//!   no unplaced write invoked before that read completed can bring the
//!   value back, is not placed either: that branch cannot succeed. Without
//!   this the whole-map search meets every subset of a burst of concurrent
//!   writes before each read; with it a simulator run's history of about a
//!   thousand operations takes a few thousand configurations. None of this
//!   changes a verdict; a failed search is run once more without the
//!   pruning, only for its explanation (the read it stops at says more
//!   than the write the pruned one stops at).
//! - **A bounded search.** Each search visits at most
//!   [`Limits::configurations_max`] configurations (200 000 by default)
//!   and takes at most [`Limits::operations_max`] operations
//!   (20 000); a search past either bound stops and is reported in
//!   [`Report::exceeded`] (neither a pass nor a violation), never left to
//!   run for hours.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Set one key.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Remove one key.
    Remove {
        /// The key.
        key: String,
    },
    /// Make the map exactly this one.
    Update {
        /// The new map.
        map: BTreeMap<String, String>,
    },
    /// A linearizable read of one key.
    Get {
        /// The key.
        key: String,
    },
    /// A linearizable read of the whole map.
    Read,
}

impl Call {
    fn is_read(&self) -> bool {
        matches!(self, Call::Get { .. } | Call::Read)
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// The value of the key a [`Call::Get`] asked for.
    Value(Option<String>),
    /// The whole map a [`Call::Read`] saw.
    Map(BTreeMap<String, String>),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No answer yet; at the end of a history this counts as `Unknown`.
    Pending,
    /// It took effect between invocation and completion; a read carries
    /// what it returned.
    Ok(Option<Returned>),
    /// Nothing changed.
    Failed,
    /// It may have taken effect at any time after its invocation, or never.
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Who issued it, for messages.
    pub client: String,
    /// What it asked.
    pub call: Call,
    /// When it was invoked, in the history's unit.
    pub invoked_at: u64,
    /// When its answer came, if one came.
    pub completed_at: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its place among the history's events: real-time order is the order
    /// of `invoke` and completion calls, not the (coarser) times.
    invoke_seq: u64,
    complete_seq: Option<u64>,
    /// Where the system under test says it took effect (see
    /// [`History::hint`]).
    hint: Option<u64>,
}

/// The index of an operation in its [`History`].
pub type OpId = usize;

/// A history of client operations, recorded in real-time order: call
/// [`History::invoke`] when a client sends a request and one of
/// [`History::ok`], [`History::read_ok`], [`History::failed`] or
/// [`History::unknown`] when its answer comes. Operations completed before
/// another's `invoke` call precede it, whatever their times say (times are
/// only shown in messages).
#[derive(Debug, Clone)]
pub struct History {
    ops: Vec<Operation>,
    seq: u64,
    /// The unit of the times, for messages ("ms", "µs").
    pub unit: &'static str,
    /// The map before the first operation.
    pub initial: BTreeMap<String, String>,
}

/// The bounds of one search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Configurations (a set of operations taken effect and a state) one
    /// search may visit.
    pub configurations_max: u64,
    /// Operations one search may take (a key's, or the whole history's).
    pub operations_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            configurations_max: 200_000,
            operations_max: 20_000,
        }
    }
}

/// What a check did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Operations recorded.
    pub recorded: usize,
    /// Operations the search placed: acknowledged writes, reads that
    /// returned, and unknown writes kept.
    pub checked: usize,
    /// Of those, reads whose result was checked.
    pub reads: usize,
    /// Unknown writes that a read proved took effect.
    pub unknown_proved: usize,
    /// Unknown writes kept as optional.
    pub unknown_optional: usize,
    /// Failed operations and unanswered reads, dropped.
    pub dropped: usize,
    /// Unknown writes nobody could observe, dropped.
    pub unknown_unobserved: usize,
    /// Keys checked alone.
    pub keys: usize,
    /// Whether the whole map was checked as one state too.
    pub whole_map: bool,
    /// Configurations visited, over all searches.
    pub configurations: u64,
    /// Searches stopped at a bound, with what bound: their part of the
    /// history was not proved either way.
    pub exceeded: Vec<String>,
}

/// A history that is not linearizable: what could not be explained.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key, or `None` for the whole map.
    pub key: Option<String>,
    /// The operations involved.
    pub ops: Vec<OpId>,
    /// The explanation.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl History {
    /// An empty history whose times are in `unit`, starting from an empty
    /// map.
    pub fn new(unit: &'static str) -> History {
        History {
            ops: Vec::new(),
            seq: 0,
            unit,
            initial: BTreeMap::new(),
        }
    }

    /// Records that `client` invoked `call` at `at`.
    pub fn invoke(&mut self, client: impl Into<String>, call: Call, at: u64) -> OpId {
        self.seq += 1;
        self.ops.push(Operation {
            client: client.into(),
            call,
            invoked_at: at,
            completed_at: None,
            outcome: Outcome::Pending,
            invoke_seq: self.seq,
            complete_seq: None,
            hint: None,
        });
        self.ops.len() - 1
    }

    /// A write took effect (it was acknowledged) by `at`.
    pub fn ok(&mut self, id: OpId, at: u64) {
        assert!(
            !self.ops[id].call.is_read(),
            "read {id} completed without a result"
        );
        self.complete(id, at, Outcome::Ok(None));
    }

    /// A read returned `returned` at `at`.
    pub fn read_ok(&mut self, id: OpId, at: u64, returned: Returned) {
        let fits = matches!(
            (&self.ops[id].call, &returned),
            (Call::Get { .. }, Returned::Value(_)) | (Call::Read, Returned::Map(_))
        );
        assert!(fits, "operation {id} cannot return {returned:?}");
        self.complete(id, at, Outcome::Ok(Some(returned)));
    }

    /// Tells where the system under test says operation `id` took effect
    /// (a committed version: a write at `2 v`, a read of the state at `v`
    /// at `2 v + 1`). The search tries operations in this order first, so
    /// a history the system really linearized in that order is accepted at
    /// once; only the speed depends on it, never the verdict.
    pub fn hint(&mut self, id: OpId, order: u64) {
        self.ops[id].hint = Some(order);
    }

    /// The operation changed nothing.
    pub fn failed(&mut self, id: OpId, at: u64) {
        self.complete(id, at, Outcome::Failed);
    }

    /// The operation's outcome is unknown.
    pub fn unknown(&mut self, id: OpId, at: u64) {
        self.complete(id, at, Outcome::Unknown);
    }

    fn complete(&mut self, id: OpId, at: u64, outcome: Outcome) {
        self.seq += 1;
        let op = &mut self.ops[id];
        assert_eq!(
            op.outcome,
            Outcome::Pending,
            "operation {id} completed twice"
        );
        op.completed_at = Some(at);
        op.complete_seq = Some(self.seq);
        op.outcome = outcome;
    }

    /// Every operation recorded.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// Whether an operation has no answer yet.
    pub fn is_pending(&self, id: OpId) -> bool {
        self.ops[id].outcome == Outcome::Pending
    }

    /// One line about operation `id`, for messages.
    pub fn describe(&self, id: OpId) -> String {
        let op = &self.ops[id];
        let what = match &op.call {
            Call::Set { key, value } => format!("set {key:?}={value:?}"),
            Call::Remove { key } => format!("remove {key:?}"),
            Call::Update { map } => format!("update {map:?}"),
            Call::Get { key } => format!("get {key:?}"),
            Call::Read => "read".to_string(),
        };
        let result = match &op.outcome {
            Outcome::Ok(Some(Returned::Value(v))) => format!(" -> {v:?}"),
            Outcome::Ok(Some(Returned::Map(m))) => format!(" -> {m:?}"),
            Outcome::Ok(None) => " ok".to_string(),
            Outcome::Failed => " failed".to_string(),
            Outcome::Unknown | Outcome::Pending => " unknown".to_string(),
        };
        let unit = self.unit;
        let done = op
            .completed_at
            .map_or_else(|| "…".to_string(), |t| format!("{t}"));
        format!(
            "#{id} {} {what}{result} [{}..{done} {unit}]",
            op.client, op.invoked_at
        )
    }

    /// Checks the history with the default bounds.
    pub fn check(&self) -> Result<Report, Violation> {
        self.check_with(Limits::default())
    }

    /// Checks the history: a violation names the key (or the whole map)
    /// and the operations that could not be put in order.
    pub fn check_with(&self, limits: Limits) -> Result<Report, Violation> {
        let mut report = Report {
            recorded: self.ops.len(),
            ..Report::default()
        };
        let prepared = self.prepare(&mut report)?;
        let keys = self.keys();
        report.keys = keys.len();
        report.checked = prepared.len();
        report.reads = prepared
            .iter()
            .filter(|p| self.ops[p.op].call.is_read())
            .count();
        let values = Values::new(self);
        for key in &keys {
            let model: Vec<Prepared> = prepared
                .iter()
                .filter_map(|p| self.project(p, key, &values))
                .collect();
            let init = vec![values.id(self.initial.get(key))];
            let scope = Scope::Key(key.clone());
            self.search(&model, init, &scope, limits, &mut report)?;
        }
        let multi_key = prepared
            .iter()
            .any(|p| matches!(self.ops[p.op].call, Call::Update { .. } | Call::Read));
        if multi_key && keys.len() > 1 {
            report.whole_map = true;
            let model: Vec<Prepared> = prepared
                .iter()
                .map(|p| self.whole(p, &keys, &values))
                .collect();
            let init = keys
                .iter()
                .map(|k| values.id(self.initial.get(k)))
                .collect();
            self.search(&model, init, &Scope::Whole(keys), limits, &mut report)?;
        }
        Ok(report)
    }

    /// Every key any operation names or any read saw, in order.
    fn keys(&self) -> Vec<String> {
        let mut keys: BTreeSet<&String> = self.initial.keys().collect();
        for op in &self.ops {
            match &op.call {
                Call::Set { key, .. } | Call::Remove { key } | Call::Get { key } => {
                    keys.insert(key);
                }
                Call::Update { map } => keys.extend(map.keys()),
                Call::Read => {}
            }
            if let Outcome::Ok(Some(Returned::Map(m))) = &op.outcome {
                keys.extend(m.keys());
            }
        }
        keys.into_iter().cloned().collect()
    }

    /// The operations the search takes, after the reductions of the module
    /// documentation.
    fn prepare(&self, report: &mut Report) -> Result<Vec<Prepared>, Violation> {
        // Who wrote each value (failed writes wrote nothing).
        let mut writers: HashMap<&str, Vec<OpId>> = HashMap::new();
        // The first completion of a read that saw each value, and the read.
        let mut seen: HashMap<&str, (u64, OpId)> = HashMap::new();
        for (id, op) in self.ops.iter().enumerate() {
            if op.outcome == Outcome::Failed {
                continue;
            }
            match &op.call {
                Call::Set { value, .. } => writers.entry(value).or_default().push(id),
                Call::Update { map } => {
                    for value in map.values() {
                        writers.entry(value).or_default().push(id);
                    }
                }
                _ => {}
            }
            let read: Vec<&String> = match &op.outcome {
                Outcome::Ok(Some(Returned::Value(Some(v)))) => vec![v],
                Outcome::Ok(Some(Returned::Map(m))) => m.values().collect(),
                _ => Vec::new(),
            };
            let done = op.complete_seq.unwrap_or(u64::MAX);
            for v in read {
                let first = seen.entry(v).or_insert((done, id));
                if done < first.0 {
                    *first = (done, id);
                }
            }
        }
        let mut prepared = Vec::new();
        for (id, op) in self.ops.iter().enumerate() {
            let unknown = matches!(op.outcome, Outcome::Unknown | Outcome::Pending);
            if op.outcome == Outcome::Failed || (unknown && op.call.is_read()) {
                report.dropped += 1;
                continue;
            }
            if !unknown {
                prepared.push(Prepared {
                    op: id,
                    invoke: op.invoke_seq,
                    complete: op.complete_seq,
                    step: Step::Write(Vec::new()),
                    hint: op.hint,
                });
                continue;
            }
            let written: Vec<&String> = match &op.call {
                Call::Set { value, .. } => vec![value],
                Call::Update { map } => map.values().collect(),
                _ => Vec::new(),
            };
            let own: Vec<&String> = written
                .iter()
                .copied()
                .filter(|v| writers.get(v.as_str()).is_some_and(|w| w.len() == 1))
                .collect();
            let proof = own
                .iter()
                .filter_map(|v| seen.get(v.as_str()).map(|s| (*s, v)))
                .min();
            if let Some(((done, read), value)) = proof {
                if done < op.invoke_seq {
                    let message = format!(
                        "not linearizable on the value {value:?}: {} returned it, but the only \
                         write of it, {}, was invoked after that read completed",
                        self.describe(read),
                        self.describe(id)
                    );
                    return Err(Violation {
                        key: self.key_of(id, value),
                        ops: vec![read, id],
                        message,
                    });
                }
                report.unknown_proved += 1;
                prepared.push(Prepared {
                    op: id,
                    invoke: op.invoke_seq,
                    complete: Some(done),
                    step: Step::Write(Vec::new()),
                    hint: op.hint,
                });
            } else if matches!(op.call, Call::Set { .. }) && own.len() == 1 {
                report.unknown_unobserved += 1;
            } else {
                report.unknown_optional += 1;
                prepared.push(Prepared {
                    op: id,
                    invoke: op.invoke_seq,
                    complete: None,
                    step: Step::Write(Vec::new()),
                    hint: op.hint,
                });
            }
        }
        Ok(prepared)
    }

    /// The key of operation `id` that holds `value`.
    fn key_of(&self, id: OpId, value: &str) -> Option<String> {
        match &self.ops[id].call {
            Call::Set { key, .. } => Some(key.clone()),
            Call::Update { map } => map
                .iter()
                .find(|(_, v)| *v == value)
                .map(|(k, _)| k.clone()),
            _ => None,
        }
    }

    /// Operation `p` projected onto `key` (state slot 0), if it touches it.
    fn project(&self, p: &Prepared, key: &str, values: &Values) -> Option<Prepared> {
        let op = &self.ops[p.op];
        let step = match (&op.call, &op.outcome) {
            (Call::Set { key: k, value }, _) if k == key => {
                Step::Write(vec![(0, values.id(Some(value)))])
            }
            (Call::Remove { key: k }, _) if k == key => Step::Write(vec![(0, 0)]),
            (Call::Update { map }, _) => Step::Write(vec![(0, values.id(map.get(key)))]),
            (Call::Get { key: k }, Outcome::Ok(Some(Returned::Value(v)))) if k == key => {
                Step::Expect(vec![(0, values.id(v.as_ref()))])
            }
            (Call::Read, Outcome::Ok(Some(Returned::Map(m)))) => {
                Step::Expect(vec![(0, values.id(m.get(key)))])
            }
            _ => return None,
        };
        Some(Prepared { step, ..p.clone() })
    }

    /// Operation `p` on the whole map (slot `i` is `keys[i]`).
    fn whole(&self, p: &Prepared, keys: &[String], values: &Values) -> Prepared {
        let op = &self.ops[p.op];
        let slot = |key: &String| keys.binary_search(key).expect("every key is known");
        let step = match (&op.call, &op.outcome) {
            (Call::Set { key, value }, _) => Step::Write(vec![(slot(key), values.id(Some(value)))]),
            (Call::Remove { key }, _) => Step::Write(vec![(slot(key), 0)]),
            (Call::Update { map }, _) => Step::Write(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| (i, values.id(map.get(k))))
                    .collect(),
            ),
            (Call::Get { key }, Outcome::Ok(Some(Returned::Value(v)))) => {
                Step::Expect(vec![(slot(key), values.id(v.as_ref()))])
            }
            (Call::Read, Outcome::Ok(Some(Returned::Map(m)))) => Step::Expect(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| (i, values.id(m.get(k))))
                    .collect(),
            ),
            _ => unreachable!("unanswered reads are dropped"),
        };
        Prepared { step, ..p.clone() }
    }

    /// One Wing–Gong–Lowe search over `ops` from state `init`.
    fn search(
        &self,
        ops: &[Prepared],
        init: Vec<u32>,
        scope: &Scope,
        limits: Limits,
        report: &mut Report,
    ) -> Result<(), Violation> {
        if ops.is_empty() {
            return Ok(());
        }
        if ops.len() > limits.operations_max {
            report.exceeded.push(format!(
                "{scope}: {} operations, more than the {} one search takes",
                ops.len(),
                limits.operations_max
            ));
            return Ok(());
        }
        let mut search = Search::new(ops, init.clone(), true);
        let result = search.run(limits.configurations_max);
        report.configurations += search.configurations;
        match result {
            Ended::Linearizable => Ok(()),
            Ended::Exceeded => {
                report.exceeded.push(format!(
                    "{scope}: more than {} configurations for {} operations",
                    limits.configurations_max,
                    ops.len()
                ));
                Ok(())
            }
            Ended::Stuck => {
                // The pruned search stops where a write would doom a read;
                // the plain one goes on to the read itself, which says
                // more. Its verdict is the same: it only explains.
                let mut plain = Search::new(ops, init, false);
                let explained = match plain.run(limits.configurations_max) {
                    Ended::Stuck => &plain,
                    _ => &search,
                };
                Err(self.explain(ops, explained, scope))
            }
        }
    }

    /// The violation a failed search shows: the operation it could not
    /// place at its deepest point, the state there and who wrote it.
    fn explain(&self, ops: &[Prepared], search: &Search, scope: &Scope) -> Violation {
        let deepest = search
            .deepest
            .as_ref()
            .expect("a stuck search was stuck somewhere");
        let stuck = &ops[deepest.stuck];
        let values = Values::new(self);
        let slots: Vec<usize> = match &stuck.step {
            Step::Expect(want) => want
                .iter()
                .filter(|(s, v)| deepest.state[*s] != *v)
                .map(|(s, _)| *s)
                .collect(),
            Step::Write(_) => Vec::new(),
        };
        let slot_name = |s: usize| match scope {
            Scope::Key(k) => k.clone(),
            Scope::Whole(keys) => keys[s].clone(),
        };
        let mut involved = vec![stuck.op];
        let mut lines = vec![format!(
            "no order of the operations explains {} ({} of {} operations placed at best)",
            self.describe(stuck.op),
            deepest.placed,
            ops.len()
        )];
        for &s in slots.iter().take(4) {
            let key = slot_name(s);
            let have = values.name(deepest.state[s]);
            let by = deepest.writers.get(&s).map_or_else(
                || "the initial map".to_string(),
                |&w| {
                    involved.push(ops[w].op);
                    self.describe(ops[w].op)
                },
            );
            let want = match &stuck.step {
                Step::Expect(w) => w.iter().find(|(x, _)| *x == s).map_or(0, |(_, v)| *v),
                Step::Write(_) => 0,
            };
            // Only writes invoked before it completed could have given it.
            let stuck_done = stuck.complete.unwrap_or(u64::MAX);
            let wanted_by: Vec<usize> = ops
                .iter()
                .filter(|p| p.invoke < stuck_done)
                .filter(|p| match &p.step {
                    Step::Write(w) => w.iter().any(|&(x, v)| x == s && v == want),
                    Step::Expect(_) => false,
                })
                .map(|p| p.op)
                .take(3)
                .collect();
            let verb = if want == 0 { "removed" } else { "written" };
            let wanted = if wanted_by.is_empty() {
                format!("{verb} by no operation invoked before it completed")
            } else {
                let names: Vec<String> = wanted_by.iter().map(|&o| self.describe(o)).collect();
                involved.extend(&wanted_by);
                format!("{verb} by {}", names.join(", "))
            };
            lines.push(format!(
                "key {key:?}: it needs {}, {wanted}; at the furthest point of the search the key \
                 is {have} (from {by})",
                values.name(want)
            ));
        }
        let concurrent: Vec<String> = deepest
            .concurrent
            .iter()
            .filter(|&&o| ops[o].op != stuck.op)
            .take(6)
            .map(|&o| {
                involved.push(ops[o].op);
                self.describe(ops[o].op)
            })
            .collect();
        if !concurrent.is_empty() {
            lines.push(format!(
                "operations still open then: {}",
                concurrent.join("; ")
            ));
        }
        involved.sort_unstable();
        involved.dedup();
        let key = match scope {
            Scope::Key(k) => Some(k.clone()),
            Scope::Whole(_) => None,
        };
        Violation {
            key,
            ops: involved,
            message: format!("not linearizable on {scope}: {}", lines.join("; ")),
        }
    }
}

/// What one search covers.
enum Scope {
    Key(String),
    Whole(Vec<String>),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Key(k) => write!(f, "key {k:?}"),
            Scope::Whole(keys) => write!(f, "the whole map (keys {keys:?})"),
        }
    }
}

/// Values by number: 0 is "absent".
struct Values {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Values {
    fn new(history: &History) -> Values {
        let mut values = Values {
            ids: HashMap::new(),
            names: vec!["absent".to_string()],
        };
        let mut add = |v: &String| {
            if !values.ids.contains_key(v) {
                values.ids.insert(v.clone(), values.names.len() as u32);
                values.names.push(format!("{v:?}"));
            }
        };
        history.initial.values().for_each(&mut add);
        for op in &history.ops {
            match &op.call {
                Call::Set { value, .. } => add(value),
                Call::Update { map } => map.values().for_each(&mut add),
                _ => {}
            }
            match &op.outcome {
                Outcome::Ok(Some(Returned::Value(Some(v)))) => add(v),
                Outcome::Ok(Some(Returned::Map(m))) => m.values().for_each(&mut add),
                _ => {}
            }
        }
        values
    }

    fn id(&self, value: Option<&String>) -> u32 {
        value.map_or(0, |v| self.ids[v])
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// An operation as one search sees it.
#[derive(Debug, Clone)]
struct Prepared {
    /// The operation in the history.
    op: OpId,
    invoke: u64,
    /// `None`: optional (an unknown write), it may take effect any time.
    complete: Option<u64>,
    step: Step,
    /// The order the system under test gives (see [`History::hint`]).
    hint: Option<u64>,
}

/// What an operation does to the state (slots of values).
#[derive(Debug, Clone)]
enum Step {
    /// Writes these slots.
    Write(Vec<(usize, u32)>),
    /// Reads: the state must hold these.
    Expect(Vec<(usize, u32)>),
}

impl Step {
    fn apply(&self, state: &[u32]) -> Option<Vec<u32>> {
        match self {
            Step::Write(w) => {
                let mut next = state.to_vec();
                for &(s, v) in w {
                    next[s] = v;
                }
                Some(next)
            }
            Step::Expect(w) => w
                .iter()
                .all(|&(s, v)| state[s] == v)
                .then(|| state.to_vec()),
        }
    }
}

/// A configuration already visited: the operations taken effect (those
/// required ones before `prefix` in invocation order, those in `ahead`, and
/// the optional ones in `optional`) and the state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Visited {
    prefix: u32,
    ahead: Box<[u32]>,
    optional: Box<[u64]>,
    state: Box<[u32]>,
}

enum Ended {
    Linearizable,
    Stuck,
    Exceeded,
}

/// The deepest point a failed search reached.
struct Deepest {
    /// Required operations placed.
    placed: usize,
    /// The operation whose completion could not be passed.
    stuck: usize,
    state: Vec<u32>,
    /// The last placed writer of each slot.
    writers: HashMap<usize, usize>,
    /// Operations invoked and not yet placed there.
    concurrent: Vec<usize>,
}

const NONE: usize = usize::MAX;

/// The search: events (invocations and completions, by time) in a doubly
/// linked list, from which placed operations are lifted (and put back when
/// the search backtracks).
struct Search<'a> {
    ops: &'a [Prepared],
    /// Event `e` belongs to operation `event_op[e]`; even events of the list
    /// are not special: `is_call[e]` tells.
    event_op: Vec<usize>,
    is_call: Vec<bool>,
    /// The completion event of each operation's invocation event.
    partner: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// `rank[op]`: its place among required (or among optional) operations
    /// in invocation order.
    rank: Vec<u32>,
    required: Vec<bool>,
    placed_required: Vec<bool>,
    prefix: u32,
    ahead: BTreeSet<u32>,
    optional: Vec<u64>,
    required_left: usize,
    state: Vec<u32>,
    visited: HashSet<Visited>,
    configurations: u64,
    deepest: Option<Deepest>,
    /// Unplaced reads by what they expect, (slot, value) -> (completion,
    /// operation).
    readers: HashMap<(usize, u32), BTreeSet<(u64, usize)>>,
    /// Unplaced writes by what they write, (slot, value) -> (invocation,
    /// operation).
    writers: HashMap<(usize, u32), BTreeSet<(u64, usize)>>,
    /// Whether to prune writes that doom a read (see `dooms_a_read`).
    prune: bool,
}

/// The head of the event list.
const HEAD: usize = 0;

/// One configuration on the search's path: its candidates, the next one
/// to try, and the one placed to go deeper (with the state before it).
struct Frame {
    candidates: Vec<usize>,
    first_optional: usize,
    next: usize,
    placed: Option<(usize, Vec<u32>)>,
}

impl Frame {
    fn new((candidates, first_optional): (Vec<usize>, usize)) -> Frame {
        Frame {
            candidates,
            first_optional,
            next: 0,
            placed: None,
        }
    }
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Prepared], init: Vec<u32>, prune: bool) -> Search<'a> {
        // Events 1..: (time, completion after invocation at a tie, op).
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, p) in ops.iter().enumerate() {
            events.push((p.invoke, false, i));
            events.push((p.complete.unwrap_or(u64::MAX), true, i));
        }
        events.sort_unstable();
        let count = events.len() + 1;
        let mut event_op = vec![NONE; count];
        let mut is_call = vec![false; count];
        let mut partner = vec![NONE; count];
        let mut call_of = vec![NONE; ops.len()];
        for (e, &(_, done, op)) in events.iter().enumerate() {
            let e = e + 1;
            event_op[e] = op;
            is_call[e] = !done;
            if done {
                partner[call_of[op]] = e;
            } else {
                call_of[op] = e;
            }
        }
        let next = (0..count)
            .map(|e| if e + 1 < count { e + 1 } else { NONE })
            .collect();
        let prev = (0..count)
            .map(|e| if e == 0 { NONE } else { e - 1 })
            .collect();
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| ops[i].invoke);
        let required: Vec<bool> = ops.iter().map(|p| p.complete.is_some()).collect();
        let mut rank = vec![0; ops.len()];
        let (mut r, mut o) = (0, 0);
        for &i in &order {
            if required[i] {
                rank[i] = r;
                r += 1;
            } else {
                rank[i] = o;
                o += 1;
            }
        }
        let mut search = Search {
            ops,
            event_op,
            is_call,
            partner,
            next,
            prev,
            rank,
            required_left: r as usize,
            placed_required: vec![false; r as usize],
            required,
            prefix: 0,
            ahead: BTreeSet::new(),
            optional: vec![0; (o as usize).div_ceil(64)],
            state: init,
            visited: HashSet::new(),
            configurations: 0,
            deepest: None,
            readers: HashMap::new(),
            writers: HashMap::new(),
            prune,
        };
        for op in 0..ops.len() {
            search.index(op, true);
        }
        search
    }

    /// Adds operation `op` to (or takes it from) the indexes of unplaced
    /// reads and writes.
    fn index(&mut self, op: usize, unplaced: bool) {
        let p = &self.ops[op];
        let (index, pairs, at) = match &p.step {
            Step::Expect(want) => (&mut self.readers, want, p.complete.unwrap_or(u64::MAX)),
            Step::Write(w) => (&mut self.writers, w, p.invoke),
        };
        for &pair in pairs {
            let set = index.entry(pair).or_default();
            if unplaced {
                set.insert((at, op));
            } else {
                set.remove(&(at, op));
            }
        }
    }

    /// Whether write `op` would give a slot a value that an unplaced read
    /// expects there. An optional write that would not is never placed:
    /// whatever succeeds after placing it succeeds without it too (every
    /// slot it changes holds a value no read checks, so the reads after
    /// it see those slots only once later writes have overwritten them,
    /// and nothing has to follow an optional write).
    fn read_needs(&self, op: usize) -> bool {
        let Step::Write(w) = &self.ops[op].step else {
            return false;
        };
        w.iter().any(|&(slot, value)| {
            self.state[slot] != value
                && self
                    .readers
                    .get(&(slot, value))
                    .is_some_and(|r| !r.is_empty())
        })
    }

    /// Whether one of the other `candidates` touches what optional write `op`
    /// writes: a read that checks some of its slots and expects its values
    /// in all of them, or a write of one of them. An optional write is
    /// placed only right before such an operation: in any order that
    /// succeeds with it placed now, it commutes with everything up to the
    /// first operation that touches its slots (that operation is then a
    /// candidate, and one of these), or, if none does, it can be left out.
    fn touched_next(&self, op: usize, candidates: &[usize]) -> bool {
        let Step::Write(mine) = &self.ops[op].step else {
            return false;
        };
        candidates.iter().any(|&e| {
            let other = self.event_op[e];
            if other == op {
                return false;
            }
            match &self.ops[other].step {
                Step::Write(w) => w.iter().any(|(s, _)| mine.iter().any(|(m, _)| m == s)),
                Step::Expect(want) => {
                    let mut checked = false;
                    for (s, v) in want {
                        if let Some((_, mv)) = mine.iter().find(|(m, _)| m == s) {
                            if mv != v {
                                return false;
                            }
                            checked = true;
                        }
                    }
                    checked
                }
            }
        })
    }

    /// Whether placing write `op` now dooms an unplaced read: one that
    /// expects a value `op` overwrites, and that no unplaced write invoked
    /// before the read completed can bring back. (Pruning such a branch
    /// changes no verdict, and saves discovering the dead read only at its
    /// completion, after every order of what lies between.)
    fn dooms_a_read(&self, op: usize) -> bool {
        let Step::Write(w) = &self.ops[op].step else {
            return false;
        };
        w.iter().any(|&(slot, value)| {
            let old = self.state[slot];
            if old == value {
                return false;
            }
            let Some(&(read_done, _)) = self.readers.get(&(slot, old)).and_then(|r| r.first())
            else {
                return false;
            };
            self.writers
                .get(&(slot, old))
                .and_then(|w| w.first())
                .is_none_or(|&(invoked, _)| invoked >= read_done)
        })
    }

    fn lift(&mut self, call: usize) {
        let done = self.partner[call];
        for e in [call, done] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = n;
            if n != NONE {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let done = self.partner[call];
        for e in [done, call] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = e;
            if n != NONE {
                self.prev[n] = e;
            }
        }
    }

    fn mark(&mut self, op: usize) {
        self.index(op, false);
        let r = self.rank[op];
        if !self.required[op] {
            self.optional[r as usize / 64] |= 1 << (r % 64);
            return;
        }
        self.placed_required[r as usize] = true;
        self.required_left -= 1;
        if r == self.prefix {
            while (self.prefix as usize) < self.placed_required.len()
                && self.placed_required[self.prefix as usize]
            {
                self.ahead.remove(&self.prefix);
                self.prefix += 1;
            }
        } else {
            self.ahead.insert(r);
        }
    }

    fn unmark(&mut self, op: usize) {
        self.index(op, true);
        let r = self.rank[op];
        if !self.required[op] {
            self.optional[r as usize / 64] &= !(1 << (r % 64));
            return;
        }
        self.placed_required[r as usize] = false;
        self.required_left += 1;
        if r < self.prefix {
            for j in r + 1..self.prefix {
                self.ahead.insert(j);
            }
            self.prefix = r;
        } else {
            self.ahead.remove(&r);
        }
    }

    fn visited_key(&self, state: &[u32]) -> Visited {
        Visited {
            prefix: self.prefix,
            ahead: self.ahead.iter().copied().collect(),
            optional: self.optional.clone().into_boxed_slice(),
            state: state.into(),
        }
    }

    /// The operations that may take effect next: those invoked before the
    /// first completion still in the list. Required ones come first, by
    /// hint, then the one that must complete soonest first (an operation that completes
    /// late is placed late, right before a result needs it, instead of
    /// being tried at every point of its long interval); then the optional
    /// ones (unknown writes), tried only once every required choice here
    /// failed.
    fn candidates(&self) -> (Vec<usize>, usize) {
        let mut required = Vec::new();
        let mut optional = Vec::new();
        let mut e = self.next[HEAD];
        while e != NONE && self.is_call[e] {
            let op = self.event_op[e];
            if self.required[op] {
                required.push(e);
            } else {
                optional.push(e);
            }
            e = self.next[e];
        }
        required.sort_by_key(|&e| {
            let p = &self.ops[self.event_op[e]];
            (p.hint.unwrap_or(u64::MAX), p.complete)
        });
        let first_optional = required.len();
        required.extend(optional);
        (required, first_optional)
    }

    /// The search proper: depth first over the candidates of each
    /// configuration. An optional write is placed only where a read needs
    /// it (see `read_needs`), a write never where it dooms a read (see
    /// `dooms_a_read`).
    fn run(&mut self, configurations_max: u64) -> Ended {
        let mut frames = vec![Frame::new(self.candidates())];
        loop {
            if self.required_left == 0 {
                return Ended::Linearizable;
            }
            let top = frames.len() - 1;
            let frame = &mut frames[top];
            let Some(&call) = frame.candidates.get(frame.next) else {
                // Every choice here failed: back to the configuration before.
                let first_done = self.first_completion();
                self.note_stuck(first_done, &frames);
                frames.pop();
                let Some(parent) = frames.last_mut() else {
                    return Ended::Stuck;
                };
                let (placed, before) = parent.placed.take().expect("a placement led here");
                self.unmark(self.event_op[placed]);
                self.state = before;
                self.unlift(placed);
                continue;
            };
            let optional = frame.next >= frame.first_optional;
            frame.next += 1;
            let op = self.event_op[call];
            if optional && !(self.read_needs(op) && self.touched_next(op, &frames[top].candidates))
            {
                continue;
            }
            let Some(next) = self.ops[op].step.apply(&self.state) else {
                continue;
            };
            if self.prune && self.dooms_a_read(op) {
                continue;
            }
            self.mark(op);
            if !self.visited.insert(self.visited_key(&next)) {
                self.unmark(op);
                continue;
            }
            self.configurations += 1;
            if self.configurations > configurations_max {
                return Ended::Exceeded;
            }
            let before = std::mem::replace(&mut self.state, next);
            frames[top].placed = Some((call, before));
            self.lift(call);
            frames.push(Frame::new(self.candidates()));
        }
    }

    /// The first completion event still in the list.
    fn first_completion(&self) -> usize {
        let mut e = self.next[HEAD];
        while e != NONE && self.is_call[e] {
            e = self.next[e];
        }
        e
    }

    /// Keeps the deepest point of the search for the explanation.
    fn note_stuck(&mut self, done: usize, frames: &[Frame]) {
        let placed = self.placed_required.len() - self.required_left;
        if self.deepest.as_ref().is_some_and(|d| d.placed >= placed) {
            return;
        }
        let mut writers = HashMap::new();
        for (call, _) in frames.iter().rev().filter_map(|f| f.placed.as_ref()) {
            let op = self.event_op[*call];
            if let Step::Write(w) = &self.ops[op].step {
                for &(s, _) in w {
                    writers.entry(s).or_insert(op);
                }
            }
            if writers.len() >= self.state.len() {
                break;
            }
        }
        let mut concurrent = Vec::new();
        let mut e = self.next[HEAD];
        while e != NONE && self.is_call[e] && concurrent.len() < 16 {
            concurrent.push(self.event_op[e]);
            e = self.next[e];
        }
        self.deepest = Some(Deepest {
            placed,
            stuck: self.event_op[done],
            state: self.state.clone(),
            writers,
            concurrent,
        });
    }
}
