//! The `simple-raft` command line: run a node, talk to a cluster, or watch
//! an in-process demo. See `simple-raft --help`.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
