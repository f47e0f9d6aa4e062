//! Signed checkpoints: issuing them for the current tree head, keeping every one, and
//! reading them back. A checkpoint is written only after the tree head it signs is
//! durable, and is itself synced before it is returned.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rocksdb::{Direction, IteratorMode, WriteOptions};

use super::{keys, Store, StoreError};
use crate::audit::checkpoint::{parse_unverified, sign_checkpoint, SigningKey, TreeCheckpoint};
use crate::ledger::Hash;

/// A checkpoint as kept by the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it signs.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// The signed note, exactly as issued.
    pub note: String,
}

impl StoredCheckpoint {
    fn decode(key: &[u8], value: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("stored checkpoint: {what}"));
        let size = keys::decode_u64(key).ok_or_else(|| corrupt("key is not a u64"))?;
        let (nanos, note) = value
            .split_at_checked(8)
            .ok_or_else(|| corrupt("value is too short"))?;
        let nanos = keys::decode_u64(nanos).ok_or_else(|| corrupt("bad time"))?;
        let note = std::str::from_utf8(note).map_err(|_| corrupt("note is not UTF-8"))?;
        let (_, head) = parse_unverified(note).map_err(|e| corrupt(&e.to_string()))?;
        if head.size != size {
            return Err(corrupt(&format!(
                "note for size {} is stored under size {size}",
                head.size
            )));
        }
        Ok(Self {
            size,
            root: head.root,
            issued_at: DateTime::from_timestamp_nanos(nanos as i64),
            note: note.to_owned(),
        })
    }
}

impl Store {
    /// The latest checkpoint, if any was issued.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.checkpoints_from(IteratorMode::End, 1)
            .map(|mut found| found.pop())
    }

    /// The checkpoint that signs exactly `size` entries, if one was issued.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.db
            .get_cf(self.cf(keys::CHECKPOINTS), keys::seq_key(size))?
            .map(|value| StoredCheckpoint::decode(&keys::seq_key(size), &value))
            .transpose()
    }

    /// Up to `limit` checkpoints of size at least `from`, smallest first.
    pub fn checkpoints(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let start = keys::seq_key(from);
        self.checkpoints_from(IteratorMode::From(&start, Direction::Forward), limit)
    }

    fn checkpoints_from(
        &self,
        mode: IteratorMode<'_>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.db
            .iterator_cf(self.cf(keys::CHECKPOINTS), mode)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                StoredCheckpoint::decode(&key, &value)
            })
            .collect()
    }

    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(8 + checkpoint.note.len());
        let nanos = checkpoint
            .issued_at
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0) as u64;
        value.extend_from_slice(&nanos.to_be_bytes());
        value.extend_from_slice(checkpoint.note.as_bytes());
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.put_cf_opt(
            self.cf(keys::CHECKPOINTS),
            keys::seq_key(checkpoint.size),
            value,
            &options,
        )?;
        Ok(())
    }
}

/// Issues signed checkpoints of a store's tree. Cheap to clone; one checkpoint is signed
/// at a time.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    store: Store,
    key: Arc<SigningKey>,
    issuing: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// Signs checkpoints of `store` with `key`; the key name is the log's origin.
    pub fn new(store: Store, key: SigningKey) -> Self {
        Self {
            store,
            key: Arc::new(key),
            issuing: Arc::new(Mutex::new(())),
        }
    }

    /// The signing key (for its verifier key and origin).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The latest checkpoint, signing the current tree head first if no checkpoint
    /// covers it yet. Returns once the new checkpoint is durable. Blocking.
    pub fn checkpoint_now(&self) -> Result<StoredCheckpoint, StoreError> {
        let _one_at_a_time = self
            .issuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let head = self.store.tree_head()?;
        if let Some(latest) = self.store.latest_checkpoint()? {
            if latest.size >= head.size {
                return Ok(latest);
            }
        }
        let note = sign_checkpoint(
            &self.key,
            TreeCheckpoint {
                size: head.size,
                root: head.root,
            },
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
        let checkpoint = StoredCheckpoint {
            size: head.size,
            root: head.root,
            issued_at: Utc::now(),
            note,
        };
        self.store.put_checkpoint(&checkpoint)?;
        tracing::debug!(tree_size = head.size, "checkpoint signed");
        Ok(checkpoint)
    }

    /// The first checkpoint that covers entry `seq`, signing one now if none does yet.
    pub fn checkpoint_covering(&self, seq: u64) -> Result<StoredCheckpoint, StoreError> {
        if let Some(found) = self.store.checkpoints(seq, 1)?.pop() {
            return Ok(found);
        }
        self.checkpoint_now()
    }
}
