//! Large committed changes applied a slice at a time: the committed state
//! is the state before the change or after it, never between, and what
//! committed after it is applied, reported and answered after it.

use super::*;

/// Pairs per slice in these tests: a change of ten pairs takes four.
const SLICE_PAIRS: usize = 3;

/// A lone voter, founded and leading, that applies in slices of
/// [`SLICE_PAIRS`]; and the time it founded at.
fn lone_leader() -> (Core, Millis) {
    let mut cfg = config(0, vec![]);
    cfg.apply_slice_pairs_max = SLICE_PAIRS;
    let founded = cfg.found_listen_ms();
    let mut core = Core::new(cfg, 1, 0).unwrap();
    core.handle_timeout(founded);
    assert_eq!(core.role(), Role::Leader);
    drain_events(&mut core);
    (core, founded)
}

fn drain_events(core: &mut Core) -> Vec<Event> {
    while core.poll_transmit().is_some() {}
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn big_map(keys: usize, round: usize) -> Map {
    (0..keys)
        .map(|i| (format!("k{i:02}"), format!("v{round}-{i}")))
        .collect()
}

/// The digest of `map` as a state built from nothing has it.
fn digest_of(map: &Map) -> u64 {
    let mut state = State::default();
    state.apply(
        1,
        &Change::Replace {
            set: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            remove: vec![],
        },
    );
    state.digest
}

fn applied_versions(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Applied { version, .. } => Some(*version),
            _ => None,
        })
        .collect()
}

fn answers(events: &[Event]) -> Vec<(RequestId, Result<u64, RequestError>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Done { request, result } => Some((*request, result.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_large_change_is_applied_in_slices_and_the_state_is_before_or_after_it() {
    let (mut core, now) = lone_leader();
    let before = core.commit();
    let target = big_map(10, 1);
    core.handle_command(
        now,
        1,
        Command::Update {
            map: target.clone(),
        },
    );
    // Committed (a lone voter) but not applied: the state is still the
    // one before, and the next slice is due at once.
    assert!(core.applying());
    assert_eq!(core.commit(), before);
    assert!(core.map().is_empty());
    assert_eq!(core.poll_timeout(), Some(now));
    // A set proposed meanwhile commits behind it.
    let set = Command::Set {
        key: "k00".into(),
        value: "after".into(),
    };
    core.handle_command(now, 2, set);
    let events = drain_events(&mut core);
    assert!(applied_versions(&events).is_empty());
    assert!(answers(&events).is_empty());
    let mut slices = 1;
    while core.applying() {
        assert!(slices < 10, "every slice applies some pairs");
        core.handle_timeout(now);
        slices += 1;
        if core.applying() {
            assert!(core.map().is_empty(), "no part of the change shows");
        }
    }
    assert_eq!(slices, 10_usize.div_ceil(SLICE_PAIRS));
    let mut expected = target;
    expected.insert("k00".into(), "after".into());
    assert_eq!(core.map(), &expected);
    assert_eq!(core.digest(), digest_of(&expected));
    let events = drain_events(&mut core);
    assert_eq!(applied_versions(&events), [before + 1, before + 2]);
    assert_eq!(answers(&events), [(1, Ok(before + 1)), (2, Ok(before + 2))]);
    assert_ne!(core.poll_timeout(), Some(now), "nothing left to apply");
}

#[test]
fn a_linearizable_read_during_a_large_change_is_answered_with_the_state_before_it() {
    let (mut core, now) = lone_leader();
    let before = core.commit();
    core.handle_command(
        now,
        1,
        Command::Update {
            map: big_map(10, 1),
        },
    );
    core.handle_command(now, 2, Command::ReadLinearizable);
    let events = drain_events(&mut core);
    // Confirmed at the applied version: the change is not answered yet,
    // so a read that misses it is still linearizable.
    assert_eq!(answers(&events), [(2, Ok(before))]);
    assert!(core.map().is_empty());
}

#[test]
fn a_resent_large_session_write_applies_once_and_answers_its_first_version() {
    let (mut core, now) = lone_leader();
    core.handle_command(now, 1, Command::OpenSession { id: 9 });
    let opened = core.commit();
    drain_events(&mut core);
    let tag = WriteTag {
        session: 9,
        seq: 1,
        floor: 1,
    };
    let target = big_map(10, 2);
    // The second copy enters the log before the first is applied: it is
    // decided when its turn comes, as a duplicate, and applies as nothing.
    for request in [2, 3] {
        let map = target.clone();
        core.handle_session_write(now, request, Command::Update { map }, tag);
    }
    let mut turns = 0;
    while core.applying() {
        assert!(turns < 10);
        core.handle_timeout(now);
        turns += 1;
    }
    assert_eq!(core.map(), &target);
    assert_eq!(core.digest(), digest_of(&target));
    let events = drain_events(&mut core);
    assert_eq!(applied_versions(&events), [opened + 1, opened + 2]);
    assert_eq!(answers(&events), [(2, Ok(opened + 1)), (3, Ok(opened + 1))]);
}

#[test]
fn a_small_change_is_applied_at_once() {
    let (mut core, now) = lone_leader();
    let before = core.commit();
    let target = big_map(SLICE_PAIRS, 1);
    core.handle_command(
        now,
        1,
        Command::Update {
            map: target.clone(),
        },
    );
    assert!(!core.applying());
    assert_eq!(core.commit(), before + 1);
    assert_eq!(core.map(), &target);
}
