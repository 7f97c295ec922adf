//! Farmer-side helper: request nonces for the `id` of requests.

use std::collections::HashSet;

/// Allocates `u16` request ids, skipping ids still waiting for their answer. At most 65536
/// ids can be in use; [`RequestIds::allocate`] returns `None` beyond that.
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    next: u16,
    in_use: HashSet<u16>,
}

impl RequestIds {
    /// No ids in use; the first id is 0.
    pub fn new() -> Self {
        RequestIds::default()
    }

    /// A fresh id not in use, marked in use; `None` if all 65536 are taken. Ids are handed
    /// out in increasing order (wrapping), so a late answer rarely meets a reused id.
    pub fn allocate(&mut self) -> Option<u16> {
        if self.in_use.len() > usize::from(u16::MAX) {
            return None;
        }
        // Terminates: fewer than 65536 ids are in use, so a free one exists.
        loop {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            if self.in_use.insert(id) {
                return Some(id);
            }
        }
    }

    /// Frees `id` when its answer arrived (or was given up); false if it was not in use.
    pub fn release(&mut self, id: u16) -> bool {
        self.in_use.remove(&id)
    }

    /// True if `id` was allocated and not released.
    pub fn is_in_use(&self, id: u16) -> bool {
        self.in_use.contains(&id)
    }

    /// Ids in use.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_ids_in_use_and_wraps() {
        let mut ids = RequestIds::new();
        assert_eq!(ids.allocate(), Some(0));
        assert_eq!(ids.allocate(), Some(1));
        assert!(ids.release(0));
        assert!(!ids.release(0));
        for expected in 2..=u16::MAX {
            assert_eq!(ids.allocate(), Some(expected));
        }
        // Wrapped: 0 is free again, 1 is still in use.
        assert_eq!(ids.allocate(), Some(0));
        assert_eq!(ids.in_use(), 65536);
        assert_eq!(ids.allocate(), None);
        assert!(ids.release(500));
        assert_eq!(ids.allocate(), Some(500));
        assert!(ids.is_in_use(500));
    }
}
