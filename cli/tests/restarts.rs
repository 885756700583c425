//! Restarts as users cause them with the README's own commands: the
//! founder of a cluster killed and started again with the command that
//! founded it (no `--join`, no data directory), and a member killed and
//! restarted while clients keep writing. Real processes on 127.0.0.1; every
//! child is killed when its guard drops; every wait is bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::Value;

#[path = "support/process.rs"]
mod process;

use process::{addr, cli, free_port, run_node, status, wait_until, Proc, SETTLE};

fn log_path(name: &str, port: u16) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("restart-logs");
    std::fs::create_dir_all(&dir).expect("create the log directory");
    dir.join(format!("{name}-{port}.log"))
}

fn start(name: &str, port: u16, join: &[u16]) -> Proc {
    run_node(port, join, &[], log_path(name, port))
}

/// `put` through `port`; whether it was acknowledged.
fn put(port: u16, key: &str, value: &str) -> bool {
    cli(&[
        "put",
        "--node",
        &addr(port),
        "--timeout-ms",
        "3000",
        key,
        value,
    ])
    .ok()
}

fn map_of(port: u16) -> Option<BTreeMap<String, String>> {
    let run = cli(&[
        "get",
        "--node",
        &addr(port),
        "--json",
        "--timeout-ms",
        "2000",
    ]);
    serde_json::from_value(run.json()?).ok()
}

/// Waits until every node is a member of one cluster of `ports.len()`
/// voters with one agreed leader and generation, all at one version with
/// one map; returns that map.
fn one_cluster(ports: &[u16]) -> BTreeMap<String, String> {
    wait_until(
        &format!("one cluster, one map, one version on {ports:?}"),
        SETTLE,
        || {
            let statuses: Vec<Value> = ports.iter().map(|p| status(*p)).collect::<Option<_>>()?;
            let first = &statuses[0];
            let agreed = statuses.iter().all(|s| {
                !s["leader"].is_null()
                    && s["leader"] == first["leader"]
                    && s["generation"] == first["generation"]
                    && s["version"] == first["version"]
                    && s["member_details"].as_array().is_some_and(|m| {
                        m.len() == ports.len() && m.iter().all(|m| m["voter"] == true)
                    })
            });
            if !agreed {
                return None;
            }
            let maps: Vec<_> = ports.iter().map(|p| map_of(*p)).collect::<Option<_>>()?;
            let version_after: Vec<Value> =
                ports.iter().map(|p| status(*p)).collect::<Option<_>>()?;
            // Nothing committed while the maps were read: they are the
            // maps at that one version.
            let still = version_after
                .iter()
                .all(|s| s["version"] == first["version"]);
            (still && maps.iter().all(|m| *m == maps[0])).then(|| maps[0].clone())
        },
    )
}

/// The sequence that once split a cluster in two: the founder, killed,
/// started again with its own command, took writes alone and kept a map
/// the others never had. Now it rejoins its cluster; every acknowledged
/// write is everywhere, and there is one map at one version.
#[test]
fn the_founder_restarted_with_its_own_command_rejoins_its_cluster() {
    let ports = [free_port(), free_port(), free_port()];
    let mut a = start("founder", ports[0], &[]);
    let _b = start("founder", ports[1], &[ports[0]]);
    let _c = start("founder", ports[2], &[ports[0]]);
    one_cluster(&ports);
    let mut acked = BTreeMap::new();
    for key in ["x", "y"] {
        assert!(put(ports[1], key, "1"), "put {key} through a follower");
        acked.insert(key.to_string(), "1".to_string());
    }
    let generation = status(ports[1]).expect("status")["generation"].clone();
    let old_id = status(ports[0]).expect("status")["member_id"].clone();

    a.signal("KILL");
    a.wait_exit(SETTLE);
    drop(a);
    let _a = start("founder-again", ports[0], &[]);
    for (key, value) in [("z", "founder-only"), ("w", "founder-only2")] {
        if put(ports[0], key, value) {
            acked.insert(key.to_string(), value.to_string());
        }
    }

    let map = one_cluster(&ports);
    for (key, value) in &acked {
        assert_eq!(
            map.get(key),
            Some(value),
            "acknowledged {key} lost: {map:?}"
        );
    }
    let s = status(ports[0]).expect("status");
    assert_eq!(
        s["generation"], generation,
        "the founder is in another history"
    );
    assert!(
        s["member_details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["member_id"] != old_id),
        "the old incarnation of the founder is still a member: {s}"
    );
}

/// A member killed and restarted (its own command) while clients write a
/// few hundred times a second becomes a voter again while the writes go
/// on; its dead incarnation is replaced in the same change.
#[test]
fn a_member_restarted_under_a_write_load_is_a_voter_again_while_writes_go_on() {
    let ports = [free_port(), free_port(), free_port()];
    let _a = start("loaded", ports[0], &[]);
    let _b = start("loaded", ports[1], &[ports[0]]);
    let mut c = start("loaded", ports[2], &[ports[0]]);
    one_cluster(&ports);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let writes = Arc::new(Mutex::new(0u64));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, acked, writes) = (stop.clone(), acked.clone(), writes.clone());
            let via = [ports[0], ports[1]][w % 2];
            thread::spawn(move || {
                // Bounded: the test stops the writers long before this.
                for n in 0..20_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("w{w}-{n}");
                    if put(via, &key, "v") {
                        acked.lock().unwrap().insert(key, "v".to_string());
                    }
                    *writes.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    wait_until("writes under way", SETTLE, || {
        (*writes.lock().unwrap() >= 40).then_some(())
    });

    let old_id = status(ports[2]).expect("status")["member_id"].clone();
    c.signal("KILL");
    c.wait_exit(SETTLE);
    drop(c);
    let _c = start("loaded-again", ports[2], &[ports[0]]);
    let before = *writes.lock().unwrap();
    wait_until("the restarted member to vote again", SETTLE, || {
        let s = status(ports[0])?;
        let members = s["member_details"].as_array()?;
        let back = members
            .iter()
            .any(|m| m["addr"] == addr(ports[2]) && m["voter"] == true && m["member_id"] != old_id);
        (back && members.len() == 3).then_some(())
    });
    let during = *writes.lock().unwrap() - before;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    assert!(during > 0, "no write went on while the member came back");

    let map = one_cluster(&ports);
    for (key, value) in acked.lock().unwrap().iter() {
        assert_eq!(map.get(key), Some(value), "acknowledged {key} lost");
    }
}
