//! RocksDB storage: the column families, the reads, and (in `writer`) the single writer
//! that appends. Reads never wait for the writer. Every method here blocks on disk I/O:
//! call it off the async executor.

mod backup;
mod checkpoints;
mod keys;
mod personal;
mod policies;
mod proofs;
mod requests;
mod space;
mod states;
mod verify;
mod writer;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB};

use crate::audit::chain::{ChainBreak, ChainVerifier, StoredLink};
use crate::audit::merkle::{empty_root, root_from_leaf_hashes, Frontier};
use crate::crypto::Keyring;
use crate::ledger::entry::{entry_hash, Entry, EntryError};
use crate::ledger::projection::{state_at, ChainHead, Cutoff, StateRecord};
use crate::ledger::{ContactState, Hash};
use crate::metrics::Metrics;
use crate::model::ContactId;
use states::StateCache;

pub use checkpoints::{Checkpointer, StoredCheckpoint};
pub use personal::PurgeReport;
pub use proofs::ProofRequestError;
pub use requests::{ContactRequest, RequestScan};
pub use space::DiskSpace;
pub use verify::{Damage, DamageKind, LedgerReport};
pub use writer::{AppendError, Receipt, WriterHandle, WriterThread};

/// A storage failure. Never carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (I/O, no space, corruption found by RocksDB).
    #[error("storage engine error: {0}")]
    Engine(#[from] rocksdb::Error),
    /// Stored data does not decode or disagrees with itself.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The writer has stopped (the server is shutting down).
    #[error("the ledger writer has stopped")]
    WriterStopped,
    /// A long read was stopped because its caller went away.
    #[error("cancelled: the caller went away")]
    Cancelled,
    /// The configured master key is not the one the ledger's data keys are wrapped with.
    #[error("the configured master key is not the one this ledger's personal data is sealed with; configure the original master key file")]
    WrongMasterKey,
    /// The operating system gave no randomness.
    #[error("no randomness available from the operating system: {0}")]
    NoRandomness(String),
    /// The data directory's filesystem has less free space than the server keeps free.
    #[error("the data directory's disk has {free} bytes free, below the {minimum} bytes kept free (min_free_disk_mib)")]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// Bytes kept free.
        minimum: u64,
    },
}

impl StoreError {
    /// The same error, for a second recipient (every caller of a failed group hears it).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Engine(e) => Self::Engine(e.clone()),
            Self::Corrupt(what) => Self::Corrupt(what.clone()),
            Self::WriterStopped => Self::WriterStopped,
            Self::Cancelled => Self::Cancelled,
            Self::WrongMasterKey => Self::WrongMasterKey,
            Self::NoRandomness(why) => Self::NoRandomness(why.clone()),
            Self::DiskFull { free, minimum } => Self::DiskFull {
                free: *free,
                minimum: *minimum,
            },
        }
    }

    /// Whether the disk is full: below the minimum kept free, or out of space in a write.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Self::DiskFull { .. } => true,
            Self::Engine(e) => {
                let text = e.to_string();
                text.contains("No space left") || text.contains("NoSpace")
            }
            _ => false,
        }
    }
}

impl From<EntryError> for StoreError {
    fn from(err: EntryError) -> Self {
        Self::Corrupt(err.to_string())
    }
}

/// Size and root of the global Merkle tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash.
    pub root: Hash,
}

/// An entry as read from storage: the exact bytes, their hash, and the decoded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// `SHA-256(0x00 || bytes)`.
    pub hash: Hash,
    /// The decoded entry.
    pub entry: Entry,
}

impl StoredEntry {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, StoreError> {
        let entry = Entry::decode(&bytes)?;
        Ok(Self {
            hash: entry_hash(&bytes),
            bytes,
            entry,
        })
    }
}

/// Outcome of re-checking one contact's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Links checked before the first break (or all of them).
    pub entries_checked: u64,
    /// Hash of the last good link.
    pub head_hash: Hash,
    /// The first broken link, if any.
    pub first_break: Option<ChainBreak>,
}

fn decode_state<T: StateRecord>(contact: &ContactId, bytes: &[u8]) -> Result<T, StoreError> {
    crate::ledger::projection::decode_state(bytes)
        .map_err(|e| StoreError::Corrupt(format!("state of {contact}: {e}")))
}

/// Size of the block cache shared by every column family, unless configured: a quarter of
/// the memory the process may use (its control group's limit, else the machine's: see
/// [`crate::memory::available`]), at least 64 MiB; 256 MiB where that cannot be read.
/// The cache takes memory only as blocks are read into it.
pub fn default_block_cache_bytes() -> usize {
    share_of_memory(4, 64 << 20, 256 << 20)
}

/// Size of the cache of decoded contact states, unless configured: an eighth of the memory
/// the process may use, at least 32 MiB; 128 MiB where that cannot be read. It takes
/// memory only as states are read or written.
pub fn default_state_cache_bytes() -> usize {
    share_of_memory(8, 32 << 20, 128 << 20)
}

/// `1 / divisor` of the memory the process may use, at least `floor`; `unknown` where
/// that cannot be read.
fn share_of_memory(divisor: u64, floor: usize, unknown: usize) -> usize {
    crate::memory::available().map_or(unknown, |bytes| {
        usize::try_from(bytes / divisor)
            .unwrap_or(usize::MAX)
            .max(floor)
    })
}

/// Memory the store may give its caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// The storage engine's block cache, shared by every column family.
    pub block_bytes: usize,
    /// Decoded contact states (estimated bytes).
    pub state_bytes: usize,
}

impl Default for CacheSizes {
    /// [`default_block_cache_bytes`] and [`default_state_cache_bytes`].
    fn default() -> Self {
        Self {
            block_bytes: default_block_cache_bytes(),
            state_bytes: default_state_cache_bytes(),
        }
    }
}

/// Write-ahead log kept before the families holding its oldest file are flushed.
const MAX_TOTAL_WAL_BYTES: u64 = 512 << 20;

/// Families read by key (rather than scanned): they get bloom filters, in their table files
/// and in their memtables.
fn point_read(family: &str) -> bool {
    matches!(
        family,
        keys::STATE
            | keys::IDEMPOTENCY
            | keys::POLICIES
            | keys::KEYS
            | keys::SUPPRESSION
            | keys::REQUESTS
    )
}

/// What the storage engine reports about its own work (see [`Store::engine_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Bytes compaction estimates it must still rewrite to bring every level within its
    /// target size: the debt a bulk load leaves behind, which reads pay for until it is
    /// worked off.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Memtable flushes running now.
    pub running_flushes: u64,
    /// Bytes held in memtables, written to the log but not yet to table files.
    pub memtable_bytes: u64,
    /// Bytes of live table files.
    pub table_file_bytes: u64,
    /// Bytes in use in the block cache shared by every family.
    pub block_cache_bytes: u64,
    /// The block cache's capacity.
    pub block_cache_capacity_bytes: u64,
    /// Whether the engine has stopped writes (too many unflushed memtables or level-0
    /// files) until compaction catches up.
    pub writes_stopped: bool,
}

/// A contact's current state (`None` for one never registered) and a tree size it is
/// complete at: every entry of the contact within that size, and none after it.
pub type StateAt = (Option<Arc<ContactState>>, u64);

/// The ledger's RocksDB database. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<DB>,
    metrics: Arc<Metrics>,
    space: Arc<DiskSpace>,
    states: Arc<StateCache>,
}

impl Store {
    /// Opens (or creates) the ledger in `path`, with caches of the default sizes.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_caches(path, CacheSizes::default())
    }

    /// Opens (or creates) the ledger in `path`, with caches of the sizes given.
    pub fn open_with_caches(path: &Path, caches: CacheSizes) -> Result<Self, StoreError> {
        let block_cache_bytes = caches.block_bytes;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_paranoid_checks(true);
        // A WAL record cut short at the very end (a crash mid-write of something never
        // acknowledged) is dropped; damage anywhere else refuses the open instead of
        // silently losing what follows it.
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        options.increase_parallelism(2);
        // Every group writes the `meta` family, whose memtable barely grows, so without a
        // bound each log file stays until RocksDB's own default (four times every family's
        // memtables, gigabytes here) forces a flush: two gigabytes of log after a few
        // seconds of batched appends, all read again at the next start. Past this much
        // log the families holding the oldest file are flushed and it is deleted.
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // One block cache for every family, large enough that the contact states and
        // recent entries a busy server reads stay in memory (`Check` answers inline only
        // from memory), and bloom filters where lookups are by key.
        //
        // A HyperClockCache: lookups take no lock (an LRU cache's shard mutex and list
        // upkeep were about 3% of a `Screen`'s CPU). Its automatic variant (no estimated
        // entry size) grows its table as blocks come in: the variant sized up front fills
        // a table for the whole capacity when the cache is made, 250 MB resident at
        // startup for a 6 GiB cache.
        let cache = rocksdb::Cache::new_hyper_clock_cache(block_cache_bytes, 0);
        let families = keys::ALL.iter().map(|name| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            if point_read(name) {
                table.set_bloom_filter(10.0, false);
                table.set_cache_index_and_filter_blocks(true);
                table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            }
            // Contact states are only ever read by key (`Check`, a `Screen` batch, the
            // writer): a hash index in each block finds the key without a binary search
            // over the block's restart points. Files already written keep their plain
            // index until compacted; both are read.
            if *name == keys::STATE {
                table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
                table.set_data_block_hash_ratio(0.75);
                // A state record is most of a kilobyte, so a 4 KiB block holds about five:
                // with the default of a restart point every 16 keys the hash index could
                // only ever point at the first, and every read parsed the keys before its
                // own (about a twentieth of a `Screen`'s CPU). A restart point at every
                // key costs four bytes a record and lets the hash find the key itself
                // (in brief screens, the in-block search went from 10.7% of the CPU to
                // 5.3%). Files keep their restart interval until compacted.
                table.set_block_restart_interval(1);
            }
            // Families that are read whole by VerifyLedger: larger blocks mean fewer
            // block lookups and checksum calls per key (about 8% of its CPU at 1M entries).
            // Files already written keep their block size until compacted.
            if matches!(*name, keys::ENTRIES | keys::MERKLE | keys::CONTACT_INDEX) {
                table.set_block_size(16 << 10);
            }
            let mut family = Options::default();
            family.set_block_based_table_factory(&table);
            if point_read(name) {
                // A bloom filter over each memtable's keys: a point read of a key the
                // memtable does not hold (every new idempotency key the writer checks,
                // every contact not written since the last flush that `Check` reads)
                // skips the skip-list search, a walk of cache misses across the arena.
                // About a tenth of the memtable's size.
                family.set_memtable_prefix_bloom_ratio(0.1);
                family.set_memtable_whole_key_filtering(true);
            }
            // LZ4 where rows are text or structured records (the entries' JSON shrinks
            // about fourfold); hashes, ciphertexts and sequence numbers do not compress.
            // Table files keep the compression they were written with.
            family.set_compression_type(if keys::compressed(name) {
                rocksdb::DBCompressionType::Lz4
            } else {
                rocksdb::DBCompressionType::None
            });
            ColumnFamilyDescriptor::new(*name, family)
        });
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|e| {
            match e.kind() {
                // Damaged files: reported as such (naming the file), never repaired here.
                rocksdb::ErrorKind::Corruption => StoreError::Corrupt(e.into_string()),
                _ => StoreError::Engine(e),
            }
        })?;
        let store = Self::over(db, path, caches.state_bytes);
        store.upgrade_merkle_rows()?;
        store.states.publish(store.tree_head()?.size);
        Ok(store)
    }

    /// The store over an open database in `path`, with a state cache of
    /// `state_cache_bytes`.
    fn over(db: DB, path: &Path, state_cache_bytes: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        let states = StateCache::new(
            state_cache_bytes,
            metrics.state_cache_hits.clone(),
            metrics.state_cache_misses.clone(),
        );
        Self {
            db: Arc::new(db),
            metrics,
            space: Arc::new(DiskSpace::new(path.to_path_buf())),
            states: Arc::new(states),
        }
    }

    /// Ledgers written before leaf tiles hold a row per leaf, and rows for Merkle levels
    /// 1 to 3. Each leaf row is copied into its tile, on top of the tile as stored if
    /// there is one (a converted ledger that an older build then appended to holds both).
    /// The tiles are written in batches, then the old rows are deleted with one range
    /// tombstone in a synced write: a crash before that leaves the old rows, and the next
    /// open converts again, to the same tiles. Levels 1 to 3 are derived data and are not
    /// kept, so nothing can read a copy of them that has gone stale.
    fn upgrade_merkle_rows(&self) -> Result<(), StoreError> {
        let merkle = self.cf(keys::MERKLE);
        let (from, to) = (
            keys::merkle_key(0, 0),
            keys::merkle_key(keys::FIRST_STORED_NODE_LEVEL, 0),
        );
        let mut it = self.db.raw_iterator_cf(merkle);
        it.seek(from);
        it.status()?;
        if it.key().is_none_or(|key| key >= to.as_slice()) {
            return Ok(());
        }
        tracing::info!("converting the Merkle tree's leaf rows into tiles of 16");
        let started = std::time::Instant::now();
        let mut batch = rocksdb::WriteBatch::default();
        // The tile being filled, and its contents.
        let mut tile: Option<(u64, Vec<u8>)> = None;
        let mut leaves = 0u64;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if key.first() != Some(&0) {
                break;
            }
            let leaf = keys::decode_u64(&key[1..]).zip(<Hash>::try_from(value).ok());
            if let Some((index, hash)) = leaf {
                let wanted = index / keys::LEAVES_PER_TILE;
                if tile.as_ref().is_none_or(|(at, _)| *at != wanted) {
                    if let Some((done, row)) = tile.take() {
                        batch.put_cf(merkle, keys::leaf_tile_key(done), row);
                    }
                    let stored = self.db.get_cf(merkle, keys::leaf_tile_key(wanted))?;
                    tile = Some((wanted, stored.unwrap_or_default()));
                }
                if let Some((_, row)) = tile.as_mut() {
                    // A leaf that has no row in the old layout stays zeros, which
                    // VerifyLedger reports as an altered leaf.
                    let at = (index % keys::LEAVES_PER_TILE) as usize * 32;
                    if row.len() < at + 32 {
                        row.resize(at + 32, 0);
                    }
                    row[at..at + 32].copy_from_slice(&hash);
                }
                leaves += 1;
            }
            if batch.len() >= 4096 {
                self.db.write(std::mem::take(&mut batch))?;
            }
            it.next();
        }
        it.status()?;
        if let Some((done, row)) = tile {
            batch.put_cf(merkle, keys::leaf_tile_key(done), row);
        }
        batch.delete_range_cf(merkle, from, to);
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        tracing::info!(
            leaves,
            seconds = started.elapsed().as_secs_f64(),
            "Merkle leaf rows converted"
        );
        Ok(())
    }

    /// Starts the single writer on its own thread, sealing personal data with keys from
    /// `keyring`. Appends go through the returned handle; the thread ends when every
    /// handle is dropped, after answering what it has taken. Refuses a keyring whose
    /// master key is not the one the ledger's data keys are wrapped with.
    pub fn start_writer(
        &self,
        keyring: Arc<Keyring>,
    ) -> Result<(WriterHandle, WriterThread), StoreError> {
        self.check_master_key(&keyring)?;
        writer::start(self.clone(), keyring)
    }

    /// What the storage engine reports about its own work: compaction debt, memtables,
    /// table files and the block cache, summed over the column families.
    pub fn engine_stats(&self) -> Result<EngineStats, StoreError> {
        let db_wide = |name: &str| -> Result<u64, StoreError> {
            Ok(self.db.property_int_value(name)?.unwrap_or(0))
        };
        let summed = |name: &str| -> Result<u64, StoreError> {
            let mut total = 0u64;
            for family in keys::ALL {
                total = total.saturating_add(
                    self.db
                        .property_int_value_cf(self.cf(family), name)?
                        .unwrap_or(0),
                );
            }
            Ok(total)
        };
        // Every family shares one block cache: any of them reports it.
        let cache = |name: &str| -> Result<u64, StoreError> {
            Ok(self
                .db
                .property_int_value_cf(self.cf(keys::STATE), name)?
                .unwrap_or(0))
        };
        Ok(EngineStats {
            pending_compaction_bytes: summed("rocksdb.estimate-pending-compaction-bytes")?,
            running_compactions: db_wide("rocksdb.num-running-compactions")?,
            running_flushes: db_wide("rocksdb.num-running-flushes")?,
            memtable_bytes: summed("rocksdb.cur-size-all-mem-tables")?,
            table_file_bytes: summed("rocksdb.live-sst-files-size")?,
            block_cache_bytes: cache("rocksdb.block-cache-usage")?,
            block_cache_capacity_bytes: cache("rocksdb.block-cache-capacity")?,
            writes_stopped: db_wide("rocksdb.is-write-stopped")? != 0,
        })
    }

    /// Rewrites every table file with the current settings (compression, block sizes)
    /// through the bottommost level, and returns the bytes of table files before and after.
    /// For a ledger written by an earlier build: compaction alone never rewrites most of
    /// its entries, which are appended in key order and so moved down the levels as they
    /// are. Blocking; reads and writes the whole ledger once. Safe while serving: the
    /// engine's own compactions go on beside it, so appends do not stall behind it.
    pub fn compact_all(&self) -> Result<(u64, u64), StoreError> {
        self.flush()?;
        let before = self.engine_stats()?.table_file_bytes;
        let mut compact = rocksdb::CompactOptions::default();
        compact.set_exclusive_manual_compaction(false);
        compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for family in keys::ALL {
            self.db
                .compact_range_cf_opt(self.cf(family), None::<&[u8]>, None::<&[u8]>, &compact);
        }
        Ok((before, self.engine_stats()?.table_file_bytes))
    }

    /// The data directory's free space, and whether appends are refused for want of it.
    pub fn disk_space(&self) -> &DiskSpace {
        &self.space
    }

    /// While appends are refused for want of space: whether they could resume now (and
    /// if so, they do). See [`DiskSpace::probe`].
    pub fn probe_disk_space(&self) -> bool {
        self.space.probe(&self.db)
    }

    /// The metrics this store's writer and the services on it update.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family in keys::ALL is created at open.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is opened with the database"))
    }

    /// The current size and root of the global Merkle tree, read from one snapshot so
    /// the two always belong together.
    pub fn tree_head(&self) -> Result<TreeHead, StoreError> {
        let meta = self.cf(keys::META);
        let snapshot = self.db.snapshot();
        let size = self.tree_size_in(&snapshot)?;
        let root = match snapshot.get_pinned_cf(meta, keys::META_TREE_ROOT)? {
            Some(bytes) => bytes
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("meta tree_root is not 32 bytes".into()))?,
            None if size == 0 => empty_root(),
            None => return Err(StoreError::Corrupt("meta tree_root is missing".into())),
        };
        Ok(TreeHead { size, root })
    }

    fn tree_size_in(&self, snapshot: &rocksdb::Snapshot<'_>) -> Result<u64, StoreError> {
        match snapshot.get_pinned_cf(self.cf(keys::META), keys::META_TREE_SIZE)? {
            Some(bytes) => keys::decode_u64(&bytes)
                .ok_or_else(|| StoreError::Corrupt("meta tree_size is not a u64".into())),
            None => Ok(0),
        }
    }

    /// The contact's current state and a tree size it is complete at: from the state
    /// cache, or read from one snapshot (and kept in the cache).
    pub fn contact_state_with_size(&self, contact: &ContactId) -> Result<StateAt, StoreError> {
        let read = self.read_state(contact, rocksdb::ReadTier::All)?;
        Ok(read.expect("a read through every tier is never incomplete"))
    }

    /// Like [`Store::contact_state_with_size`], but only from memory (the state cache,
    /// memtables and the block cache): `Ok(None)` when answering would need a disk read.
    /// An async caller answers inline when this succeeds and sends only the rest to a
    /// blocking thread.
    pub fn contact_state_from_memory(
        &self,
        contact: &ContactId,
    ) -> Result<Option<StateAt>, StoreError> {
        self.read_state(contact, rocksdb::ReadTier::BlockCache)
    }

    /// The contact's state from the cache, else from one snapshot read through `tier`
    /// (`None` if that tier cannot answer), with a tree size it is complete at.
    fn read_state(
        &self,
        contact: &ContactId,
        tier: rocksdb::ReadTier,
    ) -> Result<Option<StateAt>, StoreError> {
        if let Some((state, size)) = self.states.get(contact) {
            return Ok(Some((Some(state), size)));
        }
        let ticket = self.states.ticket(contact);
        let snapshot = self.db.snapshot();
        let read = |cf: &str, key: &[u8]| {
            let mut options = rocksdb::ReadOptions::default();
            options.set_read_tier(tier);
            match snapshot.get_pinned_cf_opt(self.cf(cf), key, options) {
                Ok(value) => Ok(Some(value)),
                Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
                Err(e) => Err(StoreError::from(e)),
            }
        };
        let Some(state) = read(keys::STATE, contact.as_str().as_bytes())? else {
            return Ok(None);
        };
        let Some(size) = read(keys::META, keys::META_TREE_SIZE)? else {
            return Ok(None);
        };
        let size = match size {
            Some(bytes) => keys::decode_u64(bytes.as_ref())
                .ok_or_else(|| StoreError::Corrupt("meta tree_size is not a u64".into()))?,
            None => 0,
        };
        let state = state
            .map(|bytes| decode_state(contact, &bytes).map(Arc::new))
            .transpose()?;
        if let Some(state) = &state {
            self.states.keep(ticket, contact, state, size);
        }
        Ok(Some((state, size)))
    }

    /// Estimated bytes held by the cache of decoded contact states, and its capacity.
    pub fn state_cache_usage(&self) -> (usize, usize) {
        self.states.usage()
    }

    /// The current states of many contacts (`None` for an unknown one), in order, and the
    /// tree size they belong to, from one snapshot.
    pub fn contact_states_with_size(
        &self,
        contacts: &[ContactId],
    ) -> Result<(Vec<Option<ContactState>>, u64), StoreError> {
        let snapshot = self.db.snapshot();
        let mut options = rocksdb::ReadOptions::default();
        options.set_snapshot(&snapshot);
        // Batched, and decoded from the pinned blocks without a copy of each value.
        let values = self.db.batched_multi_get_cf_opt(
            self.cf(keys::STATE),
            contacts.iter().map(|c| c.as_str().as_bytes()),
            false,
            &options,
        );
        let mut states = Vec::with_capacity(contacts.len());
        for (contact, bytes) in contacts.iter().zip(values) {
            states.push(bytes?.map(|b| decode_state(contact, &b)).transpose()?);
        }
        Ok((states, self.tree_size_in(&snapshot)?))
    }

    pub(crate) fn last_recorded_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let meta = self.cf(keys::META);
        match self.db.get_pinned_cf(meta, keys::META_LAST_RECORDED_AT)? {
            Some(bytes) => {
                let nanos = keys::decode_u64(&bytes).ok_or_else(|| {
                    StoreError::Corrupt("meta last_recorded_at is not 8 bytes".into())
                })?;
                Ok(Some(DateTime::from_timestamp_nanos(nanos as i64)))
            }
            None => Ok(None),
        }
    }

    /// Rebuilds the right edge of the Merkle tree from the stored nodes.
    pub(crate) fn frontier(&self, size: u64) -> Result<Frontier, StoreError> {
        Frontier::load(
            size,
            |level, index| self.merkle_node(level, index),
            |level, index| {
                StoreError::Corrupt(format!("Merkle node ({level}, {index}) is missing"))
            },
        )
    }

    /// The Merkle node at `(level, index)`: a leaf from its tile, a stored node, or for
    /// levels 1 to 3, the hash of the leaves beneath it. `None` if what it needs is
    /// missing.
    pub fn merkle_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let merkle = self.cf(keys::MERKLE);
        if level >= keys::FIRST_STORED_NODE_LEVEL {
            return Ok(self
                .db
                .get_pinned_cf(merkle, keys::merkle_key(level, index))?
                .and_then(|b| b.as_ref().try_into().ok()));
        }
        let first = index << level;
        let tile = first / keys::LEAVES_PER_TILE;
        let Some(row) = self.db.get_pinned_cf(merkle, keys::leaf_tile_key(tile))? else {
            return Ok(None);
        };
        let leaves: Option<Vec<_>> = (first..first + (1 << level))
            .map(|leaf| keys::leaf_in_tile(&row, leaf))
            .collect();
        Ok(leaves.map(|leaves| root_from_leaf_hashes(&leaves)))
    }

    /// The entry with global sequence number `seq`, if it exists.
    pub fn entry(&self, seq: u64) -> Result<Option<StoredEntry>, StoreError> {
        self.db
            .get_cf(self.cf(keys::ENTRIES), keys::seq_key(seq))?
            .map(StoredEntry::from_bytes)
            .transpose()
    }

    /// The contact's current state, or `None` for a contact never registered: from the
    /// state cache, else one point read (not kept: without a snapshot it has no tree size
    /// to be kept with; the writer, its main caller, puts in every state it writes).
    pub fn contact_state(
        &self,
        contact: &ContactId,
    ) -> Result<Option<Arc<ContactState>>, StoreError> {
        if let Some((state, _)) = self.states.get(contact) {
            return Ok(Some(state));
        }
        Ok(self.state_record(contact)?.map(Arc::new))
    }

    /// The head of a contact's chain, or of one of the ledger's own chains (see
    /// [`ContactId::is_reserved`]); `None` if it has no entries.
    pub fn chain_head(&self, chain: &ContactId) -> Result<Option<ChainHead>, StoreError> {
        self.state_record(chain)
    }

    fn state_record<T: StateRecord>(&self, contact: &ContactId) -> Result<Option<T>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(keys::STATE), contact.as_str())?
            .map(|bytes| decode_state(contact, &bytes))
            .transpose()
    }

    /// Up to `limit` of the contact's entries with contact seq greater than `after`, in
    /// order, and whether more follow.
    pub fn history(
        &self,
        contact: &ContactId,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<StoredEntry>, bool), StoreError> {
        let mut entries = Vec::with_capacity(limit.min(1024));
        for item in self.contact_index(contact, after + 1) {
            let (_, seq) = item?;
            if entries.len() == limit {
                return Ok((entries, true));
            }
            let entry = self.entry(seq)?.ok_or_else(|| {
                StoreError::Corrupt(format!("entry {seq} named by the contact index is missing"))
            })?;
            entries.push(entry);
        }
        Ok((entries, false))
    }

    /// The states of contacts as of `cutoff`, replayed from their entries (`None` for one
    /// not registered by then), and a tree size that covers every entry read.
    pub fn contact_states_at(
        &self,
        contacts: &[ContactId],
        cutoff: Cutoff,
    ) -> Result<(Vec<Option<ContactState>>, u64), StoreError> {
        let mut states = Vec::with_capacity(contacts.len());
        for contact in contacts {
            let (entries, _) = self.history(contact, 0, usize::MAX)?;
            states.push(state_at(entries.iter().map(|e| (&e.entry, e.hash)), cutoff));
        }
        // Read after the entries, so every entry relied on is within the size reported.
        Ok((states, self.tree_head()?.size))
    }

    /// `(contact seq, global seq)` pairs of a contact from `from` on.
    fn contact_index<'a>(
        &'a self,
        contact: &ContactId,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, u64), StoreError>> + 'a {
        let prefix = keys::contact_prefix(contact.as_str());
        let start = keys::contact_index_key(contact.as_str(), from);
        self.db
            .iterator_cf(
                self.cf(keys::CONTACT_INDEX),
                IteratorMode::From(&start, Direction::Forward),
            )
            .map_while(move |item| match item {
                Err(e) => Some(Err(StoreError::from(e))),
                Ok((key, value)) => {
                    let suffix = key.strip_prefix(prefix.as_slice())?;
                    Some(
                        keys::decode_u64(suffix)
                            .zip(keys::decode_u64(&value))
                            .ok_or_else(|| StoreError::Corrupt("malformed contact index".into())),
                    )
                }
            })
    }

    /// Recomputes the contact's chain from the stored bytes. `None` if the contact has
    /// neither state nor entries.
    pub fn verify_contact(&self, contact: &ContactId) -> Result<Option<ChainReport>, StoreError> {
        let state = self.chain_head(contact)?;
        let mut verifier = ChainVerifier::new(contact.as_str());
        let mut any = false;
        let report = |verifier: &ChainVerifier<'_>, first_break| ChainReport {
            entries_checked: verifier.checked(),
            head_hash: verifier.head(),
            first_break,
        };
        for item in self.contact_index(contact, 1) {
            any = true;
            let (contact_seq, seq) = item?;
            let bytes = self.db.get_cf(self.cf(keys::ENTRIES), keys::seq_key(seq))?;
            let personal = self.db.get_cf(self.cf(keys::PII), keys::seq_key(seq))?;
            let link = StoredLink {
                contact_seq,
                seq,
                bytes: bytes.as_deref(),
                leaf: match seq.checked_sub(1) {
                    Some(index) => self.merkle_node(0, index)?,
                    None => None,
                },
                personal: personal.as_deref(),
            };
            if let Err(broken) = verifier.check(link) {
                return Ok(Some(report(&verifier, Some(broken))));
            }
        }
        let Some(state) = state else {
            return Ok(if any {
                Some(report(
                    &verifier,
                    Some(ChainBreak {
                        seq: 0,
                        contact_seq: verifier.checked(),
                        problem: crate::audit::chain::ChainProblem::HeadMismatch,
                        detail: "the contact has entries but no recorded state".into(),
                    }),
                ))
            } else {
                None
            });
        };
        let finished = verifier.finish(state.head_contact_seq, state.head_hash);
        Ok(Some(report(&verifier, finished.err())))
    }

    /// Flushes memtables and the WAL so everything acknowledged is in SST files. Used at
    /// shutdown; durability never depends on it (each commit is already synced).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in keys::ALL {
            self.db.flush_cf(self.cf(name))?;
        }
        self.db.flush_wal(true)?;
        Ok(())
    }
}
