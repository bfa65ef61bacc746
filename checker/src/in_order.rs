//! Lookups by space id, made as one walk of a sorted map: the interpreter reads every live
//! space of both sides at every step, and a search per space per step was a large part of
//! its cost on inputs with many spaces.

use std::iter::Peekable;

/// The entries of a map sorted by key (`walk`), found in one pass while the keys asked for
/// ascend; a key asked out of order is searched (`search`). The vmm and the model hand space
/// ids out in increasing order and the live lists keep creation order, so the keys ascend
/// unless an id is reused.
pub struct InOrder<K, V, I: Iterator<Item = (K, V)>, S: Fn(K) -> Option<V>> {
    walk: Peekable<I>,
    search: S,
    last: Option<K>,
}

impl<K: Ord + Copy, V, I: Iterator<Item = (K, V)>, S: Fn(K) -> Option<V>> InOrder<K, V, I, S> {
    /// Lookups in the map `walk` goes through in ascending key order and `search` searches.
    pub fn new(walk: I, search: S) -> Self {
        Self {
            walk: walk.peekable(),
            search,
            last: None,
        }
    }

    /// The entry of `key`, if any.
    pub fn get(&mut self, key: K) -> Option<V> {
        if self.last.is_some_and(|last| key <= last) {
            return (self.search)(key);
        }
        self.last = Some(key);
        while self.walk.next_if(|(k, _)| *k < key).is_some() {}
        self.walk.next_if(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::InOrder;
    use std::collections::BTreeMap;

    #[test]
    fn finds_what_a_search_finds_in_and_out_of_order() {
        let map: BTreeMap<u32, char> = [(2, 'b'), (3, 'c'), (7, 'g'), (9, 'i')].into();
        let mut lookups = InOrder::new(map.iter().map(|(&k, v)| (k, v)), |k| map.get(&k));
        for key in [1, 2, 3, 5, 9, 3, 7, 7, 10, 0] {
            assert_eq!(lookups.get(key), map.get(&key), "key {key}");
        }
    }
}
