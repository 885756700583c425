//! Unsigned LEB128 varints for the frame header, with one canonical form.
//!
//! The header is hand-written rather than postcard so that its layout is
//! fixed by this file and docs/WIRE.md alone. Small numbers (member ids,
//! terms, payload lengths) take one or two bytes, which is what keeps a
//! heartbeat within 32 bytes. A varint with redundant trailing zero groups
//! is refused, so that every accepted frame re-encodes to the same bytes.

use super::DecodeError;

/// Longest encoding of a `u64`.
pub const U64_BYTES_MAX: usize = 10;

/// Appends `value` to `out`.
pub fn put_u64(out: &mut impl bytes::BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Number of bytes [`put_u64`] writes for `value`.
pub fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint from the front of `input`, returning it and the bytes it
/// used. `field` names it in errors.
pub fn get_u64(input: &[u8], field: &'static str) -> Result<(u64, usize), DecodeError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(U64_BYTES_MAX) {
        let group = u64::from(byte & 0x7f);
        if i == U64_BYTES_MAX - 1 && byte > 0x01 {
            // The tenth byte may only carry the top bit of a u64.
            return Err(DecodeError::NonCanonical { field });
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::NonCanonical { field });
            }
            return Ok((value, i + 1));
        }
    }
    if input.len() >= U64_BYTES_MAX {
        return Err(DecodeError::NonCanonical { field });
    }
    Err(DecodeError::TooShort {
        field,
        needed: input.len() + 1,
        available: input.len(),
    })
}

/// Like [`get_u64`] for a field that must fit in a `u32`.
pub fn get_u32(input: &[u8], field: &'static str) -> Result<(u32, usize), DecodeError> {
    let (value, used) = get_u64(input, field)?;
    let value = u32::try_from(value).map_err(|_| DecodeError::MalformedPayload {
        kind: "header",
        reason: "varint out of range for u32",
    })?;
    Ok((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, v);
        out
    }

    #[test]
    fn round_trips_boundaries_with_predicted_length() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let bytes = encode(v);
            assert_eq!(bytes.len(), len_u64(v), "length of {v}");
            assert_eq!(get_u64(&bytes, "v").unwrap(), (v, bytes.len()));
        }
    }

    #[test]
    fn refuses_redundant_zero_groups() {
        assert_eq!(
            get_u64(&[0x80, 0x00], "v"),
            Err(DecodeError::NonCanonical { field: "v" })
        );
        assert_eq!(
            get_u64(&[0x81, 0x80, 0x00], "v"),
            Err(DecodeError::NonCanonical { field: "v" })
        );
    }

    #[test]
    fn refuses_overflow_and_overlong() {
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(matches!(
            get_u64(&too_big, "v"),
            Err(DecodeError::NonCanonical { .. })
        ));
        assert!(matches!(
            get_u64(&[0x80; 11], "v"),
            Err(DecodeError::NonCanonical { .. })
        ));
    }

    #[test]
    fn truncated_varint_is_too_short() {
        assert!(matches!(
            get_u64(&[0x80, 0x80], "v"),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            get_u64(&[], "v"),
            Err(DecodeError::TooShort { .. })
        ));
    }
}
