//! A byte ring for the replay buffer: bytes are appended at the back,
//! freed from the front, read anywhere as at most two runs, and — what a
//! `VecDeque` cannot do — its free space is lent out so that the shell can
//! read application bytes straight into it, with no copy in between.
//!
//! Storage grows by doubling, up to the limit, only as the bytes held
//! need it; it shrinks only when the limit was lowered to well below it,
//! and then only once the ring is empty (a session that once needed the
//! room is likely to need it again).

/// The smallest storage a ring allocates once it holds anything.
const MIN_STORAGE: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Ring {
    storage: Box<[u8]>,
    /// Index of the first byte held.
    head: usize,
    /// Bytes held.
    len: usize,
    /// Most bytes the ring may hold; storage never grows beyond it.
    limit: usize,
}

impl Ring {
    pub(crate) fn new(limit: usize) -> Self {
        Ring {
            storage: Box::default(),
            head: 0,
            len: 0,
            limit,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Room for more bytes, within the limit.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the most bytes the ring may hold. Bytes held beyond a
    /// lowered limit stay (nothing is dropped): there is no room until
    /// they are freed; storage larger than the limit needs is given back
    /// the next time the ring is empty.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends as much of `data` as there is room for; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let spare = self.spare(data.len() - done);
            if spare.is_empty() {
                break;
            }
            let n = spare.len().min(data.len() - done);
            spare[..n].copy_from_slice(&data[done..done + n]);
            self.commit(n);
            done += n;
        }
        done
    }

    /// Free space right after the last byte, as one run, for the caller to
    /// fill and then [`Ring::commit`]; at most `want` bytes are asked for,
    /// which lets the storage grow no more than needed. Empty when full.
    pub(crate) fn spare(&mut self, want: usize) -> &mut [u8] {
        let want = want.min(self.room());
        if want == 0 {
            return &mut [];
        }
        if self.storage.len() - self.len < want && self.storage.len() < self.limit {
            self.grow(self.len + want);
        }
        let cap = self.storage.len();
        if self.len == cap {
            return &mut [];
        }
        let tail = (self.head + self.len) % cap;
        // Free space runs from the tail to the end of storage when the
        // bytes held do not wrap, else up to the head.
        let end = if tail >= self.head { cap } else { self.head };
        let n = (end - tail).min(want);
        &mut self.storage[tail..tail + n]
    }

    /// `n` bytes of [`Ring::spare`] were filled.
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.storage.len());
        self.len += n;
    }

    /// Drops the first `n` bytes.
    pub(crate) fn free_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        self.head = (self.head + n) % self.storage.len();
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
            // Storage from a larger limit: its bytes would cycle through
            // more memory than the limit needs. It grows again on demand.
            if self.storage.len() > 2 * self.limit.max(MIN_STORAGE) {
                self.storage = Box::default();
            }
        }
    }

    /// The `len` bytes from `offset` (counted from the first byte held), as
    /// two runs (the second often empty). `offset + len` must not exceed
    /// [`Ring::len`].
    pub(crate) fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        debug_assert!(offset + len <= self.len);
        if len == 0 {
            return (&[], &[]);
        }
        let cap = self.storage.len();
        let start = (self.head + offset) % cap;
        if start + len <= cap {
            (&self.storage[start..start + len], &[])
        } else {
            (&self.storage[start..], &self.storage[..start + len - cap])
        }
    }

    /// Reallocates to hold at least `needed` bytes, linearising the content.
    fn grow(&mut self, needed: usize) {
        let new_cap = needed
            .max(MIN_STORAGE)
            .next_power_of_two()
            .min(self.limit.max(needed));
        let mut storage = vec![0u8; new_cap].into_boxed_slice();
        let (a, b) = self.slices(0, self.len);
        storage[..a.len()].copy_from_slice(a);
        storage[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.storage = storage;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn content(r: &Ring) -> Vec<u8> {
        let (a, b) = r.slices(0, r.len());
        [a, b].concat()
    }

    #[test]
    fn wraps_grows_and_lends_its_free_space() {
        let mut r = Ring::new(8);
        assert_eq!(r.push(b"abcdef"), 6);
        r.free_front(4);
        assert_eq!(r.push(b"123456"), 6);
        assert_eq!(content(&r), b"ef123456");
        assert_eq!(r.push(b"x"), 0, "full at the limit");
        assert!(r.spare(10).is_empty());
        let (a, b) = r.slices(1, 4);
        assert_eq!([a, b].concat(), b"f123");
        assert!(!b.is_empty(), "this run crosses the end of storage");
        r.free_front(8);
        assert_eq!(r.len(), 0);
        let spare = r.spare(3);
        spare.copy_from_slice(b"xyz");
        r.commit(3);
        assert_eq!(content(&r), b"xyz");
    }

    proptest! {
        /// Against a VecDeque model: any sequence of pushes (directly or
        /// through `spare`), frees and reads keeps the same bytes.
        #[test]
        fn behaves_like_a_deque(ops in proptest::collection::vec((0u8..3, 0usize..200_000), 1..60),
                                limit in 1usize..300_000) {
            let mut r = Ring::new(limit);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            for (op, n) in ops {
                match op {
                    0 => {
                        let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                        let took = r.push(&data);
                        prop_assert_eq!(took, n.min(limit - model.len()));
                        model.extend(&data[..took]);
                    }
                    1 => {
                        let spare = r.spare(n);
                        let k = spare.len();
                        prop_assert!(k <= n && k <= limit - model.len());
                        prop_assert!(k > 0 || n == 0 || model.len() == limit);
                        for byte in spare.iter_mut() {
                            next = next.wrapping_add(1);
                            *byte = next;
                            model.push_back(next);
                        }
                        r.commit(k);
                    }
                    _ => {
                        let k = n.min(model.len());
                        r.free_front(k);
                        model.drain(..k);
                    }
                }
                prop_assert_eq!(r.len(), model.len());
                prop_assert_eq!(content(&r), model.iter().copied().collect::<Vec<u8>>());
                if model.len() > 2 {
                    let (a, b) = r.slices(1, model.len() - 2);
                    let got = [a, b].concat();
                    let want: Vec<u8> = model.iter().skip(1).take(model.len() - 2).copied().collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
