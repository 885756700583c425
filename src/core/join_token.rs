//! Join tokens: the stateless proof that a node joining by introduction
//! receives datagrams at the address it claims.
//!
//! An introduction names an address, and without a check the leader would
//! add whatever address it is told and heartbeat it for as long as the
//! member silence lasts: anyone who can send one datagram could fill the
//! member list, or make the cluster send to a host of their choice. So the
//! leader first sends a token to the claimed address, and adds the node
//! only once an introduction comes back with that token (the return
//! routability check of QUIC's address validation, without its retry
//! state). The token is a keyed hash over the claimed address, the
//! incarnation and a coarse time bucket, under a key only this process
//! knows: checking it needs nothing stored per joining node, so a flood of
//! made-up introductions costs the leader no memory, and a token for one
//! address or incarnation says nothing about another.

use std::net::SocketAddr;

use super::metrics::JoinRefusal;
use super::Millis;
use crate::wire::JOIN_TOKEN_BYTES;

/// A token, as [`crate::wire::JoinChallenge`] carries it.
pub type JoinToken = [u8; JOIN_TOKEN_BYTES];

/// Width of the time buckets tokens are made for. A token is accepted in
/// the bucket it was made in and the next one: for at least this long and
/// at most twice as long. Long beside a round trip and an introduction
/// interval on a LAN; short enough that a recorded proof soon stops
/// admitting anyone.
pub const JOIN_TOKEN_BUCKET_MS: u64 = 5_000;

/// Buckets before the accepted ones in which a token is still recognised,
/// so that it is counted as expired rather than invalid (a diagnosis only:
/// both are refused). Bounds the hashes a bad token costs.
const JOIN_TOKEN_EXPIRED_BUCKETS_RECOGNISED: u64 = 4;

/// Context of the key derived from a core's seed (see [`JoinTokens::from_seed`]).
const SEED_KEY_CONTEXT: &str = "simple-raft join token key from the core seed";

/// Makes and checks join tokens under one process's secret key.
#[derive(Clone)]
pub struct JoinTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: a token could be forged with it.
        f.write_str("JoinTokens { .. }")
    }
}

impl JoinTokens {
    /// Tokens under `key` (32 random bytes, kept by this process alone).
    pub fn new(key: [u8; 32]) -> JoinTokens {
        JoinTokens { key }
    }

    /// Tokens under a key derived from the core's seed: reproducible in a
    /// simulator, and as secret as the seed (64 bits). A node that has
    /// more randomness replaces it with [`super::Core::set_join_token_key`].
    pub fn from_seed(seed: u64) -> JoinTokens {
        JoinTokens::new(blake3::derive_key(SEED_KEY_CONTEXT, &seed.to_le_bytes()))
    }

    /// The token for a node at `addr` with `incarnation`, made at `now`.
    pub fn make(&self, addr: SocketAddr, incarnation: u64, now: Millis) -> JoinToken {
        self.at_bucket(addr, incarnation, now / JOIN_TOKEN_BUCKET_MS)
    }

    /// Whether `token` is one this key made for exactly `addr` and
    /// `incarnation`, recently enough. Constant-time in the token.
    pub fn check(
        &self,
        addr: SocketAddr,
        incarnation: u64,
        token: &JoinToken,
        now: Millis,
    ) -> Result<(), JoinRefusal> {
        let bucket = now / JOIN_TOKEN_BUCKET_MS;
        let matches = |back: u64| {
            bucket.checked_sub(back).is_some_and(|b| {
                constant_time_eq::constant_time_eq(&self.at_bucket(addr, incarnation, b), token)
            })
        };
        if matches(0) || matches(1) {
            return Ok(());
        }
        if (2..2 + JOIN_TOKEN_EXPIRED_BUCKETS_RECOGNISED).any(matches) {
            return Err(JoinRefusal::TokenExpired);
        }
        Err(JoinRefusal::TokenInvalid)
    }

    fn at_bucket(&self, addr: SocketAddr, incarnation: u64, bucket: u64) -> JoinToken {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        // Fixed-width fields after the length-prefixed address: no two
        // inputs hash the same bytes.
        let addr = addr.to_string();
        hasher.update(&(addr.len() as u64).to_le_bytes());
        hasher.update(addr.as_bytes());
        hasher.update(&incarnation.to_le_bytes());
        hasher.update(&bucket.to_le_bytes());
        let mut token = [0; JOIN_TOKEN_BYTES];
        token.copy_from_slice(&hasher.finalize().as_bytes()[..JOIN_TOKEN_BYTES]);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_token_admits_only_its_address_and_incarnation() {
        let tokens = JoinTokens::new([7; 32]);
        let token = tokens.make(addr(1), 5, 12_345);
        assert_eq!(tokens.check(addr(1), 5, &token, 12_345), Ok(()));
        assert_eq!(
            tokens.check(addr(2), 5, &token, 12_345),
            Err(JoinRefusal::TokenInvalid)
        );
        assert_eq!(
            tokens.check(addr(1), 6, &token, 12_345),
            Err(JoinRefusal::TokenInvalid)
        );
        let other_key = JoinTokens::new([8; 32]);
        assert_eq!(
            other_key.check(addr(1), 5, &token, 12_345),
            Err(JoinRefusal::TokenInvalid)
        );
    }

    #[test]
    fn a_token_lasts_at_least_one_bucket_and_at_most_two() {
        let tokens = JoinTokens::new([7; 32]);
        let made = 3 * JOIN_TOKEN_BUCKET_MS - 1;
        let token = tokens.make(addr(1), 5, made);
        assert_eq!(
            tokens.check(addr(1), 5, &token, made + JOIN_TOKEN_BUCKET_MS),
            Ok(())
        );
        assert_eq!(
            tokens.check(addr(1), 5, &token, made + 2 * JOIN_TOKEN_BUCKET_MS),
            Err(JoinRefusal::TokenExpired)
        );
        let far = made + (2 + JOIN_TOKEN_EXPIRED_BUCKETS_RECOGNISED) * JOIN_TOKEN_BUCKET_MS;
        assert_eq!(
            tokens.check(addr(1), 5, &token, far),
            Err(JoinRefusal::TokenInvalid)
        );
    }
}
