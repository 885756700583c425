//! TCP below the node and the client: length-prefixed frames on a stream
//! ([`stream_io`]) and the idle connections kept between requests
//! ([`pool`]). Both the driver (serving connections, forwarding writes) and
//! the [`crate::Client`] use them; this module uses only [`crate::wire`],
//! so neither has to reach into the other for them.

mod pool;
mod stream_io;

pub(crate) use pool::Pool;
#[cfg(test)]
pub(crate) use stream_io::take_budget;
pub(crate) use stream_io::{
    read_frame, read_frame_bytes_within, write_frame, write_frame_bytes, ReadError,
};
