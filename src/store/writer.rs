//! The single writer: one thread takes every pending append, assigns sequence numbers,
//! computes hashes, extends the Merkle tree and the contact projections, and commits the
//! whole group in one synced `WriteBatch` (group commit). A result is sent back only after
//! that batch is durable on disk.
//!
//! Apply is a deterministic function of the stored state, the group of requests and the
//! one time read per group: no other clock reads, no randomness (the randomness that seals
//! personal data arrives with the request), no map-order dependence.
//!
//! Personal data is sealed here, under the contact's data key, so the stored entry holds
//! only the digest of the sealed record. An erasure destroys the data key and every
//! sealed record of the contact and suppresses its identities, in the same batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use super::personal::decode_record;
use super::requests::stage_request_index;
use super::{keys, Store, StoreError, TreeHead};
use crate::audit::merkle::Frontier;
use crate::crypto::{seal_record, DataKey, Entropy, IdentityDigest, Keyring};
use crate::ledger::entry::{entry_hash, Entry};
use crate::ledger::projection::{self, ApplyError, ChainHead};
use crate::ledger::{ContactState, Hash};
use crate::metrics::KindLabel;
use crate::model::{ContactId, EventKind, Submission};
use crate::rights::TransitionError;

/// Most events taken into one group commit.
const MAX_GROUP_EVENTS: usize = 8192;
/// Append requests that may wait for the writer before callers are slowed down.
const QUEUE_DEPTH: usize = 4096;

/// Proof that an event is in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Global sequence number.
    pub seq: u64,
    /// Contact sequence number.
    pub contact_seq: u64,
    /// The contact.
    pub contact_id: ContactId,
    /// Entry hash (the Merkle leaf hash).
    pub entry_hash: Hash,
    /// Tree size after the commit that included the entry.
    pub tree_size: u64,
    /// Tree root at that size.
    pub tree_root: Hash,
    /// When the ledger recorded the entry.
    pub recorded_at: DateTime<Utc>,
    /// Whether this is an earlier receipt returned again for an idempotent retry.
    pub replayed: bool,
}

/// Why one event was not appended. Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The event does not fit the contact's state.
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// The idempotency key was used before for a different event.
    #[error("idempotency key {key:?} was already used for a different event (seq {seq})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The entry it produced.
        seq: u64,
    },
    /// The event records an email or phone that an erasure suppressed.
    #[error("suppressed by the erasure recorded at seq {erasure_seq}: this identity was erased and may not be recorded again unless a DPO sets suppression_override with a reason")]
    Suppressed {
        /// The field holding the suppressed identity.
        field: &'static str,
        /// Global seq of the erasure entry.
        erasure_seq: u64,
    },
    /// Personal data arrived without the randomness to seal it (a server defect).
    #[error("personal data arrived without the randomness to seal it")]
    Unsealable,
}

type GroupResult = Result<Vec<Result<Receipt, AppendError>>, StoreError>;
/// Per job, per submission: staged (receipt pending the group's tree head) or rejected.
type Staged = Vec<Vec<Result<Pending, AppendError>>>;

struct Job {
    actor: String,
    submissions: Vec<Submission>,
    reply: oneshot::Sender<GroupResult>,
}

/// Sends appends to the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("events", &self.submissions.len())
            .finish_non_exhaustive()
    }
}

impl WriterHandle {
    /// Appends `submissions` on behalf of `actor`, in order. Returns one result per
    /// submission once every accepted one is durable; a rejected submission writes nothing
    /// and does not affect the others.
    pub async fn append(
        &self,
        actor: &str,
        submissions: Vec<Submission>,
    ) -> Result<Vec<Result<Receipt, AppendError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            actor: actor.to_owned(),
            submissions,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer thread. Join it after dropping every handle to wait until everything it
/// accepted is durable and answered.
#[derive(Debug)]
pub struct WriterThread {
    thread: JoinHandle<()>,
}

impl WriterThread {
    /// Waits for the writer to finish its last group.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

pub(super) fn start(
    store: Store,
    keyring: Arc<Keyring>,
) -> Result<(WriterHandle, WriterThread), StoreError> {
    let head = store.tree_head()?;
    let frontier = store.frontier(head.size)?;
    if frontier.root() != head.root {
        return Err(StoreError::Corrupt(format!(
            "the stored Merkle nodes give a different root than the one recorded for tree size {}",
            head.size
        )));
    }
    let last_recorded_at = store.last_recorded_at()?;
    let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
    let mut writer = Writer {
        store,
        keyring,
        frontier,
        last_recorded_at,
    };
    let thread = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || writer.run(queue))
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
    Ok((WriterHandle { jobs }, WriterThread { thread }))
}

struct Writer {
    store: Store,
    keyring: Arc<Keyring>,
    frontier: Frontier,
    last_recorded_at: Option<DateTime<Utc>>,
}

impl Writer {
    fn run(&mut self, mut queue: mpsc::Receiver<Job>) {
        while let Some(first) = queue.blocking_recv() {
            let mut events = first.submissions.len();
            let mut jobs = vec![first];
            while events < MAX_GROUP_EVENTS {
                match queue.try_recv() {
                    Ok(job) => {
                        events += job.submissions.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            // The one clock read of the group, kept monotonic across the ledger.
            let now = Utc::now().max(self.last_recorded_at.unwrap_or_default());
            self.commit_group(jobs, now);
        }
    }

    fn commit_group(&mut self, jobs: Vec<Job>, now: DateTime<Utc>) {
        let committed = self
            .store
            .space
            .admit()
            .and_then(|()| self.stage_and_commit(&jobs, now));
        match committed {
            Ok((frontier, head, results)) => {
                self.store.space.accepted();
                self.frontier = frontier;
                self.last_recorded_at = Some(now);
                for (job, results) in jobs.into_iter().zip(results) {
                    let receipts = results
                        .into_iter()
                        .map(|r| r.map(|pending| pending.into_receipt(head)))
                        .collect();
                    // A caller that went away still had its entries committed.
                    let _ = job.reply.send(Ok(receipts));
                }
            }
            Err(err) => {
                if err.is_out_of_space() {
                    // Logged once when refusals start, not once per group.
                    self.store.space.refuse(&err);
                } else {
                    tracing::error!(cause = %err, "group commit failed; nothing of it was written");
                }
                for job in jobs {
                    let _ = job.reply.send(Err(err.duplicate()));
                }
            }
        }
    }

    /// Stages every submission of the group and commits them in one synced batch.
    fn stage_and_commit(
        &self,
        jobs: &[Job],
        now: DateTime<Utc>,
    ) -> Result<(Frontier, TreeHead, Staged), StoreError> {
        let mut group = Group::new(&self.store, &self.keyring, self.frontier.clone(), now);
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut job_results = Vec::with_capacity(job.submissions.len());
            for submission in &job.submissions {
                job_results.push(group.apply(&job.actor, submission)?);
            }
            results.push(job_results);
        }
        let (frontier, head) = group.commit()?;
        Ok((frontier, head, results))
    }
}

/// A receipt whose tree head is known only once the group commits.
#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    contact_seq: u64,
    contact_id: ContactId,
    entry_hash: Hash,
    recorded_at: DateTime<Utc>,
    /// For a replay of a key stored by an earlier group: the original receipt.
    replay_of: Option<Receipt>,
    /// Whether this answers a retry.
    replayed: bool,
}

impl Pending {
    fn into_receipt(self, head: TreeHead) -> Receipt {
        match self.replay_of {
            Some(original) => Receipt {
                replayed: true,
                ..original
            },
            None => Receipt {
                seq: self.seq,
                contact_seq: self.contact_seq,
                contact_id: self.contact_id,
                entry_hash: self.entry_hash,
                tree_size: head.size,
                tree_root: head.root,
                recorded_at: self.recorded_at,
                replayed: self.replayed,
            },
        }
    }
}

/// An idempotency record: the digest of the request that used the key, and what it
/// produced (the receipt is completed at commit).
#[derive(Debug, Clone)]
struct KeyUse {
    request_digest: Hash,
    pending: Pending,
}

/// The entries of one group commit, staged in one `WriteBatch` with overlays so that later
/// events in the group see earlier ones.
struct Group<'s> {
    store: &'s Store,
    keyring: &'s Keyring,
    frontier: Frontier,
    now: DateTime<Utc>,
    batch: WriteBatch,
    /// The leaves the group adds, from leaf index `frontier.size()` at its start.
    leaves: Vec<Hash>,
    /// Merkle nodes and contact-index rows completed by the group, written at commit in
    /// key order (see [`Group::commit`]).
    nodes: Vec<([u8; 9], Hash)>,
    index_rows: Vec<(Vec<u8>, [u8; 8])>,
    states: HashMap<ContactId, ContactState>,
    /// Heads of the ledger's own chains touched by the group.
    internal_heads: HashMap<ContactId, ChainHead>,
    key_uses: HashMap<String, KeyUse>,
    /// Keys first used in this group, in order (written at commit with the final head).
    new_keys: Vec<String>,
    /// Data keys created, used or destroyed (`None`) in this group.
    data_keys: HashMap<ContactId, Option<DataKey>>,
    /// Sealed records staged in this group: contact -> (seq, contact seq, sealed bytes).
    sealed: HashMap<ContactId, Vec<(u64, u64, Vec<u8>)>>,
    /// Identities suppressed by erasures in this group, with the erasure's seq.
    suppressed: HashMap<IdentityDigest, u64>,
    /// Request ids opened in this group.
    opened_requests: HashSet<String>,
    /// Kinds of the entries accepted, for the metrics.
    accepted: Vec<&'static str>,
}

impl<'s> Group<'s> {
    fn new(store: &'s Store, keyring: &'s Keyring, frontier: Frontier, now: DateTime<Utc>) -> Self {
        Self {
            store,
            keyring,
            frontier,
            now,
            batch: WriteBatch::default(),
            leaves: Vec::new(),
            nodes: Vec::new(),
            index_rows: Vec::new(),
            states: HashMap::new(),
            internal_heads: HashMap::new(),
            key_uses: HashMap::new(),
            new_keys: Vec::new(),
            data_keys: HashMap::new(),
            sealed: HashMap::new(),
            suppressed: HashMap::new(),
            opened_requests: HashSet::new(),
            accepted: Vec::new(),
        }
    }

    /// The contact's data key as this group sees it.
    fn data_key(&self, contact: &ContactId) -> Result<Option<DataKey>, StoreError> {
        match self.data_keys.get(contact) {
            Some(key) => Ok(key.clone()),
            None => self.store.data_key(contact, self.keyring),
        }
    }

    fn suppressed_by(&self, identity: &IdentityDigest) -> Result<Option<u64>, StoreError> {
        match self.suppressed.get(identity) {
            Some(seq) => Ok(Some(*seq)),
            None => self.store.suppressed_by(identity),
        }
    }

    /// Seals the submission's personal data for the entry at `contact_seq`: returns the
    /// sealed record and, for a contact without a data key, the new key to store.
    fn seal(
        &self,
        submission: &Submission,
        contact_seq: u64,
    ) -> Result<Result<Option<Sealed>, AppendError>, StoreError> {
        let Some(personal) = submission.personal.as_ref().filter(|p| !p.is_empty()) else {
            return Ok(Ok(None));
        };
        let Some(entropy) = submission.entropy.map(Entropy::from_bytes) else {
            return Ok(Err(AppendError::Unsealable));
        };
        let contact = &submission.event.contact_id;
        let event = &submission.event.kind;
        if event.suppression_override().is_none() {
            for identity in self.keyring.identity_digests(personal) {
                if let Some(erasure_seq) = self.suppressed_by(&identity)? {
                    let field = match event {
                        EventKind::ProfileUpdated(_) => "profile_updated.personal",
                        _ => "contact_registered.personal",
                    };
                    return Ok(Err(AppendError::Suppressed { field, erasure_seq }));
                }
            }
        }
        let (key, new_key) = match self.data_key(contact)? {
            Some(key) => (key, None),
            None => {
                let key = entropy.data_key();
                let wrapped = self.keyring.wrap_data_key(contact.as_str(), &key, &entropy);
                (key, Some(wrapped))
            }
        };
        let plain = serde_json::to_vec(personal).expect("personal records always serialize");
        let record = seal_record(&key, contact.as_str(), contact_seq, &entropy, &plain);
        Ok(Ok(Some(Sealed {
            record,
            key,
            new_key,
        })))
    }

    /// Stages the destruction of the contact's data key and every sealed record, and the
    /// suppression of every identity those records held, for the erasure entry `seq`.
    fn stage_erasure(&mut self, contact: &ContactId, seq: u64) -> Result<(), StoreError> {
        let key = self.data_key(contact)?;
        let mut records = Vec::new();
        for item in self.store.contact_index(contact, 1) {
            let (contact_seq, entry_seq) = item?;
            if let Some(sealed) = self.store.sealed_record(entry_seq)? {
                records.push((entry_seq, contact_seq, sealed));
            }
        }
        records.extend(self.sealed.remove(contact).unwrap_or_default());
        let db = self.store;
        let mut purged = Vec::with_capacity(records.len() * 8);
        for (entry_seq, contact_seq, sealed) in records {
            match key
                .as_ref()
                .map(|key| decode_record(key, contact, contact_seq, &sealed))
            {
                Some(Ok(record)) => {
                    for identity in self.keyring.identity_digests(&record) {
                        self.batch
                            .put_cf(db.cf(keys::SUPPRESSION), identity, seq.to_be_bytes());
                        self.suppressed.insert(identity, seq);
                    }
                }
                // Still deleted: what does not open cannot be suppressed, only destroyed.
                Some(Err(err)) => {
                    tracing::warn!(contact = %contact, seq = entry_seq, cause = %err, "erasing a sealed record that does not open");
                }
                None => {
                    tracing::warn!(contact = %contact, seq = entry_seq, "erasing a sealed record whose data key is already gone");
                }
            }
            self.batch
                .delete_cf(db.cf(keys::PII), keys::seq_key(entry_seq));
            purged.extend_from_slice(&entry_seq.to_be_bytes());
        }
        self.batch.delete_cf(db.cf(keys::KEYS), contact.as_str());
        self.data_keys.insert(contact.clone(), None);
        self.batch
            .put_cf(db.cf(keys::META), keys::purge_key(contact.as_str()), purged);
        Ok(())
    }

    fn state(&mut self, contact: &ContactId) -> Result<Option<ContactState>, StoreError> {
        if let Some(state) = self.states.get(contact) {
            return Ok(Some(state.clone()));
        }
        self.store.contact_state(contact)
    }

    fn key_use(&mut self, key: &str) -> Result<Option<KeyUse>, StoreError> {
        if let Some(used) = self.key_uses.get(key) {
            return Ok(Some(used.clone()));
        }
        let stored = self
            .store
            .db
            .get_pinned_cf(self.store.cf(keys::IDEMPOTENCY), key)?;
        stored
            .map(|bytes| decode_key_use(&bytes))
            .transpose()
            .map_err(StoreError::Corrupt)
    }

    /// Stages one submission, or says why it cannot be appended. A storage error fails
    /// the whole group.
    fn apply(
        &mut self,
        actor: &str,
        submission: &Submission,
    ) -> Result<Result<Pending, AppendError>, StoreError> {
        let event = &submission.event;
        let request_digest = request_digest(self.keyring, submission);
        if let Some(key) = &event.idempotency_key {
            if let Some(used) = self.key_use(key.as_str())? {
                if used.request_digest != request_digest {
                    return Ok(Err(AppendError::IdempotencyConflict {
                        key: key.as_str().to_owned(),
                        seq: used.pending.seq,
                    }));
                }
                // The original receipt (completed at commit if first used in this group).
                return Ok(Ok(Pending {
                    replayed: true,
                    ..used.pending
                }));
            }
        }

        let internal = event.contact_id.is_reserved();
        let (state, head) = if internal {
            let head = match self.internal_heads.get(&event.contact_id) {
                Some(head) => Some(*head),
                None => self.store.chain_head(&event.contact_id)?,
            };
            (None, head)
        } else {
            let state = self.state(&event.contact_id)?;
            let head = state.as_ref().map(|s| ChainHead {
                head_contact_seq: s.head_contact_seq,
                head_hash: s.head_hash,
            });
            (state, head)
        };
        let (contact_seq, prev_hash) = head.map_or((1, crate::ledger::ZERO_HASH), |h| {
            (h.head_contact_seq + 1, h.head_hash)
        });
        let sealed = match self.seal(submission, contact_seq)? {
            Ok(sealed) => sealed,
            Err(refused) => return Ok(Err(refused)),
        };
        let seq = self.frontier.size() + 1;
        let entry = Entry::recording(
            (seq, contact_seq, prev_hash),
            event,
            actor,
            self.now,
            sealed.as_ref().map(|s| s.record.as_slice()),
        );
        let bytes = entry.encode();
        let hash = entry_hash(&bytes);
        let next = if internal {
            projection::apply_internal(head.as_ref(), &entry, hash).map(Next::Internal)
        } else {
            projection::apply(state.as_ref(), &entry, hash).map(|s| Next::Contact(Box::new(s)))
        };
        let next = match next {
            Ok(next) => next,
            Err(rejected) => return Ok(Err(rejected.into())),
        };
        if let EventKind::RequestOpened { request_id, .. } = &event.kind {
            if self.store.request_contact(request_id)?.is_some()
                || !self.opened_requests.insert(request_id.clone())
            {
                return Ok(Err(ApplyError::Request(TransitionError {
                    rule: "request_id_unique",
                    message: format!("request id {request_id} is already taken"),
                })
                .into()));
            }
        }

        // Accepted: stage everything it touches.
        let db = self.store;
        self.batch
            .put_cf(db.cf(keys::ENTRIES), keys::seq_key(seq), &bytes);
        self.index_rows.push((
            keys::contact_index_key(event.contact_id.as_str(), contact_seq),
            keys::seq_key(seq),
        ));
        if let Some(sealed) = sealed {
            if let Some(wrapped) = &sealed.new_key {
                self.batch
                    .put_cf(db.cf(keys::KEYS), event.contact_id.as_str(), wrapped);
            }
            self.batch
                .put_cf(db.cf(keys::PII), keys::seq_key(seq), &sealed.record);
            self.data_keys
                .insert(event.contact_id.clone(), Some(sealed.key));
            self.sealed
                .entry(event.contact_id.clone())
                .or_default()
                .push((seq, contact_seq, sealed.record));
        }
        if matches!(event.kind, EventKind::ErasureExecuted { .. }) {
            self.stage_erasure(&event.contact_id, seq)?;
        }
        let nodes = &mut self.nodes;
        self.frontier.push_each(hash, |node| {
            if node.level >= keys::FIRST_STORED_NODE_LEVEL {
                nodes.push((keys::merkle_key(node.level, node.index), node.hash));
            }
        });
        self.leaves.push(hash);
        match next {
            Next::Contact(next) => {
                if let Some(id) = event.kind.request_id() {
                    stage_request_index(
                        self.store,
                        &mut self.batch,
                        &event.contact_id,
                        id,
                        state.as_ref(),
                        &next,
                    );
                }
                self.states.insert(event.contact_id.clone(), *next);
            }
            Next::Internal(head) => {
                self.internal_heads.insert(event.contact_id.clone(), head);
            }
        }
        self.accepted.push(event.kind.name());
        let pending = Pending {
            seq,
            contact_seq,
            contact_id: event.contact_id.clone(),
            entry_hash: hash,
            recorded_at: self.now,
            replay_of: None,
            replayed: false,
        };
        if let Some(key) = &event.idempotency_key {
            self.key_uses.insert(
                key.as_str().to_owned(),
                KeyUse {
                    request_digest,
                    pending: pending.clone(),
                },
            );
            self.new_keys.push(key.as_str().to_owned());
        }
        Ok(Ok(pending))
    }

    /// Stages the tiles the group's leaves go in (after the nodes: tiles sort after
    /// them). The first continues the last tile written, if that one was not full.
    fn stage_leaf_tiles(&mut self) -> Result<(), StoreError> {
        if self.leaves.is_empty() {
            return Ok(());
        }
        let first = self.frontier.size() - self.leaves.len() as u64;
        let merkle = self.store.cf(keys::MERKLE);
        let mut tile_index = first / keys::LEAVES_PER_TILE;
        let held = (first % keys::LEAVES_PER_TILE) as usize * 32;
        let mut tile = Vec::with_capacity(keys::TILE_BYTES);
        if held > 0 {
            let row = self
                .store
                .db
                .get_pinned_cf(merkle, keys::leaf_tile_key(tile_index))?;
            match row.as_deref() {
                Some(row) if row.len() == held => tile.extend_from_slice(row),
                _ => {
                    let detail = format!(
                        "the Merkle leaf tile {tile_index} does not hold the {} leaves written to it",
                        held / 32
                    );
                    return Err(StoreError::Corrupt(detail));
                }
            }
        }
        for leaf in &self.leaves {
            tile.extend_from_slice(leaf);
            if tile.len() == keys::TILE_BYTES {
                self.batch
                    .put_cf(merkle, keys::leaf_tile_key(tile_index), &tile);
                tile.clear();
                tile_index += 1;
            }
        }
        if !tile.is_empty() {
            self.batch
                .put_cf(merkle, keys::leaf_tile_key(tile_index), &tile);
        }
        Ok(())
    }

    /// Writes the group in one synced batch. Returns the new frontier and tree head.
    fn commit(mut self) -> Result<(Frontier, TreeHead), StoreError> {
        let head = TreeHead {
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        if self.states.is_empty() && self.internal_heads.is_empty() {
            // Nothing accepted (only rejections and replays): nothing to write.
            return Ok((self.frontier, head));
        }
        let db = self.store;
        // Each family's rows go to its memtable in key order: a skip list inserts a key
        // next to the one before it cheaply, and far from it at the cost of a search from
        // the top (Merkle levels interleave, contacts come in any order). Keys within each
        // list are distinct, so the order changes nothing that is written.
        self.nodes.sort_unstable_by_key(|node| node.0);
        for (key, hash) in &self.nodes {
            self.batch.put_cf(db.cf(keys::MERKLE), key, hash);
        }
        self.stage_leaf_tiles()?;
        self.index_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, seq) in &self.index_rows {
            self.batch.put_cf(db.cf(keys::CONTACT_INDEX), key, seq);
        }
        let mut states: Vec<_> = self.states.iter().collect();
        states.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (contact, state) in states {
            let bytes = projection::encode_state(state);
            self.batch
                .put_cf(db.cf(keys::STATE), contact.as_str(), bytes);
        }
        for (chain, chain_head) in &self.internal_heads {
            let bytes = projection::encode_state(chain_head);
            self.batch.put_cf(db.cf(keys::STATE), chain.as_str(), bytes);
        }
        for key in &self.new_keys {
            if let Some(used) = self.key_uses.get(key) {
                let receipt = used.pending.clone().into_receipt(head);
                self.batch.put_cf(
                    db.cf(keys::IDEMPOTENCY),
                    key,
                    encode_key_use(&used.request_digest, &receipt),
                );
            }
        }
        let meta = db.cf(keys::META);
        self.batch
            .put_cf(meta, keys::META_TREE_SIZE, head.size.to_be_bytes());
        self.batch.put_cf(meta, keys::META_TREE_ROOT, head.root);
        let nanos = self.now.timestamp_nanos_opt().unwrap_or_default() as u64;
        self.batch
            .put_cf(meta, keys::META_LAST_RECORDED_AT, nanos.to_be_bytes());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let started = std::time::Instant::now();
        db.db.write_opt(self.batch, &sync)?;
        let metrics = db.metrics();
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.group_events.observe(self.accepted.len() as f64);
        let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
        for kind in self.accepted {
            *by_kind.entry(kind).or_default() += 1;
        }
        for (kind, count) in by_kind {
            metrics
                .appends
                .get_or_create(&KindLabel { kind })
                .inc_by(count);
        }
        Ok((self.frontier, head))
    }
}

/// Personal data sealed for one entry.
struct Sealed {
    record: Vec<u8>,
    key: DataKey,
    /// The wrapped key, when the contact had none before.
    new_key: Option<Vec<u8>>,
}

/// What an accepted entry makes of its chain's state.
enum Next {
    Contact(Box<ContactState>),
    Internal(ChainHead),
}

/// Digest of everything the client sent for one event, personal data included, so a retry
/// is recognised only if it is the same request. Keyed, so the idempotency record never
/// holds a plain hash of personal data.
fn request_digest(keyring: &Keyring, submission: &Submission) -> Hash {
    let mut request = serde_json::to_vec(&submission.event).expect("events always serialize");
    request.push(0);
    if let Some(personal) = &submission.personal {
        request.extend(serde_json::to_vec(personal).expect("personal records always serialize"));
    }
    keyring.fingerprint(&request)
}

/// `digest(32) seq(8) contact_seq(8) hash(32) tree_size(8) root(32) recorded_at_nanos(8)
/// contact_id(rest)`.
fn encode_key_use(digest: &Hash, receipt: &Receipt) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + receipt.contact_id.as_str().len());
    out.extend_from_slice(digest);
    out.extend_from_slice(&receipt.seq.to_be_bytes());
    out.extend_from_slice(&receipt.contact_seq.to_be_bytes());
    out.extend_from_slice(&receipt.entry_hash);
    out.extend_from_slice(&receipt.tree_size.to_be_bytes());
    out.extend_from_slice(&receipt.tree_root);
    let nanos = receipt
        .recorded_at
        .timestamp_nanos_opt()
        .unwrap_or_default();
    out.extend_from_slice(&nanos.to_be_bytes());
    out.extend_from_slice(receipt.contact_id.as_str().as_bytes());
    out
}

fn decode_key_use(bytes: &[u8]) -> Result<KeyUse, String> {
    const FIXED: usize = 32 + 8 + 8 + 32 + 8 + 32 + 8;
    if bytes.len() <= FIXED {
        return Err("idempotency record is truncated".into());
    }
    let hash_at = |at: usize| -> Hash { bytes[at..at + 32].try_into().unwrap_or_default() };
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let contact_id = std::str::from_utf8(&bytes[FIXED..])
        .ok()
        .and_then(|id| ContactId::parse("contact_id", id).ok())
        .ok_or("idempotency record has a malformed contact id")?;
    let receipt = Receipt {
        seq: u64_at(32),
        contact_seq: u64_at(40),
        contact_id: contact_id.clone(),
        entry_hash: hash_at(48),
        tree_size: u64_at(80),
        tree_root: hash_at(88),
        recorded_at: DateTime::from_timestamp_nanos(u64_at(120) as i64),
        replayed: true,
    };
    Ok(KeyUse {
        request_digest: hash_at(0),
        pending: Pending {
            seq: receipt.seq,
            contact_seq: receipt.contact_seq,
            contact_id,
            entry_hash: receipt.entry_hash,
            recorded_at: receipt.recorded_at,
            replay_of: Some(receipt),
            replayed: true,
        },
    })
}
