//! The linearizability checker on hand-made histories: the ones it must
//! accept (concurrent writes, unknown writes taking effect late or never)
//! and the ones it must refuse (stale reads, resurrected values, lost
//! acknowledged writes, whole-map reads of no single instant), each
//! refused with the key and the operations named.
//!
//! A history is written in real-time order: each `invoke`, `ok`, `read`,
//! `failed` or `unknown` call happens after the one above it.

#[path = "support/linearizability.rs"]
mod linearizability;

use std::collections::BTreeMap;

use linearizability::{Call, History, Limits, OpId, Returned, Violation};

fn set(h: &mut History, client: &str, key: &str, value: &str, at: u64) -> OpId {
    let call = Call::Set {
        key: key.into(),
        value: value.into(),
    };
    h.invoke(client, call, at)
}

fn remove(h: &mut History, client: &str, key: &str, at: u64) -> OpId {
    h.invoke(client, Call::Remove { key: key.into() }, at)
}

fn get(h: &mut History, client: &str, key: &str, at: u64) -> OpId {
    h.invoke(client, Call::Get { key: key.into() }, at)
}

fn got(h: &mut History, id: OpId, at: u64, value: Option<&str>) {
    h.read_ok(id, at, Returned::Value(value.map(String::from)));
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn read_map(h: &mut History, id: OpId, at: u64, pairs: &[(&str, &str)]) {
    h.read_ok(id, at, Returned::Map(map(pairs)));
}

/// Checks that `h` is refused, on `key` (`None`: the whole map), naming at
/// least `ops`.
fn refused(h: &History, key: Option<&str>, ops: &[OpId]) -> Violation {
    let violation = match h.check() {
        Ok(report) => panic!("accepted a history that is not linearizable: {report:?}"),
        Err(v) => v,
    };
    assert_eq!(violation.key.as_deref(), key, "{violation}");
    if let Some(key) = key {
        assert!(
            violation.message.contains(&format!("{key:?}")),
            "{violation}"
        );
    }
    for &op in ops {
        assert!(
            violation.ops.contains(&op) && violation.message.contains(&format!("#{op} ")),
            "operation #{op} is not named: {violation}"
        );
    }
    violation
}

fn accepted(h: &History) -> linearizability::Report {
    match h.check() {
        Ok(report) => {
            assert!(report.exceeded.is_empty(), "{report:?}");
            report
        }
        Err(v) => panic!("refused a linearizable history: {v}"),
    }
}

#[test]
fn concurrent_writes_may_be_read_in_either_order_but_one_order_holds() {
    for (first, later) in [("1", "1"), ("2", "2")] {
        let mut h = History::new("ms");
        let a = set(&mut h, "A", "k", "1", 0);
        let b = set(&mut h, "B", "k", "2", 1);
        let r1 = get(&mut h, "C", "k", 2);
        h.ok(a, 10);
        h.ok(b, 11);
        got(&mut h, r1, 12, Some(first));
        let r2 = get(&mut h, "C", "k", 13);
        got(&mut h, r2, 14, Some(later));
        let report = accepted(&h);
        assert_eq!(report.checked, 4);
        assert_eq!(report.reads, 2);
    }
    // The order is one: once a read after both saw 1, a later one cannot
    // see 2 with no write in between.
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    let b = set(&mut h, "B", "k", "2", 1);
    h.ok(a, 10);
    h.ok(b, 11);
    let r1 = get(&mut h, "C", "k", 12);
    got(&mut h, r1, 13, Some("1"));
    let r2 = get(&mut h, "C", "k", 14);
    got(&mut h, r2, 15, Some("2"));
    refused(&h, Some("k"), &[r2]);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_the_old_or_the_new_value() {
    for seen in [None, Some("1")] {
        let mut h = History::new("ms");
        let w = set(&mut h, "A", "k", "1", 0);
        let r = get(&mut h, "B", "k", 1);
        got(&mut h, r, 5, seen);
        h.ok(w, 10);
        accepted(&h);
    }
}

#[test]
fn an_unknown_write_may_take_effect_after_later_operations() {
    // A's set of 1 timed out; B's set of 2 was acknowledged; a read saw 2,
    // then a later read saw 1: A's write took effect late (a new leader
    // committed it after the read of 2).
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    let b = set(&mut h, "B", "k", "2", 5);
    h.ok(b, 10);
    let r1 = get(&mut h, "C", "k", 20);
    got(&mut h, r1, 30, Some("2"));
    h.unknown(a, 35);
    let r2 = get(&mut h, "C", "k", 40);
    got(&mut h, r2, 50, Some("1"));
    let report = accepted(&h);
    assert_eq!(report.unknown_proved, 1, "{report:?}");
}

#[test]
fn an_unknown_write_may_never_take_effect() {
    let mut h = History::new("ms");
    let w = set(&mut h, "A", "k", "0", 0);
    h.ok(w, 5);
    let a = set(&mut h, "A", "k", "1", 10);
    let b = remove(&mut h, "B", "k", 11);
    h.unknown(a, 100);
    h.unknown(b, 100);
    let r = get(&mut h, "C", "k", 200);
    got(&mut h, r, 210, Some("0"));
    let report = accepted(&h);
    assert_eq!(report.unknown_unobserved, 1, "{report:?}");
    assert_eq!(report.unknown_optional, 1, "{report:?}");
    // Unanswered operations at the end of a history are unknown too.
    let mut h = History::new("ms");
    set(&mut h, "A", "k", "1", 0);
    let r = get(&mut h, "C", "k", 200);
    got(&mut h, r, 210, None);
    accepted(&h);
}

#[test]
fn an_unknown_remove_may_take_effect_late() {
    let mut h = History::new("ms");
    let w = set(&mut h, "A", "k", "1", 0);
    h.ok(w, 5);
    let rm = remove(&mut h, "B", "k", 10);
    h.unknown(rm, 20);
    let r1 = get(&mut h, "C", "k", 30);
    got(&mut h, r1, 31, Some("1"));
    let r2 = get(&mut h, "C", "k", 40);
    got(&mut h, r2, 41, None);
    accepted(&h);
}

#[test]
fn a_stale_read_is_not_linearizable() {
    // The read starts after the set of 2 completed and returns 1.
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    h.ok(a, 10);
    let b = set(&mut h, "B", "k", "2", 20);
    h.ok(b, 30);
    let r = get(&mut h, "C", "k", 40);
    got(&mut h, r, 50, Some("1"));
    let v = refused(&h, Some("k"), &[r, a, b]);
    assert!(v.message.contains("needs \"1\""), "{v}");
}

#[test]
fn a_resurrected_value_is_not_linearizable() {
    // 1 acknowledged, then 2 acknowledged, a read saw 2, and a later read
    // saw 1 again with no write of 1 that could take effect in between.
    let history = |retry: Option<&str>| {
        let mut h = History::new("ms");
        let a = set(&mut h, "A", "k", "1", 0);
        h.ok(a, 10);
        let mut retry_id = None;
        if retry == Some("ok before 2") {
            let x = set(&mut h, "A", "k", "1", 12);
            h.ok(x, 15);
            retry_id = Some(x);
        }
        if retry == Some("failed") || retry == Some("unknown") {
            retry_id = Some(set(&mut h, "A", "k", "1", 15));
        }
        let b = set(&mut h, "B", "k", "2", 20);
        h.ok(b, 30);
        let r1 = get(&mut h, "C", "k", 40);
        got(&mut h, r1, 50, Some("2"));
        let r2 = get(&mut h, "C", "k", 60);
        got(&mut h, r2, 70, Some("1"));
        if retry == Some("after the reads") {
            retry_id = Some(set(&mut h, "A", "k", "1", 80));
        }
        match (retry, retry_id) {
            (Some("failed"), Some(x)) => h.failed(x, 90),
            (Some("unknown" | "after the reads"), Some(x)) => h.unknown(x, 90),
            _ => {}
        }
        (h, [a, b, r1, r2])
    };
    let (h, [_, b, _, r2]) = history(None);
    refused(&h, Some("k"), &[b, r2]);
    // A retry of 1 that failed changed nothing.
    let (h, [_, b, _, r2]) = history(Some("failed"));
    refused(&h, Some("k"), &[b, r2]);
    // One acknowledged before the set of 2 began took effect before it.
    let (h, [_, b, _, r2]) = history(Some("ok before 2"));
    refused(&h, Some("k"), &[b, r2]);
    // One invoked after the read of 1 cannot explain it.
    let (h, [_, b, _, r2]) = history(Some("after the reads"));
    refused(&h, Some("k"), &[b, r2]);
    // But a retry of 1 whose outcome is unknown, invoked before the read of
    // 1 completed, may have taken effect between the two reads (a
    // duplicate of an old write applied late is linearizable: each copy is
    // an operation of its own).
    let (h, _) = history(Some("unknown"));
    accepted(&h);
}

#[test]
fn a_lost_acknowledged_write_is_not_linearizable() {
    // Never seen.
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    h.ok(a, 10);
    let r = get(&mut h, "C", "k", 20);
    got(&mut h, r, 30, None);
    refused(&h, Some("k"), &[a, r]);
    // Seen, then the older value comes back.
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "0", 0);
    h.ok(a, 10);
    let b = set(&mut h, "B", "k", "1", 20);
    h.ok(b, 30);
    let r1 = get(&mut h, "C", "k", 40);
    got(&mut h, r1, 50, Some("1"));
    let r2 = get(&mut h, "C", "k", 60);
    got(&mut h, r2, 70, Some("0"));
    refused(&h, Some("k"), &[b, r2]);
}

#[test]
fn a_failed_write_changes_nothing() {
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    h.failed(a, 10);
    let r = get(&mut h, "C", "k", 20);
    got(&mut h, r, 30, None);
    let report = accepted(&h);
    assert_eq!(report.dropped, 1);
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "k", "1", 0);
    h.failed(a, 10);
    let r = get(&mut h, "C", "k", 20);
    got(&mut h, r, 30, Some("1"));
    let v = refused(&h, Some("k"), &[r]);
    assert!(v.message.contains("written by no operation"), "{v}");
}

#[test]
fn a_value_read_before_its_only_write_was_invoked_is_refused() {
    let mut h = History::new("ms");
    let r = get(&mut h, "C", "k", 0);
    got(&mut h, r, 10, Some("1"));
    let a = set(&mut h, "A", "k", "1", 20);
    h.unknown(a, 30);
    refused(&h, Some("k"), &[r, a]);
}

#[test]
fn a_whole_map_read_sees_one_instant_of_every_key() {
    // a=1 then b=1, one after the other; a read spanning both saw b=1 but
    // not a=1. Each key alone is fine (the read may come before a's set and
    // after b's), the map is not.
    let mut h = History::new("ms");
    let r = h.invoke("C", Call::Read, 0);
    let a = set(&mut h, "A", "a", "1", 1);
    h.ok(a, 10);
    let b = set(&mut h, "B", "b", "1", 20);
    h.ok(b, 30);
    read_map(&mut h, r, 40, &[("b", "1")]);
    let v = refused(&h, None, &[r]);
    assert!(v.message.contains("the whole map"), "{v}");
    // Seeing both, or neither, or only a, is one instant.
    for seen in [&[][..], &[("a", "1")], &[("a", "1"), ("b", "1")]] {
        let mut h = History::new("ms");
        let r = h.invoke("C", Call::Read, 0);
        let a = set(&mut h, "A", "a", "1", 1);
        h.ok(a, 10);
        let b = set(&mut h, "B", "b", "1", 20);
        h.ok(b, 30);
        read_map(&mut h, r, 40, seen);
        let report = accepted(&h);
        assert!(report.whole_map);
    }
}

#[test]
fn an_update_replaces_the_whole_map() {
    // The update of {b: 2} removed a: a read after it that still has a=1
    // is refused on key a.
    let mut h = History::new("ms");
    let a = set(&mut h, "A", "a", "1", 0);
    h.ok(a, 10);
    let u = h.invoke(
        "B",
        Call::Update {
            map: map(&[("b", "2")]),
        },
        20,
    );
    h.ok(u, 30);
    let r = h.invoke("C", Call::Read, 40);
    read_map(&mut h, r, 50, &[("a", "1"), ("b", "2")]);
    refused(&h, Some("a"), &[u, r]);
    // An update concurrent with a set: after both, either order.
    for seen in [[("a", "3"), ("b", "2")], [("a", "1"), ("b", "2")]] {
        let mut h = History::new("ms");
        let u = h.invoke(
            "B",
            Call::Update {
                map: map(&[("a", "1"), ("b", "2")]),
            },
            0,
        );
        let s = set(&mut h, "A", "a", "3", 1);
        h.ok(u, 10);
        h.ok(s, 11);
        let r = h.invoke("C", Call::Read, 20);
        read_map(&mut h, r, 30, &seen);
        accepted(&h);
    }
    // An update with an unknown outcome is seen whole or not at all: a read
    // of its b beside the a from before it is no instant (each key alone
    // is fine: on a, the read may come before the update).
    let mut h = History::new("ms");
    let s = set(&mut h, "A", "a", "0", 0);
    h.ok(s, 5);
    let u = h.invoke(
        "B",
        Call::Update {
            map: map(&[("a", "1"), ("b", "2")]),
        },
        10,
    );
    h.unknown(u, 20);
    let r = h.invoke("C", Call::Read, 30);
    read_map(&mut h, r, 40, &[("a", "0"), ("b", "2")]);
    refused(&h, None, &[r]);
}

#[test]
fn a_search_past_its_bound_is_reported_not_decided() {
    // Many concurrent writes, all unknown, and reads that see them: the
    // search has many orders to try.
    let mut h = History::new("ms");
    let writes: Vec<OpId> = (0..12)
        .map(|i| set(&mut h, "A", "k", &format!("{i}"), i))
        .collect();
    let mut reads = Vec::new();
    for i in 0..12 {
        reads.push(get(&mut h, "C", "k", 20 + i));
    }
    for (i, &r) in reads.iter().enumerate() {
        got(&mut h, r, 40 + i as u64, Some(&format!("{}", (i * 7) % 12)));
    }
    for &w in &writes {
        h.ok(w, 60);
    }
    let tight = Limits {
        configurations_max: 10,
        ..Limits::default()
    };
    let report = h.check_with(tight).expect("a bound is no violation");
    assert_eq!(report.exceeded.len(), 1, "{report:?}");
    assert!(report.exceeded[0].contains("key \"k\""), "{report:?}");
    let few = Limits {
        operations_max: 5,
        ..Limits::default()
    };
    let report = h.check_with(few).expect("a bound is no violation");
    assert!(report.exceeded[0].contains("24 operations"), "{report:?}");
}

/// A small deterministic generator (xorshift), so a failing case replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the reference checker knows of one operation.
#[derive(Debug, Clone)]
struct Plain {
    call: Call,
    invoke: usize,
    complete: Option<usize>,
    /// 0 ok, 1 failed, 2 unknown.
    outcome: u8,
    returned: Option<Returned>,
}

fn apply(state: &mut BTreeMap<String, String>, call: &Call) {
    match call {
        Call::Set { key, value } => {
            state.insert(key.clone(), value.clone());
        }
        Call::Remove { key } => {
            state.remove(key);
        }
        Call::Update { map } => *state = map.clone(),
        Call::Get { .. } | Call::Read => {}
    }
}

fn observe(state: &BTreeMap<String, String>, call: &Call) -> Option<Returned> {
    match call {
        Call::Get { key } => Some(Returned::Value(state.get(key).cloned())),
        Call::Read => Some(Returned::Map(state.clone())),
        _ => None,
    }
}

/// The definition, by brute force: some order of the acknowledged
/// operations and of some of the unknown writes, respecting real time, in
/// which every read returns what the writes before it leave.
fn linearizable_by_brute_force(ops: &[Plain]) -> bool {
    fn place(
        ops: &[&Plain],
        placed: &mut Vec<bool>,
        state: &BTreeMap<String, String>,
        required_left: usize,
    ) -> bool {
        if required_left == 0 {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // Everything that completed before it was invoked goes first.
            let blocked = (0..ops.len()).any(|j| {
                !placed[j] && j != i && ops[j].complete.is_some_and(|c| c < ops[i].invoke)
            });
            if blocked {
                continue;
            }
            if ops[i].returned.is_some() && observe(state, &ops[i].call) != ops[i].returned {
                continue;
            }
            let mut next = state.clone();
            apply(&mut next, &ops[i].call);
            placed[i] = true;
            let left = required_left - usize::from(ops[i].outcome == 0);
            if place(ops, placed, &next, left) {
                return true;
            }
            placed[i] = false;
        }
        false
    }
    let kept: Vec<&Plain> = ops
        .iter()
        .filter(|p| p.outcome == 0 || (p.outcome == 2 && !p.call.is_read()))
        .collect();
    let required = kept.iter().filter(|p| p.outcome == 0).count();
    // An unknown write's completion is no bound: it may come any time after.
    let kept: Vec<Plain> = kept
        .into_iter()
        .map(|p| Plain {
            complete: if p.outcome == 0 { p.complete } else { None },
            ..p.clone()
        })
        .collect();
    let kept: Vec<&Plain> = kept.iter().collect();
    place(
        &kept,
        &mut vec![false; kept.len()],
        &BTreeMap::new(),
        required,
    )
}

trait IsRead {
    fn is_read(&self) -> bool;
}

impl IsRead for Call {
    fn is_read(&self) -> bool {
        matches!(self, Call::Get { .. } | Call::Read)
    }
}

fn random_call(rng: &mut Rng) -> Call {
    let key = |rng: &mut Rng| ["a", "b"][rng.below(2) as usize].to_string();
    let value = |rng: &mut Rng| format!("{}", rng.below(3));
    match rng.below(6) {
        0 | 1 => Call::Set {
            key: key(rng),
            value: value(rng),
        },
        2 => Call::Remove { key: key(rng) },
        3 => {
            let mut map = BTreeMap::new();
            for k in ["a", "b"] {
                if rng.below(2) == 0 {
                    map.insert(k.to_string(), value(rng));
                }
            }
            Call::Update { map }
        }
        4 => Call::Get { key: key(rng) },
        _ => Call::Read,
    }
}

/// A random execution: each operation takes effect at some moment of its
/// interval (an unknown write perhaps later, perhaps never; a failed one
/// never), then, two times in three, one read's result is changed.
fn random_history(rng: &mut Rng, count: usize) -> Vec<Plain> {
    let mut ops: Vec<Plain> = Vec::new();
    let mut state = BTreeMap::new();
    // (op, taken effect, will take effect)
    let mut open: Vec<(usize, bool, bool)> = Vec::new();
    let mut t = 0;
    for _ in 0..200 {
        t += 1;
        match rng.below(3) {
            0 if ops.len() < count => {
                let outcome = [0, 0, 0, 1, 2][rng.below(5) as usize];
                ops.push(Plain {
                    call: random_call(rng),
                    invoke: t,
                    complete: None,
                    outcome,
                    returned: None,
                });
                let effect = outcome == 0 || (outcome == 2 && rng.below(2) == 0);
                open.push((ops.len() - 1, false, effect));
            }
            1 if !open.is_empty() => {
                let k = rng.below(open.len() as u64) as usize;
                let (op, done, effect) = &mut open[k];
                if *effect && !*done {
                    *done = true;
                    apply(&mut state, &ops[*op].call);
                    ops[*op].returned = observe(&state, &ops[*op].call);
                }
            }
            _ if !open.is_empty() => {
                let k = rng.below(open.len() as u64) as usize;
                let (op, done, effect) = open[k];
                let op = &mut ops[op];
                if op.complete.is_none() && (done || op.outcome != 0) {
                    op.complete = Some(t);
                    // An unknown write may still take effect.
                    if !(op.outcome == 2 && effect && !done) {
                        open.remove(k);
                    }
                }
            }
            _ => {}
        }
    }
    // Unanswered at the end: unknown.
    for op in &mut ops {
        if op.complete.is_none() {
            op.outcome = 2;
        }
        if op.outcome != 0 {
            op.returned = None;
        }
    }
    if rng.below(3) != 0 {
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].returned.is_some())
            .collect();
        if !reads.is_empty() {
            let i = reads[rng.below(reads.len() as u64) as usize];
            let mut fake = BTreeMap::new();
            for k in ["a", "b"] {
                if rng.below(2) == 0 {
                    fake.insert(k.to_string(), format!("{}", rng.below(3)));
                }
            }
            ops[i].returned = Some(match &ops[i].call {
                Call::Get { key } => Returned::Value(fake.remove(key)),
                _ => Returned::Map(fake),
            });
        }
    }
    ops
}

/// The history of `ops`, recorded in the order of their events.
fn record(ops: &[Plain]) -> History {
    let mut events: Vec<(usize, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        if let Some(c) = op.complete {
            events.push((c, true, i));
        }
    }
    events.sort_unstable();
    let mut h = History::new("steps");
    let mut ids = vec![0; ops.len()];
    for (t, done, i) in events {
        let op = &ops[i];
        if !done {
            ids[i] = h.invoke(format!("c{i}"), op.call.clone(), t as u64);
            continue;
        }
        match (op.outcome, &op.returned) {
            (0, Some(r)) => h.read_ok(ids[i], t as u64, r.clone()),
            (0, None) => h.ok(ids[i], t as u64),
            (1, _) => h.failed(ids[i], t as u64),
            _ => h.unknown(ids[i], t as u64),
        }
    }
    h
}

#[test]
fn the_checker_agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut yes, mut no) = (0, 0);
    for case in 0..3_000 {
        let count = 2 + case % 6;
        let ops = random_history(&mut rng, count);
        let expected = linearizable_by_brute_force(&ops);
        let mut h = record(&ops);
        if case % 2 == 1 {
            // Hints, even wrong ones, change the speed, never the verdict.
            for id in 0..ops.len() {
                h.hint(id, rng.below(8));
            }
        }
        match h.check() {
            Ok(report) => {
                assert!(report.exceeded.is_empty(), "case {case}: {report:?}");
                assert!(
                    expected,
                    "case {case}: accepted, but no order exists: {ops:#?}"
                );
                yes += 1;
            }
            Err(v) => {
                assert!(
                    !expected,
                    "case {case}: refused, but an order exists: {v}\n{ops:#?}"
                );
                no += 1;
            }
        }
    }
    // Both verdicts are exercised.
    assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
}
