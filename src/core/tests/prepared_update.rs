//! Updates whose difference was computed outside the core, against the
//! committed map of an earlier version: the keys changed since are
//! compared again, so the map ends exactly as the update asked.

use super::*;

fn lone_leader(tail_entries: usize) -> (Core, Millis) {
    let mut cfg = config(0, vec![]);
    cfg.log_tail_entries_max = tail_entries;
    let founded = cfg.found_listen_ms();
    let mut core = Core::new(cfg, 1, 0).unwrap();
    core.handle_timeout(founded);
    assert_eq!(core.role(), Role::Leader);
    (core, founded)
}

fn map(pairs: &[(&str, &str)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Prepares `target` against the committed map, then commits `since`
/// before the core gets it; the map must end as `target`.
fn update_after_changes(tail_entries: usize) {
    let (mut core, now) = lone_leader(tail_entries);
    let start = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
    core.handle_command(now, 1, Command::Update { map: start });
    let target = map(&[("a", "1"), ("b", "20"), ("d", "4")]);
    let prepared = PreparedUpdate::new(core.commit(), core.map(), target.clone());
    // Committed after the base: a key the target keeps as it was, one it
    // removes, one it sets, and one it never had.
    let since = [
        Command::Set {
            key: "a".into(),
            value: "changed".into(),
        },
        Command::Set {
            key: "c".into(),
            value: "changed".into(),
        },
        Command::Remove { key: "d".into() },
        Command::Set {
            key: "e".into(),
            value: "new".into(),
        },
    ];
    for (request, command) in (2..).zip(since) {
        core.handle_command(now, request, command);
    }
    let given_back = core.handle_prepared_update(now, 9, prepared, None);
    assert_eq!(given_back, target);
    assert_eq!(core.map(), &target);
}

#[test]
fn a_prepared_update_compares_again_the_keys_changed_since_its_base() {
    update_after_changes(16_384);
}

#[test]
fn a_prepared_update_whose_base_left_the_log_is_compared_whole() {
    update_after_changes(1);
}

#[test]
fn a_prepared_session_update_applies_once() {
    let (mut core, now) = lone_leader(16_384);
    core.handle_command(now, 1, Command::OpenSession { id: 5 });
    let tag = WriteTag {
        session: 5,
        seq: 1,
        floor: 1,
    };
    let target = map(&[("x", "1")]);
    for request in [2, 3] {
        let prepared = PreparedUpdate::new(core.commit(), core.map(), target.clone());
        core.handle_prepared_update(now, request, prepared, Some(tag));
    }
    assert_eq!(core.map(), &target);
    let done: Vec<_> = std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            Event::Done { request, result } if request > 1 => Some(result),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0], done[1], "the resend answers the first version");
}
