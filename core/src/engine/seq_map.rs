//! Maps and sets keyed by the outbox's sequence numbers. The engine looks an entry up by its
//! number several times per emit (in flight, waiting callers, committed or not); the numbers
//! are its own, never chosen by a peer, so a multiply spreads them well enough where the
//! standard library's SipHash, built to resist chosen keys, costs more than the rest of the
//! lookup.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// A map from sequence numbers.
pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// A set of sequence numbers.
pub(crate) type SeqSet = HashSet<u64, BuildHasherDefault<SeqHasher>>;

/// Fibonacci hashing of one `u64`: consecutive numbers land in distinct buckets, and the
/// high bits the table also uses are mixed.
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; this keeps any other key correct, if slower.
        for b in bytes {
            self.write_u64(self.0 ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_are_kept_apart_and_found() {
        let mut m = SeqMap::default();
        for seq in 1..=10_000u64 {
            m.insert(seq, seq * 2);
        }
        assert!((1..=10_000u64).all(|seq| m.get(&seq) == Some(&(seq * 2))));
        assert_eq!(m.get(&0), None);
        let hashes: SeqSet = (0..1_000u64)
            .map(|seq| {
                let mut h = SeqHasher::default();
                h.write_u64(seq);
                h.finish() & 1023
            })
            .collect();
        assert!(
            hashes.len() > 990,
            "{} distinct buckets of 1,000",
            hashes.len()
        );
    }
}
