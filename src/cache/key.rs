//! The local cache key of a token: a keyed 128-bit hash.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

use siphasher::sip128::{Hasher128, SipHasher13};

/// The key of a token in this process's caches and single flight.
pub(crate) type TokenKey = u128;

/// The token's SipHash-1-3 (128 bits) under a key drawn at random for this
/// process.
///
/// A keyed hash, not the token's SHA-256 ([`TokenDigest`](crate::TokenDigest),
/// which stores use so that replicas agree): a cache hit is mostly this hash,
/// and SipHash-1-3 costs about half of a SHA-256 of a 184-byte token on a CPU
/// with SHA extensions, and a small fraction without them. Without the key, an
/// attacker cannot choose a token whose key is another token's (128 bits: no
/// collision by chance either), nor tokens whose keys crowd one hash bucket.
pub(crate) fn key_of(token: &[u8]) -> TokenKey {
    static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
    let (k0, k1) = *KEYS.get_or_init(|| {
        // Randomly keyed per process by the standard library, from the OS.
        let random = RandomState::new();
        (random.hash_one(0u8), random.hash_one(1u8))
    });
    let mut hasher = SipHasher13::new_with_keys(k0, k1);
    hasher.write(token);
    hasher.finish128().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_in_a_process_and_differ_per_token() {
        assert_eq!(key_of(b"token+/=="), key_of(b"token+/=="));
        assert_ne!(key_of(b"token+/=="), key_of(b"token+/="));
        assert_ne!(key_of(b"a"), key_of(b"b"));
    }
}
