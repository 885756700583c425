//! The `simple-raft` binary as a user runs it: processes on 127.0.0.1,
//! talking over real sockets. Every child process is killed when its guard
//! drops; every wait is a bounded poll on a condition.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

#[path = "support/process.rs"]
mod process;

use process::{addr, cli, free_port, run_node, status, wait_until, Proc, INVOCATION, SETTLE};

fn log_path(name: &str, port: u16) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-logs");
    std::fs::create_dir_all(&dir).expect("create the log directory");
    dir.join(format!("{name}-{port}.log"))
}

/// Starts `run` on `port`, joining through `join`; logs to a file that a
/// failing test names.
fn start_node(name: &str, port: u16, join: &[u16]) -> Proc {
    run_node(port, join, &[], log_path(name, port))
}

fn get_json(port: u16, key: Option<&str>) -> Option<Value> {
    let node = addr(port);
    let mut args = vec![
        "get",
        "--node",
        node.as_str(),
        "--json",
        "--timeout-ms",
        "2000",
    ];
    args.extend(key);
    cli(&args).json()
}

/// Waits until every node answers, all see the same `size` members and
/// exactly one leader that all agree on; returns the leader's port.
fn wait_for_one_leader(ports: &[u16], size: usize) -> u16 {
    wait_until(
        &format!("one leader and {size} members on {ports:?}"),
        SETTLE,
        || {
            let statuses: Vec<Value> = ports.iter().map(|p| status(*p)).collect::<Option<_>>()?;
            let leaders: Vec<&Value> = statuses.iter().filter(|s| s["state"] == "leader").collect();
            let [leader] = leaders[..] else {
                return None;
            };
            let leader_addr = leader["id"].as_str()?;
            let agreed = statuses.iter().all(|s| {
                s["leader"] == leader_addr
                    && s["members"].as_array().map(Vec::len) == Some(size)
                    && s["member_details"]
                        .as_array()
                        .is_some_and(|m| m.iter().all(|m| m["voter"] == true))
            });
            agreed.then(|| leader_addr.rsplit(':').next()?.parse().ok())?
        },
    )
}

#[test]
fn help_for_every_subcommand_names_its_flags() {
    let cases: [(&str, &[&str]); 8] = [
        ("demo", &["--nodes"]),
        (
            "run",
            &[
                "--listen",
                "--join",
                "--data-dir",
                "--heartbeat-ms",
                "--leader-timeout-ms",
                "--election-timeout-ms",
                "--cluster-id",
                "--cluster-key-file",
                "--log-format",
            ],
        ),
        (
            "status",
            &[
                "--node",
                "--json",
                "--cluster-id",
                "--cluster-key-file",
                "--timeout-ms",
            ],
        ),
        ("get", &["--node", "KEY", "--json", "--linearizable"]),
        ("put", &["--node", "KEY", "VALUE", "--cluster-id"]),
        ("delete", &["--node", "KEY", "--timeout-ms"]),
        ("update", &["--node", "--file", "--cluster-key-file"]),
        ("decode", &["--stream", "HEX"]),
    ];
    let top = cli(&["--help"]);
    assert!(top.ok(), "{top:?}");
    for (subcommand, flags) in cases {
        assert!(
            top.stdout.contains(subcommand),
            "{top:?} lacks {subcommand}"
        );
        let help = cli(&[subcommand, "--help"]);
        assert!(help.ok(), "{help:?}");
        for flag in flags {
            assert!(
                help.stdout.contains(flag),
                "{subcommand} --help lacks {flag}: {}",
                help.stdout
            );
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 10] = [
        &["frobnicate"],
        &[],
        &["status"],
        &["status", "--node", "not-an-address"],
        &["get", "--node", "127.0.0.1"],
        &["put", "--node", "127.0.0.1:1", "key"],
        &["run"],
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--join",
            "127.0.0.1:1,nope",
        ],
        &["demo", "--nodes", "1"],
        &["status", "--node", "127.0.0.1:1", "--timeout-ms", "zero"],
    ];
    for args in cases {
        let run = cli(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:?}");
    }
    // Options that cannot work together are refused, not ignored.
    let refused: [(&[&str], &str); 3] = [
        (
            &["run", "--listen", "127.0.0.1:0", "--data-dir", "state"],
            "data_dir: needs a fixed port",
        ),
        (
            &["run", "--listen", "127.0.0.1:0", "--cluster-key-file", "k"],
            "--cluster-key-file",
        ),
        (
            &["status", "--node", "127.0.0.1:1", "--cluster-key-file", "k"],
            "--cluster-key-file",
        ),
    ];
    for (args, says) in refused {
        let run = cli(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
}

#[test]
fn operational_errors_exit_1_with_one_line() {
    // Nothing listens on a port just released.
    let silent = addr(free_port());
    cli(&["status", "--node", &silent]).assert_operational_failure("cannot reach");
    cli(&["put", "--node", &silent, "k", "v"]).assert_operational_failure("cannot reach");

    let port = free_port();
    let _node = start_node("single", port, &[]);
    let node = addr(port);
    wait_until("a single node to lead", SETTLE, || {
        (status(port)?["state"] == "leader").then_some(())
    });
    let put = cli(&["put", "--node", &node, "kept", "yes"]);
    assert!(put.ok() && put.stdout.starts_with("ok version="), "{put:?}");

    cli(&["get", "--node", &node, "absent"]).assert_operational_failure("key not found");
    cli(&["get", "--node", &node, "absent", "--json"]).assert_operational_failure("key not found");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-maps-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_files = [
        ("malformed.json", r#"{"a": "1""#, "not valid JSON"),
        ("number.json", r#"{"a": 1}"#, "not a string"),
        ("array.json", r#"["a"]"#, "JSON object"),
    ];
    for (name, text, says) in bad_files {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        cli(&["update", "--node", &node, "--file", file.to_str().unwrap()])
            .assert_operational_failure(says);
    }
    let missing = dir.join("missing.json");
    cli(&[
        "update",
        "--node",
        &node,
        "--file",
        missing.to_str().unwrap(),
    ])
    .assert_operational_failure("cannot read");
    // Nothing changed.
    assert_eq!(get_json(port, None), Some(json!({"kept": "yes"})));

    // A good file replaces the whole map; delete removes one key.
    let file = dir.join("good.json");
    std::fs::write(&file, r#"{"a": "1", "b": "two words"}"#).unwrap();
    let update = cli(&["update", "--node", &node, "--file", file.to_str().unwrap()]);
    assert!(update.ok(), "{update:?}");
    assert_eq!(
        get_json(port, None),
        Some(json!({"a": "1", "b": "two words"}))
    );
    let delete = cli(&["delete", "--node", &node, "a"]);
    assert!(delete.ok(), "{delete:?}");
    let plain = cli(&["get", "--node", &node, "--linearizable"]);
    assert_eq!(plain.stdout, "b=two words\n", "{plain:?}");
    let value = cli(&["get", "--node", &node, "b"]);
    assert_eq!(value.stdout, "two words\n", "{value:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_node_gracefully() {
    let port = free_port();
    let mut node = start_node("sigterm", port, &[]);
    wait_until("the node to answer", SETTLE, || status(port));
    node.signal("TERM");
    assert_eq!(node.wait_exit(SETTLE), Some(0));
}

/// With a data directory, SIGTERM stops the node without leaving: it comes
/// back as the same member with its data, and a second process cannot open
/// the directory while the first runs.
#[cfg(unix)]
#[test]
fn a_node_with_a_data_directory_stops_on_sigterm_and_comes_back_with_its_data() {
    let port = free_port();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-data-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().expect("a UTF-8 path").to_owned();
    let start = |name: &str| run_node(port, &[], &["--data-dir", &dir_arg], log_path(name, port));
    let mut node = start("durable");
    wait_until("the node to lead", SETTLE, || {
        (status(port)?["state"] == "leader").then_some(())
    });
    for i in 0..5 {
        let put = cli(&["put", "--node", &addr(port), &format!("k{i}"), "v"]);
        assert!(put.ok(), "{put:?}");
    }
    let id_before = status(port).expect("status")["member_details"].clone();

    // The directory is locked while the node runs.
    let other = free_port();
    let second = cli(&["run", "--listen", &addr(other), "--data-dir", &dir_arg]);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert!(second.stderr.contains("in use"), "{second:?}");

    node.signal("TERM");
    assert_eq!(node.wait_exit(SETTLE), Some(0));
    let _node = start("durable-again");
    let map = wait_until("the node to lead again", SETTLE, || {
        (status(port)?["state"] == "leader").then_some(())?;
        get_json(port, None)
    });
    assert_eq!(map.as_object().map(|m| m.len()), Some(5), "{map}");
    assert_eq!(status(port).expect("status")["member_details"], id_before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_three_process_cluster_survives_its_leader_and_takes_a_node_back() {
    let ports = [free_port(), free_port(), free_port()];
    let mut procs = [
        Some(start_node("cluster", ports[0], &[])),
        Some(start_node("cluster", ports[1], &[ports[0]])),
        Some(start_node("cluster", ports[2], &[ports[0]])),
    ];

    let leader = wait_for_one_leader(&ports, 3);
    for port in ports {
        let status = status(port).expect("status");
        assert_eq!(status["id"], addr(port));
        assert!(status["term"].as_u64().is_some_and(|t| t >= 1), "{status}");
        assert!(status["version"].as_u64().is_some(), "{status}");
    }

    // A write through a follower reaches every node.
    let follower = *ports.iter().find(|p| **p != leader).unwrap();
    let put = cli(&["put", "--node", &addr(follower), "color", "blue"]);
    assert!(put.ok() && put.stdout.starts_with("ok version="), "{put:?}");
    for port in ports {
        wait_until(&format!("color on {port}"), SETTLE, || {
            (get_json(port, Some("color"))? == json!({"key": "color", "value": "blue"}))
                .then_some(())
        });
    }

    // kill -9 the leader; a survivor takes writes once a new leader exists.
    let index = ports.iter().position(|p| *p == leader).unwrap();
    drop(procs[index].take());
    let survivors: Vec<u16> = ports.iter().copied().filter(|p| *p != leader).collect();
    wait_until("a write after the leader's crash", SETTLE, || {
        let node = addr(survivors[0]);
        let put = cli(&[
            "put",
            "--node",
            &node,
            "size",
            "large",
            "--timeout-ms",
            "2000",
        ]);
        put.ok().then_some(())
    });
    let expected = json!({"color": "blue", "size": "large"});
    for port in &survivors {
        wait_until(&format!("the map on {port}"), SETTLE, || {
            (get_json(*port, None)? == expected).then_some(())
        });
    }

    // A new process at the crashed node's address joins through the
    // survivors and catches up.
    procs[index] = Some(start_node("cluster-restarted", leader, &survivors));
    wait_until("the restarted node to catch up", SETTLE, || {
        (get_json(leader, None)? == expected).then_some(())
    });
    let restarted = status(leader).expect("status of the restarted node");
    assert!(restarted["member_id"].as_u64().is_some(), "{restarted}");
    // The new incarnation replaces the crashed one: three voters again.
    let leader = wait_for_one_leader(&ports, 3);

    // SIGTERM makes the leader hand over and leave before it exits.
    #[cfg(not(unix))]
    let _ = (leader, &mut procs);
    #[cfg(unix)]
    {
        let index = ports.iter().position(|p| *p == leader).unwrap();
        let mut leaving = procs[index].take().unwrap();
        leaving.signal("TERM");
        assert_eq!(leaving.wait_exit(SETTLE), Some(0));
        let rest: Vec<u16> = ports.iter().copied().filter(|p| *p != leader).collect();
        let new_leader = wait_for_one_leader(&rest, 2);
        assert_ne!(new_leader, leader);
        let put = cli(&["put", "--node", &addr(rest[0]), "left", "yes"]);
        assert!(put.ok(), "{put:?}");
    }
}

#[test]
fn demo_narrates_election_failover_and_catch_up() {
    let started = Instant::now();
    let run = cli(&["demo"]);
    assert!(run.ok(), "{run:?}");
    assert!(started.elapsed() < INVOCATION);
    for says in ["leader", "failover", "caught up", "final state"] {
        assert!(
            run.stdout.contains(says),
            "demo output lacks {says:?}:\n{}",
            run.stdout
        );
    }
}
