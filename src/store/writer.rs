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
use std::task::Poll;
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
/// Fewest events in a group staged while the group before it is being written.
const PIPELINED_EVENTS: usize = 256;
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
type Outcomes = Vec<Vec<Result<Pending, AppendError>>>;

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
    let (handoff, commits) = std::sync::mpsc::sync_channel::<Commit>(0);
    let (report, outcomes) = mpsc::unbounded_channel::<bool>();
    let committing = store.clone();
    let committer = std::thread::Builder::new()
        .name("ledger-commit".into())
        .spawn(move || {
            for commit in commits {
                let written = commit.write(&committing);
                if report.send(written).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the commit thread: {e}")))?;
    let mut writer = Writer {
        store,
        keyring,
        frontier,
        last_recorded_at,
        handoff,
        outcomes,
        in_flight: None,
    };
    let thread = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            writer.run(queue);
            // Everything handed over is written and answered before the thread ends.
            drop(writer);
            if committer.join().is_err() {
                tracing::error!("the ledger commit thread panicked");
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
    Ok((WriterHandle { jobs }, WriterThread { thread }))
}

/// Stages groups and hands them to the commit thread, two deep: while that thread writes
/// and syncs one group, this one stages the next on top of it, reading what the first
/// changed from its [`Changes`] rather than from the store, and takes into it what arrives
/// until the first is written. The next is handed over only once the first is on disk,
/// and is staged again from the store if the first failed. So every group is still one
/// synced batch written in order, and no caller is answered before the entries its
/// receipts name (its own, or for a retry the earlier ones) are durable.
struct Writer {
    store: Store,
    keyring: Arc<Keyring>,
    /// The tree after the last group staged.
    frontier: Frontier,
    last_recorded_at: Option<DateTime<Utc>>,
    handoff: std::sync::mpsc::SyncSender<Commit>,
    /// Whether each group handed over was written, in order.
    outcomes: mpsc::UnboundedReceiver<bool>,
    in_flight: Option<InFlight>,
}

/// The group the commit thread holds, as the writer keeps it until it is known written.
struct InFlight {
    changes: Arc<Changes>,
    /// The tree before it: where the ledger is again if it was not written.
    frontier_before: Frontier,
}

/// A staged group and the callers to answer once it is written.
struct Commit {
    jobs: Vec<Job>,
    outcomes: Outcomes,
    staged: Staged,
}

impl Writer {
    fn run(&mut self, mut queue: mpsc::Receiver<Job>) {
        // A job that could not join the group before it (an erasure behind a group in
        // flight) opens the next one.
        let mut deferred = None;
        while let Some(first) = deferred.take().or_else(|| queue.blocking_recv()) {
            let mut jobs = vec![first];
            gather(&mut queue, &mut jobs);
            // A small group waits for the one in flight, and takes what arrives meanwhile:
            // it costs less to stage than a sync, and staged early it would leave more,
            // smaller groups (more syncs). An erasure reads the contact's sealed records
            // from the store, so it is staged on the store only.
            if self.in_flight.is_some()
                && (jobs.iter().any(erases) || events(&jobs) < PIPELINED_EVENTS)
            {
                self.settle(None);
                gather(&mut queue, &mut jobs);
            }
            // The one clock read of the group, kept monotonic across the ledger. The group
            // stays open at most while the one before it is written.
            let now = Utc::now().max(self.last_recorded_at.unwrap_or_default());
            let before = self.in_flight.as_ref().map(|f| Arc::clone(&f.changes));
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut written = None;
            let staged = self.store.space.admit().and_then(|()| {
                let mut group = Group::new(
                    &self.store,
                    &self.keyring,
                    self.frontier.clone(),
                    now,
                    before.as_deref(),
                );
                for job in &jobs {
                    outcomes.push(stage_job(&mut group, job)?);
                }
                // A large group staged while the one before it is being written takes in
                // every job that arrives until that one is written, as it arrives: staged
                // now, it is ready the moment the commit thread is free, and those callers
                // wait for one sync, not two.
                let mut taken = events(&jobs);
                while before.is_some() && taken < MAX_GROUP_EVENTS {
                    let job = match next_arrival(&mut queue, &mut self.outcomes) {
                        Arrival::Job(job) if erases(&job) => {
                            deferred = Some(job);
                            break;
                        }
                        Arrival::Job(job) => job,
                        Arrival::Written(outcome) => {
                            written = Some(outcome);
                            break;
                        }
                        Arrival::Closed => break,
                    };
                    taken += job.submissions.len();
                    // (Kept before staging, so that a failure answers it too.)
                    jobs.push(job);
                    outcomes.push(stage_job(&mut group, &jobs[jobs.len() - 1])?);
                }
                group.finish()
            });
            let pipelined = before.is_some();
            drop(before);
            let staged = if pipelined && !self.settle(written) {
                self.stage(&jobs, now)
            } else {
                staged.map(|(frontier, staged)| (outcomes, frontier, staged))
            };
            match staged {
                Ok((outcomes, frontier, staged)) => {
                    let frontier_before = std::mem::replace(&mut self.frontier, frontier);
                    let changes = Arc::clone(&staged.changes);
                    self.last_recorded_at = Some(now);
                    let commit = Commit {
                        jobs,
                        outcomes,
                        staged,
                    };
                    match self.handoff.send(commit) {
                        Ok(()) => {
                            self.in_flight = Some(InFlight {
                                changes,
                                frontier_before,
                            })
                        }
                        Err(std::sync::mpsc::SendError(commit)) => {
                            self.frontier = frontier_before;
                            fail(&self.store, commit.jobs, &StoreError::WriterStopped);
                        }
                    }
                }
                Err(err) => fail(&self.store, jobs, &err),
            }
        }
        self.settle(None);
    }

    /// Waits until the group in flight, if any, is written (unless `written` already says
    /// whether it was): if it was not, takes the tree back to before it. (The states it
    /// wrote are in the store's state cache by then.) Returns whether it was written.
    fn settle(&mut self, written: Option<bool>) -> bool {
        let Some(flight) = self.in_flight.take() else {
            return true;
        };
        let written = written.unwrap_or_else(|| self.outcomes.blocking_recv().unwrap_or(false));
        if !written {
            self.frontier = flight.frontier_before;
        }
        written
    }

    /// Stages every submission of the group again, on the store alone: the group it was
    /// staged on was not written.
    fn stage(
        &self,
        jobs: &[Job],
        now: DateTime<Utc>,
    ) -> Result<(Outcomes, Frontier, Staged), StoreError> {
        let mut group = Group::new(&self.store, &self.keyring, self.frontier.clone(), now, None);
        let outcomes = jobs
            .iter()
            .map(|job| stage_job(&mut group, job))
            .collect::<Result<_, _>>()?;
        let (frontier, staged) = group.finish()?;
        Ok((outcomes, frontier, staged))
    }
}

/// Stages each submission of `job` into `group`, in order.
fn stage_job(
    group: &mut Group<'_>,
    job: &Job,
) -> Result<Vec<Result<Pending, AppendError>>, StoreError> {
    job.submissions
        .iter()
        .map(|submission| group.apply(&job.actor, submission))
        .collect()
}

/// Whether `job` executes an erasure.
fn erases(job: &Job) -> bool {
    job.submissions
        .iter()
        .any(|s| matches!(s.event.kind, EventKind::ErasureExecuted { .. }))
}

/// What the writer waits for while a group is being written.
enum Arrival {
    /// An append to stage.
    Job(Job),
    /// The group being written was written (`true`) or not.
    Written(bool),
    /// Nothing more will arrive.
    Closed,
}

/// Blocks until the group being written is settled or a job arrives; the first wins.
fn next_arrival(
    queue: &mut mpsc::Receiver<Job>,
    outcomes: &mut mpsc::UnboundedReceiver<bool>,
) -> Arrival {
    futures::executor::block_on(std::future::poll_fn(|cx| {
        if let Poll::Ready(written) = outcomes.poll_recv(cx) {
            return Poll::Ready(Arrival::Written(written.unwrap_or(false)));
        }
        queue
            .poll_recv(cx)
            .map(|job| job.map_or(Arrival::Closed, Arrival::Job))
    }))
}

impl Commit {
    /// Writes the group in one synced batch and answers its callers. Returns whether it
    /// was written.
    fn write(self, store: &Store) -> bool {
        let Self {
            jobs,
            outcomes,
            staged,
        } = self;
        let head = staged.head();
        match staged.write(store) {
            Ok(()) => {
                store.space.accepted();
                for (job, outcomes) in jobs.into_iter().zip(outcomes) {
                    let receipts = outcomes
                        .into_iter()
                        .map(|r| r.map(|pending| pending.into_receipt(head)))
                        .collect();
                    // A caller that went away still had its entries committed.
                    let _ = job.reply.send(Ok(receipts));
                }
                true
            }
            Err(err) => {
                fail(store, jobs, &err);
                false
            }
        }
    }
}

/// Takes the jobs waiting in the queue into the group, up to [`MAX_GROUP_EVENTS`].
fn gather(queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    let mut taken = events(jobs);
    while taken < MAX_GROUP_EVENTS {
        match queue.try_recv() {
            Ok(job) => {
                taken += job.submissions.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
}

/// The events of `jobs`.
fn events(jobs: &[Job]) -> usize {
    jobs.iter().map(|job| job.submissions.len()).sum()
}

/// Answers every caller of a group that was not written.
fn fail(store: &Store, jobs: Vec<Job>, err: &StoreError) {
    if err.is_out_of_space() {
        // Logged once when refusals start, not once per group.
        store.space.refuse(err);
    } else {
        tracing::error!(cause = %err, "group commit failed; nothing of it was written");
    }
    for job in jobs {
        let _ = job.reply.send(Err(err.duplicate()));
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

/// What a staged group changed that the next group must see while it is being written.
struct Changes {
    states: HashMap<ContactId, Arc<ContactState>>,
    internal_heads: HashMap<ContactId, ChainHead>,
    key_uses: HashMap<String, KeyUse>,
    data_keys: HashMap<ContactId, Option<DataKey>>,
    suppressed: HashMap<IdentityDigest, u64>,
    opened_requests: HashSet<String>,
    /// The tree after the group.
    head: TreeHead,
    /// The leaf tiles the group writes, in order; the last may not be full.
    tiles: Vec<TileRow>,
}

/// A leaf tile's key and bytes.
type TileRow = ([u8; 9], Vec<u8>);

/// A group staged and not yet written: the batch, and the rows written at commit in key
/// order (see [`Staged::write`]).
struct Staged {
    batch: WriteBatch,
    nodes: Vec<([u8; 9], Hash)>,
    index_rows: Vec<(Vec<u8>, [u8; 8])>,
    new_keys: Vec<String>,
    accepted: Vec<&'static str>,
    now: DateTime<Utc>,
    changes: Arc<Changes>,
}

/// The entries of one group commit, staged in one `WriteBatch` with overlays so that later
/// events in the group see earlier ones, on top of the group before it if that one is
/// still being written.
struct Group<'s> {
    store: &'s Store,
    keyring: &'s Keyring,
    before: Option<&'s Changes>,
    frontier: Frontier,
    now: DateTime<Utc>,
    batch: WriteBatch,
    /// The leaves the group adds, from leaf index `frontier.size()` at its start.
    leaves: Vec<Hash>,
    /// Merkle nodes and contact-index rows completed by the group, written at commit in
    /// key order (see [`Group::commit`]).
    nodes: Vec<([u8; 9], Hash)>,
    index_rows: Vec<(Vec<u8>, [u8; 8])>,
    states: HashMap<ContactId, Arc<ContactState>>,
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
    fn new(
        store: &'s Store,
        keyring: &'s Keyring,
        frontier: Frontier,
        now: DateTime<Utc>,
        before: Option<&'s Changes>,
    ) -> Self {
        Self {
            store,
            keyring,
            before,
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
        let staged = self.data_keys.get(contact);
        match staged.or_else(|| self.before?.data_keys.get(contact)) {
            Some(key) => Ok(key.clone()),
            None => self.store.data_key(contact, self.keyring),
        }
    }

    fn suppressed_by(&self, identity: &IdentityDigest) -> Result<Option<u64>, StoreError> {
        let staged = self.suppressed.get(identity);
        match staged.or_else(|| self.before?.suppressed.get(identity)) {
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

    /// The contact's state as this group sees it: staged by the group, by the group in
    /// flight, or written (from the store's state cache, or read from the store: nothing
    /// else writes contact states).
    fn state(&self, contact: &ContactId) -> Result<Option<Arc<ContactState>>, StoreError> {
        let staged = self.states.get(contact);
        match staged.or_else(|| self.before?.states.get(contact)) {
            Some(state) => Ok(Some(Arc::clone(state))),
            None => self.store.contact_state(contact),
        }
    }

    fn chain_head(&self, chain: &ContactId) -> Result<Option<ChainHead>, StoreError> {
        let staged = self.internal_heads.get(chain);
        match staged.or_else(|| self.before?.internal_heads.get(chain)) {
            Some(head) => Ok(Some(*head)),
            None => self.store.chain_head(chain),
        }
    }

    fn key_use(&self, key: &str) -> Result<Option<KeyUse>, StoreError> {
        if let Some(used) = self.key_uses.get(key) {
            return Ok(Some(used.clone()));
        }
        if let Some(before) = self.before {
            if let Some(used) = before.key_uses.get(key) {
                // First used by the group being written: its receipt as that group
                // completes it.
                let original = used.pending.clone().into_receipt(before.head);
                return Ok(Some(KeyUse {
                    request_digest: used.request_digest,
                    pending: Pending {
                        replay_of: Some(original),
                        replayed: true,
                        ..used.pending.clone()
                    },
                }));
            }
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
        // (Only a keyed request is compared with another.)
        let keyed = event
            .idempotency_key
            .as_ref()
            .map(|key| (key.as_str(), request_digest(self.keyring, submission)));
        if let Some((key, digest)) = keyed {
            if let Some(used) = self.key_use(key)? {
                if used.request_digest != digest {
                    return Ok(Err(AppendError::IdempotencyConflict {
                        key: key.to_owned(),
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
            (None, self.chain_head(&event.contact_id)?)
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
            projection::apply(state.as_deref(), &entry, hash).map(|s| Next::Contact(Box::new(s)))
        };
        let next = match next {
            Ok(next) => next,
            Err(rejected) => return Ok(Err(rejected.into())),
        };
        if let EventKind::RequestOpened { request_id, .. } = &event.kind {
            let opened_before = self
                .before
                .is_some_and(|b| b.opened_requests.contains(request_id));
            if opened_before
                || self.store.request_contact(request_id)?.is_some()
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
                        state.as_deref(),
                        &next,
                    );
                }
                self.states
                    .insert(event.contact_id.clone(), Arc::new(*next));
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
        if let Some((key, request_digest)) = keyed {
            self.key_uses.insert(
                key.to_owned(),
                KeyUse {
                    request_digest,
                    pending: pending.clone(),
                },
            );
            self.new_keys.push(key.to_owned());
        }
        Ok(Ok(pending))
    }

    /// The tiles the group's leaves go in. The first continues the last tile written, if
    /// that one was not full.
    fn leaf_tiles(&self) -> Result<Vec<TileRow>, StoreError> {
        let mut tiles = Vec::new();
        if self.leaves.is_empty() {
            return Ok(tiles);
        }
        let first = self.frontier.size() - self.leaves.len() as u64;
        let mut tile_index = first / keys::LEAVES_PER_TILE;
        let held = (first % keys::LEAVES_PER_TILE) as usize * 32;
        let mut tile = Vec::with_capacity(keys::TILE_BYTES);
        if held > 0 {
            let key = keys::leaf_tile_key(tile_index);
            let written_before = self
                .before
                .and_then(|b| b.tiles.last())
                .filter(|(last, _)| *last == key);
            if let Some((_, row)) = written_before {
                tile.extend_from_slice(row);
            } else {
                let row = self
                    .store
                    .db
                    .get_pinned_cf(self.store.cf(keys::MERKLE), key)?;
                tile.extend_from_slice(row.as_deref().unwrap_or_default());
            }
            if tile.len() != held {
                let detail = format!(
                    "the Merkle leaf tile {tile_index} does not hold the {} leaves written to it",
                    held / 32
                );
                return Err(StoreError::Corrupt(detail));
            }
        }
        for leaf in &self.leaves {
            tile.extend_from_slice(leaf);
            if tile.len() == keys::TILE_BYTES {
                tiles.push((keys::leaf_tile_key(tile_index), std::mem::take(&mut tile)));
                tile.reserve(keys::TILE_BYTES);
                tile_index += 1;
            }
        }
        if !tile.is_empty() {
            tiles.push((keys::leaf_tile_key(tile_index), tile));
        }
        Ok(tiles)
    }

    /// The staged group, and the tree after it.
    fn finish(self) -> Result<(Frontier, Staged), StoreError> {
        let tiles = self.leaf_tiles()?;
        let head = TreeHead {
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        let changes = Changes {
            states: self.states,
            internal_heads: self.internal_heads,
            key_uses: self.key_uses,
            data_keys: self.data_keys,
            suppressed: self.suppressed,
            opened_requests: self.opened_requests,
            head,
            tiles,
        };
        let staged = Staged {
            batch: self.batch,
            nodes: self.nodes,
            index_rows: self.index_rows,
            new_keys: self.new_keys,
            accepted: self.accepted,
            now: self.now,
            changes: Arc::new(changes),
        };
        Ok((self.frontier, staged))
    }
}

impl Staged {
    /// The tree after the group.
    fn head(&self) -> TreeHead {
        self.changes.head
    }

    /// Writes the group in one synced batch.
    fn write(self, db: &Store) -> Result<(), StoreError> {
        let Self {
            mut batch,
            mut nodes,
            mut index_rows,
            new_keys,
            accepted,
            now,
            changes,
        } = self;
        let head = changes.head;
        if changes.states.is_empty() && changes.internal_heads.is_empty() {
            // Nothing accepted (only rejections and replays): nothing to write.
            return Ok(());
        }
        // Each family's rows go to its memtable in key order: a skip list inserts a key
        // next to the one before it cheaply, and far from it at the cost of a search from
        // the top (Merkle levels interleave, contacts come in any order). Keys within each
        // list are distinct, so the order changes nothing that is written. Leaf tiles
        // sort after the nodes.
        nodes.sort_unstable_by_key(|node| node.0);
        for (key, hash) in &nodes {
            batch.put_cf(db.cf(keys::MERKLE), key, hash);
        }
        for (key, tile) in &changes.tiles {
            batch.put_cf(db.cf(keys::MERKLE), key, tile);
        }
        index_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, seq) in &index_rows {
            batch.put_cf(db.cf(keys::CONTACT_INDEX), key, seq);
        }
        let mut states: Vec<_> = changes.states.iter().collect();
        states.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (contact, state) in states {
            let bytes = projection::encode_state(state.as_ref());
            batch.put_cf(db.cf(keys::STATE), contact.as_str(), bytes);
        }
        for (chain, chain_head) in &changes.internal_heads {
            let bytes = projection::encode_state(chain_head);
            batch.put_cf(db.cf(keys::STATE), chain.as_str(), bytes);
        }
        for key in &new_keys {
            if let Some(used) = changes.key_uses.get(key) {
                let receipt = used.pending.clone().into_receipt(head);
                batch.put_cf(
                    db.cf(keys::IDEMPOTENCY),
                    key,
                    encode_key_use(&used.request_digest, &receipt),
                );
            }
        }
        let meta = db.cf(keys::META);
        batch.put_cf(meta, keys::META_TREE_SIZE, head.size.to_be_bytes());
        batch.put_cf(meta, keys::META_TREE_ROOT, head.root);
        let nanos = now.timestamp_nanos_opt().unwrap_or_default() as u64;
        batch.put_cf(meta, keys::META_LAST_RECORDED_AT, nanos.to_be_bytes());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let started = std::time::Instant::now();
        db.db.write_opt(batch, &sync)?;
        // Durable: readers may see the group's states from here on, before its callers
        // are answered.
        db.states.written(&changes.states, head.size);
        let metrics = db.metrics();
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.group_events.observe(accepted.len() as f64);
        let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
        for kind in accepted {
            *by_kind.entry(kind).or_default() += 1;
        }
        for (kind, count) in by_kind {
            metrics
                .appends
                .get_or_create(&KindLabel { kind })
                .inc_by(count);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::MasterKey;
    use crate::model::{Event, Registry};
    use crate::proto::v1 as pb;
    use crate::service::convert::submission_from_proto;

    fn submission(contact: &str, key: &str, kind: pb::event::Kind) -> Submission {
        let event = pb::Event {
            contact_id: contact.into(),
            idempotency_key: key.into(),
            kind: Some(kind),
            ..Default::default()
        };
        submission_from_proto(event, &Registry::default(), Utc::now()).unwrap()
    }

    fn personal(contact: &str) -> Option<pb::PersonalData> {
        Some(pb::PersonalData {
            email: format!("{contact}@example.test"),
            name: format!("Name of {contact}"),
            ..Default::default()
        })
    }

    fn registered(contact: &str) -> Submission {
        let kind = pb::event::Kind::ContactRegistered(pb::ContactRegistered {
            country: "DE".into(),
            relationship: Some(pb::Relationship {
                audience: pb::Audience::B2c as i32,
                lifecycle: pb::Lifecycle::Prospect as i32,
            }),
            personal: personal(contact),
            ..Default::default()
        });
        submission(contact, "", kind)
    }

    fn granted(contact: &str, key: &str) -> Submission {
        let kind = pb::event::Kind::ConsentGranted(pb::ConsentGranted {
            purpose: "email_marketing".into(),
            channel: "email".into(),
            method: pb::ConsentMethod::Checkbox as i32,
            notice: Some(pb::Notice {
                id: "newsletter-signup".into(),
                version: "2026-03".into(),
                language: "en".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        submission(contact, key, kind)
    }

    /// (Written by the rights service, not accepted from clients as an event.)
    fn request_opened(contact: &str, id: &str) -> Submission {
        Submission {
            event: Event {
                contact_id: ContactId::parse("contact_id", contact).unwrap(),
                idempotency_key: None,
                occurred_at: None,
                kind: EventKind::RequestOpened {
                    request_id: id.into(),
                    kind: crate::model::RequestKind::Access,
                    regime: crate::model::RequestRegime::Gdpr,
                    channel: "email".into(),
                    objection: None,
                    restriction_ground: None,
                },
            },
            personal: None,
            entropy: None,
        }
    }

    fn policy_activated(version: &str) -> Submission {
        Submission {
            event: Event {
                contact_id: ContactId::parse("contact_id", crate::model::POLICY_CHAIN).unwrap(),
                idempotency_key: None,
                occurred_at: None,
                kind: EventKind::PolicyActivated {
                    version: version.into(),
                    text_sha256: "0".repeat(64),
                },
            },
            personal: None,
            entropy: None,
        }
    }

    /// Two groups in which the second depends on everything the first changed: a
    /// contact's state and chain, its new data key (personal data sealed again), an
    /// idempotency key (retried), a request id (taken), the head of one of the ledger's
    /// own chains, and the open leaf tile.
    fn groups() -> [Vec<Submission>; 2] {
        let first = vec![
            policy_activated("1"),
            registered("a"),
            granted("a", "grant-a"),
            registered("b"),
            request_opened("b", "req-1"),
            granted("b", ""),
        ];
        let update = submission(
            "a",
            "",
            pb::event::Kind::ProfileUpdated(pb::ProfileUpdated {
                personal: personal("a2"),
                ..Default::default()
            }),
        );
        let second = vec![
            update,
            first[2].clone(),
            request_opened("a", "req-1"),
            granted("b", "grant-b"),
            policy_activated("2"),
        ];
        [first, second]
    }

    struct Ledger {
        _dir: tempfile::TempDir,
        store: Store,
        keyring: Keyring,
    }

    impl Ledger {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let keyring = Keyring::new(&MasterKey::from_bytes([7; 32]));
            Self {
                _dir: dir,
                store,
                keyring,
            }
        }

        fn stage(
            &self,
            frontier: Frontier,
            group: &[Submission],
            before: Option<&Changes>,
            now: DateTime<Utc>,
        ) -> (Vec<Result<Pending, AppendError>>, Frontier, Staged) {
            let mut staging = Group::new(&self.store, &self.keyring, frontier, now, before);
            let outcomes = group
                .iter()
                .map(|s| staging.apply("test", s).unwrap())
                .collect();
            let (frontier, staged) = staging.finish().unwrap();
            (outcomes, frontier, staged)
        }

        /// Every row of every family.
        #[allow(clippy::type_complexity)]
        fn rows(&self) -> Vec<(&'static str, Vec<(Box<[u8]>, Box<[u8]>)>)> {
            keys::ALL
                .iter()
                .map(|&family| {
                    let rows = self
                        .store
                        .db
                        .iterator_cf(self.store.cf(family), rocksdb::IteratorMode::Start)
                        .map(Result::unwrap)
                        .collect();
                    (family, rows)
                })
                .collect()
        }
    }

    fn receipts(outcomes: Vec<Result<Pending, AppendError>>, head: TreeHead) -> Vec<String> {
        outcomes
            .into_iter()
            .map(|o| format!("{:?}", o.map(|p| p.into_receipt(head))))
            .collect()
    }

    #[test]
    fn a_group_staged_while_the_one_before_is_written_equals_one_staged_after_it() {
        let [first, second] = groups();
        let times = [Utc::now(), Utc::now() + chrono::Duration::milliseconds(5)];

        // One after the other: the second group reads everything from the store.
        let serial = Ledger::new();
        let start = serial.store.frontier(0).unwrap();
        let (_, frontier, staged) = serial.stage(start, &first, None, times[0]);
        let first_head = staged.head();
        staged.write(&serial.store).unwrap();
        let (outcomes, _, staged) = serial.stage(frontier, &second, None, times[1]);
        let serial_receipts = receipts(outcomes, staged.head());
        staged.write(&serial.store).unwrap();

        // Pipelined: the second is staged on the first's changes before either is written.
        let pipelined = Ledger::new();
        let start = pipelined.store.frontier(0).unwrap();
        let (_, frontier, first_staged) = pipelined.stage(start, &first, None, times[0]);
        let (outcomes, _, second_staged) =
            pipelined.stage(frontier, &second, Some(&first_staged.changes), times[1]);
        let pipelined_receipts = receipts(outcomes, second_staged.head());
        first_staged.write(&pipelined.store).unwrap();
        second_staged.write(&pipelined.store).unwrap();

        assert_eq!(pipelined_receipts, serial_receipts);
        // The retry is answered with the first group's receipt, the reused request id is
        // refused, and everything else is accepted.
        assert!(serial_receipts[1].contains(&format!("tree_size: {}", first_head.size)));
        assert!(serial_receipts[1].contains("replayed: true"));
        assert!(serial_receipts[2].contains("request id req-1 is already taken"));
        assert!(serial_receipts[4].contains("contact_seq: 2"));
        for accepted in [0, 3, 4] {
            assert!(
                serial_receipts[accepted].starts_with("Ok("),
                "{serial_receipts:?}"
            );
        }
        assert_eq!(pipelined.rows(), serial.rows());
        let report = pipelined
            .store
            .verify_ledger(None, None, &mut |_, _| true)
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, 9);
        // Contact a's two sealed records open under the one data key.
        let a = ContactId::parse("contact_id", "a").unwrap();
        let key = pipelined
            .store
            .data_key(&a, &pipelined.keyring)
            .unwrap()
            .unwrap();
        for (contact_seq, seq) in pipelined.store.contact_index(&a, 1).map(Result::unwrap) {
            if let Some(sealed) = pipelined.store.sealed_record(seq).unwrap() {
                decode_record(&key, &a, contact_seq, &sealed).unwrap();
            }
        }
    }

    /// A writer on its own thread, with the test as its commit thread.
    struct Harness {
        jobs: mpsc::Sender<Job>,
        commits: std::sync::mpsc::Receiver<Commit>,
        report: mpsc::UnboundedSender<bool>,
        writing: std::thread::JoinHandle<()>,
    }

    impl Harness {
        fn start(ledger: &Ledger) -> Self {
            let (jobs, queue) = mpsc::channel(4);
            let (handoff, commits) = std::sync::mpsc::sync_channel::<Commit>(0);
            let (report, outcomes) = mpsc::unbounded_channel::<bool>();
            let mut writer = Writer {
                store: ledger.store.clone(),
                keyring: Arc::new(Keyring::new(&MasterKey::from_bytes([7; 32]))),
                frontier: ledger.store.frontier(0).unwrap(),
                last_recorded_at: None,
                handoff,
                outcomes,
                in_flight: None,
            };
            let writing = std::thread::spawn(move || writer.run(queue));
            Self {
                jobs,
                commits,
                report,
                writing,
            }
        }

        fn send(&self, submissions: Vec<Submission>) -> oneshot::Receiver<GroupResult> {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                actor: "test".into(),
                submissions,
                reply,
            };
            self.jobs.blocking_send(job).unwrap();
            answer
        }

        /// The next group handed over (bounded, so that a group the writer never hands
        /// over fails the test).
        fn handed(&self) -> Commit {
            self.commits
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap()
        }

        /// Writes `commit` and tells the writer how that went.
        fn write(&self, commit: Commit, ledger: &Ledger) {
            self.report.send(commit.write(&ledger.store)).unwrap();
        }

        /// Fails `commit` and tells the writer.
        fn fail(&self, commit: Commit, ledger: &Ledger) {
            fail(
                &ledger.store,
                commit.jobs,
                &StoreError::Corrupt("injected".into()),
            );
            self.report.send(false).unwrap();
        }

        /// Waits until the writer has taken every job sent from the queue (bounded, so
        /// that a writer that leaves them there fails the test).
        fn taken(&self) {
            let started = std::time::Instant::now();
            while self.jobs.capacity() < self.jobs.max_capacity() {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "the writer left jobs in its queue"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }

        fn stop(self) {
            drop(self.jobs);
            self.writing.join().unwrap();
        }
    }

    fn first_receipt(answer: oneshot::Receiver<GroupResult>) -> Receipt {
        answer.blocking_recv().unwrap().unwrap().remove(0).unwrap()
    }

    #[test]
    fn a_large_group_takes_in_what_arrives_while_the_one_before_is_written() {
        let ledger = Ledger::new();
        let writer = Harness::start(&ledger);
        let registering = writer.send(vec![registered("a")]);
        let in_flight = writer.handed();
        // A group large enough to be staged on top of the one being written...
        let many = (0..PIPELINED_EVENTS)
            .map(|i| registered(&format!("b{i}")))
            .collect();
        let large = writer.send(many);
        // (Sent once the writer has gathered what was queued with it, which it does the
        // moment it takes it: a job queued by then would join it from the start.)
        writer.taken();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // ...takes in a job that arrives meanwhile (a consent that follows the registration
        // being written), but not an erasure, which waits for a group staged on the store.
        let granting = writer.send(vec![granted("a", "")]);
        let a = ContactId::parse("contact_id", "a").unwrap();
        let erasing = writer.send(vec![crate::store::personal::tests::erasure(&a)]);
        writer.taken();
        writer.write(in_flight, &ledger);
        let next = writer.handed();
        assert_eq!(
            next.jobs
                .iter()
                .map(|job| job.submissions.len())
                .collect::<Vec<_>>(),
            [PIPELINED_EVENTS, 1]
        );
        writer.write(next, &ledger);
        let erasure = writer.handed();
        assert_eq!(erasure.jobs.len(), 1);
        writer.write(erasure, &ledger);

        assert_eq!(first_receipt(registering).seq, 1);
        assert!(large
            .blocking_recv()
            .unwrap()
            .unwrap()
            .iter()
            .all(Result::is_ok));
        let granted = first_receipt(granting);
        assert_eq!(
            (granted.seq, granted.contact_seq),
            (PIPELINED_EVENTS as u64 + 2, 2)
        );
        let erased = first_receipt(erasing);
        assert_eq!(
            (erased.seq, erased.contact_seq),
            (PIPELINED_EVENTS as u64 + 3, 3)
        );
        writer.stop();
        let a = ContactId::parse("contact_id", "a").unwrap();
        assert!(ledger
            .store
            .contact_state(&a)
            .unwrap()
            .unwrap()
            .erased
            .is_some());
        let report = ledger
            .store
            .verify_ledger(None, None, &mut |_, _| true)
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn a_group_staged_on_one_that_failed_is_staged_again_without_it() {
        let ledger = Ledger::new();
        let writer = Harness::start(&ledger);
        let send = |submission: Submission| writer.send(vec![submission]);

        // The first group is handed over; the second, a consent for the contact the first
        // registers, is staged on top of it while it is "being written".
        let registering = send(registered("a"));
        let first = writer.handed();
        let granting = send(granted("a", ""));
        // The first is not written.
        writer.fail(first, &ledger);
        // So the second is staged again on the store alone, where "a" does not exist.
        let second = writer.handed();
        writer.write(second, &ledger);
        assert!(registering.blocking_recv().unwrap().is_err());
        let refused = granting.blocking_recv().unwrap().unwrap();
        assert!(matches!(
            refused[0],
            Err(AppendError::Rejected(ApplyError::NotRegistered))
        ));
        // The tree went back to before the failed group: the next entry is seq 1.
        let registering = send(registered("a"));
        let third = writer.handed();
        writer.write(third, &ledger);
        let receipt = first_receipt(registering);
        assert_eq!((receipt.seq, receipt.tree_size), (1, 1));

        // Contact states the writer keeps once written: a consent that is written, then one
        // that is not, then another. The last follows the first, not the one that failed.
        let grant = |write: bool| {
            let answer = send(granted("a", ""));
            let commit = writer.handed();
            if write {
                writer.write(commit, &ledger);
            } else {
                writer.fail(commit, &ledger);
            }
            answer
                .blocking_recv()
                .unwrap()
                .map(|mut r| r.remove(0).unwrap())
        };
        let written = grant(true).unwrap();
        assert!(grant(false).is_err());
        let last = grant(true).unwrap();
        assert_eq!((written.contact_seq, last.contact_seq, last.seq), (2, 3, 3));
        writer.stop();
        assert_eq!(ledger.store.tree_head().unwrap().size, 3);
        let report = ledger
            .store
            .verify_ledger(None, None, &mut |_, _| true)
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        let state = ledger
            .store
            .contact_state(&ContactId::parse("contact_id", "a").unwrap());
        assert_eq!(state.unwrap().unwrap().head_hash, last.entry_hash);
    }

    /// States read while groups are written, from the state cache or the store, are each
    /// complete at the tree size reported with them: exactly the contact's entries within
    /// that size. With no room in the cache, every read is a miss that may be kept, racing
    /// the commit thread's puts.
    #[test]
    fn states_read_during_appends_are_complete_at_the_size_read_with_them() {
        for state_bytes in [64 << 20, 0] {
            let dir = tempfile::tempdir().unwrap();
            let caches = crate::store::CacheSizes {
                block_bytes: 8 << 20,
                state_bytes,
            };
            let store = Store::open_with_caches(dir.path(), caches).unwrap();
            let keyring = Arc::new(Keyring::new(&MasterKey::from_bytes([7; 32])));
            let (writer, thread) = store.start_writer(keyring).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let append = |submissions| {
                for result in runtime
                    .block_on(writer.append("test", submissions))
                    .unwrap()
                {
                    result.unwrap();
                }
            };
            let contacts = ["a", "b"].map(|c| ContactId::parse("contact_id", c).unwrap());
            append(vec![registered("a"), registered("b")]);
            let done = std::sync::atomic::AtomicBool::new(false);
            let seen = std::thread::scope(|scope| {
                let readers: Vec<_> = (0..2)
                    .map(|n| {
                        let (store, contacts, done) = (&store, &contacts, &done);
                        scope.spawn(move || {
                            let mut seen = Vec::new();
                            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                                let contact = &contacts[seen.len() % 2];
                                let read = if n == 0 {
                                    store.contact_state_with_size(contact).unwrap()
                                } else {
                                    match store.contact_state_from_memory(contact).unwrap() {
                                        Some(read) => read,
                                        None => continue,
                                    }
                                };
                                let state = read.0.unwrap();
                                seen.push((contact.clone(), state.head_contact_seq, read.1));
                            }
                            seen
                        })
                    })
                    .collect();
                // Groups of one and of two, each contact written in some and not others.
                for round in 0..150 {
                    match round % 3 {
                        0 => append(vec![granted("a", "")]),
                        1 => append(vec![granted("b", "")]),
                        _ => append(vec![granted("a", ""), granted("b", "")]),
                    }
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                readers
                    .into_iter()
                    .flat_map(|r| r.join().unwrap())
                    .collect::<Vec<_>>()
            });
            drop(writer);
            thread.join();
            // Each contact's entries, by global seq.
            let seqs = contacts.clone().map(|contact| {
                let (entries, _) = store.history(&contact, 0, usize::MAX).unwrap();
                entries.iter().map(|e| e.entry.seq).collect::<Vec<_>>()
            });
            assert!(seen.len() > 300, "only {} reads", seen.len());
            for (contact, head_contact_seq, size) in seen {
                let entries = &seqs[usize::from(contact.as_str() == "b")];
                let within = entries.iter().filter(|seq| **seq <= size).count() as u64;
                assert_eq!(
                    head_contact_seq, within,
                    "{contact} at size {size}, cache of {state_bytes} bytes"
                );
            }
        }
    }
}
