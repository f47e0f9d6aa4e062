//! Online backups: a RocksDB checkpoint (hard links where the filesystem allows, copies
//! otherwise) taken while appends continue, and a consistent read of the tree head it holds.

use std::path::Path;

use rocksdb::checkpoint::Checkpoint;

use super::{keys, Store, StoreError, TreeHead};

impl Store {
    /// Writes a consistent copy of the ledger into `dir` (which must not exist) and returns
    /// the tree head that copy holds. Appends continue meanwhile; erased values the purge
    /// already dropped are not in it. Keys kept beside the data directory are not copied.
    pub fn backup(&self, dir: &Path) -> Result<TreeHead, StoreError> {
        Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        // The copy is a database of its own: its head is what it holds. Opened read-only,
        // so the backup stays exactly as taken.
        let db = rocksdb::DB::open_cf_for_read_only(
            &rocksdb::Options::default(),
            dir,
            keys::ALL,
            false,
        )?;
        Store::over(db, dir, 0).tree_head()
    }
}
