//! Full verification of the stored ledger, from the stored bytes up: every entry is
//! re-hashed, every Merkle node recomputed and compared, every contact chain re-linked,
//! every personal-data digest checked, and the result compared with the recorded tree
//! head, the contact heads, the contact index, and the signed checkpoints. Reads one
//! RocksDB snapshot, so appends can continue while it runs.

use std::collections::HashMap;

use rocksdb::{IteratorMode, ReadOptions};
use sha2::{Digest, Sha256};

use super::{keys, Store, StoreError};
use crate::audit::checkpoint::{parse_unverified, TreeCheckpoint, VerifierKey};
use crate::audit::merkle::{empty_root, Frontier, Node};
use crate::ledger::entry::{entry_hash, personal_data_matches, EntryHeader};
use crate::ledger::projection::{decode_state, ChainHead};
use crate::ledger::{Hash, ZERO_HASH};

/// At most this many findings are listed; the count of the rest is kept.
const MAX_FINDINGS: usize = 100;
/// Progress is reported after this many entries.
const PROGRESS_EVERY: u64 = 1 << 16;

/// The kind of damage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Walks the stored Merkle nodes level by level, in the order the recomputed tree
/// produces them, and classifies mismatches.
struct TreeCheck<'s> {
    levels: Vec<rocksdb::DBRawIteratorWithThreadMode<'s, rocksdb::DB>>,
    /// Leaves whose stored hash differs from their bytes, not yet attributed: the parent
    /// tells whether the entry or the stored leaf was altered.
    unresolved_leaves: Vec<u64>,
    /// Leaf indices already reported as damaged; nodes above them are not reported again.
    damaged: Vec<u64>,
}

impl<'s> TreeCheck<'s> {
    fn stored(
        &mut self,
        snapshot: &'s rocksdb::Snapshot<'s>,
        cf: &rocksdb::ColumnFamily,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let level_usize = usize::from(level);
        while self.levels.len() <= level_usize {
            let mut it = snapshot.raw_iterator_cf_opt(cf, scan_options());
            it.seek(keys::merkle_key(self.levels.len() as u8, 0));
            self.levels.push(it);
        }
        let it = &mut self.levels[level_usize];
        let wanted = keys::merkle_key(level, index);
        // Nodes are asked for in index order: skip any stray nodes before the wanted one.
        while let Some(key) = it.key() {
            if key >= wanted.as_slice() {
                break;
            }
            it.next();
        }
        it.status()?;
        match (it.key(), it.value()) {
            (Some(key), Some(value)) if key == wanted.as_slice() => {
                let hash = value.try_into().ok();
                it.next();
                Ok(hash)
            }
            _ => Ok(None),
        }
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

        let merkle = self.cf(keys::MERKLE);
        let mut tree = TreeCheck {
            levels: Vec::new(),
            unresolved_leaves: Vec::new(),
            damaged: Vec::new(),
        };
        let mut frontier = Frontier::new();
        let mut contacts: HashMap<String, (u64, Hash)> = HashMap::new();
        let mut index_digest = 0u128;

        let mut personal = snapshot.raw_iterator_cf_opt(self.cf(keys::PII), scan_options());
        personal.seek_to_first();
        let mut checkpoints = CheckpointCheck {
            stored: snapshot.raw_iterator_cf_opt(self.cf(keys::CHECKPOINTS), scan_options()),
            checked: 0,
            mismatch_reported: false,
            latest: None,
            trusted,
            trusted_checked: false,
        };
        checkpoints.stored.seek_to_first();

        let (mut count, mut bytes_hashed) = (0u64, 0u64);
        checkpoints.reached(&frontier, &mut findings)?;
        let mut expected_seq = 1u64;
        let mut entries = snapshot.raw_iterator_cf_opt(self.cf(keys::ENTRIES), scan_options());
        entries.seek_to_first();
        while let (Some(key), Some(bytes)) = (entries.key(), entries.value()) {
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
            // Entries missing before this one: keep the tree going with their stored leaves.
            if seq > expected_seq {
                let last_missing = seq - 1;
                findings.add(
                    expected_seq,
                    DamageKind::Missing,
                    if last_missing == expected_seq {
                        format!("entry {expected_seq} is missing")
                    } else {
                        format!("entries {expected_seq} to {last_missing} are missing")
                    },
                );
                for missing in expected_seq..seq {
                    let index = missing - 1;
                    tree.mark_damaged(index);
                    let leaf = tree
                        .stored(&snapshot, merkle, 0, index)?
                        .unwrap_or(ZERO_HASH);
                    self.push_checked(&mut tree, &snapshot, &mut frontier, leaf, &mut findings)?;
                    checkpoints.reached(&frontier, &mut findings)?;
                }
            }
            let index = seq - 1;
            count += 1;
            bytes_hashed += bytes.len() as u64;
            let stored_leaf = tree.stored(&snapshot, merkle, 0, index)?;

            let decoded = EntryHeader::decode_with_body(bytes);
            let leaf = match decoded.as_ref().map(|(header, _)| header) {
                Err(err) => {
                    findings.add(
                        seq,
                        DamageKind::Undecodable,
                        format!("entry {seq} does not decode: {err}"),
                    );
                    tree.mark_damaged(index);
                    stored_leaf.unwrap_or(hash)
                }
                Ok(header) if header.seq != seq => {
                    findings.add(
                        seq,
                        DamageKind::Reordered,
                        format!("the entry stored at seq {seq} is entry {} (entries were moved or swapped)", header.seq),
                    );
                    tree.mark_damaged(index);
                    stored_leaf.unwrap_or(hash)
                }
                Ok(header) => {
                    index_digest = index_digest.wrapping_add(index_fingerprint(
                        header.contact_id,
                        header.contact_seq,
                        seq,
                    ));
                    let (expected_contact_seq, prev) = contacts
                        .get(header.contact_id)
                        .map_or((1, ZERO_HASH), |&(cseq, hash)| (cseq + 1, hash));
                    if header.contact_seq != expected_contact_seq {
                        findings.add(
                            seq,
                            DamageKind::ChainBreak,
                            format!(
                                "entry {seq} is contact seq {} of contact {}, but the contact's previous entry is contact seq {}",
                                header.contact_seq, header.contact_id, expected_contact_seq - 1
                            ),
                        );
                    } else if header.prev_hash != prev {
                        findings.add(
                            seq,
                            DamageKind::ChainBreak,
                            format!(
                                "entry {seq} does not name the hash of contact {}'s previous entry",
                                header.contact_id
                            ),
                        );
                    }
                    match contacts.get_mut(header.contact_id) {
                        Some(head) => *head = (header.contact_seq, hash),
                        None => {
                            contacts
                                .insert(header.contact_id.to_owned(), (header.contact_seq, hash));
                        }
                    }
                    if stored_leaf != Some(hash) {
                        if stored_leaf.is_none() {
                            findings.add(
                                seq,
                                DamageKind::TreeMismatch,
                                format!("the Merkle leaf of entry {seq} is missing"),
                            );
                            tree.mark_damaged(index);
                        } else {
                            tree.unresolved_leaves.push(index);
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
                    findings.add(
                        pseq,
                        DamageKind::DigestMismatch,
                        format!(
                            "a personal-data record is stored for entry {pseq}, which is missing"
                        ),
                    );
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

            self.push_checked(&mut tree, &snapshot, &mut frontier, leaf, &mut findings)?;
            checkpoints.reached(&frontier, &mut findings)?;
            expected_seq = seq + 1;
            if count % PROGRESS_EVERY == 0 && !progress(count, recorded_size.max(count)) {
                return Err(StoreError::Cancelled);
            }
            entries.next();
        }
        entries.status()?;
        let stored_entries_end = expected_seq - 1;

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
        // Leaves with no parent yet are judged against the recorded root.
        let root_matches =
            recorded_root == Some(root) || (recorded_size == 0 && frontier.size() == 0);
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
        self.check_contact_heads(&snapshot, &contacts, &mut findings)?;
        let (indexed, malformed_rows) = sum_contact_index(&snapshot, self.cf(keys::CONTACT_INDEX))?;
        if malformed_rows > 0 {
            findings.add(
                0,
                DamageKind::IndexMismatch,
                format!("the contact index holds {malformed_rows} malformed rows"),
            );
        }
        if indexed != index_digest {
            findings.add(0, DamageKind::IndexMismatch, "the contact index does not list exactly the stored entries; run VerifyContact on the contacts concerned");
        }

        if !progress(count, recorded_size.max(count)) {
            return Err(StoreError::Cancelled);
        }
        // In sequence order; findings about the ledger as a whole last.
        findings.listed.sort_by_key(|d| (d.seq == 0, d.seq));
        Ok(LedgerReport {
            entries: count,
            bytes: bytes_hashed,
            tree_size: recorded_size,
            root,
            checkpoints_checked: checkpoints.checked,
            damage: findings.listed,
            more_damage: findings.more,
        })
    }

    /// Pushes a leaf into the recomputed tree and compares every node it completes with
    /// the stored node.
    fn push_checked<'s>(
        &self,
        tree: &mut TreeCheck<'s>,
        snapshot: &'s rocksdb::Snapshot<'s>,
        frontier: &mut Frontier,
        leaf: Hash,
        findings: &mut Findings,
    ) -> Result<(), StoreError> {
        let merkle = self.cf(keys::MERKLE);
        for Node { level, index, hash } in frontier.push(leaf).into_iter().skip(1) {
            let stored = tree.stored(snapshot, merkle, level, index)?;
            let matches = stored == Some(hash);
            if level == 1 {
                tree.resolve(level, index, matches, findings);
            }
            if !matches && !tree.covers_damage(level, index) {
                let first = (index << level) + 1;
                let last = (index + 1) << level;
                findings.add(
                    first,
                    DamageKind::TreeMismatch,
                    match stored {
                        Some(_) => format!("the Merkle node over entries {first} to {last} differs from the hash of those entries"),
                        None => format!("the Merkle node over entries {first} to {last} is missing"),
                    },
                );
                for leaf in (first - 1)..last {
                    tree.mark_damaged(leaf);
                }
            }
        }
        Ok(())
    }

    fn check_contact_heads(
        &self,
        snapshot: &rocksdb::Snapshot<'_>,
        chains: &HashMap<String, (u64, Hash)>,
        findings: &mut Findings,
    ) -> Result<(), StoreError> {
        let mut seen = 0usize;
        for item in snapshot.iterator_cf(self.cf(keys::STATE), IteratorMode::Start) {
            let (key, value) = item?;
            let contact = String::from_utf8_lossy(&key);
            let state: ChainHead = match decode_state(&value) {
                Ok(state) => state,
                Err(_) => {
                    findings.add(
                        0,
                        DamageKind::HeadMismatch,
                        format!("the recorded state of contact {contact} does not decode"),
                    );
                    continue;
                }
            };
            match chains.get(contact.as_ref()) {
                Some(&(cseq, hash))
                    if cseq == state.head_contact_seq && hash == state.head_hash =>
                {
                    seen += 1
                }
                Some(&(cseq, _)) => {
                    seen += 1;
                    findings.add(0, DamageKind::HeadMismatch, format!("contact {contact}'s recorded head is contact seq {} but its stored chain ends at {cseq}", state.head_contact_seq));
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
        Ok(())
    }
}

/// Read options for a sequential scan of a column family.
fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
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
) -> Result<(u128, u64), StoreError> {
    let mut it = snapshot.raw_iterator_cf_opt(index, scan_options());
    it.seek_to_first();
    let (mut sum, mut malformed) = (0u128, 0u64);
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        let row = key.iter().position(|&b| b == 0).and_then(|at| {
            Some((
                std::str::from_utf8(&key[..at]).ok()?,
                keys::decode_u64(&key[at + 1..])?,
                keys::decode_u64(value)?,
            ))
        });
        match row {
            Some((contact, contact_seq, seq)) => {
                sum = sum.wrapping_add(index_fingerprint(contact, contact_seq, seq))
            }
            None => malformed += 1,
        }
        it.next();
    }
    it.status()?;
    Ok((sum, malformed))
}

/// An order-independent fingerprint of one (contact, contact seq, seq) row; the sums over
/// the entries and over the index must agree.
fn index_fingerprint(contact: &str, contact_seq: u64, seq: u64) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(contact.as_bytes());
    hasher.update([0]);
    hasher.update(contact_seq.to_be_bytes());
    hasher.update(seq.to_be_bytes());
    let digest = hasher.finalize();
    u128::from_be_bytes(digest[..16].try_into().unwrap_or_default())
}
