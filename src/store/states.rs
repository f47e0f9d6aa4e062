//! Decoded contact states kept in memory, shared by the writer and the readers that answer
//! "now" (`Check`, the writer staging the next event of a contact).
//!
//! A state read from RocksDB costs a snapshot, a point read through the memtables and
//! table files, and a decode. That cost grows with the ledger: at 10M entries the table
//! files' read path was about a sixth of a `Check`'s CPU, against under 3% when the
//! contacts asked about were still in the memtable. A hit here costs a hash and a lock.
//!
//! # Consistency
//!
//! Everything here is durable: the commit thread puts a group's states in only after the
//! group's batch is synced, and before it answers the group's callers, so a caller that
//! appended and then asks finds its own entry.
//!
//! A state comes with the tree size it is complete at, as a snapshot's read does. Each
//! state is kept with a size it was complete at (the group's size after it, or the
//! snapshot's), and the cache publishes the size after the last group put in. A state
//! found is complete at the larger of the two: any later entry of the contact below the
//! published size was put in before that size was published, and so would have replaced
//! it.
//!
//! A state read from the store is kept only if nothing was written to its shard between
//! the read's start and its end ([`Ticket`]): otherwise a read that began before a group
//! was written could put back the state that group replaced.
//!
//! # Bounds
//!
//! Each shard keeps two generations of entries: when the young one's estimated bytes
//! reach its share of half the capacity, the old one is dropped and the young one takes
//! its place; a state found in the old one moves to the young one. So a working set of up
//! to about half the capacity (spread over the shards by hash) stays in, and the whole
//! never holds much more than the capacity.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;

use crate::ledger::projection::{
    BasisState, ConsentState, DoubleOptInState, EvidenceRef, Objection, RequestRecord, Restriction,
};
use crate::ledger::ContactState;
use crate::model::ContactId;

/// Shards, each with its own lock: enough that the gRPC threads, the writer and the
/// commit thread rarely meet on one.
const SHARDS: usize = 64;

/// The decoded states of contacts read or written recently.
#[derive(Debug)]
pub(crate) struct StateCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    capacity_bytes: usize,
    /// Estimated bytes a shard's young generation reaches before it is made the old one.
    generation_bytes: usize,
    /// The tree size after the last group whose states were put in.
    published: AtomicU64,
    hits: Counter,
    misses: Counter,
}

#[derive(Debug, Default)]
struct Shard {
    /// States the commit thread has put in: a read from the store that began before the
    /// count it sees now is not kept.
    writes: u64,
    young: Generation,
    old: Generation,
}

#[derive(Debug, Default)]
struct Generation {
    states: HashMap<ContactId, Kept>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, contact: ContactId, kept: Kept) {
        self.bytes += kept.bytes;
        if let Some(replaced) = self.states.insert(contact, kept) {
            self.bytes -= replaced.bytes;
        }
    }

    fn remove(&mut self, contact: &ContactId) -> Option<Kept> {
        let kept = self.states.remove(contact)?;
        self.bytes -= kept.bytes;
        Some(kept)
    }
}

#[derive(Debug, Clone)]
struct Kept {
    state: Arc<ContactState>,
    /// A tree size the state is complete at.
    tree_size: u64,
    /// Estimated memory it holds, its key's included.
    bytes: usize,
}

/// Where a read of a state from the store began: see [`StateCache::keep`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard: usize,
    writes: u64,
}

impl Shard {
    fn get(&mut self, contact: &ContactId, generation_bytes: usize) -> Option<Kept> {
        if let Some(kept) = self.young.states.get(contact) {
            return Some(kept.clone());
        }
        let kept = self.old.remove(contact)?;
        self.insert(contact.clone(), kept.clone(), generation_bytes);
        Some(kept)
    }

    fn insert(&mut self, contact: ContactId, kept: Kept, generation_bytes: usize) {
        self.old.remove(&contact);
        if self.young.bytes + kept.bytes > generation_bytes
            && !self.young.states.contains_key(&contact)
        {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(contact, kept);
    }
}

impl StateCache {
    /// An empty cache of about `capacity_bytes`, counting its lookups in `hits` and
    /// `misses`. [`publish`](Self::publish) the ledger's size before it is used.
    pub(crate) fn new(capacity_bytes: usize, hits: Counter, misses: Counter) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            capacity_bytes,
            generation_bytes: capacity_bytes / 2 / SHARDS,
            published: AtomicU64::new(0),
            hits,
            misses,
        }
    }

    /// Publishes `tree_size` as the ledger's size: every state put in since is complete at
    /// it (see the module's notes).
    pub(crate) fn publish(&self, tree_size: u64) {
        self.published.store(tree_size, Ordering::Release);
    }

    fn shard_of(&self, contact: &ContactId) -> usize {
        (self.hasher.hash_one(contact.as_str()) % SHARDS as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard was held left it whole: every change to it is one insert
        // or removal.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The contact's state, if kept, and a tree size it is complete at.
    pub(crate) fn get(&self, contact: &ContactId) -> Option<(Arc<ContactState>, u64)> {
        // Read before the shard: see the module's notes.
        let published = self.published.load(Ordering::Acquire);
        let found = self
            .lock(self.shard_of(contact))
            .get(contact, self.generation_bytes);
        match found {
            Some(kept) => {
                self.hits.inc();
                Some((kept.state, kept.tree_size.max(published)))
            }
            None => {
                self.misses.inc();
                None
            }
        }
    }

    /// Taken before reading the contact's state from the store, to [`keep`](Self::keep)
    /// what is read.
    pub(crate) fn ticket(&self, contact: &ContactId) -> Ticket {
        let shard = self.shard_of(contact);
        Ticket {
            shard,
            writes: self.lock(shard).writes,
        }
    }

    /// Keeps a state read from the store, complete at `tree_size`, unless a group's states
    /// were put in its shard since `ticket` was taken (the read may predate one of them).
    pub(crate) fn keep(
        &self,
        ticket: Ticket,
        contact: &ContactId,
        state: &Arc<ContactState>,
        tree_size: u64,
    ) {
        let mut shard = self.lock(ticket.shard);
        if shard.writes == ticket.writes {
            let kept = Kept {
                state: Arc::clone(state),
                tree_size,
                bytes: footprint(contact, state),
            };
            shard.insert(contact.clone(), kept, self.generation_bytes);
        }
    }

    /// Puts in the states a group wrote, once it is durable, and publishes the tree size
    /// after it.
    pub(crate) fn written<'a>(
        &self,
        states: impl IntoIterator<Item = (&'a ContactId, &'a Arc<ContactState>)>,
        tree_size: u64,
    ) {
        for (contact, state) in states {
            let kept = Kept {
                state: Arc::clone(state),
                tree_size,
                bytes: footprint(contact, state),
            };
            let mut shard = self.lock(self.shard_of(contact));
            shard.writes += 1;
            shard.insert(contact.clone(), kept, self.generation_bytes);
        }
        self.publish(tree_size);
    }

    /// Estimated bytes held, and the capacity.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let held = (0..SHARDS)
            .map(|shard| {
                let shard = self.lock(shard);
                shard.young.bytes + shard.old.bytes
            })
            .sum();
        (held, self.capacity_bytes)
    }
}

/// Estimated memory a kept state holds: the structures and what their vectors and strings
/// allocate, plus a hash-table slot. Close enough to bound the cache, not an exact count.
fn footprint(contact: &ContactId, state: &ContactState) -> usize {
    fn vec<T>(v: &Vec<T>) -> usize {
        v.capacity() * size_of::<T>()
    }
    let pending: usize = state
        .double_opt_ins
        .iter()
        .flat_map(|d| &d.pending)
        .map(|(token, _)| token.capacity())
        .sum::<usize>()
        + state
            .double_opt_ins
            .iter()
            .map(|d| d.pending.capacity() * size_of::<(String, EvidenceRef)>())
            .sum::<usize>();
    let requests: usize = state.requests.iter().map(|r| r.id.capacity()).sum();
    size_of::<ContactState>()
        + size_of::<(ContactId, Kept)>()
        + 2 * size_of::<usize>()
        + contact.as_str().len()
        + state.region.as_ref().map_or(0, |r| r.as_str().len())
        + vec::<BasisState>(&state.bases)
        + vec::<ConsentState>(&state.consents)
        + vec::<DoubleOptInState>(&state.double_opt_ins)
        + vec::<Objection>(&state.objections)
        + vec::<Restriction>(&state.restrictions)
        + vec::<EvidenceRef>(&state.acquisitions)
        + vec::<RequestRecord>(&state.requests)
        + pending
        + requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str) -> ContactId {
        ContactId::parse("contact_id", id).unwrap()
    }

    fn state(head_contact_seq: u64) -> Arc<ContactState> {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut state = crate::ledger::projection::arbitrary::state()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        state.head_contact_seq = head_contact_seq;
        Arc::new(state)
    }

    fn cache(capacity_bytes: usize) -> StateCache {
        StateCache::new(capacity_bytes, Counter::default(), Counter::default())
    }

    #[test]
    fn a_written_state_is_found_with_the_size_after_its_group() {
        let cache = cache(1 << 20);
        let a = contact("a");
        assert!(cache.get(&a).is_none());
        cache.written([(&a, &state(1))], 5);
        let (found, size) = cache.get(&a).unwrap();
        assert_eq!((found.head_contact_seq, size), (1, 5));
        // A later group that does not touch "a": its state is complete at the new size.
        cache.written([(&contact("b"), &state(1))], 9);
        assert_eq!(cache.get(&a).unwrap().1, 9);
        assert_eq!((cache.hits.get(), cache.misses.get()), (2, 1));
    }

    #[test]
    fn a_read_is_kept_only_if_no_group_was_put_in_its_shard_since_it_began() {
        let cache = cache(1 << 20);
        let a = contact("a");
        // A read that began before the group that wrote seq 2 would put seq 1 back.
        let stale = cache.ticket(&a);
        cache.written([(&a, &state(2))], 7);
        cache.keep(stale, &a, &state(1), 6);
        assert_eq!(cache.get(&a).unwrap().0.head_contact_seq, 2);
        // Nor is it kept when the state it would replace was evicted meanwhile.
        let cache = self::cache(0);
        let stale = cache.ticket(&a);
        cache.written([(&a, &state(2))], 7);
        cache.written([(&contact("b"), &state(1))], 8);
        cache.keep(stale, &a, &state(1), 6);
        assert!(cache.get(&a).is_none() || cache.get(&a).unwrap().0.head_contact_seq == 2);
        // A read with nothing written since is kept, at the size it was read at.
        let fresh = cache.ticket(&a);
        cache.keep(fresh, &a, &state(2), 8);
        assert_eq!(cache.get(&a).unwrap().0.head_contact_seq, 2);
    }

    #[test]
    fn the_cache_stays_near_its_capacity_and_keeps_what_is_used() {
        let one = footprint(&contact("c-00000"), &state(1));
        // Room for about 40 states a shard.
        let capacity = one * 40 * SHARDS;
        let cache = cache(capacity);
        let hot = contact("hot");
        for i in 0..100_000u64 {
            cache.written([(&contact(&format!("c-{i:05}")), &state(1))], i + 1);
            if i % 100 == 0 {
                assert!(cache.get(&hot).is_some() || i == 0, "lost at {i}");
                if i == 0 {
                    cache.written([(&hot, &state(1))], 1);
                }
            }
        }
        let (bytes, _) = cache.usage();
        assert!(bytes <= capacity + SHARDS * one, "{bytes} > {capacity}");
        let states: usize = (0..SHARDS)
            .map(|shard| {
                let shard = cache.lock(shard);
                shard.young.states.len() + shard.old.states.len()
            })
            .sum();
        assert!(states >= 40 * SHARDS / 2, "only {states} states kept");
    }
}
