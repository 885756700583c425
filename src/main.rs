//! The `simple-raft` command line.
//!
//! For now it offers `decode`, which explains a frame captured off the wire
//! (a UDP datagram, or a TCP frame with its length prefix) given in hex.
//! Node subcommands (`run`, `status`, `get`, ...) build on the networked
//! driver.

use std::io::Write;
use std::process::ExitCode;

use simple_raft::wire::{decode_frame, DecodeLimits, StreamDecoder};

const USAGE: &str = "usage: simple-raft decode [--stream] HEX";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (stream, hex) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["decode", hex] => (false, hex),
        ["decode", "--stream", hex] => (true, hex),
        ["--version"] => {
            println!("simple-raft {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(bytes) = parse_hex(hex) else {
        eprintln!("not hex: {hex}");
        return ExitCode::from(2);
    };
    let limits = DecodeLimits {
        cluster_id: None,
        frame_bytes_max: simple_raft::wire::STREAM_FRAME_BYTES_MAX_DEFAULT,
    };
    let decoded = if stream {
        StreamDecoder::new(limits).decode_exact(&bytes)
    } else {
        decode_frame(&bytes, &limits)
    };
    match decoded {
        Ok(frame) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{frame:#?}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", error.reason());
            ExitCode::from(1)
        }
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
