//! Full verification of the stored ledger, from the stored bytes up: every entry is
//! re-hashed, every Merkle node recomputed and compared, every contact chain re-linked,
//! every personal-data digest checked, and the result compared with the recorded tree
//! head, the contact heads, the contact index, and the signed checkpoints. Reads one
//! RocksDB snapshot, so appends can continue while it runs.

use std::collections::hash_map::Entry as Slot;
use std::sync::mpsc;

use foldhash::{HashMap, HashMapExt as _};

use rocksdb::ReadOptions;
use siphasher::sip128::{Hasher128 as _, SipHasher13};

use super::{keys, Store, StoreError};
use crate::audit::checkpoint::{parse_unverified, TreeCheckpoint, VerifierKey};
use crate::audit::merkle::{empty_root, Frontier, Node};
use crate::ledger::entry::{entry_hash, personal_data_matches, EntryHeader};
use crate::ledger::projection::{decode_state, ChainHead};
use crate::ledger::{Hash, ZERO_HASH};

/// At most this many findings are listed; the count of the rest is kept.
const MAX_FINDINGS: usize = 100;
/// Entries per chunk of the scan; progress is reported after each chunk.
const CHUNK: u64 = 1 << 16;
/// Threads scanning chunks of entries, beside the one walking the tree.
const SCAN_THREADS: u64 = 2;

/// The kind of damage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DamageKind {
    /// An entry's bytes were changed after they were recorded.
    Changed,
    /// An entry (or a run of entries) is missing.
    Missing,
    /// An entry is stored at another entry's position.
    Reordered,
    /// The stored bytes are not an entry.
    Undecodable,
    /// An entry does not link to its contact's previous entry, or a contact's sequence
    /// has a gap.
    ChainBreak,
    /// A personal-data record does not match the digest in its entry.
    DigestMismatch,
    /// A stored Merkle node differs from the hash of the entries beneath it.
    TreeMismatch,
    /// A recorded head (tree size and root, or a contact's head) disagrees with the entries.
    HeadMismatch,
    /// The contact index does not list exactly the stored entries.
    IndexMismatch,
    /// A signed checkpoint does not match the entries, or its signature fails.
    CheckpointMismatch,
    /// The ledger holds fewer entries than a checkpoint the auditor trusts.
    Rollback,
}

/// One finding: the first sequence number concerned, its kind, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Global sequence number concerned (the first of a range; 0 if none applies).
    pub seq: u64,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What was found, for a person.
    pub detail: String,
}

/// The outcome of a full verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    /// Entries read and re-hashed.
    pub entries: u64,
    /// Bytes of entries hashed.
    pub bytes: u64,
    /// The tree size recorded in the ledger.
    pub tree_size: u64,
    /// The root recomputed from the entries.
    pub root: Hash,
    /// Stored checkpoints compared with the recomputed tree.
    pub checkpoints_checked: u64,
    /// Findings in sequence order, those about the ledger as a whole last (at most 100).
    pub damage: Vec<Damage>,
    /// Findings beyond those listed.
    pub more_damage: u64,
}

impl LedgerReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

#[derive(Default)]
struct Findings {
    listed: Vec<Damage>,
    more: u64,
}

impl Findings {
    /// Takes in another part's findings (the list is cut to the first 100 by sequence
    /// number when the report is written).
    fn merge(&mut self, other: Findings) {
        self.listed.extend(other.listed);
        self.more += other.more;
    }

    fn add(&mut self, seq: u64, kind: DamageKind, detail: impl Into<String>) {
        if self.listed.len() < MAX_FINDINGS {
            self.listed.push(Damage {
                seq,
                kind,
                detail: detail.into(),
            });
        } else {
            self.more += 1;
        }
    }
}

fn report_orphan_record(seq: u64, findings: &mut Findings) {
    findings.add(
        seq,
        DamageKind::DigestMismatch,
        format!("a personal-data record is stored for entry {seq}, which is missing"),
    );
}

/// Reads stored Merkle rows in index order with one iterator: the nodes of one level, or
/// the leaves from their tiles.
struct NodeScan<'s> {
    /// The level read; `None` for the leaves.
    level: Option<u8>,
    it: rocksdb::DBRawIteratorWithThreadMode<'s, rocksdb::DB>,
}

impl<'s> NodeScan<'s> {
    /// Reads the leaves from leaf `from` on.
    fn leaves(snapshot: &'s rocksdb::Snapshot<'s>, cf: &rocksdb::ColumnFamily, from: u64) -> Self {
        Self::new(snapshot, cf, None, from)
    }

    /// Reads the stored nodes of `level` from node `from` on.
    fn level(
        snapshot: &'s rocksdb::Snapshot<'s>,
        cf: &rocksdb::ColumnFamily,
        level: u8,
        from: u64,
    ) -> Self {
        Self::new(snapshot, cf, Some(level), from)
    }

    fn new(
        snapshot: &'s rocksdb::Snapshot<'s>,
        cf: &rocksdb::ColumnFamily,
        level: Option<u8>,
        from: u64,
    ) -> Self {
        let mut scan = Self {
            level,
            it: snapshot.raw_iterator_cf_opt(cf, scan_options()),
        };
        scan.it.seek(scan.row_key(from));
        scan
    }

    /// The key of the row that holds node (or leaf) `index`.
    fn row_key(&self, index: u64) -> [u8; 9] {
        match self.level {
            Some(level) => keys::merkle_key(level, index),
            None => keys::leaf_tile_key(index / keys::LEAVES_PER_TILE),
        }
    }

    /// The stored node (or leaf) `index`; asked for in increasing index order.
    fn stored(&mut self, index: u64) -> Result<Option<Hash>, StoreError> {
        let wanted = self.row_key(index);
        let it = &mut self.it;
        // Skip rows before the wanted one: those already read, and any stray ones.
        while let Some(key) = it.key() {
            if key >= wanted.as_slice() {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(match (it.key(), it.value()) {
            (Some(key), Some(row)) if key == wanted.as_slice() => match self.level {
                Some(_) => row.try_into().ok(),
                None => keys::leaf_in_tile(row, index),
            },
            _ => None,
        })
    }
}

/// What the scan of a chunk tells the tree walk, in entry order.
enum TreeInput {
    /// The next leaf of the recomputed tree.
    Leaf(Hash),
    /// A leaf already reported as damaged: nodes above it are not reported again.
    Damaged(u64),
    /// A leaf whose stored hash differs from its entry's hash: the lowest stored node
    /// above it tells whether the entry or the stored leaf was altered.
    Unresolved(u64),
    /// Entries `first..=last` are not stored. A run that a stored entry follows is
    /// reported and their stored leaves stand in for them; a run at the very end is a
    /// rollback, which the conclusion reports against the recorded head.
    Gap(u64, u64),
}

/// A contact's entries within one chunk: the link back of the first, and the last.
struct ContactRun {
    first_seq: u64,
    first_contact_seq: u64,
    first_prev: Hash,
    /// Contact seq and hash of the contact's last entry in the chunk.
    last: (u64, Hash),
}

/// What the scan of one chunk of entries found. The walk hands its emptied `inputs` and
/// `contacts` back to the scanner (see [`ChunkBuffers`]).
struct ChunkScan {
    count: u64,
    bytes_hashed: u64,
    /// The last sequence number stored in the chunk.
    last_stored: Option<u64>,
    inputs: Vec<TreeInput>,
    /// Chains are checked within the chunk; each contact's first link here is checked
    /// against the chunks before it by the walk.
    contacts: HashMap<String, ContactRun>,
    index_digest: u128,
    findings: Findings,
}

/// A chunk scan's buffers, emptied by the walk and sent back to the thread that scans
/// the next chunks: a chunk's leaves take a few megabytes, and memory freshly taken from
/// the system costs a page fault and the zeroing of every page (a tenth of the CPU when
/// each chunk had its own).
#[derive(Default)]
struct ChunkBuffers {
    inputs: Vec<TreeInput>,
    contacts: HashMap<String, ContactRun>,
}

/// What the entry scan found over all chunks, for the conclusion.
struct EntryScan {
    count: u64,
    bytes_hashed: u64,
    /// The last sequence number stored.
    stored_end: u64,
    /// Each contact's last contact seq and entry hash, as the entries chain them.
    contacts: HashMap<String, (u64, Hash)>,
    /// Sum of the contact-index fingerprints the entries imply.
    index_digest: u128,
}

/// Recomputes the tree from the leaves of the chunks, in order: compares every node with
/// the stored one and every checkpoint as the tree reaches its size.
struct TreeWalk<'s> {
    snapshot: &'s rocksdb::Snapshot<'s>,
    merkle: &'s rocksdb::ColumnFamily,
    frontier: Frontier,
    tree: TreeCheck<'s>,
    checkpoints: CheckpointCheck<'s>,
    /// A run of missing entries not yet known to be followed by a stored one.
    gap: Option<(u64, u64)>,
    /// The nodes the last leaf completed (kept to reuse the allocation).
    completed: Vec<Node>,
    findings: Findings,
}

impl<'s> TreeWalk<'s> {
    fn new(
        snapshot: &'s rocksdb::Snapshot<'s>,
        merkle: &'s rocksdb::ColumnFamily,
        checkpoints: &'s rocksdb::ColumnFamily,
        trusted: Option<TreeCheckpoint>,
    ) -> Result<Self, StoreError> {
        let mut walk = Self {
            snapshot,
            merkle,
            frontier: Frontier::new(),
            tree: TreeCheck {
                levels: Vec::new(),
                unresolved_leaves: Vec::new(),
                damaged: Vec::new(),
            },
            checkpoints: CheckpointCheck {
                stored: snapshot.raw_iterator_cf_opt(checkpoints, scan_options()),
                checked: 0,
                mismatch_reported: false,
                latest: None,
                trusted,
                trusted_checked: false,
            },
            gap: None,
            completed: Vec::new(),
            findings: Findings::default(),
        };
        walk.checkpoints.stored.seek_to_first();
        walk.checkpoints
            .reached(&walk.frontier, &mut walk.findings)?;
        Ok(walk)
    }

    fn take(&mut self, input: TreeInput) -> Result<(), StoreError> {
        if let TreeInput::Gap(first, last) = input {
            let run = match self.gap.take() {
                Some((open, end)) if end + 1 == first => (open, last),
                Some(earlier) => {
                    self.fill(earlier)?;
                    (first, last)
                }
                None => (first, last),
            };
            self.gap = Some(run);
            return Ok(());
        }
        // A stored entry follows: the run before it is missing from inside the ledger.
        if let Some(run) = self.gap.take() {
            self.fill(run)?;
        }
        match input {
            TreeInput::Damaged(leaf) => self.tree.mark_damaged(leaf),
            TreeInput::Unresolved(leaf) => self.tree.unresolved_leaves.push(leaf),
            TreeInput::Leaf(leaf) => self.push(leaf)?,
            TreeInput::Gap(..) => {}
        }
        Ok(())
    }

    /// Reports entries `first..=last` as missing and keeps the tree going with their
    /// stored leaves.
    fn fill(&mut self, (first, last): (u64, u64)) -> Result<(), StoreError> {
        self.findings.add(
            first,
            DamageKind::Missing,
            if first == last {
                format!("entry {first} is missing")
            } else {
                format!("entries {first} to {last} are missing")
            },
        );
        let mut leaves = NodeScan::leaves(self.snapshot, self.merkle, first - 1);
        for missing in first..=last {
            let index = missing - 1;
            self.tree.mark_damaged(index);
            let leaf = leaves.stored(index)?.unwrap_or(ZERO_HASH);
            self.push(leaf)?;
        }
        Ok(())
    }

    /// Pushes a leaf into the recomputed tree, compares every node it completes with the
    /// stored node, and checks a checkpoint of the new size.
    fn push(&mut self, leaf: Hash) -> Result<(), StoreError> {
        let mut completed = std::mem::take(&mut self.completed);
        completed.clear();
        self.frontier.push_each(leaf, |node| completed.push(node));
        for &Node { level, index, hash } in completed.iter().skip(1) {
            if level < keys::FIRST_STORED_NODE_LEVEL {
                continue;
            }
            let stored = self.tree.stored(self.snapshot, self.merkle, level, index)?;
            let matches = stored == Some(hash);
            if level == keys::FIRST_STORED_NODE_LEVEL {
                self.tree.resolve(level, index, matches, &mut self.findings);
            }
            if !matches && !self.tree.covers_damage(level, index) {
                let first = (index << level) + 1;
                let last = (index + 1) << level;
                self.findings.add(
                    first,
                    DamageKind::TreeMismatch,
                    match stored {
                        Some(_) => format!("the Merkle node over entries {first} to {last} differs from the hash of those entries"),
                        None => format!("the Merkle node over entries {first} to {last} is missing"),
                    },
                );
                for leaf in (first - 1)..last {
                    self.tree.mark_damaged(leaf);
                }
            }
        }
        self.completed = completed;
        self.checkpoints.reached(&self.frontier, &mut self.findings)
    }
}

/// Walks the stored Merkle nodes above the leaves level by level, in the order the
/// recomputed tree produces them, and classifies mismatches.
struct TreeCheck<'s> {
    /// Scans of the stored levels above the leaves, the lowest first.
    levels: Vec<NodeScan<'s>>,
    /// Leaves whose stored hash differs from their bytes, not yet attributed: the lowest
    /// stored node above them tells whether the entry or the stored leaf was altered.
    unresolved_leaves: Vec<u64>,
    /// Leaf indices already reported as damaged; nodes above them are not reported again.
    damaged: Vec<u64>,
}

impl<'s> TreeCheck<'s> {
    /// The stored node `index` of `level` (a stored level above the leaves), asked for
    /// in index order.
    fn stored(
        &mut self,
        snapshot: &'s rocksdb::Snapshot<'s>,
        cf: &rocksdb::ColumnFamily,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let at = usize::from(level - keys::FIRST_STORED_NODE_LEVEL);
        while self.levels.len() <= at {
            let next = keys::FIRST_STORED_NODE_LEVEL + self.levels.len() as u8;
            self.levels.push(NodeScan::level(snapshot, cf, next, 0));
        }
        self.levels[at].stored(index)
    }

    fn covers_damage(&self, level: u8, index: u64) -> bool {
        let first = index << level;
        let last = first + (1u64 << level) - 1;
        let at = self.damaged.partition_point(|&d| d < first);
        self.damaged.get(at).is_some_and(|&d| d <= last)
    }

    fn mark_damaged(&mut self, leaf: u64) {
        let at = self.damaged.partition_point(|&d| d < leaf);
        if self.damaged.get(at) != Some(&leaf) {
            self.damaged.insert(at, leaf);
        }
    }

    /// Resolves unresolved leaves under a node: if the recomputed node matches the stored
    /// one, the entries are intact and the stored leaf was altered; otherwise the entry was.
    fn resolve(&mut self, level: u8, index: u64, node_matches: bool, findings: &mut Findings) {
        if self.unresolved_leaves.is_empty() {
            return;
        }
        let first = index << level;
        let last = first + (1u64 << level) - 1;
        let (inside, outside): (Vec<u64>, Vec<u64>) = self
            .unresolved_leaves
            .iter()
            .partition(|&&leaf| (first..=last).contains(&leaf));
        self.unresolved_leaves = outside;
        for leaf in inside {
            report_leaf(leaf, node_matches, findings);
            self.mark_damaged(leaf);
        }
    }
}

/// Compares the stored checkpoints, and the one the auditor trusts, with the recomputed
/// tree as it reaches each of their sizes.
struct CheckpointCheck<'s> {
    stored: rocksdb::DBRawIteratorWithThreadMode<'s, rocksdb::DB>,
    checked: u64,
    /// Only the first mismatch is listed: every later checkpoint follows from it.
    mismatch_reported: bool,
    /// The last stored checkpoint reached: (size, stored value).
    latest: Option<(u64, Vec<u8>)>,
    trusted: Option<TreeCheckpoint>,
    trusted_checked: bool,
}

impl CheckpointCheck<'_> {
    /// Called each time the recomputed tree grows (and once when it is empty).
    fn reached(&mut self, frontier: &Frontier, findings: &mut Findings) -> Result<(), StoreError> {
        let size = frontier.size();
        while let (Some(key), Some(value)) = (self.stored.key(), self.stored.value()) {
            let Some(cp_size) = keys::decode_u64(key) else {
                findings.add(
                    0,
                    DamageKind::CheckpointMismatch,
                    "a stored checkpoint has a malformed key",
                );
                self.stored.next();
                continue;
            };
            if cp_size > size {
                break;
            }
            if cp_size == size {
                self.checked += 1;
                let head = value
                    .get(8..)
                    .and_then(|note| std::str::from_utf8(note).ok())
                    .and_then(|note| parse_unverified(note).ok())
                    .map(|(_, head)| head);
                let matches = head.is_some_and(|h| h.size == size && h.root == frontier.root());
                if !matches && !self.mismatch_reported {
                    self.mismatch_reported = true;
                    findings.add(
                        size,
                        DamageKind::CheckpointMismatch,
                        format!("the signed checkpoint of size {size} does not match the entries: the first {size} entries were rewritten after it was signed, or it was altered"),
                    );
                }
                self.latest = Some((cp_size, value.to_vec()));
            }
            self.stored.next();
        }
        self.stored.status()?;
        if let Some(trusted) = self.trusted {
            if trusted.size == size && !self.trusted_checked {
                self.trusted_checked = true;
                if trusted.root != frontier.root() {
                    findings.add(
                        size,
                        DamageKind::CheckpointMismatch,
                        format!("the checkpoint you trust (size {size}) has a different root than the first {size} entries now stored: history before it was rewritten"),
                    );
                }
            }
        }
        Ok(())
    }

    /// After the last entry: checkpoints beyond it mean the log was cut back after they
    /// were signed; the latest checkpoint's signature must verify with `key`.
    fn finish(&mut self, stored_size: u64, key: Option<&VerifierKey>, findings: &mut Findings) {
        while let Some(cp_size) = self.stored.key().map(keys::decode_u64) {
            if let Some(cp_size) = cp_size.filter(|&s| s > stored_size) {
                findings.add(
                    stored_size + 1,
                    DamageKind::Rollback,
                    format!("a signed checkpoint covers {cp_size} entries but only {stored_size} are stored"),
                );
                break;
            }
            self.stored.next();
        }
        if let Some(trusted) = self.trusted.filter(|t| t.size > stored_size) {
            findings.add(
                stored_size + 1,
                DamageKind::Rollback,
                format!("the checkpoint you trust covers {} entries but the ledger now holds {stored_size}: entries {} to {} were removed", trusted.size, stored_size + 1, trusted.size),
            );
        }
        if let (Some(key), Some((size, value))) = (key, &self.latest) {
            let signed = std::str::from_utf8(&value[8..])
                .ok()
                .map(|note| key.open(note));
            if !matches!(signed, Some(Ok(_))) {
                findings.add(*size, DamageKind::CheckpointMismatch, format!("the signature of the latest checkpoint (size {size}) does not verify with the ledger's key"));
            }
        }
    }
}

/// After the entry scan stopped on a table block that cannot be read (it fails its
/// checksum or does not decompress), moves `entries` to the first entry after `from` that
/// a seek reads cleanly, and returns the last entry it passed over and RocksDB's error.
/// `None` when the scan ended without an error.
fn skip_unreadable(
    entries: &mut rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    from: u64,
) -> Result<Option<(u64, rocksdb::Error)>, StoreError> {
    let corrupt = |status: Result<(), rocksdb::Error>| match status {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => Ok(Some(e)),
        Err(e) => Err(StoreError::from(e)),
    };
    let Some(error) = corrupt(entries.status())? else {
        return Ok(None);
    };
    // A block holds a few dozen entries: probe them one by one, so that only those in the
    // damaged block are passed over. A seek past the table's last key, or past the
    // chunk's end, reads nothing and ends the probe.
    let mut resume = from + 1;
    loop {
        entries.seek(keys::seq_key(resume));
        if corrupt(entries.status())?.is_none() {
            return Ok(Some((resume - 1, error)));
        }
        resume += 1;
    }
}

/// Checks that entry `seq`, contact seq `contact_seq` of `contact` naming `prev`, follows
/// `before`: the contact seq and hash of the contact's previous entry, if it has one.
fn check_link(
    findings: &mut Findings,
    seq: u64,
    contact: &str,
    contact_seq: u64,
    prev: &Hash,
    before: Option<(u64, Hash)>,
) {
    let (expected_contact_seq, expected_prev) =
        before.map_or((1, ZERO_HASH), |(cseq, hash)| (cseq + 1, hash));
    if contact_seq != expected_contact_seq {
        findings.add(
            seq,
            DamageKind::ChainBreak,
            format!(
                "entry {seq} is contact seq {contact_seq} of contact {contact}, but the contact's previous entry is contact seq {}",
                expected_contact_seq - 1
            ),
        );
    } else if *prev != expected_prev {
        findings.add(
            seq,
            DamageKind::ChainBreak,
            format!("entry {seq} does not name the hash of contact {contact}'s previous entry"),
        );
    }
}

fn report_leaf(leaf: u64, stored_leaf_altered: bool, findings: &mut Findings) {
    let seq = leaf + 1;
    if stored_leaf_altered {
        findings.add(
            seq,
            DamageKind::TreeMismatch,
            format!("the Merkle leaf recorded for entry {seq} was altered; the entry itself matches the tree above it"),
        );
    } else {
        findings.add(
            seq,
            DamageKind::Changed,
            format!(
                "entry {seq} was changed: its bytes no longer hash to the leaf recorded for it"
            ),
        );
    }
}

impl Store {
    /// Verifies the whole ledger. `key` checks the signature of the latest stored
    /// checkpoint; `trusted` is a checkpoint the auditor saved earlier, which the ledger
    /// must still contain. `progress(done, total)` is called every 65,536 entries; when it
    /// returns false the verification stops with [`StoreError::Cancelled`].
    /// Blocking; reads one snapshot.
    pub fn verify_ledger(
        &self,
        key: Option<&VerifierKey>,
        trusted: Option<TreeCheckpoint>,
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<LedgerReport, StoreError> {
        self.verify_ledger_in_chunks(CHUNK, key, trusted, progress)
    }

    /// [`Store::verify_ledger`], scanning chunks of `chunk_entries` entries (at least 1)
    /// and reporting progress after each: the report is the same whatever the chunk size,
    /// which the tests check with small chunks.
    #[doc(hidden)]
    pub fn verify_ledger_in_chunks(
        &self,
        chunk_entries: u64,
        key: Option<&VerifierKey>,
        trusted: Option<TreeCheckpoint>,
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<LedgerReport, StoreError> {
        let chunk_entries = chunk_entries.max(1);
        let fingerprint = &IndexFingerprint::new()?;
        let snapshot = self.db.snapshot();
        let mut findings = Findings::default();
        let meta = self.cf(keys::META);
        let recorded_size = match snapshot.get_pinned_cf(meta, keys::META_TREE_SIZE)? {
            Some(bytes) => keys::decode_u64(&bytes)
                .ok_or_else(|| StoreError::Corrupt("meta tree_size is not a u64".into()))?,
            None => 0,
        };
        let recorded_root: Option<Hash> = snapshot
            .get_pinned_cf(meta, keys::META_TREE_ROOT)?
            .and_then(|b| b.as_ref().try_into().ok());

        // Over the cores: the entries are scanned in chunks by two threads (hashes,
        // headers, chains and digests within the chunk, stored leaves); this thread takes
        // the chunks in order, links the chains across them and walks the tree above the
        // leaves (nodes, checkpoints); a fourth sums the contact index and then reads the
        // recorded contact heads, so that only their comparison is left after the walk.
        let chunks = recorded_size.div_ceil(chunk_entries).max(1);
        std::thread::scope(|scope| {
            let index_and_heads = scope.spawn(|| {
                let index =
                    sum_contact_index(&snapshot, self.cf(keys::CONTACT_INDEX), fingerprint)?;
                let heads = read_contact_heads(&snapshot, self.cf(keys::STATE))?;
                Ok::<_, StoreError>((index, heads))
            });
            let (mut scans, mut scanners, mut recycle) = (Vec::new(), Vec::new(), Vec::new());
            for first in 0..SCAN_THREADS.min(chunks) {
                let (sender, receiver) = mpsc::sync_channel(1);
                let (give_back, taken_back) = mpsc::channel();
                scans.push(receiver);
                recycle.push(give_back);
                let snapshot = &snapshot;
                scanners.push(scope.spawn(move || {
                    for chunk in (first..chunks).step_by(SCAN_THREADS as usize) {
                        let last = chunk + 1 == chunks;
                        let buffers = taken_back.try_recv().unwrap_or_default();
                        let scanned = self.scan_chunk(
                            snapshot,
                            chunk,
                            chunk_entries,
                            last,
                            fingerprint,
                            buffers,
                        );
                        let failed = scanned.is_err();
                        // The walk stopped (an error, or the caller went away).
                        if sender.send(scanned).is_err() || failed {
                            break;
                        }
                    }
                }));
            }
            let walked = self.walk_chunks(
                &snapshot,
                recorded_size,
                trusted,
                chunks,
                &scans,
                &recycle,
                &mut findings,
                progress,
            );
            drop(scans);
            let scanners_finished = scanners.into_iter().all(|s| s.join().is_ok());
            let (index_sum, heads) = index_and_heads.join().map_err(|_| {
                StoreError::Corrupt("the contact index and heads scan stopped".into())
            })??;
            let (scan, mut walk) = walked?;
            if !scanners_finished {
                return Err(StoreError::Corrupt("an entry scan stopped".into()));
            }
            findings.merge(std::mem::take(&mut walk.findings));
            conclude(
                recorded_size,
                recorded_root,
                key,
                scan,
                walk,
                index_sum,
                &heads,
                findings,
                progress,
            )
        })
    }

    /// Scans chunk `chunk` of `size` entries (the last runs to the end): re-hashes every
    /// stored entry, checks its header, its contact chain within the chunk and its
    /// personal-data digest, and compares it with its stored Merkle leaf.
    fn scan_chunk<'s>(
        &self,
        snapshot: &'s rocksdb::Snapshot<'s>,
        chunk: u64,
        size: u64,
        last: bool,
        fingerprint: &IndexFingerprint,
        ChunkBuffers {
            mut inputs,
            contacts,
        }: ChunkBuffers,
    ) -> Result<ChunkScan, StoreError> {
        let start = chunk * size + 1;
        let end = start.saturating_add(size);
        let bounded = || {
            let mut options = scan_options();
            if !last {
                options.set_iterate_upper_bound(keys::seq_key(end));
            }
            options
        };
        let mut entry_options = bounded();
        // Entry blocks are compressed: a damaged one must fail its checksum rather than
        // decompress into other keys and bytes, so that it is reported as the entries it
        // holds (see [`skip_unreadable`]).
        entry_options.set_verify_checksums(true);
        let mut entries = snapshot.raw_iterator_cf_opt(self.cf(keys::ENTRIES), entry_options);
        let mut personal = snapshot.raw_iterator_cf_opt(self.cf(keys::PII), bounded());
        if chunk == 0 {
            // From the first key: malformed keys sort before seq 1.
            entries.seek_to_first();
            personal.seek_to_first();
        } else {
            entries.seek(keys::seq_key(start));
            personal.seek(keys::seq_key(start));
        }
        let mut leaves = NodeScan::leaves(snapshot, self.cf(keys::MERKLE), start - 1);
        inputs.reserve(size.min(CHUNK) as usize + 1);
        let mut scan = ChunkScan {
            count: 0,
            bytes_hashed: 0,
            last_stored: None,
            inputs,
            contacts,
            index_digest: 0,
            findings: Findings::default(),
        };
        let findings = &mut scan.findings;
        let tree = &mut scan.inputs;
        let mut expected_seq = start;
        // The contact-index row each entry implies.
        let mut row_key = Vec::new();
        loop {
            let (Some(key), Some(bytes)) = (entries.key(), entries.value()) else {
                let Some((last, error)) = skip_unreadable(&mut entries, expected_seq)? else {
                    break;
                };
                // Reported once, as a range; the tree goes on with their stored leaves,
                // and their personal-data records are passed over.
                let first = expected_seq;
                findings.add(
                    first,
                    DamageKind::Undecodable,
                    if first == last {
                        format!("entry {first} cannot be read: the table block holding it is damaged ({error})")
                    } else {
                        format!("entries {first} to {last} cannot be read: the table block holding them is damaged ({error})")
                    },
                );
                for index in first - 1..last {
                    tree.push(TreeInput::Damaged(index));
                    tree.push(TreeInput::Leaf(leaves.stored(index)?.unwrap_or(ZERO_HASH)));
                }
                while let Some(pseq) = personal.key().and_then(keys::decode_u64) {
                    if pseq > last {
                        break;
                    }
                    personal.next();
                }
                personal.status()?;
                scan.last_stored = Some(last);
                expected_seq = last + 1;
                continue;
            };
            let hash = entry_hash(bytes);
            let Some(seq) = keys::decode_u64(key).filter(|&s| s >= 1) else {
                findings.add(
                    0,
                    DamageKind::Undecodable,
                    "a stored entry has a malformed key",
                );
                entries.next();
                continue;
            };
            if seq > expected_seq {
                tree.push(TreeInput::Gap(expected_seq, seq - 1));
            }
            let index = seq - 1;
            scan.count += 1;
            scan.bytes_hashed += bytes.len() as u64;
            let stored_leaf = leaves.stored(index)?;

            let decoded = EntryHeader::decode_with_body(bytes);
            let leaf = match decoded.as_ref().map(|(header, _)| header) {
                Err(err) => {
                    findings.add(
                        seq,
                        DamageKind::Undecodable,
                        format!("entry {seq} does not decode: {err}"),
                    );
                    tree.push(TreeInput::Damaged(index));
                    stored_leaf.unwrap_or(hash)
                }
                Ok(header) if header.seq != seq => {
                    findings.add(
                        seq,
                        DamageKind::Reordered,
                        format!("the entry stored at seq {seq} is entry {} (entries were moved or swapped)", header.seq),
                    );
                    tree.push(TreeInput::Damaged(index));
                    stored_leaf.unwrap_or(hash)
                }
                Ok(header) => {
                    keys::write_contact_index_key(
                        &mut row_key,
                        header.contact_id,
                        header.contact_seq,
                    );
                    scan.index_digest = scan
                        .index_digest
                        .wrapping_add(fingerprint.of(&row_key, seq));
                    match scan.contacts.get_mut(header.contact_id) {
                        Some(run) => {
                            check_link(
                                findings,
                                seq,
                                header.contact_id,
                                header.contact_seq,
                                &header.prev_hash,
                                Some(run.last),
                            );
                            run.last = (header.contact_seq, hash);
                        }
                        None => {
                            scan.contacts.insert(
                                header.contact_id.to_owned(),
                                ContactRun {
                                    first_seq: seq,
                                    first_contact_seq: header.contact_seq,
                                    first_prev: header.prev_hash,
                                    last: (header.contact_seq, hash),
                                },
                            );
                        }
                    }
                    if stored_leaf != Some(hash) {
                        if stored_leaf.is_none() {
                            findings.add(
                                seq,
                                DamageKind::TreeMismatch,
                                format!("the Merkle leaf of entry {seq} is missing"),
                            );
                            tree.push(TreeInput::Damaged(index));
                        } else {
                            tree.push(TreeInput::Unresolved(index));
                        }
                    }
                    hash
                }
            };

            // Personal-data records up to this entry.
            while let (Some(pkey), Some(record)) = (personal.key(), personal.value()) {
                let Some(pseq) = keys::decode_u64(pkey) else {
                    findings.add(
                        0,
                        DamageKind::DigestMismatch,
                        "a personal-data record has a malformed key",
                    );
                    personal.next();
                    continue;
                };
                if pseq > seq {
                    break;
                }
                if pseq < seq {
                    report_orphan_record(pseq, findings);
                } else if stored_leaf == Some(hash) {
                    // (A changed entry is reported as such; its digest means nothing.)
                    let matches = decoded
                        .as_ref()
                        .is_ok_and(|(_, body)| personal_data_matches(body, record));
                    if !matches {
                        findings.add(seq, DamageKind::DigestMismatch, format!("the personal-data record of entry {seq} does not match the digest in the entry"));
                    }
                }
                personal.next();
            }
            personal.status()?;

            tree.push(TreeInput::Leaf(leaf));
            scan.last_stored = Some(seq);
            expected_seq = seq + 1;
            entries.next();
        }
        // Records past the chunk's last stored entry belong to missing entries.
        while let Some(pkey) = personal.key() {
            match keys::decode_u64(pkey) {
                Some(pseq) => report_orphan_record(pseq, findings),
                None => findings.add(
                    0,
                    DamageKind::DigestMismatch,
                    "a personal-data record has a malformed key",
                ),
            }
            personal.next();
        }
        personal.status()?;
        if !last && expected_seq < end {
            tree.push(TreeInput::Gap(expected_seq, end - 1));
        }
        Ok(scan)
    }

    /// Takes the chunks' scans in order: links each contact's chain across them, feeds
    /// their leaves to the tree walk, hands their emptied buffers back to `recycle`, and
    /// reports progress after each.
    #[allow(clippy::too_many_arguments)]
    fn walk_chunks<'s>(
        &'s self,
        snapshot: &'s rocksdb::Snapshot<'s>,
        recorded_size: u64,
        trusted: Option<TreeCheckpoint>,
        chunks: u64,
        scans: &[mpsc::Receiver<Result<ChunkScan, StoreError>>],
        recycle: &[mpsc::Sender<ChunkBuffers>],
        findings: &mut Findings,
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<(EntryScan, TreeWalk<'s>), StoreError> {
        let mut walk = TreeWalk::new(
            snapshot,
            self.cf(keys::MERKLE),
            self.cf(keys::CHECKPOINTS),
            trusted,
        )?;
        let mut total = EntryScan {
            count: 0,
            bytes_hashed: 0,
            stored_end: 0,
            contacts: HashMap::new(),
            index_digest: 0,
        };
        for chunk in 0..chunks {
            let scanner = (chunk % SCAN_THREADS) as usize;
            let mut scan = scans[scanner]
                .recv()
                .map_err(|_| StoreError::Corrupt("an entry scan stopped".into()))??;
            for (contact, run) in scan.contacts.drain() {
                let link = |findings: &mut Findings, contact: &str, before| {
                    check_link(
                        findings,
                        run.first_seq,
                        contact,
                        run.first_contact_seq,
                        &run.first_prev,
                        before,
                    )
                };
                match total.contacts.entry(contact) {
                    Slot::Occupied(mut slot) => {
                        link(findings, slot.key(), Some(*slot.get()));
                        slot.insert(run.last);
                    }
                    Slot::Vacant(slot) => {
                        link(findings, slot.key(), None);
                        slot.insert(run.last);
                    }
                }
            }
            for input in scan.inputs.drain(..) {
                walk.take(input)?;
            }
            // The scanner may have finished: then the buffers are dropped here.
            let _ = recycle[scanner].send(ChunkBuffers {
                inputs: scan.inputs,
                contacts: scan.contacts,
            });
            findings.merge(scan.findings);
            total.count += scan.count;
            total.bytes_hashed += scan.bytes_hashed;
            total.index_digest = total.index_digest.wrapping_add(scan.index_digest);
            total.stored_end = scan.last_stored.unwrap_or(total.stored_end);
            if !progress(total.count, recorded_size.max(total.count)) {
                return Err(StoreError::Cancelled);
            }
        }
        Ok((total, walk))
    }
}

/// Compares what the scan and the walk found with the recorded heads, the contact index and
/// the checkpoints, and writes the report.
#[allow(clippy::too_many_arguments)]
fn conclude(
    recorded_size: u64,
    recorded_root: Option<Hash>,
    key: Option<&VerifierKey>,
    scan: EntryScan,
    walk: TreeWalk<'_>,
    (indexed, malformed_rows): (u128, u64),
    heads: &[RecordedHead],
    mut findings: Findings,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<LedgerReport, StoreError> {
    let TreeWalk {
        frontier,
        mut tree,
        mut checkpoints,
        ..
    } = walk;
    let stored_entries_end = scan.stored_end;
    let count = scan.count;

    // The recorded tree head: entries removed from the end, or entries past it.
    if stored_entries_end < recorded_size {
        findings.add(
            stored_entries_end + 1,
            DamageKind::Missing,
            format!(
                "the ledger records {recorded_size} entries but only {stored_entries_end} are stored: entries {} to {recorded_size} were removed",
                stored_entries_end + 1
            ),
        );
    } else if stored_entries_end > recorded_size {
        findings.add(
            recorded_size + 1,
            DamageKind::HeadMismatch,
            format!("entries {} to {stored_entries_end} are stored beyond the recorded tree size {recorded_size}", recorded_size + 1),
        );
    }
    let root = if frontier.size() == 0 {
        empty_root()
    } else {
        frontier.root()
    };
    // Leaves with no stored node above them yet are judged against the recorded root.
    let root_matches = recorded_root == Some(root) || (recorded_size == 0 && frontier.size() == 0);
    for leaf in std::mem::take(&mut tree.unresolved_leaves) {
        report_leaf(leaf, root_matches, &mut findings);
        tree.mark_damaged(leaf);
    }
    if findings.listed.is_empty() && stored_entries_end == recorded_size && !root_matches {
        findings.add(
            0,
            DamageKind::HeadMismatch,
            "the recorded tree root differs from the root of the stored entries",
        );
    }

    checkpoints.finish(frontier.size(), key, &mut findings);

    // Contact heads and the contact index.
    check_contact_heads(heads, &scan.contacts, &mut findings);
    if malformed_rows > 0 {
        findings.add(
            0,
            DamageKind::IndexMismatch,
            format!("the contact index holds {malformed_rows} malformed rows"),
        );
    }
    if indexed != scan.index_digest {
        findings.add(0, DamageKind::IndexMismatch, "the contact index does not list exactly the stored entries; run VerifyContact on the contacts concerned");
    }

    if !progress(count, recorded_size.max(count)) {
        return Err(StoreError::Cancelled);
    }
    // In sequence order; findings about the ledger as a whole last; at one sequence
    // number, by kind and wording, so the order never depends on how the scan ran.
    findings.listed.sort_by(|a, b| {
        (a.seq == 0, a.seq, a.kind, &a.detail).cmp(&(b.seq == 0, b.seq, b.kind, &b.detail))
    });
    if findings.listed.len() > MAX_FINDINGS {
        findings.more += (findings.listed.len() - MAX_FINDINGS) as u64;
        findings.listed.truncate(MAX_FINDINGS);
    }
    Ok(LedgerReport {
        entries: count,
        bytes: scan.bytes_hashed,
        tree_size: recorded_size,
        root,
        checkpoints_checked: checkpoints.checked,
        damage: findings.listed,
        more_damage: findings.more,
    })
}

/// A contact's recorded state: its id (as stored, lossily decoded) and its chain's head
/// (contact seq and entry hash), or `None` when the state does not decode.
type RecordedHead = (String, Option<(u64, Hash)>);

/// Every contact's recorded head, in key order.
fn read_contact_heads(
    snapshot: &rocksdb::Snapshot<'_>,
    states: &rocksdb::ColumnFamily,
) -> Result<Vec<RecordedHead>, StoreError> {
    let mut options = scan_options();
    // Unlike the families the scan re-hashes, a damaged state block must not decode into
    // other states: it fails its checksum and stops the run with a storage error.
    options.set_verify_checksums(true);
    let mut it = snapshot.raw_iterator_cf_opt(states, options);
    it.seek_to_first();
    let mut heads = Vec::new();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        let head = decode_state::<ChainHead>(value)
            .ok()
            .map(|state| (state.head_contact_seq, state.head_hash));
        heads.push((String::from_utf8_lossy(key).into_owned(), head));
        it.next();
    }
    it.status()?;
    Ok(heads)
}

/// Compares the recorded heads with the heads of the chains as the entries link them.
fn check_contact_heads(
    heads: &[RecordedHead],
    chains: &HashMap<String, (u64, Hash)>,
    findings: &mut Findings,
) {
    let mut seen = 0usize;
    for (contact, head) in heads {
        let Some((head_contact_seq, head_hash)) = *head else {
            findings.add(
                0,
                DamageKind::HeadMismatch,
                format!("the recorded state of contact {contact} does not decode"),
            );
            continue;
        };
        match chains.get(contact) {
            Some(&(cseq, hash)) if cseq == head_contact_seq && hash == head_hash => seen += 1,
            Some(&(cseq, _)) => {
                seen += 1;
                findings.add(0, DamageKind::HeadMismatch, format!("contact {contact}'s recorded head is contact seq {head_contact_seq} but its stored chain ends at {cseq}"));
            }
            None => findings.add(
                0,
                DamageKind::HeadMismatch,
                format!("contact {contact} has a recorded state but no entries"),
            ),
        }
    }
    if seen < chains.len() {
        findings.add(
            0,
            DamageKind::HeadMismatch,
            format!(
                "{} contacts have entries but no recorded state",
                chains.len() - seen
            ),
        );
    }
}

/// Read options for a sequential scan of a column family.
fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
    // Every byte read is checked here against what it must be (entries re-hashed, rows
    // compared or fingerprinted), so RocksDB's block checksums add only their cost (about
    // 5% of the CPU), and a damaged block would stop the verification with a storage
    // error instead of being reported at the entries it holds.
    options.set_verify_checksums(false);
    options.set_readahead_size(4 << 20);
    // A full scan must not evict the blocks that eligibility reads keep hot.
    options.fill_cache(false);
    options
}

/// The sum of the fingerprints of every contact-index row, and the number of malformed
/// rows.
fn sum_contact_index(
    snapshot: &rocksdb::Snapshot<'_>,
    index: &rocksdb::ColumnFamily,
    fingerprint: &IndexFingerprint,
) -> Result<(u128, u64), StoreError> {
    let mut it = snapshot.raw_iterator_cf_opt(index, scan_options());
    it.seek_to_first();
    let (mut sum, mut malformed) = (0u128, 0u64);
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        // Contact id (no zero byte), 0, contact seq (8 bytes); the value an entry's seq.
        let well_formed = key.iter().position(|&b| b == 0) == key.len().checked_sub(9);
        match keys::decode_u64(value).filter(|_| well_formed && key.len() > 9) {
            Some(seq) => sum = sum.wrapping_add(fingerprint.of(key, seq)),
            None => malformed += 1,
        }
        it.next();
    }
    it.status()?;
    Ok((sum, malformed))
}

/// Fingerprints of (contact, contact seq, seq) rows, whose sums over the entries and over
/// the contact index must agree. SipHash with a 128-bit output, a pseudorandom function of
/// its key, keyed with fresh randomness for each verification: rows added to or changed in
/// the index before it starts cannot be chosen so that their fingerprints cancel out, as
/// they could against a fixed hash (a generalized birthday search finds a set of rows
/// whose hashes sum to zero). Whoever changed the rows never sees a fingerprint under the
/// key, so the one or three rounds per word and at the end of SipHash-1-3 (Rust's own
/// keyed hash for untrusted input) are margin enough; SipHash-2-4 was a tenth of the
/// verification's CPU, twice per entry.
struct IndexFingerprint {
    key: (u64, u64),
}

impl IndexFingerprint {
    fn new() -> Result<Self, StoreError> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| StoreError::NoRandomness(e.to_string()))?;
        let key = u128::from_le_bytes(key);
        Ok(Self {
            key: (key as u64, (key >> 64) as u64),
        })
    }

    /// The fingerprint of the contact-index row with key `row_key` (contact id, 0, contact
    /// seq) naming entry `seq`.
    fn of(&self, row_key: &[u8], seq: u64) -> u128 {
        use std::hash::Hasher as _;
        let mut hasher = SipHasher13::new_with_keys(self.key.0, self.key.1);
        hasher.write(row_key);
        hasher.write_u64(seq);
        hasher.finish128().as_u128()
    }
}
