//! Heap-size estimates for memory accounting and its tests.

/// Heap bytes of a hashbrown table (`HashMap`/`HashSet`) of `capacity` whose slots are
/// `slot_size` bytes: buckets a power of two at most 7/8 full (4 or 8 for tiny tables), one
/// control byte per bucket, plus one group of 16 trailing control bytes.
pub(crate) fn hash_table_heap_size(capacity: usize, slot_size: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (capacity * 8 / 7).next_power_of_two(),
    };
    buckets * (slot_size + 1) + 16
}
