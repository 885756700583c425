//! Cluster keys with real processes: `simple-raft run` nodes on 127.0.0.1
//! and the client commands, each a process of its own. A node with the
//! wrong key cannot join, vote or write, and its datagrams change nothing;
//! a key rotates across a running cluster, by SIGHUP, under a stream of
//! writes that never fails. Every child is killed when its guard drops;
//! every wait is a bounded poll.
#![cfg(unix)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

#[path = "support/process.rs"]
mod process;

use process::{addr, cli, free_port, run_node, status_with, wait_until, Proc, Run, SETTLE};
use simple_raft::wire::{
    Append, Change, Entry, Frame, Heartbeat, Keyring, LogId, Message, NodeId, VoteRequest,
};

const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const WRONG: &str = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";
const NEW: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-keys");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir.join(name)
}

/// Writes a key file whole (through a rename, so a process reading it
/// never sees half of it).
fn write_keys(path: &Path, entries: &[&str]) {
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("# test keys\n{text}")).expect("write a key file");
    std::fs::rename(&tmp, path).expect("rename the key file");
}

/// Starts `run` on `port` with the keys of `key_file`, joining through
/// `join`; logs to a file that a failing test names.
fn start_node(name: &str, port: u16, join: &[u16], key_file: &Path) -> Proc {
    let key_file = key_file.to_str().expect("a UTF-8 path");
    let log = scratch(&format!("{name}-{port}.log"));
    run_node(port, join, &["--cluster-key-file", key_file], log)
}

fn status(port: u16, key_file: &Path) -> Option<Value> {
    status_with(port, &["--cluster-key-file", key_file.to_str()?])
}

fn put(port: u16, key_file: &Path, key: &str, value: &str) -> Run {
    cli(&[
        "put",
        "--node",
        &addr(port),
        "--timeout-ms",
        "5000",
        "--cluster-key-file",
        key_file.to_str().unwrap(),
        key,
        value,
    ])
}

fn get(port: u16, key_file: &Path, key: &str) -> Option<String> {
    let run = cli(&[
        "get",
        "--node",
        &addr(port),
        "--json",
        "--timeout-ms",
        "2000",
        "--cluster-key-file",
        key_file.to_str().unwrap(),
        key,
    ]);
    Some(run.json()?["value"].as_str()?.to_string())
}

/// Waits until every node of `ports` answers (with `key_file`), all see
/// `size` voters and one leader that all agree on; returns its port.
fn wait_for_one_leader(ports: &[u16], size: usize, key_file: &Path) -> u16 {
    wait_until(
        &format!("one leader of {size} on {ports:?}"),
        SETTLE,
        || {
            let statuses: Vec<Value> = ports
                .iter()
                .map(|p| status(*p, key_file))
                .collect::<Option<_>>()?;
            let leaders: Vec<&Value> = statuses.iter().filter(|s| s["state"] == "leader").collect();
            let [leader] = leaders[..] else {
                return None;
            };
            let leader_addr = leader["id"].as_str()?;
            let agreed = statuses.iter().all(|s| {
                s["leader"] == leader_addr
                    && s["member_details"]
                        .as_array()
                        .is_some_and(|m| m.len() == size && m.iter().all(|m| m["voter"] == true))
            });
            agreed.then(|| leader_addr.rsplit(':').next()?.parse().ok())?
        },
    )
}

/// A frame as a process with `key` (hex; `None`: no key) would send it.
fn datagram(
    key: Option<&str>,
    generation: u64,
    sender: u32,
    term: u64,
    message: Message,
) -> Vec<u8> {
    let keys = key.map(|k| Keyring::parse(k).expect("a key"));
    let mut out = bytes::BytesMut::new();
    Frame::new(0, NodeId(sender), term, message)
        .with_generation(Some(generation))
        .encode_signed(&mut out, 1200, keys.as_ref())
        .expect("encodes");
    out.to_vec()
}

/// A hand-over's vote request one term up (the one frame of a later term a
/// follower of a live leader takes), an append at a much higher term that
/// sets `evil`, a vote request and a heartbeat claiming leadership: what a
/// node that wants the cluster would send.
fn takeover(
    key: Option<&str>,
    generation: u64,
    sender: u32,
    term: u64,
    version: u64,
) -> Vec<Vec<u8>> {
    let last = LogId { term, version };
    let high = term + 100;
    vec![
        datagram(
            key,
            generation,
            sender,
            term + 1,
            Message::VoteRequest(VoteRequest {
                last: LogId {
                    term,
                    version: version + 10,
                },
                transfer: true,
            }),
        ),
        datagram(
            key,
            generation,
            sender,
            high,
            Message::Append(Append {
                prev: last,
                commit: version + 1,
                seq: 1,
                entries: vec![Entry {
                    term: high,
                    change: Change::Set {
                        key: "evil".into(),
                        value: "yes".into(),
                    },
                }],
            }),
        ),
        datagram(
            key,
            generation,
            sender,
            high + 1,
            Message::VoteRequest(VoteRequest {
                last: LogId {
                    term: high + 1,
                    version: version + 10,
                },
                transfer: true,
            }),
        ),
        datagram(
            key,
            generation,
            sender,
            high + 2,
            Message::Heartbeat(Heartbeat {
                last,
                commit: version,
                seq: 1,
            }),
        ),
    ]
}

fn send_datagrams(frames: &[Vec<u8>], ports: &[u16]) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    for frame in frames {
        for port in ports {
            let to: SocketAddr = addr(*port).parse().unwrap();
            socket.send_to(frame, to).expect("send a datagram");
        }
    }
}

#[test]
fn key_files_that_cannot_be_used_are_usage_errors() {
    let bad = scratch("malformed.key");
    std::fs::write(&bad, format!("{KEY}\nnot-a-key-at-all\n")).unwrap();
    let missing = scratch("missing.key");
    let _ = std::fs::remove_file(&missing);
    for file in [&bad, &missing] {
        let file = file.to_str().unwrap();
        for args in [
            vec!["run", "--listen", "127.0.0.1:0", "--cluster-key-file", file],
            vec![
                "status",
                "--node",
                "127.0.0.1:1",
                "--cluster-key-file",
                file,
            ],
            vec![
                "put",
                "--node",
                "127.0.0.1:1",
                "--cluster-key-file",
                file,
                "k",
                "v",
            ],
        ] {
            let run = cli(&args);
            assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
            assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
            assert!(run.stderr.contains("--cluster-key-file"), "{run:?}");
        }
    }
    let run = cli(&[
        "status",
        "--node",
        "127.0.0.1:1",
        "--cluster-key-file",
        bad.to_str().unwrap(),
    ]);
    assert!(run.stderr.contains("line 2"), "{run:?}");
    assert!(!run.stderr.contains("not-a-key"), "{run:?}");
}

#[test]
fn a_node_with_the_wrong_key_cannot_join_vote_or_write() {
    let key = scratch("good.key");
    let wrong = scratch("wrong.key");
    write_keys(&key, &[KEY]);
    write_keys(&wrong, &[WRONG]);
    // Node 2 has a file of its own, to be switched to the wrong key.
    let key2 = scratch("good-2.key");
    write_keys(&key2, &[KEY]);

    let ports = [free_port(), free_port(), free_port()];
    let _a = start_node("wrong-key", ports[0], &[], &key);
    let _b = start_node("wrong-key", ports[1], &[ports[0]], &key);
    let c = start_node("wrong-key", ports[2], &[ports[0]], &key2);
    let leader = wait_for_one_leader(&ports, 3, &key);
    let put_ok = put(leader, &key, "color", "blue");
    assert!(put_ok.ok(), "{put_ok:?}");

    // Join: a fourth node with the wrong key never becomes a member.
    let intruder_port = free_port();
    let _intruder = start_node("wrong-key-intruder", intruder_port, &ports, &wrong);
    thread::sleep(Duration::from_secs(2));
    let intruder = status(intruder_port, &wrong).expect("the intruder answers its own key");
    assert!(intruder["member_id"].is_null(), "{intruder}");
    assert!(intruder["leader"].is_null(), "{intruder}");
    assert_eq!(wait_for_one_leader(&ports, 3, &key), leader);

    // Write: refused with the wrong key or none, through a member or
    // through the intruder; the value stays.
    let wrong_write = put(leader, &wrong, "color", "red");
    assert_eq!(wrong_write.code, Some(1), "{wrong_write:?}");
    assert!(
        wrong_write
            .stderr
            .contains("closed the connection without answering"),
        "{wrong_write:?}"
    );
    let unkeyed = cli(&[
        "put",
        "--node",
        &addr(leader),
        "--timeout-ms",
        "2000",
        "color",
        "red",
    ]);
    assert_eq!(unkeyed.code, Some(1), "{unkeyed:?}");
    let via_intruder = cli(&[
        "put",
        "--node",
        &addr(intruder_port),
        "--timeout-ms",
        "2000",
        "--cluster-key-file",
        wrong.to_str().unwrap(),
        "color",
        "red",
    ]);
    assert_eq!(via_intruder.code, Some(1), "{via_intruder:?}");
    for port in ports {
        wait_until("blue everywhere", SETTLE, || {
            (get(port, &key, "color")? == "blue").then_some(())
        });
    }

    // Vote: a member whose key goes wrong (SIGHUP with the wrong file)
    // hears no leader and stands for election; the others keep their term
    // and leader, and take writes.
    let before = status(leader, &key).expect("status");
    let term = before["term"].as_u64().unwrap();
    let follower = if ports[2] == leader {
        ports[1]
    } else {
        ports[2]
    };
    let outcast = ports[2];
    let reloads = c.logged("cluster keys reloaded");
    write_keys(&key2, &[WRONG]);
    c.signal("HUP");
    wait_until("the outcast to reload its keys", SETTLE, || {
        (c.logged("cluster keys reloaded") > reloads).then_some(())
    });
    let rest: Vec<u16> = ports.iter().copied().filter(|p| *p != outcast).collect();
    let leader = wait_until("a leader without the outcast", SETTLE, || {
        let statuses: Vec<Value> = rest
            .iter()
            .map(|p| status(*p, &key))
            .collect::<Option<_>>()?;
        let leaders: Vec<&Value> = statuses.iter().filter(|s| s["state"] == "leader").collect();
        let [l] = leaders[..] else { return None };
        l["id"].as_str()?.rsplit(':').next()?.parse::<u16>().ok()
    });
    let _ = follower;
    thread::sleep(Duration::from_secs(2));
    let outcast_status = status(outcast, &wrong).expect("the outcast answers its new key");
    assert!(outcast_status["leader"].is_null(), "{outcast_status}");
    for port in &rest {
        let s = status(*port, &key).expect("status");
        assert_eq!(s["term"].as_u64(), Some(term), "term moved on {port}: {s}");
        assert_eq!(s["leader"], addr(leader), "{s}");
    }
    let put_ok = put(rest[0], &key, "size", "large");
    assert!(put_ok.ok(), "{put_ok:?}");

    // Datagrams: frames that would take the cluster over, with the wrong
    // key and with none, change nothing.
    let s = status(leader, &key).expect("status");
    let version = s["version"].as_u64().unwrap();
    let leader_id = s["member_id"].as_u64().unwrap() as u32;
    let generation = u64::from_str_radix(s["generation"].as_str().unwrap(), 16).unwrap();
    let mut frames = takeover(Some(WRONG), generation, leader_id, term, version);
    frames.extend(takeover(None, generation, leader_id, term, version));
    send_datagrams(&frames, &rest);
    thread::sleep(Duration::from_millis(500));
    for port in &rest {
        let s = status(*port, &key).expect("status");
        assert_eq!(s["term"].as_u64(), Some(term), "term moved on {port}: {s}");
        assert_eq!(s["leader"], addr(leader), "{s}");
        assert_eq!(get(*port, &key, "evil"), None);
    }
    // The same hand-over with the cluster's key does move a node's term:
    // the frames above were not harmless by themselves.
    let follower = *rest.iter().find(|p| **p != leader).unwrap();
    send_datagrams(
        &takeover(Some(KEY), generation, leader_id, term, version)[..1],
        &[follower],
    );
    wait_until("the keyed hand-over to take effect", SETTLE, || {
        let s = status(follower, &key)?;
        (s["term"].as_u64()? > term).then_some(())
    });

    // With the right key again, the outcast is back.
    write_keys(&key2, &[KEY]);
    c.signal("HUP");
    wait_for_one_leader(&ports, 3, &key);
    wait_until("the outcast to catch up", SETTLE, || {
        (get(outcast, &key, "size")? == "large").then_some(())
    });
}

#[test]
fn a_key_rotates_across_a_running_cluster_with_no_failed_write() {
    let ports = [free_port(), free_port(), free_port()];
    let files: Vec<PathBuf> = ports
        .iter()
        .map(|p| scratch(&format!("rotate-{p}.key")))
        .collect();
    for file in &files {
        write_keys(file, &[KEY]);
    }
    let client_file = scratch(&format!("rotate-client-{}.key", ports[0]));
    write_keys(&client_file, &[KEY]);
    let nodes = [
        start_node("rotate", ports[0], &[], &files[0]),
        start_node("rotate", ports[1], &[ports[0]], &files[1]),
        start_node("rotate", ports[2], &[ports[0]], &files[2]),
    ];
    wait_for_one_leader(&ports, 3, &client_file);

    // Writes, one process after the other, through each node in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, client_file) = (stop.clone(), client_file.clone());
        thread::spawn(move || {
            let mut done = 0u64;
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let port = ports[done as usize % 3];
                let run = put(port, &client_file, "counter", &done.to_string());
                if run.ok() {
                    done += 1;
                } else {
                    failed.push(run);
                    break;
                }
            }
            (done, failed)
        })
    };

    // The three steps, each on every node and then on the client.
    let steps: [&[&str]; 3] = [&[KEY, NEW], &[NEW, KEY], &[NEW]];
    for entries in steps {
        thread::sleep(Duration::from_millis(700));
        for (node, file) in nodes.iter().zip(&files) {
            let reloads = node.logged("cluster keys reloaded");
            write_keys(file, entries);
            node.signal("HUP");
            wait_until("a node to reload its keys", SETTLE, || {
                (node.logged("cluster keys reloaded") > reloads).then_some(())
            });
        }
        write_keys(&client_file, entries);
    }
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let (done, failed) = writer.join().expect("the writer");
    assert!(failed.is_empty(), "a write failed: {failed:?}");
    eprintln!("{done} writes during the rotation");
    assert!(done >= 10, "only {done} writes");

    // The old key is out, the new one in.
    let old_file = scratch(&format!("rotate-old-{}.key", ports[0]));
    write_keys(&old_file, &[KEY]);
    for port in ports {
        assert!(
            status(port, &old_file).is_none(),
            "{port} still takes the old key"
        );
        wait_until("the last write everywhere", SETTLE, || {
            (get(port, &client_file, "counter")? == (done - 1).to_string()).then_some(())
        });
    }
    for node in &nodes {
        assert_eq!(node.logged("cluster keys reloaded"), 3);
        assert_eq!(node.logged("keys not reloaded"), 0);
    }
}
