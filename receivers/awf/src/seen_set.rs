//! A bounded "seen" set: remembers the most recent `capacity` keys and forgets the oldest
//! first. Used to drop replayed events and to never count one span, retry or fallback twice.

use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub struct SeenSet {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl SeenSet {
    pub fn new(capacity: usize) -> SeenSet {
        SeenSet {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.set.contains(&key)
    }

    /// Remembers `key`; returns false when it was already there.
    pub fn insert(&mut self, key: u64) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_oldest_beyond_capacity() {
        let mut w = SeenSet::new(3);
        assert!(w.insert(1) && w.insert(2) && w.insert(3));
        assert!(!w.insert(2));
        assert!(w.insert(4));
        assert!(!w.contains(1));
        assert!(w.contains(2) && w.contains(3) && w.contains(4));
        assert_eq!(w.len(), 3);
    }
}
