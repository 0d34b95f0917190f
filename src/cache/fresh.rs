//! [`FreshCache`]: finished answers, each fresh until its own expiry, at
//! most a given number of them, with CLOCK (second-chance) eviction.
//!
//! Built for the cache hit, the layer's hot path: a read takes one shard's
//! read lock, one hash-map probe on the key as it is (keys are keyed hashes
//! already, see [`key_of`](super::key::key_of)), and a clone of the value (a
//! reference-count increment); it writes nothing shared unless the entry was
//! not marked used since the clock hand last passed. Inserts take one
//! shard's write lock and, when the cache is full, evict an entry that was
//! not used since the hand last passed (or has expired): an approximation
//! of least-recently-used that never evicts the entry just inserted.
//!
//! Freshness is judged on tokio's clock, so tests can pause time. Expired
//! entries are dropped when the hand meets them.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::key::TokenKey;

/// Shards: enough that two threads rarely meet on one lock.
const SHARDS: usize = 64;

/// A bounded map from token keys to values with an expiry each.
pub(crate) struct FreshCache<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    capacity: usize,
    len: AtomicUsize,
}

struct Shard<V> {
    entries: HashMap<TokenKey, Entry<V>, BuildHasherDefault<KeyHasher>>,
    /// The shard's keys, in the order the clock hand visits them.
    clock: Vec<TokenKey>,
    hand: usize,
}

struct Entry<V> {
    value: V,
    expires_at: Instant,
    /// Used since the clock hand last passed it.
    referenced: AtomicBool,
}

impl<V: Clone> FreshCache<V> {
    /// An empty cache holding at most `capacity` entries.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        entries: HashMap::default(),
                        clock: Vec::new(),
                        hand: 0,
                    })
                })
                .collect(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            len: AtomicUsize::new(0),
        }
    }

    /// The value stored for `key` and when it expires, if it is fresh at `now`.
    pub(crate) fn get(&self, key: TokenKey, now: Instant) -> Option<(V, Instant)> {
        self.get_with(key, now, |value, expires_at| (value.clone(), expires_at))
    }

    /// What `f` makes of the value stored for `key` and its expiry, if it is
    /// fresh at `now`; `f` runs under the shard's read lock, so the value is
    /// read in place, not cloned. `f` must not call back into this cache: a
    /// second read lock on the shard waits behind a waiting writer.
    #[inline]
    pub(crate) fn get_with<R>(
        &self,
        key: TokenKey,
        now: Instant,
        f: impl FnOnce(&V, Instant) -> R,
    ) -> Option<R> {
        let shard = self.read(key);
        let entry = shard.entries.get(&key)?;
        if now >= entry.expires_at {
            return None;
        }
        // A plain load first: a hot entry is read without writing its cache line.
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        Some(f(&entry.value, entry.expires_at))
    }

    /// Stores `value` for `key` for `lifetime` from now, replacing what was
    /// there; evicts another entry if the cache is full.
    pub(crate) fn insert(&self, key: TokenKey, value: V, lifetime: Duration) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let expires_at = now.checked_add(lifetime).unwrap_or(now);
        {
            let mut shard = self.write(key);
            match shard.entries.entry(key) {
                MapEntry::Occupied(mut occupied) => {
                    let entry = occupied.get_mut();
                    entry.value = value;
                    entry.expires_at = expires_at;
                    *entry.referenced.get_mut() = true;
                    return;
                }
                MapEntry::Vacant(vacant) => {
                    // Unmarked: an entry earns its second chance by being
                    // read again.
                    vacant.insert(Entry {
                        value,
                        expires_at,
                        referenced: AtomicBool::new(false),
                    });
                    shard.clock.push(key);
                }
            }
        }
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.evict_one(key, now);
        }
    }

    /// Evicts one entry other than `keep`: the first the hands meet, from
    /// `keep`'s shard on, that expired or was not used since its hand last
    /// passed. A first turn of every hand clears the marks it passes, so a
    /// second finds one; should readers mark them all again meanwhile, a
    /// third turn evicts whatever the hands meet first, so the cache never
    /// stays over its capacity.
    fn evict_one(&self, keep: TokenKey, now: Instant) {
        let first = shard_of(keep);
        for i in 0..3 * SHARDS {
            let index = (first + i) % SHARDS;
            let force = i >= 2 * SHARDS;
            let evicted = self.shards[index]
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .evict(keep, now, force);
            if evicted {
                self.len.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }

    /// How many entries are held, expired ones not yet evicted included.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire) as u64
    }

    /// Every key held (for tests).
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<TokenKey> {
        self.shards
            .iter()
            .flat_map(|shard| shard.read().unwrap().clock.clone())
            .collect()
    }

    /// Every value held (for tests).
    #[cfg(test)]
    pub(crate) fn values(&self) -> Vec<V> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.read().unwrap();
                shard
                    .entries
                    .values()
                    .map(|e| e.value.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    // The maps stay consistent even if a holder panicked: no critical
    // section calls out while the map is half-updated.
    fn read(&self, key: TokenKey) -> RwLockReadGuard<'_, Shard<V>> {
        self.shards[shard_of(key)]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, key: TokenKey) -> RwLockWriteGuard<'_, Shard<V>> {
        self.shards[shard_of(key)]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl<V> Shard<V> {
    /// Evicts the first entry the hand meets in one turn that expired or
    /// was not used since the hand last passed (any entry, with `force`),
    /// clearing the marks it passes; never `keep`. `false` when the turn
    /// found none.
    fn evict(&mut self, keep: TokenKey, now: Instant, force: bool) -> bool {
        for _ in 0..self.clock.len() {
            if self.hand >= self.clock.len() {
                self.hand = 0;
            }
            let key = self.clock[self.hand];
            if key != keep {
                let entry = &self.entries[&key];
                let used = entry.referenced.swap(false, Ordering::Relaxed);
                if force || now >= entry.expires_at || !used {
                    self.entries.remove(&key);
                    // The last key (often the newest) takes this one's
                    // place; the hand moves past it, so it waits a turn
                    // like any other.
                    self.clock.swap_remove(self.hand);
                    self.hand += 1;
                    return true;
                }
            }
            self.hand += 1;
        }
        false
    }
}

/// The shard of a key: its top bits, since the maps use its low bits.
fn shard_of(key: TokenKey) -> usize {
    (key >> (128 - SHARDS.trailing_zeros())) as usize
}

/// Hashes a token key to its low 64 bits: keys are keyed hashes already.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u128) -> TokenKey {
        // Spread over every shard, as real keys are.
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_fresh_until_their_expiry() {
        let cache = FreshCache::new(10);
        cache.insert(key(1), "a", Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(cache.get(key(1), now).map(|(v, _)| v), Some("a"));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(cache.get(key(1), Instant::now()), None);
        assert_eq!(cache.get(key(2), Instant::now()), None);
    }

    #[tokio::test]
    async fn the_capacity_holds_and_a_new_entry_is_always_admitted() {
        let cache = FreshCache::new(100);
        for i in 0..10_000 {
            cache.insert(key(i), i, Duration::from_secs(60));
            assert!(cache.len() <= 100);
            assert_eq!(cache.get(key(i), Instant::now()).map(|(v, _)| v), Some(i));
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.keys().len(), 100);
    }

    #[tokio::test]
    async fn entries_in_use_survive_a_flood_of_new_ones() {
        let cache = FreshCache::new(64);
        cache.insert(key(0), 0, Duration::from_secs(60));
        for i in 1..5_000 {
            // The entry in use is read between every two inserts.
            assert!(
                cache.get(key(0), Instant::now()).is_some(),
                "evicted at {i}"
            );
            cache.insert(key(i), i, Duration::from_secs(60));
        }
    }

    /// Keys in one shard: the same top bits.
    fn same_shard(i: u128) -> TokenKey {
        (7u128 << 122) | i
    }

    #[tokio::test]
    async fn unread_entries_go_in_the_order_they_came() {
        let cache = FreshCache::new(3);
        for i in 0..3 {
            cache.insert(same_shard(i), i, Duration::from_secs(60));
        }
        // Each new entry evicts the oldest unread one, never the one
        // inserted just before it.
        for i in 3..20 {
            cache.insert(same_shard(i), i, Duration::from_secs(60));
            let now = Instant::now();
            assert!(
                cache.get(same_shard(i - 1), now).is_some(),
                "{i}: the previous one"
            );
            // Reading marks it: undo that, so the order is insertion order.
            cache.read(same_shard(i - 1)).entries[&same_shard(i - 1)]
                .referenced
                .store(false, Ordering::Relaxed);
            assert!(
                cache.get(same_shard(i - 3), now).is_none(),
                "{i}: the oldest"
            );
        }
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn entries_read_all_the_time_still_make_room() {
        let cache = std::sync::Arc::new(FreshCache::new(4));
        for i in 0..4 {
            cache.insert(key(i), i, Duration::from_secs(60));
        }
        for i in 4..1_000 {
            // Every entry is marked again before each insert.
            for j in i - 4..i {
                let _ = cache.get(key(j), Instant::now());
            }
            cache.insert(key(i), i, Duration::from_secs(60));
            assert!(cache.len() <= 4, "{}", cache.len());
            assert_eq!(cache.keys().len() as u64, cache.len());
        }
    }

    #[tokio::test]
    async fn no_capacity_holds_nothing() {
        let cache = FreshCache::new(0);
        cache.insert(key(1), 1, Duration::from_secs(60));
        assert_eq!(cache.get(key(1), Instant::now()), None);
        assert_eq!(cache.len(), 0);
    }
}
