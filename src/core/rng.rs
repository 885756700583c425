//! A small seeded PRNG, so the core draws its random timeouts from a seed
//! the caller gives and a simulator run is reproducible from one number.

/// xorshift64* seeded through splitmix64. Not for cryptography: it only
/// spreads election timeouts.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `[low, 1.5 * low)`: the spread of a randomised timeout.
    /// Half the base is enough to spread candidates on a LAN (pre-vote
    /// makes a split round cheap), and it keeps the worst-case failover
    /// close to the base timeout.
    pub fn timeout(&mut self, low: u64) -> u64 {
        low + self.next_u64() % (low / 2).max(1)
    }
}
