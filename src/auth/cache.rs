//! Per-backend caches of what the auth tables say, emptied whenever the auth epoch moves (an
//! auth table changed, here or in another backend) and when they grow past a bound.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::thread::LocalKey;

/// Entries kept before a cache starts over (a bound on memory, not a tuning knob).
const LIMIT: usize = 10_000;

pub struct EpochCache<K, V> {
    epoch: u64,
    entries: HashMap<K, V>,
}

impl<K, V> Default for EpochCache<K, V> {
    fn default() -> Self {
        EpochCache {
            epoch: 0,
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V: Clone> EpochCache<K, V> {
    /// The value cached under `key` in `epoch` (the current one).
    pub fn get(&mut self, epoch: u64, key: &K) -> Option<V> {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.entries.clear();
        }
        self.entries.get(key).cloned()
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= LIMIT {
            self.entries.clear();
        }
        self.entries.insert(key, value);
    }
}

/// The value cached under `key` in the current epoch, else `load()` (run outside the cache's
/// borrow: it may read the catalog), cached.
pub fn cached<K: Eq + Hash, V: Clone>(
    cache: &'static LocalKey<RefCell<EpochCache<K, V>>>,
    key: K,
    load: impl FnOnce() -> V,
) -> V {
    let epoch = super::epoch();
    if let Some(value) = cache.with(|cache| cache.borrow_mut().get(epoch, &key)) {
        return value;
    }
    let value = load();
    cache.with(|cache| cache.borrow_mut().insert(key, value.clone()));
    value
}
