//! `decode`: explains a frame captured off the wire.

use clap::Args;
use simple_raft::wire::{decode_frame, DecodeLimits, StreamDecoder};

use super::{println, Failure, Outcome};

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The bytes are a TCP frame with its 4-byte length prefix (default: a
    /// UDP datagram).
    #[arg(long)]
    stream: bool,
    /// The frame in hex (whitespace is ignored).
    #[arg(value_name = "HEX")]
    hex: String,
}

pub fn run(args: DecodeArgs) -> Outcome {
    let Some(bytes) = parse_hex(&args.hex) else {
        return Err(Failure::usage(format!("not hex: {}", args.hex)));
    };
    let limits = DecodeLimits {
        cluster_id: None,
        frame_bytes_max: simple_raft::wire::STREAM_FRAME_BYTES_MAX_DEFAULT,
    };
    let decoded = if args.stream {
        StreamDecoder::new(limits).decode_exact(&bytes)
    } else {
        decode_frame(&bytes, &limits)
    };
    match decoded {
        Ok(frame) => println(&format!("{frame:#?}")),
        Err(error) => Err(Failure::op(format!("{}: {error}", error.reason()))),
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
